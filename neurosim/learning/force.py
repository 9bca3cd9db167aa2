r"""FORCE learning of a linear readout by recursive least squares (Sussillo & Abbott 2009).

The readout :math:`z = W r` of activity :math:`r` (``n_in``) is trained toward a target
:math:`f` (``n_out``). With :math:`P_0 = I / \alpha`, an update on activity :math:`r` and the
readout's error before it, :math:`e = z - f`:

.. math::

    k = P r, \qquad c = \frac{1}{1 + r^T k}, \qquad
    P \leftarrow P - c\, k k^T, \qquad
    W \leftarrow W - e\, (c k)^T

(:math:`c k` is the updated :math:`P` times :math:`r`). Applied at every step from
:math:`W_0`, :math:`W` equals the ridge solution of everything seen,
:math:`\arg\min_W \sum_t \lVert W r_t - f_t \rVert^2 + \alpha \lVert W - W_0 \rVert^2`, and
:math:`P = (\alpha I + \sum_t r_t r_t^T)^{-1}`. ``every = n`` updates on steps
:math:`0, n, 2n, \dots` of the stream only. ``force_reset`` sets :math:`P` back to
:math:`I / \alpha` (forgetting the data's weight, not :math:`W`), for instance at a known change
of the task; without resets :math:`P` shrinks like :math:`1/t` and so does the rate of adaptation.

One stream (batch of 1): the rank-one updates are sequential in time, and independent samples
would each need their own :math:`P` and :math:`W`. Like every rule in :mod:`neurosim.learning`,
:class:`FORCE` deposits the change as a descent direction, ``weight.grad -= dW``, so that
``torch.optim.SGD(lr=1).step()`` applies it exactly (gradient filters may act on it first).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_finite, check_last_dim, check_positive
from ..projections import Dense
from .three_factor import bound_projection, deposit


@dataclass(frozen=True)
class FORCEParameters:
    """``alpha``: regulariser, :math:`P_0 = I / \\alpha`; ``every``: update on every ``every``-th step."""

    alpha: float = 1.0
    every: int = 1

    def __post_init__(self):
        check_positive("alpha", self.alpha)
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise NeurosimError(f"every must be a positive integer, got {self.every!r}")


class FORCEState(NamedTuple):
    """``P`` the inverse correlation estimate ``[n_in, n_in]``; ``step`` how many steps were seen."""

    P: torch.Tensor
    step: int


def force_initial_state(n_in: int, params: FORCEParameters, dtype: torch.dtype = torch.float32,
                        device=None) -> FORCEState:
    return FORCEState(torch.eye(n_in, dtype=dtype, device=device) / params.alpha, 0)


def force_reset(state: FORCEState, params: FORCEParameters) -> FORCEState:
    """``P`` back to :math:`I / \\alpha`; the step count goes on."""
    return FORCEState(torch.eye(state.P.shape[0], dtype=state.P.dtype, device=state.P.device) / params.alpha,
                      state.step)


def _row(name: str, x: torch.Tensor, n: int) -> torch.Tensor:
    check_last_dim(name, x, n, (1, 2))
    if x.dim() == 2 and x.shape[0] != 1:
        raise NeurosimError(f"{name} must be one sample (FORCE follows one stream), got batch {x.shape[0]}")
    check_finite(name, x)
    return x.reshape(n)


def force_step(r: torch.Tensor, z: torch.Tensor, target: torch.Tensor, state: FORCEState,
               params: FORCEParameters) -> tuple[FORCEState, torch.Tensor]:
    """One step on activity ``r`` (``[n_in]`` or ``[1, n_in]``) with readout ``z`` and ``target``
    (``[n_out]`` or ``[1, n_out]``); returns ``(state, dW)`` with ``dW`` ``[n_out, n_in]`` the change
    of ``W`` (zero on steps without an update)."""
    n_in = state.P.shape[0]
    r = _row("r", r, n_in).to(state.P.dtype)
    n_out = z.shape[-1]
    e = _row("z", z, n_out).to(state.P.dtype) - _row("target", target, n_out).to(state.P.dtype)
    if state.step % params.every:
        return FORCEState(state.P, state.step + 1), e.new_zeros(n_out, n_in)
    k = state.P @ r
    c = 1.0 / (1.0 + r @ k)
    P = state.P - c * torch.outer(k, k)
    return FORCEState(P, state.step + 1), -c * torch.outer(e, k)


class FORCE:
    """FORCE on a :class:`~neurosim.projections.Dense` readout (no mask, no Dale's law): ``z = W r``.

    ``state = rule.initial_state()``, then per step ``state = rule.step(r, target, state)``, which
    computes ``z`` with the current weight and adds ``-dW`` to ``weight.grad``.
    """

    def __init__(self, projection: Dense, params: FORCEParameters | None = None):
        self.projection = bound_projection(projection, "FORCE")
        if projection.mask is not None:
            raise NeurosimError("FORCE needs a Dense projection without a mask: its least-squares update is for z = W r")
        self.params = params if params is not None else FORCEParameters()
        if not isinstance(self.params, FORCEParameters):
            raise NeurosimError(f"params must be FORCEParameters, got {type(self.params).__name__}")

    def initial_state(self) -> FORCEState:
        w = self.projection.weight
        return force_initial_state(self.projection.n_in, self.params, w.dtype, w.device)

    def reset(self, state: FORCEState) -> FORCEState:
        return force_reset(state, self.params)

    def step(self, r: torch.Tensor, target: torch.Tensor, state: FORCEState) -> FORCEState:
        _row("r", r, self.projection.n_in)
        with torch.no_grad():
            z = self.projection(r)
            state, dw = force_step(r, z, target, state, self.params)
            deposit(self.projection.weight, dw)
        return state
