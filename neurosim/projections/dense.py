"""Dense (all-to-all) projection: ``y = x W_eff^T (+ b)``; recurrent when pre and post are the same."""
from __future__ import annotations

import torch
from torch import nn

from .base import MatrixProjection


class Dense(MatrixProjection):
    """``Dense(n_in, n_out, bias=False, weight=None, scale=None, mask=None, dale=None, channel="exc")``.

    ``weight`` (``[n_out, n_in]``) sets the initial weights; otherwise they are drawn
    Kaiming-uniform, multiplied by ``scale`` if given. ``mask`` is a ``[n_out, n_in]`` boolean
    connectivity; ``dale`` gives presynaptic signs (see :mod:`.base`).
    """

    def __init__(self, n_in: int, n_out: int, *, bias: bool = False, weight=None, scale: float | None = None,
                 mask=None, dale=None, channel: str = "exc", learnable: bool = True,
                 generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32):
        super().__init__(n_in, n_out, channel, learnable, weight=weight, scale=scale, mask=mask, dale=dale,
                         generator=generator, dtype=dtype)
        self.bias = nn.Parameter(torch.zeros(n_out, dtype=dtype), requires_grad=learnable) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.matmul(x.to(self.weight.dtype), self.effective_weight().t())
        return y if self.bias is None else y + self.bias

    def propagate_spikes(self, z: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or self.bias is not None or z.shape[0] != 1:
            return self(z)
        idx = torch.nonzero(z[0], as_tuple=True)[0]
        return self.effective_weight().index_select(1, idx).sum(1, keepdim=True).t().to(z.dtype)
