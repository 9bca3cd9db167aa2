r"""Inference with integer delays: the event-driven path against the dense kernel and the shifted matmuls.

The delay network of the spoken-digit task (Hammouamri et al. 2024): inputs (140 grouped SHD
channels, or 64 cochlea channels for spoken digits) -> 256 -> 256 -> classes, every projection a
:class:`~neurosim.projections.Delayed` with ``D = 25``, ``T = 100`` steps, batch 256, positions
drawn as at initialisation and rounded (integer mode). Each layer gets its own input:

- layer 1 event counts with density ``--density-in`` (fraction of nonzero entries; counts 1-3),
  or with ``--fsdd`` the first 256 spoken digits of FSDD's test split through the cochlea
  (``--data`` or ``$NEUROSIM_DATA``, folder ``fsdd``; ``--cache`` keeps the encoded events in a folder), at their own
  length and density;
- layers 2 and the readout 0/1 spikes with density ``--density-hidden``.

Three ways to compute ``I_i[t] = sum_j w_ij s_j[t - d_ij]`` without gradients, on the same
weights and delays, taking turns within each round (``--reps`` rounds; medians):

- dense kernel: the one-hot ``[n_out, n_in, D]`` kernel built and applied by ``causal_conv``
  (``F.conv1d``), what a DCLS model does at evaluation with rounded positions;
- shifted: ``shifted_sum``, one masked matmul per distinct delay value (the integer path before
  the event path, and still the gradient path);
- events: ``integer_sum`` as ``Delayed`` runs it under ``torch.no_grad()`` (counting the input's
  nonzero entries, choosing the event path below the density threshold, listing and delivering
  the events).

The sweep times one layer (``hidden -> hidden``) over input densities, with the delays drawn from
``0 .. k-1`` for each ``k`` of ``--sweep-delays`` (``k`` distinct values; the dense kernel keeps
``D`` taps). The ``event`` column forces the event path, ``chosen`` is what ``integer_sum``
picks; the crossover of ``event`` and ``shifted`` per ``k`` sets ``EVENT_DENSITY_PER_DELAY``.

    python benchmarks/delays_inference.py [--quick] [--reps 7] [--batch 256] [--steps 100] [--fsdd [--data DIR]]
        [--density-in 0.03] [--density-hidden 0.07] [--dtype float32] [--sweep 0.005 0.01 ...]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from neurosim import Delayed
from neurosim.projections.delay_kernels import event_sum
from neurosim.projections.delayed import (EVENT_DENSITY_PER_DELAY, causal_conv, integer_sum, shifted_sum)

METHODS = ("dense kernel", "shifted", "events")


def counts(steps: int, batch: int, n: int, density: float, seed: int, dtype, top: int = 1) -> torch.Tensor:
    """``[steps, batch, n]`` with a fraction ``density`` of entries nonzero, drawn from 1 .. top."""
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(steps, batch, n, generator=g) < density
    return (on * torch.randint(1, top + 1, on.shape, generator=g)).to(dtype)


def fsdd_batch(batch: int, data: str | None, cache: str | None, dtype) -> torch.Tensor:
    from neurosim.datasets.event_sets import fsdd
    test = fsdd(None if data is None else os.path.join(data, "fsdd"), channels=64, cache=cache).test
    x, _, _ = test.batch(range(min(batch, len(test))))
    return x.to(dtype)


def layer(n_in: int, n_out: int, max_delay: int, seed: int, dtype) -> Delayed:
    proj = Delayed(n_in, n_out, max_delay, generator=torch.Generator().manual_seed(seed), dtype=dtype)
    proj.rounded = True
    return proj


def ways(proj: Delayed, x: torch.Tensor) -> dict:
    """The three computations of one layer's output, as closures (module docstring)."""
    w, d = proj.effective_weight(), proj.rounded_delays()
    return {"dense kernel": lambda: causal_conv(x, proj.kernel()), "shifted": lambda: shifted_sum(x, w, d),
            "events": lambda: integer_sum(x, w, d), "event": lambda: event_sum(x, w, d)}


def medians(fns: dict, reps: int) -> dict:
    """Median seconds of each closure, taking turns in each of ``reps`` rounds after one untimed call."""
    times = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for k, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}


def density(x: torch.Tensor) -> float:
    return float((x != 0).float().mean())


def network_table(args, dtype) -> None:
    x0 = fsdd_batch(args.batch, args.data, args.cache, dtype) if args.fsdd else \
        counts(args.steps, args.batch, args.inputs, args.density_in, 1, dtype, top=3)
    steps, batch, n_in = x0.shape
    hidden = counts(steps, batch, args.hidden, args.density_hidden, 2, dtype)
    layers = [("input", layer(n_in, args.hidden, args.max_delay, 10, dtype), x0),
              ("hidden", layer(args.hidden, args.hidden, args.max_delay, 11, dtype), hidden),
              ("readout", layer(args.hidden, args.classes, args.max_delay, 12, dtype), hidden)]
    print(f"\nT = {steps}, batch {batch}, D = {args.max_delay}, {dtype}, one thread, medians of {args.reps} rounds "
          f"(ms); input: {'FSDD test split, 64 cochlea channels' if args.fsdd else 'random event counts'}")
    head = f"{'layer':<22}{'density':>8}" + "".join(f"{m:>14}" for m in METHODS)
    print(head + f"{'dense/events':>14}{'shifted/events':>16}{'max |diff|':>12}")
    total = dict.fromkeys(METHODS, 0.0)
    with torch.no_grad():
        for name, proj, x in layers:
            fns = ways(proj, x)
            t = medians({m: fns[m] for m in METHODS}, args.reps)
            ref = fns["dense kernel"]()
            diff = max(float((fns[m]() - ref).abs().max()) for m in ("shifted", "events"))
            for m in METHODS:
                total[m] += t[m]
            label = f"{name} {proj.n_in}->{proj.n_out}"
            print(f"{label:<22}{density(x):>8.3f}" + "".join(f"{t[m] * 1e3:>14.1f}" for m in METHODS)
                  + f"{t['dense kernel'] / t['events']:>14.1f}{t['shifted'] / t['events']:>16.1f}{diff:>12.1e}")
    print(f"{'network (3 layers)':<22}{'':>8}" + "".join(f"{total[m] * 1e3:>14.1f}" for m in METHODS)
          + f"{total['dense kernel'] / total['events']:>14.1f}{total['shifted'] / total['events']:>16.1f}")


def sweep_table(args, dtype) -> None:
    n = args.hidden
    print(f"\nSweep: one {n}->{n} layer, T = {args.steps}, batch {args.batch}, D = {args.max_delay}, 0/1 spikes, "
          f"{dtype} (ms); delays drawn from 0 .. k-1; threshold {EVENT_DENSITY_PER_DELAY} x k")
    print(f"{'k':>4}{'density':>9}{'dense kernel':>14}{'shifted':>10}{'event':>10}{'chosen':>10}"
          f"{'dense/event':>13}{'shifted/event':>15}{'chosen/best':>13}")
    with torch.no_grad():
        for k in args.sweep_delays:
            proj = Delayed(n, n, args.max_delay, delays=torch.randint(0, k, (n, n), generator=torch.Generator()
                                                                       .manual_seed(k)), dtype=dtype)
            for p in args.sweep:
                x = counts(args.steps, args.batch, n, p, 3, dtype)
                fns = ways(proj, x)
                t = medians({m: fns[m] for m in ("dense kernel", "shifted", "event", "events")}, args.reps)
                best = min(t["dense kernel"], t["shifted"], t["event"])
                print(f"{k:>4}{p:>9.3f}{t['dense kernel'] * 1e3:>14.1f}{t['shifted'] * 1e3:>10.1f}"
                      f"{t['event'] * 1e3:>10.1f}{t['events'] * 1e3:>10.1f}{t['dense kernel'] / t['event']:>13.1f}"
                      f"{t['shifted'] / t['event']:>15.2f}{t['events'] / best:>13.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--max-delay", type=int, default=25)
    ap.add_argument("--inputs", type=int, default=140)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--density-in", type=float, default=0.03)
    ap.add_argument("--density-hidden", type=float, default=0.07)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--fsdd", action="store_true", help="layer 1 input: spoken digits through the cochlea")
    ap.add_argument("--data", default=None, help="data folder holding fsdd/ (default $NEUROSIM_DATA)")
    ap.add_argument("--cache", default=None, help="folder for the encoded FSDD events")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sweep", type=float, nargs="*", default=[0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4],
                    help="input densities of the sweep (none: no sweep)")
    ap.add_argument("--sweep-delays", type=int, nargs="*", default=[1, 5, 25])
    ap.add_argument("--quick", action="store_true", help="batch 32, 3 rounds, a short sweep")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.quick:
        args.batch, args.reps, args.sweep, args.sweep_delays = 32, 3, [0.01, 0.1], [25]
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    network_table(args, dtype)
    if args.sweep and args.sweep_delays:
        sweep_table(args, dtype)


if __name__ == "__main__":
    main()
