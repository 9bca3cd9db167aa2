r"""Non-spiking leaky integrator, the usual readout of a spiking network.

:math:`v \leftarrow v_L + (v - v_L)\beta + x` with :math:`\beta = e^{-dt/\tau_m}`
(``input_mode="jump"``) or :math:`v \leftarrow v_L + x + (v - v_L - x)\beta`
(``input_mode="current"``). The output of a step is ``v`` itself.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import check_choice, check_positive
from .surrogate import Surrogate
from .base import Population, as_param, params_from_kwargs
from .lif import INPUT_MODES


@dataclass(frozen=True)
class LIParameters:
    tau_mem: float | torch.Tensor = 10.0
    v_leak: float | torch.Tensor = 0.0
    input_mode: str = "jump"

    def __post_init__(self):
        object.__setattr__(self, "tau_mem", as_param(self.tau_mem))
        object.__setattr__(self, "v_leak", as_param(self.v_leak))
        check_positive("tau_mem", self.tau_mem)
        check_choice("input_mode", self.input_mode, INPUT_MODES)


class LIState(NamedTuple):
    v: torch.Tensor


def li_step(x: torch.Tensor, state: LIState, p: LIParameters, dt: float, spike_fn: Surrogate | None = None):
    """Advance by one step; returns ``(v, state)``."""
    beta = torch.exp(-dt / p.tau_mem) if isinstance(p.tau_mem, torch.Tensor) else math.exp(-dt / p.tau_mem)
    drive = x if p.input_mode == "jump" else (1 - beta) * x
    v = p.v_leak + (state.v - p.v_leak) * beta + drive
    return v, LIState(v)


class LI(Population):
    """A population of leaky-integrator readouts; its output is the membrane ``v``."""

    step_fn = staticmethod(li_step)
    State = LIState
    spiking = False

    def __init__(self, n: int, params: LIParameters | None = None, *, dt: float | None = None,
                 dtype: torch.dtype = torch.float32, **kwargs):
        super().__init__(n, params_from_kwargs(LIParameters, params, kwargs), dt, "straight_through", dtype)

    @property
    def observables(self) -> tuple[str, ...]:
        return ("v",)

    def initial_state(self, batch: int, device=None) -> LIState:
        return LIState(torch.zeros(batch, self.n, dtype=self.dtype, device=device) + self.params.v_leak)
