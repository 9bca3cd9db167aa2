r"""Pair-based spike-timing-dependent plasticity with traces (all-to-all pairing).

Per step of ``dt`` ms, with presynaptic spikes :math:`s_j` and postsynaptic spikes :math:`s_i`:

.. math::

    x_j[t] = \lambda_+ x_j[t-1] + s_j[t], \qquad y_i[t] = \lambda_- y_i[t-1] + s_i[t],

    \Delta W_{ij}[t] = A_+ x_j[t-1] s_i[t] - A_- y_i[t-1] s_j[t],

:math:`\lambda_\pm = e^{-dt/\tau_{pre/post}}`. A pair with the presynaptic spike :math:`k \ge 1`
steps before the postsynaptic one potentiates by :math:`A_+ \lambda_+^{k-1}`, the reverse order
depresses by :math:`A_- \lambda_-^{k-1}`, and spikes in the same step do not pair. This is the
three-factor rule's Hebbian term (:mod:`.three_factor`) applied at once, averaged over the batch.
:class:`STDP` deposits :math:`-\Delta W` into ``weight.grad`` (``SGD(lr=1)`` applies it as is);
with ``w_min`` / ``w_max``, :meth:`STDP.clip` bounds the weight after the optimiser step, as in
Brian2's classic STDP example (clipped once per step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_int, check_positive
from .three_factor import DenseRule


@dataclass(frozen=True)
class STDPParameters:
    """Trace time constants (ms), amplitudes, optional weight bounds."""

    tau_pre: float = 20.0
    tau_post: float = 20.0
    a_plus: float = 0.01
    a_minus: float = 0.0105
    w_min: float | None = None
    w_max: float | None = None

    def __post_init__(self):
        check_positive("tau_pre", self.tau_pre)
        check_positive("tau_post", self.tau_post)
        check_positive("a_plus", self.a_plus, allow_zero=True)
        check_positive("a_minus", self.a_minus, allow_zero=True)
        for name in ("w_min", "w_max"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise NeurosimError(f"{name} must be a finite number or None, got {v!r}")
        if self.w_min is not None and self.w_max is not None and self.w_min > self.w_max:
            raise NeurosimError(f"w_min ({self.w_min}) must not exceed w_max ({self.w_max})")


class STDPState(NamedTuple):
    """Presynaptic traces ``x`` ``[B, n_in]`` and postsynaptic traces ``y`` ``[B, n_out]``."""

    x: torch.Tensor
    y: torch.Tensor


def stdp_step(pre: torch.Tensor, post: torch.Tensor, state: STDPState, params: STDPParameters,
              dt: float) -> tuple[STDPState, torch.Tensor]:
    """One step on spikes ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]``; returns ``(state, dW)``,
    ``dW`` ``[n_out, n_in]`` averaged over the batch (module docstring)."""
    p, B = params, pre.shape[0]
    dw = (p.a_plus * post.t() @ state.x - p.a_minus * state.y.t() @ pre) / B
    x = math.exp(-dt / p.tau_pre) * state.x + pre
    y = math.exp(-dt / p.tau_post) * state.y + post
    return STDPState(x, y), dw


class STDP(DenseRule):
    """STDP bound to a :class:`~neurosim.projections.Dense` projection.

    ``rule = STDP(projection, params, dt=1.0)``; ``state = rule.initial_state(batch)``;
    ``state = rule.step(pre, post, state)`` adds :math:`-\\Delta W` to ``projection.weight.grad``;
    after the optimiser step, ``rule.clip()`` applies ``w_min`` / ``w_max``.
    """

    Params = STDPParameters

    def initial_state(self, batch: int) -> STDPState:
        check_int("batch", batch)
        w = self.projection.weight
        return STDPState(torch.zeros(batch, self.projection.n_in, dtype=w.dtype, device=w.device),
                         torch.zeros(batch, self.projection.n_out, dtype=w.dtype, device=w.device))

    def step(self, pre: torch.Tensor, post: torch.Tensor, state: STDPState) -> STDPState:
        pre, post = self._activity(pre, post, state.x.shape[0])
        with torch.no_grad():
            state, dw = stdp_step(pre, post, state, self.params, self.dt)
            self._deposit(dw)
        return state

    def clip(self) -> None:
        """Bound the weight to ``[w_min, w_max]`` (either may be None)."""
        p = self.params
        if p.w_min is not None or p.w_max is not None:
            with torch.no_grad():
                self.projection.weight.clamp_(p.w_min, p.w_max)
