"""Builders of recurrent E/I reservoirs, and a chunked runner that collects their spikes.

Every builder returns a :class:`~neurosim.network.Network` with one population ``"neurons"``:
``n_exc = round(exc_fraction * n)`` excitatory neurons at indices ``[0, n_exc)``, inhibitory ones
after. Two recurrent :class:`~neurosim.projections.Sparse` projections cover all ``n``
presynaptic indices but hold synapses only from their own type: ``"exc"`` (presynaptic E,
channel ``"exc"``, Dale sign +) and ``"inh"`` (presynaptic I, channel ``"inh"``, Dale sign -).
Each (post i, pre j) pair is connected independently with probability ``p`` (self-connections
included unless ``autapses=False``). With ``n_inputs > 0`` an input ``"input"`` feeds the
neurons through a Sparse projection ``"input"`` (probability ``p_in``, weight ``w_in``).

Weights are given with their sign: ``w_exc >= 0``, ``w_inh <= 0``. Everything random is drawn
from ``numpy.random.default_rng(seed)``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from ..errors import NeurosimError
from ..network import Network, Probe
from ..neurons import LIF, Izhikevich, LIFParameters
from ..projections import Sparse, random_connectivity


def _check_int(name: str, value: int, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise NeurosimError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_range(name: str, value: float, low: float, high: float, high_open: bool = False) -> None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise NeurosimError(f"{name} must be a number, got {value!r}") from None
    if not (math.isfinite(v) and low <= v and (v < high if high_open else v <= high)):
        raise NeurosimError(f"{name} must be in [{low}, {high}{')' if high_open else ']'}, got {value!r}")


def _check_finite(name: str, value: float) -> None:
    try:
        ok = math.isfinite(float(value))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise NeurosimError(f"{name} must be a finite number, got {value!r}")


def ei_sizes(n: int, exc_fraction: float) -> tuple[int, int]:
    """``(n_exc, n_inh)`` of a reservoir of ``n`` neurons, ``n_exc = round(exc_fraction * n)``; both must be > 0."""
    _check_int("n", n, 2)
    _check_range("exc_fraction", exc_fraction, 0.0, 1.0)
    n_exc = round(exc_fraction * n)
    if not 0 < n_exc < n:
        raise NeurosimError(f"exc_fraction={exc_fraction!r} leaves no excitatory or no inhibitory neuron among n={n}")
    return n_exc, n - n_exc


def _check_common(p: float, w_exc: float, w_inh: float, n_inputs: int, p_in: float, w_in: float,
                  seed: int | None) -> None:
    _check_range("p", p, 0.0, 1.0)
    _check_range("w_exc", w_exc, 0.0, math.inf, high_open=True)
    _check_range("w_inh", w_inh, -math.inf, 0.0)
    _check_int("n_inputs", n_inputs, 0)
    _check_range("p_in", p_in, 0.0, 1.0)
    _check_finite("w_in", w_in)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise NeurosimError(f"seed must be a non-negative integer or None, got {seed!r}")


def _ei_projections(n_exc: int, n_inh: int, p: float, rng: np.random.Generator, autapses: bool,
                    w_exc: float | Callable[[int], np.ndarray], w_inh: float | Callable[[int], np.ndarray],
                    dtype: torch.dtype) -> tuple[Sparse, Sparse]:
    """The ``exc`` and ``inh`` projections; ``w_exc`` / ``w_inh`` are numbers or callables ``nnz -> weights``."""
    n = n_exc + n_inh
    projections = []
    for offset, size, w, kind in ((0, n_exc, w_exc, "exc"), (n_exc, n_inh, w_inh, "inh")):
        pre, post = random_connectivity(size, n, p, rng)
        pre = pre + offset
        if not autapses:
            keep = pre != post
            pre, post = pre[keep], post[keep]
        weight = w(pre.size) if callable(w) else w
        projections.append(Sparse(n, n, pre=pre, post=post, weight=np.abs(weight), dale=kind, channel=kind,
                                  dtype=dtype))
    return projections[0], projections[1]


def _assemble(population, exc: Sparse, inh: Sparse, n_inputs: int, p_in: float, w_in: float,
              rng: np.random.Generator, dt: float, dtype: torch.dtype) -> Network:
    net = Network(dt)
    net.add("neurons", population)
    net.connect("neurons", "neurons", exc, name="exc")
    net.connect("neurons", "neurons", inh, name="inh")
    if n_inputs:
        pre, post = random_connectivity(n_inputs, population.n, p_in, rng)
        net.add_input("input", n_inputs)
        net.connect("input", "neurons", Sparse(n_inputs, population.n, pre=pre, post=post, weight=w_in, dtype=dtype),
                    name="input")
    return net


def lif_reservoir(n: int, exc_fraction: float = 0.8, p: float = 0.02, w_exc: float = 1.62, w_inh: float = -9.0,
                  heterogeneity: float = 0.0, *, tau_mem: float = 20.0, v_leak: float = -49.0, v_th: float = -50.0,
                  v_reset: float = -60.0, tau_ref: float = 5.0, tau_syn_exc: float | None = 5.0,
                  tau_syn_inh: float | None = 10.0, v0: float | tuple[float, float] | None = None,
                  autapses: bool = True, n_inputs: int = 0, p_in: float = 0.1, w_in: float = 1.0,
                  seed: int | None = 0, dt: float = 0.1, dtype: torch.dtype = torch.float32) -> Network:
    """An E/I reservoir of LIF neurons with zero reset (see :mod:`neurosim.neurons.lif`), constant weights.

    Every synapse from E has weight ``w_exc`` (mV), from I ``w_inh``; the defaults are those of
    the CUBA benchmark (Brette et al. 2007). Heterogeneity ``h`` in ``[0, 1)`` spreads per neuron
    ``tau_mem_i = tau_mem (1 + h xi_i)`` and ``v_th_i = v_th + h (v_th - v_reset) zeta_i`` with
    ``xi, zeta ~ U(-1, 1)``. ``v0``: initial membrane, a number or ``(low, high)`` for a uniform
    draw in ``[low, high)`` (default ``v_leak``).
    """
    n_exc, n_inh = ei_sizes(n, exc_fraction)
    _check_common(p, w_exc, w_inh, n_inputs, p_in, w_in, seed)
    _check_range("heterogeneity", heterogeneity, 0.0, 1.0, high_open=True)
    if not v_th > v_reset:
        raise NeurosimError(f"v_th must be above v_reset, got v_th={v_th!r}, v_reset={v_reset!r}")
    rng = np.random.default_rng(seed)
    exc, inh = _ei_projections(n_exc, n_inh, p, rng, autapses, w_exc, w_inh, dtype)
    if heterogeneity > 0:
        tau_mem = torch.as_tensor(tau_mem * (1 + heterogeneity * rng.uniform(-1, 1, n)), dtype=dtype)
        v_th = torch.as_tensor(v_th + heterogeneity * (v_th - v_reset) * rng.uniform(-1, 1, n), dtype=dtype)
    if isinstance(v0, tuple):
        if len(v0) != 2 or not v0[0] <= v0[1]:
            raise NeurosimError(f"v0 must be a number or a (low, high) pair with low <= high, got {v0!r}")
        v0 = torch.as_tensor(rng.uniform(v0[0], v0[1], n), dtype=dtype)
    params = LIFParameters(tau_mem=tau_mem, v_leak=v_leak, v_th=v_th, v_reset=v_reset, tau_ref=tau_ref,
                           reset="zero", tau_syn_exc=tau_syn_exc, tau_syn_inh=tau_syn_inh)
    return _assemble(LIF(n, params, dtype=dtype, v0=v0), exc, inh, n_inputs, p_in, w_in, rng, dt, dtype)


def izhikevich_reservoir(n: int = 1000, exc_fraction: float = 0.8, p: float = 1.0, w_exc: float = 0.5,
                         w_inh: float = -1.0, heterogeneity: float = 1.0, *, v0: float = -65.0,
                         autapses: bool = True, n_inputs: int = 0, p_in: float = 0.1, w_in: float = 1.0,
                         seed: int | None = 0, dt: float = 1.0, dtype: torch.dtype = torch.float32) -> Network:
    """An E/I reservoir of Izhikevich neurons (see :mod:`neurosim.neurons.izhikevich`), uniform weights.

    Synapses from E have weight ``w_exc U(0, 1)``, from I ``w_inh U(0, 1)``. Per neuron, with
    ``r = h U(0, 1)`` for heterogeneity ``h`` in ``[0, 1]``: E ``a = 0.02, b = 0.2,
    c = -65 + 15 r^2, d = 8 - 6 r^2``; I ``a = 0.02 + 0.08 r, b = 0.25 - 0.05 r, c = -65, d = 2``.
    Initial state ``v = v0``, ``u = b v0``. The defaults are the network of Izhikevich (2003).
    """
    n_exc, n_inh = ei_sizes(n, exc_fraction)
    _check_common(p, w_exc, w_inh, n_inputs, p_in, w_in, seed)
    _check_range("heterogeneity", heterogeneity, 0.0, 1.0)
    rng = np.random.default_rng(seed)
    r_exc = heterogeneity * rng.random(n_exc)
    r_inh = heterogeneity * rng.random(n_inh)
    exc, inh = _ei_projections(n_exc, n_inh, p, rng, autapses, lambda k: w_exc * rng.random(k),
                               lambda k: w_inh * rng.random(k), dtype)
    population = Izhikevich(n, v0=v0, dtype=dtype, **izhikevich_cells(r_exc, r_inh, dtype))
    return _assemble(population, exc, inh, n_inputs, p_in, w_in, rng, dt, dtype)


def izhikevich_cells(r_exc, r_inh, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Per-neuron ``a, b, c, d`` of Izhikevich's (2003) network from one number per neuron (E first):
    E ``a = 0.02, b = 0.2, c = -65 + 15 r^2, d = 8 - 6 r^2``; I ``a = 0.02 + 0.08 r, b = 0.25 - 0.05 r,
    c = -65, d = 2``."""
    r_exc, r_inh = np.asarray(r_exc, dtype=np.float64), np.asarray(r_inh, dtype=np.float64)
    n_exc, n_inh = r_exc.size, r_inh.size
    cells = dict(a=np.concatenate([np.full(n_exc, 0.02), 0.02 + 0.08 * r_inh]),
                 b=np.concatenate([np.full(n_exc, 0.2), 0.25 - 0.05 * r_inh]),
                 c=np.concatenate([-65 + 15 * r_exc ** 2, np.full(n_inh, -65.0)]),
                 d=np.concatenate([8 - 6 * r_exc ** 2, np.full(n_inh, 2.0)]))
    return {k: torch.as_tensor(v, dtype=dtype) for k, v in cells.items()}


def spike_events(net: Network, steps: int, inputs: dict | None = None, population: str = "neurons",
                 chunk: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Run ``net`` for ``steps`` (batch 1) in chunks of ``chunk`` steps without gradients and return
    the spikes of ``population`` as events ``(step index, neuron index)``, sorted by step.

    ``inputs`` are ``[steps, 1, n]`` tensors, sliced per chunk; memory stays ``O(chunk * n)``.
    """
    _check_int("steps", steps, 1)
    _check_int("chunk", chunk, 1)
    inputs = inputs or {}
    state = None
    times, neurons = [], []
    spikes = {"spikes": Probe(population, "spikes", events=True)}
    with torch.no_grad():
        for start in range(0, steps, chunk):
            length = min(chunk, steps - start)
            part = {k: x[start:start + length] for k, x in inputs.items()}
            res = net.run(part, state=state, steps=length, batch=1, outputs=[], probes=spikes)
            state = res.state
            t, _, i = res.probes["spikes"]
            times.append(t.numpy() + start)
            neurons.append(i.numpy())
    return np.concatenate(times), np.concatenate(neurons)
