"""CUBA in neurosim and in Brian2 (numpy target, float64) with the same synapses and initial voltages.

Brian2 runs the equations of its CUBA example with ``method='exact'``; its synapses have no delay,
so a spike of step k reaches g_e / g_i at the end of step k and acts from step k + 1, as a
neurosim recurrent projection does. Brian2 stamps a spike with the start of its step, so spike
steps compare directly. The compiled loop is checked by default, the torch step loop under ``slow``.
"""
import numpy as np
import pytest

b2 = pytest.importorskip("brian2")
from brian2 import mV, ms  # noqa: E402

from neurosim.models.cuba import (EXC_FRACTION, TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK,  # noqa: E402
                                  V_RESET, V_TH, W_EXC, W_INH, build_cuba, connectivity, initial_voltage)
from neurosim.reservoirs.builders import spike_events  # noqa: E402

b2.prefs.codegen.target = "numpy"

N = 4000
DT = 0.1  # ms
STEPS = 10000  # 1 s
EARLY = 1000  # steps (100 ms) over which every spike must coincide
RATE_TOL = 0.05

EQS = """
dv/dt = (ge + gi - (v - El)) / taum : volt (unless refractory)
dge/dt = -ge / taue : volt
dgi/dt = -gi / taui : volt
"""


def brian2_cuba(conn: dict, v0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spike events (step, neuron) of Brian2's CUBA on the given synapses and initial voltages (mV)."""
    b2.start_scope()
    clock = b2.Clock(DT * ms)
    group = b2.NeuronGroup(N, EQS, threshold="v > Vt", reset="v = Vr", refractory=TAU_REF * ms, method="exact",
                           clock=clock)
    group.v = v0 * mV
    exc = b2.Synapses(group, group, on_pre="ge += we", clock=clock)
    exc.connect(i=conn["exc"][0], j=conn["exc"][1])
    inh = b2.Synapses(group, group, on_pre="gi += wi", clock=clock)
    inh.connect(i=conn["inh"][0], j=conn["inh"][1])
    spikes = b2.SpikeMonitor(group)
    namespace = dict(taum=TAU_MEM * ms, taue=TAU_EXC * ms, taui=TAU_INH * ms, Vt=V_TH * mV, Vr=V_RESET * mV,
                     El=V_LEAK * mV, we=W_EXC * mV, wi=W_INH * mV)
    b2.Network(group, exc, inh, spikes).run(STEPS * clock.dt, namespace=namespace)
    return np.round(spikes.t / clock.dt).astype(np.int64), np.asarray(spikes.i[:], dtype=np.int64)


@pytest.fixture(scope="module")
def networks():
    net = build_cuba(N, seed=0, dt=DT)
    return net, brian2_cuba(connectivity(net), initial_voltage(net))


def test_connectivity_export_matches_projections(networks):
    net, _ = networks
    conn = connectivity(net)
    n_exc = round(EXC_FRACTION * N)
    assert (conn["exc"][0] < n_exc).all() and (conn["inh"][0] >= n_exc).all()
    dense = (net.projections["exc"].to_dense() + net.projections["inh"].to_dense()).numpy()
    assert np.count_nonzero(dense) == conn["exc"][0].size + conn["inh"][0].size
    assert (dense[conn["exc"][1], conn["exc"][0]] == W_EXC).all()
    assert (dense[conn["inh"][1], conn["inh"][0]] == W_INH).all()
    v0 = initial_voltage(net)
    assert V_RESET <= v0.min() and v0.max() < V_TH and v0.std() > 2.5


@pytest.mark.parametrize("compiled", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["compiled", "torch"])
def test_same_rate_and_early_spikes_as_brian2(networks, compiled):
    net, (t_b2, i_b2) = networks
    net.compiled = compiled
    try:
        t_ns, i_ns = spike_events(net, STEPS)
    finally:
        net.compiled = True
    rate_ns, rate_b2 = t_ns.size / N, t_b2.size / N  # Hz over 1 s
    assert rate_b2 > 1.0
    assert abs(rate_ns - rate_b2) <= RATE_TOL * rate_b2, (rate_ns, rate_b2)
    early_ns = set(zip(t_ns[t_ns < EARLY].tolist(), i_ns[t_ns < EARLY].tolist()))
    early_b2 = set(zip(t_b2[t_b2 < EARLY].tolist(), i_b2[t_b2 < EARLY].tolist()))
    assert len(early_b2) > 1000
    assert early_ns == early_b2, f"{len(early_ns & early_b2)} of {len(early_b2)} early spikes coincide"
