"""Noise a network adds to a population's input each step, drawn inside the run.

:class:`GaussianNoise` (the thalamic input of Izhikevich's 2003 network is ``GaussianNoise(std)``
with 5 for excitatory and 2 for inhibitory neurons) and :class:`PoissonNoise` (background
synapses firing at a rate) are attached by :meth:`Network.add_noise
<neurosim.network.Network.add_noise>`. Draws come from the counter-based streams of
:mod:`neurosim.kernels.noise`: a function of the seed, the sample, the step since the run state
was created and the neuron, drawn the same by the compiled loop and the torch step loop. The run
state keeps the step a source has reached (entry ``"noise:NAME"``), so a run continued from a
state, also one restored from a checkpoint, draws what one longer run would have drawn.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import NeurosimError, check_int, check_positive
from ..neurons.base import as_param

# The streams are numba functions: :mod:`neurosim.kernels.noise` is imported by the first draw, not
# with the network, so that training without noise does not load numba.


def _check_seed(seed) -> None:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2 ** 64:
        raise NeurosimError(f"seed must be an integer in [0, 2**64), got {seed!r}")


@dataclass(frozen=True)
class GaussianNoise:
    """``mean + std * xi`` added each step to each neuron's input, ``xi ~ N(0, 1)``; ``std`` (>= 0)
    and ``mean`` are numbers or one value per neuron, in the units of the population's input."""

    std: float | torch.Tensor = 1.0
    mean: float | torch.Tensor = 0.0
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "std", as_param(self.std, name="std"))
        object.__setattr__(self, "mean", as_param(self.mean, name="mean"))
        check_positive("std", self.std, allow_zero=True)
        _check_seed(self.seed)

    def arguments(self, dt: float) -> tuple:
        """``(kind, p1, p2)`` of :func:`neurosim.kernels.noise.noise_value`."""
        from ..kernels.noise import GAUSSIAN
        return GAUSSIAN, self.std, self.mean


@dataclass(frozen=True)
class PoissonNoise:
    """``weight * k`` added each step to each neuron's input, ``k ~ Poisson(count * rate * dt)``:
    the events of ``count`` independent Poisson processes of ``rate`` Hz in one step (``dt`` in ms),
    each adding ``weight``. ``rate`` and ``weight`` are numbers or one value per neuron."""

    rate: float | torch.Tensor
    weight: float | torch.Tensor
    count: int = 1
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "rate", as_param(self.rate, name="rate"))
        object.__setattr__(self, "weight", as_param(self.weight, name="weight"))
        check_positive("rate", self.rate, allow_zero=True)
        check_int("count", self.count)
        _check_seed(self.seed)

    def arguments(self, dt: float) -> tuple:
        from ..kernels.noise import MAX_POISSON_MEAN, POISSON
        mean = self.rate * (self.count * dt / 1000.0)
        peak = float(mean.max()) if isinstance(mean, torch.Tensor) else mean
        if peak > MAX_POISSON_MEAN:
            raise NeurosimError(f"Poisson noise of {peak:g} events per step on average; at most "
                                f"{MAX_POISSON_MEAN:g} (a smaller count or dt, or GaussianNoise)")
        return POISSON, mean, self.weight


NOISES = (GaussianNoise, PoissonNoise)


def kernel_noise(noise, population, batch: int, step: int):
    """The arguments (a :class:`neurosim.kernels.compiled.Noise`) with which the loops draw ``noise``
    for ``population``, ``batch`` samples from ``step`` on: parameters as numbers or per-neuron arrays
    of the population's dtype."""
    from ..kernels.compiled import Noise
    from ..kernels.noise import GAUSSIAN, stream_key
    kind, p1, p2 = noise.arguments(population.dt)
    dtype = np.float64 if population.dtype == torch.float64 else np.float32

    def value(v, name):
        v = population.per_neuron_value(f"noise {name}", v)
        if isinstance(v, torch.Tensor):
            return dtype(v.item()) if v.numel() == 1 else v.detach().cpu().numpy().astype(dtype)
        return dtype(v)

    keys = np.array([stream_key(noise.seed, b) for b in range(batch)], dtype=np.uint64)
    return Noise(kind, keys, step, value(p1, 'std' if kind == GAUSSIAN else 'rate'),
                 value(p2, 'mean' if kind == GAUSSIAN else 'weight'))


def draw(spec, step: int, n: int, dtype: torch.dtype, device=None) -> torch.Tensor:
    """The noise ``[B, n]`` of step ``step`` of the run ``spec`` (from :func:`kernel_noise`) starts
    (its first step is ``spec.step``)."""
    from ..kernels.noise import fill_noise
    out = np.empty((spec.keys.size, n), np.float64 if dtype == torch.float64 else np.float32)
    fill_noise(spec.kind, spec.keys, spec.step + step, spec.p1, spec.p2, out)
    return torch.from_numpy(out).to(device)
