"""Izhikevich (2003): 1000 neurons, all-to-all, 1 s in 1 ms steps: neurosim against Brian2 C++ standalone.

The network of :func:`neurosim.models.izhikevich2003.build_izhikevich2003` (800 E, 200 I, 1M
synapses, float64), simulated by neurosim's compiled loop on one thread in two ways:

- *pre-drawn*: the thalamic input (``5 N(0, 1)`` to E, ``2 N(0, 1)`` to I, each step) drawn before
  the run and fed as the population's input ``[T, 1, N]``; drawing it is not timed;
- *like for like*: the input drawn inside the run by the network's noise source, when this
  version of neurosim has one (``Network.add_noise``); otherwise the row says so.

The anchor is the same instance (neuron parameters, weights) in Brian2 2.9, C++ standalone, one
thread, its input drawn inside the loop (``randn()``) as the published code does: per step the
neurons integrate ``v += 0.5 (0.04 v^2 + 5 v + 140 - u + I)`` twice and ``u += a (b v - u)``, draw
the next input, fire at ``v >= 30`` (reset ``v = c``, ``u += d``), and the spikes add their weights
to their targets' ``I``. Times are medians of the simulation alone (Brian2's own measure of its
run, the process's CPU time); ``--cpu`` times neurosim by CPU time too, the comparable figure on a
machine shared with other work. The standalone build is reported on its own line.

    python benchmarks/izhikevich.py [--reps 7] [--no-brian2] [--cpu]
"""
from __future__ import annotations

import argparse
import inspect
import time

import numpy as np
import torch

from cuba import brian2_standalone, median_time
from neurosim.models import izhikevich2003
from neurosim.reservoirs.builders import spike_events

N_EXC, N_INH = 800, 200
STEPS = 1000  # 1 s of 1 ms steps
THALAMIC_STD = (5.0, 2.0)  # E, I


def _network(seed: int, thalamic: bool):
    """The network, with or without its own thalamic noise source (``None`` when this version of
    neurosim cannot draw it inside the run); on one thread where the network has that setting."""
    build = izhikevich2003.build_izhikevich2003
    if "thalamic" in inspect.signature(build).parameters:
        net = build(N_EXC, N_INH, seed, thalamic=thalamic)
    else:
        net = build(N_EXC, N_INH, seed)
        if thalamic:
            import neurosim.network as network

            if not hasattr(net, "add_noise") or not hasattr(network, "GaussianNoise"):
                return None
            net.add_noise("thalamic", "neurons", network.GaussianNoise(std=_std(), seed=seed))
    if hasattr(net, "threads"):
        net.threads = 1
    return net


def _std() -> torch.Tensor:
    return torch.cat([torch.full((N_EXC,), THALAMIC_STD[0]), torch.full((N_INH,), THALAMIC_STD[1])])


def neurosim_times(reps: int, seed: int = 0, clock=time.perf_counter) -> dict:
    """Median seconds by ``clock`` (and spike counts) of the simulation with the input pre-drawn
    and, when available, drawn inside the run (``None`` otherwise)."""
    net = _network(seed, thalamic=False)
    g = torch.Generator().manual_seed(seed)
    drive = (torch.randn(STEPS, 1, N_EXC + N_INH, generator=g, dtype=torch.float64) * _std().double())
    with torch.no_grad():
        net.run({"neurons": drive}, steps=STEPS)  # compiles or loads the kernel
        out = {"pre-drawn": (median_time(lambda: net.run({"neurons": drive}, steps=STEPS), reps, clock),
                             spike_events(net, STEPS, inputs={"neurons": drive})[0].size)}
        inside = _network(seed, thalamic=True)
        if inside is None:
            out["inside"] = None
        else:
            inside.run(steps=STEPS)
            out["inside"] = (median_time(lambda: inside.run(steps=STEPS), reps, clock),
                             spike_events(inside, STEPS)[0].size)
    return out


def brian2_network(b2, net):
    """neurosim's instance ``net`` (parameters, synapses) in Brian2, drawing its input inside the loop."""
    from brian2 import ms

    b2.start_scope()
    b2.defaultclock.dt = 1 * ms
    pop = net.populations["neurons"]
    n = pop.n
    group = b2.NeuronGroup(n, """v : 1
                                 u : 1
                                 I : 1
                                 a : 1 (constant)
                                 b : 1 (constant)
                                 c : 1 (constant)
                                 d : 1 (constant)
                                 sigma : 1 (constant)""", threshold="v >= 30", reset="v = c; u += d")
    p = pop.params
    group.a, group.b, group.c, group.d = (np.broadcast_to(np.asarray(x, dtype=np.float64), n)
                                          for x in (p.a, p.b, p.c, p.d))
    group.sigma = _std().numpy()
    group.v = -65.0
    group.u = np.broadcast_to(np.asarray(p.b, dtype=np.float64), n) * -65.0
    group.I = group.sigma * np.random.default_rng(0).standard_normal(n)
    group.run_regularly("""v += 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
                           v += 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
                           u += a * (b * v - u)
                           I = sigma * randn()""", when="start")
    synapses = b2.Synapses(group, group, "w : 1", on_pre="I_post += w")
    pre = np.concatenate([net.projections[k].pre.numpy() for k in ("exc", "inh")])
    post = np.concatenate([net.projections[k].post.numpy() for k in ("exc", "inh")])
    synapses.connect(i=pre, j=post)
    synapses.w = np.concatenate([net.projections[k].effective_weight().detach().numpy() for k in ("exc", "inh")])
    monitor = b2.SpikeMonitor(group)
    return b2.Network(group, synapses, monitor), monitor


def brian2_time(reps: int, seed: int = 0) -> dict:
    """Brian2 C++ standalone on the same instance (see :func:`cuba.brian2_standalone`)."""
    from brian2 import second

    net = _network(seed, thalamic=False)
    return brian2_standalone(lambda b2: (*brian2_network(b2, net), 1 * second), reps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--no-brian2", action="store_true")
    ap.add_argument("--cpu", action="store_true", help="time neurosim by process CPU time, as Brian2 times its run")
    args = ap.parse_args()
    torch.set_num_threads(1)
    ours = neurosim_times(args.reps, clock=time.process_time if args.cpu else time.perf_counter)
    anchor = None if args.no_brian2 else brian2_time(args.reps)
    print(f"Izhikevich 2003, {N_EXC + N_INH} neurons, {STEPS} steps of 1 ms; medians (s), one thread")
    print(f"{'':48s} {'time (s)':>9s} {'vs Brian2':>9s} {'spikes':>7s}")
    rows = [("neurosim compiled, input pre-drawn", ours["pre-drawn"]),
            ("neurosim compiled, input drawn inside the run", ours["inside"])]
    if anchor is not None:
        print(f"{'Brian2 C++ standalone build':48s} {anchor['build']:9.2f}")
        rows.append(("Brian2 C++ standalone, input drawn inside", (anchor["simulation"], anchor["spikes"])))
    for label, r in rows:
        if r is None:
            print(f"{label:48s} {'not available in this version':>27s}")
            continue
        ratio = f"{r[0] / anchor['simulation']:.2f}" if anchor else "-"
        print(f"{label:48s} {r[0]:9.4f} {ratio:>9s} {r[1]:7d}")


if __name__ == "__main__":
    main()
