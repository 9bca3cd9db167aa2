"""The network of Izhikevich (2003), "Simple model of spiking neurons", in 1 ms steps.

``n_exc`` excitatory neurons (a = 0.02, b = 0.2, c = -65 + 15 r^2, d = 8 - 6 r^2) and ``n_inh``
inhibitory ones (a = 0.02 + 0.08 r, b = 0.25 - 0.05 r, c = -65, d = 2), r ~ U(0, 1) per neuron;
all-to-all synapses including self-connections, weight 0.5 U(0, 1) from E and -U(0, 1) from I;
v0 = -65 mV, u0 = b v0; thalamic input 5 N(0, 1) to E and 2 N(0, 1) to I each step.

Order within a step: the recurrent projections deliver the previous step's spikes, the neuron
integrates with them plus the step's thalamic input, then thresholds and resets. This is the
original code's order (threshold, reset, synaptic input, update) with every spike reported one
step earlier.
"""
from __future__ import annotations

from typing import NamedTuple

import torch

from neurosim.errors import NeurosimError
from neurosim.network import Network
from neurosim.reservoirs.builders import izhikevich_reservoir, spike_events


class Izhikevich2003Result(NamedTuple):
    """Total spike count and mean rates (Hz) of the E and I neurons."""

    spike_count: int
    rate_exc: float
    rate_inh: float


def build_izhikevich2003(n_exc: int = 800, n_inh: int = 200, seed: int = 0,
                         dtype: torch.dtype = torch.float64) -> Network:
    """The network as population ``"neurons"`` (E first) with Sparse projections ``"exc"`` and ``"inh"``."""
    for name, value in (("n_exc", n_exc), ("n_inh", n_inh)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NeurosimError(f"{name} must be a positive integer, got {value!r}")
    n = n_exc + n_inh
    return izhikevich_reservoir(n, n_exc / n, p=1.0, w_exc=0.5, w_inh=-1.0, heterogeneity=1.0, v0=-65.0,
                                autapses=True, seed=seed, dt=1.0, dtype=dtype)


def thalamic_input(steps: int, n_exc: int, n_inh: int, generator: torch.Generator | None = None,
                   dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``[steps, 1, n_exc + n_inh]`` currents: 5 N(0, 1) for E neurons, 2 N(0, 1) for I neurons."""
    exc = 5.0 * torch.randn(steps, 1, n_exc, generator=generator, dtype=dtype)
    inh = 2.0 * torch.randn(steps, 1, n_inh, generator=generator, dtype=dtype)
    return torch.cat([exc, inh], dim=-1)


def run_izhikevich2003(duration_ms: int = 1000, seed: int = 0, n_exc: int = 800, n_inh: int = 200,
                       dtype: torch.dtype = torch.float64) -> Izhikevich2003Result:
    """Simulate ``duration_ms`` steps of 1 ms; the network and the thalamic input are drawn from ``seed``."""
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 1:
        raise NeurosimError(f"duration_ms must be a positive integer (1 ms steps), got {duration_ms!r}")
    net = build_izhikevich2003(n_exc, n_inh, seed, dtype)
    drive = thalamic_input(duration_ms, n_exc, n_inh, torch.Generator().manual_seed(seed), dtype)
    _, neurons = spike_events(net, duration_ms, inputs={"neurons": drive})
    exc = int((neurons < n_exc).sum())
    seconds = duration_ms / 1000.0
    return Izhikevich2003Result(int(neurons.size), exc / (n_exc * seconds), (neurons.size - exc) / (n_inh * seconds))
