"""Both cores for large networks: the compiled loop on 1 and 2 threads.

The E/I LIF reservoir of ``scaling.py`` at 64k neurons (p = 0.02, about 82 M synapses, float32,
dt 0.1 ms) and CUBA (4000 neurons, float64), each run on one thread and on two
(``Network.threads``, with ``numba.set_num_threads(2)``), side by side, medians of repetitions;
the spikes must be identical. CUBA also runs with the automatic choice (one thread below
:data:`neurosim.kernels.compiled.PARALLEL_NEURONS`).

    python benchmarks/threads.py [--n 64000] [--steps 2000] [--cuba-steps 10000] [--reps 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numba
import torch

import neurosim as ns
from neurosim.models.cuba import build_cuba
from neurosim.reservoirs.builders import lif_reservoir

P, DT = 0.02, 0.1  # ms


def per_run(net, state, steps: int, threads, reps: int):
    """Median seconds of ``reps`` runs of ``steps`` from ``state`` on ``threads``, and the spikes of one."""
    net.threads = threads
    spikes = {"s": ns.Probe("neurons", "spikes", events=True)}
    times = []
    with torch.no_grad():
        for _ in range(reps):
            start = time.perf_counter()
            net.run(state=state, steps=steps)
            times.append(time.perf_counter() - start)
        events = net.run(state=state, steps=steps, probes=spikes).probes["s"]
    return statistics.median(times), events


def compare(label: str, net, state, steps: int, reps: int, settings) -> list[str]:
    lines, base, first = [], None, None
    for name, threads in settings:
        seconds, events = per_run(net, state, steps, threads, reps)
        same = "" if first is None else ("identical" if all(torch.equal(a, b) for a, b in zip(events, first))
                                         else "DIFFERENT")
        first = events if first is None else first
        base = seconds if base is None else base
        lines.append(f"{label:34s} {name:14s} {seconds / steps * 1e6:12.1f} {base / seconds:9.2f}x "
                     f"{events.t.numel():9d} {same:>10s}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64000)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--cuba-steps", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if numba.config.NUMBA_NUM_THREADS < 2:
        raise SystemExit("numba has one thread (NUMBA_NUM_THREADS): nothing to compare")
    numba.set_num_threads(2)
    torch.set_num_threads(2)
    lines = []
    net = lif_reservoir(args.n, p=P, w_exc=1.62 * 4000 / args.n, w_inh=-9.0 * 4000 / args.n, v0=(-60.0, -50.0),
                        seed=0, dt=DT)
    with torch.no_grad():
        state = net.run(steps=args.warmup).state
    lines += compare(f"E/I reservoir {args.n}", net, state, args.steps, args.reps, [("1 thread", 1), ("2 threads", 2)])
    del net, state
    cuba = build_cuba(dt=DT)
    state = cuba.initial_state(1)
    lines += compare("CUBA 4000", cuba, state, args.cuba_steps, args.reps,
                     [("1 thread", 1), ("2 threads", 2), ("automatic", None)])
    print(f"compiled loop on 1 and 2 threads; medians of {args.reps}; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")
    print(f"{'workload':34s} {'threads':14s} {'us per step':>12s} {'speed-up':>10s} {'spikes':>9s} {'vs 1':>10s}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
