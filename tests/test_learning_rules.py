"""Local learning rules: three-factor (closed forms) and STDP (against Brian2)."""
import math

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.errors import NeurosimError
from neurosim.learning import ThreeFactor, ThreeFactorParameters, three_factor_step
from neurosim.learning.three_factor import three_factor_initial_state


def spike_trains(T, B, n, rate, seed):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g, dtype=torch.float64) < rate).double()


def hebbian_closed_form(pre, post, p, dt):
    """H[t] per sample, from the traces written as sums over past spikes (no recursion)."""
    T = pre.shape[0]
    lp, lm = math.exp(-dt / p.tau_pre), math.exp(-dt / p.tau_post)
    H = torch.zeros(T, pre.shape[1], post.shape[2], pre.shape[2], dtype=torch.float64)
    for t in range(T):
        # x_j[t-1] = sum_{s <= t-1} lp^(t-1-s) pre[s]
        x_prev = sum((lp ** (t - 1 - s) * pre[s] for s in range(t)), torch.zeros_like(pre[0]))
        y_prev = sum((lm ** (t - 1 - s) * post[s] for s in range(t)), torch.zeros_like(post[0]))
        H[t] = p.a_plus * torch.einsum("bi,bj->bij", post[t], x_prev) - p.a_minus * torch.einsum("bi,bj->bij", y_prev, pre[t])
    return H


def run_rule(pre, post, modulators, p, dt):
    state = three_factor_initial_state(pre.shape[1], pre.shape[2], post.shape[2], torch.float64)
    total = torch.zeros(post.shape[2], pre.shape[2], dtype=torch.float64)
    states = []
    for t in range(pre.shape[0]):
        state, dw = three_factor_step(pre[t], post[t], modulators[t], state, p, dt)
        total += dw
        states.append(state)
    return total, states


def test_three_factor_constant_modulator_is_m_times_summed_eligibility():
    T, B, n_in, n_out, dt = 40, 3, 5, 4, 1.0
    p = ThreeFactorParameters(tau_pre=7.0, tau_post=11.0, tau_e=30.0, a_plus=0.8, a_minus=1.3)
    pre, post = spike_trains(T, B, n_in, 0.3, 1), spike_trains(T, B, n_out, 0.3, 2)
    M = -0.7
    total, _ = run_rule(pre, post, [M] * T, p, dt)
    H = hebbian_closed_form(pre, post, p, dt)
    le = math.exp(-dt / p.tau_e)
    # sum_t e[t] = sum_t sum_{s<=t} le^(t-s) H[s] = sum_s H[s] (1 - le^(T-s)) / (1 - le)
    weights = torch.tensor([(1 - le ** (T - s)) / (1 - le) for s in range(T)], dtype=torch.float64)
    expected = M * (weights.view(T, 1, 1, 1) * H).sum(0).mean(0)
    assert H.abs().sum() > 0
    torch.testing.assert_close(total, expected, rtol=1e-12, atol=1e-12)


def test_three_factor_per_neuron_modulator_scales_rows():
    T, B, n_in, n_out = 25, 2, 3, 4
    p = ThreeFactorParameters(tau_pre=5.0, tau_post=5.0, tau_e=50.0)
    pre, post = spike_trains(T, B, n_in, 0.4, 3), spike_trains(T, B, n_out, 0.4, 4)
    M = torch.randn(B, n_out, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    total, states = run_rule(pre, post, [M] * T, p, 1.0)
    summed_e = sum(s.e for s in states)
    torch.testing.assert_close(total, (M.unsqueeze(-1) * summed_e).mean(0), rtol=1e-12, atol=1e-12)


def test_three_factor_zero_modulator_changes_nothing():
    proj = ns.Dense(4, 3, dtype=torch.float64)
    w0 = proj.weight.detach().clone()
    rule = ThreeFactor(proj, ThreeFactorParameters(), dt=1.0)
    pre, post = spike_trains(30, 2, 4, 0.5, 6), spike_trains(30, 2, 3, 0.5, 7)
    state = rule.initial_state(2)
    opt = torch.optim.SGD(proj.parameters(), lr=0.5)
    for t in range(30):
        state = rule.step(pre[t], post[t], 0.0, state)
    opt.step()
    assert state.e.abs().sum() > 0
    assert torch.equal(proj.weight.detach(), w0)


def test_eligibility_after_one_event_decays_geometrically():
    p = ThreeFactorParameters(tau_pre=10.0, tau_post=10.0, tau_e=80.0, a_plus=0.5, a_minus=0.0)
    dt, T = 0.5, 30
    pre = torch.zeros(T, 1, 1, dtype=torch.float64)
    post = torch.zeros(T, 1, 1, dtype=torch.float64)
    pre[0, 0, 0] = 1.0
    post[3, 0, 0] = 1.0  # one pairing at t = 3: H = a_plus * lp^2
    _, states = run_rule(pre, post, [0.0] * T, p, dt)
    h = p.a_plus * math.exp(-dt / p.tau_pre) ** 2
    le = math.exp(-dt / p.tau_e)
    e = torch.stack([s.e[0, 0, 0] for s in states])
    expected = torch.tensor([0.0] * 3 + [h * le ** k for k in range(T - 3)], dtype=torch.float64)
    torch.testing.assert_close(e, expected, rtol=1e-13, atol=0.0)


def test_pre_only_hebbian_term_is_the_delta_rule_on_the_trace():
    p = ThreeFactorParameters(tau_pre=4.0, tau_e=1e-9, a_plus=1.0, hebbian="pre")
    g = torch.Generator().manual_seed(0)
    r = torch.rand(6, 2, 5, generator=g, dtype=torch.float64)
    err = torch.randn(6, 2, 3, generator=g, dtype=torch.float64)
    state = three_factor_initial_state(2, 5, 3, torch.float64)
    lp = math.exp(-1.0 / 4.0)
    x = torch.zeros(2, 5, dtype=torch.float64)
    for t in range(6):
        state, dw = three_factor_step(r[t], torch.zeros(2, 3, dtype=torch.float64), err[t], state, p, 1.0)
        x = lp * x + r[t]
        torch.testing.assert_close(dw, torch.einsum("bi,bj->ij", err[t], x) / 2, rtol=1e-12, atol=1e-12)


def test_three_factor_update_goes_through_sgd_as_w_plus_lr_dw():
    torch.manual_seed(0)
    proj = ns.Dense(6, 4)
    w0 = proj.weight.detach().clone()
    p = ThreeFactorParameters(tau_pre=5.0, tau_post=8.0, tau_e=40.0)
    rule = ThreeFactor(proj, p, dt=1.0)
    pre, post = spike_trains(20, 3, 6, 0.3, 8).float(), spike_trains(20, 3, 4, 0.3, 9).float()
    mods = [torch.randn(3) for _ in range(20)]
    state = rule.initial_state(3)
    for t in range(20):
        state = rule.step(pre[t], post[t], mods[t], state)
    expected, _ = run_rule(pre.double(), post.double(), [m.double() for m in mods], p, 1.0)
    torch.testing.assert_close(proj.weight.grad.double(), -expected, rtol=1e-5, atol=1e-6)
    lr = 0.05
    torch.optim.SGD(proj.parameters(), lr=lr).step()
    torch.testing.assert_close(proj.weight.detach().double(), w0.double() + lr * expected, rtol=1e-5, atol=1e-6)


def test_three_factor_rejects_bad_input():
    proj = ns.Dense(4, 3)
    rule = ThreeFactor(proj)
    state = rule.initial_state(2)
    with pytest.raises(NeurosimError, match="pre"):
        rule.step(torch.zeros(2, 5), torch.zeros(2, 3), 1.0, state)
    with pytest.raises(NeurosimError, match="modulator"):
        rule.step(torch.zeros(2, 4), torch.zeros(2, 3), torch.zeros(3), state)
    with pytest.raises(NeurosimError, match="modulator contains NaN"):
        rule.step(torch.zeros(2, 4), torch.zeros(2, 3), float("nan"), state)
    with pytest.raises(NeurosimError, match="tau_e"):
        ThreeFactorParameters(tau_e=0.0)
    with pytest.raises(NeurosimError, match="hebbian"):
        ThreeFactorParameters(hebbian="oja")
    with pytest.raises(NeurosimError, match="Dale"):
        ThreeFactor(ns.Dense(4, 3, dale="exc"))
    with pytest.raises(NeurosimError, match="Dense"):
        ThreeFactor(ns.Sparse(4, 3, p=0.5))
