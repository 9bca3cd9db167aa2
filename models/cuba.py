"""The CUBA benchmark (Brette et al. 2007), as Brian2 ships it.

4000 LIF neurons (80 % E), each ordered pair connected with probability 0.02 (self-connections
allowed), current-based exponential synapses, in mV and ms:

    tau_m dv/dt = (E_l - v) + g_e + g_i,   tau_e dg_e/dt = -g_e,   tau_i dg_i/dt = -g_i

tau_m 20, tau_e 5, tau_i 10, E_l -49, threshold v > -50, reset v = -60, refractory 5 ms; a spike
from E adds w_e = 1.62 to g_e, from I w_i = -9 to g_i; dt 0.1 ms; v0 ~ U[-60, -50), g = 0.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from neurosim.errors import NeurosimError, check_positive
from neurosim.network import Network
from neurosim.reservoirs.builders import ei_sizes, lif_reservoir, spike_events

#: The benchmark's constants (mV, ms).
TAU_MEM, TAU_EXC, TAU_INH = 20.0, 5.0, 10.0
V_LEAK, V_TH, V_RESET, TAU_REF = -49.0, -50.0, -60.0, 5.0
W_EXC, W_INH = 1.62, -9.0
EXC_FRACTION = 0.8


class CubaResult(NamedTuple):
    """Spike events ``(steps, neurons)`` and rates (Hz) over the whole network and per type."""

    spike_count: int
    rate: float
    rate_exc: float
    rate_inh: float
    steps: np.ndarray
    neurons: np.ndarray


def build_cuba(n: int = 4000, p: float = 0.02, seed: int = 0, dt: float = 0.1,
               dtype: torch.dtype = torch.float64) -> Network:
    """The CUBA network: population ``"neurons"`` (E first), projections ``"exc"`` and ``"inh"``."""
    return lif_reservoir(n, EXC_FRACTION, p, W_EXC, W_INH, 0.0, tau_mem=TAU_MEM, v_leak=V_LEAK, v_th=V_TH,
                         v_reset=V_RESET, tau_ref=TAU_REF, tau_syn_exc=TAU_EXC, tau_syn_inh=TAU_INH,
                         v0=(V_RESET, V_TH), seed=seed, dt=dt, dtype=dtype)


def connectivity(net: Network) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"exc": (pre, post), "inh": (pre, post)}`` synapse index arrays, to rebuild the same network elsewhere."""
    missing = [name for name in ("exc", "inh") if name not in net.projections]
    if missing:
        raise NeurosimError(f"the network has no projection {missing[0]!r}; build it with build_cuba")
    return {name: (net.projections[name].pre.numpy().copy(), net.projections[name].post.numpy().copy())
            for name in ("exc", "inh")}


def initial_voltage(net: Network) -> np.ndarray:
    """The initial membrane potentials (mV) drawn by :func:`build_cuba`."""
    return net.populations["neurons"].v0.numpy().copy()


def run_cuba(duration_ms: float = 1000.0, n: int = 4000, p: float = 0.02, seed: int = 0, dt: float = 0.1,
             dtype: torch.dtype = torch.float64) -> CubaResult:
    """Build and simulate CUBA for ``duration_ms``; returns spike events and rates."""
    check_positive("duration_ms", duration_ms)
    net = build_cuba(n, p, seed, dt, dtype)
    steps = round(duration_ms / dt)
    times, neurons = spike_events(net, steps)
    n_exc, n_inh = ei_sizes(n, EXC_FRACTION)
    seconds = steps * dt / 1000.0
    exc = int((neurons < n_exc).sum())
    return CubaResult(int(neurons.size), neurons.size / (n * seconds), exc / (n_exc * seconds),
                      (neurons.size - exc) / (n_inh * seconds), times, neurons)
