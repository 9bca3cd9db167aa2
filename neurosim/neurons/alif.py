r"""Adaptive LIF neuron: LIF with a spike-triggered, subthreshold-coupled adaptation current.

.. math::
    \tau_m \dot v = v_L - v - w + x, \qquad \tau_w \dot w = a (v - v_L) - w

(for the adaptive *threshold* of e-prop and Brian2's examples see
:mod:`neurosim.neurons.adaptive_threshold`). Between spikes the linear system in
:math:`y = (v - v_L, w)` advances by one step as :math:`y \leftarrow P y + q x` with ``x`` held
constant over the step (``input_mode="current"``), or as :math:`y \leftarrow P y` plus ``x``
added to ``v`` (``input_mode="jump"``). ``method="exact"`` (default, Brian2's
``method='exact'``): :math:`P = e^{A\,dt}`, :math:`q = A^{-1}(P - I)\,(1/\tau_m, 0)^T` with
:math:`A = \begin{pmatrix} -1/\tau_m & -1/\tau_m \\ a/\tau_w & -1/\tau_w \end{pmatrix}`;
``method="euler"`` (Brian2's ``method='euler'``, one forward Euler step from the state at the
start of the step): :math:`P = I + A\,dt`, :math:`q = (dt/\tau_m, 0)^T`. ``a > -1`` (at or
below, the system has a mode that does not decay).

On a spike :math:`z = H(v - v_{th})`: ``v`` is reset (``"zero"``: to ``v_reset``;
``"subtract"``: by ``v_th - v_reset``) and :math:`w \leftarrow w + b`. For ``round(tau_ref / dt)
- 1`` steps after a spike ``v`` is held while ``w`` keeps relaxing toward :math:`a (v - v_L)`
(:math:`w \leftarrow a\,\Delta v + (w - a\,\Delta v)\rho`, :math:`\rho = e^{-dt/\tau_w}` or
:math:`1 - dt/\tau_w`). Every numeric parameter may be a per-neuron tensor.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar, NamedTuple

import torch

from ..errors import NeurosimError, check_choice, check_positive
from .surrogate import Surrogate, surrogate
from .base import NeuronParameters, Population, params_from_kwargs
from .lif import INPUT_MODES, METHODS, RESETS, decay, refractory, reset_membrane


@dataclass(frozen=True)
class ALIFParameters(NeuronParameters):
    """Adaptive LIF parameters (ms, mV). ``a`` dimensionless coupling, ``b`` mV jump of ``w`` per
    spike; the numeric fields may be per-neuron tensors."""

    per_neuron: ClassVar[tuple[str, ...]] = ("tau_mem", "tau_adapt", "a", "b", "v_leak", "v_th", "v_reset",
                                             "tau_ref")

    tau_mem: float | torch.Tensor = 20.0
    tau_adapt: float | torch.Tensor = 100.0
    a: float | torch.Tensor = 0.0
    b: float | torch.Tensor = 1.0
    v_leak: float | torch.Tensor = 0.0
    v_th: float | torch.Tensor = 1.0
    v_reset: float | torch.Tensor = 0.0
    tau_ref: float | torch.Tensor = 0.0
    reset: str = "zero"
    input_mode: str = "current"
    detach_reset: bool = True
    method: str = "exact"

    def validate(self):
        check_positive("tau_mem", self.tau_mem)
        check_positive("tau_adapt", self.tau_adapt)
        check_positive("tau_ref", self.tau_ref, allow_zero=True)
        if bool(torch.as_tensor(self.a <= -1).any()):
            raise NeurosimError(f"a must be > -1 (the membrane and adaptation would not decay), got {self.a!r}")
        check_choice("reset", self.reset, RESETS)
        check_choice("input_mode", self.input_mode, INPUT_MODES)
        check_choice("method", self.method, METHODS)


class ALIFState(NamedTuple):
    v: torch.Tensor
    w: torch.Tensor
    refrac: torch.Tensor


def _expm(M: torch.Tensor) -> torch.Tensor:
    """:math:`e^M` of float64 matrices ``[..., k, k]``: the Taylor series to degree 16 of
    :math:`M / 2^s` (1-norm at most 1/2, remainder below 1e-19), squared ``s`` times. (torch's
    ``matrix_exp`` of a single 2 x 2 matrix is off by up to 1e-11 here.)"""
    norm = float(M.abs().sum(-2).amax(-1).max())
    s = max(0, math.ceil(math.log2(norm / 0.5))) if norm > 0.5 else 0
    X = M / 2.0 ** s
    eye = torch.eye(M.shape[-1], dtype=M.dtype, device=M.device).expand_as(M)
    E = eye
    for k in range(16, 0, -1):
        E = eye + X @ E / k
    for _ in range(s):
        E = E @ E
    return E


def _exact_entries(tau_mem: torch.Tensor, tau_adapt: torch.Tensor, a: torch.Tensor, dt: float) -> tuple:
    """``(p00, p01, p10, p11, q0, q1)`` of the exact propagator from float64 tensors (broadcast)."""
    tm, tw, a = torch.broadcast_tensors(tau_mem, tau_adapt, a)
    A = torch.stack([torch.stack([-1 / tm, -1 / tm], -1), torch.stack([a / tw, -1 / tw], -1)], -2)
    P = _expm(A * dt)
    q = torch.linalg.solve(A, (P[..., :, 0] - torch.eye(2, dtype=A.dtype, device=A.device)[0]) / tm.unsqueeze(-1))
    return P[..., 0, 0], P[..., 0, 1], P[..., 1, 0], P[..., 1, 1], q[..., 0], q[..., 1]


@lru_cache(maxsize=64)
def _exact_propagator(tau_mem: float, tau_adapt: float, a: float, dt: float) -> tuple[float, ...]:
    return tuple(x.item() for x in _exact_entries(*(torch.tensor(v, dtype=torch.float64) for v in (tau_mem, tau_adapt, a)), dt))


_PER_NEURON: OrderedDict = OrderedDict()  # recent per-neuron propagators, by parameter tensors and step


def alif_propagator(tau_mem, tau_adapt, a, dt: float, method: str = "exact") -> tuple:
    """Entries ``(p00, p01, p10, p11, q0, q1)`` of :math:`P` and :math:`q` (module docstring):
    numbers, or per-neuron tensors (of the parameters' dtype) when a parameter is a tensor.

    Per-neuron exact propagators are kept for the last few parameter tensors (the same objects,
    unmodified in place), so a population computes its matrix exponentials once, not every step.
    """
    if method == "euler":
        return (1 - dt / tau_mem, -dt / tau_mem, a * dt / tau_adapt, 1 - dt / tau_adapt, dt / tau_mem, 0.0)
    params = (tau_mem, tau_adapt, a)
    tensors = [x for x in params if isinstance(x, torch.Tensor)]
    if not tensors:
        return _exact_propagator(float(tau_mem), float(tau_adapt), float(a), dt)
    key = (tuple(id(x) for x in params), dt)
    versions = tuple(x._version if isinstance(x, torch.Tensor) else x for x in params)
    hit = _PER_NEURON.get(key)
    if hit is not None and hit[1] == versions and all(x is y for x, y in zip(hit[0], params)):
        _PER_NEURON.move_to_end(key)
        return hit[2]
    like = tensors[0]
    entries = _exact_entries(*(torch.as_tensor(x, dtype=torch.float64, device=like.device) for x in params), dt)
    entries = tuple(x.to(like.dtype) for x in entries)
    _PER_NEURON[key] = (params, versions, entries)  # holding the parameters keeps their ids unique
    while len(_PER_NEURON) > 16:
        _PER_NEURON.popitem(last=False)
    return entries


def alif_step(
    x: torch.Tensor,
    state: ALIFState,
    p: ALIFParameters,
    dt: float,
    spike_fn: Surrogate = surrogate("fast_sigmoid"),
) -> tuple[torch.Tensor, ALIFState]:
    """Advance by one step of ``dt`` ms; returns ``(z, state)``."""
    p00, p01, p10, p11, q0, q1 = alif_propagator(p.tau_mem, p.tau_adapt, p.a, dt, p.method)
    dv = state.v - p.v_leak
    if p.input_mode == "current":
        v_new = p.v_leak + p00 * dv + p01 * state.w + q0 * x
        w_new = p10 * dv + p11 * state.w + q1 * x
    else:
        v_new = p.v_leak + p00 * dv + p01 * state.w + x
        w_new = p10 * dv + p11 * state.w

    ref = refractory(state.refrac, p.tau_ref, dt)
    refrac = state.refrac
    if ref is not None:
        w_held = p.a * dv + (state.w - p.a * dv) * decay(dt, p.tau_adapt, p.method)
        v_new = torch.where(ref.active, v_new, state.v)
        w_new = torch.where(ref.active, w_new, w_held)
        z = spike_fn(v_new - p.v_th) * ref.active
        refrac = ref.after(z)
    else:
        z = spike_fn(v_new - p.v_th)
    zr = z.detach() if p.detach_reset else z
    return z, ALIFState(reset_membrane(v_new, z, p), w_new + zr * p.b, refrac)


class ALIF(Population):
    """A population of adaptive LIF neurons; see the module docstring."""

    step_fn = staticmethod(alif_step)
    State = ALIFState

    def __init__(self, n: int, params: ALIFParameters | None = None, *, dt: float | None = None,
                 spike_fn: str | Surrogate = "fast_sigmoid", dtype: torch.dtype = torch.float32,
                 v0=None, **kwargs):
        super().__init__(n, params_from_kwargs(ALIFParameters, params, kwargs), dt, spike_fn, dtype)
        self.v0 = None if v0 is None else self.per_neuron_value("v0", v0)

    def initial_state(self, batch: int, device=None) -> ALIFState:
        v0 = self.params.v_leak if self.v0 is None else self.v0
        return ALIFState(self.filled(v0, batch, device), self.filled(0.0, batch, device),
                         torch.zeros(batch, self.n, dtype=torch.int32, device=device))
