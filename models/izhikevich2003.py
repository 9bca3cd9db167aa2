"""The network of Izhikevich (2003), "Simple model of spiking neurons", in 1 ms steps.

``n_exc`` excitatory neurons (a = 0.02, b = 0.2, c = -65 + 15 r^2, d = 8 - 6 r^2) and ``n_inh``
inhibitory ones (a = 0.02 + 0.08 r, b = 0.25 - 0.05 r, c = -65, d = 2), r ~ U(0, 1) per neuron;
all-to-all synapses including self-connections, weight 0.5 U(0, 1) from E and -U(0, 1) from I,
times 1000 / N (the published code's weights are for N = 1000 neurons; ``scale_weights=False``
keeps them unscaled); v0 = -65 mV, u0 = b v0; thalamic input 5 N(0, 1) to E and 2 N(0, 1) to I
each step, drawn inside the run (the noise source ``"thalamic"``, :class:`neurosim.GaussianNoise`
seeded with the network's seed: its stream is part of the run state, so a run resumed from a
checkpoint draws what one long run would). A given instance (the weight matrix ``S``, the draws
``r``, the thalamic input as a tensor) may replace the random draws.

Order within a step: the recurrent projections deliver the previous step's spikes, the neuron
integrates with them plus the step's thalamic input, then thresholds and resets (the neurons'
``"update_first"`` schedule). This is the original code's order (threshold, reset, synaptic
input, update) with every spike reported one step earlier: its ``firings`` at step ``t + 1`` are
neurosim's spikes of step ``t``. The update evaluates the published ``0.04 v^2`` with ``v^2``
first (see :mod:`neurosim.neurons.izhikevich`).
"""
from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
import torch

from neurosim.errors import NeurosimError
from neurosim.network import GaussianNoise, Network
from neurosim.reservoirs.builders import izhikevich_cells, izhikevich_reservoir, spike_events


class Izhikevich2003Result(NamedTuple):
    """Total spike count and mean rates (Hz) of the E and I neurons."""

    spike_count: int
    rate_exc: float
    rate_inh: float


def _check_sizes(n_exc, n_inh) -> int:
    for name, value in (("n_exc", n_exc), ("n_inh", n_inh)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NeurosimError(f"{name} must be a positive integer, got {value!r}")
    return n_exc + n_inh


def build_izhikevich2003(n_exc: int = 800, n_inh: int = 200, seed: int = 0, dtype: torch.dtype = torch.float64,
                         *, weights=None, r=None, scale_weights: bool = True, thalamic: bool = True) -> Network:
    """The network as population ``"neurons"`` (E first) with Sparse projections ``"exc"`` and ``"inh"``
    and, with ``thalamic``, the noise source ``"thalamic"``.

    ``weights``: the published code's matrix ``S`` ``[N, N]`` (``S[i, j]`` from neuron ``j`` to ``i``;
    columns of E neurons >= 0, of I neurons <= 0) instead of the drawn one; ``r``: the ``N``
    numbers in ``[0, 1)`` (E first) that set ``a, b, c, d`` instead of drawn ones. What is not
    given is drawn from ``seed``. ``scale_weights``: multiply the weights, drawn or given, by
    ``1000 / N``.
    """
    n = _check_sizes(n_exc, n_inh)
    scale = 1000.0 / n if scale_weights else 1.0
    net = izhikevich_reservoir(n, n_exc / n, p=1.0, w_exc=0.5, w_inh=-1.0, heterogeneity=1.0, v0=-65.0,
                               autapses=True, seed=seed, dt=1.0, dtype=dtype)
    pop = net.populations["neurons"]
    if r is not None:
        r = np.asarray(r, dtype=np.float64)
        if r.shape != (n,) or not ((r >= 0) & (r < 1)).all():
            raise NeurosimError(f"r must be {n} numbers in [0, 1) (E neurons first), got shape {r.shape}")
        pop.set_params(dataclasses.replace(pop.params, **izhikevich_cells(r[:n_exc], r[n_exc:], dtype)))
    if weights is not None:
        S = np.asarray(weights, dtype=np.float64)
        if S.shape != (n, n) or not np.isfinite(S).all():
            raise NeurosimError(f"weights must be a finite [{n}, {n}] matrix (post, pre), got shape {S.shape}")
        if (S[:, :n_exc] < 0).any() or (S[:, n_exc:] > 0).any():
            raise NeurosimError("weights from excitatory neurons (the first n_exc columns) must be >= 0, "
                                "from inhibitory ones <= 0")
    with torch.no_grad():
        for name in ("exc", "inh"):
            proj = net.projections[name]
            if weights is not None:
                proj.weight.copy_(torch.as_tensor(np.abs(S[proj.post.numpy(), proj.pre.numpy()]), dtype=dtype))
            if scale != 1.0:
                proj.weight.mul_(scale)
    if thalamic:
        std = torch.cat([torch.full((n_exc,), 5.0), torch.full((n_inh,), 2.0)])
        net.add_noise("thalamic", "neurons", GaussianNoise(std=std, seed=seed))
    return net


def run_izhikevich2003(duration_ms: int = 1000, seed: int = 0, n_exc: int = 800, n_inh: int = 200,
                       dtype: torch.dtype = torch.float64, *, weights=None, r=None, noise=None,
                       scale_weights: bool = True) -> Izhikevich2003Result:
    """Simulate ``duration_ms`` steps of 1 ms; the network (:func:`build_izhikevich2003`) and the
    thalamic input (drawn inside the run) come from ``seed`` unless given (``noise``:
    ``[duration_ms, N]``, fed as the population's input instead)."""
    if isinstance(duration_ms, bool) or not isinstance(duration_ms, int) or duration_ms < 1:
        raise NeurosimError(f"duration_ms must be a positive integer (1 ms steps), got {duration_ms!r}")
    n = _check_sizes(n_exc, n_inh)
    inputs = None
    if noise is not None:
        drive = torch.as_tensor(np.asarray(noise, dtype=np.float64), dtype=dtype)
        if drive.shape != (duration_ms, n):
            raise NeurosimError(f"noise must be [{duration_ms}, {n}] (one current per step and neuron), "
                                f"got shape {tuple(drive.shape)}")
        inputs = {"neurons": drive.unsqueeze(1)}
    net = build_izhikevich2003(n_exc, n_inh, seed, dtype, weights=weights, r=r, scale_weights=scale_weights,
                               thalamic=noise is None)
    _, neurons = spike_events(net, duration_ms, inputs=inputs)
    exc = int((neurons < n_exc).sum())
    seconds = duration_ms / 1000.0
    return Izhikevich2003Result(int(neurons.size), exc / (n_exc * seconds), (neurons.size - exc) / (n_inh * seconds))
