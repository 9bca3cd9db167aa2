"""FORCE (recursive least squares): closed-form P, ridge equivalence, learning a sine, bad input."""
import math

import pytest
import torch

from neurosim import Dense, NeurosimError
from neurosim.learning import FORCE, FORCEParameters, force_initial_state, force_step


def run_stream(rule, state, rs, targets, optimizer):
    for r, f in zip(rs, targets):
        optimizer.zero_grad()
        state = rule.step(r[None], f[None], state)
        optimizer.step()
    return state


def test_p_after_one_update_is_the_regularised_inverse():
    g = torch.Generator().manual_seed(0)
    alpha, r = 0.7, torch.randn(6, generator=g, dtype=torch.float64)
    params = FORCEParameters(alpha=alpha)
    state, _ = force_step(r, torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64),
                          force_initial_state(6, params, torch.float64), params)
    expected = torch.linalg.inv(alpha * torch.eye(6, dtype=torch.float64) + torch.outer(r, r))
    torch.testing.assert_close(state.P, expected, rtol=1e-12, atol=1e-14)


def test_weight_is_the_ridge_solution_of_the_data_seen_so_far():
    g = torch.Generator().manual_seed(1)
    n_in, n_out, alpha = 5, 3, 0.5
    proj = Dense(n_in, n_out, dtype=torch.float64, generator=g)
    w0 = proj.weight.detach().clone()
    rule = FORCE(proj, FORCEParameters(alpha=alpha))
    opt = torch.optim.SGD(proj.parameters(), lr=1.0)
    true_w = torch.randn(n_out, n_in, generator=g, dtype=torch.float64)
    rs = torch.randn(40, n_in, generator=g, dtype=torch.float64)
    fs = rs @ true_w.t() + 0.3 * torch.randn(40, n_out, generator=g, dtype=torch.float64)
    state = rule.initial_state()
    eye = torch.eye(n_in, dtype=torch.float64)
    for stop in (1, 7, 40):
        start = state.step
        state = run_stream(rule, state, rs[start:stop], fs[start:stop], opt)
        R, F = rs[:stop], fs[:stop]
        ridge = (F.t() @ R + alpha * w0) @ torch.linalg.inv(alpha * eye + R.t() @ R)
        torch.testing.assert_close(proj.weight.detach(), ridge, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(state.P, torch.linalg.inv(alpha * eye + R.t() @ R), rtol=1e-9, atol=1e-12)


def test_every_n_steps_updates_on_the_selected_steps_only():
    g = torch.Generator().manual_seed(2)
    proj = Dense(4, 1, dtype=torch.float64, generator=g)
    rule = FORCE(proj, FORCEParameters(alpha=1.0, every=3))
    opt = torch.optim.SGD(proj.parameters(), lr=1.0)
    rs, fs = torch.randn(7, 4, generator=g, dtype=torch.float64), torch.randn(7, 1, generator=g, dtype=torch.float64)
    w0 = proj.weight.detach().clone()
    run_stream(rule, rule.initial_state(), rs, fs, opt)
    R, F = rs[[0, 3, 6]], fs[[0, 3, 6]]
    ridge = (F.t() @ R + w0) @ torch.linalg.inv(torch.eye(4, dtype=torch.float64) + R.t() @ R)
    torch.testing.assert_close(proj.weight.detach(), ridge, rtol=1e-9, atol=1e-10)


def test_learns_a_sine_from_a_fixed_random_feature_stream():
    g = torch.Generator().manual_seed(3)
    n, period, steps = 60, 50, 400
    phases = torch.rand(n, generator=g) * 2 * math.pi
    gains, offsets = 0.5 + 2 * torch.rand(n, generator=g), torch.randn(n, generator=g)
    t = torch.arange(steps + period, dtype=torch.float32)[:, None]
    features = torch.tanh(gains * torch.sin(2 * math.pi * t / period + phases) + offsets)  # random, nonlinear
    target = torch.sin(2 * math.pi * t / period)
    proj = Dense(n, 1, weight=torch.zeros(1, n))
    rule = FORCE(proj, FORCEParameters(alpha=1.0))
    opt = torch.optim.SGD(proj.parameters(), lr=1.0)
    run_stream(rule, rule.initial_state(), features[:steps], target[:steps], opt)
    with torch.no_grad():
        z = proj(features[steps:])
    rms = (z - target[steps:]).pow(2).mean().sqrt().item()
    assert rms < 0.05, rms  # the target's own rms is 0.71


def test_deposits_a_descent_direction_and_accumulates():
    proj = Dense(3, 2, weight=torch.zeros(2, 3, dtype=torch.float64), dtype=torch.float64)
    rule = FORCE(proj)
    r, f = torch.tensor([[1.0, 0.0, 2.0]], dtype=torch.float64), torch.tensor([[1.0, -1.0]], dtype=torch.float64)
    state, dw = force_step(r, torch.zeros(1, 2, dtype=torch.float64), f, rule.initial_state(), rule.params)
    rule.step(r, f, rule.initial_state())
    torch.testing.assert_close(proj.weight.grad, -dw)
    rule.step(r, f, rule.initial_state())
    torch.testing.assert_close(proj.weight.grad, -2 * dw)


def test_reset_restores_the_initial_p():
    proj = Dense(3, 1, dtype=torch.float64)
    rule = FORCE(proj, FORCEParameters(alpha=2.0))
    state = rule.step(torch.ones(1, 3, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64),
                      rule.initial_state())
    reset = rule.reset(state)
    torch.testing.assert_close(reset.P, torch.eye(3, dtype=torch.float64) / 2.0)
    assert reset.step == state.step == 1


@pytest.mark.parametrize("make", [
    lambda: FORCEParameters(alpha=0.0),
    lambda: FORCEParameters(every=0),
    lambda: FORCE(Dense(3, 1, dale="exc")),
    lambda: FORCE(torch.nn.Linear(3, 1)),
    lambda: FORCE(Dense(3, 1)).step(torch.ones(2, 3), torch.ones(2, 1), FORCE(Dense(3, 1)).initial_state()),
    lambda: FORCE(Dense(3, 1)).step(torch.ones(1, 4), torch.ones(1, 1), FORCE(Dense(3, 1)).initial_state()),
    lambda: FORCE(Dense(3, 1)).step(torch.full((1, 3), math.nan), torch.ones(1, 1), FORCE(Dense(3, 1)).initial_state()),
])
def test_bad_input_raises_one_clear_error(make):
    with pytest.raises(NeurosimError):
        make()
