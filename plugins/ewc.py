r"""Elastic weight consolidation (Kirkpatrick et al. 2017), separate or online.

After task ``s`` the diagonal Fisher

.. math:: F_{s,i} = \frac{1}{N} \sum_{n=1}^{N} \big(\partial_i \log p(\hat y_n | x_n)\big)^2

is estimated on ``samples`` training examples of the task, one at a time (each example's own
gradient, squared: not the square of a batch's mean gradient), and the anchor
:math:`\theta^*_s` stored. ``fisher="empirical"`` takes :math:`\hat y_n` the example's label;
``fisher="true"`` draws it from the network's own prediction :math:`p(\cdot | x_n)` (one draw per
example: a Monte Carlo estimate of Kirkpatrick et al.'s Fisher, the expectation over the model's
labels; the default). The two differ on examples the network gets wrong: there the empirical Fisher holds the
squared error gradient (for the output layer's logits :math:`\lVert p - e_y \rVert^2`, up to 2),
the true one only the network's uncertainty (in expectation :math:`1 - \lVert p \rVert^2`).
Later tasks minimise

.. math:: L + \frac{\lambda}{2} \sum_s \sum_i F_{s,i} (\theta_i - \theta^*_{s,i})^2 .

**Whole Fishers of small parameters.** The diagonal treats the parameters as independent. Where
the inputs of a weight matrix are strongly correlated it misjudges which moves matter: on a readout
of 2,000 weights trained alone on the correlated rates of a fixed spiking layer (``three-factor`` of
:mod:`neurosim.runs.conformance`), the diagonal held 1,583-1,646 weights near their anchors (a pull
of more than 1 % a step), yet the moves it let through, on weights whose diagonal entries were small,
brought every task to near chance (ACC 50.1 % against no protection's 64.8, seeds 0-2; with
``lam=10`` 34.0 %). So a parameter of at most ``full`` entries (default 2,048) keeps its whole
Fisher :math:`F_s = \frac{1}{N}\sum_n g_n g_n^\top` (:math:`g_n` the example's gradient, flattened;
``[numel, numel]``), and the penalty is :math:`\frac{\lambda}{2} \sum_s (\theta - \theta^*_s)^\top
F_s (\theta - \theta^*_s)`: there EWC gives ACC / BWT 81.8 / -9.9 % (no protection 64.8 / -35.4).
Larger parameters keep the diagonal (a whole Fisher of :math:`P` entries costs :math:`P^2` numbers
and, per task, one :math:`P \times P` inverse); ``full=0`` is the diagonal everywhere, Kirkpatrick et
al.'s EWC. The formulas below are written for the diagonal; with a whole Fisher products become
matrix products and the division of the proximal step the inverse of :math:`I + \eta\lambda\sum_s F_s`.

Online EWC keeps one Fisher, :math:`F \leftarrow \gamma F + F_{new}`, and the latest anchor
:math:`\theta^*` (the parameters after the last task): the penalty is
:math:`\frac{\lambda}{2} \sum_i F_i (\theta_i - \theta^*_i)^2`.

``average=True`` divides the Fishers in the penalty by the number :math:`T` of tasks seen:
:math:`\frac{\lambda}{2T} \sum_s \sum_i F_{s,i} (\theta_i - \theta^*_{s,i})^2` when separate, and
:math:`\frac{\lambda}{2T} \sum_i F_i (\theta_i - \theta^*_i)^2` online. Online with
:math:`\gamma = 1` this is the running mean of the tasks' Fishers,
:math:`\bar F \leftarrow (F_{new} + (T-1) \bar F) / T`, with the latest anchor (the EWC of Serra et
al.'s HAT repository). Its stiffness :math:`\lambda \bar F` does not grow with the number of tasks,
where the sum of separate Fishers does.

**Separate anchors and the most recent task.** The separate penalty is, up to a constant,
:math:`\frac{\lambda}{2} \sum_i (\sum_s F_{s,i}) (\theta_i - \bar\theta_i)^2` with
:math:`\bar\theta = \sum_s F_s \theta^*_s / \sum_s F_s`: it pulls every weight toward a
Fisher-weighted mean of all the anchors, not toward the last one, where every task seen was still
known. What the last task changed is pulled back toward the older anchors, and the most recent
task, whose Fisher is one of many in the sum, is the one forgotten most. The online penalty's
minimum is the latest anchor.

**Normalised Fishers** (``normalise=True``). The empirical Fisher of each task is larger than the
one before (on ten permuted-MNIST tasks the median entry of the input layer's grew 14 times, the
output layer's 2.6 times): the later tasks are fitted less well under the penalty, and their larger
gradients make the penalty stiffer still, so the newest Fishers dominate the average and the oldest
task keeps the smallest share of it. With ``normalise`` each parameter's Fisher is rescaled,

.. math:: F_s \leftarrow F_s \, \frac{\overline{\operatorname{diag} F_1}}{\overline{\operatorname{diag} F_s}},

so that its mean diagonal entry is that of the parameter's first Fisher: every task weighs alike in
the penalty, and ``lam`` keeps its meaning for the first task. The relative importance of the
entries within a parameter is kept. On ten permuted-MNIST tasks (``benchmarks/pmnist.py``, seed 0,
``lam=400``, empirical Fishers) it raised ACC / BWT from 89.26 / -3.38 to 90.94 / -3.69 %: the tasks
were learnt to 94.26 % on average, against 92.30, and the first task kept 87.1 % against 87.5. On
five permuted digit tasks of eight epochs (``permuted-long``, seeds 0-2) ACC rose from 63.8 to 70.8 %; on the
other scenarios of :mod:`neurosim.runs.conformance` ACC moved by at most 0.7 points and BWT by at
most 0.4, except the class-incremental split's (-94.5 against -95.7).

**The true Fisher by default.** On a trained network the empirical Fisher is largest on the few
examples it gets wrong (their error gradients are large), and small on the weights the examples it
gets right depend on; the true Fisher weighs every example by the network's own uncertainty. On ten
permuted-MNIST tasks (``benchmarks/pmnist.py``, ``lam=400``, normalised, seed 0) it gave ACC / BWT
91.82 / -2.56 % against the empirical Fisher's 90.94 / -3.69, the tasks learnt about as well (94.12 %
on average against 94.26); 5,000 examples of the empirical Fisher gave 91.43 / -2.83. On
:mod:`neurosim.runs.conformance` (seeds 0-2) BWT rose on ``permuted`` (-2.3 against -3.6),
``recurrent`` (-1.1 against -2.8) and ``ei`` (-2.9 against -4.7); ``delayed`` (two tasks, its spread
over the seeds 29 points of ACC) fell to ACC / BWT 87.1 / -8.9 from 93.0 / -1.0, and ``three-factor``
to BWT -10.5 from -9.9; ACC moved by less than a point elsewhere.

Every trained parameter of the network is protected; parameters frozen since (e.g. thresholds
after the first task) cannot drift and are skipped. The examples (and, for the true Fisher, one
uniform number per example that picks its label) are drawn with a generator of their own (from
``seed`` and the task), so the runner's sample order is the same with and without EWC. Under data
parallelism each rank estimates the Fisher on its share of the samples and the sums are
all-reduced; the draws are the same on every rank.

**How the penalty is applied** (``form``; with ``average``, :math:`\lambda / T` takes the place of
:math:`\lambda` below):

- ``"proximal"`` (default): the optimiser steps on :math:`L` alone, then every protected
  parameter takes the exact minimiser of the penalty plus :math:`\frac{1}{2\eta}(\theta - \theta')^2`
  around the step's result :math:`\theta'` (:math:`\eta` its learning rate):

  .. math:: \theta \leftarrow \frac{\theta' + \eta\lambda \sum_s F_{s}\theta^*_{s}}{1 + \eta\lambda \sum_s F_{s}}

  (proximal gradient descent: the same fixed points as gradient descent on the penalised loss).
  It cannot overshoot: a parameter moves toward its anchors by the fraction
  :math:`\eta\lambda\sum_s F_s / (1 + \eta\lambda\sum_s F_s) < 1` per step.
- ``"penalty"``: the penalty is added to the loss in ``before_backward``, and its gradient
  :math:`\lambda \sum_s F_s (\theta - \theta^*_s)` descended with the loss. With plain SGD this
  multiplies a parameter's distance to its anchor by :math:`1 - \eta\lambda\sum_s F_s` per step:
  it oscillates where that product exceeds 1 and diverges where it exceeds 2. The Fisher is
  heavy-tailed (largest in the output layer), so the largest entries bound :math:`\lambda` and
  the hidden layers, whose entries are orders of magnitude smaller, stay almost unprotected.

With Adam, :math:`\eta` in the proximal step is the optimiser's nominal learning rate.

**Defaults**: ``lam=100``, 1,000 samples, the true Fisher, the proximal form, online with the
Fishers averaged (``online=True, average=True``: the running mean of the tasks' Fishers and the
latest anchor), whole Fishers for parameters of at most 2,048 entries, normalised Fishers
(``normalise=True``; ``False`` keeps each task's Fisher as estimated). Separate Fishers
(``online=False, average=False``, the defaults until this was measured) stiffen task after task:
the empirical Fisher of each task is larger than the one before, so their sum grows faster than the
number of tasks. On five permuted digit tasks of eight epochs (``permuted-long`` of
:mod:`neurosim.runs.conformance`, seeds 0-2; diagonal Fishers) they learnt task 4 to 26-48 % (95-96 %
without protection), ACC / BWT 55.6 / -22.4 against no protection's 62.5 / -38.2, where averaged
online ones gave 64.7 / -18.6 (with the readout's whole Fisher: 63.8 / -20.0; normalised too: 70.8
/ -18.3; the defaults, with the true Fisher: 71.6 / -18.9); on five permuted Fashion-MNIST tasks
(3,000 images, 2 epochs, the DSR network 784-128-10, seeds 0-1; empirical Fishers) 66.9 / -6.8
against no protection's 73.6 / -3.0, where averaged online ones gave 73.3 / -1.5 (normalised too:
73.2 / -1.5). On ten permuted-MNIST tasks with the HLOP paper's network
(``benchmarks/pmnist.py``, which lists the trials) the separate Fishers also forget the most
recent task most (above); the benchmark uses the defaults with ``lam=400``.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from neurosim.errors import NeurosimError, check_choice, check_positive
from neurosim.continual import distributed
from neurosim.continual.plugin import Plugin, trained_parameters

FORMS = ("proximal", "penalty")
FISHERS = ("empirical", "true")


def proximal_step(runner, quadratics: dict[str, tuple[torch.Tensor, torch.Tensor]],
                  inverses: dict[str, tuple[float, torch.Tensor]] | None = None) -> None:
    r"""After the optimiser's step :math:`\theta'`, each parameter named in ``quadratics`` (by its
    qualified name, if still trained) takes the minimiser of the penalty
    :math:`\tfrac12 (\theta^\top K \theta - 2 A^\top \theta)` plus
    :math:`\tfrac{1}{2\eta}\lVert \theta - \theta' \rVert^2` (:math:`\eta` its learning rate),
    given ``quadratics[name] = (K, A)``: :math:`\theta \leftarrow (I + \eta K)^{-1} (\theta' + \eta A)`.
    ``K`` is diagonal (the parameter's shape; the inverse is a division) or whole (``[numel, numel]``
    over the flattened parameter, ``A`` of ``numel`` entries; its inverse is computed in double
    precision and kept in ``inverses`` per name and learning rate: clear it when ``K`` changes). For
    :math:`K \succeq 0` the step moves each parameter toward the penalty's minimum by a fraction
    below 1 along every eigenvector of ``K``: it cannot overshoot, however stiff the penalty."""
    rates = {id(p): group["lr"] for group in runner.optimizer.param_groups for p in group["params"]}
    with torch.no_grad():
        for name, p in trained_parameters(runner.network).items():
            if name in quadratics and id(p) in rates:
                k, a = quadratics[name]
                eta = rates[id(p)]
                if _whole(k, p):
                    cached = inverses.get(name)
                    if cached is None or cached[0] != eta:
                        m = torch.eye(len(k), dtype=torch.float64) + eta * k.double()
                        cached = inverses[name] = (eta, torch.linalg.inv(m).to(k.dtype))
                    p.copy_((cached[1] @ (p.reshape(-1) + eta * a)).reshape(p.shape))
                else:
                    p.copy_((p + eta * a) / (1 + eta * k))


def _whole(f: torch.Tensor, like: torch.Tensor) -> bool:
    """Whether ``f`` is a whole matrix (``[numel, numel]``) over a parameter shaped like ``like``."""
    return f.shape != like.shape


class EWC(Plugin):
    """``EWC(lam=100.0, online=True, gamma=1.0, average=True, samples=1000, fisher="true",
    form="proximal", full=2048, normalise=True, seed=0)``; see the module docstring. ``fisher`` not
    given means ``"true"``; a run's state written before the state named its Fisher (when the
    empirical one was the default) resumes only with ``fisher`` given."""

    name = "ewc"

    def __init__(self, lam: float = 100.0, online: bool = True, gamma: float = 1.0, average: bool = True,
                 samples: int = 1000, fisher: str | None = None, form: str = "proximal", full: int = 2048,
                 normalise: bool = True, seed: int = 0):
        check_positive("lam", lam, allow_zero=True)
        check_positive("gamma", gamma, allow_zero=True)
        if not isinstance(samples, int) or samples < 1:
            raise NeurosimError(f"samples must be a positive integer, got {samples!r}")
        if not isinstance(full, int) or isinstance(full, bool) or full < 0:
            raise NeurosimError(f"EWC full must be a non-negative integer, got {full!r}")
        for flag, value in (("online", online), ("average", average), ("normalise", normalise)):
            if not isinstance(value, bool):
                raise NeurosimError(f"EWC {flag} must be true or false, got {value!r}")
        if fisher is not None:
            check_choice("EWC fisher", fisher, FISHERS)
        check_choice("EWC form", form, FORMS)
        self.lam, self.online, self.gamma, self.samples = float(lam), online, float(gamma), samples
        self.average, self.normalise = average, normalise
        self.units: dict[str, torch.Tensor] = {}  # per parameter, the mean diagonal entry of its first Fisher
        self.tasks = 0  # Fishers taken so far
        self.kind, self.form, self.full, self.seed = fisher or "true", form, full, seed
        self._named = fisher is not None  # a state of before the Fisher was recorded resumes only if named
        self.fishers: list[dict[str, torch.Tensor]] = []
        self.anchors: list[dict[str, torch.Tensor]] = []
        self._totals: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self._inverses: dict[str, tuple[float, torch.Tensor]] = {}

    def fisher(self, runner, task) -> dict[str, torch.Tensor]:
        """The Fisher of ``task`` at the network's current parameters (module docstring): per
        parameter of at most ``full`` entries the whole matrix (``[numel, numel]``, over the
        flattened parameter), per larger one its diagonal (the parameter's shape)."""
        params = trained_parameters(runner.network)
        fisher = {n: p.new_zeros(p.numel(), p.numel()) if p.numel() <= self.full else torch.zeros_like(p)
                  for n, p in params.items()}
        n = min(self.samples, len(task.train.y))
        seed = int(np.random.SeedSequence([self.seed, task.index]).generate_state(1)[0])
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(task.train.y), generator=gen)[:n].numpy()
        draws = torch.rand(n, generator=gen, dtype=torch.float64)
        mine = distributed.shard(n)
        for k, i in enumerate(idx):
            seq = runner.encode(torch.as_tensor(task.train.x[i:i + 1]))  # every rank encodes every sample
            if not mine.start <= k < mine.stop:
                continue
            scores = runner.sequence_scores(seq, task)
            if self.kind == "true":  # the label whose cumulative probability first exceeds the draw
                cdf = torch.softmax(scores.detach().double(), 1).cumsum(1)
                y = torch.searchsorted(cdf, draws[k:k + 1, None])[:, 0].clamp(max=scores.shape[1] - 1)
            else:
                y = torch.as_tensor(task.train.y[i:i + 1])
            loss = F.cross_entropy(scores, y)
            grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
            for (name, p), g in zip(params.items(), grads):
                if g is None:
                    continue
                if _whole(fisher[name], p):
                    v = g.detach().reshape(-1)
                    fisher[name].addr_(v, v, alpha=1.0 / n)
                else:
                    fisher[name] += g.detach() ** 2 / n
        distributed.all_reduce_many(fisher.values())
        return fisher

    def after_task(self, runner, task: int) -> None:
        anchor = {n: p.detach().clone() for n, p in trained_parameters(runner.network).items()}
        new = self._normalised(self.fisher(runner, runner.scenario.tasks[task]), anchor)
        self.tasks += 1
        if self.online and self.fishers:
            old = self.fishers[0]
            self.fishers = [{n: self.gamma * old[n] + f if n in old else f for n, f in new.items()}]
            self.anchors = [anchor]
        else:
            self.fishers.append(new)
            self.anchors.append(anchor)
        self._sum()

    def _normalised(self, new: dict[str, torch.Tensor], anchor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """With ``normalise``, each parameter's Fisher rescaled so that its mean diagonal entry is that
        of the parameter's first Fisher that is not zero (a Fisher of mean 0 is left as it is)."""
        if not self.normalise:
            return new
        out = {}
        for name, f in new.items():
            mean = (f.diagonal() if _whole(f, anchor[name]) else f).mean()
            out[name] = f * (self.units.setdefault(name, mean) / mean) if mean > 0 else f
        return out

    def scale(self) -> float:
        """The factor of the Fishers in the penalty: :math:`1 / T` with ``average`` (``T`` tasks seen), else 1."""
        return 1.0 / self.tasks if self.average and self.tasks else 1.0

    def _sum(self) -> None:
        """Per parameter, :math:`\\lambda c \\sum_s F_s` and :math:`\\lambda c \\sum_s F_s \\theta^*_s`
        (:math:`c` the :meth:`scale`; the proximal step's inputs; for a whole Fisher, over the flattened
        parameter)."""
        self._totals, self._inverses = {}, {}
        c = self.lam * self.scale()
        for fisher, anchor in zip(self.fishers, self.anchors):
            for name, f in fisher.items():
                s, a = self._totals.get(name, (0, 0))
                pull = f @ anchor[name].reshape(-1) if _whole(f, anchor[name]) else f * anchor[name]
                self._totals[name] = (s + c * f, a + c * pull)

    def stiffness(self) -> dict[str, torch.Tensor]:
        r"""Per protected parameter, :math:`\lambda c \sum_s F_s`: the penalty's curvature (for a
        whole Fisher its diagonal, in the parameter's shape)."""
        shapes = {name: p.shape for name, p in self.anchors[-1].items()} if self.anchors else {}
        return {name: s.diagonal().reshape(shapes[name]) if s.shape != shapes[name] else s
                for name, (s, _) in self._totals.items()}

    def penalty(self, network) -> torch.Tensor:
        r""":math:`\frac{\lambda}{2}\sum_s\sum_i F_{s,i}(\theta_i - \theta^*_{s,i})^2` over the parameters still trained."""
        params = trained_parameters(network)
        total = torch.zeros(())
        for fisher, anchor in zip(self.fishers, self.anchors):
            for name, f in fisher.items():
                if name in params:  # parameters frozen since cannot drift
                    d = params[name] - anchor[name]
                    if _whole(f, d):
                        d = d.reshape(-1)
                        total = total + d @ (f @ d)
                    else:
                        total = total + (f * d ** 2).sum()
        return 0.5 * self.lam * self.scale() * total

    def before_backward(self, runner, loss):
        if self.form != "penalty" or not self.fishers:
            return loss
        return loss + self.penalty(runner.network).to(loss)

    def after_update(self, runner) -> None:
        if self.form != "proximal" or not self._totals or self.lam == 0:
            return
        proximal_step(runner, self._totals, self._inverses)

    def health(self, runner) -> dict[str, float]:
        """``penalty_share``: the penalty's part of the last batch's loss plus penalty (0 before the
        first Fisher); in the proximal form the penalty is not in the loss but is computed alike."""
        if not self.fishers or runner.loss is None:
            return {"penalty_share": 0.0}
        with torch.no_grad():
            penalty = float(self.penalty(runner.network))
            total = runner.loss.item() + (penalty if self.form == "proximal" else 0.0)
        return {"penalty_share": penalty / total if total else 0.0}

    def state_dict(self) -> dict:
        return {"fishers": [dict(f) for f in self.fishers], "anchors": [dict(a) for a in self.anchors],
                "tasks": self.tasks, "units": dict(self.units), "fisher": self.kind}

    def load_state_dict(self, state: dict) -> None:
        self.fishers = [{k: v.clone() for k, v in f.items()} for f in state["fishers"]]
        self.anchors = [{k: v.clone() for k, v in a.items()} for a in state["anchors"]]
        self.tasks = int(state.get("tasks", len(self.fishers)))
        if self.normalise and self.fishers and "units" not in state:
            raise NeurosimError("EWC: this run's state has no Fisher units (it was written before EWC normalised "
                                "its Fishers, or with normalise=False): it cannot continue with normalise=True")
        kind = state.get("fisher")
        if self.fishers and kind is None and not self._named:
            raise NeurosimError("EWC: this run's state does not say which Fisher it holds (it was written when the "
                                "empirical Fisher was the default): resume it with fisher='empirical' given")
        if kind is not None and kind != self.kind:
            raise NeurosimError(f"EWC: this run's state holds the {kind} Fisher; it cannot continue with "
                                f"fisher={self.kind!r}")
        self.units = {k: v.clone() for k, v in state.get("units", {}).items()}
        self._sum()
