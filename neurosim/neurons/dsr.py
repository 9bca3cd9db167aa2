r"""LIF neuron trained by differentiation on spike representation (DSR, Meng et al. 2022).

Forward, the spiking dynamics (no leak potential; ``dt`` and :math:`\tau` in ms):

.. math::

    v_t = \beta v_{t-1} + (1 - \beta) x_t, \quad \beta = e^{-dt/\tau}; \qquad
    z_t = H(v_t - \alpha\theta); \qquad v_t \leftarrow v_t - \theta z_t

with threshold :math:`\theta` (one learnable value per population, or per neuron when ``v_th`` is
given per neuron, kept at or above ``v_th_floor``), firing fraction :math:`\alpha` and output
spikes of amplitude :math:`\theta / dt`. ``tau_mem``, ``alpha`` and ``v_th_floor`` may be per neuron.

Backward, through the spike representation instead of the time steps: with the weighted
average :math:`\hat a = \sum_i w_i a_i / \sum_i w_i`, :math:`w_i = e^{-(T - i)\,dt/\tau}`, of a
sequence :math:`a_1 \dots a_T`, the output representation is approximately
:math:`\mathrm{clamp}(\hat x / \tau, 0, \theta / dt)`, so with :math:`\hat g = T\,\widehat{\partial L/\partial z}`

.. math::

    \frac{\partial L}{\partial x_t} = \frac{\hat g}{\tau T}\,[0 < \hat x < \theta\tau/dt], \qquad
    \frac{\partial L}{\partial \theta} = dt \sum \hat g\,[\hat x > \theta\tau/dt].

The gradient needs the whole sequence, so it exists in :meth:`DSR.forward` only;
:func:`dsr_step` (used inside recurrent loops) has none.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import nn

from ..errors import NeurosimError, check_positive
from .base import NeuronParameters, Population, params_from_kwargs
from .lif import decay


@dataclass(frozen=True)
class DSRParameters(NeuronParameters):
    """``tau_mem`` (ms), initial threshold ``v_th``, its floor, and the firing fraction ``alpha``;
    each a number or per neuron (a per-neuron ``v_th`` makes the learnt threshold one per neuron)."""

    per_neuron: ClassVar[tuple[str, ...]] = ("tau_mem", "v_th", "v_th_floor", "alpha")

    tau_mem: float | torch.Tensor = 1.0
    v_th: float | torch.Tensor = 0.3
    v_th_floor: float | torch.Tensor = 5e-4
    alpha: float | torch.Tensor = 0.3
    learn_threshold: bool = True

    def validate(self):
        check_positive("tau_mem", self.tau_mem)
        check_positive("v_th", self.v_th)
        check_positive("v_th_floor", self.v_th_floor, allow_zero=True)
        alpha = torch.as_tensor(self.alpha)
        if bool(((alpha <= 0) | (alpha > 1)).any()):
            raise NeurosimError(f"alpha must be in (0, 1], got {self.alpha!r}")


class DSRState(NamedTuple):
    v: torch.Tensor


def dsr_step(x: torch.Tensor, state: DSRState, p: DSRParameters, dt: float, theta: torch.Tensor):
    """One forward step; returns ``(z * theta / dt, state)``. No gradient flows through ``z``."""
    beta = decay(dt, p.tau_mem)
    v = beta * state.v + (1 - beta) * x
    z = (v >= p.alpha * theta).to(x.dtype)
    return z * (theta / dt), DSRState(v - theta * z)


def weighted_rate(xs: torch.Tensor, tau, dt: float) -> torch.Tensor:
    r"""The weighted average :math:`\hat a` of ``xs`` (``[T, ..., n]``) over time (module docstring);
    ``tau`` a number or one value per neuron (the last dimension)."""
    T = xs.shape[0]
    lag = T - torch.arange(1, T + 1, dtype=xs.dtype, device=xs.device)
    if isinstance(tau, torch.Tensor) and tau.dim() > 0:
        w = torch.exp(-lag[:, None] * (dt / tau))
        w = w / w.sum(0)
        return (w.view(T, *([1] * (xs.dim() - 2)), -1) * xs).sum(0)
    w = torch.exp(-lag * (dt / tau))
    return torch.tensordot(w / w.sum(), xs, dims=1)


class _DSRFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xs, theta, v0, p, dt):
        state, out = DSRState(v0), torch.empty_like(xs)
        for t in range(xs.shape[0]):
            out[t], state = dsr_step(xs[t], state, p, dt, theta)
        # a copy: the floor clamps the parameter in place at the next forward, maybe before this backward
        ctx.save_for_backward(weighted_rate(xs, p.tau_mem, dt), theta.detach().clone())
        ctx.p, ctx.dt, ctx.T = p, dt, xs.shape[0]
        return out, state.v

    @staticmethod
    def backward(ctx, g, _gv):
        x_hat, theta = ctx.saved_tensors
        p, dt, T = ctx.p, ctx.dt, ctx.T
        g_hat = weighted_rate(g, p.tau_mem, dt) * T
        top = theta * p.tau_mem / dt
        inside = (x_hat > 0) & (x_hat < top)
        gx = torch.where(inside, g_hat, torch.zeros_like(g_hat)) / (p.tau_mem * T)
        g_theta = (g_hat * (x_hat > top)).sum_to_size(theta.shape) * dt if ctx.needs_input_grad[1] else None
        return gx.unsqueeze(0).expand_as(g), g_theta, None, None, None


class DSR(Population):
    """A population of DSR-trained LIF neurons (module docstring); ``threshold`` is a parameter."""

    State = DSRState
    spiking = False  # graded spikes of amplitude theta / dt


    def __init__(self, n: int, params: DSRParameters | None = None, *, dt: float | None = None,
                 dtype: torch.dtype = torch.float32, **kwargs):
        super().__init__(n, params_from_kwargs(DSRParameters, params, kwargs), dt, "straight_through", dtype)
        self.threshold = nn.Parameter(torch.as_tensor(self.params.v_th, dtype=dtype).clone(),
                                      requires_grad=self._params.learn_threshold)

    def initial_state(self, batch: int, device=None) -> DSRState:
        return DSRState(torch.zeros(batch, self.n, dtype=self.dtype, device=device))

    def _theta(self) -> torch.Tensor:
        with torch.no_grad():
            self.threshold.clamp_(min=self.params.v_th_floor)
        return self.threshold

    def step(self, x: torch.Tensor, state: DSRState | None = None):
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        with torch.no_grad():
            return dsr_step(x.to(self.dtype), state, self.params, self.dt, self._theta())

    def steps(self, xs: torch.Tensor, state: DSRState | None = None):
        """:meth:`forward` step by step with :meth:`step` (no gradient)."""
        self.check_input(xs, ndim=3)
        if state is None:
            state = self.initial_state(xs.shape[1], xs.device)
        out = []
        for x in xs:
            z, state = self.step(x, state)
            out.append(z)
        return torch.stack(out), state

    def forward(self, xs: torch.Tensor, state: DSRState | None = None):
        """Run over ``xs`` (``[T, B, n]``); returns ``(spikes [T, B, n], state)`` with the DSR gradient."""
        self.check_input(xs, ndim=3)
        xs = xs.to(self.dtype)
        if state is None:
            state = self.initial_state(xs.shape[1], xs.device)
        out, v = _DSRFunction.apply(xs, self._theta(), state.v.detach(), self.params, self.dt)
        return out, DSRState(v)
