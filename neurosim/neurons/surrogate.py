"""Spike functions: Heaviside step forward, smooth surrogate derivative backward.

With ``x = v - v_th``:

- fast sigmoid: dS/dx = 1 / (slope |x| + 1)^2                       (slope 25)
- atan:         dS/dx = (alpha / 2) / (1 + (pi alpha x / 2)^2)        (alpha 2)
- triangle:     dS/dx = max(0, 1 - |x| / width) / width              (width 1)
- straight_through: dS/dx = 1

The forward pass is ``x > 0`` in every case.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from ..errors import NeurosimError

SpikeFn = Callable[[torch.Tensor], torch.Tensor]


class _FastSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slope: float):
        ctx.save_for_backward(x)
        ctx.slope = slope
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad / (ctx.slope * x.abs() + 1.0) ** 2, None


class _ATan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, alpha: float):
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        a = ctx.alpha
        return grad * (a / 2) / (1 + (math.pi / 2 * a * x) ** 2), None


class _Triangle(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, width: float):
        ctx.save_for_backward(x)
        ctx.width = width
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        w = ctx.width
        return grad * torch.clamp(1 - x.abs() / w, min=0) / w, None


class _StraightThrough(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return (x > 0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad


class Surrogate:
    """A named spike function with its shape parameter; callable on ``v - v_th``."""

    def __init__(self, name: str, scale: float):
        self.name = name
        self.scale = float(scale)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "fast_sigmoid":
            return _FastSigmoid.apply(x, self.scale)
        if self.name == "atan":
            return _ATan.apply(x, self.scale)
        if self.name == "triangle":
            return _Triangle.apply(x, self.scale)
        return _StraightThrough.apply(x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """dS/dx at ``x``, the same values the backward pass uses."""
        if self.name == "fast_sigmoid":
            return 1.0 / (self.scale * x.abs() + 1.0) ** 2
        if self.name == "atan":
            return (self.scale / 2) / (1 + (math.pi / 2 * self.scale * x) ** 2)
        if self.name == "triangle":
            return torch.clamp(1 - x.abs() / self.scale, min=0) / self.scale
        return torch.ones_like(x)

    def __repr__(self) -> str:
        return f"Surrogate({self.name!r}, {self.scale})"


DEFAULT_SCALE = {"fast_sigmoid": 25.0, "atan": 2.0, "triangle": 1.0, "straight_through": 1.0}


def surrogate(name: str | Surrogate = "fast_sigmoid", scale: float | None = None) -> Surrogate:
    """Look up a surrogate by name (``fast_sigmoid``, ``atan``, ``triangle``, ``straight_through``)."""
    if isinstance(name, Surrogate):
        return name
    if name not in DEFAULT_SCALE:
        raise NeurosimError(f"unknown surrogate {name!r}; expected one of: {', '.join(DEFAULT_SCALE)}")
    s = DEFAULT_SCALE[name] if scale is None else scale
    if not s > 0:
        raise NeurosimError(f"surrogate scale must be > 0, got {s!r}")
    return Surrogate(name, s)
