"""LIF and adaptive LIF against Brian2 (numpy target, float64), step for step.

Brian2 monitors record with ``when='end'``, so row ``k`` is the state after step ``k``'s update,
threshold and reset, like the state neurosim returns from step ``k``. Brian2 stamps a spike with
the start of its step, so spike steps compare directly.
"""
import numpy as np
import pytest
import torch

b2 = pytest.importorskip("brian2")
from brian2 import mV, ms  # noqa: E402

from neurosim.neurons import ALIF, LIF  # noqa: E402

b2.prefs.codegen.target = "numpy"

DT = 0.1  # ms
T = 3000  # steps (300 ms)
TOL = 1e-6  # mV


def brian2_run(group, monitored, duration_steps, clock, extra=()):
    """Run ``group`` (plus ``extra`` objects); return the end-of-step traces and the spike raster."""
    state = b2.StateMonitor(group, monitored, record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    b2.Network(group, state, spikes, *extra).run(duration_steps * clock.dt, namespace={})
    raster = np.zeros((duration_steps, len(group)), dtype=bool)
    raster[np.round(spikes.t / clock.dt).astype(int), spikes.i[:]] = True
    return {name: getattr(state, name)[:].T / mV for name in monitored}, raster


def neurosim_run(model, xs, xs_inh=None):
    """Step ``model`` over ``xs`` ``[T, N]`` (batch of one); return the state traces and the spike raster."""
    state = model.initial_state(1)
    traces, zs = [], []
    for k, x in enumerate(torch.as_tensor(xs)):
        if xs_inh is None:
            z, state = model.step(x[None], state)
        else:
            z, state = model.step(x[None], state, x_inh=torch.as_tensor(xs_inh[k])[None])
        traces.append(state)
        zs.append(z[0])
    fields = {name: torch.stack([getattr(s, name)[0] for s in traces]).numpy() for name in state._fields}
    return fields, torch.stack(zs).numpy() > 0


def fluctuating_current(n, seed):
    """A time-varying current (mV, i.e. R I) per neuron: slow sinusoids plus step-to-step noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(T)[:, None] * DT
    return 32.0 + 14.0 * np.sin(2 * np.pi * time / (30.0 + 11.0 * np.arange(n))) + 4.0 * rng.standard_normal((T, n))


def test_lif_current_input_with_refractory_matches_brian2():
    """LIF, input_mode="current", 2 ms refractory, reset to v_reset: same membrane (1e-6 mV) and spike steps
    as Brian2 with method='exact' and the same TimedArray current."""
    n = 4
    current = fluctuating_current(n, seed=0)
    clock = b2.Clock(dt=DT * ms)
    drive = b2.TimedArray(current * mV, dt=DT * ms)
    group = b2.NeuronGroup(
        n, "dv/dt = (v_l - v + I_in(t, i)) / tau_m : volt (unless refractory)",
        threshold="v > v_th", reset="v = v_reset", refractory=2 * ms, method="exact", clock=clock,
        namespace=dict(v_l=-70 * mV, tau_m=10 * ms, v_th=-50 * mV, v_reset=-65 * mV, I_in=drive))
    group.v = -70 * mV
    ref, ref_spikes = brian2_run(group, ["v"], T, clock)

    model = LIF(n, tau_mem=10.0, v_leak=-70.0, v_th=-50.0, v_reset=-65.0, tau_ref=2.0, reset="zero",
                input_mode="current", dt=DT, dtype=torch.float64)
    got, spikes = neurosim_run(model, current)

    assert spikes.sum() >= 80
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref["v"]).max() < TOL


def test_lif_exponential_synapses_match_brian2():
    """LIF with current-based exponential synapses (tau_syn_exc 5 ms, tau_syn_inh 10 ms) and 2 ms refractory,
    driven by input spikes: same membrane (1e-6 mV) and spike steps as Brian2.

    Brian2 delivers an input spike of step k (``ge += w``) after that step's update, so it first moves
    ``v`` in step k + 1; neurosim adds ``x`` to ``i_exc`` at the start of the step, so the projected
    jump of step k's input spikes is fed as ``x`` of step k + 1.
    """
    n, n_exc, n_inh = 3, 40, 10
    rng = np.random.default_rng(1)
    inputs = rng.random((T, n_exc + n_inh)) < 0.006  # 60 Hz per source
    w_exc = rng.uniform(2.0, 5.0, (n_exc, n))
    w_inh = -rng.uniform(1.0, 3.0, (n_inh, n))

    clock = b2.Clock(dt=DT * ms)
    steps, sources = np.nonzero(inputs)
    source = b2.SpikeGeneratorGroup(n_exc + n_inh, sources, steps * DT * ms, clock=clock)
    group = b2.NeuronGroup(
        n, """dv/dt = (v_l - v + ge + gi) / tau_m : volt (unless refractory)
              dge/dt = -ge / tau_e : volt
              dgi/dt = -gi / tau_i : volt""",
        threshold="v > v_th", reset="v = v_reset", refractory=2 * ms, method="exact", clock=clock,
        namespace=dict(v_l=-65 * mV, tau_m=20 * ms, tau_e=5 * ms, tau_i=10 * ms, v_th=-50 * mV, v_reset=-60 * mV))
    group.v = -65 * mV
    synapses = []
    for target, weights, offset in (("ge", w_exc, 0), ("gi", w_inh, n_exc)):
        syn = b2.Synapses(source, group, "w : volt", on_pre=f"{target} += w", clock=clock)
        pre, post = np.nonzero(np.ones_like(weights))
        syn.connect(i=pre + offset, j=post)
        syn.w = weights[pre, post] * mV
        synapses.append(syn)
    ref, ref_spikes = brian2_run(group, ["v"], T, clock, extra=[source, *synapses])

    x_exc, x_inh = np.zeros((T, n)), np.zeros((T, n))
    x_exc[1:] = inputs[:-1, :n_exc] @ w_exc
    x_inh[1:] = inputs[:-1, n_exc:] @ w_inh
    model = LIF(n, tau_mem=20.0, v_leak=-65.0, v_th=-50.0, v_reset=-60.0, tau_ref=2.0, reset="zero",
                tau_syn_exc=5.0, tau_syn_inh=10.0, dt=DT, dtype=torch.float64)
    got, spikes = neurosim_run(model, x_exc, x_inh)

    assert spikes.sum() >= 40
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref["v"]).max() < TOL


def test_alif_matches_brian2_exact():
    """Adaptive LIF (tau_m dv/dt = v_L - v - w + I, tau_w dw/dt = a (v - v_L) - w; spike: v = v_reset,
    w += b) with 2 ms refractory under a TimedArray current: same v and w (1e-6 mV) and spike steps as
    Brian2 with method='exact'. a = 0.5 with tau_m 20 ms, tau_w 100 ms gives real eigenvalues."""
    n, tau_m, tau_w, a, b = 4, 20.0, 100.0, 0.5, 2.0
    current = fluctuating_current(n, seed=2) + 14.0
    clock = b2.Clock(dt=DT * ms)
    drive = b2.TimedArray(current * mV, dt=DT * ms)
    group = b2.NeuronGroup(
        n, """dv/dt = (v_l - v - w + I_in(t, i)) / tau_m : volt (unless refractory)
              dw/dt = (a * (v - v_l) - w) / tau_w : volt""",
        threshold="v > v_th", reset="v = v_reset; w += b", refractory=2 * ms, method="exact", clock=clock,
        namespace=dict(v_l=-70 * mV, tau_m=tau_m * ms, tau_w=tau_w * ms, a=a, b=b * mV, v_th=-50 * mV,
                       v_reset=-65 * mV, I_in=drive))
    group.v = -70 * mV
    ref, ref_spikes = brian2_run(group, ["v", "w"], T, clock)

    model = ALIF(n, tau_mem=tau_m, tau_adapt=tau_w, a=a, b=b, v_leak=-70.0, v_th=-50.0, v_reset=-65.0,
                 tau_ref=2.0, reset="zero", input_mode="current", dt=DT, dtype=torch.float64)
    got, spikes = neurosim_run(model, current)

    assert spikes.sum() >= 50
    assert got["w"].max() > 5.0  # adaptation is substantial
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref["v"]).max() < TOL
    assert np.abs(got["w"] - ref["w"]).max() < TOL
