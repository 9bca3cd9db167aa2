r"""Pair-based spike-timing-dependent plasticity: Brian2's STDP synapse, step by step.

The synapse of Brian2's STDP example, with all-to-all pairing through event-driven traces,

.. code-block:: text

    dapre/dt = -apre / taupre, dapost/dt = -apost / taupost     (event-driven)
    on_pre:  apre += Apre;  w = clip(w + apost, w_min, w_max)
    on_post: apost += Apost; w = clip(w + apre, w_min, w_max)

with :math:`A_{pre} = A_+` and :math:`A_{post} = -A_-`. Per step of ``dt`` ms, with presynaptic
spikes :math:`s_j` and postsynaptic spikes :math:`s_i` (0 or 1), the traces :math:`x_j` (``apre``)
and :math:`y_i` (``apost``, at most 0) first decay by :math:`\lambda_\pm = e^{-dt/\tau_{pre/post}}`,
then the presynaptic pathway runs before the postsynaptic one, as in Brian2's schedule:

.. math::

    x_j \leftarrow \lambda_+ x_j + A_+ s_j, \qquad
    w_{ij} \leftarrow \mathrm{clip}(w_{ij} + y_i) \text{ where } s_j = 1, \qquad
    y_i \leftarrow \lambda_- y_i - A_- s_i, \qquad
    w_{ij} \leftarrow \mathrm{clip}(w_{ij} + x_j) \text{ where } s_i = 1.

A presynaptic spike :math:`k \ge 0` steps before a postsynaptic one potentiates by
:math:`A_+ \lambda_+^k` (a pair in the same step by :math:`A_+`: the presynaptic pathway has raised
:math:`x_j` before the postsynaptic one reads it); a postsynaptic spike :math:`k \ge 1` steps
before a presynaptic one depresses by :math:`A_- \lambda_-^k`. The weight is clipped to
``[w_min, w_max]`` (either may be ``None``) after each pathway, on the synapses that pathway
touches, so a bound hit by one event limits the next event's change. With a batch of ``B``
samples the traces are per sample and each pathway adds the batch mean of its changes (clipped
once, on every synapse with an event in any sample); with ``B = 1`` this is Brian2's synapse.

:class:`STDP` applies the change to the weight of a :class:`~neurosim.projections.Dense` (within
its mask) or :class:`~neurosim.projections.Sparse` projection in place, as Brian2 does; it does
not go through ``.grad`` or an optimiser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_int, check_positive
from ..projections import Dense, Sparse
from .three_factor import LocalRule


@dataclass(frozen=True)
class STDPParameters:
    """Trace time constants (ms), amplitudes :math:`A_+`, :math:`A_-` (both >= 0), optional weight bounds."""

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
    """Presynaptic traces ``x`` ``[B, n_in]`` (``apre``) and postsynaptic traces ``y`` ``[B, n_out]`` (``apost``)."""

    x: torch.Tensor
    y: torch.Tensor


def _pathway(w: torch.Tensor, change: torch.Tensor, event: torch.Tensor, p: STDPParameters) -> torch.Tensor:
    """``clip(w + change)`` on the synapses with an ``event``, ``w`` elsewhere."""
    new = w + change
    if p.w_min is not None or p.w_max is not None:
        new = torch.clamp(new, p.w_min, p.w_max)
    return torch.where(event, new, w)


def stdp_step(pre: torch.Tensor, post: torch.Tensor, state: STDPState, params: STDPParameters, dt: float,
              weight: torch.Tensor, synapses: tuple[torch.Tensor, torch.Tensor] | None = None,
              mask: torch.Tensor | None = None) -> tuple[STDPState, torch.Tensor]:
    """One step on spikes ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]`` (module docstring);
    returns ``(state, weight)`` with the new weight.

    ``weight`` is a matrix ``[n_out, n_in]`` (``synapses`` None; a boolean ``mask`` of the same
    shape marks the synapses that exist) or one value per synapse ``[nnz]`` with ``synapses`` the
    index tensors ``(post, pre)`` ``[nnz]`` of each synapse.
    """
    p, batch = params, pre.shape[0]
    x = math.exp(-dt / p.tau_pre) * state.x + p.a_plus * pre
    y_decayed = math.exp(-dt / p.tau_post) * state.y
    y = y_decayed - p.a_minus * post
    pre_fired, post_fired = pre.any(0), post.any(0)
    if synapses is None:
        pre_event, post_event = pre_fired.unsqueeze(0), post_fired.unsqueeze(1)
        if mask is not None:
            pre_event, post_event = pre_event & mask, post_event & mask
        w = _pathway(weight, y_decayed.t() @ pre / batch, pre_event, p)
        w = _pathway(w, post.t() @ x / batch, post_event, p)
    else:
        i, j = synapses
        w = _pathway(weight, (y_decayed[:, i] * pre[:, j]).mean(0), pre_fired[j], p)
        w = _pathway(w, (post[:, i] * x[:, j]).mean(0), post_fired[i], p)
    return STDPState(x, y), w


class STDP(LocalRule):
    """STDP bound to a :class:`~neurosim.projections.Dense` or :class:`~neurosim.projections.Sparse` projection.

    ``rule = STDP(projection, params, dt=1.0)``; ``state = rule.initial_state(batch)``;
    ``state = rule.step(pre, post, state)`` changes ``projection.weight`` in place (module docstring).
    """

    Params = STDPParameters
    accepts = (Dense, Sparse)

    def initial_state(self, batch: int) -> STDPState:
        check_int("batch", batch)
        w = self.projection.weight
        return STDPState(torch.zeros(batch, self.projection.n_in, dtype=w.dtype, device=w.device),
                         torch.zeros(batch, self.projection.n_out, dtype=w.dtype, device=w.device))

    def step(self, pre: torch.Tensor, post: torch.Tensor, state: STDPState) -> STDPState:
        """One step on spikes ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]`` (0 or 1)."""
        pre, post = self._activity(pre, post, state.x.shape[0])
        for name, z in (("pre", pre), ("post", post)):
            if not bool(((z == 0) | (z == 1)).all()):
                raise NeurosimError(f"{name} must hold spikes (0 or 1) for STDP")
        proj = self.projection
        with torch.no_grad():
            if isinstance(proj, Sparse):
                state, w = stdp_step(pre, post, state, self.params, self.dt, proj.weight, (proj.post, proj.pre))
            else:
                state, w = stdp_step(pre, post, state, self.params, self.dt, proj.weight, mask=proj.mask)
            proj.weight.copy_(w)
        return state
