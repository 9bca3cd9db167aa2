"""What every projection shares: sizes, the synaptic channel it feeds, Dale's law and masks.

A projection maps presynaptic activity ``[..., n_in]`` to postsynaptic input ``[..., n_out]``
with an effective weight ``W_eff = mask * W`` or, under Dale's law,
``W_eff = mask * |W| * sign_j`` with ``sign_j = +1`` for excitatory and ``-1`` for
inhibitory presynaptic neurons.
"""
from __future__ import annotations

import torch
from torch import nn

from ..errors import NeurosimError, check_choice, check_finite, check_last_dim

CHANNELS = ("exc", "inh")


def dale_signs(dale, n_in: int) -> torch.Tensor | None:
    """``"exc"`` / ``"inh"`` for one sign, or a per-presynaptic tensor of +1 / -1 (or booleans: True = exc)."""
    if dale is None:
        return None
    if isinstance(dale, str):
        check_choice("dale", dale, CHANNELS)
        return torch.full((n_in,), 1.0 if dale == "exc" else -1.0)
    s = torch.as_tensor(dale)
    if s.dtype == torch.bool:
        s = s.float() * 2 - 1
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

    def check_input(self, x: torch.Tensor) -> None:
        check_last_dim(f"input to {type(self).__name__}({self.n_in} -> {self.n_out})", x, self.n_in, (1, 2, 3))
        check_finite(f"input to {type(self).__name__}", x)

    def propagate_spikes(self, z: torch.Tensor) -> torch.Tensor:
        """Postsynaptic input from binary spikes ``[B, n_in]``; event-driven where a subclass can."""
        return self(z)
