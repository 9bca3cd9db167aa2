"""A plastic E/I LIF reservoir: 10,000 neurons, STDP on the excitatory synapses, 10 s at dt 0.1 ms.

CUBA's neurons and synapses (:func:`neurosim.reservoirs.builders.lif_reservoir`, p = 0.02, about
2 M synapses, weights scaled by 4000 / n as in ``scaling.py``) with Brian2's STDP synapse on the
excitatory projection (:mod:`neurosim.projections.plasticity`: ``tau 20 ms``, ``A+ = 1 %`` of the
initial weight, ``A- = 1.05 A+``, weights within ``[0, 2 w]``), float64. neurosim's compiled loop
(``Network.plasticity``) against Brian2 2.9 in C++ standalone mode on the same synapses and initial
voltages, side by side in one process, each on one thread; Brian2 delivers ``ge += w`` before its
pathways change ``w``, as neurosim does. Times are medians of the simulation alone; compilation
(numba's first call, Brian2's code generation and gcc) is on its own line. Spike counts and the
mean final weight show that both simulate the same network (the trajectories part after a while,
as any two implementations of a chaotic network do).

    python benchmarks/plastic_reservoir.py [--n 10000] [--seconds 10] [--reps 3] [--no-brian2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

import neurosim as ns
from neurosim.models.cuba import TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK, V_RESET, V_TH, connectivity, initial_voltage
from neurosim.reservoirs.builders import lif_reservoir

P, DT = 0.02, 0.1  # ms


def build(n: int):
    net = lif_reservoir(n, p=P, w_exc=1.62 * 4000 / n, w_inh=-9.0 * 4000 / n, v0=(-60.0, -50.0), seed=0, dt=DT,
                        dtype=torch.float64)
    w = 1.62 * 4000 / n
    rule = ns.STDPParameters(tau_pre=20.0, tau_post=20.0, a_plus=0.01 * w, a_minus=0.0105 * w, w_min=0.0, w_max=2 * w)
    net.plasticity("exc", rule)
    return net, rule


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def neurosim_rows(n: int, steps: int, reps: int) -> list[tuple[str, float, int | None, float | None]]:
    rows = []
    times, result = [], None
    for rep in range(reps + 1):
        net, _ = build(n)
        with torch.no_grad():
            seconds = timed(lambda: net.run(steps=steps, probes={"s": ns.Probe("neurons", "spikes", events=True)}))
            if rep == 0:
                rows.append(("neurosim first call (compile or cache load + run)", seconds, None, None))
                continue
            times.append(seconds)
            result = net
    with torch.no_grad():
        res = build(n)[0].run(steps=steps, probes={"s": ns.Probe("neurons", "spikes", events=True)})
    spikes = res.probes["s"].t.numel()
    rows.append(("neurosim compiled, 1 thread, simulation", statistics.median(times), spikes,
                 result.projections["exc"].weight.mean().item()))
    return rows


def brian2_rows(n: int, steps: int, reps: int) -> list[tuple[str, float, int | None, float | None]]:
    import brian2 as b2
    from brian2 import mV, ms

    net, rule = build(n)
    conn, v0 = connectivity(net), initial_voltage(net)
    w_exc = net.projections["exc"].weight.detach().numpy()
    w_inh = 9.0 * 4000 / n
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        b2.set_device("cpp_standalone", build_on_run=False, directory=directory)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        b2.defaultclock.dt = DT * ms
        group = b2.NeuronGroup(n, """dv/dt = (ge + gi - (v - El)) / taum : volt (unless refractory)
                                     dge/dt = -ge / taue : volt
                                     dgi/dt = -gi / taui : volt""",
                               threshold="v > Vt", reset="v = Vr", refractory=TAU_REF * ms, method="exact",
                               namespace=dict(taum=TAU_MEM * ms, taue=TAU_EXC * ms, taui=TAU_INH * ms, Vt=V_TH * mV,
                                              Vr=V_RESET * mV, El=V_LEAK * mV))
        group.v = v0 * mV
        exc = b2.Synapses(group, group, """w : volt
                                           dapre/dt = -apre / taupre : volt (event-driven)
                                           dapost/dt = -apost / taupost : volt (event-driven)""",
                          on_pre="ge += w\napre += Apre\nw = clip(w + apost, wmin, wmax)",
                          on_post="apost += Apost\nw = clip(w + apre, wmin, wmax)",
                          namespace=dict(taupre=rule.tau_pre * ms, taupost=rule.tau_post * ms, Apre=rule.a_plus * mV,
                                         Apost=-rule.a_minus * mV, wmin=rule.w_min * mV, wmax=rule.w_max * mV))
        exc.connect(i=conn["exc"][0], j=conn["exc"][1])
        exc.w = w_exc * mV
        inh = b2.Synapses(group, group, on_pre="gi -= wi", namespace=dict(wi=w_inh * mV))
        inh.connect(i=conn["inh"][0], j=conn["inh"][1])
        monitor = b2.SpikeMonitor(group)
        b2.Network(group, exc, inh, monitor).run(steps * DT * ms)
        rows.append(("Brian2 C++ standalone build (code generation + gcc)",
                     timed(lambda: b2.device.build(directory=directory, compile=True, run=False)), None, None))
        inside, whole = [], []
        for _ in range(reps):
            whole.append(timed(lambda: b2.device.run(directory=directory, with_output=False)))
            inside.append(b2.device._last_run_time)
        rows.append(("Brian2 C++ standalone, 1 thread, simulation", statistics.median(inside), monitor.num_spikes,
                     float(np.mean(exc.w[:] / mV))))
        rows.append(("Brian2 C++ standalone, 1 thread, whole process", statistics.median(whole), None, None))
        b2.device.reinit()
        b2.set_device("runtime")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated time")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-brian2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = int(round(args.seconds * 1000 / DT))
    rows = neurosim_rows(args.n, steps, args.reps)
    if not args.no_brian2:
        rows += brian2_rows(args.n, steps, args.reps)
    anchor = next((t for label, t, *_ in rows if label.startswith("Brian2 C++ standalone, 1 thread, sim")), None)
    print(f"plastic E/I LIF reservoir: {args.n} neurons, p = {P}, STDP on E synapses, {steps} steps of {DT} ms; "
          f"medians of {args.reps} (s); load average {os.getloadavg()[0]:.1f}")
    print(f"{'':58s} {'time (s)':>9s} {'vs Brian2':>10s} {'spikes':>9s} {'mean w_E':>9s}")
    for label, seconds, spikes, w in rows:
        ratio = f"{seconds / anchor:.2f}x" if anchor and spikes is not None else ""
        print(f"{label:58s} {seconds:9.3f} {ratio:>10s} {'' if spikes is None else spikes:>9} "
              f"{'' if w is None else f'{w:.4f}':>9s}")


if __name__ == "__main__":
    main()
