r"""Synaptic intelligence (Zenke, Poole & Ganguli 2017).

During a task each optimiser step adds :math:`\omega_k \mathrel{-}= g_k \, \Delta\theta_k`
(``g`` the gradient used by the step, :math:`\Delta\theta` the change it made). At the end of
the task :math:`\Omega_k \mathrel{+}= \omega_k / (\Delta_k^2 + \xi)` with :math:`\Delta_k` the
parameter's total change over the task, and later tasks add
:math:`c \sum_k \Omega_k (\theta_k - \tilde\theta_k)^2` to the loss (:math:`\tilde\theta` the
parameters at the end of the previous task). Under data parallelism ``g`` is the gradient the
runner has already all-reduced, so the path integral is the global one on every rank.
"""
from __future__ import annotations

import torch

from neurosim.errors import check_positive
from neurosim.continual.plugin import Plugin, trained_parameters


class SI(Plugin):
    name = "si"

    def __init__(self, c: float = 1.0, xi: float = 1e-3):
        check_positive("c", c, allow_zero=True)
        check_positive("xi", xi)
        self.c, self.xi = float(c), float(xi)
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
        for n, p in trained_parameters(runner.network).items():
            if n in self._grad:
                self.omega[n] -= self._grad[n] * (p.detach() - self._before[n])

    def after_task(self, runner, task: int) -> None:
        for n, p in trained_parameters(runner.network).items():
            delta = p.detach() - self.start[n]
            self.big_omega[n] = self.big_omega.get(n, torch.zeros_like(p)) + self.omega[n] / (delta ** 2 + self.xi)
            self.start[n] = p.detach().clone()

    def before_backward(self, runner, loss):
        if not self.big_omega:
            return loss
        params = trained_parameters(runner.network)
        penalty = sum((om * (params[n] - self.start[n]) ** 2).sum() for n, om in self.big_omega.items()
                      if n in params)  # parameters frozen since (e.g. by HLOP) cannot drift
        return loss + self.c * penalty

    def state_dict(self) -> dict:
        return {"omega": dict(self.omega), "big_omega": dict(self.big_omega), "start": dict(self.start)}

    def load_state_dict(self, state: dict) -> None:
        self.omega = {k: v.clone() for k, v in state["omega"].items()}
        self.big_omega = {k: v.clone() for k, v in state["big_omega"].items()}
        self.start = {k: v.clone() for k, v in state["start"].items()}
