r"""Event-driven integer delays for inference: the delayed projection's sum without a kernel.

For integer delays :math:`d_{ij} \ge 0` the postsynaptic input is

.. math::

    I_i[t] = \sum_j w_{ij}\, s_j[t - d_{ij}] \qquad (s_j[t] = 0 \text{ for } t < 0),

which, read from the input side, says that every nonzero entry :math:`s_j[t]` of sample
:math:`b` adds :math:`s_j[t]\, w_{ij}` to :math:`I_i[t + d_{ij}]` for every :math:`i`
(dropped when :math:`t + d_{ij} \ge T`). :func:`event_sum` does exactly that in compiled loops:
:func:`input_events` lists the nonzero entries per sample (counting, then filling, each pass
reading the input in memory order), then each sample's events are delivered into a buffer ``[T + max d, n_out]`` that stays
in cache. The cost is (number of nonzero inputs) x ``n_out`` additions, against the
``T B n_in n_out D`` multiply-adds of the dense ``[n_out, n_in, D]`` convolution, and the kernel
is never built. Each output sums its terms in the order of the events (time, then input index).
There is no autograd graph: this is the inference path.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numba import njit

from ..errors import NeurosimError


class InputEvents(NamedTuple):
    """The nonzero entries ``x[t, b, j]`` of an input ``[T, B, n_in]``: those of sample ``b`` are
    ``k = start[b] .. start[b + 1] - 1``, at ``t = step[k]``, ``j = unit[k]`` (int32), in order of
    ``t`` then ``j``."""
    start: np.ndarray
    step: np.ndarray
    unit: np.ndarray


@njit(cache=True)
def _count_events(x, start):
    """``start[b + 1]`` = number of nonzero entries of samples ``0 .. b`` (``start`` zeros, ``[B + 1]``).
    ``x`` is read in memory order (``t`` outer, ``b`` inner), as in :func:`_fill_events`."""
    steps, batch, n_in = x.shape
    for t in range(steps):
        for b in range(batch):
            row, c = x[t, b], 0
            for j in range(n_in):
                c += row[j] != 0  # no branch: vectorised
            start[b + 1] += c
    for b in range(batch):
        start[b + 1] += start[b]


@njit(cache=True)
def _fill_events(x, start, step, unit):
    """``step``, ``unit`` of the nonzero entries of each sample (:class:`InputEvents`)."""
    steps, batch, n_in = x.shape
    fill = start[:-1].copy()
    for t in range(steps):
        for b in range(batch):
            row = x[t, b]
            for j in range(n_in):
                if row[j] != 0:
                    step[fill[b]], unit[fill[b]] = t, j
                    fill[b] += 1


@njit(cache=True)
def _deliver(x, start, step, unit, w_t, d_t, out):
    """``out[t + d_t[j, i], b, i] += x[t, b, j] * w_t[j, i]`` over the listed events; ``out`` is
    overwritten. ``w_t``, ``d_t`` (int32, >= 0): ``[n_in, n_out]``."""
    steps, batch, n_in = x.shape
    n_out = w_t.shape[1]
    longest = 0
    for j in range(n_in):
        for i in range(n_out):
            longest = max(longest, d_t[j, i])
    acc = np.empty((steps + longest, n_out), dtype=out.dtype)  # rows past T: deliveries after the end
    for b in range(batch):
        acc[:] = 0
        for e in range(start[b], start[b + 1]):
            t, j = step[e], unit[e]
            v, w, d = x[t, b, j], w_t[j], d_t[j]
            for i in range(n_out):
                acc[t + d[i], i] += v * w[i]
        for t in range(steps):
            out[t, b] = acc[t]


def _array(x: torch.Tensor) -> np.ndarray:
    if x.dim() != 3 or x.dtype not in (torch.float32, torch.float64) or x.device.type != "cpu":
        raise NeurosimError(f"event input must be a [T, B, n_in] float32 or float64 CPU tensor, got shape "
                            f"{tuple(x.shape)}, {x.dtype} on {x.device}")
    return x.detach().contiguous().numpy()


def nonzero_count(x: torch.Tensor) -> int:
    """The number of nonzero entries of ``x`` ``[T, B, n_in]`` (float32 / float64, CPU), in one
    vectorised pass (``torch.count_nonzero`` takes tens of times longer on one thread)."""
    start = np.zeros(x.shape[1] + 1, dtype=np.int64)
    _count_events(_array(x), start)
    return int(start[-1])


def input_events(x: torch.Tensor) -> InputEvents:
    """The nonzero entries of ``x`` ``[T, B, n_in]`` (float32 / float64, CPU), grouped by sample."""
    return _events(_array(x))


def _events(a: np.ndarray) -> InputEvents:
    start = np.zeros(a.shape[1] + 1, dtype=np.int64)
    _count_events(a, start)
    step, unit = np.empty(start[-1], dtype=np.int32), np.empty(start[-1], dtype=np.int32)
    _fill_events(a, start, step, unit)
    return InputEvents(start, step, unit)


def event_sum(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """``I_i[t] = sum_j w_ij s_j[t - d_ij]`` for ``x`` ``[T, B, n_in]`` (module docstring).

    ``weight`` ``[n_out, n_in]`` of the same dtype as ``x`` (float32 or float64, CPU), ``delays``
    integers ``>= 0`` of the same shape. Returns ``[T, B, n_out]``, detached from autograd.
    """
    a = _array(x)
    if weight.dim() != 2 or x.shape[-1] != weight.shape[1] or delays.shape != weight.shape:
        raise NeurosimError(f"event_sum needs weight and delays [n_out, n_in] with n_in = {x.shape[-1]}, got "
                            f"shapes {tuple(weight.shape)} and {tuple(delays.shape)}")
    if weight.dtype != x.dtype or weight.device != x.device:
        raise NeurosimError(f"event_sum needs weight of the input's dtype and device ({x.dtype}, {x.device}), "
                            f"got {weight.dtype} on {weight.device}")
    if delays.is_floating_point() or delays.dtype == torch.bool or (delays.numel() and int(delays.min()) < 0):
        raise NeurosimError("event_sum needs integer delays >= 0")
    events = _events(a)
    out = torch.empty(x.shape[0], x.shape[1], weight.shape[0], dtype=x.dtype)
    _deliver(a, events.start, events.step, events.unit, np.ascontiguousarray(weight.detach().t().numpy()),
             delays.t().to(device="cpu", dtype=torch.int32).contiguous().numpy(), out.numpy())
    return out
