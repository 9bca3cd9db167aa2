"""Input encodings: static features ``x`` in [0, 1] (``[B, F]``) to sequences ``[T, B, F]``.

- ``current``: the value itself at every step (direct current input);
- ``rate``: Bernoulli spikes with probability ``gain * x`` per step;
- ``latency``: one spike at step ``round((1 - x) (T - 1))`` for ``x > threshold``, none otherwise.
"""
from __future__ import annotations

import torch

from ..errors import NeurosimError, check_finite

ENCODINGS = ("current", "rate", "latency")


def encode(x: torch.Tensor, steps: int, kind: str = "rate", *, gain: float = 1.0, threshold: float = 0.01,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Encode ``x`` (``[B, F]``) over ``steps`` time steps."""
    if kind not in ENCODINGS:
        raise NeurosimError(f"unknown encoding {kind!r}; expected one of: {', '.join(ENCODINGS)}")
    if not isinstance(steps, int) or steps < 1:
        raise NeurosimError(f"steps must be a positive integer, got {steps!r}")
    if x.dim() != 2:
        raise NeurosimError(f"features to encode must be [B, F], got shape {tuple(x.shape)}")
    check_finite("features to encode", x)
    if kind == "current":
        return x.unsqueeze(0).expand(steps, *x.shape).contiguous()
    if kind == "rate":
        p = torch.clamp(gain * x, 0, 1)
        return (torch.rand(steps, *x.shape, generator=generator, dtype=x.dtype) < p).to(x.dtype)
    t_spike = torch.round((1 - torch.clamp(x, 0, 1)) * (steps - 1)).long()
    out = torch.zeros(steps, *x.shape, dtype=x.dtype)
    out.scatter_(0, t_spike.unsqueeze(0), (x > threshold).to(x.dtype).unsqueeze(0))
    return out
