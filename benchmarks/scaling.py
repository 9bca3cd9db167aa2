"""Time per simulated step against network size: an E/I LIF reservoir at connection probability 0.02.

CUBA's neurons and synapses (:func:`neurosim.reservoirs.builders.lif_reservoir`, float32, dt 0.1 ms) at
1k, 4k, 16k and 64k neurons; weights are scaled by 4000 / n so that the mean input per neuron,
and so the firing rate, stay near CUBA's. After a warm-up from the initial state, a timed
continuation runs without recording in the compiled loop, through ``Network.run`` and alone
(called with a drive that holds no memory, a broadcast zero, to show what ``Network.run`` adds),
and a shorter one in the torch event-driven loop, each on one thread. Medians over repetitions.
The same reservoir on two threads is ``threads.py``.

    python benchmarks/scaling.py [--sizes 1000 4000 16000 64000] [--steps 2000] [--torch-steps 200] [--cpu]
"""
from __future__ import annotations

import argparse
import time

import torch

import neurosim.kernels.compiled
from neurosim.reservoirs.builders import lif_reservoir

from common import load_average, median_time

P = 0.02
DT = 0.1  # ms


def reservoir(n: int, dtype: torch.dtype = torch.float32):
    """The reservoir of ``n`` neurons (seed 0), its weights scaled by 4000 / n."""
    return lif_reservoir(n, p=P, w_exc=1.62 * 4000 / n, w_inh=-9.0 * 4000 / n, v0=(-60.0, -50.0), seed=0, dt=DT,
                         dtype=dtype)


def synapses(net) -> int:
    return net.projections["exc"].nnz + net.projections["inh"].nnz


def per_step(run, steps: int, reps: int, clock=time.perf_counter) -> float:
    """Median seconds per step of ``reps`` calls of ``run``, each simulating ``steps`` steps, by
    ``clock`` (wall time, or ``time.process_time`` for CPU time)."""
    return median_time(run, reps, clock) / steps


def measure(net, steps: int = 2000, torch_steps: int = 200, warmup: int = 1000, reps: int = 5,
            clock=time.perf_counter) -> dict:
    """The reservoir ``net`` on one thread: the state after ``warmup`` steps, the rate (Hz), and
    seconds per step compiled (``Network.run``), of the loop alone, and in the torch event-driven
    loop (NaN when ``torch_steps`` is 0), each continuing from that state."""
    n = net.populations["neurons"].n
    threads, net.threads = net.threads, 1
    with torch.no_grad():
        state = net.run(steps=warmup).state
        counted = min(steps, 500)
        count = net.run(state=state, steps=counted, outputs=["neurons"]).outputs["neurons"].sum().item()
        rate = count / (n * counted * DT / 1000)
        compiled = per_step(lambda: net.run(state=state, steps=steps), steps, reps, clock)
        pop, projections = net.populations["neurons"], [net.projections["exc"], net.projections["inh"]]
        no_drive = (torch.zeros(n, dtype=pop.dtype).expand(steps, 1, n), None)
        alone = per_step(lambda: neurosim.kernels.lookup("loop", pop)(pop, projections, no_drive, state["neurons"],
                                                                    [], False, False, threads=1), steps, reps, clock)
        torch_time = float("nan")
        if torch_steps:
            net.compiled = False
            try:
                torch_time = per_step(lambda: net.run(state=state, steps=torch_steps), torch_steps,
                                      max(1, reps // 2), clock)
            finally:
                net.compiled = True
    net.threads = threads
    return {"state": state, "rate": rate, "compiled": compiled, "alone": alone, "torch": torch_time}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000, 64000])
    parser.add_argument("--steps", type=int, default=2000, help="steps of each timed compiled run")
    parser.add_argument("--torch-steps", type=int, default=200, help="steps of each timed torch run (0: skip)")
    parser.add_argument("--warmup", type=int, default=1000, help="steps run before timing")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="time by process CPU time (on a loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time if args.cpu else time.perf_counter

    print(f"E/I LIF reservoir, p = {P}, dt = {DT} ms, float32; per simulated step (median of {args.reps}); "
          f"{load_average()}")
    print(f"{'neurons':>8s} {'synapses':>11s} {'build (s)':>9s} {'rate (Hz)':>9s} {'compiled (us)':>13s} "
          f"{'loop alone (us)':>15s} {'torch (us)':>10s} {'torch/compiled':>14s}")
    for n in args.sizes:
        start = time.perf_counter()
        net = reservoir(n)
        build = time.perf_counter() - start
        r = measure(net, args.steps, args.torch_steps, args.warmup, args.reps, clock)
        print(f"{n:8d} {synapses(net):11d} {build:9.1f} {r['rate']:9.1f} {r['compiled'] * 1e6:13.1f} "
              f"{r['alone'] * 1e6:15.1f} {r['torch'] * 1e6:10.1f} {r['torch'] / r['compiled']:13.1f}x")


if __name__ == "__main__":
    main()
