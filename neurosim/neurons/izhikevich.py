r"""Izhikevich (2003) neuron with the two-half-step scheme of the original network code.

.. math::
    \dot v = 0.04 v^2 + 5 v + 140 - u + I, \qquad \dot u = a (b v - u)

One step of ``dt`` ms: two Euler half steps of ``dt/2`` for ``v`` holding ``u``, then one step of
``dt`` for ``u`` using the new ``v``; a spike is :math:`z = H(v - v_{peak})` and resets
:math:`v \leftarrow c`, :math:`u \leftarrow u + d`. ``a, b, c, d`` may be per-neuron tensors.
The input ``x`` is the current ``I`` of the step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError
from .surrogate import Surrogate, surrogate
from .base import Population, as_param, params_from_kwargs

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


@dataclass(frozen=True)
class IzhikevichParameters:
    a: float | torch.Tensor = 0.02
    b: float | torch.Tensor = 0.2
    c: float | torch.Tensor = -65.0
    d: float | torch.Tensor = 8.0
    v_peak: float = 30.0

    def __post_init__(self):
        for name in ("a", "b", "c", "d"):
            object.__setattr__(self, name, as_param(getattr(self, name)))

    @classmethod
    def of_type(cls, name: str) -> "IzhikevichParameters":
        """Parameters of a named cell type: RS, IB, CH, FS, LTS, TC or RZ."""
        if name not in IZHIKEVICH_TYPES:
            raise NeurosimError(f"unknown Izhikevich type {name!r}; expected one of: {', '.join(IZHIKEVICH_TYPES)}")
        return cls(*IZHIKEVICH_TYPES[name])


class IzhikevichState(NamedTuple):
    v: torch.Tensor
    u: torch.Tensor


def izhikevich_step(
    x: torch.Tensor,
    state: IzhikevichState,
    p: IzhikevichParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
) -> tuple[torch.Tensor, IzhikevichState]:
    """Advance by one step of ``dt`` ms on input current ``x``; returns ``(z, state)``."""
    v, u = state
    h = 0.5 * dt
    v = v + h * (0.04 * v * v + 5.0 * v + 140.0 - u + x)
    v = v + h * (0.04 * v * v + 5.0 * v + 140.0 - u + x)
    u = u + dt * p.a * (p.b * v - u)
    z = spike_fn(v - p.v_peak)
    zd = z.detach()
    v = v * (1 - zd) + zd * p.c  # exactly c on a spike
    u = u + zd * p.d
    return z, IzhikevichState(v, u)


class Izhikevich(Population):
    """A population of Izhikevich neurons. ``Izhikevich(100, cell_type="FS")`` or per-neuron ``a=..., b=...``.

    Initial state: ``v0`` (default -65 mV) and ``u0 = b v0``.
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
        self.v0 = as_param(v0, dtype)

    def initial_state(self, batch: int, device=None) -> IzhikevichState:
        zeros = torch.zeros(batch, self.n, dtype=self.dtype, device=device)
        v = zeros + self.v0
        return IzhikevichState(v, self.params.b * v)
