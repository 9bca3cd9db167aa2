r"""Elastic weight consolidation (Kirkpatrick et al. 2017), separate or online.

After task ``s`` the diagonal empirical Fisher :math:`F_{s,i} = E_x[(\partial_i \log p(y|x))^2]`
is estimated on ``samples`` training examples (one at a time), and the anchor
:math:`\theta^*_s` stored. Later tasks add

.. math:: \frac{\lambda}{2} \sum_s \sum_i F_{s,i} (\theta_i - \theta^*_{s,i})^2

to the loss. Online EWC keeps one Fisher, :math:`F \leftarrow \gamma F + F_{new}`, and the
latest anchor. Every trained parameter of the network is protected. Under data parallelism each
rank estimates the Fisher on its share of the samples and the sums are all-reduced.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from neurosim.errors import NeurosimError, check_positive
from neurosim.continual import distributed
from neurosim.continual.plugin import Plugin, trained_parameters


class EWC(Plugin):
    name = "ewc"

    def __init__(self, lam: float = 100.0, online: bool = False, gamma: float = 1.0, samples: int = 200):
        check_positive("lam", lam, allow_zero=True)
        check_positive("gamma", gamma, allow_zero=True)
        if not isinstance(samples, int) or samples < 1:
            raise NeurosimError(f"samples must be a positive integer, got {samples!r}")
        self.lam, self.online, self.gamma, self.samples = float(lam), online, float(gamma), samples
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []

    def fisher(self, runner, task) -> dict[str, torch.Tensor]:
        params = trained_parameters(runner.network)
        fisher = {n: torch.zeros_like(p) for n, p in params.items()}
        n = min(self.samples, len(task.train.y))
        idx = torch.randperm(len(task.train.y), generator=runner.generator)[:n].numpy()
        mine = distributed.shard(n)
        for k, i in enumerate(idx):
            seq = runner.encode(torch.as_tensor(task.train.x[i:i + 1]))  # every rank encodes every sample
            if not mine.start <= k < mine.stop:
                continue
            y = torch.as_tensor(task.train.y[i:i + 1])
            loss = F.cross_entropy(runner.sequence_scores(seq, task), y)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (name, _), g in zip(params.items(), grads):
                if g is not None:
                    fisher[name] += g.detach() ** 2 / n
        distributed.all_reduce_many(fisher.values())
        return fisher

    def after_task(self, runner, task: int) -> None:
        new = self.fisher(runner, runner.scenario.tasks[task])
        anchor = {n: p.detach().clone() for n, p in trained_parameters(runner.network).items()}
        if self.online and self.fishers:
            old = self.fishers[0]
            self.fishers = [{n: self.gamma * old[n] + f if n in old else f for n, f in new.items()}]
            self.anchors = [anchor]
        else:
            self.fishers.append(new)
            self.anchors.append(anchor)

    def before_backward(self, runner, loss):
        if not self.fishers:
            return loss
        params = trained_parameters(runner.network)
        penalty = loss.new_zeros(())
        for fisher, anchor in zip(self.fishers, self.anchors):
            for name, f in fisher.items():
                if name in params:  # parameters frozen since (e.g. by HLOP) cannot drift
                    penalty = penalty + (f * (params[name] - anchor[name]) ** 2).sum()
        return loss + 0.5 * self.lam * penalty

    def health(self, runner) -> dict[str, float]:
        """``penalty_share``: the penalty's part of the last batch's loss (0 before the first Fisher)."""
        if not self.fishers or runner.loss is None:
            return {"penalty_share": 0.0}
        with torch.no_grad():
            penalty = self.before_backward(runner, runner.loss.new_zeros(())).item()
            total = runner.loss.item()
        return {"penalty_share": penalty / total if total else 0.0}

    def state_dict(self) -> dict:
        return {"fishers": [dict(f) for f in self.fishers], "anchors": [dict(a) for a in self.anchors]}

    def load_state_dict(self, state: dict) -> None:
        self.fishers = [{k: v.clone() for k, v in f.items()} for f in state["fishers"]]
        self.anchors = [{k: v.clone() for k, v in a.items()} for a in state["anchors"]]
