r"""Spoken digits with learnable delays, fixed random delays and no delays (Hammouamri et al. 2024).

The Free Spoken Digit Dataset on its official split (2,700 training / 300 test recordings) through
the gammatone cochlea and spike encoder of :mod:`neurosim.datasets.audio` (``--channels`` channels, counts per
``--dt`` bin; ``--cache`` keeps the events so the cochlea runs once). The network of
:mod:`neurosim.models.delays` (``channels`` -> ``hidden`` LIF -> 10, delay kernels of ``--max-delay``
steps, BatchNorm1d, dropout per sequence) is trained by :class:`~neurosim.models.delays.DelayTrainer`
with the paper's optimisers and schedules, three times with the same size, seed and epochs:
``learnable`` delays, fixed ``random`` integer delays (uniform on ``0 .. D-1``) and ``none`` (dense
synapses, ``D = 1``). Test accuracy is measured after every epoch with rounded integer delays; the
table gives the last epoch's and the best epoch's accuracy (the paper reports the best epoch on the
test set; the last one is the honest figure), and the median training time per epoch. One thread.

Usage::

    python benchmarks/fsdd_delays.py [--quick] [--epochs 30] [--hidden 128 128] [--max-delay 25]
        [--batch-size 64] [--dropout 0.4] [--cache /tmp/neurosim-fsdd-cache] [--only learnable random none]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from neurosim.datasets.event_sets import fsdd
from neurosim.models.delays import DelayTrainer, build_delay_net

MODES = ("learnable", "random", "none")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs on 512 training samples")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--max-delay", type=int, default=25)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dropout", type=float, default=0.4)
    ap.add_argument("--channels", type=int, default=64)
    ap.add_argument("--dt", type=float, default=0.01, help="bin width (s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", default=None, help="FSDD folder (default $NEUROSIM_DATA/fsdd)")
    ap.add_argument("--cache", default="/tmp/neurosim-fsdd-cache", help="event cache folder (outside the repo)")
    ap.add_argument("--only", nargs="+", choices=MODES, default=list(MODES))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the per-epoch logs here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    train, test = fsdd(args.root, channels=args.channels, dt=args.dt, cache=args.cache)[:2]
    print(f"FSDD: {len(train)} train / {len(test)} test, {train.channels} channels, dt {args.dt * 1000:g} ms, "
          f"steps median {int(np.median(train.steps()))} max {train.steps().max()} "
          f"(events ready in {time.perf_counter() - start:.1f} s)")
    if args.quick:
        train = train.subset(np.random.default_rng(0).permutation(len(train))[:512])
        args.epochs = 2
    hidden, D = tuple(args.hidden), args.max_delay
    print(f"network {train.channels}-{'-'.join(map(str, hidden))}-10, D={D} steps ({(D - 1) * args.dt * 1000:g} ms), "
          f"dropout {args.dropout}, batch {args.batch_size}, {args.epochs} epochs, {args.threads} thread(s)")
    results, logs_out = {}, {}
    for mode in args.only:
        torch.manual_seed(args.seed)
        net = build_delay_net(train.channels, 10, hidden, D, delays=mode, dropout=args.dropout, seed=args.seed)
        n_params = sum(p.numel() for p in net.parameters() if p.requires_grad)
        trainer = DelayTrainer(net, args.epochs, batch_size=args.batch_size, seed=args.seed)

        def show(log, mode=mode):
            print(f"  {mode:<9} epoch {log.epoch:>3}  loss {log.loss:.4f}  train {100 * log.train_acc:5.1f} %  "
                  f"test {100 * log.test_acc:5.1f} %  {log.seconds:6.1f} s (+{log.eval_seconds:.1f} s eval)  "
                  + (f"sigma {log.sigma:.3g}" if mode == "learnable" else ""), flush=True)

        logs = trainer.fit(train, test, callback=show)
        results[mode] = (n_params, logs)
        logs_out[mode] = [log.__dict__ for log in logs]
    print()
    print(f"{'delays':<11}{'parameters':>11}{'test % (last)':>15}{'test % (best)':>15}{'epoch s (median)':>18}")
    for mode, (n_params, logs) in results.items():
        last, best = logs[-1].test_acc, max(log.test_acc for log in logs)
        med = statistics.median(log.seconds for log in logs)
        print(f"{mode:<11}{n_params:>11,}{100 * last:>15.1f}{100 * best:>15.1f}{med:>18.1f}")
    if "learnable" in results:
        last = results["learnable"][1][-1].test_acc
        others = [results[m][1][-1].test_acc for m in results if m != "learnable"]
        print(f"goal: learned >= 95 % ({100 * last:.1f}) and above the others "
              f"({', '.join(f'{100 * o:.1f}' for o in others) or 'not run'})")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "logs": logs_out}, f, indent=1)


if __name__ == "__main__":
    main()
