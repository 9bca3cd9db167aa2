r"""A projection with dropout on its input sequence and batch normalisation of its output.

``Chain(projection, dropout=p, batch_norm=True)`` maps a presynaptic sequence ``x`` ``[T, B, n_in]``
to the postsynaptic input

.. math::

    y = \mathrm{BN}\big(P(m \odot x)\big), \qquad
    m_{b,j} = \frac{\xi_{b,j}}{1 - p}, \quad \xi_{b,j} \sim \mathrm{Bernoulli}(1 - p),

where :math:`P` is the wrapped projection and the dropout mask :math:`m` is drawn once per
sequence: the same presynaptic neurons of sample :math:`b` are silenced at every step (training
mode only; the identity in evaluation mode). Dropout on a population's spikes before the next
projection is the same as dropout after the neurons in a layer stack. ``BN`` is
:class:`torch.nn.BatchNorm1d` over the ``n_out`` channels with statistics taken over time and
batch together (all ``T B`` rows, zero-padded steps included):

.. math::

    \mathrm{BN}(y)_{t,b,i} = \gamma_i \frac{y_{t,b,i} - \mu_i}{\sqrt{\sigma_i^2 + \epsilon}} + \beta_i,
    \qquad \mu_i = \frac{1}{TB}\sum_{t,b} y_{t,b,i}, \quad
    \sigma_i^2 = \frac{1}{TB}\sum_{t,b} (y_{t,b,i} - \mu_i)^2

(running estimates in evaluation mode). The running estimates start from the statistics of the first
training batch (PyTorch starts them at 0 and 1 and moves them by ``momentum`` per batch, so after
:math:`N` batches 1 still weighs :math:`(1 - \text{momentum})^N` in the variance, which dominates
activity of small variance, such as a delay convolution's spike counts), then follow PyTorch's
update. With a :class:`~neurosim.projections.Delayed` projection this
is the block of the learnable-delay network (Hammouamri et al. 2024):
delay-conv, BatchNorm1d, then the postsynaptic neurons.

Both operations need the whole sequence, so a chain cannot sit inside a recurrent loop. The
wrapped projection stays reachable as ``.projection``; ``.weight`` is its weight, so plugins that
look for learnable projections find it.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import NeurosimError, check_last_dim
from .base import Projection


class Chain(Projection):
    """``Chain(projection, dropout=0.0, batch_norm=True, momentum=0.1, eps=1e-5)``: see the module docstring.

    ``dropout`` is the probability ``p`` in ``[0, 1)`` of silencing a presynaptic neuron for a
    whole sequence. ``batch_norm`` adds a ``BatchNorm1d(n_out)`` (learnt affine ``gamma``,
    ``beta``; ``momentum`` and ``eps`` as in PyTorch) on the projection's output.
    """

    def __init__(self, projection: Projection, *, dropout: float = 0.0, batch_norm: bool = True,
                 momentum: float = 0.1, eps: float = 1e-5):
        if not isinstance(projection, Projection):
            raise NeurosimError(f"projection must be a neurosim Projection, got {type(projection).__name__}")
        super().__init__(projection.n_in, projection.n_out, projection.channel, projection.learnable)
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise NeurosimError(f"dropout must be a probability in [0, 1), got {dropout!r}")
        for name, v in (("momentum", momentum), ("eps", eps)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise NeurosimError(f"{name} must be a positive number, got {v!r}")
        self.projection = projection
        self.dropout = float(dropout)
        dtype = projection.weight.dtype if getattr(projection, "weight", None) is not None else torch.float32
        self.norm = nn.BatchNorm1d(projection.n_out, eps=eps, momentum=momentum, dtype=dtype) if batch_norm else None

    @property
    def weight(self) -> torch.Tensor | None:
        """The wrapped projection's weight."""
        return getattr(self.projection, "weight", None)

    @property
    def min_steps(self) -> int:
        return self.projection.min_steps

    def mask(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """A dropout mask ``[B, n_in]`` of ``0`` and ``1 / (1 - p)`` (one per sequence)."""
        keep = torch.rand(batch, self.n_in, dtype=like.dtype, device=like.device) >= self.dropout
        return keep.to(like.dtype) / (1 - self.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Postsynaptic input ``[T, B, n_out]`` from the presynaptic sequence ``[T, B, n_in]``."""
        name = f"Chain({self.n_in} -> {self.n_out})"
        if x.dim() == 2 and x.shape[-1] == self.n_in:
            raise NeurosimError(f"{name} needs the whole sequence [T, B, {self.n_in}] (dropout per sequence, "
                                "batch norm over time), not one step; it cannot sit inside a recurrent loop")
        check_last_dim(f"input to {name}", x, self.n_in, 3)  # finiteness: checked by the projection or the neurons
        if self.training and self.dropout > 0:
            x = x * self.mask(x.shape[1], x)
        y = self.projection(x)
        if self.norm is None:
            return y
        T, B, n = y.shape
        norm = self.norm
        first = norm.training and norm.track_running_stats and int(norm.num_batches_tracked) == 0
        momentum, norm.momentum = norm.momentum, 1.0 if first else norm.momentum
        try:
            return norm(y.reshape(T * B, n)).view(T, B, n)
        finally:
            norm.momentum = momentum

    def extra_repr(self) -> str:
        return f"dropout={self.dropout:g}, batch_norm={self.norm is not None}"
