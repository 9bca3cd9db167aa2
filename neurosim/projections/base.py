"""What every projection shares: sizes, the synaptic channel it feeds, Dale's law and masks.

A projection maps presynaptic activity ``[..., n_in]`` to postsynaptic input ``[..., n_out]``
with an effective weight ``W_eff = mask * W`` or, under Dale's law,
``W_eff = mask * |W| * sign_j`` with ``sign_j = +1`` for excitatory and ``-1`` for
inhibitory presynaptic neurons.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import NeurosimError, check_choice, check_finite, check_last_dim

CHANNELS = ("exc", "inh")


def dale_signs(dale, n_in: int) -> torch.Tensor | None:
    """``"exc"`` / ``"inh"`` for one sign, or one sign per presynaptic neuron, +1 (excitatory) or -1
    (inhibitory). Booleans are refused: whether True means excitatory or inhibitory is a guess."""
    if dale is None:
        return None
    if isinstance(dale, str):
        check_choice("dale", dale, CHANNELS)
        return torch.full((n_in,), 1.0 if dale == "exc" else -1.0)
    s = torch.as_tensor(dale)
    if s.dtype == torch.bool:
        raise NeurosimError("dale takes signs, +1 (excitatory) or -1 (inhibitory) per presynaptic neuron, not "
                            "booleans: for a mask of inhibitory neurons pass torch.where(mask, -1.0, 1.0)")
    if s.shape != (n_in,) or not bool(((s == 1) | (s == -1)).all()):
        raise NeurosimError(f"dale must be 'exc', 'inh' or {n_in} signs of +1/-1, got shape {tuple(s.shape)}")
    return s.float()


class Projection(nn.Module):
    """Base class. ``channel`` names the synaptic current it feeds (``exc`` or ``inh``)."""

    def __init__(self, n_in: int, n_out: int, channel: str = "exc", learnable: bool = True):
        super().__init__()
        for name, n in (("n_in", n_in), ("n_out", n_out)):
            if not isinstance(n, int) or n < 1:
                raise NeurosimError(f"{name} must be a positive integer, got {n!r}")
        check_choice("channel", channel, CHANNELS)
        self.n_in, self.n_out, self.channel, self.learnable = n_in, n_out, channel, learnable

    @property
    def min_steps(self) -> int:
        """The shortest input sequence it accepts (a delayed projection needs its whole kernel)."""
        return 1

    def check_input(self, x: torch.Tensor) -> None:
        check_last_dim(f"input to {type(self).__name__}({self.n_in} -> {self.n_out})", x, self.n_in, (1, 2, 3))
        check_finite(f"input to {type(self).__name__}", x)

    def propagate_spikes(self, z: torch.Tensor) -> torch.Tensor:
        """Postsynaptic input from binary spikes ``[B, n_in]``; event-driven where a subclass can."""
        return self(z)


class MatrixProjection(Projection):
    """A projection with one weight per (post, pre) pair, ``weight`` ``[n_out, n_in]``: given, or
    Kaiming-uniform (bound ``1/sqrt(n_in)``) times ``scale``; an optional boolean ``mask``
    ``[n_out, n_in]`` and Dale's presynaptic ``signs`` (module docstring)."""

    def __init__(self, n_in: int, n_out: int, channel: str, learnable: bool, *, weight, scale: float | None,
                 mask, dale, generator: torch.Generator | None, dtype: torch.dtype):
        super().__init__(n_in, n_out, channel, learnable)
        if weight is None:
            bound = 1 / math.sqrt(n_in)
            weight = (torch.rand(n_out, n_in, generator=generator, dtype=dtype) * 2 - 1) * bound
            if scale is not None:
                weight = weight * scale
        weight = torch.as_tensor(weight, dtype=dtype)
        if weight.shape != (n_out, n_in):
            raise NeurosimError(f"weight must have shape ({n_out}, {n_in}), got {tuple(weight.shape)}")
        self.weight = nn.Parameter(weight.clone(), requires_grad=learnable)
        if mask is not None:
            mask = torch.as_tensor(mask, dtype=torch.bool)
            if mask.shape != (n_out, n_in):
                raise NeurosimError(f"mask must have shape ({n_out}, {n_in}), got {tuple(mask.shape)}")
        self.register_buffer("mask", mask)
        signs = dale_signs(dale, n_in)
        self.register_buffer("signs", None if signs is None else signs.to(dtype))

    def effective_weight(self) -> torch.Tensor:
        """``mask * W``, or ``mask * |W| * sign_j`` under Dale's law."""
        w = self.weight
        if self.signs is not None:
            w = w.abs() * self.signs
        if self.mask is not None:
            w = w * self.mask
        return w
