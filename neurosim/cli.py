"""The ``neurosim`` command.

``neurosim run`` runs the default experiment: five permuted digit tasks, learnt without
protection and with HLOP, printing each accuracy matrix and ACC / BWT / FWT.
``neurosim run cuba`` or ``neurosim run izhikevich2003`` simulates a built-in network and prints
its rates (``--raster FILE`` writes a raster PNG). Bad input ends with one line on stderr and
exit status 2.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from .errors import NeurosimError
from .experiment import HLOP_DIGITS, PERMUTED_DIGITS, build, with_plugins
from .simulation import SIMULATIONS, raster, simulate, summary

DEFAULT = PERMUTED_DIGITS["name"]
#: Methods of the default experiment: their plugin lists.
METHODS = {"baseline": [], "hlop": [HLOP_DIGITS]}


def format_matrix(R: np.ndarray) -> str:
    """The accuracy matrix in %, rows after each task, ``-`` for entries not yet known."""
    n = R.shape[1]
    lines = ["after    " + " ".join(f"task {j:<2d}" for j in range(n))]
    for i, row in enumerate(R):
        cells = " ".join("   -   " if np.isnan(v) else f"{100 * v:6.1f} " for v in row)
        lines.append(f"task {i:<3d} {cells}")
    return "\n".join(lines)


def _continual(args) -> None:
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise NeurosimError(f"unknown method {m!r}; expected one of: {', '.join(METHODS)}")
    base = with_plugins(PERMUTED_DIGITS, [])
    for section in ("model", "scenario", "training"):
        base[section]["seed"] = args.seed
    rows = []
    for m in methods:
        runner = build(with_plugins(base, METHODS[m]), progress=not args.quiet)
        start = time.perf_counter()
        r = runner.run()
        wall = time.perf_counter() - start
        print(f"{base['name']}, {m}: accuracy (%) on each task (columns) after training each task (rows)")
        print(format_matrix(r.R))
        print(f"ACC {100 * r.acc:.2f} %   BWT {100 * r.bwt:.2f} %   FWT {100 * r.fwt:.2f} %   {wall:.0f} s\n",
              flush=True)
        rows.append((m, r, wall))
    print(f"{'method':10s} {'ACC %':>7s} {'BWT %':>7s} {'time s':>7s}")
    for m, r, wall in rows:
        print(f"{m:10s} {100 * r.acc:7.2f} {100 * r.bwt:7.2f} {wall:7.0f}")


def _simulation(args) -> None:
    if args.raster:
        folder = os.path.dirname(os.path.abspath(args.raster))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise NeurosimError(f"cannot write the raster to {args.raster}: {folder} is not a writable directory")
    r = simulate(args.experiment, args.duration, args.seed, progress=not args.quiet)
    print(summary(r))
    if args.raster:
        raster(r, args.raster)
        print(f"raster          {args.raster}")


def _cmd_run(args) -> int:
    if args.experiment == DEFAULT:
        _continual(args)
    elif args.experiment in SIMULATIONS:
        _simulation(args)
    else:
        raise NeurosimError(f"unknown experiment {args.experiment!r}; built-in: {DEFAULT}, {', '.join(SIMULATIONS)}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="neurosim", description="Spiking network simulator.")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment")
    run.add_argument("experiment", nargs="?", default=DEFAULT,
                     help=f"built-in experiment: {DEFAULT} (default, continual learning), {', '.join(SIMULATIONS)}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--methods", default=",".join(METHODS),
                     help=f"{DEFAULT}: comma-separated methods among {', '.join(METHODS)}")
    run.add_argument("--duration", type=float, default=1000.0, help="simulations: simulated time in ms")
    run.add_argument("--raster", metavar="FILE.png", help="simulations: write a raster plot")
    run.set_defaults(fn=_cmd_run)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args)
    except NeurosimError as e:
        print(f"neurosim: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
