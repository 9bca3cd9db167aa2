"""Data-parallel scaling of the PMNIST network: time per epoch with 1 and 2 gloo processes, and the
share of each step spent in collectives.

The network of :mod:`neurosim.models.pmnist` (784-800-800-10, 20 steps, DSR) trains one epoch of
``--samples`` MNIST training images (from ``--data`` or ``$NEUROSIM_DATA/mnist``; generated
784-feature clusters without it), global batch 64, plain SGD, with HLOP in the paper's gradient
form in its second task (old rows from the first, so its projection and Hebbian update both run)
plus SI, each configuration in a fresh set of processes. The time per epoch is the slowest rank's
``train_task``; the communication share is the time inside ``neurosim.continual.distributed``'s
collectives over the epoch's time, on rank 0, timed separately: the all-reduce of the gradients and
the loss (``all_reduce_many``), HLOP's gather of the batch's activity rows (``gather_shards``) and
single all-reduces (``all_reduce``). One torch thread per process. The machine's load (``uptime``) is printed
beside the timings: on a shared 2-core machine two processes only scale when the cores are free.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time

import numpy as np
import torch

from neurosim.continual import distributed
from neurosim.continual.runner import Continual
from neurosim.continual.scenarios import permuted
from neurosim.datasets.images import Dataset, Split, generated, idx_dataset, standardised
from neurosim.models import pmnist
from neurosim.plugins.si import SI


def data(root: str | None, samples: int) -> tuple[Split, str]:
    try:
        full = standardised(idx_dataset("mnist", root))
        name = "MNIST"
    except Exception:
        full, name = generated(n_classes=10, n_features=784, n_train=samples, n_test=64), "generated clusters"
    train = Dataset(full.train.x[:samples], full.train.y[:samples], full.train.shape)
    test = Dataset(full.test.x[:64], full.test.y[:64], full.test.shape)
    return Split(train, test), name


def epoch(root: str | None, samples: int, hidden: int) -> dict:
    torch.set_num_threads(1)
    split, _ = data(root, samples)
    hlop = pmnist.hlop(first=(40, 100, 50), rows=lambda task, layer: (40, 100, 50)[layer] if task == 0 else 10)
    runner = Continual(pmnist.build_pmnist(hidden=hidden), permuted(split, 2), [hlop, SI()], steps=pmnist.STEPS,
                       readout=pmnist.readout, batch_size=pmnist.BATCH_SIZE, progress=False)
    keys = {"all_reduce_many": "gradients", "gather_shards": "gather", "all_reduce": "single"}
    timers = dict.fromkeys(keys.values(), 0.0)

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            timers[key] += time.perf_counter() - t
            return out
        return wrapper

    for name, key in keys.items():
        setattr(distributed, name, timed(getattr(distributed, name), key))
    tasks = runner.scenario.tasks
    for p in runner.plugins:
        p.before_training(runner)
        p.before_task(runner, 0)
    runner.task, runner.optimizer = 0, runner.make_optimizer()
    runner.train_batch(tasks[0], np.arange(pmnist.BATCH_SIZE))  # task 0: one batch, so HLOP has old rows
    for p in runner.plugins:
        p.after_task(runner, 0)
        p.before_task(runner, 1)
    runner.task, runner.optimizer = 1, runner.make_optimizer()
    timers.update(dict.fromkeys(timers, 0.0))
    distributed.barrier()
    start = time.perf_counter()
    runner.train_task(tasks[1])
    wall = time.perf_counter() - start
    slowest = float(distributed.all_reduce(torch.tensor(wall, dtype=torch.float64), op="max"))
    return {"epoch": slowest, "rank0": wall, **timers, "steps": runner.step}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="folder of MNIST IDX files (default $NEUROSIM_DATA/mnist)")
    ap.add_argument("--samples", type=int, default=2048, help="training images in the timed epoch")
    ap.add_argument("--hidden", type=int, default=800)
    args = ap.parse_args()
    _, name = data(args.data, args.samples)
    print(f"PMNIST network 784-{args.hidden}-{args.hidden}-10, one epoch of {args.samples} {name} images, "
          f"global batch {pmnist.BATCH_SIZE}, HLOP (gradient form) + SI, task 1")
    rows = []
    for nproc in (1, 2):
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        r = distributed.launch(epoch, nproc, args.data, args.samples, args.hidden)
        rows.append((nproc, r))
        steps = r["steps"]  # task 1's batches (task 0's one batch ran outside train_task)
        print(f"{nproc} process(es): {r['epoch']:.2f} s per epoch ({1000 * r['epoch'] / steps:.1f} ms per step); "
              f"all-reduce of gradients {100 * r['gradients'] / r['rank0']:.1f} %, gather of HLOP's activity "
              f"{100 * r['gather'] / r['rank0']:.1f} %, single all-reduces {100 * r['single'] / r['rank0']:.1f} % "
              f"of rank 0's epoch   [{load}]")
    t1, t2 = rows[0][1]["epoch"], rows[1][1]["epoch"]
    print(f"speed-up with 2 processes: {t1 / t2:.2f}x (ideal 2x on two free cores)")


if __name__ == "__main__":
    main()
