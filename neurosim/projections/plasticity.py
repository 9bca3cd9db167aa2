r"""Pair-based spike-timing-dependent plasticity: Brian2's STDP synapse as a step function.

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
once, on every synapse with an event in any sample); with ``B = 1`` this is Brian2's synapse
(weights within 1e-9 of Brian2's, stepped by hand in ``tests/test_learning_rules.py::test_stdp_matches_brian2``
and inside a network in ``tests/test_network_plasticity.py::test_plastic_network_matches_brian2``).

:func:`stdp_step` is one whole step. :func:`stdp_trace` (the presynaptic trace) and
:func:`stdp_pathways` (the rest) are its two parts, which a network runs on either side of a
step's neuron update (:meth:`neurosim.network.Network.plasticity`).

Under Dale's law the rule acts on the magnitude :math:`|w|`, which is what the projection's
``weight`` holds, while the sign stays the presynaptic neuron's: the bounds are magnitudes,
``w_min`` must be at least 0 and defaults to 0 (:func:`stdp_bounds`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_positive


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
            if v is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
                raise NeurosimError(f"{name} must be a finite number or None, got {v!r}")
        if self.w_min is not None and self.w_max is not None and self.w_min > self.w_max:
            raise NeurosimError(f"w_min ({self.w_min}) must not exceed w_max ({self.w_max})")

    def decays(self, dt: float) -> tuple[float, float]:
        r""":math:`(\lambda_+, \lambda_-)`, the decay of the two traces over one step of ``dt`` ms."""
        return math.exp(-dt / self.tau_pre), math.exp(-dt / self.tau_post)


class STDPState(NamedTuple):
    """Presynaptic traces ``x`` ``[B, n_in]`` (``apre``) and postsynaptic traces ``y`` ``[B, n_out]`` (``apost``)."""

    x: torch.Tensor
    y: torch.Tensor


def stdp_bounds(p: STDPParameters, magnitude: bool = False) -> tuple[float | None, float | None]:
    """``(low, high)`` clipping bounds; with ``magnitude`` (a projection under Dale's law) the bounds
    of :math:`|w|`: ``low`` defaults to 0 and must not be negative."""
    if not magnitude:
        return p.w_min, p.w_max
    if p.w_min is not None and p.w_min < 0:
        raise NeurosimError(f"under Dale's law STDP bounds the magnitude |w|: w_min must be >= 0, got {p.w_min}")
    return (0.0 if p.w_min is None else p.w_min), p.w_max


def _pathway(w: torch.Tensor, change: torch.Tensor, event: torch.Tensor, bounds) -> torch.Tensor:
    """``clip(w + change)`` on the synapses with an ``event``, ``w`` elsewhere."""
    new = w + change
    if bounds[0] is not None or bounds[1] is not None:
        new = torch.clamp(new, bounds[0], bounds[1])
    return torch.where(event, new, w)


def stdp_trace(x: torch.Tensor, pre: torch.Tensor, p: STDPParameters, dt: float) -> torch.Tensor:
    r"""The presynaptic trace after spikes ``pre``: :math:`\lambda_+ x + A_+ s`."""
    return math.exp(-dt / p.tau_pre) * x + p.a_plus * pre


def stdp_pathways(pre: torch.Tensor, post: torch.Tensor, state: STDPState, p: STDPParameters, dt: float,
                  weight: torch.Tensor, synapses: tuple[torch.Tensor, torch.Tensor] | None = None,
                  mask: torch.Tensor | None = None, magnitude: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """The postsynaptic trace and the two pathways of a step whose presynaptic trace ``state.x``
    already holds the spikes ``pre``; returns ``(y, weight)``.

    ``weight`` is a matrix ``[n_out, n_in]`` (``synapses`` None; a boolean ``mask`` of the same
    shape marks the synapses that exist) or one value per synapse ``[nnz]`` with ``synapses`` the
    index tensors ``(post, pre)`` ``[nnz]`` of each synapse; ``magnitude``: it holds magnitudes
    under Dale's law (:func:`stdp_bounds`).
    """
    batch, bounds = pre.shape[0], stdp_bounds(p, magnitude)
    y_decayed = math.exp(-dt / p.tau_post) * state.y
    y = y_decayed - p.a_minus * post
    pre_fired, post_fired = pre.any(0), post.any(0)
    if synapses is None:
        pre_event, post_event = pre_fired.unsqueeze(0), post_fired.unsqueeze(1)
        if mask is not None:
            pre_event, post_event = pre_event & mask, post_event & mask
        w = _pathway(weight, y_decayed.t() @ pre / batch, pre_event, bounds)
        w = _pathway(w, post.t() @ state.x / batch, post_event, bounds)
    else:
        i, j = synapses
        w = _pathway(weight, (y_decayed[:, i] * pre[:, j]).mean(0), pre_fired[j], bounds)
        w = _pathway(w, (post[:, i] * state.x[:, j]).mean(0), post_fired[i], bounds)
    return y, w


def stdp_step(pre: torch.Tensor, post: torch.Tensor, state: STDPState, params: STDPParameters, dt: float,
              weight: torch.Tensor, synapses: tuple[torch.Tensor, torch.Tensor] | None = None,
              mask: torch.Tensor | None = None, magnitude: bool = False) -> tuple[STDPState, torch.Tensor]:
    """One step on spikes ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]`` (module docstring):
    :func:`stdp_trace`, then :func:`stdp_pathways`; returns ``(state, weight)`` with the new weight."""
    x = stdp_trace(state.x, pre, params, dt)
    y, w = stdp_pathways(pre, post, STDPState(x, state.y), params, dt, weight, synapses, mask, magnitude)
    return STDPState(x, y), w
