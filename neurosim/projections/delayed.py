r"""Delayed projection: one weight and one learnable delay per synapse (DCLS, Hammouamri et al. 2024).

Each synapse :math:`i \leftarrow j` has a weight :math:`w_{ij}` and a real position
:math:`p_{ij}`; one width :math:`\sigma` (not learned, scheduled) is shared. The synapse is a
kernel of ``max_delay`` :math:`D` taps over time,

.. math::

    K_{ij}[k] = \frac{w_{ij}\, g_k}{\sum_{k'} g_{k'} + 10^{-7}}, \quad
    g_k = \exp\Big(-\tfrac12 \Big(\frac{k - c_{ij}}{|\sigma| + 0.27}\Big)^2\Big), \quad
    c_{ij} = p_{ij} + \lfloor D/2 \rfloor, \quad k = 0 \dots D-1,

and tap :math:`k` carries delay :math:`D-1-k`. The output is causal and as long as the input:

.. math::

    I_i[t] = \sum_j \sum_k K_{ij}[k]\, s_j[t - (D-1-k)] \qquad (s_j[t] = 0 \text{ for } t < 0).

This convolution costs :math:`T D` multiply-adds per sample and synapse. For kernels of 8 taps or
more it is computed as a product of spectra (:func:`spectral_conv`): over :math:`n \ge T + D - 1`
points the DFT turns it into one complex ``[B, n_in] x [n_in, n_out]`` product per frequency,
about :math:`2 (T + D)` multiply-adds, forward and backward, with the same result to rounding.

The paper also pads :math:`(D-1)/\!/2` steps on the right, so its output is that much longer than
its input; here those tail steps are dropped, so sequences keep their length ``T`` through every
layer. Spikes still in flight at the end of a run are lost, and the next ``run`` (``state=``) does
not receive them: a delayed projection holds no state between runs. A sequence shorter than the
kernel is refused, since its longest delays could never deliver.

Positions start uniform on :math:`[-\lceil D/2 \rceil, \lfloor D/2 \rfloor)` and are clamped to
:math:`[-\lfloor D/2 \rfloor, D-1-\lfloor D/2 \rfloor]`, at construction and then in place, without
gradient, at the start of every forward and when the state is saved (the same as clamping after
each optimiser step). For odd
:math:`D` that is the paper's :math:`[-\lfloor D/2 \rfloor, \lfloor D/2 \rfloor]`; for even :math:`D`
the paper's upper bound would centre the Gaussian one step past the last tap (a negative delay), so
it is one lower.

Integer delays (evaluation): inside ``with integer_delays(net):`` (or with ``proj.rounded =
True``) the positions are rounded (half to even) and each synapse delivers its whole weight after
:math:`d_{ij} = D-1-\lfloor D/2 \rfloor - \mathrm{round}(p_{ij})` steps, i.e.
:math:`\lfloor D/2 \rfloor - \mathrm{round}(p_{ij})` for odd :math:`D`:
:math:`I_i[t] = \sum_j w_{ij} s_j[t - d_{ij}]`. This is an exact one-tap kernel (the paper's
:math:`\sigma = 0` kernel still leaks about :math:`10^{-3}` of each weight to the neighbouring taps).
The positions themselves are not changed, so training continues from the continuous state.
Fixed delays (``delays="random"`` or a tensor of integers) always take this path. It never builds
the ``[n_out, n_in, D]`` kernel (:func:`integer_sum`). Without gradients (no tensor needs one, or
under ``torch.no_grad()``) it is event-driven (:func:`~neurosim.projections.delay_kernels.event_sum`):
each nonzero input :math:`s_j[t]` adds :math:`s_j[t]\, w_{ij}` to :math:`I_i[t + d_{ij}]`, so
sparse spikes or event counts cost a fraction of the convolution. With gradients, or for an input
too dense for events to pay, it is one matmul per distinct delay value, shifted in time
(:func:`shifted_sum`: as much arithmetic as the convolution, differentiable in the weights).

:math:`\sigma` starts at :math:`\lfloor D/2 \rfloor` and follows :func:`sigma_schedule` (set it
per epoch with ``proj.sigma = ...``); it is kept in the buffer ``width`` so checkpoints resume it.
The parameters are ``weight`` ``[n_out, n_in]`` and ``positions`` ``[n_out, n_in]``; the paper gives
positions their own optimiser (Adam, lr 0.1, cosine, no weight decay), e.g.::

    delayed = [m for m in net.modules() if isinstance(m, Delayed)]
    opt_w = torch.optim.Adam([m.weight for m in delayed], lr=1e-3, weight_decay=1e-5)
    opt_p = torch.optim.Adam([m.positions for m in delayed], lr=0.1)

Delayed projections need the whole presynaptic sequence (layer-at-a-time); a per-step call, as
inside a recurrent loop of a :class:`~neurosim.Network`, is an error.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from functools import lru_cache

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import NeurosimError, check_finite, check_last_dim
from .base import MatrixProjection

SIGMA_OFFSET = 0.27  # added to |sigma|: the Gaussian's smallest standard deviation, in steps
SIGMA_FINAL = 0.23   # the paper's final sigma (effective standard deviation 0.5 steps)
# Without gradients, events are delivered one by one while the input's fraction of nonzero entries
# is below this per distinct delay value; denser inputs go to the shifted matmuls (the crossover
# measured by benchmarks/delays_inference.py).
EVENT_DENSITY_PER_DELAY = 0.03
# Kernels of at least this many taps are applied through the FFT, shorter ones as a convolution
# (the crossover measured by benchmarks/delays_epoch.py --conv).
FFT_MIN_TAPS = 8


def gaussian_kernel(weight: torch.Tensor, positions: torch.Tensor, sigma: float, max_delay: int) -> torch.Tensor:
    """The ``[n_out, n_in, D]`` kernel ``K[i, j, k] = w_ij g_k / (sum_k g_k + 1e-7)`` (module docstring)."""
    k = torch.arange(max_delay, dtype=weight.dtype, device=weight.device)
    centre = positions.unsqueeze(-1) + max_delay // 2
    g = torch.exp(-0.5 * ((k - centre) / (abs(float(sigma)) + SIGMA_OFFSET)) ** 2)
    return weight.unsqueeze(-1) * g / (g.sum(-1, keepdim=True) + 1e-7)


def causal_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """``I[t] = sum_k K[:, :, k] s[t - (D-1-k)]`` for ``x`` ``[T, B, n_in]``; returns ``[T, B, n_out]``:
    :func:`spectral_conv` for kernels of at least ``FFT_MIN_TAPS`` taps, else :func:`direct_conv`."""
    return (spectral_conv if kernel.shape[-1] >= FFT_MIN_TAPS else direct_conv)(x, kernel)


def direct_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`causal_conv` as a convolution over time (``T D n_in n_out`` multiply-adds per sample)."""
    xs = F.pad(x.permute(1, 2, 0), (kernel.shape[-1] - 1, 0))
    return F.conv1d(xs, kernel).permute(2, 0, 1).contiguous()


def fft_length(n: int) -> int:
    """The smallest ``m >= n`` without prime factors above 5: a length the FFT handles fast."""
    m = max(n, 1)
    while True:
        rest = m
        for p in (2, 3, 5):
            while rest % p == 0:
                rest //= p
        if rest == 1:
            return m
        m += 1


@lru_cache(maxsize=64)
def _tap_spectra(taps: int, n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Real and imaginary parts ``[n // 2 + 1, taps]`` of ``exp(-2 pi i f (taps-1-k) / n)``: the
    ``n``-point DFT at frequency ``f`` of a unit on tap ``k`` (delay ``taps-1-k``)."""
    f = torch.arange(n // 2 + 1, dtype=torch.float64)
    delay = torch.arange(taps - 1, -1, -1, dtype=torch.float64)
    angle = torch.outer(f, delay) * (2 * math.pi / n)
    return torch.cos(angle).to(device, dtype), (-torch.sin(angle)).to(device, dtype)


def spectral_conv(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    r""":func:`causal_conv` through the discrete Fourier transform over ``n >= T + D - 1`` points
    (so that nothing wraps around): :math:`\hat I(f) = \hat s(f)\, \hat K(f)`, one complex
    ``[B, n_in] x [n_in, n_out]`` product per frequency, about ``2 (T + D)`` instead of ``T D``
    multiply-adds per sample and synapse. The kernel's spectrum is a real product with the
    ``[n/2 + 1, D]`` DFT of the taps. Differentiable (autograd through the transforms). Equal to
    :func:`direct_conv` to rounding: within a few units in the last place of the largest output."""
    T, D = x.shape[0], kernel.shape[-1]
    n_out, n_in = kernel.shape[:2]
    n = fft_length(T + D - 1)
    re, im = _tap_spectra(D, n, kernel.dtype, kernel.device)
    taps = kernel.permute(2, 1, 0).reshape(D, n_in * n_out)
    spectrum = torch.complex(re @ taps, im @ taps).view(-1, n_in, n_out)
    return torch.fft.irfft(torch.fft.rfft(x, n=n, dim=0) @ spectrum, n=n, dim=0)[:T]


def shifted_sum(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """``I_i[t] = sum_j w_ij s_j[t - d_ij]`` for ``x`` ``[T, B, n_in]``: one matmul per distinct delay."""
    T, B, n_in = x.shape
    out = x.new_zeros(T * B, weight.shape[0])
    flat, zero = x.reshape(T * B, n_in), weight.new_zeros(())
    for d in torch.unique(delays).tolist():
        if d < T:  # rows t >= d get the synapses of delay d applied to step t - d
            out[d * B:].addmm_(flat[: (T - d) * B], torch.where(delays == d, weight, zero).t())
    return out.view(T, B, -1)


def integer_sum(x: torch.Tensor, weight: torch.Tensor, delays: torch.Tensor) -> torch.Tensor:
    """``I_i[t] = sum_j w_ij s_j[t - d_ij]``: :func:`shifted_sum` where a gradient is needed (or off
    the CPU), otherwise event-driven (:func:`~neurosim.projections.delay_kernels.event_sum`) unless
    the input's density exceeds ``EVENT_DENSITY_PER_DELAY`` times the number of distinct delays."""
    if ((torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)) or x.device.type != "cpu"
            or x.dtype not in (torch.float32, torch.float64)):
        return shifted_sum(x, weight, delays)
    from . import delay_kernels  # compiled by numba: loaded by the first inference that needs it

    count, limit = delay_kernels.nonzero_count(x), EVENT_DENSITY_PER_DELAY * x.numel()
    if count > limit and count > limit * torch.unique(delays).numel():
        return shifted_sum(x, weight, delays)
    return delay_kernels.event_sum(x, weight, delays)


def sigma_schedule(sigma0: float, epochs: int, final: float = SIGMA_FINAL) -> list[float]:
    """Sigma for each epoch: ``sigma0 * a**min(e, E)`` with ``E = max(1, epochs // 4)`` and
    ``a = (final / sigma0)**(1 / E)``, so it reaches ``final`` after a quarter of training, then stays."""
    for name, v in (("sigma0", sigma0), ("final", final)):
        if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise NeurosimError(f"{name} must be a positive number, got {v!r}")
    if not isinstance(epochs, int) or epochs < 1:
        raise NeurosimError(f"epochs must be a positive integer, got {epochs!r}")
    span = max(1, epochs // 4)
    a = (final / sigma0) ** (1 / span)
    return [final if e >= span else sigma0 * a ** e for e in range(epochs)]


def rounded(positions: torch.Tensor, max_delay: int) -> torch.Tensor:
    """Integer delays ``D-1-floor(D/2) - round(p)`` (int64) of positions ``p`` clamped to their range."""
    half = max_delay // 2
    hi = max_delay - 1 - half
    return (hi - positions.clamp(-half, hi).round()).long()


def delays_from_state(state: dict, prefix: str) -> tuple[np.ndarray, int]:
    """``(integer delays, max_delay)`` of the :class:`Delayed` saved under ``prefix`` in a state dict."""
    max_delay = int(state[prefix + "_extra_state"]["max_delay"])
    positions = state.get(prefix + "positions")
    d = rounded(positions, max_delay) if positions is not None else state[prefix + "fixed_delays"]
    return d.numpy(), max_delay


@contextmanager
def integer_delays(*modules: nn.Module):
    """Within the block, every :class:`Delayed` in ``modules`` (a network, a projection, ...) uses
    its rounded integer delays; the previous modes are restored afterwards."""
    found = [m for module in modules for m in module.modules() if isinstance(m, Delayed)]
    previous = [m.rounded for m in found]
    for m in found:
        m.rounded = True
    try:
        yield
    finally:
        for m, r in zip(found, previous):
            m.rounded = r


class Delayed(MatrixProjection):
    """``Delayed(n_in, n_out, max_delay, delays="learnable", weight=None, scale=None, sigma=None,
    mask=None, dale=None, channel="exc")``.

    ``max_delay`` ``D`` >= 1: delays run from 0 to ``D - 1`` steps. ``delays``: ``"learnable"``
    (real positions, trained; the ``positions`` parameter), ``"random"`` (fixed integer delays drawn
    uniformly from ``0 .. D-1``) or a ``[n_out, n_in]`` tensor of fixed integer delays; fixed delays
    have no ``positions`` (it is None) and live in the buffer ``fixed_delays``. ``weight`` sets the
    initial weights, otherwise Kaiming-uniform (bound ``1/sqrt(n_in)``) times ``scale``; no bias.
    ``learnable`` applies to the weights. ``sigma`` defaults to ``D // 2``; ``mask`` and ``dale``
    act on the weights as in :class:`~neurosim.projections.Dense`.
    """

    def __init__(self, n_in: int, n_out: int, max_delay: int, *, delays="learnable", weight=None,
                 scale: float | None = None, sigma: float | None = None, mask=None, dale=None,
                 channel: str = "exc", learnable: bool = True, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32):
        if isinstance(max_delay, bool) or not isinstance(max_delay, int) or max_delay < 1:
            raise NeurosimError(f"max_delay must be an integer >= 1 (delays 0 .. max_delay-1), got {max_delay!r}")
        super().__init__(n_in, n_out, channel, learnable, weight=weight, scale=scale, mask=mask, dale=dale,
                         generator=generator, dtype=dtype)
        self.max_delay = max_delay
        self.rounded = False
        lo, hi = self.position_range
        if isinstance(delays, str) and delays not in ("learnable", "random"):
            raise NeurosimError(f"delays must be 'learnable', 'random' or a ({n_out}, {n_in}) tensor of integer "
                                f"delays, got {delays!r}")
        if isinstance(delays, str) and delays == "learnable":
            start = -math.ceil(max_delay / 2)
            p = start + torch.rand(n_out, n_in, generator=generator, dtype=dtype) * (max_delay // 2 - start)
            self.positions = nn.Parameter(p.clamp(lo, hi))
            fixed = None
        else:
            self.register_parameter("positions", None)
            if isinstance(delays, str):
                fixed = torch.randint(0, max_delay, (n_out, n_in), generator=generator)
            else:
                fixed = self._check_delays(torch.as_tensor(delays), f"Delayed({n_in} -> {n_out})")
        self.register_buffer("fixed_delays", fixed)
        self.register_buffer("width", torch.tensor(float(max_delay // 2), dtype=dtype))
        self.sigma = max_delay // 2 if sigma is None else sigma

    # -- parameters --------------------------------------------------------------------------
    @property
    def position_range(self) -> tuple[int, int]:
        """Positions are kept in ``[-floor(D/2), D-1-floor(D/2)]`` (centres on taps 0 .. D-1)."""
        half = self.max_delay // 2
        return -half, self.max_delay - 1 - half

    @property
    def min_steps(self) -> int:
        return self.max_delay

    @property
    def sigma(self) -> float:
        """The Gaussian width (not learned); effective standard deviation ``|sigma| + 0.27`` steps."""
        return float(self.width)

    @sigma.setter
    def sigma(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise NeurosimError(f"sigma must be a finite number >= 0, got {value!r}")
        with torch.no_grad():
            self.width.fill_(float(value))

    @property
    def learnable_delays(self) -> bool:
        return self.positions is not None

    def rounded_delays(self) -> torch.Tensor:
        """The integer delays ``d_ij`` (int64 ``[n_out, n_in]``) used in integer mode."""
        if self.positions is None:
            return self.fixed_delays
        with torch.no_grad():
            return rounded(self.positions, self.max_delay)

    def kernel(self) -> torch.Tensor:
        """The dense ``[n_out, n_in, D]`` kernel of the current mode: Gaussian, or one-hot on tap
        ``D-1-d_ij`` for integer delays (for inspection and tests; forward avoids the latter)."""
        if self.positions is not None and not self.rounded:
            return gaussian_kernel(self.effective_weight(), self.positions, self.sigma, self.max_delay)
        taps = F.one_hot(self.max_delay - 1 - self.rounded_delays(), self.max_delay)
        return self.effective_weight().unsqueeze(-1) * taps.to(self.weight.dtype)

    # -- running -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Postsynaptic input ``[T, B, n_out]`` from the presynaptic sequence ``[T, B, n_in]``."""
        name = f"Delayed({self.n_in} -> {self.n_out})"
        if x.dim() == 2 and x.shape[-1] == self.n_in:
            raise NeurosimError(f"{name} needs the whole sequence [T, B, {self.n_in}] (layer-at-a-time), "
                                f"not one step; it cannot sit inside a recurrent loop")
        check_last_dim(f"input to {name}", x, self.n_in, 3)
        check_finite(f"input to {name}", x)
        if x.shape[0] < self.max_delay:
            raise NeurosimError(f"input to {name} has {x.shape[0]} steps, fewer than max_delay={self.max_delay}")
        x = x.to(self.weight.dtype)
        if self.positions is not None:
            with torch.no_grad():
                self.positions.clamp_(*self.position_range)
            if not self.rounded:
                return causal_conv(x, self.kernel())
        return integer_sum(x, self.effective_weight(), self.rounded_delays())

    # -- checks ------------------------------------------------------------------------------
    def _check_delays(self, d: torch.Tensor, name: str) -> torch.Tensor:
        if d.shape != (self.n_out, self.n_in):
            raise NeurosimError(f"{name}: delays must have shape ({self.n_out}, {self.n_in}), got {tuple(d.shape)}")
        if d.is_floating_point() and not bool((torch.isfinite(d) & (d == d.round())).all()):
            raise NeurosimError(f"{name}: fixed delays must be whole numbers of steps")
        if d.is_complex() or d.dtype == torch.bool or (d.numel() and (d.min() < 0 or d.max() >= self.max_delay)):
            raise NeurosimError(f"{name}: delays must be integers in [0, {self.max_delay - 1}] for "
                                f"max_delay={self.max_delay}")
        return d.long().clone()

    def _save_to_state_dict(self, destination, prefix, keep_vars):
        if self.positions is not None:  # an optimiser step may have left them out of range
            with torch.no_grad():
                self.positions.clamp_(*self.position_range)
        super()._save_to_state_dict(destination, prefix, keep_vars)

    def get_extra_state(self) -> dict:
        """Saved with the parameters, so a state dict tells its delays' range."""
        return {"max_delay": self.max_delay}

    def set_extra_state(self, state: dict) -> None:
        """Checked in :meth:`_load_from_state_dict`."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        name = f"projection {prefix[:-1]!r}" if prefix else f"Delayed({self.n_in} -> {self.n_out})"
        extra = state_dict.get(prefix + "_extra_state")
        if extra is not None and (not isinstance(extra, dict) or extra.get("max_delay") != self.max_delay):
            found = extra.get("max_delay") if isinstance(extra, dict) else extra
            raise NeurosimError(f"{name}: the state was saved with max_delay={found!r}, this projection has "
                                f"max_delay={self.max_delay}")
        p = state_dict.get(prefix + "positions")
        if p is not None and self.positions is not None and p.shape == self.positions.shape:
            lo, hi = self.position_range
            if not bool(torch.isfinite(p).all()) or p.min() < lo or p.max() > hi:
                raise NeurosimError(f"{name}: positions must lie in [{lo}, {hi}] for max_delay={self.max_delay}, "
                                    f"got values in [{p.min().item():g}, {p.max().item():g}]")
        d = state_dict.get(prefix + "fixed_delays")
        if d is not None and self.fixed_delays is not None:
            self._check_delays(d, name)
        s = state_dict.get(prefix + "width")
        if s is not None and (s.numel() != 1 or not math.isfinite(float(s)) or float(s) < 0):
            raise NeurosimError(f"{name}: sigma (width) must be a finite number >= 0")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        kind = "learnable" if self.positions is not None else "fixed"
        return (f"{self.n_in} -> {self.n_out}, max_delay={self.max_delay}, delays={kind}, "
                f"sigma={self.sigma:g}, rounded={self.rounded}")
