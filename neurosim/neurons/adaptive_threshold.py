r"""LIF neuron with an adaptive threshold (the adaptive LIF of Bellec et al.'s e-prop and LSNN, and
of Brian2's examples).

.. math::
    \tau_m \dot v = v_L - v + x, \qquad \tau_a \dot a = -a, \qquad
    z = H\big(v - (v_{th} + b\,a)\big), \qquad \text{on a spike: } a \leftarrow a + 1

(``a`` dimensionless, ``b`` in mV per unit of ``a``; for an adaptation *current* see
:mod:`neurosim.neurons.alif`). One step of ``dt`` ms, with ``x`` held constant over the step:

- ``input_mode="jump"`` (default): :math:`v' = v_L + (v - v_L)\beta + x`;
  ``input_mode="current"`` (``x`` in mV, i.e. R I): :math:`v' = v_L + (v - v_L)\beta + (1 - \beta) x`;
- :math:`a' = \rho\,a`;
- ``method="exact"`` (default, Brian2's ``method='exact'``): :math:`\beta = e^{-dt/\tau_m}`,
  :math:`\rho = e^{-dt/\tau_a}`; ``method="euler"`` (Brian2's ``method='euler'``, one forward Euler
  step from the state at the start of the step): :math:`\beta = 1 - dt/\tau_m`, :math:`\rho = 1 - dt/\tau_a`,
  i.e. :math:`v' = v + \frac{dt}{\tau_m}(v_L - v + x)` and :math:`a' = a - \frac{dt}{\tau_a} a`;
- spike :math:`z = H(v' - v_{th} - b\,a')` (strictly above the threshold of the same step's ``a'``),
  then the reset (``"subtract"``: :math:`v \leftarrow v' - z (v_{th} - v_{reset})`; ``"zero"``:
  :math:`v \leftarrow v_{reset}`) and :math:`a \leftarrow a' + z`.

Refractory period: for ``round(tau_ref / dt) - 1`` steps after a spike ``v`` is held and the
neuron cannot fire, while ``a`` keeps decaying (Brian2: ``(unless refractory)`` on ``v`` only).
This is Brian2's schedule (state update, threshold, reset in one step): a Brian2 ``NeuronGroup``
with ``threshold='v > v_th + b*a'``, ``reset='v = v_reset; a += 1'`` and ``refractory=tau_ref``
(a whole number of steps) computes the same (every spike, ``v`` within 1e-9 mV, with both
methods: ``tests/test_brian2_lif.py::test_adaptive_threshold_lif_matches_brian2``). The gradient of ``z`` is the surrogate's, at
:math:`v' - v_{th} - b a'`, so it reaches both ``v`` and ``a``; the increment of ``a`` keeps the
spike's gradient, the reset of ``v`` drops it with ``detach_reset``. Every numeric parameter may
be a per-neuron tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from ..errors import check_choice, check_positive
from .surrogate import Surrogate, surrogate
from .base import NeuronParameters, Population, params_from_kwargs
from .lif import INPUT_MODES, METHODS, RESETS, decay, refractory, reset_membrane


@dataclass(frozen=True)
class AdaptiveThresholdLIFParameters(NeuronParameters):
    """Times in ms, voltages in mV; ``b`` raises the threshold by ``b`` mV per unit of ``a``. The
    numeric fields may be per-neuron tensors."""

    per_neuron: ClassVar[tuple[str, ...]] = ("tau_mem", "tau_adapt", "b", "v_leak", "v_th", "v_reset", "tau_ref")

    tau_mem: float | torch.Tensor = 20.0
    tau_adapt: float | torch.Tensor = 200.0
    b: float | torch.Tensor = 1.0
    v_leak: float | torch.Tensor = 0.0
    v_th: float | torch.Tensor = 1.0
    v_reset: float | torch.Tensor = 0.0
    tau_ref: float | torch.Tensor = 0.0
    reset: str = "subtract"
    input_mode: str = "jump"
    detach_reset: bool = True
    method: str = "exact"

    def validate(self):
        check_positive("tau_mem", self.tau_mem)
        check_positive("tau_adapt", self.tau_adapt)
        check_positive("b", self.b, allow_zero=True)
        check_positive("tau_ref", self.tau_ref, allow_zero=True)
        check_choice("reset", self.reset, RESETS)
        check_choice("input_mode", self.input_mode, INPUT_MODES)
        check_choice("method", self.method, METHODS)


class AdaptiveThresholdLIFState(NamedTuple):
    """``v`` membrane, ``a`` threshold adaptation, ``refrac`` refractory steps left."""

    v: torch.Tensor
    a: torch.Tensor
    refrac: torch.Tensor


def adaptive_threshold_step(
    x: torch.Tensor,
    state: AdaptiveThresholdLIFState,
    p: AdaptiveThresholdLIFParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
) -> tuple[torch.Tensor, AdaptiveThresholdLIFState]:
    """Advance by one step of ``dt`` ms on input ``x`` (``[B, N]``); returns ``(z, state)``."""
    beta = decay(dt, p.tau_mem, p.method)
    drive = x if p.input_mode == "jump" else (1 - beta) * x
    v_new = p.v_leak + (state.v - p.v_leak) * beta + drive
    a = state.a * decay(dt, p.tau_adapt, p.method)
    threshold = p.v_th + p.b * a
    ref = refractory(state.refrac, p.tau_ref, dt)
    if ref is not None:
        v_new = torch.where(ref.active, v_new, state.v)
        z = spike_fn(v_new - threshold) * ref.active
        refrac = ref.after(z)
    else:
        z = spike_fn(v_new - threshold)
        refrac = state.refrac
    return z, AdaptiveThresholdLIFState(reset_membrane(v_new, z, p), a + z, refrac)


class AdaptiveThresholdLIF(Population):
    """A population of LIF neurons with adaptive thresholds; see the module docstring.

    ``AdaptiveThresholdLIF(100, tau_mem=20.0, tau_adapt=200.0, b=1.8, v_th=1.0, dt=1.0)``.
    ``v0`` sets the initial membrane (default ``v_leak``); ``a`` starts at 0.
    """

    step_fn = staticmethod(adaptive_threshold_step)
    State = AdaptiveThresholdLIFState

    def __init__(self, n: int, params: AdaptiveThresholdLIFParameters | None = None, *, dt: float | None = None,
                 spike_fn: str | Surrogate = "fast_sigmoid", dtype: torch.dtype = torch.float32, v0=None, **kwargs):
        super().__init__(n, params_from_kwargs(AdaptiveThresholdLIFParameters, params, kwargs), dt, spike_fn, dtype)
        self.v0 = None if v0 is None else self.per_neuron_value("v0", v0)

    def initial_state(self, batch: int, device=None) -> AdaptiveThresholdLIFState:
        v0 = self.params.v_leak if self.v0 is None else self.v0
        return AdaptiveThresholdLIFState(self.filled(v0, batch, device), self.filled(0.0, batch, device),
                                         torch.zeros(batch, self.n, dtype=torch.int32, device=device))
