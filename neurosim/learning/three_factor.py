r"""Three-factor learning: a Hebbian eligibility trace turned into a weight change by a modulator.

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
and postsynaptic neuron ``[B, n_out]``; :math:`\Delta W` is the mean over the batch. The learning
rate is the optimiser's: :class:`ThreeFactor` deposits :math:`-\Delta W` into ``weight.grad``, so
``torch.optim.SGD(lr=eta).step()`` applies :math:`W \leftarrow W + \eta \Delta W`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_choice, check_finite, check_int, check_last_dim, check_positive
from ..projections import Dense

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


class ThreeFactorState(NamedTuple):
    """Traces ``x`` ``[B, n_in]``, ``y`` ``[B, n_out]`` and eligibility ``e`` ``[B, n_out, n_in]``."""

    x: torch.Tensor
    y: torch.Tensor
    e: torch.Tensor


def three_factor_initial_state(batch: int, n_in: int, n_out: int, dtype: torch.dtype = torch.float32,
                               device=None) -> ThreeFactorState:
    return ThreeFactorState(torch.zeros(batch, n_in, dtype=dtype, device=device),
                            torch.zeros(batch, n_out, dtype=dtype, device=device),
                            torch.zeros(batch, n_out, n_in, dtype=dtype, device=device))


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


def three_factor_step(pre: torch.Tensor, post: torch.Tensor, modulator, state: ThreeFactorState,
                      params: ThreeFactorParameters, dt: float) -> tuple[ThreeFactorState, torch.Tensor]:
    """One step on ``pre`` ``[B, n_in]`` and ``post`` ``[B, n_out]``; returns ``(state, dW)`` with
    ``dW`` ``[n_out, n_in]`` the batch mean of :math:`M e` (module docstring)."""
    p = params
    x_prev, y_prev = state.x, state.y
    x = math.exp(-dt / p.tau_pre) * x_prev + pre
    y = math.exp(-dt / p.tau_post) * y_prev + post
    if p.hebbian == "stdp":
        h = p.a_plus * post.unsqueeze(2) * x_prev.unsqueeze(1) - p.a_minus * y_prev.unsqueeze(2) * pre.unsqueeze(1)
    else:
        h = (p.a_plus * x).unsqueeze(1).expand_as(state.e)
    e = math.exp(-dt / p.tau_e) * state.e + h
    m = modulator_tensor(modulator, pre.shape[0], post.shape[1], e)
    return ThreeFactorState(x, y, e), (m * e).mean(0)


def deposit(weight: torch.Tensor, dw: torch.Tensor) -> None:
    """Add the change ``dw`` to ``weight.grad`` as a descent direction: ``grad -= dw``."""
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    weight.grad.sub_(dw.to(weight.grad.dtype))


def bound_projection(projection, rule: str, accepts: tuple = (Dense,)):
    """``projection`` if a rule may change its weight (one of the types ``accepts``, without Dale's
    law); a clear error otherwise."""
    if not isinstance(projection, accepts):
        kinds = " or ".join(k.__name__ for k in accepts)
        raise NeurosimError(f"{rule} needs a {kinds} projection, got {type(projection).__name__}")
    if projection.signs is not None:
        raise NeurosimError(f"{rule} cannot act on a projection under Dale's law: its effective weight is |W| "
                            "times signs, not the weight the rule changes")
    return projection


def check_activity(name: str, x: torch.Tensor, batch: int | None, n: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise NeurosimError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    check_last_dim(name, x, n, 2)
    if batch is not None and x.shape[0] != batch:
        raise NeurosimError(f"{name} has batch {x.shape[0]} but the rule's state has batch {batch}")
    check_finite(name, x)


class LocalRule:
    """A local rule bound to a projection of one of the types ``accepts``: validated parameters (of
    type ``Params``) and ``dt``, and activity checks. :meth:`_deposit` puts a change ``dW`` of a
    :class:`~neurosim.projections.Dense` weight (inside its connectivity mask) into
    ``weight.grad`` as :math:`-\\Delta W`."""

    Params: type
    accepts: tuple = (Dense,)

    def __init__(self, projection, params=None, dt: float = 1.0):
        self.projection = bound_projection(projection, type(self).__name__, self.accepts)
        params = self.Params() if params is None else params
        if not isinstance(params, self.Params):
            raise NeurosimError(f"params must be {self.Params.__name__}, got {type(params).__name__}")
        check_positive("dt", dt)
        self.params, self.dt = params, float(dt)

    def _activity(self, pre: torch.Tensor, post: torch.Tensor, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``pre`` and ``post`` checked against the projection and the state's ``batch``, detached, in the weight's dtype."""
        proj = self.projection
        check_activity("pre", pre, batch, proj.n_in)
        check_activity("post", post, batch, proj.n_out)
        dtype = proj.weight.dtype
        return pre.detach().to(dtype), post.detach().to(dtype)

    def _deposit(self, dw: torch.Tensor) -> None:
        proj = self.projection
        deposit(proj.weight, dw if proj.mask is None else dw * proj.mask)


class ThreeFactor(LocalRule):
    """The three-factor rule bound to a :class:`~neurosim.projections.Dense` projection.

    ``rule = ThreeFactor(projection, params, dt=1.0)``; ``state = rule.initial_state(batch)``;
    ``state = rule.step(pre, post, modulator, state)`` adds :math:`-\\Delta W` to
    ``projection.weight.grad`` (accumulating over steps). With a connectivity mask only existing
    synapses change.
    """

    Params = ThreeFactorParameters

    def initial_state(self, batch: int) -> ThreeFactorState:
        w = self.projection.weight
        return three_factor_initial_state(check_int("batch", batch), self.projection.n_in, self.projection.n_out,
                                          w.dtype, w.device)

    def step(self, pre: torch.Tensor, post: torch.Tensor, modulator, state: ThreeFactorState) -> ThreeFactorState:
        pre, post = self._activity(pre, post, state.x.shape[0])
        with torch.no_grad():
            state, dw = three_factor_step(pre, post, modulator, state, self.params, self.dt)
            self._deposit(dw)
        return state
