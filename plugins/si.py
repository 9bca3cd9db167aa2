r"""Synaptic intelligence (Zenke, Poole & Ganguli 2017).

During a task each optimiser step adds :math:`\omega_k \mathrel{-}= g_k \, \Delta\theta_k`
(``g`` the gradient used by the step, :math:`\Delta\theta` the change the step made, the
proximal one below included). At the end of
the task :math:`\Omega_k \mathrel{+}= \max(0, \omega_k) / (\Delta_k^2 + \xi)` with :math:`\Delta_k`
the parameter's total change over the task, and later tasks are held by the penalty
:math:`c \sum_k \Omega_k (\theta_k - \tilde\theta_k)^2` (:math:`\tilde\theta` the parameters at the
end of the previous task). :math:`\omega_k` is the parameter's share of the decrease of the loss
along the path; where it is negative (the steps of the parameter raised the loss, through noise
or the other parameters' moves) it counts as no importance, so that :math:`\Omega \ge 0` and the
penalty is a consolidation, never a push away from :math:`\tilde\theta`.

**How the penalty is applied** (``form``), as for :mod:`~neurosim.plugins.ewc`:

- ``"proximal"`` (default): the optimiser steps on the loss alone, then every protected parameter
  takes the exact minimiser of the penalty plus :math:`\frac{1}{2\eta}(\theta - \theta')^2` around
  the step's result :math:`\theta'`,
  :math:`\theta \leftarrow (\theta' + 2\eta c\,\Omega\,\tilde\theta) / (1 + 2\eta c\,\Omega)`
  (:func:`~neurosim.plugins.ewc.proximal_step`): it cannot overshoot, whatever :math:`c \Omega`;
- ``"penalty"``: the penalty is added to the loss and descended with it. With plain SGD a
  parameter's distance to :math:`\tilde\theta` is multiplied by :math:`1 - 2\eta c\,\Omega` per step:
  :math:`\Omega` reaches :math:`\omega / \xi` for a parameter that barely moved over its task, and
  the run diverges where :math:`2\eta c\,\Omega > 2`.

**Default** ``c = 0.1`` (Zenke et al. report values from 0.1 to 1 across their benchmarks, with Adam):
with plain SGD, :math:`\omega` sums :math:`\eta\,\lVert g \rVert^2` over every step, noise included,
and ``c = 1`` held the parameters so tightly in the proximal form that later tasks were learnt 20 to
50 points worse than without protection (``benchmarks/conformance.py``: permuted and split digits,
recurrent and E/I networks, learnt delays); ``c = 0.1`` protected every one of those scenarios
without that cost (the table in the README).

Under data parallelism ``g`` is the gradient the runner has already all-reduced, so the path
integral is the global one on every rank.
"""
from __future__ import annotations

import torch

from neurosim.errors import check_choice, check_positive
from neurosim.continual.plugin import Plugin, trained_parameters

from .ewc import FORMS, proximal_step


class SI(Plugin):
    """``SI(c=0.1, xi=1e-3, form="proximal")``; see the module docstring."""

    name = "si"

    def __init__(self, c: float = 0.1, xi: float = 1e-3, form: str = "proximal"):
        check_positive("c", c, allow_zero=True)
        check_positive("xi", xi)
        check_choice("SI form", form, FORMS)
        self.c, self.xi, self.form = float(c), float(xi), form
        self.omega: dict[str, torch.Tensor] = {}
        self.big_omega: dict[str, torch.Tensor] = {}
        self.start: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}
        self._grad: dict[str, torch.Tensor] = {}

    def before_task(self, runner, task: int) -> None:
        params = trained_parameters(runner.network)
        self.start = {n: p.detach().clone() for n, p in params.items()}
        self.omega = {n: torch.zeros_like(p) for n, p in params.items()}

    def before_update(self, runner) -> None:
        params = trained_parameters(runner.network)
        self._before = {n: p.detach().clone() for n, p in params.items()}
        self._grad = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}

    def after_update(self, runner) -> None:
        if self.form == "proximal" and self.big_omega and self.c > 0:
            proximal_step(runner, {n: (2 * self.c * om, 2 * self.c * om * self.start[n])
                                   for n, om in self.big_omega.items() if n in self.start})  # still trained
        for n, p in trained_parameters(runner.network).items():  # the change the step made, proximal part included
            if n in self._grad:
                self.omega[n] -= self._grad[n] * (p.detach() - self._before[n])

    def after_task(self, runner, task: int) -> None:
        for n, p in trained_parameters(runner.network).items():
            delta = p.detach() - self.start[n]
            importance = self.omega[n].clamp(min=0) / (delta ** 2 + self.xi)
            self.big_omega[n] = self.big_omega.get(n, torch.zeros_like(p)) + importance
            self.start[n] = p.detach().clone()

    def penalty(self, network) -> torch.Tensor:
        r""":math:`c \sum_k \Omega_k (\theta_k - \tilde\theta_k)^2` over the parameters still trained."""
        params = trained_parameters(network)
        total = sum((om * (params[n] - self.start[n]) ** 2).sum() for n, om in self.big_omega.items()
                    if n in params)  # parameters frozen since (e.g. by HLOP) cannot drift
        return self.c * total

    def before_backward(self, runner, loss):
        if self.form != "penalty" or not self.big_omega:
            return loss
        return loss + self.penalty(runner.network)

    def state_dict(self) -> dict:
        return {"omega": dict(self.omega), "big_omega": dict(self.big_omega), "start": dict(self.start)}

    def load_state_dict(self, state: dict) -> None:
        self.omega = {k: v.clone() for k, v in state["omega"].items()}
        self.big_omega = {k: v.clone() for k, v in state["big_omega"].items()}
        self.start = {k: v.clone() for k, v in state["start"].items()}
