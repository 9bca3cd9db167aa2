"""A neuron model defined outside neurosim (examples/adex.py, the AdEx neuron) against Brian2, and
getting what the built-in models get: the execution plan, probes, surrogate training, the run file,
replay and plugins."""
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.runs import experiment
from neurosim.runs.replay import replay

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from adex import AdEx, build_network  # noqa: E402

#: Four firing patterns of Naud et al. (2008): tonic, adapting, initial burst, regular bursting;
#: C (pF), g_L (nS), E_L (mV), V_T (mV), Delta_T (mV), a (nS), tau_w (ms), b (pA), V_r (mV), I (pA).
PATTERNS = np.array([
    [200.0, 10.0, -70.0, -50.0, 2.0, 2.0, 30.0, 0.0, -58.0, 500.0],
    [200.0, 12.0, -70.0, -50.0, 2.0, 2.0, 300.0, 60.0, -58.0, 500.0],
    [130.0, 18.0, -58.0, -50.0, 2.0, 4.0, 150.0, 120.0, -50.0, 400.0],
    [200.0, 10.0, -58.0, -50.0, 2.0, 2.0, 120.0, 100.0, -46.0, 210.0],
])
DT, STEPS, ONSET = 0.1, 5000, 500


def brian2_adex(current):
    """Brian2 (numpy target, float64, ``method='euler'``) on per-neuron parameters and the current
    ``[T, N]`` (pA); returns v (mV) after each step and the spike raster."""
    b2 = pytest.importorskip("brian2")
    from brian2 import mV, ms, nS, pA, pF

    b2.prefs.codegen.target = "numpy"
    b2.start_scope()
    clock = b2.Clock(DT * ms)
    group = b2.NeuronGroup(len(PATTERNS), """
        dv/dt = (gL * (EL - v) + gL * DeltaT * exp((v - VT) / DeltaT) - w + I_in(t, i)) / C : volt
        dw/dt = (a * (v - EL) - w) / tauw : amp
        C : farad (constant)
        gL : siemens (constant)
        EL : volt (constant)
        VT : volt (constant)
        DeltaT : volt (constant)
        a : siemens (constant)
        tauw : second (constant)
        b : amp (constant)
        Vr : volt (constant)
        Vcut : volt (constant)""", threshold="v > Vcut", reset="v = Vr; w += b", method="euler", clock=clock,
                           namespace=dict(I_in=b2.TimedArray(current * pA, dt=DT * ms)))
    c, gl, el, vt, delta, a, tauw, b, vr, _ = PATTERNS.T
    group.C, group.gL, group.EL, group.VT, group.DeltaT = c * pF, gl * nS, el * mV, vt * mV, delta * mV
    group.a, group.tauw, group.b, group.Vr, group.Vcut = a * nS, tauw * ms, b * pA, vr * mV, (vt + 5 * delta) * mV
    group.v = el * mV
    state = b2.StateMonitor(group, "v", record=True, when="end")
    spikes = b2.SpikeMonitor(group)
    b2.Network(group, state, spikes).run(STEPS * DT * ms, namespace={})
    raster = np.zeros((STEPS, len(PATTERNS)), dtype=bool)
    raster[np.round(spikes.t / (DT * ms)).astype(int), spikes.i[:]] = True
    return state.v[:].T / mV, raster


def test_adex_matches_brian2():
    """Four AdEx neurons with per-neuron parameters (tonic, adapting, initial burst, bursting) under
    step currents, 500 ms at dt 0.1 ms: every spike in the same step and v within 1e-9 mV."""
    current = np.zeros((STEPS, len(PATTERNS)))
    current[ONSET:] = PATTERNS[:, 9]
    ref_v, ref_spikes = brian2_adex(current)
    c, gl, el, vt, delta, a, tauw, b, vr, _ = (torch.tensor(col) for col in PATTERNS.T)
    pop = AdEx(len(PATTERNS), c_m=c, g_l=gl, e_l=el, v_t=vt, delta_t=delta, a=a, tau_w=tauw, b=b, v_reset=vr,
               v_peak=vt + 5 * delta, dt=DT, dtype=torch.float64)
    state = pop.initial_state(1)
    vs, zs = [], []
    with torch.no_grad():
        for x in torch.as_tensor(current):
            z, state = pop.step(x[None], state)
            vs.append(state.v[0].numpy())
            zs.append(z[0].numpy() > 0)
    spikes = np.array(zs)
    counts = spikes.sum(0)
    assert (counts >= 5).all()
    isi = [np.diff(np.flatnonzero(spikes[:, k])) for k in range(4)]
    assert isi[1][-1] > 2 * isi[1][0]  # the adapting neuron adapts
    assert isi[0][-1] < 1.2 * isi[0][1]  # the tonic one does not
    np.testing.assert_array_equal(spikes, ref_spikes)
    np.testing.assert_allclose(np.array(vs), ref_v, rtol=0, atol=1e-9)


def test_adex_in_the_execution_plan_and_probes():
    """Layer-at-a-time (no loop) and step-at-a-time (in a loop with a silent recurrent projection)
    runs agree; probes record its state fields."""
    x = 300.0 * torch.rand(400, 2, 20, generator=torch.Generator().manual_seed(0))
    results = []
    for loop in (False, True):
        net = ns.Network(dt=0.5)
        net.add_input("x", 20)
        net.add("h", AdEx(30, a=2.0, tau_w=50.0))
        net.connect("x", "h", ns.Dense(20, 30, weight=torch.rand(30, 20, generator=torch.Generator().manual_seed(1))))
        if loop:
            net.connect("h", "h", ns.Sparse(30, 30, p=0.2, weight=0.0, seed=0))
        net.probe("h", "w", stride=5)
        net.probe("h", "v")
        with torch.no_grad():
            results.append(net.run(x, outputs=["h"]))
    assert results[0].outputs["h"].sum() > 50
    assert torch.equal(results[0].outputs["h"], results[1].outputs["h"])
    assert results[0].probes["h_w"].shape == (80, 2, 30) and results[0].probes["h_w"].max() > 0
    assert torch.equal(results[0].probes["h_v"], results[1].probes["h_v"])


def test_adex_trains_by_surrogate_gradients():
    """Gradient descent through the AdEx step (surrogate spikes) lowers a loss on its spike count."""
    torch.manual_seed(0)
    net = build_network(n_in=16, hidden=24, n_out=4)
    x = torch.rand(60, 8, 16)
    target = torch.randint(0, 4, (8,))
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(15):
        scores = net.run(x).outputs["out"].mean(0)
        loss = torch.nn.functional.cross_entropy(scores, target)
        opt.zero_grad()
        loss.backward()
        assert net.projections["x_to_h"].weight.grad.abs().sum() > 0  # through the surrogate
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]


def test_adex_in_an_experiment_file_with_a_plugin_and_replay(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "examples"))
    config = {
        "name": "adex-digits",
        "model": {"name": "adex:build_network", "readout": "adex:readout", "n_in": 64, "hidden": 48, "seed": 0},
        "scenario": {"name": "permuted", "data": "digits", "tasks": 2, "seed": 0},
        "training": {"steps": 20, "epochs": 1, "batch_size": 32, "lr": 0.05, "optimizer": "adam", "seed": 0},
        "plugins": [{"name": "ewc", "lam": 10.0, "samples": 64}],
        "record": {"samples": 4, "populations": ["h"]},
    }
    path = tmp_path / "run.h5"
    result = experiment.start(config, path, progress=False)
    assert result.R[0, 0] > 0.5  # ten digits: chance is 0.1
    r = replay(path, 0)
    assert len(r.recorded["h"][0]) > 10 and r.differing == {"h": 0}
    with pytest.raises(ns.NeurosimError, match=r"model\.readout"):
        experiment.build({**config, "model": {"name": "adex:build_network"}}, progress=False)
    with pytest.raises(ns.NeurosimError, match="cannot be imported"):
        experiment.build({**config, "model": {"name": "adex:nope", "readout": "adex:readout"}}, progress=False)
