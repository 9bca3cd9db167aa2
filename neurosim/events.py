"""Spikes as events: the step, sample and neuron of every spike, instead of a dense ``[T, B, n]`` tensor."""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch


class SpikeEvents(NamedTuple):
    """Spikes ordered by step, then sample, then neuron: step ``t`` (int64, counted from the start
    of the run), sample ``b`` and neuron ``i`` (int32), all of the same length."""

    t: torch.Tensor
    b: torch.Tensor
    i: torch.Tensor

    @classmethod
    def from_dense(cls, z: torch.Tensor, stride: int = 1) -> "SpikeEvents":
        """The events of ``z`` (``[K, B, n]``, nonzero = spike), whose row ``k`` holds step ``k * stride``."""
        k, b, i = torch.nonzero(z, as_tuple=True)
        return cls(k * stride, b.to(torch.int32), i.to(torch.int32))

    @classmethod
    def from_csr(cls, idx: np.ndarray, ptr: np.ndarray, steps: int, batch: int, stride: int = 1) -> "SpikeEvents":
        """The events listed step-major, then by sample: those of slot ``s = t * batch + b`` are
        ``idx[ptr[s]:ptr[s + 1]]``. Keeps steps ``0, stride, ...``; copies what it keeps."""
        slot = np.repeat(np.arange(steps * batch, dtype=np.int64), np.diff(ptr[:steps * batch + 1]))
        i = idx[:slot.size]
        if batch == 1:
            t, b = slot, np.zeros(slot.size, np.int32)
        else:
            t, b = np.divmod(slot, batch)
            b = b.astype(np.int32)
        if stride > 1:
            keep = t % stride == 0
            t, b, i = t[keep], b[keep], i[keep]
        return cls(torch.from_numpy(t), torch.from_numpy(b), torch.from_numpy(np.array(i, dtype=np.int32)))
