r"""Izhikevich (2003) neuron with the two-half-step scheme of the original network code.

.. math::
    \dot v = 0.04 v^2 + 5 v + 140 - u + I, \qquad \dot u = a (b v - u)

The update of one step of ``dt`` ms: two Euler half steps of ``dt/2`` for ``v`` holding ``u``,
then one step of ``dt`` for ``u`` using the new ``v``; a spike :math:`z = H(v - v_{peak})` resets
:math:`v \leftarrow c`, :math:`u \leftarrow u + d`. The input ``x`` is the current ``I`` of the step.
``a, b, c, d, v_peak`` may be per-neuron tensors. Each half step evaluates ``net.m``'s
``v + h (0.04 v^2 + 5 v + 140 - u + I)`` with :math:`v^2` squared first and the sum taken left to
right, in the torch step and in the compiled no-gradient loop alike. ``schedule`` orders a step:

- ``"update_first"`` (default; Brian2's schedule): update, then threshold and reset. A spike is
  reported in the step whose update crossed ``v_peak``, and the state after a step is reset.
- ``"threshold_first"`` (Izhikevich's published ``net.m``): threshold on the state the previous
  step left, reset, then update; a spike is reported in the step that detects it, as ``net.m``
  records it, so the state after a step may hold ``v`` above ``v_peak`` until the next step
  resets it.

The two schedules give the same trajectories, each spike reported one step later under
``"threshold_first"`` (when the input of a step does not depend on the spikes of the same
step). Inside a recurrent loop of a Network, which delivers the spikes of the previous step,
``"threshold_first"`` adds one step to the recurrent delay, while ``"update_first"`` has
``net.m``'s order (its spikes delivered in the step that detects them).
``net.m`` tests ``v >= 30``, neurosim ``v > v_peak``: they differ only when ``v`` lands exactly on
the peak.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from ..errors import NeurosimError, check_choice
from .surrogate import Surrogate, surrogate
from .base import NeuronParameters, Population, params_from_kwargs

#: (a, b, c, d) of the seven cell types of Izhikevich (2003).
IZHIKEVICH_TYPES: dict[str, tuple[float, float, float, float]] = {
    "RS": (0.02, 0.2, -65.0, 8.0),
    "IB": (0.02, 0.2, -55.0, 4.0),
    "CH": (0.02, 0.2, -50.0, 2.0),
    "FS": (0.1, 0.2, -65.0, 2.0),
    "LTS": (0.02, 0.25, -65.0, 2.0),
    "TC": (0.02, 0.25, -65.0, 0.05),
    "RZ": (0.1, 0.26, -65.0, 2.0),
}

SCHEDULES = ("update_first", "threshold_first")


@dataclass(frozen=True)
class IzhikevichParameters(NeuronParameters):
    """``a`` (1/ms), ``b``, ``c`` (mV), ``d`` (mV), ``v_peak`` (mV), each a number or per neuron; ``schedule``."""

    per_neuron: ClassVar[tuple[str, ...]] = ("a", "b", "c", "d", "v_peak")

    a: float | torch.Tensor = 0.02
    b: float | torch.Tensor = 0.2
    c: float | torch.Tensor = -65.0
    d: float | torch.Tensor = 8.0
    v_peak: float | torch.Tensor = 30.0
    schedule: str = "update_first"

    def validate(self):
        check_choice("schedule", self.schedule, SCHEDULES)

    @classmethod
    def of_type(cls, name: str, **kwargs) -> "IzhikevichParameters":
        """Parameters of a named cell type: RS, IB, CH, FS, LTS, TC or RZ (``kwargs``: the other fields)."""
        if name not in IZHIKEVICH_TYPES:
            raise NeurosimError(f"unknown Izhikevich type {name!r}; expected one of: {', '.join(IZHIKEVICH_TYPES)}")
        return cls(*IZHIKEVICH_TYPES[name], **kwargs)


class IzhikevichState(NamedTuple):
    v: torch.Tensor
    u: torch.Tensor


def _update(x: torch.Tensor, v: torch.Tensor, u: torch.Tensor, p: IzhikevichParameters, dt: float):
    """The two half steps of ``v`` and the step of ``u`` (module docstring for the arithmetic)."""
    h = 0.5 * dt
    v = v + h * (0.04 * (v * v) + 5.0 * v + 140.0 - u + x)
    v = v + h * (0.04 * (v * v) + 5.0 * v + 140.0 - u + x)
    return v, u + dt * p.a * (p.b * v - u)


def _fire(v: torch.Tensor, u: torch.Tensor, p: IzhikevichParameters, spike_fn: Surrogate):
    z = spike_fn(v - p.v_peak)
    zd = z.detach()
    return z, v * (1 - zd) + zd * p.c, u + zd * p.d  # v exactly c on a spike


def izhikevich_step(
    x: torch.Tensor,
    state: IzhikevichState,
    p: IzhikevichParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
) -> tuple[torch.Tensor, IzhikevichState]:
    """Advance by one step of ``dt`` ms on input current ``x``; returns ``(z, state)``."""
    v, u = state
    if p.schedule == "threshold_first":
        z, v, u = _fire(v, u, p, spike_fn)
        return z, IzhikevichState(*_update(x, v, u, p, dt))
    v, u = _update(x, v, u, p, dt)
    z, v, u = _fire(v, u, p, spike_fn)
    return z, IzhikevichState(v, u)


class Izhikevich(Population):
    """A population of Izhikevich neurons. ``Izhikevich(100, cell_type="FS")`` or per-neuron ``a=..., b=...``.

    Initial state: ``v0`` (default -65 mV, a number or per neuron) and ``u0 = b v0``.
    """

    step_fn = staticmethod(izhikevich_step)
    State = IzhikevichState

    def __init__(self, n: int, params: IzhikevichParameters | None = None, *, cell_type: str | None = None,
                 dt: float | None = None, spike_fn: str | Surrogate = "fast_sigmoid",
                 dtype: torch.dtype = torch.float32, v0=-65.0, **kwargs):
        if cell_type is not None:
            if params is not None:
                raise NeurosimError("give either params or cell_type, not both")
            params = IzhikevichParameters.of_type(cell_type)
        super().__init__(n, params_from_kwargs(IzhikevichParameters, params, kwargs), dt, spike_fn, dtype)
        self.v0 = self.per_neuron_value("v0", v0)

    def initial_state(self, batch: int, device=None) -> IzhikevichState:
        v = self.filled(self.v0, batch, device)
        return IzhikevichState(v, self.params.b * v)
