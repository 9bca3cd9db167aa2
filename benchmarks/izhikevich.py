"""Izhikevich (2003) like for like: 1000 neurons, all-to-all, 1 s in 1 ms steps, the thalamic noise
drawn inside the simulation loop by both simulators: neurosim against Brian2 C++ standalone.

The network of :func:`neurosim.models.izhikevich2003.build_izhikevich2003` (800 E, 200 I, 1 M
synapses, float64) in neurosim's compiled loop on one thread, its thalamic input ``5 N(0, 1)`` to
E and ``2 N(0, 1)`` to I drawn each step inside the loop from the counter-based streams of
:mod:`neurosim.kernels.noise`. A second neurosim row is fed the same draws made beforehand as an
input tensor ``[T, 1, N]`` (drawing not timed): the spikes must be identical, and the difference
of the two times is what drawing costs inside the loop.

The anchor is the same instance (cell parameters, weights) in Brian2 2.9, C++ standalone, one
thread, with neurosim's schedule and arithmetic: ``I = sigma * randn() + I_syn``, two half steps
``v += 0.5 (0.04 v^2 + 5 v + 140 - u + I)``, then ``u += a (b v - u)``, threshold ``v > 30``
(reset ``v = c``, ``u += d``), the spikes adding their weights to their targets' ``I_syn`` for the
next step. The two draw different numbers, so their spike counts agree as statistics, not spike
for spike. Times are medians of the simulation alone (Brian2's own measure of its run: the
process's CPU time); ``--cpu`` times neurosim by CPU time too, the comparable figure on a machine
shared with other work. The first neurosim call (compilation or loading numba's cache) and the
standalone build are on their own lines.

    python benchmarks/izhikevich.py [--reps 7] [--no-brian2] [--cpu]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from neurosim.kernels.noise import GAUSSIAN, fill_noise, stream_key
from neurosim.models.izhikevich2003 import build_izhikevich2003
from neurosim.reservoirs.builders import spike_events

from common import brian2_standalone, load_average, median_time, timed

N_EXC, N_INH = 800, 200
STEPS = 1000  # 1 s of 1 ms steps
SEED = 0


def thalamic_std() -> np.ndarray:
    return np.r_[np.full(N_EXC, 5.0), np.full(N_INH, 2.0)]


def predrawn_noise(seed: int = SEED) -> torch.Tensor:
    """The draws of the network's own noise source over the run, as an input ``[STEPS, 1, N]``."""
    noise = np.empty((STEPS, 1, N_EXC + N_INH))
    keys = np.array([stream_key(seed, 0)], dtype=np.uint64)
    for t in range(STEPS):
        fill_noise(GAUSSIAN, keys, t, thalamic_std(), 0.0, noise[t])
    return torch.from_numpy(noise)


def neurosim_times(reps: int, clock=time.perf_counter) -> dict:
    """Seconds by ``clock`` of the first run (compiling or loading the kernel) and ``(median
    seconds, spike count)`` of the runs with the noise drawn ``"inside"`` the loop and
    ``"pre-drawn"``; ``"identical"``: whether the two made the same spikes."""
    inside = build_izhikevich2003(N_EXC, N_INH, SEED)
    given = build_izhikevich2003(N_EXC, N_INH, SEED, thalamic=False)
    inside.threads = given.threads = 1
    x = {"neurons": predrawn_noise()}
    with torch.no_grad():
        first = timed(lambda: inside.run(steps=STEPS), clock)
        given.run(x)
        times = {"inside": [], "pre-drawn": []}
        for _ in range(reps):  # taking turns
            times["inside"].append(timed(lambda: inside.run(steps=STEPS), clock))
            times["pre-drawn"].append(timed(lambda: given.run(x), clock))
    events = spike_events(inside, STEPS), spike_events(given, STEPS, inputs=x)
    out = {name: (float(np.median(t)), e[0].size) for (name, t), e in zip(times.items(), events)}
    out["first"] = first
    out["identical"] = all(np.array_equal(a, b) for a, b in zip(*events))
    return out


def brian2_network(b2, net):
    """neurosim's instance ``net`` in Brian2 (module docstring): (network, spike monitor, duration)."""
    from brian2 import ms

    b2.start_scope()
    b2.defaultclock.dt = 1 * ms
    pop = net.populations["neurons"]
    n = pop.n
    group = b2.NeuronGroup(n, """v : 1
                                 u : 1
                                 a : 1 (constant)
                                 b : 1 (constant)
                                 c : 1 (constant)
                                 d : 1 (constant)
                                 sigma : 1 (constant)
                                 Isyn : 1""", threshold="v > 30", reset="v = c; u += d")
    p = pop.params
    group.a, group.b, group.c, group.d = (np.broadcast_to(np.asarray(x, dtype=np.float64), n)
                                          for x in (p.a, p.b, p.c, p.d))
    group.sigma = thalamic_std()
    group.v = -65.0
    group.u = np.broadcast_to(np.asarray(p.b, dtype=np.float64), n) * -65.0
    group.run_regularly("""I = sigma * randn() + Isyn
                           v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
                           v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
                           u = u + a * (b * v - u)
                           Isyn = 0""", when="groups")
    synapses = b2.Synapses(group, group, "w : 1", on_pre="Isyn_post += w")
    projections = [net.projections[k] for k in ("exc", "inh")]
    synapses.connect(i=np.concatenate([q.pre.numpy() for q in projections]),
                     j=np.concatenate([q.post.numpy() for q in projections]))
    synapses.w = np.concatenate([q.effective_weight().detach().numpy() for q in projections])
    monitor = b2.SpikeMonitor(group)
    return b2.Network(group, synapses, monitor), monitor, STEPS * ms


def brian2_times(reps: int) -> dict:
    """Brian2 C++ standalone on the same instance (:func:`common.brian2_standalone`)."""
    net = build_izhikevich2003(N_EXC, N_INH, SEED, thalamic=False)
    return brian2_standalone(lambda b2: brian2_network(b2, net), reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="time neurosim by process CPU time, as Brian2 times its run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    load = load_average()
    ours = neurosim_times(args.reps, clock=time.process_time if args.cpu else time.perf_counter)
    anchor = None if args.no_brian2 else brian2_times(args.reps)
    print(f"Izhikevich 2003, {N_EXC + N_INH} neurons, all-to-all, {STEPS} steps of 1 ms, one thread; medians of "
          f"{args.reps} (s, {'CPU' if args.cpu else 'wall'} time for neurosim); {load}")
    print(f"{'':58s} {'time (s)':>9s} {'vs Brian2':>9s} {'spikes':>7s}")
    print(f"{'neurosim first call (compile or cache load + run)':58s} {ours['first']:9.3f}")
    rows = [("neurosim compiled, noise drawn in the loop", ours["inside"]),
            ("neurosim compiled, the same noise given as an input", ours["pre-drawn"])]
    if anchor is not None:
        print(f"{'Brian2 C++ standalone build (code generation + gcc)':58s} {anchor['build']:9.2f}")
        rows.append(("Brian2 C++ standalone, noise drawn in the loop", (anchor["simulation"], anchor["spikes"])))
        rows.append(("Brian2 C++ standalone, whole process (wall)", (anchor["process"], None)))
    for label, (seconds, spikes) in rows:
        ratio = f"{seconds / anchor['simulation']:.2f}" if anchor and spikes is not None else ""
        print(f"{label:58s} {seconds:9.4f} {ratio:>9s} {'' if spikes is None else spikes:>7}")
    print(f"spikes with the noise drawn in the loop and given as an input: "
          f"{'identical' if ours['identical'] else 'DIFFERENT'}")


if __name__ == "__main__":
    main()
