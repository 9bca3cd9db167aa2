"""LIF, adaptive LIF and adaptive-threshold LIF against Brian2 (numpy target, float64), step for step,
with the exact and the forward Euler integration.

Brian2 monitors record with ``when='end'``, so row ``k`` is the state after step ``k``'s update,
threshold and reset, like the state neurosim returns from step ``k``. Brian2 stamps a spike with
the start of its step, so spike steps compare directly.
"""
import numpy as np
import pytest
import torch

b2 = pytest.importorskip("brian2")
from brian2 import mV, ms  # noqa: E402

from neurosim.neurons import ALIF, LIF, AdaptiveThresholdLIF  # noqa: E402

b2.prefs.codegen.target = "numpy"

DT = 0.1  # ms
T = 3000  # steps (300 ms)
TOL = 1e-9  # mV (and for the dimensionless adaptation variable)


def brian2_run(group, monitored, duration_steps, clock, extra=(), units=None):
    """Run ``group`` (plus ``extra`` objects); return the end-of-step traces (in ``units``, default mV)
    and the spike raster."""
    units = units or {}
    state = b2.StateMonitor(group, monitored, record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    b2.Network(group, state, spikes, *extra).run(duration_steps * clock.dt, namespace={})
    raster = np.zeros((duration_steps, len(group)), dtype=bool)
    raster[np.round(spikes.t / clock.dt).astype(int), spikes.i[:]] = True
    return {name: np.asarray(getattr(state, name)[:].T / units.get(name, mV)) for name in monitored}, raster


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
    """LIF, input_mode="current", 2 ms refractory, reset to v_reset: same membrane (1e-9 mV) and spike steps
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
    driven by input spikes: same membrane (1e-9 mV) and spike steps as Brian2.

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
    w += b) with 2 ms refractory under a TimedArray current: same v and w (1e-9 mV) and spike steps as
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


def per_neuron(**values):
    """Per-neuron parameters as float64 tensors for neurosim and as the same values with units for Brian2."""
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}


@pytest.mark.parametrize("method", ["exact", "euler"])
def test_lif_per_neuron_matches_brian2(method):
    """LIF with per-neuron tau_m, v_th and refractory period (0 to 3.5 ms) under a TimedArray current:
    same membrane (1e-9 mV) and spike steps as Brian2 with method='exact' / 'euler'."""
    n = 4
    tau_m, v_th, ref = [8.0, 10.0, 15.0, 20.0], [-52.0, -50.0, -51.0, -49.0], [0.0, 1.0, 2.0, 3.5]
    current = fluctuating_current(n, seed=0)
    clock = b2.Clock(dt=DT * ms)
    group = b2.NeuronGroup(
        n, """dv/dt = (v_l - v + I_in(t, i)) / tau_m : volt (unless refractory)
              tau_m : second (constant)
              v_th : volt (constant)
              ref : second (constant)""",
        threshold="v > v_th", reset="v = v_reset", refractory="ref", method=method, clock=clock,
        namespace=dict(v_l=-70 * mV, v_reset=-65 * mV, I_in=b2.TimedArray(current * mV, dt=DT * ms)))
    group.tau_m, group.v_th, group.ref = np.array(tau_m) * ms, np.array(v_th) * mV, np.array(ref) * ms
    group.v = -70 * mV
    ref_traces, ref_spikes = brian2_run(group, ["v"], T, clock)

    model = LIF(n, v_leak=-70.0, v_reset=-65.0, reset="zero", input_mode="current", method=method, dt=DT,
                dtype=torch.float64, **per_neuron(tau_mem=tau_m, v_th=v_th, tau_ref=ref))
    got, spikes = neurosim_run(model, current)

    assert spikes.sum(0).min() >= 10
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref_traces["v"]).max() < TOL


def test_lif_euler_exponential_synapses_match_brian2():
    """LIF with exponential synapses (5 ms and per-neuron inhibitory 8-12 ms) and 2 ms refractory,
    integrated by forward Euler as Brian2's method='euler' (v, ge and gi all from the state at the
    start of the step): same membrane (1e-9 mV) and spike steps. Input timing as in
    test_lif_exponential_synapses_match_brian2."""
    n, n_exc, n_inh = 3, 40, 10
    rng = np.random.default_rng(1)
    inputs = rng.random((T, n_exc + n_inh)) < 0.006
    w_exc = rng.uniform(2.0, 5.0, (n_exc, n))
    w_inh = -rng.uniform(1.0, 3.0, (n_inh, n))
    tau_i = [8.0, 10.0, 12.0]

    clock = b2.Clock(dt=DT * ms)
    steps, sources = np.nonzero(inputs)
    source = b2.SpikeGeneratorGroup(n_exc + n_inh, sources, steps * DT * ms, clock=clock)
    group = b2.NeuronGroup(
        n, """dv/dt = (v_l - v + ge + gi) / tau_m : volt (unless refractory)
              dge/dt = -ge / tau_e : volt
              dgi/dt = -gi / tau_i : volt
              tau_i : second (constant)""",
        threshold="v > v_th", reset="v = v_reset", refractory=2 * ms, method="euler", clock=clock,
        namespace=dict(v_l=-65 * mV, tau_m=20 * ms, tau_e=5 * ms, v_th=-50 * mV, v_reset=-60 * mV))
    group.v = -65 * mV
    group.tau_i = np.array(tau_i) * ms
    synapses = []
    for target, weights, offset in (("ge", w_exc, 0), ("gi", w_inh, n_exc)):
        syn = b2.Synapses(source, group, "w : volt", on_pre=f"{target} += w", clock=clock)
        pre, post = np.nonzero(np.ones_like(weights))
        syn.connect(i=pre + offset, j=post)
        syn.w = weights[pre, post] * mV
        synapses.append(syn)
    ref, ref_spikes = brian2_run(group, ["v", "ge", "gi"], T, clock, extra=[source, *synapses])

    x_exc, x_inh = np.zeros((T, n)), np.zeros((T, n))
    x_exc[1:] = inputs[:-1, :n_exc] @ w_exc
    x_inh[1:] = inputs[:-1, n_exc:] @ w_inh
    model = LIF(n, tau_mem=20.0, v_leak=-65.0, v_th=-50.0, v_reset=-60.0, tau_ref=2.0, reset="zero",
                tau_syn_exc=5.0, tau_syn_inh=torch.tensor(tau_i, dtype=torch.float64), method="euler", dt=DT,
                dtype=torch.float64)
    got, spikes = neurosim_run(model, x_exc, x_inh)

    assert spikes.sum() >= 40
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref["v"]).max() < TOL
    # neurosim's currents include the input of the step that follows (added at its start)
    assert np.abs(got["i_exc"][:-1] + x_exc[1:] - ref["ge"][:-1]).max() < TOL


@pytest.mark.parametrize("method", [pytest.param("exact", marks=pytest.mark.slow), "euler"])
def test_alif_per_neuron_matches_brian2(method):
    """Adaptive LIF with per-neuron tau_m, tau_w, a, b, v_th and refractory period (0 to 3.5 ms; a > 0
    and tau_w >> tau_m keep every neuron's eigenvalues real, which Brian2's symbolic exact solution
    needs): same v and w (1e-9 mV) and spike steps as Brian2 with method='exact' / 'euler'. (The
    exact case is slow: Brian2's symbolic solution with per-neuron constants takes 10-20 s; the fast
    suite has the per-neuron propagator equal to the scalar one, test_neuron_params.py, and the
    scalar one against Brian2.)"""
    n = 4
    values = dict(tau_mem=[10.0, 15.0, 20.0, 25.0], tau_adapt=[80.0, 150.0, 100.0, 300.0], a=[0.1, 0.3, 0.5, 0.2],
                  b=[1.0, 2.0, 3.0, 1.5], v_th=[-52.0, -50.0, -51.0, -49.0], tau_ref=[0.0, 1.0, 2.0, 3.5])
    current = fluctuating_current(n, seed=2) + 14.0
    clock = b2.Clock(dt=DT * ms)
    group = b2.NeuronGroup(
        n, """dv/dt = (v_l - v - w + I_in(t, i)) / tau_m : volt (unless refractory)
              dw/dt = (a * (v - v_l) - w) / tau_w : volt
              tau_m : second (constant)
              tau_w : second (constant)
              a : 1 (constant)
              b : volt (constant)
              v_th : volt (constant)
              ref : second (constant)""",
        threshold="v > v_th", reset="v = v_reset; w += b", refractory="ref", method=method, clock=clock,
        namespace=dict(v_l=-70 * mV, v_reset=-65 * mV, I_in=b2.TimedArray(current * mV, dt=DT * ms)))
    group.tau_m, group.tau_w = np.array(values["tau_mem"]) * ms, np.array(values["tau_adapt"]) * ms
    group.a, group.b = values["a"], np.array(values["b"]) * mV
    group.v_th, group.ref = np.array(values["v_th"]) * mV, np.array(values["tau_ref"]) * ms
    group.v = -70 * mV
    ref, ref_spikes = brian2_run(group, ["v", "w"], T, clock)

    model = ALIF(n, v_leak=-70.0, v_reset=-65.0, reset="zero", input_mode="current", method=method, dt=DT,
                 dtype=torch.float64, **per_neuron(**values))
    got, spikes = neurosim_run(model, current)

    assert spikes.sum(0).min() >= 10
    assert got["w"].max() > 5.0
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref["v"]).max() < TOL
    assert np.abs(got["w"] - ref["w"]).max() < TOL


@pytest.mark.parametrize("method", ["exact", "euler"])
def test_adaptive_threshold_lif_matches_brian2(method):
    """The adaptive-threshold LIF (threshold v_th + b a, a += 1 per spike, a decaying with tau_a also
    while refractory) with per-neuron tau_m, v_th, tau_a, b and refractory period (0 to 5 ms) under a
    TimedArray current: same v (1e-9 mV), same a (1e-9) and spike steps as Brian2 with
    method='exact' / 'euler'."""
    n = 5
    values = dict(tau_mem=[8.0, 10.0, 15.0, 20.0, 25.0], tau_adapt=[80.0, 150.0, 200.0, 300.0, 500.0],
                  v_th=[-52.0, -50.0, -51.0, -49.0, -50.5], b=[0.5, 1.0, 2.0, 3.0, 1.5],
                  tau_ref=[0.0, 1.0, 2.0, 3.5, 5.0])
    current = fluctuating_current(n, seed=4) + 6.0
    clock = b2.Clock(dt=DT * ms)
    group = b2.NeuronGroup(
        n, """dv/dt = (v_l - v + I_in(t, i)) / tau_m : volt (unless refractory)
              da/dt = -a / tau_a : 1
              tau_m : second (constant)
              tau_a : second (constant)
              v_th : volt (constant)
              b : volt (constant)
              ref : second (constant)""",
        threshold="v > v_th + b * a", reset="v = v_reset; a += 1", refractory="ref", method=method, clock=clock,
        namespace=dict(v_l=-70 * mV, v_reset=-65 * mV, I_in=b2.TimedArray(current * mV, dt=DT * ms)))
    group.tau_m, group.tau_a = np.array(values["tau_mem"]) * ms, np.array(values["tau_adapt"]) * ms
    group.v_th, group.b = np.array(values["v_th"]) * mV, np.array(values["b"]) * mV
    group.ref = np.array(values["tau_ref"]) * ms
    group.v = -70 * mV
    ref, ref_spikes = brian2_run(group, ["v", "a"], T, clock, units={"a": 1})

    model = AdaptiveThresholdLIF(n, v_leak=-70.0, v_reset=-65.0, reset="zero", input_mode="current", method=method,
                                 dt=DT, dtype=torch.float64, **per_neuron(**values))
    got, spikes = neurosim_run(model, current)

    assert spikes.sum(0).min() >= 8
    assert (got["a"].max(0) * np.array(values["b"])).min() > 4.0  # every threshold rose by more than 4 mV
    np.testing.assert_array_equal(spikes, ref_spikes)
    assert np.abs(got["v"] - ref["v"]).max() < TOL
    assert np.abs(got["a"] - ref["a"]).max() < TOL
