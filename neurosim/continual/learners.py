r"""Learners: how the continual runner turns one batch into an update in ``.grad``.

:class:`BPTT` differentiates the whole run with autograd; :class:`ThreeFactorLearner` and
:class:`EPropLearner` compute a local rule's update (:mod:`neurosim.learning`) without autograd.
A learner has two methods, between which the runner fires ``after_forward`` and the penalties of
``before_backward``:

- ``forward(runner, task) -> scores``: runs the batch ``runner.inputs``, encoded as
  ``runner.batch_sequence()`` (``.grad`` was just zeroed), and returns its scores masked per sample
  with ``runner.mask(scores, runner.sample_tasks)`` (a replayed sample keeps its own task's classes);
  a local learner also deposits its rule's update into ``.grad`` here, as a mean over the batch;
- ``backward(runner, loss)``: puts the gradient of the (penalised, finite) loss into ``.grad``; for
  a local learner only what autograd can reach (the penalties), added to the rule's update.

The runner then fires ``after_backward`` and steps the optimiser, so gradient filters act the same
on all. The runner fires every hook; a learner that steps time one step at a time reports each
step through :meth:`Continual.on_step <neurosim.continual.runner.Continual.on_step>`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch.nn import functional as F

from ..errors import NeurosimError
from ..learning import EProp, ThreeFactor, ThreeFactorParameters
from .scenarios import Task

if TYPE_CHECKING:
    from .runner import Continual


class BPTT:
    """Surrogate-gradient backpropagation through time, the default learner: ``Network.run`` over
    the whole sequence with autograd, cross-entropy on the scores, ``loss.backward()``."""

    autograd = True

    def forward(self, runner: "Continual", task: Task) -> torch.Tensor:
        return runner.sequence_scores(runner.batch_sequence(), runner.sample_tasks)

    def backward(self, runner: "Continual", loss: torch.Tensor) -> None:
        loss.backward()


class LocalLearner:
    """A learner whose update comes from a local rule, deposited into ``.grad`` by ``forward``
    without autograd; ``backward`` adds the gradient of the penalties, if any."""

    autograd = False

    def forward(self, runner: "Continual", task: Task) -> torch.Tensor:
        raise NotImplementedError

    def backward(self, runner: "Continual", loss: torch.Tensor) -> None:
        if loss.requires_grad:
            loss.backward()


class ThreeFactorLearner(LocalLearner):
    r"""The three-factor rule (:class:`neurosim.learning.ThreeFactor`) on every trained Dense
    projection into the output population, with a per-neuron error as the modulator.

    The network runs the whole sequence without gradients; then, step by step, each projection's
    rule sees its presynaptic activity and the modulator
    :math:`M_i[t] = (\mathbb{1}[i = \text{target}] - \mathrm{softmax}(y[t])_i) / T` from the output
    :math:`y[t]` (restricted to each sample's task's classes when task-incremental). Default parameters:
    ``hebbian="pre"`` with ``tau_pre`` the output population's ``tau_mem`` (so the trace is the
    readout's filtered input, and the update the gradient of the mean per-step cross-entropy for a
    jump-input readout) and no eligibility memory beyond the step (``tau_e`` = 1e-3 ms). Other
    parameters get no update. Calls ``on_step`` with ``{population: (None, output at t)}``.
    """

    def __init__(self, params=None):
        self.params = params

    def forward(self, runner: "Continual", task: Task) -> torch.Tensor:
        net, out = runner.network, runner.output
        conns = [c for c in net.connections.values() if c.post == out and c.projection.weight.requires_grad]
        if not conns:
            raise NeurosimError(f"the three-factor learner found no trained projection into {out!r}")
        params = self.params
        if params is None:
            tau = torch.as_tensor(getattr(net.populations[out].params, "tau_mem", float("nan")))
            if tau.numel() != 1 or not torch.isfinite(tau):
                raise NeurosimError(f"output {out!r} has no single tau_mem to take the trace constant from: "
                                    "give ThreeFactorLearner(params=ThreeFactorParameters(...))")
            params = ThreeFactorParameters(tau_pre=float(tau), tau_post=float(tau), tau_e=1e-3, hebbian="pre")
        rules = [ThreeFactor(c.projection, params, net.dt) for c in conns]
        seq = runner.batch_sequence()
        pres = sorted({c.pre for c in conns if c.pre in net.populations})
        with torch.no_grad():
            res = net.run({runner.input: seq}, outputs=[out] + [p for p in pres if p != out])
            acts = dict(res.outputs, **{runner.input: seq})
            ys = acts[out]
            n, T, B = runner.scenario.n_outputs, ys.shape[0], ys.shape[1]
            onehot = F.one_hot(runner.targets, ys.shape[2]).to(ys.dtype)
            states = [rule.initial_state(B) for rule in rules]
            for t in range(T):
                p = torch.zeros_like(ys[t])
                p[:, :n] = torch.softmax(runner.mask(ys[t][:, :n], runner.sample_tasks), dim=1)
                m = (onehot - p) / T
                for k, (rule, c) in enumerate(zip(rules, conns)):
                    states[k] = rule.step(acts[c.pre][t], ys[t], m, states[k])
                runner.on_step(t, {name: (None, acts[name][t]) for name in [out] + pres})
            return runner.mask(runner.readout(ys)[:, :n], runner.sample_tasks)


class EPropLearner(LocalLearner):
    """e-prop (:class:`neurosim.learning.EProp`) on the whole sequence: the network must be one
    input, a LIF or ALIF hidden population (optionally recurrent) and the output readout (LI). The
    loss is the cross-entropy of the scores, its output error taken by autograd on the readout
    sequence only. Calls ``on_step`` with ``{population: (neuron state, output at t)}``."""

    def __init__(self, params=None, hidden: str | None = None):
        self.params, self.hidden = params, hidden
        self._rule = None

    def forward(self, runner: "Continual", task: Task) -> torch.Tensor:
        if self._rule is None or self._rule.network is not runner.network:
            self._rule = EProp(runner.network, self.params, hidden=self.hidden, readout=runner.output)
        n = runner.scenario.n_outputs

        def scores(ys):
            return runner.mask(runner.readout(ys)[:, :n], runner.sample_tasks)

        ys, _ = self._rule.sequence(runner.batch_sequence(), lambda ys: F.cross_entropy(scores(ys), runner.targets),
                                    on_step=runner.on_step)
        return scores(ys)
