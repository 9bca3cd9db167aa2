r"""A neuron model written outside neurosim: the adaptive exponential integrate-and-fire neuron
(AdEx; Brette & Gerstner 2005), as a user writes one.

.. math::
    C \dot v = -g_L (v - E_L) + g_L \Delta_T e^{(v - V_T)/\Delta_T} - w + I, \qquad
    \tau_w \dot w = a (v - E_L) - w

with ``v`` in mV, ``w`` and the input ``I`` in pA, ``C`` in pF, ``g_L`` and ``a`` in nS, times in ms.
One step of ``dt`` ms is one forward Euler step from the state at the start of the step (Brian2's
``method='euler'``), then the spike :math:`z = H(v - v_{peak})` and the reset
:math:`v \leftarrow v_r`, :math:`w \leftarrow w + b`. The defaults are the tonic neuron of
Brette & Gerstner (2005), with Brian2's example's cut :math:`v_{peak} = V_T + 5 \Delta_T`.

What makes it a neurosim neuron, and so gets the execution plan, surrogate training, probes,
the run file, replay and plugins, is four pieces:

1. a frozen dataclass of parameters deriving from :class:`neurosim.neurons.NeuronParameters`, which
   lists the fields that may hold one value per neuron and checks values in ``validate``;
2. a ``NamedTuple`` of state tensors ``[B, n]`` (what probes may record);
3. a pure step function ``step(x, state, params, dt, spike_fn) -> (z, state)``, written with torch
   operations (autograd differentiates it; ``spike_fn`` is the surrogate spike function);
4. a :class:`neurosim.neurons.Population` subclass naming the two and giving the initial state.

The model passes the conformance suite every neuron must pass (``tests/test_neuron_conformance.py``).
:func:`build_network` and :func:`readout` make it usable in an experiment file
(``model = {name = "adex:build_network", readout = "adex:readout"}`` with this folder on the path).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch

from neurosim import LI, Dense, Network, NeurosimError
from neurosim.errors import check_positive
from neurosim.neurons import NeuronParameters, Population, Surrogate, surrogate
from neurosim.neurons.base import params_from_kwargs


@dataclass(frozen=True)
class AdExParameters(NeuronParameters):
    """AdEx parameters (module docstring for the units); every field may be one value per neuron."""

    per_neuron: ClassVar[tuple[str, ...]] = ("c_m", "g_l", "e_l", "v_t", "delta_t", "tau_w", "a", "b", "v_reset",
                                             "v_peak")

    c_m: float | torch.Tensor = 281.0
    g_l: float | torch.Tensor = 30.0
    e_l: float | torch.Tensor = -70.6
    v_t: float | torch.Tensor = -50.4
    delta_t: float | torch.Tensor = 2.0
    tau_w: float | torch.Tensor = 144.0
    a: float | torch.Tensor = 4.0
    b: float | torch.Tensor = 80.5
    v_reset: float | torch.Tensor = -70.6
    v_peak: float | torch.Tensor = -40.4

    def validate(self):
        for name in ("c_m", "g_l", "delta_t", "tau_w"):
            check_positive(name, getattr(self, name))
        if not bool(torch.all(torch.as_tensor(self.v_peak) > torch.as_tensor(self.v_reset))):
            raise NeurosimError("v_peak must be above v_reset")


class AdExState(NamedTuple):
    """``v`` membrane (mV), ``w`` adaptation current (pA)."""

    v: torch.Tensor
    w: torch.Tensor


def adex_step(x: torch.Tensor, state: AdExState, p: AdExParameters, dt: float,
              spike_fn: Surrogate = surrogate("fast_sigmoid")) -> tuple[torch.Tensor, AdExState]:
    """One forward Euler step of ``dt`` ms on the input current ``x`` (pA), then spike and reset."""
    v, w = state
    dv = (-p.g_l * (v - p.e_l) + p.g_l * p.delta_t * torch.exp((v - p.v_t) / p.delta_t) - w + x) / p.c_m
    dw = (p.a * (v - p.e_l) - w) / p.tau_w
    v, w = v + dt * dv, w + dt * dw
    z = spike_fn(v - p.v_peak)
    zd = z.detach()
    return z, AdExState(v * (1 - zd) + zd * p.v_reset, w + zd * p.b)


class AdEx(Population):
    """A population of AdEx neurons: ``AdEx(100, a=2.0, tau_w=30.0)``; initial ``v0`` (default
    ``e_l``, a number or per neuron) and ``w = 0``."""

    step_fn = staticmethod(adex_step)
    State = AdExState

    def __init__(self, n: int, params: AdExParameters | None = None, *, dt: float | None = None,
                 spike_fn: str | Surrogate = "fast_sigmoid", dtype: torch.dtype = torch.float32, v0=None, **kwargs):
        super().__init__(n, params_from_kwargs(AdExParameters, params, kwargs), dt, spike_fn, dtype)
        self.v0 = None if v0 is None else self.per_neuron_value("v0", v0)

    def initial_state(self, batch: int, device=None) -> AdExState:
        v0 = self.params.e_l if self.v0 is None else self.v0
        return AdExState(self.filled(v0, batch, device), self.filled(0.0, batch, device))


DT = 1.0  # ms


def build_network(n_in: int = 64, hidden: int = 64, n_out: int = 10, gain: float = 4000.0, seed: int = 0,
                  dtype: torch.dtype = torch.float32) -> Network:
    """Input ``"x"`` -> AdEx population ``"h"`` (surrogate ``atan``) -> leaky-integrator readout
    ``"out"``; the input projection is scaled by ``gain`` pA."""
    g = torch.Generator().manual_seed(seed)
    net = Network(dt=DT)
    net.add_input("x", n_in)
    net.add("h", AdEx(hidden, spike_fn="atan", dtype=dtype))
    net.add("out", LI(n_out, tau_mem=5.0, dtype=dtype))
    net.connect("x", "h", Dense(n_in, hidden, scale=gain, generator=g, dtype=dtype), name="x_to_h")
    net.connect("h", "out", Dense(hidden, n_out, generator=g, dtype=dtype), name="h_to_out")
    return net


def readout(vs: torch.Tensor) -> torch.Tensor:
    """Scores from the readout's membranes ``[T, B, n]``: their mean over time."""
    return vs.mean(0)


__all__ = ["AdEx", "AdExParameters", "AdExState", "adex_step", "build_network", "readout"]
