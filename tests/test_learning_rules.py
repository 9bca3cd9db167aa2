"""Local learning rules: three-factor (closed forms) and STDP (against Brian2)."""
import math

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.errors import NeurosimError
from neurosim.learning import STDP, STDPParameters, STDPState, ThreeFactor, ThreeFactorParameters, stdp_step, three_factor_step
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


# -- STDP against Brian2 ------------------------------------------------------------------------

def brian2_stdp(pre, post, w0, synapses, p, dt):
    """Brian2's standard STDP synapse (numpy target, float64) between spike generators: event-driven
    traces, ``on_pre: apre += Apre; w = clip(w + apost, wmin, wmax)``, ``on_post: apost += Apost;
    w = clip(w + apre, wmin, wmax)``, Brian2's own order of the two pathways. ``synapses`` = (post, pre)
    index arrays, ``w0`` their initial weights; returns the final weights in the same order."""
    from brian2 import Clock, Network, SpikeGeneratorGroup, Synapses, ms, prefs, start_scope

    prefs.codegen.target = "numpy"
    start_scope()
    clock = Clock(dt=dt * ms)
    T, n_in = pre.shape
    t_pre, i_pre = np.nonzero(pre)
    t_post, i_post = np.nonzero(post)
    g_pre = SpikeGeneratorGroup(n_in, i_pre, t_pre * dt * ms, clock=clock)
    g_post = SpikeGeneratorGroup(post.shape[1], i_post, t_post * dt * ms, clock=clock)
    S = Synapses(g_pre, g_post, model="""w : 1
        dapre/dt = -apre / taupre : 1 (event-driven)
        dapost/dt = -apost / taupost : 1 (event-driven)""",
                 on_pre="apre += Apre\nw = clip(w + apost, wmin, wmax)",
                 on_post="apost += Apost\nw = clip(w + apre, wmin, wmax)", clock=clock,
                 namespace=dict(taupre=p.tau_pre * ms, taupost=p.tau_post * ms, Apre=p.a_plus, Apost=-p.a_minus,
                                wmin=p.w_min, wmax=p.w_max))
    post_idx, pre_idx = synapses
    S.connect(i=pre_idx, j=post_idx)
    assert (S.i[:] == pre_idx).all() and (S.j[:] == post_idx).all()
    S.w = w0
    Network(g_pre, g_post, S).run(T * dt * ms)
    return np.asarray(S.w[:])


def random_trains(T, n, rate, rng):
    return (rng.random((T, n)) < rate).astype(np.float64)


STDP_CASES = {
    "symmetric": (STDPParameters(tau_pre=20.0, tau_post=20.0, a_plus=0.01, a_minus=0.0105, w_min=0.0, w_max=0.05), 0.5),
    "asymmetric": (STDPParameters(tau_pre=8.0, tau_post=15.0, a_plus=0.02, a_minus=0.012, w_min=0.01, w_max=0.08), 1.0),
}


def run_stdp(proj, p, dt, pre, post):
    rule = STDP(proj, p, dt=dt)
    state = rule.initial_state(pre.shape[1])
    for t in range(pre.shape[0]):
        state = rule.step(torch.from_numpy(pre[t]), torch.from_numpy(post[t]), state)
    return proj


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("case", list(STDP_CASES))
def test_stdp_matches_brian2(case, kind):
    """Random pre/post trains with volleys that put many pre/post pairs in the same step, weights that
    hit both bounds: the final weights equal Brian2's standard STDP synapse to 1e-9, on a Dense
    (all-to-all) and a Sparse projection."""
    p, dt = STDP_CASES[case]
    rng = np.random.default_rng(11)
    T, n_in, n_out = 2000, 6, 5
    pre, post = random_trains(T, n_in, 0.02, rng), random_trains(T, n_out, 0.02, rng)
    post[::53, :] = 1.0
    pre[::53, ::2] = 1.0
    assert (pre.sum(1)[:, None] * post).sum() > 100  # same-step pre/post pairs
    keep = np.ones((n_out, n_in), dtype=bool) if kind == "dense" else rng.random((n_out, n_in)) < 0.5
    post_idx, pre_idx = np.nonzero(keep.T)[::-1]
    order = np.lexsort((post_idx, pre_idx))  # neurosim's Sparse order: by pre, then post
    post_idx, pre_idx = post_idx[order], pre_idx[order]
    w0 = rng.uniform(p.w_min, p.w_max, post_idx.size)
    expected = brian2_stdp(pre, post, w0, (post_idx, pre_idx), p, dt)

    if kind == "dense":
        weight = np.zeros((n_out, n_in))
        weight[post_idx, pre_idx] = w0
        proj = run_stdp(ns.Dense(n_in, n_out, weight=weight, dtype=torch.float64), p, dt, pre[:, None], post[:, None])
        w = proj.weight.detach().numpy()[post_idx, pre_idx]
    else:
        proj = ns.Sparse(n_in, n_out, pre=pre_idx, post=post_idx, weight=w0, dtype=torch.float64)
        assert (proj.pre.numpy() == pre_idx).all() and (proj.post.numpy() == post_idx).all()
        w = run_stdp(proj, p, dt, pre[:, None], post[:, None]).weight.detach().numpy()
    assert np.abs(w - w0).max() > 0.03  # the weights moved
    assert (w == p.w_min).any() and (w == p.w_max).any()  # both bounds reached
    np.testing.assert_allclose(w, expected, rtol=0, atol=1e-9)


def test_stdp_dense_mask_and_batch_mean():
    """A Dense mask keeps absent synapses untouched (even outside the bounds), and a batch of identical
    samples changes the weights as one sample does; two different samples move them by the mean."""
    rng = np.random.default_rng(2)
    T, n_in, n_out = 300, 4, 3
    p = STDPParameters(tau_pre=10.0, tau_post=10.0, a_plus=0.02, a_minus=0.02, w_min=0.0, w_max=1.0)
    pre, post = random_trains(T, n_in, 0.1, rng), random_trains(T, n_out, 0.1, rng)
    mask = rng.random((n_out, n_in)) < 0.6
    w0 = np.where(mask, 0.5, 7.0)  # absent synapses hold a value outside the bounds
    one = run_stdp(ns.Dense(n_in, n_out, weight=w0, mask=mask, dtype=torch.float64), p, 1.0, pre[:, None], post[:, None])
    w = one.weight.detach().numpy()
    assert (w[~mask] == 7.0).all() and (w[mask] != 0.5).all()
    three = run_stdp(ns.Dense(n_in, n_out, weight=w0, mask=mask, dtype=torch.float64), p, 1.0,
                     np.repeat(pre[:, None], 3, 1), np.repeat(post[:, None], 3, 1))
    np.testing.assert_allclose(three.weight.detach().numpy(), w, rtol=0, atol=1e-15)
    # unbounded, the change of a batch of two is the mean of the two samples' changes
    free = STDPParameters(tau_pre=10.0, tau_post=10.0, a_plus=0.02, a_minus=0.02)
    pre2, post2 = random_trains(T, n_in, 0.1, rng), random_trains(T, n_out, 0.1, rng)
    changes = [run_stdp(ns.Dense(n_in, n_out, weight=w0, dtype=torch.float64), free, 1.0, a[:, None], b[:, None])
               .weight.detach().numpy() - w0 for a, b in ((pre, post), (pre2, post2))]
    both = run_stdp(ns.Dense(n_in, n_out, weight=w0, dtype=torch.float64), free, 1.0,
                    np.stack([pre, pre2], 1), np.stack([post, post2], 1)).weight.detach().numpy()
    np.testing.assert_allclose(both - w0, (changes[0] + changes[1]) / 2, rtol=0, atol=1e-12)


def test_stdp_pairing_window_closed_form():
    """One pre and one post spike k steps apart: potentiation A+ l+^k for k >= 0 (a pair in the same
    step potentiates by A+), depression A- l-^(-k) for k < 0."""
    p = STDPParameters(tau_pre=5.0, tau_post=9.0, a_plus=0.3, a_minus=0.2)
    dt, T = 1.0, 12
    for k in range(-5, 6):
        pre = torch.zeros(T, 1, 1, dtype=torch.float64)
        post = torch.zeros(T, 1, 1, dtype=torch.float64)
        pre[6, 0, 0] = 1.0
        post[6 + k, 0, 0] = 1.0
        state = STDPState(torch.zeros(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64))
        w = torch.zeros(1, 1, dtype=torch.float64)
        for t in range(T):
            state, w = stdp_step(pre[t], post[t], state, p, dt, w)
        if k >= 0:
            expected = p.a_plus * math.exp(-dt / p.tau_pre) ** k
        else:
            expected = -p.a_minus * math.exp(-dt / p.tau_post) ** (-k)
        assert w.item() == pytest.approx(expected, rel=1e-12, abs=0.0)


def test_stdp_rejects_bad_parameters():
    with pytest.raises(NeurosimError, match="w_min"):
        STDPParameters(w_min=1.0, w_max=0.0)
    with pytest.raises(NeurosimError, match="tau_pre"):
        STDPParameters(tau_pre=-1.0)
    rule = STDP(ns.Dense(3, 2))
    with pytest.raises(NeurosimError, match="post"):
        rule.step(torch.zeros(1, 3), torch.zeros(1, 3), rule.initial_state(1))
    with pytest.raises(NeurosimError, match="pre must hold spikes"):
        rule.step(torch.full((1, 3), 0.5), torch.zeros(1, 2), rule.initial_state(1))
    with pytest.raises(NeurosimError, match="Dale"):
        STDP(ns.Sparse(4, 3, p=0.5, dale="exc"))
    with pytest.raises(NeurosimError, match="needs a Dense or Sparse projection"):
        STDP(ns.Conv2d((1, 5, 5), 1, 3))
