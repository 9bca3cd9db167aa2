r"""Leaky integrate-and-fire neuron, optionally with current-based exponential synapses.

Membrane (mV, ms), integrated exactly over a step of length ``dt`` with
:math:`\beta = e^{-dt/\tau_m}`:

- ``input_mode="jump"`` (default): :math:`v \leftarrow v_L + (v - v_L)\beta + x`
  (``x`` a voltage increment per step, as in most deep-learning SNN code);
- ``input_mode="current"``: :math:`\tau_m \dot v = v_L - v + x` with ``x`` (mV, i.e. R I) held
  constant over the step, so :math:`v \leftarrow v_L + x + (v - v_L - x)\beta`;
- with synapses (``tau_syn_exc`` set): ``x`` is added to the synaptic current
  :math:`i_e` (and ``x_inh`` to :math:`i_i`), then
  :math:`\tau_m \dot v = v_L - v + i_e + i_i`, :math:`\tau_s \dot i = -i` are integrated exactly:
  :math:`v \leftarrow v_L + (v - v_L)\beta + i\,\kappa`, with
  :math:`\kappa = \frac{\tau_s}{\tau_s - \tau_m}(e^{-dt/\tau_s} - e^{-dt/\tau_m})`
  (:math:`\frac{dt}{\tau_m} e^{-dt/\tau_m}` when the two are equal).

Spike :math:`z = H(v - v_{th})` (strictly above threshold). Reset: ``"subtract"``
:math:`v \leftarrow v - z (v_{th} - v_{reset})`, ``"zero"`` :math:`v \leftarrow v_{reset}`.
Refractory period: for ``round(tau_ref / dt) - 1`` steps after a spike the membrane is held
(synaptic currents keep decaying) and cannot fire.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch

from ..errors import NeurosimError, check_choice, check_positive
from .surrogate import Surrogate, surrogate
from .base import Population, as_param, params_from_kwargs

RESETS = ("subtract", "zero")
INPUT_MODES = ("jump", "current")


@dataclass(frozen=True)
class LIFParameters:
    """LIF parameters; any field may be a per-neuron tensor. Times in ms, voltages in mV."""

    tau_mem: float | torch.Tensor = 10.0
    v_leak: float | torch.Tensor = 0.0
    v_th: float | torch.Tensor = 1.0
    v_reset: float | torch.Tensor = 0.0
    tau_ref: float = 0.0
    reset: str = "subtract"
    input_mode: str = "jump"
    tau_syn_exc: float | None = None
    tau_syn_inh: float | None = None
    detach_reset: bool = True

    def __post_init__(self):
        for name in ("tau_mem", "v_leak", "v_th", "v_reset"):
            object.__setattr__(self, name, as_param(getattr(self, name)))
        check_positive("tau_mem", self.tau_mem)
        check_positive("tau_ref", self.tau_ref, allow_zero=True)
        check_choice("reset", self.reset, RESETS)
        check_choice("input_mode", self.input_mode, INPUT_MODES)
        if self.tau_syn_exc is not None:
            check_positive("tau_syn_exc", self.tau_syn_exc)
            if self.input_mode == "current":
                raise NeurosimError("input_mode='current' cannot be combined with synaptic currents (tau_syn_exc)")
        if self.tau_syn_inh is not None:
            if self.tau_syn_exc is None:
                raise NeurosimError("tau_syn_inh needs tau_syn_exc")
            check_positive("tau_syn_inh", self.tau_syn_inh)


class LIFState(NamedTuple):
    """``v`` membrane, ``i_exc`` / ``i_inh`` synaptic currents (zero without synapses), ``refrac`` steps left."""

    v: torch.Tensor
    i_exc: torch.Tensor
    i_inh: torch.Tensor
    refrac: torch.Tensor


def decay(dt: float, tau) -> float | torch.Tensor:
    """``exp(-dt / tau)``: what remains of a decaying quantity after one step."""
    return torch.exp(-dt / tau) if isinstance(tau, torch.Tensor) else math.exp(-dt / tau)


def synaptic_gain(dt: float, tau_mem, tau_syn: float):
    """kappa: the membrane's response after one step to a unit synaptic current at its start."""
    if isinstance(tau_mem, torch.Tensor):
        same = torch.isclose(tau_mem, torch.as_tensor(tau_syn, dtype=tau_mem.dtype))
        safe = torch.where(same, tau_mem + 1.0, tau_mem)
        general = tau_syn / (tau_syn - safe) * (math.exp(-dt / tau_syn) - torch.exp(-dt / safe))
        return torch.where(same, dt / tau_mem * torch.exp(-dt / tau_mem), general)
    if math.isclose(tau_mem, tau_syn):
        return dt / tau_mem * math.exp(-dt / tau_mem)
    return tau_syn / (tau_syn - tau_mem) * (math.exp(-dt / tau_syn) - math.exp(-dt / tau_mem))


def refractory_steps(tau_ref: float, dt: float) -> int:
    return int(round(tau_ref / dt))


def lif_step(
    x: torch.Tensor,
    state: LIFState,
    p: LIFParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
    x_inh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LIFState]:
    """Advance by one step of ``dt`` ms on input ``x`` (``[B, N]``); returns ``(z, state)``."""
    beta = decay(dt, p.tau_mem)
    i_exc, i_inh = state.i_exc, state.i_inh
    if p.tau_syn_exc is None:
        drive = x if p.input_mode == "jump" else (1 - beta) * x
        v_new = p.v_leak + (state.v - p.v_leak) * beta + drive
    else:
        i_exc = i_exc + x
        if p.tau_syn_inh is None:
            if x_inh is not None:
                i_exc = i_exc + x_inh
            syn = i_exc * synaptic_gain(dt, p.tau_mem, p.tau_syn_exc)
        else:
            if x_inh is not None:
                i_inh = i_inh + x_inh
            syn = i_exc * synaptic_gain(dt, p.tau_mem, p.tau_syn_exc) + i_inh * synaptic_gain(dt, p.tau_mem, p.tau_syn_inh)
            i_inh = i_inh * math.exp(-dt / p.tau_syn_inh)
        v_new = p.v_leak + (state.v - p.v_leak) * beta + syn
        i_exc = i_exc * math.exp(-dt / p.tau_syn_exc)

    n_ref = refractory_steps(p.tau_ref, dt)
    if n_ref > 0:
        refrac = torch.clamp(state.refrac - 1, min=0)
        active = refrac == 0
        v_new = torch.where(active, v_new, state.v)
        z = spike_fn(v_new - p.v_th) * active
        refrac = torch.where(z > 0, torch.full_like(refrac, n_ref), refrac)
    else:
        refrac = state.refrac
        z = spike_fn(v_new - p.v_th)

    zr = z.detach() if p.detach_reset else z
    if p.reset == "subtract":
        v = v_new - zr * (p.v_th - p.v_reset)
    else:
        v = v_new * (1 - zr) + zr * p.v_reset  # exactly v_reset on a spike
    return z, LIFState(v, i_exc, i_inh, refrac)


class LIF(Population):
    """A population of LIF neurons; see the module docstring for the equations.

    ``LIF(256, tau_mem=20.0, v_th=1.0, dt=1.0)`` or ``LIF(256, params=LIFParameters(...))``.
    ``v0`` sets the initial membrane (a number or a per-neuron tensor; default ``v_leak``).
    """

    step_fn = staticmethod(lif_step)
    State = LIFState

    def __init__(self, n: int, params: LIFParameters | None = None, *, dt: float | None = None,
                 spike_fn: str | Surrogate = "fast_sigmoid", dtype: torch.dtype = torch.float32,
                 v0=None, **kwargs):
        super().__init__(n, params_from_kwargs(LIFParameters, params, kwargs), dt, spike_fn, dtype)
        self.v0 = None if v0 is None else as_param(v0, dtype)

    @property
    def has_inh_channel(self) -> bool:
        """True when inhibitory input feeds a separate synaptic current (``tau_syn_inh`` set)."""
        return self._params.tau_syn_inh is not None

    def initial_state(self, batch: int, device=None) -> LIFState:
        p = self.params
        zeros = torch.zeros(batch, self.n, dtype=self.dtype, device=device)
        v0 = p.v_leak if self.v0 is None else self.v0
        v = zeros + (v0.to(device) if isinstance(v0, torch.Tensor) else v0)
        return LIFState(v, zeros.clone(), zeros.clone(), torch.zeros(batch, self.n, dtype=torch.int32, device=device))

    def step(self, x, state=None, x_inh=None):
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        return lif_step(x.to(self.dtype), state, self.params, self.dt, self.spike_fn,
                        None if x_inh is None else x_inh.to(self.dtype))
