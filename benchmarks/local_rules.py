r"""A training step with a local rule against a BPTT step, through :meth:`Continual.train_batch`.

Network: input ``--inputs`` -> recurrent LIF layer ``--hidden`` -> leaky readout of 10, ``--steps``
time steps, batch ``--batch``, current encoding, plain SGD. Learners, each on its own network built
from the same seed: :class:`~neurosim.continual.runner.BPTT` (the anchor: autograd through the whole
run), :class:`~neurosim.continual.runner.EPropLearner` (input, recurrent and readout weights) and
:class:`~neurosim.continual.runner.ThreeFactorLearner` (the readout only; the other weights are frozen
in its network, which therefore also runs the recurrent loop without gradients). The learners take
turns in rounds; each round times ``--batches`` consecutive batches after ``--warmup`` untimed ones;
the figures are medians over all timed batches, with the ratio to BPTT's median.

Usage::

    python benchmarks/local_rules.py [--quick] [--rounds 5] [--batches 10] [--warmup 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

import neurosim as ns
from neurosim.continual.runner import Continual
from neurosim.continual.learners import BPTT, EPropLearner, ThreeFactorLearner
from neurosim.datasets.images import generated
from neurosim.continual.scenarios import permuted

LEARNERS = {"bptt": BPTT, "eprop": EPropLearner, "three_factor": ThreeFactorLearner}


def build(n_in: int, n_hidden: int, readout_only: bool) -> ns.Network:
    torch.manual_seed(0)
    net = ns.Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("h", ns.LIF(n_hidden, tau_mem=10.0))
    net.add("o", ns.LI(10, tau_mem=10.0))
    net.connect("x", "h", ns.Dense(n_in, n_hidden, scale=3.0, learnable=not readout_only))
    net.connect("h", "h", ns.Dense(n_hidden, n_hidden, scale=0.3, learnable=not readout_only))
    net.connect("h", "o", ns.Dense(n_hidden, 10))
    if readout_only:
        net.populations["h"].requires_grad_(False)
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--inputs", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small sizes and one round, to check it runs")
    a = ap.parse_args()
    if a.quick:
        a.hidden, a.steps, a.rounds, a.batches, a.warmup = 64, 10, 1, 2, 1
    torch.set_num_threads(a.threads)
    n = a.batch * (a.batches + a.warmup)
    sc = permuted(generated(n_classes=10, n_features=a.inputs, n_train=n, n_test=10), 1)
    task = sc.tasks[0]
    runners = {}
    for name, cls in LEARNERS.items():
        r = Continual(build(a.inputs, a.hidden, name == "three_factor"), sc, steps=a.steps, batch_size=a.batch,
                      lr=0.01, progress=False, learning=cls())
        r.task, r.epoch = 0, 0
        r.optimizer = r.make_optimizer()
        runners[name] = r
    times = {name: [] for name in LEARNERS}
    for _ in range(a.rounds):
        for name, r in runners.items():
            for b in range(a.warmup + a.batches):
                idx = np.arange(b * a.batch, (b + 1) * a.batch)
                t0 = time.perf_counter()
                r.train_batch(task, idx)
                if b >= a.warmup:
                    times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["bptt"])
    print(f"training step, {a.inputs}-{a.hidden}(rec)-10, T {a.steps}, batch {a.batch}, {a.threads} thread(s); "
          f"medians of {a.rounds * a.batches} batches")
    print(f"{'learner':14s} {'median ms':>10s} {'vs BPTT':>8s}")
    for name in LEARNERS:
        m = statistics.median(times[name])
        print(f"{name:14s} {1e3 * m:10.2f} {m / base:8.2f}")


if __name__ == "__main__":
    main()
