"""The fused sequence path (neurosim.kernels.fused) against the step-by-step autograd loop.

Spikes and membranes must be identical; gradients (with respect to the input sequence and the
initial membrane, through a loss on spikes, membranes and the final state) within 1e-6 of the
largest gradient in float64.
"""
import itertools

import pytest
import torch

from neurosim import LI, LIF, NeurosimError
from neurosim.kernels.fused import SURROGATES, lif_sequence, lif_supported
from neurosim.neurons.base import Population

T, B, N = 40, 3, 50
G_TOL = 1e-6


def inputs(dtype, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(T, B, N, generator=g) * 0.6 + 0.25).to(dtype) * scale
    v0 = torch.rand(B, N, generator=g).to(dtype)
    cz = torch.randn(T, B, N, generator=g).to(dtype)
    cv = torch.randn(B, N, generator=g).to(dtype)
    return x, v0, cz, cv


def run(pop, x, v0, cz, cv, fused: bool):
    """Outputs and gradients of ``pop`` over ``x`` from membrane ``v0``, by ``LIF.forward`` (fused
    when supported) or by the step loop of ``Population.steps``."""
    x, v0 = x.clone().requires_grad_(), v0.clone().requires_grad_()
    state = pop.initial_state(B)._replace(v=v0)
    zs, state = pop(x, state) if fused else Population.steps(pop, x, state)
    ((zs * cz).sum() + (state.v * cv).sum()).backward()
    return zs.detach(), state, x.grad, v0.grad


def assert_same(fused, loop):
    zs, state, gx, gv0 = fused
    zs_ref, state_ref, gx_ref, gv0_ref = loop
    assert torch.equal(zs, zs_ref)
    for a, b in zip(state, state_ref):
        assert torch.equal(a.detach(), b.detach())
    for g, g_ref in ((gx, gx_ref), (gv0, gv0_ref)):
        assert (g - g_ref).abs().max() <= G_TOL * g_ref.abs().max()


@pytest.mark.parametrize("detach", [True, False], ids=["detach", "no_detach"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("spike_fn", list(SURROGATES))
def test_lif_fused_equals_step_loop(spike_fn, reset, detach):
    x, v0, cz, cv = inputs(torch.float64)
    pop = LIF(N, tau_mem=8.0, v_leak=-0.1, v_th=1.0, v_reset=0.2, reset=reset, detach_reset=detach,
              spike_fn=spike_fn, dt=1.0, dtype=torch.float64)
    assert lif_supported(pop.params, pop.dt, pop.spike_fn, x, v0)
    fused = run(pop, x, v0, cz, cv, True)
    assert 0.05 < fused[0].mean() < 0.5
    assert_same(fused, run(pop, x, v0, cz, cv, False))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_lif_fused_per_neuron_parameters_and_current_input(dtype, reset):
    g = torch.Generator().manual_seed(3)
    pop = LIF(N, tau_mem=torch.rand(N, generator=g) * 20 + 4, v_leak=torch.randn(N, generator=g) * 0.1,
              v_th=torch.rand(N, generator=g) * 0.5 + 0.8, v_reset=torch.randn(N, generator=g) * 0.1,
              reset=reset, input_mode="current", spike_fn="atan", dt=0.5, dtype=dtype)
    x, v0, cz, cv = inputs(dtype, scale=6.0)
    fused = run(pop, x, v0, cz, cv, True)
    assert 0.02 < fused[0].mean() < 0.5
    loop = run(pop, x, v0, cz, cv, False)
    if dtype == torch.float64:
        assert_same(fused, loop)
    else:
        assert torch.equal(fused[0], loop[0]) and torch.equal(fused[1].v, loop[1].v)
        for g, g_ref in zip(fused[2:], loop[2:]):
            assert (g - g_ref).abs().max() <= 1e-5 * g_ref.abs().max()


def test_lif_sequence_membranes_and_their_gradients():
    """The membrane sequence the fused function returns, and gradients through it."""
    x, v0, cz, cv = inputs(torch.float64, seed=1)
    pop = LIF(N, tau_mem=5.0, reset="zero", detach_reset=False, dt=1.0, dtype=torch.float64)
    cvs = torch.randn(T, B, N, dtype=torch.float64)
    grads, seqs = [], []
    for fused in (True, False):
        xs, v = x.clone().requires_grad_(), v0.clone().requires_grad_()
        if fused:
            zs, vs = lif_sequence(xs, v, pop.params, pop.dt, pop.spike_fn, membranes=True)
        else:
            state, out = pop.initial_state(B)._replace(v=v), []
            for t in range(T):
                z, state = pop.step(xs[t], state)
                out.append((z, state.v))
            zs, vs = (torch.stack(s) for s in zip(*out))
        ((zs * cz).sum() + (vs * cvs).sum()).backward()
        seqs.append((zs.detach(), vs.detach()))
        grads.append((xs.grad, v.grad))
    assert all(torch.equal(a, b) for a, b in zip(*seqs))
    for g, g_ref in zip(*grads):
        assert (g - g_ref).abs().max() <= G_TOL * g_ref.abs().max()


def test_lif_without_gradients_and_across_calls():
    """No graph needed; a state handed from one call to the next continues the sequence."""
    x, v0, *_ = inputs(torch.float32, seed=2)
    pop = LIF(N, tau_mem=10.0, dt=1.0)
    with torch.no_grad():
        z_all, s_all = pop(x)
        z1, s1 = pop(x[:15])
        z2, s2 = pop(x[15:], s1)
        z_ref, s_ref = Population.steps(pop, x)
    assert torch.equal(z_all, z_ref) and torch.equal(s_all.v, s_ref.v)
    assert torch.equal(torch.cat([z1, z2]), z_all) and torch.equal(s2.v, s_all.v)


def test_lif_gradients_flow_across_calls():
    """BPTT through a state handed from one call to the next equals BPTT through one call."""
    x, v0, cz, cv = inputs(torch.float64, seed=5)
    pop = LIF(N, tau_mem=6.0, reset="zero", spike_fn="atan", dt=1.0, dtype=torch.float64)
    grads = []
    for split in (T, 15):
        xs, v = x.clone().requires_grad_(), v0.clone().requires_grad_()
        z1, state = pop(xs[:split], pop.initial_state(B)._replace(v=v))
        z2, state = pop(xs[split:], state) if split < T else (z1[:0], state)
        ((torch.cat([z1, z2]) * cz).sum() + (state.v * cv).sum()).backward()
        grads.append((xs.grad, v.grad))
    for g, g_ref in zip(*grads):
        assert (g - g_ref).abs().max() <= G_TOL * g_ref.abs().max()


@pytest.mark.parametrize("bad, message", [(float("nan"), "contains NaN"), (float("inf"), "contains infinite values")])
def test_lif_fused_rejects_non_finite_input(bad, message):
    """The fused kernel checks the input it reads, with the message of the step loop's check."""
    x, *_ = inputs(torch.float32)
    x[T - 1, B - 1, N - 1] = bad
    with pytest.raises(NeurosimError, match=rf"input to LIF\({N}\) {message}"):
        LIF(N, dt=1.0)(x)


LEARNABLE_TAU = torch.full((N,), 10.0, requires_grad=True)


@pytest.mark.parametrize("option", [dict(tau_ref=2.0), dict(tau_syn_exc=5.0), dict(tau_mem=LEARNABLE_TAU)])
def test_lif_falls_back_to_the_step_loop(option):
    """Refractory steps, synaptic currents and learnable parameters take the step loop; results agree."""
    x, v0, cz, cv = inputs(torch.float64, scale=2.0)
    pop = LIF(N, dt=1.0, dtype=torch.float64, **option)
    assert not lif_supported(pop.params, pop.dt, pop.spike_fn, x, v0)
    assert_same(run(pop, x, v0, cz, cv, True), run(pop, x, v0, cz, cv, False))


@pytest.mark.parametrize("option", [dict(method="euler"), dict(tau_ref=torch.full((N,), 2.0)),
                                    dict(method="euler", input_mode="current")])
def test_lif_outside_the_fused_kernel_runs_the_step_loop(option):
    """Forward Euler and per-neuron refractory periods, which the fused kernel does not compute, run
    the step loop (the fused kernel would give the exact method's spikes)."""
    x, v0, cz, cv = inputs(torch.float64, scale=2.0)
    pop = LIF(N, dt=1.0, tau_mem=5.0, dtype=torch.float64, **option)
    assert not lif_supported(pop.params, pop.dt, pop.spike_fn, x, v0)
    assert_same(run(pop, x, v0, cz, cv, True), run(pop, x, v0, cz, cv, False))
    if "method" in option:
        exact = LIF(N, dt=1.0, tau_mem=5.0, dtype=torch.float64, **{k: v for k, v in option.items() if k != "method"})
        assert not torch.equal(run(pop, x, v0, cz, cv, True)[0], run(exact, x, v0, cz, cv, True)[0])


@pytest.mark.parametrize("dtype, mode", list(itertools.product([torch.float32, torch.float64], ["jump", "current"])))
def test_li_fused_equals_step_loop(dtype, mode):
    g = torch.Generator().manual_seed(4)
    pop = LI(N, tau_mem=torch.rand(N, generator=g) * 10 + 2, v_leak=0.3, input_mode=mode, dt=1.0, dtype=dtype)
    x, v0, cz, cv = inputs(dtype)
    res = []
    for fused in (True, False):
        xs, v = x.clone().requires_grad_(), v0.clone().requires_grad_()
        state = pop.initial_state(B)._replace(v=v)
        vs, state = pop(xs, state) if fused else Population.steps(pop, xs, state)
        ((vs * cz).sum() + (state.v * cv).sum()).backward()
        res.append((vs.detach(), state.v.detach(), xs.grad, v.grad))
    (vs, v_end, gx, gv0), (vs_ref, v_end_ref, gx_ref, gv0_ref) = res
    assert torch.equal(vs, vs_ref) and torch.equal(v_end, v_end_ref)
    tol = G_TOL if dtype == torch.float64 else 1e-5
    for g, g_ref in ((gx, gx_ref), (gv0, gv0_ref)):
        assert (g - g_ref).abs().max() <= tol * g_ref.abs().max()
