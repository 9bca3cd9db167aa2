"""Both cores for large networks: the compiled loop on 1 and 2 threads, spikes compared.

The E/I LIF reservoir of ``scaling.py`` at 64k neurons (p = 0.02, about 82 M synapses, float32,
dt 0.1 ms, continuing from the state after a warm-up) and CUBA (``cuba.py``: 4000 neurons,
float64, 1 s from its initial state), each run on one thread and on two (``Network.threads``),
taking turns, medians of wall-clock time (CPU time would not show two threads working at once);
the spikes of every setting must equal those of one thread. CUBA also runs with the automatic
choice under two torch threads (one thread below :data:`neurosim.kernels.compiled.PARALLEL_NEURONS`
neurons). Two threads can only show their speed-up on two otherwise idle cores: the load
average is printed.

    python benchmarks/threads.py [--n 64000] [--steps 2000] [--warmup 1000] [--reps 5]
        [--workloads reservoir cuba] [--json]

``--json`` prints one line, ``{workload: [setting, ...]}``, for :mod:`table` to read.
"""
from __future__ import annotations

import argparse
import json
import statistics

import numba
import torch

import neurosim as ns
from neurosim.kernels.compiled import threads_for

import cuba
import scaling
from common import load_average, timed

SETTINGS = (("1 thread", 1), ("2 threads", 2))


def compare(net, state, steps: int, reps: int, settings=SETTINGS) -> list[dict]:
    """``steps`` steps of ``net`` from ``state`` per setting ``(label, threads)`` (``None``: the
    automatic choice with two torch threads), the settings taking turns ``reps`` times: the label,
    the threads used, the median wall-clock seconds per step, the median over the turns of the first
    setting's time over this one's in the same turn (``turn_speedup``: a slow stretch of the machine
    then weighs on both sides of a ratio), the spike count and whether the spikes equal those of the
    first setting."""
    n = net.populations["neurons"].n
    times = {label: [] for label, _ in settings}
    spikes, used = {}, {}
    previous = net.threads, torch.get_num_threads()

    def run(label, threads, probes=None):
        net.threads = threads
        torch.set_num_threads(2 if threads is None else 1)
        used[label] = threads_for(n, 1, threads)
        return net.run(state=state, steps=steps, probes=probes)

    try:
        with torch.no_grad():
            for label, threads in settings:  # compiles the parallel loop or loads it from the cache
                run(label, threads)
            for _ in range(reps):
                for label, threads in settings:
                    times[label].append(timed(lambda: run(label, threads)) / steps)
            for label, threads in settings:
                spikes[label] = run(label, threads, {"s": ns.Probe("neurons", "spikes", events=True)}).probes["s"]
    finally:
        net.threads = previous[0]
        torch.set_num_threads(previous[1])
    first, base = spikes[settings[0][0]], times[settings[0][0]]
    return [{"label": label, "threads": used[label], "per_step": statistics.median(times[label]),
             "times": times[label], "turn_speedup": statistics.median(a / b for a, b in zip(base, times[label])),
             "spikes": spikes[label].t.numel(),
             "identical": all(torch.equal(a, b) for a, b in zip(spikes[label], first))} for label, _ in settings]


def reservoir_threads(n: int, steps: int, warmup: int, reps: int, net=None, state=None) -> list[dict]:
    """:func:`compare` on the reservoir of ``n`` neurons (or ``net``, continuing from ``state``)."""
    net = scaling.reservoir(n) if net is None else net
    if state is None:
        with torch.no_grad():
            state = net.run(steps=warmup).state
    return compare(net, state, steps, reps)


def cuba_threads(reps: int, net=None) -> list[dict]:
    """:func:`compare` on CUBA (or ``net``), 1 s from the initial state, with the automatic choice too."""
    net = cuba.build_cuba(cuba.N, dt=cuba.DT) if net is None else net
    return compare(net, net.initial_state(1), cuba.STEPS, reps, SETTINGS + (("automatic, 2 torch threads", None),))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--workloads", nargs="+", choices=("reservoir", "cuba"), default=["reservoir", "cuba"])
    parser.add_argument("--json", action="store_true", help="print the results as one JSON line")
    args = parser.parse_args()
    if numba.config.NUMBA_NUM_THREADS < 2:
        raise SystemExit("numba has one thread (NUMBA_NUM_THREADS): nothing to compare")
    load = load_average()
    rows = []
    if "reservoir" in args.workloads:
        rows += [(f"E/I reservoir {args.n}", r) for r in reservoir_threads(args.n, args.steps, args.warmup, args.reps)]
    if "cuba" in args.workloads:
        rows += [("CUBA 4000", r) for r in cuba_threads(args.reps)]
    if args.json:
        out = {}
        for workload, r in rows:
            out.setdefault(workload, []).append(r)
        print(json.dumps(out))
        return
    print(f"compiled loop on 1 and 2 threads; medians of {args.reps} (wall clock); {load} at the start, "
          f"{load_average()} at the end")
    print(f"{'workload':22s} {'setting':28s} {'threads':>7s} {'us per step':>12s} {'speed-up':>9s} {'per turn':>9s} "
          f"{'spikes':>9s} {'vs 1 thread':>12s}")
    base = {}
    for workload, r in rows:
        base.setdefault(workload, r["per_step"])
        print(f"{workload:22s} {r['label']:28s} {r['threads']:7d} {r['per_step'] * 1e6:12.1f} "
              f"{base[workload] / r['per_step']:8.2f}x {r['turn_speedup']:8.2f}x {r['spikes']:9d} "
              f"{'identical' if r['identical'] else 'DIFFERENT':>12s}")
    print("speed-up: the ratio of the medians; per turn: the median of the ratios within each turn")


if __name__ == "__main__":
    main()
