r"""Leaky integrate-and-fire neuron, optionally with current-based exponential synapses.

Membrane (mV, ms) over a step of length ``dt``, with the input ``x`` held constant over the step
and the decay factor :math:`\beta` and synaptic gain :math:`\kappa` of the integration method:

- ``input_mode="jump"`` (default): :math:`v \leftarrow v_L + (v - v_L)\beta + x`
  (``x`` a voltage increment per step, as in most deep-learning SNN code);
- ``input_mode="current"``: :math:`\tau_m \dot v = v_L - v + x` with ``x`` (mV, i.e. R I),
  so :math:`v \leftarrow v_L + (v - v_L)\beta + (1 - \beta) x`;
- with synapses (``tau_syn_exc`` set): ``x`` is added to the synaptic current
  :math:`i_e` (and ``x_inh`` to :math:`i_i`), then
  :math:`\tau_m \dot v = v_L - v + i_e + i_i`, :math:`\tau_s \dot i = -i` give
  :math:`v \leftarrow v_L + (v - v_L)\beta + i_e \kappa_e + i_i \kappa_i`, :math:`i \leftarrow i \beta_s`.

``method="exact"`` (default) integrates the linear system exactly:
:math:`\beta = e^{-dt/\tau_m}`, :math:`\beta_s = e^{-dt/\tau_s}`,
:math:`\kappa = \frac{\tau_s}{\tau_s - \tau_m}(e^{-dt/\tau_s} - e^{-dt/\tau_m})`
(:math:`\frac{dt}{\tau_m} e^{-dt/\tau_m}` when the two are equal), as Brian2's ``method='exact'``.
``method="euler"`` takes one forward Euler step from the state at the start of the step, as
Brian2's ``method='euler'``: :math:`\beta = 1 - dt/\tau_m`, :math:`\beta_s = 1 - dt/\tau_s`,
:math:`\kappa = dt/\tau_m`, i.e. :math:`v \leftarrow v + \frac{dt}{\tau_m}(v_L - v + x)` in
``"current"`` mode and :math:`v \leftarrow v + \frac{dt}{\tau_m}(v_L - v + i_e + i_i)` with synapses.

Spike :math:`z = H(v - v_{th})` (strictly above threshold). Reset: ``"subtract"``
:math:`v \leftarrow v - z (v_{th} - v_{reset})`, ``"zero"`` :math:`v \leftarrow v_{reset}`.
Refractory period: for ``round(tau_ref / dt) - 1`` steps after a spike the membrane is held
(synaptic currents keep decaying) and cannot fire. Every numeric parameter may be a per-neuron
tensor.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from ..errors import NeurosimError, check_choice, check_positive
from .surrogate import Surrogate, surrogate
from .base import NeuronParameters, Population, params_from_kwargs

RESETS = ("subtract", "zero")
INPUT_MODES = ("jump", "current")
METHODS = ("exact", "euler")


@dataclass(frozen=True)
class LIFParameters(NeuronParameters):
    """LIF parameters; the numeric fields may be per-neuron tensors. Times in ms, voltages in mV."""

    per_neuron: ClassVar[tuple[str, ...]] = ("tau_mem", "v_leak", "v_th", "v_reset", "tau_ref", "tau_syn_exc",
                                             "tau_syn_inh")

    tau_mem: float | torch.Tensor = 10.0
    v_leak: float | torch.Tensor = 0.0
    v_th: float | torch.Tensor = 1.0
    v_reset: float | torch.Tensor = 0.0
    tau_ref: float | torch.Tensor = 0.0
    reset: str = "subtract"
    input_mode: str = "jump"
    tau_syn_exc: float | torch.Tensor | None = None
    tau_syn_inh: float | torch.Tensor | None = None
    detach_reset: bool = True
    method: str = "exact"

    def validate(self):
        check_positive("tau_mem", self.tau_mem)
        check_positive("tau_ref", self.tau_ref, allow_zero=True)
        check_choice("reset", self.reset, RESETS)
        check_choice("input_mode", self.input_mode, INPUT_MODES)
        check_choice("method", self.method, METHODS)
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


def decay(dt: float, tau, method: str = "exact") -> float | torch.Tensor:
    r"""What remains of a decaying quantity after one step, :math:`\tau \dot y = -y`:
    :math:`e^{-dt/\tau}` (``"exact"``) or :math:`1 - dt/\tau` (``"euler"``)."""
    if method == "euler":
        return 1 - dt / tau
    return torch.exp(-dt / tau) if isinstance(tau, torch.Tensor) else math.exp(-dt / tau)


def synaptic_gain(dt: float, tau_mem, tau_syn, method: str = "exact"):
    """kappa: the membrane's response after one step to a unit synaptic current at its start."""
    if method == "euler":
        return dt / tau_mem
    if isinstance(tau_mem, torch.Tensor) or isinstance(tau_syn, torch.Tensor):
        like = tau_mem if isinstance(tau_mem, torch.Tensor) else tau_syn
        tau_mem = torch.as_tensor(tau_mem, dtype=like.dtype, device=like.device)
        same = torch.isclose(tau_mem, torch.as_tensor(tau_syn, dtype=like.dtype, device=like.device))
        safe = torch.where(same, tau_mem + 1.0, tau_mem)
        general = tau_syn / (tau_syn - safe) * (decay(dt, tau_syn) - torch.exp(-dt / safe))
        return torch.where(same, dt / tau_mem * torch.exp(-dt / tau_mem), general)
    if math.isclose(tau_mem, tau_syn):
        return dt / tau_mem * math.exp(-dt / tau_mem)
    return tau_syn / (tau_syn - tau_mem) * (math.exp(-dt / tau_syn) - math.exp(-dt / tau_mem))


def refractory_steps(tau_ref, dt: float) -> int | torch.Tensor:
    """``round(tau_ref / dt)``: an int, or one int32 per neuron for a tensor ``tau_ref``."""
    if isinstance(tau_ref, torch.Tensor):
        return torch.round(tau_ref.double() / dt).to(torch.int32)
    return int(round(tau_ref / dt))


class Refractory(NamedTuple):
    """One step of the refractory counter: steps ``left`` after this one's decrement, the neurons
    ``active`` (free to integrate and fire), and the ``steps`` a spike starts."""

    left: torch.Tensor
    active: torch.Tensor
    steps: int | torch.Tensor

    def after(self, z: torch.Tensor) -> torch.Tensor:
        """The counter after the spikes ``z``."""
        return torch.where(z > 0, self.steps, self.left)


def refractory(refrac: torch.Tensor, tau_ref, dt: float) -> Refractory | None:
    """The refractory step for counter ``refrac``; ``None`` without a refractory period."""
    steps = refractory_steps(tau_ref, dt)
    if not isinstance(steps, torch.Tensor) and steps == 0:
        return None
    left = torch.clamp(refrac - 1, min=0)
    return Refractory(left, left == 0, steps)


def reset_membrane(v: torch.Tensor, z: torch.Tensor, p) -> torch.Tensor:
    """``v`` after the spikes ``z`` by ``p.reset`` (``z`` detached with ``p.detach_reset``)."""
    zr = z.detach() if p.detach_reset else z
    if p.reset == "subtract":
        return v - zr * (p.v_th - p.v_reset)
    return v * (1 - zr) + zr * p.v_reset  # exactly v_reset on a spike


def lif_step(
    x: torch.Tensor,
    state: LIFState,
    p: LIFParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
    x_inh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, LIFState]:
    """Advance by one step of ``dt`` ms on input ``x`` (``[B, N]``); returns ``(z, state)``."""
    beta = decay(dt, p.tau_mem, p.method)
    i_exc, i_inh = state.i_exc, state.i_inh
    if p.tau_syn_exc is None:
        drive = x if p.input_mode == "jump" else (1 - beta) * x
        v_new = p.v_leak + (state.v - p.v_leak) * beta + drive
    else:
        i_exc = i_exc + x
        gain_exc = synaptic_gain(dt, p.tau_mem, p.tau_syn_exc, p.method)
        if p.tau_syn_inh is None:
            if x_inh is not None:
                i_exc = i_exc + x_inh
            syn = i_exc * gain_exc
        else:
            if x_inh is not None:
                i_inh = i_inh + x_inh
            syn = i_exc * gain_exc + i_inh * synaptic_gain(dt, p.tau_mem, p.tau_syn_inh, p.method)
            i_inh = i_inh * decay(dt, p.tau_syn_inh, p.method)
        v_new = p.v_leak + (state.v - p.v_leak) * beta + syn
        i_exc = i_exc * decay(dt, p.tau_syn_exc, p.method)

    ref = refractory(state.refrac, p.tau_ref, dt)
    if ref is not None:
        v_new = torch.where(ref.active, v_new, state.v)
        z = spike_fn(v_new - p.v_th) * ref.active
        refrac = ref.after(z)
    else:
        refrac = state.refrac
        z = spike_fn(v_new - p.v_th)
    return z, LIFState(reset_membrane(v_new, z, p), i_exc, i_inh, refrac)


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
        self.v0 = None if v0 is None else self.per_neuron_value("v0", v0)

    @property
    def has_inh_channel(self) -> bool:
        """True when inhibitory input feeds a separate synaptic current (``tau_syn_inh`` set)."""
        return self._params.tau_syn_inh is not None

    def initial_state(self, batch: int, device=None) -> LIFState:
        v0 = self.params.v_leak if self.v0 is None else self.v0
        zeros = self.filled(0.0, batch, device)
        return LIFState(self.filled(v0, batch, device), zeros, zeros.clone(),
                        torch.zeros(batch, self.n, dtype=torch.int32, device=device))

    def step(self, x, state=None, x_inh=None):
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        return lif_step(x.to(self.dtype), state, self.params, self.dt, self.spike_fn,
                        None if x_inh is None else x_inh.to(self.dtype))
