r"""What HLOP adds to a training step of the HLOP paper's PMNIST network.

The network and settings of :mod:`neurosim.models.pmnist` (784-800-800-10 DSR, 20 steps, batch
64, plain SGD lr 0.1) trained by :meth:`Continual.train_batch` (encoding, forward, HLOP's Hebbian
update, loss, backward, HLOP's projection, optimiser step), without a plugin and with
:func:`neurosim.models.pmnist.hlop` (its ``form="gradient"``), and with the same HLOP in
``form="input"``, and (``cheaper``) the gradient form with the two cheaper equivalents described
below, as a subclass defined here. Each variant has its own network, built from the same seed.

HLOP is put in the state of a task without training the earlier ones: its hooks
``before_task`` / ``after_task`` are called for the earlier tasks, so its merged old block has the
paper's row count (orthonormal random rows instead of learnt ones: the cost is the same) and the
task's new rows are being learnt. Points: task 0 (80 / 200 / 100 new rows, nothing projected),
task 5 (old 320 / 440 / 340 rows, 50 new per layer) and task 9 (old 460 / 580 / 480, 10 new).
From task 1 on HLOP also freezes the thresholds, so the step with HLOP has two fewer (scalar)
parameters to update.

The variants take turns in rounds (``--rounds``), each timing ``--batches`` consecutive training
batches after ``--warmup`` untimed ones; the figures are medians over all timed batches. Batches are
real permuted-MNIST samples (the task's permutation) when the IDX files are found, random
standardised pixels otherwise.

Breakdown of HLOP's time, measured inside the same timed steps: the Hebbian update
(``after_forward``: ``hebb_iters`` Oja steps per protected projection on the weighted firing
rates), the gradient projection (``after_backward``, ``G - (G H^T) H``), the forward hooks (capture
of presynaptic activity; in ``form="input"`` also the projected rows ``H^T (H x)`` per step and
sample), and the rest (``form="input"``: the extra weight-gradient product in the backward pass).

In isolation, per protected projection with the activity and gradient of a real step
(``--isolated``, default on): the Hebbian update as HLOP computes it (``hebb_iters`` times
``X [H_old; H_new]^T`` and the reconstruction from all rows) against the same update with the old
block's response ``q(X H_old^T)`` and reconstruction computed once per batch (``H_old`` does not
change within a task, so the result is the same up to rounding, checked); and the gradient
projection ``G - (G H^T) H`` against ``G P`` with ``P = I - H^T H`` formed once per task.

Usage::

    python benchmarks/hlop_cost.py [--points 0 5 9] [--rounds 5] [--batches 10] [--warmup 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from collections import defaultdict

import torch

from neurosim.continual.runner import Continual
from neurosim.datasets.images import Dataset, Split, generated
from neurosim.errors import NeurosimError
from neurosim.models import pmnist
from neurosim.plugins.hlop import HLOP
from neurosim.continual.scenarios import permuted

N_TASKS = 10
VARIANTS = ("without", "gradient", "input", "cheaper")


def scenario(root, n_train: int):
    """Ten permuted-MNIST tasks cut to ``n_train`` training samples, or random data of the same size."""
    try:
        full = pmnist.mnist_scenario(N_TASKS, root=root)
        for t in full.tasks:
            t.train = Dataset(t.train.x[:n_train], t.train.y[:n_train], t.train.shape)
            t.test = Dataset(t.test.x[:64], t.test.y[:64], t.test.shape)
        return full, "MNIST"
    except NeurosimError:
        g = generated(n_classes=10, n_features=784, n_train=n_train, n_test=64)
        data = Split(*(Dataset((d.x - 0.5) / 0.3, d.y, d.shape) for d in g))
        return permuted(data, N_TASKS), "random"


class Timed:
    """Wraps a plugin's hook (an instance attribute shadowing the method) and adds up its time."""

    def __init__(self, totals: dict, key: str, fn):
        self.totals, self.key, self.fn = totals, key, fn

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.fn(*args, **kwargs)
        finally:
            self.totals[self.key] += time.perf_counter() - start


def runner_at(point: int, variant: str, scen, seed: int):
    """A runner inside task ``point`` with an optimiser; for HLOP variants, HLOP in that task's state."""
    net = pmnist.build_pmnist(seed=seed)
    plugins, totals = [], defaultdict(float)
    if variant != "without":
        plugin = pmnist.hlop(form="input" if variant == "input" else "gradient")
        if variant == "cheaper":
            plugin.__class__ = CheaperHLOP  # the same plugin and settings, two methods replaced
        plugin.after_forward = Timed(totals, "hebbian", plugin.after_forward)
        plugin.after_backward = Timed(totals, "projection", plugin.after_backward)
        make_hook = plugin._hook
        plugin._hook = lambda name, layout: Timed(totals, "hooks", make_hook(name, layout))
        plugins.append(plugin)
    runner = Continual(net, scen, plugins, steps=pmnist.STEPS, readout=pmnist.readout, lr=pmnist.LR,
                       batch_size=pmnist.BATCH_SIZE, seed=seed, progress=False)
    runner.task, runner.epoch = point, 0
    for p in plugins:
        p.before_training(runner)
        for task in range(point):
            p.before_task(runner, task)
            p.after_task(runner, task)
        p.before_task(runner, point)
    runner.optimizer = runner.make_optimizer()
    return runner, totals


def hebbian_once(plugin, sub, x: torch.Tensor, eta: float):
    """HLOP's Hebbian update with the old block's products computed once; returns (new, momentum)."""
    y_old = plugin._q(x @ sub.old.t())
    rest = x - y_old @ sub.old
    new, m = sub.new, sub.momentum
    for _ in range(plugin.hebb_iters):
        y = plugin._q(x @ new.t())
        dh = torch.clamp(y.t() @ (rest - y @ new) / x.shape[0], -plugin.clamp, plugin.clamp)
        m = plugin.momentum * m + (1 - plugin.momentum) * dh
        new = new + eta * m
    return new, m


class CheaperHLOP(HLOP):
    """HLOP (gradient form) with the two cheaper equivalents timed in isolation: the old block's
    products once per batch in the Hebbian update, and ``G P`` with ``P = I - H_old^T H_old`` formed
    once per task where that is cheaper (``2 k_old > n``). Not part of the library: it shows what the
    two changes would save in a whole step."""

    def _hebbian(self, sub, x, eta):
        sub.new, sub.momentum = hebbian_once(self, sub, x, eta)

    def after_backward(self, runner) -> None:
        cache = self.__dict__.setdefault("_p", {})
        with torch.no_grad():
            for name, (proj, _) in self._targets.items():
                old = self.subspaces[name].old
                if not old.shape[0] or proj.weight.grad is None:
                    continue
                g = proj.weight.grad.view(proj.weight.shape[0], -1)
                if 2 * old.shape[0] > old.shape[1]:
                    if name not in cache or cache[name][0] is not old:  # after_task makes a new tensor
                        cache[name] = (old, torch.eye(old.shape[1], dtype=old.dtype) - old.t() @ old)
                    g.copy_(g @ cache[name][1])
                else:
                    g -= (g @ old.t()) @ old


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def isolated(runner, captured: dict, repeats: int) -> list[dict]:
    """Per layer: Hebbian update as HLOP does it and with the old block's products once; gradient
    projection as HLOP does it and with ``P = I - H^T H`` precomputed."""
    plugin = runner.plugins[0]
    rows = []
    with torch.no_grad():
        for name, (proj, _) in plugin._targets.items():
            sub, x, eta = captured[name]
            sub = type(sub)(sub.old.clone(), sub.new.clone(), sub.momentum.clone())
            ref = type(sub)(sub.old, sub.new.clone(), sub.momentum.clone())
            type(plugin)._hebbian(plugin, ref, x, eta)
            new, _ = hebbian_once(plugin, sub, x, eta)
            scale = float(ref.new.abs().max()) or 1.0
            row = {"layer": name, "x_rows": x.shape[0], "dim": x.shape[1], "old": sub.old.shape[0], "new": sub.new.shape[0],
                   "hebb_ms": median_ms(lambda: type(plugin)._hebbian(plugin, type(sub)(sub.old, sub.new, sub.momentum),
                                                                      x, eta), repeats),
                   "hebb_once_ms": median_ms(lambda: hebbian_once(plugin, sub, x, eta), repeats),
                   "hebb_diff": float((new - ref.new).abs().max()) / scale}
            g = proj.weight.grad.reshape(proj.weight.shape[0], -1).clone()
            old = sub.old
            if old.shape[0]:
                p = torch.eye(old.shape[1], dtype=old.dtype) - old.t() @ old
                row["proj_ms"] = median_ms(lambda: g - (g @ old.t()) @ old, repeats)
                row["proj_p_ms"] = median_ms(lambda: g @ p, repeats)
                row["p_build_ms"] = median_ms(lambda: torch.eye(old.shape[1], dtype=old.dtype) - old.t() @ old, 3)
            rows.append(row)
    return rows


def measure(point: int, args, scen) -> dict:
    torch.manual_seed(args.seed)
    runners = {v: runner_at(point, v, scen, args.seed) for v in args.variants}
    task = scen.tasks[point]
    n = len(task.train.y)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed)).numpy()
    times = {v: [] for v in runners}
    parts = {v: defaultdict(list) for v in runners}
    cursor = dict.fromkeys(runners, 0)

    def batch(v):
        i = cursor[v]
        cursor[v] = (i + 1) % (n // pmnist.BATCH_SIZE)
        return order[i * pmnist.BATCH_SIZE:(i + 1) * pmnist.BATCH_SIZE]

    for v, (runner, _) in runners.items():
        for _ in range(args.warmup):
            runner.train_batch(task, batch(v))
    for r in range(args.rounds):
        names = list(runners) if r % 2 == 0 else list(runners)[::-1]
        for v in names:
            runner, totals = runners[v]
            for _ in range(args.batches):
                totals.clear()
                start = time.perf_counter()
                runner.train_batch(task, batch(v))
                times[v].append(time.perf_counter() - start)
                for key in ("hebbian", "projection", "hooks"):
                    parts[v][key].append(totals[key])
    out = {v: {"median_ms": 1e3 * statistics.median(t), "min_ms": 1e3 * min(t)} for v, t in times.items()}
    for v in runners:
        for key, values in parts[v].items():
            out[v][key + "_ms"] = 1e3 * statistics.median(values)
    hlop = next((runners[v][0].plugins[0] for v in runners if v != "without"), None)
    if hlop is not None:
        out["rows"] = {name: (s.old.shape[0], s.new.shape[0]) for name, s in hlop.subspaces.items()}
    if args.isolated and "gradient" in runners:
        runner = runners["gradient"][0]
        plugin, captured = runner.plugins[0], {}
        names = {id(s): n for n, s in plugin.subspaces.items()}
        hebbian = plugin._hebbian

        def capture(sub, x, eta):
            captured[names[id(sub)]] = (sub, x.clone(), eta)
            return hebbian(sub, x, eta)

        plugin._hebbian = capture
        runner.train_batch(task, batch("gradient"))  # leaves the projected gradient in .grad
        del plugin._hebbian
        out["isolated"] = isolated(runner, captured, args.repeats)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, nargs="+", default=[0, 5, N_TASKS - 1], help="tasks to measure at")
    ap.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    ap.add_argument("--rounds", type=int, default=5, help="turns per variant (they alternate)")
    ap.add_argument("--batches", type=int, default=10, help="timed training batches per turn")
    ap.add_argument("--warmup", type=int, default=2, help="untimed batches per variant first")
    ap.add_argument("--isolated", action=argparse.BooleanOptionalAction, default=True,
                    help="also time HLOP's Hebbian update and projection alone, per layer, with cheaper equivalents")
    ap.add_argument("--repeats", type=int, default=20, help="repetitions of each isolated measurement")
    ap.add_argument("--root", default=None, help="MNIST IDX directory (default $NEUROSIM_DATA/mnist)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if "without" not in args.variants:
        args.variants = ["without"] + args.variants
    scen, data = scenario(args.root, 64 * (args.warmup + args.rounds * args.batches + 1))
    load = os.getloadavg()[0]
    results = {p: measure(p, args, scen) for p in args.points}

    print(f"HLOP cost per training step: PMNIST 784-800-800-10 DSR, T={pmnist.STEPS}, batch {pmnist.BATCH_SIZE}, "
          f"SGD; {data} data; torch {torch.__version__}, {args.threads} thread(s); {args.rounds} rounds x "
          f"{args.batches} batches per variant; load average {load:.1f} -> {os.getloadavg()[0]:.1f}")
    hl = [v for v in args.variants if v != "without"]
    head = f"{'point':<8}{'rows old / new per layer':<34}{'without ms':>11}" + "".join(
        f"{'with (' + v + ') ms':>20}{'ratio':>7}" for v in hl)
    print(head)
    print("-" * len(head))
    for p, r in results.items():
        rows = " ".join(f"{o}/{n}" for o, n in r.get("rows", {}).values())
        base = r["without"]["median_ms"]
        print(f"task {p:<3}{rows:<34}{base:>11.1f}" + "".join(
            f"{r[v]['median_ms']:>20.1f}{r[v]['median_ms'] / base:>7.2f}" for v in hl))
    print("\nHLOP's time per step (medians, ms): Hebbian update | gradient projection | forward hooks | "
          "rest (median step minus the median step without HLOP minus those)")
    for p, r in results.items():
        base = r["without"]["median_ms"]
        for v in hl:
            x = r[v]
            rest = x["median_ms"] - base - x["hebbian_ms"] - x["projection_ms"] - x["hooks_ms"]
            print(f"task {p:<3} {v:<9} {x['hebbian_ms']:8.1f} | {x['projection_ms']:8.1f} | {x['hooks_ms']:8.1f} | "
                  f"{rest:8.1f}")
    if any("isolated" in r for r in results.values()):
        print("\nIn isolation, per layer (medians, ms): Hebbian update as HLOP does it -> with the old block's "
              "products once per batch (largest difference in the new rows, relative); gradient projection "
              "G - (G H^T) H -> G P (building P = I - H^T H once per task)")
        for p, r in results.items():
            for row in r.get("isolated", []):
                proj = (f"{row['proj_ms']:6.1f} -> {row['proj_p_ms']:6.1f} (+{row['p_build_ms']:.1f} per task)"
                        if "proj_ms" in row else "     -  (nothing projected)")
                print(f"task {p:<3} {row['layer']:<10} X {row['x_rows']}x{row['dim']}, H {row['old']:>3}+{row['new']:<3} "
                      f"Hebbian {row['hebb_ms']:6.1f} -> {row['hebb_once_ms']:6.1f} ({row['hebb_diff']:.0e})   "
                      f"projection {proj}")


if __name__ == "__main__":
    main()
