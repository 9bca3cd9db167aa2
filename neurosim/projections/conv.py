"""Convolutional projection over flattened ``[C, H, W]`` maps: ``y = conv2d(x, W)`` per time step."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NeurosimError
from .base import Projection


class Conv2d(Projection):
    """``Conv2d(in_shape=(C, H, W), out_channels, kernel_size, stride=1, padding=0, bias=False)``.

    Presynaptic activity is the flattened map (``n_in = C*H*W``); the output is flattened too.
    """

    def __init__(self, in_shape: tuple[int, int, int], out_channels: int, kernel_size: int, *, stride: int = 1,
                 padding: int = 0, bias: bool = False, channel: str = "exc", learnable: bool = True,
                 dtype: torch.dtype = torch.float32):
        if len(in_shape) != 3:
            raise NeurosimError(f"in_shape must be (C, H, W), got {in_shape!r}")
        c, h, w = in_shape
        ho = (h + 2 * padding - kernel_size) // stride + 1
        wo = (w + 2 * padding - kernel_size) // stride + 1
        if ho < 1 or wo < 1:
            raise NeurosimError(f"kernel {kernel_size} does not fit input {in_shape} with padding {padding}")
        super().__init__(c * h * w, out_channels * ho * wo, channel, learnable)
        self.in_shape, self.out_shape = tuple(in_shape), (out_channels, ho, wo)
        self.stride, self.padding = stride, padding
        bound = 1 / math.sqrt(c * kernel_size * kernel_size)
        self.weight = nn.Parameter((torch.rand(out_channels, c, kernel_size, kernel_size, dtype=dtype) * 2 - 1) * bound,
                                   requires_grad=learnable)
        self.bias = nn.Parameter(torch.zeros(out_channels, dtype=dtype), requires_grad=learnable) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        y = F.conv2d(x.reshape(-1, *self.in_shape).to(self.weight.dtype), self.weight, self.bias,
                     stride=self.stride, padding=self.padding)
        return y.reshape(*lead, self.n_out)
