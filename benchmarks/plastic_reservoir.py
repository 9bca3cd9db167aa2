"""A plastic E/I LIF reservoir: 10,000 neurons, STDP on the excitatory synapses, 10 s at dt 0.1 ms.

CUBA's neurons and synapses (:func:`neurosim.reservoirs.builders.lif_reservoir`, p = 0.02, about
2 M synapses, weights scaled by 4000 / n as in ``scaling.py``) with Brian2's STDP synapse on the
excitatory projection (:mod:`neurosim.projections.plasticity`: ``tau 20 ms``, ``A+ = 1 %`` of the
initial weight, ``A- = 1.05 A+``, weights within ``[0, 2 w]``), float64. neurosim's compiled loop
(``Network.plasticity``) against Brian2 2.9 in C++ standalone mode on the same synapses and initial
voltages, each on one thread; Brian2 delivers ``ge += w`` before its pathways change ``w``, as
neurosim does.

The repetitions alternate (neurosim, then Brian2, then neurosim again ...), so that a change of the
machine's load falls on both. Each neurosim repetition is a whole ``Network.run`` on a freshly
built network (so it includes converting the synapses for the loop); Brian2's figure is its
simulation loop alone, timed by Brian2 itself with the process's CPU time (``std::clock``), so
neurosim is timed by the process's CPU time too (``time.process_time``; wall time beside it). The
table gives medians and the median of the per-repetition ratios; compilation (numba's first call,
Brian2's code generation and gcc) is on rows of its own, and the load average is printed before
and after. Spike counts and the mean final weight show that both simulate the same network (the
trajectories part after a while, as any two implementations of a chaotic network do).

    python benchmarks/plastic_reservoir.py [--n 10000] [--seconds 10] [--reps 5] [--no-brian2]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import neurosim as ns  # noqa: E402
from common import standalone_project  # noqa: E402
from neurosim.models.cuba import (TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK, V_RESET, V_TH,  # noqa: E402
                                  connectivity, initial_voltage)
from scaling import DT, P, reservoir  # noqa: E402


def build(n: int):
    net = reservoir(n, torch.float64)
    w = 1.62 * 4000 / n
    rule = ns.STDPParameters(tau_pre=20.0, tau_post=20.0, a_plus=0.01 * w, a_minus=0.0105 * w, w_min=0.0, w_max=2 * w)
    net.plasticity("exc", rule)
    return net, rule


def neurosim_run(n: int, steps: int) -> tuple[float, float, int, float]:
    """One run on a fresh network: (CPU seconds, wall seconds, spikes, mean final excitatory weight)."""
    net, _ = build(n)
    with torch.no_grad():
        cpu, wall = time.process_time(), time.perf_counter()
        res = net.run(steps=steps, probes={"s": ns.Probe("neurons", "spikes", events=True)})
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return cpu, wall, res.probes["s"].t.numel(), net.projections["exc"].weight.mean().item()


def brian2_network(b2, n: int, steps: int):
    """The same network in Brian2: (network, spike monitor, duration); the excitatory synapses are
    reachable as ``network.stdp``."""
    from brian2 import mV, ms

    net, rule = build(n)
    conn, v0 = connectivity(net), initial_voltage(net)
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
    exc.w = net.projections["exc"].weight.detach().numpy() * mV
    inh = b2.Synapses(group, group, on_pre="gi -= wi", namespace=dict(wi=9.0 * 4000 / n * mV))
    inh.connect(i=conn["inh"][0], j=conn["inh"][1])
    monitor = b2.SpikeMonitor(group)
    network = b2.Network(group, exc, inh, monitor)
    network.stdp = exc
    return network, monitor, steps * DT * ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10000)
    parser.add_argument("--seconds", type=float, default=10.0, help="simulated time")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--no-brian2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    steps = int(round(args.seconds * 1000 / DT))
    load_before = os.getloadavg()
    first = neurosim_run(args.n, steps)[:2]
    ours, theirs = [], []
    with contextlib.ExitStack() as stack:
        project = None
        if not args.no_brian2:
            from brian2 import mV

            built = {}
            project = stack.enter_context(standalone_project(
                lambda b2: built.setdefault("net", brian2_network(b2, args.n, steps))))
        for _ in range(args.reps):
            ours.append(neurosim_run(args.n, steps))
            if project is not None:
                theirs.append(project.run())
        if project is not None:
            b2_spikes = int(project.monitor.num_spikes)
            b2_w = float(np.mean(built["net"][0].stdp.w[:] / mV))
    load_after = os.getloadavg()

    def median(rows, k):
        return statistics.median(r[k] for r in rows)

    print(f"plastic E/I LIF reservoir: {args.n} neurons, p = {P}, STDP on E synapses, {steps} steps of {DT} ms; "
          f"medians of {args.reps} alternating repetitions, one thread each")
    print(f"load average (1, 5, 15 min) before {', '.join(f'{x:.1f}' for x in load_before)}; "
          f"after {', '.join(f'{x:.1f}' for x in load_after)}; {os.cpu_count()} cores")
    print(f"{'':46s} {'CPU (s)':>8s} {'wall (s)':>9s} {'spikes':>9s} {'mean w_E':>9s}")
    print(f"{'neurosim first call (compile or cache + run)':46s} {first[0]:8.3f} {first[1]:9.3f}")
    print(f"{'neurosim compiled loop, Network.run':46s} {median(ours, 0):8.3f} {median(ours, 1):9.3f} "
          f"{ours[-1][2]:>9} {ours[-1][3]:9.4f}")
    if project is not None:
        print(f"{'Brian2 C++ standalone build (codegen + gcc)':46s} {'':8s} {project.build:9.3f}")
        print(f"{'Brian2 C++ standalone: simulation loop':46s} {median(theirs, 0):8.3f} {'':9s} "
              f"{b2_spikes:>9} {b2_w:9.4f}")
        print(f"{'Brian2 C++ standalone: whole process':46s} {'':8s} {median(theirs, 1):9.3f}")
        ratios = [a[0] / b[0] for a, b in zip(ours, theirs)]
        print(f"neurosim / Brian2 simulation (CPU): {median(ours, 0) / median(theirs, 0):.2f} (ratio of medians), "
              f"{statistics.median(ratios):.2f} (median of per-repetition ratios: "
              f"{', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
