"""Checkpoint write and resume time for the ten-task PMNIST network, against torch.save / torch.load.

The network of :mod:`neurosim.models.pmnist` (784-800-800-10, 1.27 M weights) with HLOP in the
state of the last task (old blocks of 460 / 580 / 480 rows, 10 new rows each, with their
momentum), an SGD optimiser with momentum (so that it has a buffer per weight), inside a task.

- *write*: :meth:`Continual.checkpoint` into a run file: collecting the state (parameters,
  requires-grad flags, module modes, optimiser, plugin states, RNG states, sample order, R),
  encoding it and committing it to the HDF5 file;
- *resume*: open the file for writing (validation, recovery), read and check the last complete
  checkpoint and restore the runner from it (:meth:`Continual._restore`);
- anchor, the same state: ``torch.save`` to a file plus ``os.fsync``; ``torch.load``.

Medians over ``--repeats``; one torch thread.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from neurosim.continual.runner import Continual
from neurosim.datasets.images import generated
from neurosim.models import pmnist
from neurosim.continual.scenarios import permuted
from neurosim.storage.store import RunStore


def runner_at_last_task(store=None) -> tuple[Continual, torch.Tensor]:
    data = generated(n_classes=10, n_features=784, n_train=640, n_test=64)
    plugin = pmnist.hlop()
    runner = Continual(pmnist.build_pmnist(), permuted(data, 10), [plugin], steps=pmnist.STEPS,
                       readout=pmnist.readout, momentum=0.9, progress=False, store=store)
    runner.task, runner.epoch = 9, 0
    plugin.before_training(runner)
    for task in range(10):
        plugin.before_task(runner, task)
        if task < 9:
            plugin.after_task(runner, task)
    runner.optimizer = runner.make_optimizer()
    order = torch.randperm(60000, generator=runner.generator)
    runner.train_batch(runner.scenario.tasks[9], order[:64].numpy() % 640)  # fills momentum buffers
    runner.step = 9 * 938 + 1
    return runner, order


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    torch.set_num_threads(1)
    folder = tempfile.mkdtemp(prefix="neurosim-ckpt-")
    path = os.path.join(folder, "run.h5")
    store = RunStore.create(path, {"name": "checkpoint-benchmark"}, n_tasks=10, keep=2)
    runner, order = runner_at_last_task(store)
    cursor = {"task": 9, "epoch": 0, "batch": 1}
    write = median_time(lambda: runner.checkpoint(cursor, order), args.repeats)
    size = store.checkpoints()[-1].size
    store.close()

    fresh, _ = runner_at_last_task(None)

    def resume():
        with RunStore.open(path, "a", keep=2) as s:
            fresh.store = s
            fresh._restore()

    resume_t = median_time(resume, args.repeats)
    assert all(torch.equal(a, b) for a, b in zip(fresh.network.state_dict().values(),
                                                 runner.network.state_dict().values()))

    state = {"network": runner.network.state_dict(), "optimizer": runner.optimizer.state_dict(),
             "plugins": [p.state_dict() for p in runner.plugins], "order": order,
             "rng": torch.get_rng_state(), "R": runner.R}
    pt = os.path.join(folder, "state.pt")

    def save():
        with open(pt, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())

    save_t = median_time(save, args.repeats)
    load_t = median_time(lambda: torch.load(pt, weights_only=False), args.repeats)
    pt_size = os.path.getsize(pt)

    print(f"PMNIST network at the last task, medians of {args.repeats}")
    print(f"{'':28s} {'neurosim run file':>18s} {'torch.save/load':>16s} {'ratio':>6s}")
    print(f"{'checkpoint write (s)':28s} {write:18.3f} {save_t:16.3f} {write / save_t:6.2f}")
    print(f"{'resume (s)':28s} {resume_t:18.3f} {load_t:16.3f} {resume_t / load_t:6.2f}")
    print(f"{'checkpoint size (MB)':28s} {size / 1e6:18.1f} {pt_size / 1e6:16.1f} {size / pt_size:6.2f}")


if __name__ == "__main__":
    main()
