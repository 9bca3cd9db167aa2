r"""Laborieux et al.'s own setting: a binarised network on permuted MNIST, with and without metaplasticity.

The network and training of :mod:`neurosim.models.binarized` (hidden weights, sign forward with
straight-through gradients, batch norm without running statistics and with task-specific affine
parameters, Adam lr 0.005 recreated per task with weight decay 1e-7, batch 100, test batches of
1000), trained on permuted MNIST (pixels in [0, 1]; task 0 unpermuted, which is immaterial to a
fully connected network) at ``m = 0`` (plain training) and ``m = 1.35``: the runs of Fig. 2a and
2d of the paper (Nature Communications 12, 2549, 2021; the authors' repository lists the commands
that produce them). Metaplasticity is :func:`neurosim.plugins.metaplasticity.metaplastic_update`
applied to every Adam step of the hidden weights, with ``m`` on the raw hidden weights (their
form; the plugin's ``scale=1.0``). Torch's Adam adds epsilon after the bias correction of the
second moment, theirs before it: a difference of order epsilon in the step.

After each task every task trained so far is tested with its own saved batch-norm parameters (the
current ones for the current task), filling one row of ``R``; ACC and BWT as in
:mod:`neurosim.continual.metrics`. Every epoch appends a line to the log and, with ``--checkpoint``, saves
the whole state (network, optimiser, saved batch norms, ``R``, random states), so ``--resume``
continues an interrupted run where it stopped, to the same numbers.

**The published figure.** Fig. 2a-d: six permuted-MNIST tasks of 40 epochs each, BNN
784-4096-4096-10, test accuracy of every task over the epochs at m = 0, 0.5, 1.0, 1.35. In words:
at m = 0 each new task erases the previous ones (catastrophic forgetting); with growing m the old
tasks are retained, at some cost to how well the newest task is learnt. The stored copies of the
paper available here did not give the plotted accuracies as numbers, so the comparison below is
with that description, not with values read off the figure.

**Scaled to one core** (``--hidden``, ``--epochs``, ``--tasks``): 784-4096-4096-10 takes about
280 s per epoch on one core (measured), 6 x 40 epochs about 19 hours per value of m. The default
keeps the paper's six tasks of 40 epochs and narrows the hidden layers to 512 (4 s per epoch); the
paper's Fig. 3 also runs metaplastic BNNs of 512 hidden units (on ten tasks).

Usage::

    python benchmarks/metaplasticity_bnn.py [--m 0 1.35] [--hidden 512] [--tasks 6] [--epochs 40]
        [--root DIR] [--seed 0] [--threads 1] [--checkpoint PREFIX] [--resume] [--out results.json]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
from torch.nn import functional as F

from neurosim.datasets.images import idx_dataset
from neurosim.continual.metrics import acc, bwt
from neurosim.models import binarized
from neurosim.plugins.metaplasticity import metaplastic_update
from neurosim.continual.scenarios import Scenario, Task, permuted


def evaluate(net: binarized.BinarizedMLP, task: Task) -> float:
    correct = 0
    with torch.no_grad():
        for i in range(0, len(task.test.y), binarized.TEST_BATCH_SIZE):
            x = torch.as_tensor(task.test.x[i:i + binarized.TEST_BATCH_SIZE])
            y = torch.as_tensor(task.test.y[i:i + binarized.TEST_BATCH_SIZE])
            correct += int((net(x).argmax(1) == y).sum())
    return correct / len(task.test.y)


def train_epoch(net, optimizer, task: Task, m: float, generator: torch.Generator) -> float:
    """One epoch of Adam steps; where ``m > 0`` the hidden weights' steps toward zero are attenuated."""
    hidden = net.hidden_weights()
    order = torch.randperm(len(task.train.y), generator=generator).numpy()
    total = 0.0
    for i in range(0, len(order), binarized.BATCH_SIZE):
        idx = order[i:i + binarized.BATCH_SIZE]
        x, y = torch.as_tensor(task.train.x[idx]), torch.as_tensor(task.train.y[idx])
        optimizer.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        before = [w.detach().clone() for w in hidden] if m > 0 else None
        optimizer.step()
        if m > 0:
            with torch.no_grad():
                for w, w_old in zip(hidden, before):
                    w.copy_(metaplastic_update(w_old, w, m))
        total += loss.item() * len(idx)
    return total / len(order)


def run(m: float, scen: Scenario, args, log) -> dict:
    """Train every task in order at metaplasticity ``m``; resumable from ``args.checkpoint``."""
    path = f"{args.checkpoint}_m{m:g}.pt" if args.checkpoint else None
    torch.manual_seed(args.seed)
    net = binarized.BinarizedMLP((784, args.hidden, args.hidden, 10), seed=args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    n = len(scen.tasks)
    state = {"task": 0, "epoch": 0, "R": np.full((n, n), np.nan), "norms": [], "optimizer": None, "wall": 0.0}
    if args.resume and path and os.path.exists(path):
        saved = torch.load(path, weights_only=False)
        net.load_state_dict(saved["network"])
        gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        state = saved["state"]
        log(f"m={m:g}: resumed at task {state['task']}, epoch {state['epoch']}")
    start = time.perf_counter() - state["wall"]
    for t in range(state["task"], n):
        task = scen.tasks[t]
        optimizer = torch.optim.Adam(net.parameters(), lr=binarized.LR, weight_decay=binarized.WEIGHT_DECAY)
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        for e in range(state["epoch"], args.epochs):
            loss = train_epoch(net, optimizer, task, m, gen)
            state.update(epoch=e + 1, optimizer=optimizer.state_dict(), wall=time.perf_counter() - start)
            log(f"m={m:g} task {t} epoch {e + 1}/{args.epochs}: training loss {loss:.4f} "
                f"({state['wall']:.0f} s)")
            if path and (e + 1 < args.epochs):
                save(path, net, gen, state)
        current = net.norm_state()
        state["norms"].append(current)
        for j in range(t + 1):
            net.load_norm_state(state["norms"][j])
            state["R"][t, j] = evaluate(net, scen.tasks[j])
        net.load_norm_state(current)
        row = " ".join(f"{100 * v:6.2f}" for v in state["R"][t, :t + 1])
        log(f"m={m:g} after task {t}: test accuracy of tasks 0..{t}: {row}")
        state.update(task=t + 1, epoch=0, optimizer=None, wall=time.perf_counter() - start)
        if path:
            save(path, net, gen, state)
    hidden = [w.detach().abs() for w in net.hidden_weights()]
    R = state["R"]
    return {"m": m, "R": R.tolist(), "acc": acc(R), "bwt": bwt(R) if n > 1 else 0.0, "wall_s": state["wall"],
            "mean_abs_hidden": [float(h.mean()) for h in hidden],
            "frac_above_1": [float((h > 1).float().mean()) for h in hidden]}


def save(path: str, net, gen, state) -> None:
    tmp = path + ".tmp"
    torch.save({"network": net.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "state": state}, tmp)
    os.replace(tmp, path)


def format_R(R) -> str:
    R = np.asarray(R)
    lines = ["        " + "".join(f"{j:>8d}" for j in range(R.shape[1]))]
    for i, row in enumerate(R):
        lines.append(f"{i:>8d}" + "".join("       -" if math.isnan(v) else f"{100 * v:8.2f}" for v in row))
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--m", type=float, nargs="+", default=[0.0, binarized.M])
    ap.add_argument("--hidden", type=int, default=512, help="units per hidden layer (the paper: 4096)")
    ap.add_argument("--tasks", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=binarized.EPOCHS, help="epochs per task")
    ap.add_argument("--root", default=None, help="directory of the MNIST IDX files (default $NEUROSIM_DATA/mnist)")
    ap.add_argument("--seed", type=int, default=0, help="initialisation, permutations and sample order")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--checkpoint", default=None, help="path prefix of per-m checkpoint files, written every epoch")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoints where they exist")
    ap.add_argument("--out", default=None, help="write the results as JSON to this file")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.root is None and not os.environ.get("NEUROSIM_DATA"):
        sys.exit("no data: pass --root or set NEUROSIM_DATA")

    def log(text: str) -> None:
        print(text, flush=True)

    scen = permuted(idx_dataset("mnist", args.root), args.tasks, args.seed)
    log(f"binarised 784-{args.hidden}-{args.hidden}-10 on permuted MNIST, {args.tasks} tasks x {args.epochs} "
        f"epochs, Adam lr {binarized.LR:g} (weight decay {binarized.WEIGHT_DECAY:g}), batch "
        f"{binarized.BATCH_SIZE}; seed {args.seed}; torch {torch.__version__}, {args.threads} thread(s); "
        f"load average {os.getloadavg()[0]:.1f}")
    results = []
    for m in args.m:
        results.append(run(m, scen, args, log))
        r = results[-1]
        log(f"\nm = {m:g}: R (%), row i = after task i, column j = task j; ACC {100 * r['acc']:.2f}, "
            f"BWT {100 * r['bwt']:.2f}; mean |W_h| per layer {', '.join(f'{v:.3f}' for v in r['mean_abs_hidden'])}")
        log(format_R(r["R"]))
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=1)

    log(f"\nbinarised network, {args.tasks} permuted-MNIST tasks x {args.epochs} epochs, hidden {args.hidden} "
        f"(the paper's Fig. 2: 6 x 40 epochs, hidden 4096)")
    head = f"{'m':>6}{'ACC %':>8}{'BWT %':>8}{'first task at the end %':>26}{'last task %':>13}{'wall':>8}"
    log(head + "   the paper (Fig. 2a / 2d, described)")
    log("-" * (len(head) + 40))
    for r in results:
        R = np.asarray(r["R"])
        paper = ("Fig. 2a: old tasks forgotten catastrophically" if r["m"] == 0 else
                 f"Fig. 2{'d' if r['m'] == 1.35 else '?'}: old tasks retained, newest learnt less well")
        log(f"{r['m']:>6g}{100 * r['acc']:>8.2f}{100 * r['bwt']:>8.2f}{100 * R[-1, 0]:>26.2f}"
            f"{100 * R[-1, -1]:>13.2f}{r['wall_s'] / 60:>7.1f}m   {paper}")


if __name__ == "__main__":
    main()
