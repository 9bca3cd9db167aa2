"""Izhikevich neurons against Brian2 (numpy target, float64) running the same two-half-step scheme.

Brian2 integrates ``v`` with two Euler half steps of dt/2 holding ``u``, then ``u`` with one step of
dt using the new ``v`` (a ``run_regularly`` block in the neuron update slot), fires on ``v >= 30`` and
resets ``v = c; u += d``. The block is written one arithmetic operation per statement, in the order
``izhikevich_step`` evaluates it: Brian2 would otherwise reorder the sums (how depends on how the
expression is written), and the scheme amplifies such last-digit differences (the overshoot of
``v`` in a spike step feeds ``u``) into different spike steps within a few hundred milliseconds.
In the same order the two agree bit for bit.

Both schedules update with ``net.m``'s ``0.04*v^2 + 5*v + 140 - u + I`` left to right, ``v^2``
first (Brian2 generates ``0.04 * (v ** 2)`` for it). ``schedule="update_first"`` is Brian2's
default schedule (update, threshold, reset); ``schedule="threshold_first"`` is the order of
Izhikevich's ``net.m`` (threshold on the previous step's state, reset, update), which Brian2 runs
with the network schedule ``thresholds, resets, groups``.
"""
import numpy as np
import pytest
import torch

b2 = pytest.importorskip("brian2")
from brian2 import ms  # noqa: E402

from neurosim.neurons import IZHIKEVICH_TYPES, Izhikevich  # noqa: E402

b2.prefs.codegen.target = "numpy"

DURATION = 500.0  # ms
ONSET = 50.0  # ms

_NETM_HALF_STEP = """
q = 0.04 * v**2
q = q + 5.0 * v
q = q + 140.0
q = q - u
q = q + I_in(t, i)
q = h * q
v = v + q
"""
_U_STEP = """
g = dt_ms * a
s = b * v
s = s - u
s = g * s
u = u + s
"""
STEP = _NETM_HALF_STEP * 2 + _U_STEP
SCHEDULES = {"update_first": None, "threshold_first": ["start", "thresholds", "resets", "groups", "synapses", "end"]}


def brian2_izhikevich(a, b, c, d, current, dt, schedule="update_first"):
    """Brian2 run of per-neuron ``a, b, c, d`` on ``current`` ``[T, N]`` with neurosim's ``schedule``;
    returns end-of-step v, u and spikes."""
    steps, n = current.shape
    clock = b2.Clock(dt=dt * ms)
    group = b2.NeuronGroup(
        n, "v : 1\nu : 1\na : 1 (constant)\nb : 1 (constant)\nc : 1 (constant)\nd : 1 (constant)",
        threshold="v >= 30", reset="v = c; u += d", clock=clock,
        namespace=dict(I_in=b2.TimedArray(current, dt=dt * ms), h=0.5 * dt, dt_ms=dt))
    group.a, group.b, group.c, group.d = a, b, c, d
    group.v = -65.0
    group.u = b * -65.0
    group.run_regularly(STEP, when="groups")
    state = b2.StateMonitor(group, ["v", "u"], record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    net = b2.Network(group, state, spikes)
    if SCHEDULES[schedule] is not None:
        net.schedule = SCHEDULES[schedule]
    net.run(steps * dt * ms, namespace={})
    raster = np.zeros((steps, n), dtype=bool)
    raster[np.round(spikes.t / (dt * ms)).astype(int), spikes.i[:]] = True
    return state.v[:].T, state.u[:].T, raster


def neurosim_izhikevich(model, current):
    """Step ``model`` over ``current`` ``[T, N]``; returns v, u after each step and the spike raster."""
    state = model.initial_state(1)
    vs, us, zs = [], [], []
    for x in torch.as_tensor(current):
        z, state = model.step(x[None], state)
        vs.append(state.v[0])
        us.append(state.u[0])
        zs.append(z[0])
    return torch.stack(vs).numpy(), torch.stack(us).numpy(), torch.stack(zs).numpy() > 0


def step_protocols(dt):
    """Three neurons: a step of 10 and a step of 5 from ONSET on, and -10 from ONSET to 250 ms then
    release (rebound)."""
    steps, onset, release = int(DURATION / dt), int(ONSET / dt), int(250.0 / dt)
    current = np.zeros((steps, 3))
    current[onset:, 0] = 10.0
    current[onset:, 1] = 5.0
    current[onset:release, 2] = -10.0
    return current, release


@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("cell_type", list(IZHIKEVICH_TYPES))
def test_cell_type_matches_brian2(cell_type, dt):
    """Each Izhikevich (2003) cell type under step currents (and a hyperpolarising step then release):
    identical spike steps and bit-identical v, u as Brian2 at dt 1 ms and 0.5 ms."""
    current, release = step_protocols(dt)
    n = current.shape[1]
    a, b, c, d = (np.full(n, value) for value in IZHIKEVICH_TYPES[cell_type])
    ref_v, ref_u, ref_spikes = brian2_izhikevich(a, b, c, d, current, dt)
    v, u, spikes = neurosim_izhikevich(Izhikevich(n, cell_type=cell_type, dt=dt, dtype=torch.float64), current)

    assert spikes[:, 0].sum() >= 8
    if cell_type == "TC":
        assert spikes[release:, 2].any()  # rebound burst
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v, ref_v)
    np.testing.assert_array_equal(u, ref_u)


@pytest.mark.parametrize("dt", [1.0, 0.5])
def test_heterogeneous_population_matches_brian2(dt):
    """One population with per-neuron a, b, c, d (tensor parameters, drawn as in Izhikevich's 2003 network:
    40 excitatory, 10 inhibitory) and per-neuron step amplitudes plus noise: identical spike steps and
    bit-identical v, u as Brian2."""
    rng = np.random.default_rng(3)
    n_exc, n_inh = 40, 10
    r_exc, r_inh = rng.random(n_exc), rng.random(n_inh)
    a = np.concatenate([np.full(n_exc, 0.02), 0.02 + 0.08 * r_inh])
    b = np.concatenate([np.full(n_exc, 0.2), 0.25 - 0.05 * r_inh])
    c = np.concatenate([-65.0 + 15.0 * r_exc**2, np.full(n_inh, -65.0)])
    d = np.concatenate([8.0 - 6.0 * r_exc**2, np.full(n_inh, 2.0)])
    n, steps = n_exc + n_inh, int(DURATION / dt)
    current = np.zeros((steps, n))
    current[int(ONSET / dt):] = rng.uniform(3.0, 14.0, n)
    current += rng.standard_normal((steps, n))

    ref_v, ref_u, ref_spikes = brian2_izhikevich(a, b, c, d, current, dt)
    model = Izhikevich(n, a=torch.tensor(a), b=torch.tensor(b), c=torch.tensor(c), d=torch.tensor(d),
                       dt=dt, dtype=torch.float64)
    v, u, spikes = neurosim_izhikevich(model, current)

    assert spikes.sum() >= 200
    assert (spikes.sum(0) > 0).mean() > 0.9
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v, ref_v)
    np.testing.assert_array_equal(u, ref_u)


def ramp_and_pulses(dt, duration=1000.0):
    """Two neurons: a slow ramp from 0 at 100 ms to 15 at 1000 ms, and 5 ms pulses of 12 every 50 ms from 100 ms."""
    t = np.arange(int(duration / dt)) * dt
    current = np.zeros((t.size, 2))
    current[:, 0] = np.clip((t - 100.0) / 900.0, 0.0, None) * 15.0
    current[:, 1] = np.where((t % 50.0 < 5.0) & (t >= 100.0), 12.0, 0.0)
    return current


@pytest.mark.parametrize("dt", [1.0, 0.5])
@pytest.mark.parametrize("cell_type", list(IZHIKEVICH_TYPES))
def test_threshold_first_schedule_matches_brian2(cell_type, dt):
    """Each cell type under a slow ramp and a pulse train with net.m's schedule (threshold on the
    previous step's state, reset, update): identical spike steps (reported in the step that detects
    them) and bit-identical v, u as Brian2 running that schedule."""
    current = ramp_and_pulses(dt)
    n = current.shape[1]
    a, b, c, d = (np.full(n, value) for value in IZHIKEVICH_TYPES[cell_type])
    ref_v, ref_u, ref_spikes = brian2_izhikevich(a, b, c, d, current, dt, schedule="threshold_first")
    model = Izhikevich(n, cell_type=cell_type, schedule="threshold_first", dt=dt, dtype=torch.float64)
    v, u, spikes = neurosim_izhikevich(model, current)

    assert (spikes.sum(0) >= 14).all()
    assert v.max() >= 30  # the state keeps the peak until the next step's reset
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_array_equal(v, ref_v)
    np.testing.assert_array_equal(u, ref_u)


@pytest.mark.parametrize("cell_type", ["RS", "CH", "FS"])
def test_schedules_differ_by_one_step_of_reporting(cell_type):
    """The two schedules compute the same trajectory: under a ramp and pulses every spike of
    ``"threshold_first"`` is the spike of ``"update_first"`` one step later, and the state after a
    step equals the other schedule's after its next reset."""
    current = ramp_and_pulses(0.5)
    runs = [neurosim_izhikevich(Izhikevich(2, cell_type=cell_type, schedule=s, dt=0.5, dtype=torch.float64), current)
            for s in ("update_first", "threshold_first")]
    (v_uf, _, z_uf), (v_tf, _, z_tf) = runs
    assert z_uf.sum() >= 20
    np.testing.assert_array_equal(z_tf[1:], z_uf[:-1])
    np.testing.assert_array_equal(v_tf[~z_uf], v_uf[~z_uf])
