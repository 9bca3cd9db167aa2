r"""Non-spiking leaky integrator, the usual readout of a spiking network.

:math:`v \leftarrow v_L + (v - v_L)\beta + x` with :math:`\beta = e^{-dt/\tau_m}`
(``input_mode="jump"``) or :math:`v \leftarrow v_L + (v - v_L)\beta + (1 - \beta) x`
(``input_mode="current"``). The output of a step is ``v`` itself. ``tau_mem`` and ``v_leak``
may be per-neuron tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from ..errors import check_choice, check_positive
from .surrogate import Surrogate
from .base import NeuronParameters, Population, params_from_kwargs
from .lif import INPUT_MODES, decay


@dataclass(frozen=True)
class LIParameters(NeuronParameters):
    """``tau_mem`` (ms) and ``v_leak`` (mV), each a number or per neuron; ``input_mode``."""

    per_neuron: ClassVar[tuple[str, ...]] = ("tau_mem", "v_leak")

    tau_mem: float | torch.Tensor = 10.0
    v_leak: float | torch.Tensor = 0.0
    input_mode: str = "jump"

    def validate(self):
        check_positive("tau_mem", self.tau_mem)
        check_choice("input_mode", self.input_mode, INPUT_MODES)


class LIState(NamedTuple):
    v: torch.Tensor


def li_step(x: torch.Tensor, state: LIState, p: LIParameters, dt: float, spike_fn: Surrogate | None = None):
    """Advance by one step; returns ``(v, state)``."""
    beta = decay(dt, p.tau_mem)
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
        return LIState(self.filled(self.params.v_leak, batch, device))
