r"""Adaptive LIF neuron: LIF with a spike-triggered, subthreshold-coupled adaptation current.

.. math::
    \tau_m \dot v = v_L - v - w + x, \qquad \tau_w \dot w = a (v - v_L) - w

Between spikes the linear system in :math:`(v - v_L, w)` is integrated exactly with its
propagator :math:`e^{A\,dt}`, with ``x`` held constant over the step (``input_mode="current"``)
or added to ``v`` after the step (``input_mode="jump"``). On a spike :math:`z = H(v - v_{th})`:
``v`` is reset (``"zero"``: to ``v_reset``; ``"subtract"``: by ``v_th - v_reset``) and
:math:`w \leftarrow w + b`. During the refractory period ``v`` is held while ``w`` keeps
relaxing toward :math:`a (v - v_L)`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import torch

from ..errors import check_choice, check_positive
from .surrogate import Surrogate, surrogate
from .base import Population, as_param, params_from_kwargs
from .lif import INPUT_MODES, RESETS, refractory_steps


@dataclass(frozen=True)
class ALIFParameters:
    """Adaptive LIF parameters (ms, mV). ``a`` dimensionless coupling, ``b`` mV jump of ``w`` per spike."""

    tau_mem: float = 20.0
    tau_adapt: float = 100.0
    a: float = 0.0
    b: float | torch.Tensor = 1.0
    v_leak: float | torch.Tensor = 0.0
    v_th: float | torch.Tensor = 1.0
    v_reset: float | torch.Tensor = 0.0
    tau_ref: float = 0.0
    reset: str = "zero"
    input_mode: str = "current"
    detach_reset: bool = True

    def __post_init__(self):
        for name in ("b", "v_leak", "v_th", "v_reset"):
            object.__setattr__(self, name, as_param(getattr(self, name)))
        check_positive("tau_mem", self.tau_mem)
        check_positive("tau_adapt", self.tau_adapt)
        check_positive("tau_ref", self.tau_ref, allow_zero=True)
        if not math.isfinite(float(self.a)):
            check_positive("a", self.a, allow_zero=True)
        check_choice("reset", self.reset, RESETS)
        check_choice("input_mode", self.input_mode, INPUT_MODES)


class ALIFState(NamedTuple):
    v: torch.Tensor
    w: torch.Tensor
    refrac: torch.Tensor


@lru_cache(maxsize=64)
def alif_propagator(tau_mem: float, tau_adapt: float, a: float, dt: float) -> tuple[float, ...]:
    """Entries of :math:`P = e^{A dt}` and of the current input vector :math:`A^{-1}(P - I) e_1 / \\tau_m`."""
    A = torch.tensor([[-1 / tau_mem, -1 / tau_mem], [a / tau_adapt, -1 / tau_adapt]], dtype=torch.float64)
    P = torch.linalg.matrix_exp(A * dt)
    q = torch.linalg.solve(A, (P - torch.eye(2, dtype=torch.float64)) @ torch.tensor([1 / tau_mem, 0.0], dtype=torch.float64))
    return (P[0, 0].item(), P[0, 1].item(), P[1, 0].item(), P[1, 1].item(), q[0].item(), q[1].item())


def alif_step(
    x: torch.Tensor,
    state: ALIFState,
    p: ALIFParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
) -> tuple[torch.Tensor, ALIFState]:
    """Advance by one step of ``dt`` ms; returns ``(z, state)``."""
    p00, p01, p10, p11, q0, q1 = alif_propagator(float(p.tau_mem), float(p.tau_adapt), float(p.a), dt)
    dv = state.v - p.v_leak
    if p.input_mode == "current":
        v_new = p.v_leak + p00 * dv + p01 * state.w + q0 * x
        w_new = p10 * dv + p11 * state.w + q1 * x
    else:
        v_new = p.v_leak + p00 * dv + p01 * state.w + x
        w_new = p10 * dv + p11 * state.w

    n_ref = refractory_steps(p.tau_ref, dt)
    refrac = state.refrac
    if n_ref > 0:
        refrac = torch.clamp(refrac - 1, min=0)
        active = refrac == 0
        rw = math.exp(-dt / p.tau_adapt)
        w_held = p.a * dv + (state.w - p.a * dv) * rw
        v_new = torch.where(active, v_new, state.v)
        w_new = torch.where(active, w_new, w_held)
        z = spike_fn(v_new - p.v_th) * active
        refrac = torch.where(z > 0, torch.full_like(refrac, n_ref), refrac)
    else:
        z = spike_fn(v_new - p.v_th)

    zr = z.detach() if p.detach_reset else z
    if p.reset == "subtract":
        v = v_new - zr * (p.v_th - p.v_reset)
    else:
        v = v_new * (1 - zr) + zr * p.v_reset  # exactly v_reset on a spike
    return z, ALIFState(v, w_new + zr * p.b, refrac)


class ALIF(Population):
    """A population of adaptive LIF neurons; see the module docstring."""

    step_fn = staticmethod(alif_step)
    State = ALIFState

    def __init__(self, n: int, params: ALIFParameters | None = None, *, dt: float | None = None,
                 spike_fn: str | Surrogate = "fast_sigmoid", dtype: torch.dtype = torch.float32,
                 v0=None, **kwargs):
        super().__init__(n, params_from_kwargs(ALIFParameters, params, kwargs), dt, spike_fn, dtype)
        self.v0 = None if v0 is None else as_param(v0, dtype)

    def initial_state(self, batch: int, device=None) -> ALIFState:
        p = self.params
        zeros = torch.zeros(batch, self.n, dtype=self.dtype, device=device)
        v0 = p.v_leak if self.v0 is None else self.v0
        return ALIFState(zeros + v0, zeros.clone(), torch.zeros(batch, self.n, dtype=torch.int32, device=device))
