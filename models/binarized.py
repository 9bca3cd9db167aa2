r"""The binarised network of Laborieux et al. (Nature Communications 2021), with hidden weights.

A fully connected network 784-4096-4096-10 without biases. Each synapse keeps a real-valued hidden
weight :math:`W_h`; the forward pass uses :math:`\mathrm{sign}(W_h)`, and the gradient with
respect to the binary weight is applied to :math:`W_h` unchanged (straight-through). Every layer,
the output included, is followed by batch normalisation without running statistics (training and
testing both normalise with the batch's own mean and variance, with affine parameters); the
hidden layers then emit :math:`\mathrm{sign}(x)`, whose straight-through gradient is 1 where
:math:`|x| \le 1` and 0 elsewhere. The input (pixels in [0, 1]) is not binarised. Hidden weights
start uniform on :math:`[-0.05, 0.05]` and are not clipped.

Training (their permuted-MNIST setting): Adam, lr 0.005, recreated at every task, with an L2
weight decay of 1e-7 added to the gradient; batch 100; 40 epochs per task; test batches of 1000.
Metaplasticity (:func:`neurosim.plugins.metaplasticity.metaplastic_update`, with ``m`` on the raw
hidden weights) scales the Adam steps of the hidden weights that move them toward zero; the batch
norms' parameters train by plain Adam. The batch norms' affine parameters are task-specific:
saved at the end of each task (:meth:`BinarizedMLP.norm_state`) and loaded again to test that
task, so testing needs the task's identity.

The published runs: Fig. 2a-d of the paper, six permuted-MNIST tasks at m = 0, 0.5, 1.0 and 1.35.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from neurosim.errors import NeurosimError, check_positive

#: Layer sizes, initial width of the uniform hidden weights, and training settings.
SIZES = (784, 4096, 4096, 10)
INIT_WIDTH = 0.1
LR, WEIGHT_DECAY, BATCH_SIZE, TEST_BATCH_SIZE, EPOCHS = 0.005, 1e-7, 100, 1000, 40
#: The metaplasticity of Fig. 2d.
M = 1.35


class _SignSTE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


def sign_activation(x: torch.Tensor) -> torch.Tensor:
    """``sign(x)`` forward; backward passes the gradient where ``|x| <= 1`` and zeroes it elsewhere."""
    return _SignSTE.apply(x)


def binary_weight(hidden: torch.Tensor) -> torch.Tensor:
    """``sign(hidden)`` forward, the identity backward: the gradient reaches the hidden weight as it is."""
    return hidden + (torch.sign(hidden) - hidden).detach()


class BinaryLinear(nn.Module):
    """``y = x sign(W_h)^T``, ``weight`` the hidden weights ``[n_out, n_in]``."""

    def __init__(self, n_in: int, n_out: int, width: float = INIT_WIDTH, generator: torch.Generator | None = None):
        super().__init__()
        check_positive("width", width)
        w = (torch.rand(n_out, n_in, generator=generator) - 0.5) * width
        self.weight = nn.Parameter(w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, binary_weight(self.weight))


class BinarizedMLP(nn.Module):
    """``BinarizedMLP(sizes=SIZES, width=INIT_WIDTH, seed=0)``; see the module docstring."""

    def __init__(self, sizes: tuple[int, ...] = SIZES, width: float = INIT_WIDTH, seed: int = 0):
        super().__init__()
        if len(sizes) < 2 or any(not isinstance(n, int) or n < 1 for n in sizes):
            raise NeurosimError(f"sizes must be at least two positive integers, got {sizes!r}")
        g = torch.Generator().manual_seed(seed)
        self.sizes = tuple(sizes)
        self.layers = nn.ModuleList(BinaryLinear(a, b, width, g) for a, b in zip(sizes[:-1], sizes[1:]))
        self.norms = nn.ModuleList(nn.BatchNorm1d(b, track_running_stats=False) for b in sizes[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 2 or x.shape[1] != self.sizes[0]:
            raise NeurosimError(f"input must be [batch, {self.sizes[0]}], got shape {tuple(x.shape)}")
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            x = norm(layer(x))
            if i < len(self.layers) - 1:
                x = sign_activation(x)
        return x

    def hidden_weights(self) -> list[nn.Parameter]:
        return [layer.weight for layer in self.layers]

    def norm_state(self) -> dict[str, torch.Tensor]:
        """A copy of the batch norms' parameters (the task-specific part)."""
        return {k: v.detach().clone() for k, v in self.norms.state_dict().items()}

    def load_norm_state(self, state: dict[str, torch.Tensor]) -> None:
        self.norms.load_state_dict(state)
