"""The DSR neuron: forward dynamics, the spike-representation gradient, and its weighted rate."""
import math

import pytest
import torch

from neurosim import DSR, NeurosimError
from neurosim.neurons import DSRParameters, weighted_rate

DT, TAU = 0.05, 1.0


def reference(xs, theta, alpha=0.3):
    """The forward loop written out, in float64."""
    beta = math.exp(-DT / TAU)
    v = torch.zeros(xs.shape[1:], dtype=torch.float64)
    out = []
    for x in xs.double():
        v = beta * v + (1 - beta) * x
        z = (v >= alpha * theta).double()
        v = v - theta * z
        out.append(z * theta / DT)
    return torch.stack(out)


def test_forward_matches_the_written_out_loop():
    xs = torch.randn(20, 8, 30, dtype=torch.float64) * 10
    pop = DSR(30, dt=DT, dtype=torch.float64)
    out, state = pop(xs)
    assert torch.equal(out, reference(xs, 0.3))
    assert set(out.unique().tolist()) <= {0.0, 0.3 / DT}
    # the step function gives the same sequence
    st, steps = None, []
    for x in xs:
        z, st = pop.step(x, st)
        steps.append(z)
    assert torch.equal(torch.stack(steps), out) and torch.equal(st.v, state.v)


def test_rate_tracks_the_clamped_weighted_input():
    # constant input: the firing rate follows clamp(x / tau, 0, theta / dt) up to the membrane's
    # mean offset, which stays within a third of theta
    x = torch.linspace(-2, 10, 49, dtype=torch.float64)
    out, _ = DSR(49, dt=DT, dtype=torch.float64)(x.expand(2000, 1, 49).contiguous())
    rate = out.mean(0)[0]
    assert torch.allclose(rate, torch.clamp(x / TAU, 0, 0.3 / DT), atol=0.1)
    assert (rate.diff() >= 0).all() and rate[-1] == 0.3 / DT


def test_gradient_is_the_spike_representation_formula():
    torch.manual_seed(0)
    T, B, n = 20, 4, 50
    xs = (torch.randn(T, B, n, dtype=torch.float64) * 4 + 2).requires_grad_()
    pop = DSR(n, dt=DT, dtype=torch.float64)
    out, _ = pop(xs)
    g = torch.randn(T, B, n, dtype=torch.float64)
    (out * g).sum().backward()
    w = torch.tensor([math.exp(-(T - i) * DT / TAU) for i in range(1, T + 1)], dtype=torch.float64)
    w = w / w.sum()
    x_hat = (w[:, None, None] * xs.detach()).sum(0)
    g_hat = (w[:, None, None] * g).sum(0) * T
    top = 0.3 * TAU / DT
    expect = torch.where((x_hat > 0) & (x_hat < top), g_hat, 0.0) / (TAU * T)
    assert torch.allclose(xs.grad, expect.expand(T, B, n), rtol=1e-12, atol=1e-15)
    assert pop.threshold.grad.item() == pytest.approx(float((g_hat * (x_hat > top)).sum() * DT), rel=1e-12)


def test_threshold_floor_and_freezing():
    pop = DSR(3, dt=DT, v_th_floor=0.01)
    with torch.no_grad():
        pop.threshold.fill_(-1.0)
    pop(torch.ones(5, 1, 3))
    assert pop.threshold.item() == pytest.approx(0.01)
    assert not DSR(3, dt=DT, learn_threshold=False).threshold.requires_grad
    with pytest.raises(NeurosimError, match="alpha must be in"):
        DSRParameters(alpha=0.0)


def test_weighted_rate_closed_form():
    xs = torch.arange(1.0, 4.0, dtype=torch.float64)[:, None]   # 1, 2, 3
    b = math.exp(-DT / TAU)
    assert weighted_rate(xs, TAU, DT).item() == pytest.approx((b * b * 1 + b * 2 + 3) / (b * b + b + 1))
