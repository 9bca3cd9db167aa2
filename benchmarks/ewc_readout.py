r"""EWC on a readout trained alone: what the conformance scenario ``three-factor`` measures, taken apart.

The scenario (:data:`neurosim.runs.conformance.SCENARIOS`): three permuted digit tasks, a fixed spiking
layer of 200 and its readout (2,000 weights, the only trained parameter), lr 0.2. Printed, for each
seed and as means over the seeds:

1. the three-factor learner's update against autograd's gradient of the batch's cross-entropy on the
   same weights (median over the batches of the cosine and the norm ratio): whether the learner
   changes what EWC's Fisher (always taken by autograd on the readout) or SI's path integral measure;
2. how many of the readout's 2,000 directions EWC (lambda 100) holds after task 0, with the diagonal
   Fisher and with the full one, :math:`F = G^\top G / n` (:math:`G` the per-sample log-likelihood
   gradients of task 0 at its end): a direction is held when the proximal step pulls it back to its
   anchor by more than 1 % per step, :math:`\eta\lambda f > 0.01` (:math:`f` a diagonal entry, or an
   eigenvalue of :math:`F`); and the share of :math:`\mathrm{tr} F` in its 10 largest eigenvalues;
3. ACC / BWT (%) and the accuracy-matrix diagonal of: no protection and EWC with the diagonal Fisher
   (``full=0``), under the three-factor learner and under BPTT; EWC's defaults, which keep the
   readout's whole Fisher (2,000 entries, at most ``full``); and a hand-written proximal EWC
   (:math:`\lambda` 100, empirical Fisher on 1,000 samples, summed) with the whole Fisher of the readout
   (:class:`FullFisherEWC`, the reference: :math:`\theta \leftarrow (I + \eta\lambda F)^{-1}
   (\theta' + \eta\lambda F\theta^*)`).

Usage::

    python benchmarks/ewc_readout.py [--seeds 0 1 2] [--threads 1]
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch.nn import functional as F

from neurosim.continual import Continual, Plugin
from neurosim.continual.plugin import trained_parameters
from neurosim.plugins.ewc import EWC
from neurosim.runs.conformance import SCENARIOS

CELL = SCENARIOS["three-factor"]


def per_sample_gradients(runner, task, n: int = 1000) -> torch.Tensor:
    """``[n, P]``: the log-likelihood gradients of the readout weight on ``n`` training samples."""
    (p,) = trained_parameters(runner.network).values()
    idx = torch.randperm(len(task.train.y), generator=torch.Generator().manual_seed(task.index))[:n].numpy()
    rows = []
    for i in idx:
        scores = runner.sequence_scores(runner.encode(torch.as_tensor(task.train.x[i:i + 1])), task)
        (g,) = torch.autograd.grad(F.cross_entropy(scores, torch.as_tensor(task.train.y[i:i + 1])), [p])
        rows.append(g.reshape(-1))
    return torch.stack(rows).double()


class FullFisherEWC(EWC):
    """Proximal EWC with the full empirical Fisher of the one trained weight matrix (the reference)."""

    def fisher(self, runner, task):
        (name,) = trained_parameters(runner.network)
        g = per_sample_gradients(runner, task, self.samples)
        return {name: g.T @ g / len(g)}

    def _sum(self) -> None:
        self._totals, self._inverse = {}, {}
        for fisher, anchor in zip(self.fishers, self.anchors):
            for name, f in fisher.items():
                s, a = self._totals.get(name, (0, 0))
                self._totals[name] = (s + f, a + f @ anchor[name].reshape(-1).double())

    def after_update(self, runner) -> None:
        if not self._totals:
            return
        eta = runner.optimizer.param_groups[0]["lr"]
        with torch.no_grad():
            for name, p in trained_parameters(runner.network).items():
                s, a = self._totals[name]
                if name not in self._inverse:
                    self._inverse[name] = torch.linalg.inv(torch.eye(len(s), dtype=s.dtype) + eta * self.lam * s)
                p.copy_((self._inverse[name] @ (p.reshape(-1).double() + eta * self.lam * a)).reshape(p.shape))

    def health(self, runner) -> dict[str, float]:
        return {}


class Probe(Plugin):
    """Per batch: the cosine and norm ratio of the learner's update to autograd's gradient; after
    task 0, the per-sample gradients."""

    name = "probe"

    def __init__(self):
        self.cos, self.ratio, self.g = [], [], None

    def after_backward(self, runner) -> None:
        (p,) = trained_parameters(runner.network).values()
        update = p.grad.detach().clone()
        with torch.enable_grad():
            scores = runner.sequence_scores(runner.batch_sequence(), runner.scenario.tasks[runner.task])
            (g,) = torch.autograd.grad(F.cross_entropy(scores, runner.targets), [p])
        self.cos.append(float((update * g).sum() / (update.norm() * g.norm())))
        self.ratio.append(float(update.norm() / g.norm()))

    def after_task(self, runner, task: int) -> None:
        if task == 0:
            self.g = per_sample_gradients(runner, runner.scenario.tasks[0])


def run(seed: int, plugins: list, learner: bool):
    sc = CELL.scenario(seed)
    torch.manual_seed(seed)
    net = CELL.network(sc, seed)
    return Continual(net, sc, plugins, progress=False, seed=seed, learning=CELL.learning() if learner else None,
                     **CELL.options).run()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows: dict[str, list] = {}
    for seed in args.seeds:
        probe = Probe()
        runs = {"none, three-factor": run(seed, [probe], True), "none, BPTT": run(seed, [], False),
                "ewc diagonal, three-factor": run(seed, [EWC(full=0)], True),
                "ewc diagonal, BPTT": run(seed, [EWC(full=0)], False),
                "ewc defaults (whole Fisher), three-factor": run(seed, [EWC()], True),
                "reference whole Fisher, three-factor": run(seed, [FullFisherEWC()], True)}
        fisher = probe.g.T @ probe.g / len(probe.g)
        eig = torch.linalg.eigvalsh(fisher)
        top = float(eig[-10:].sum() / eig.sum())
        stiffness = CELL.options["lr"] * EWC().lam
        held_diag = int((stiffness * torch.diagonal(fisher) > 0.01).sum())
        held_full = int((stiffness * eig > 0.01).sum())
        print(f"seed {seed}: three-factor update vs autograd: cosine {np.median(probe.cos):.5f}, norm ratio "
              f"{np.median(probe.ratio):.4f} (medians over {len(probe.cos)} batches); directions held after task 0: "
              f"{held_diag} of {len(eig)} with the diagonal Fisher, {held_full} with the full one; top 10 "
              f"eigenvalues: {100 * top:.0f} % of the trace", flush=True)
        for name, r in runs.items():
            rows.setdefault(name, []).append(r)
            print(f"  {name}: ACC {100 * r.acc:.1f} BWT {100 * r.bwt:+.1f}; tasks learnt "
                  + " ".join(f"{100 * v:.0f}" for v in np.diag(r.R)), flush=True)
    print(f"\nmeans over seeds {args.seeds}:")
    for name, rs in rows.items():
        diag = np.mean([np.diag(r.R) for r in rs], 0)
        print(f"| {name} | {100 * np.mean([r.acc for r in rs]):.1f} / {100 * np.mean([r.bwt for r in rs]):+.1f} | "
              + " ".join(f"{100 * v:.0f}" for v in diag) + " |")


if __name__ == "__main__":
    main()
