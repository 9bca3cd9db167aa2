r"""Three-factor plasticity: a Hebbian eligibility trace turned into a weight change by a modulator.

For a projection with weight :math:`W` (``[n_out, n_in]``), presynaptic activity :math:`s_j` and
postsynaptic activity :math:`s_i` (spikes or rates), per step of ``dt`` ms
(Fremaux & Gerstner 2016):

.. math::

    x_j[t] = \lambda_+ x_j[t-1] + s_j[t], \qquad y_i[t] = \lambda_- y_i[t-1] + s_i[t],

    H_{ij}[t] = A_+ x_j[t-1] s_i[t] - A_- y_i[t-1] s_j[t] \quad (\text{``hebbian="stdp"``}),
    \qquad H_{ij}[t] = A_+ x_j[t] \quad (\text{``hebbian="pre"``}),

    e_{ij}[t] = \lambda_e e_{ij}[t-1] + H_{ij}[t], \qquad \Delta W_{ij}[t] = M[t]\, e_{ij}[t],

with :math:`\lambda_+ = e^{-dt/\tau_{pre}}`, :math:`\lambda_- = e^{-dt/\tau_{post}}`,
:math:`\lambda_e = e^{-dt/\tau_e}`. ``hebbian="pre"`` takes the presynaptic trace alone (the
postsynaptic factor is 1), for non-spiking readouts: with a per-neuron error as :math:`M` it is the
delta rule on the filtered input. The modulator :math:`M` (reward minus baseline, TD error, a
per-neuron error times an attention gate) is a number, one value per sample ``[B]`` or per sample
and postsynaptic neuron ``[B, n_out]``; :math:`\Delta W` is the mean over the batch.

:func:`three_factor_step` is one step on a weight matrix (every pair of neurons);
:func:`three_factor_synapses` the same on the synapses of a projection (a Dense projection's mask
or a Sparse projection's list), which :meth:`Network.plasticity
<neurosim.network.Network.plasticity>` runs inside a run. :class:`neurosim.learning.ThreeFactor`
binds the rule to a projection stepped by hand.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_choice, check_finite, check_positive

HEBBIAN = ("stdp", "pre")


@dataclass(frozen=True)
class ThreeFactorParameters:
    """Trace time constants (ms), eligibility time constant ``tau_e`` (ms), amplitudes and the Hebbian term."""

    tau_pre: float = 20.0
    tau_post: float = 20.0
    tau_e: float = 500.0
    a_plus: float = 1.0
    a_minus: float = 1.0
    hebbian: str = "stdp"

    def __post_init__(self):
        for name in ("tau_pre", "tau_post", "tau_e"):
            check_positive(name, getattr(self, name))
        check_positive("a_plus", self.a_plus, allow_zero=True)
        check_positive("a_minus", self.a_minus, allow_zero=True)
        check_choice("hebbian", self.hebbian, HEBBIAN)

    def decays(self, dt: float) -> tuple[float, float, float]:
        r""":math:`(\lambda_+, \lambda_-, \lambda_e)` over one step of ``dt`` ms."""
        return math.exp(-dt / self.tau_pre), math.exp(-dt / self.tau_post), math.exp(-dt / self.tau_e)


class ThreeFactorState(NamedTuple):
    """Traces ``x`` ``[B, n_in]``, ``y`` ``[B, n_out]`` and eligibility ``e``: ``[B, n_out, n_in]`` on a
    weight matrix, ``[B, nnz]`` on a list of synapses."""

    x: torch.Tensor
    y: torch.Tensor
    e: torch.Tensor


def three_factor_initial_state(batch: int, n_in: int, n_out: int, dtype: torch.dtype = torch.float32,
                               device=None, synapses: int | None = None) -> ThreeFactorState:
    """Zero traces; ``synapses``: the eligibility per synapse of a list of that many (else per pair)."""
    e = (torch.zeros(batch, n_out, n_in, dtype=dtype, device=device) if synapses is None
         else torch.zeros(batch, synapses, dtype=dtype, device=device))
    return ThreeFactorState(torch.zeros(batch, n_in, dtype=dtype, device=device),
                            torch.zeros(batch, n_out, dtype=dtype, device=device), e)


def modulator_tensor(modulator, batch: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
    """The modulator as ``[B, n_out, 1]`` (or a broadcastable scalar tensor); checks its shape."""
    m = torch.as_tensor(modulator, dtype=like.dtype, device=like.device)
    check_finite("modulator", m)
    if m.dim() == 0:
        return m
    if m.shape == (batch,):
        return m.view(batch, 1, 1)
    if m.shape == (batch, n_out):
        return m.unsqueeze(-1)
    raise NeurosimError(f"modulator must be a number, [B] = [{batch}] or [B, n_out] = [{batch}, {n_out}], "
                        f"got shape {tuple(m.shape)}")


def deposit(weight: torch.Tensor, dw: torch.Tensor) -> None:
    """Add the change ``dw`` to ``weight.grad`` as a descent direction: ``grad -= dw``."""
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    weight.grad.sub_(dw.to(weight.grad.dtype))


def three_factor_step(pre: torch.Tensor, post: torch.Tensor, modulator, state: ThreeFactorState,
                      params: ThreeFactorParameters, dt: float) -> tuple[ThreeFactorState, torch.Tensor]:
    """One step on ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]``; returns ``(state, dW)`` with
    ``dW`` ``[n_out, n_in]`` the batch mean of :math:`M e` (module docstring)."""
    return three_factor_synapses(pre, post, modulator, state, params, dt)


def three_factor_synapses(pre: torch.Tensor, post: torch.Tensor, modulator, state: ThreeFactorState,
                          params: ThreeFactorParameters, dt: float,
                          synapses: tuple[torch.Tensor, torch.Tensor] | None = None,
                          mask: torch.Tensor | None = None) -> tuple[ThreeFactorState, torch.Tensor | None]:
    """:func:`three_factor_step` on the synapses ``(post, pre)`` (index tensors ``[nnz]``; the
    eligibility and ``dW`` are then per synapse) or, with ``synapses`` None, on every pair
    (a boolean ``mask`` ``[n_out, n_in]`` keeps the eligibility of the others at 0). ``modulator``
    None: the traces alone, ``dW`` None."""
    p = params
    lam_pre, lam_post, lam_e = p.decays(dt)
    x_prev, y_prev = state.x, state.y
    x = lam_pre * x_prev + pre
    y = lam_post * y_prev + post
    if synapses is None:
        if p.hebbian == "stdp":
            h = p.a_plus * post.unsqueeze(2) * x_prev.unsqueeze(1) - p.a_minus * y_prev.unsqueeze(2) * pre.unsqueeze(1)
        else:
            h = (p.a_plus * x).unsqueeze(1).expand_as(state.e)
        if mask is not None:
            h = h * mask
    else:
        i, j = synapses
        if p.hebbian == "stdp":
            h = p.a_plus * post[:, i] * x_prev[:, j] - p.a_minus * y_prev[:, i] * pre[:, j]
        else:
            h = p.a_plus * x[:, j]
    e = lam_e * state.e + h
    if modulator is None:
        return ThreeFactorState(x, y, e), None
    m = modulator_tensor(modulator, pre.shape[0], post.shape[1], e)
    if synapses is not None and m.dim():
        m = m.squeeze(-1)
        m = m[:, synapses[0]] if m.shape[1] > 1 else m
    return ThreeFactorState(x, y, e), (m * e).mean(0)
