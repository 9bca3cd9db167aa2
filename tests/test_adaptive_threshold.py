"""The adaptive-threshold LIF: its surrogate gradient reaches the membrane and the adaptation, and
the adaptation's increment carries the spike's gradient (the Brian2 comparison is in
test_brian2_lif.py)."""
import math

import pytest
import torch

from neurosim.neurons import AdaptiveThresholdLIF, AdaptiveThresholdLIFState, adaptive_threshold_step
from neurosim.neurons import surrogate


def test_one_step_gradient_is_the_surrogate_times_the_closed_form():
    """z = S(v' - v_th - b a'), v' = v_L + (v - v_L) beta + (1 - beta) x, a' = rho a:
    dz/dx = S' (1 - beta), dz/da = -S' b rho, dz/dv = S' beta."""
    dt, tau_m, tau_a, b, v_th = 1.0, 10.0, 100.0, torch.tensor([0.5, 1.5, 2.0], dtype=torch.float64), 1.0
    pop = AdaptiveThresholdLIF(3, tau_mem=tau_m, tau_adapt=tau_a, b=b, v_th=v_th, input_mode="current", dt=dt,
                               dtype=torch.float64, spike_fn="atan")
    x = torch.tensor([[4.0, 12.0, 20.0]], dtype=torch.float64, requires_grad=True)
    v = torch.tensor([[0.5, 0.9, 0.2]], dtype=torch.float64, requires_grad=True)
    a = torch.tensor([[0.3, 0.1, 2.0]], dtype=torch.float64, requires_grad=True)
    state = AdaptiveThresholdLIFState(v, a, torch.zeros(1, 3, dtype=torch.int32))
    z, _ = adaptive_threshold_step(x, state, pop.params, dt, pop.spike_fn)
    z.sum().backward()
    beta, rho = math.exp(-dt / tau_m), math.exp(-dt / tau_a)
    v_new = v.detach() * beta + (1 - beta) * x.detach()
    s = surrogate("atan").derivative(v_new - v_th - b * rho * a.detach())
    torch.testing.assert_close(x.grad, s * (1 - beta), rtol=1e-14, atol=0)
    torch.testing.assert_close(v.grad, s * beta, rtol=1e-14, atol=0)
    torch.testing.assert_close(a.grad, -s * b * rho, rtol=1e-14, atol=0)


def test_the_adaptation_increment_carries_the_spike_gradient():
    """Over two steps the second spike depends on the first through a (a += z): with the membrane
    reset detached, the input of step 0 still reaches z_1 through the threshold."""
    pop = AdaptiveThresholdLIF(1, tau_mem=10.0, tau_adapt=100.0, b=1.0, v_th=1.0, reset="zero", dt=1.0,
                               dtype=torch.float64, spike_fn="fast_sigmoid")
    x0 = torch.tensor([[2.0]], dtype=torch.float64, requires_grad=True)
    z0, state = pop.step(x0)
    z1, _ = pop.step(torch.tensor([[3.0]], dtype=torch.float64), state)
    assert z0.item() == 1.0 and z1.item() == 1.0
    (g,) = torch.autograd.grad(z1.sum(), x0)
    rho = math.exp(-1 / 100.0)
    s0 = surrogate("fast_sigmoid").derivative(torch.tensor(2.0 - 1.0))
    s1 = surrogate("fast_sigmoid").derivative(torch.tensor(3.0 - (1.0 + rho)))
    assert g.item() == pytest.approx((s1 * -rho * s0).item(), rel=1e-14)
