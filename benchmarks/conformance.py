r"""The strategy x scenario conformance matrix (:mod:`neurosim.runs.conformance`) as a Markdown table.

Every built-in strategy with its default settings, and no protection (``none``), on every scenario
of :data:`~neurosim.runs.conformance.SCENARIOS`; each cell is ACC / BWT in % after the last task,
measured here (nothing is copied). A strategy that refuses a scenario shows its refusal; a run the
divergence guard stopped shows ``diverged``. Below the table: for each cell, the largest ratio of
a parameter's gradient norm after the strategies' filters to before them, and of its change after
their update filters to the optimiser's step (1 = never lengthened), the accuracy matrix's
diagonal (how well each task was learnt) and the CPU time.

Usage::

    python benchmarks/conformance.py [--scenarios permuted split-task ...] [--strategies none hlop ...]
        [--seeds 0 1 2] [--threads 1]

A cell gives the mean over the seeds (default 0, 1, 2) and, with several, the spread (largest minus
smallest) in brackets.
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

from neurosim.runs.conformance import NONE, SCENARIOS, STRATEGIES, run_cell


def cell_text(outcomes) -> str:
    failed = [o for o in outcomes if o.result is None]
    if failed:
        e = str(failed[0].error)
        return "diverged" if "diverged" in e else "refused"
    acc = np.array([100 * o.result.acc for o in outcomes])
    bwt = np.array([100 * o.result.bwt for o in outcomes])
    if len(outcomes) == 1:
        return f"{acc[0]:.1f} / {bwt[0]:+.1f}"
    return f"{acc.mean():.1f} ({np.ptp(acc):.1f}) / {bwt.mean():+.1f} ({np.ptp(bwt):.1f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument("--strategies", nargs="+", choices=(NONE,) + STRATEGIES, default=(NONE,) + STRATEGIES)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"conformance matrix, seeds {args.seeds}; torch {torch.__version__}, {args.threads} thread(s); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    table = {}
    details = []
    for sc in args.scenarios:
        for st in args.strategies:
            outcomes = [run_cell(st, sc, seed) for seed in args.seeds]
            table[st, sc] = cell_text(outcomes)
            for o in outcomes:
                if o.result is None:
                    line = f"{st} on {sc}, seed {o.seed}: {o.error}"
                else:
                    diag = " ".join(f"{100 * v:.0f}" for v in np.diag(o.result.R))
                    line = (f"{st} on {sc}, seed {o.seed}: ACC {100 * o.result.acc:.2f}, BWT {100 * o.result.bwt:+.2f}; "
                            f"gradient x{o.grad_ratio:.4f}, update x{o.update_ratio:.4f}; tasks learnt {diag}; "
                            f"{o.cpu:.1f} s CPU")
                details.append(line)
                print(line, file=sys.stderr, flush=True)
    print()
    print("| strategy | " + " | ".join(args.scenarios) + " |")
    print("|---|" + "---|" * len(args.scenarios))
    for st in args.strategies:
        print(f"| {st} | " + " | ".join(table[st, sc] for sc in args.scenarios) + " |")
    print()
    for line in details:
        print(line)


if __name__ == "__main__":
    main()
