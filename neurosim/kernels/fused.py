r"""Fused sequence functions for the gradient path: a neuron recurrence over all ``T`` steps in one call.

A step-by-step loop of torch operations spends most of its time dispatching small operations and
recording them for autograd, forward and backward. Here the whole recurrence and its
backpropagation through time run inside one :class:`torch.autograd.Function`: each step is a
handful of numpy operations in place on whole ``[B, n]`` arrays, which stay in cache from one
operation to the next (no graph, no dispatch, no temporary arrays). The forward pass uses the
arithmetic of the torch step functions in the same order, with the same constants, so spikes and
membranes agree with the step-by-step path to the last bit (``u > v_th`` is ``u - v_th > 0`` in IEEE
arithmetic); the gradients agree to rounding. Nothing is compiled: training loads no numba.

LIF without synapses or refractory period (:mod:`neurosim.neurons.lif`), per step ``t``, with
:math:`u_t` the membrane before the reset and :math:`v_t` after it:

.. math::

    u_t &= v_L + (v_{t-1} - v_L)\,\beta + a\,x_t \qquad
           (a = 1 \text{ for jump input}, \; a = 1 - \beta \text{ for current input}) \\
    z_t &= H(u_t - v_{th}) \\
    v_t &= u_t - z_t\,(v_{th} - v_{reset}) \quad \text{(subtract)}, \qquad
    v_t = u_t\,(1 - z_t) + z_t\,v_{reset} \quad \text{(zero)}

Backward, with :math:`\sigma'` the surrogate derivative, :math:`g_{z_t}` and :math:`g_{v_t}` the
gradients arriving at the outputs (:math:`g_{v_t} = 0` for :math:`t < T - 1` when only the final
membrane is an output) and :math:`\bar g` the totals carried back through time
(:math:`\bar g_{v_{T-1}} = g_{v_{T-1}}`):

.. math::

    \bar g_{z_t} &= g_{z_t} + \bar g_{v_t}\,\partial v_t / \partial z_t
        \qquad (\partial v_t/\partial z_t = -(v_{th} - v_{reset}) \text{ or } v_{reset} - u_t;
        \text{ the term is dropped with } \texttt{detach\_reset}) \\
    \bar g_{u_t} &= \bar g_{v_t}\,\partial v_t / \partial u_t + \bar g_{z_t}\,\sigma'(u_t - v_{th})
        \qquad (\partial v_t/\partial u_t = 1 \text{ or } 1 - z_t) \\
    g_{x_t} &= a\,\bar g_{u_t}, \qquad
    \bar g_{v_{t-1}} = g_{v_{t-1}} + \beta\,\bar g_{u_t}, \qquad g_{v_{-1}} = \beta\,\bar g_{u_0}

Leaky integrator (:mod:`neurosim.neurons.readout`), the same without spikes:
:math:`v_t = v_L + (v_{t-1} - v_L)\beta + a x_t`, backward
:math:`\bar g_{v_t} = g_{v_t} + \beta \bar g_{v_{t+1}}`, :math:`g_{x_t} = a \bar g_{v_t}`,
:math:`g_{v_{-1}} = \beta \bar g_{v_0}`.

Every parameter is a per-neuron vector here (a shared value is repeated), rounded to the
population's dtype as torch rounds a scalar operand, and expanded to ``[B, n]`` (numpy operations on
equal shapes are several times faster than broadcast ones at this size). The LIF forward pass also
checks that the input is finite. They are the ``sequence`` fast paths of LIF and LI in
:mod:`neurosim.kernels.registry`.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..errors import check_finite
from ..neurons.lif import LIF, LIFState, decay, refractory_steps
from ..neurons.readout import LI, LIState
from ..neurons.surrogate import Surrogate
from .registry import register

SURROGATES = {"fast_sigmoid": 0, "atan": 1, "triangle": 2, "straight_through": 3}


def _surrogate_derivative(d, kind, one, scale, half_scale, pi_half_scale):
    """dS/dx for surrogate ``kind`` (see :data:`SURROGATES` and :mod:`neurosim.neurons.surrogate`) at
    every entry of the array ``d``, in place; the constants are of ``d``'s type, so that float32 stays float32."""
    if kind == 0:  # 1 / (scale |d| + 1)^2
        np.abs(d, out=d)
        d *= scale
        d += one
        d *= d
        return np.divide(one, d, out=d)
    if kind == 1:  # (scale / 2) / (1 + (pi scale d / 2)^2)
        d *= pi_half_scale
        d *= d
        d += one
        return np.divide(half_scale, d, out=d)
    if kind == 2:  # max(1 - |d| / scale, 0) / scale
        np.abs(d, out=d)
        d /= scale
        np.subtract(one, d, out=d)
        np.maximum(d, one - one, out=d)
        d /= scale
        return d
    d.fill(one)
    return d


def _rows(p: np.ndarray, shape: tuple) -> np.ndarray:
    """A per-neuron vector repeated over the batch, ``shape`` ``[B, n]``, contiguous."""
    return np.ascontiguousarray(np.broadcast_to(p, shape))


def _lif_forward(x, v0, v_leak, beta, gain, v_th, reset_value, subtract, z, u, v):
    """LIF over ``x [T, B, n]`` from ``v0 [B, n]``: writes spikes ``z`` and membranes before the
    reset ``u`` (``[T, B, n]``), and after it ``v``: all steps (``[T, B, n]``) or the last two
    alternately (``[2, B, n]``; step ``t`` in ``v[t % 2]``). ``reset_value`` is ``v_th - v_reset``
    (subtract) or ``v_reset``. Returns True if ``x`` may hold NaN or infinity: they would reach the
    last membrane (NaN stays NaN, an infinity stays infinite or becomes NaN)."""
    steps, slots, shape = x.shape[0], v.shape[0], x.shape[1:]
    v_leak, beta, gain, v_th, reset_value = (_rows(p, shape) for p in (v_leak, beta, gain, v_th, reset_value))
    one = x.dtype.type(1)
    d, spike = np.empty(shape, x.dtype), np.empty(shape, bool)
    for t in range(steps):
        prev, ut, zt, vt = v0 if t == 0 else v[(t - 1) % slots], u[t], z[t], v[t % slots]
        np.subtract(prev, v_leak, out=d)
        d *= beta
        d += v_leak
        np.multiply(x[t], gain, out=ut)
        ut += d  # v_leak + (v - v_leak) beta + a x
        np.greater(ut, v_th, out=spike)
        np.copyto(zt, spike)
        if subtract:  # u - z (v_th - v_reset)
            np.multiply(zt, reset_value, out=d)
            np.subtract(ut, d, out=vt)
        else:  # u (1 - z) + z v_reset
            np.subtract(one, zt, out=d)
            np.multiply(ut, d, out=vt)
            np.multiply(zt, reset_value, out=d)
            vt += d
    return not np.isfinite(v[(steps - 1) % slots]).all()


def _lif_backward(gz, gv, u, beta, gain, v_th, reset_value, subtract, detach, kind, one, scale, half_scale,
                  pi_half_scale, gx, gv0):
    """BPTT of :func:`_lif_forward` (see the module docstring): from the gradients ``gz [T, B, n]``
    and ``gv`` (all membranes ``[T, B, n]``, or the last one ``[1, B, n]``), writes ``gx`` and ``gv0``."""
    steps, shape = u.shape[0], u.shape[1:]
    full = gv.shape[0] == steps
    beta, gain, v_th, reset_value = (_rows(p, shape) for p in (beta, gain, v_th, reset_value))
    g, d, tmp, keep = (np.empty(shape, u.dtype) for _ in range(4))
    below = np.empty(shape, bool)
    carry = gv0
    carry[...] = 0 if full else gv[0]
    for t in range(steps - 1, -1, -1):
        if full:
            np.add(carry, gv[t], out=g)
        else:
            np.copyto(g, carry)
        np.subtract(u[t], v_th, out=d)
        if not subtract:
            np.less_equal(d, 0, out=below)
            np.copyto(keep, below)  # dv/du of the zero reset: 1 - z
        if not detach:  # gz + g dv/dz: dv/dz = -(v_th - v_reset), or v_reset - u
            if subtract:
                np.multiply(g, reset_value, out=tmp)
                np.subtract(gz[t], tmp, out=tmp)
            else:
                np.subtract(reset_value, u[t], out=tmp)
                tmp *= g
                np.add(gz[t], tmp, out=tmp)
        slope = _surrogate_derivative(d, kind, one, scale, half_scale, pi_half_scale)
        slope *= gz[t] if detach else tmp
        if not subtract:
            g *= keep
        gu = gx[t]
        np.add(g, slope, out=gu)
        np.multiply(gu, beta, out=carry)
        gu *= gain


def _li_forward(x, v0, v_leak, beta, gain, v):
    """Leaky integrator over ``x [T, B, n]`` from ``v0 [B, n]``; writes the membranes ``v``."""
    shape = x.shape[1:]
    v_leak, beta, gain = (_rows(p, shape) for p in (v_leak, beta, gain))
    d = np.empty(shape, x.dtype)
    for t in range(x.shape[0]):
        np.subtract(v0 if t == 0 else v[t - 1], v_leak, out=d)
        d *= beta
        d += v_leak
        np.multiply(x[t], gain, out=v[t])
        v[t] += d


def _li_backward(gv, beta, gain, gx, gv0):
    """BPTT of :func:`_li_forward`: writes ``gx`` and ``gv0`` from ``gv [T, B, n]``."""
    beta, gain = (_rows(p, gv.shape[1:]) for p in (beta, gain))
    carry = gv0
    carry[...] = 0
    for t in range(gv.shape[0] - 1, -1, -1):
        g = gx[t]
        np.add(gv[t], carry, out=g)
        np.multiply(g, beta, out=carry)
        g *= gain


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().contiguous().numpy()


def _vector(value, n: int, dtype: torch.dtype) -> torch.Tensor:
    """A parameter as ``n`` values of ``dtype``; a Python number rounds as torch rounds a scalar operand."""
    return torch.as_tensor(value, dtype=dtype).expand(n).contiguous()


def _decay_and_gain(p, dt: float) -> tuple:
    """``beta = exp(-dt / tau_mem)`` and the input gain ``a``, by the expressions of the step functions."""
    beta = decay(dt, p.tau_mem)
    return beta, (1.0 if p.input_mode == "jump" else 1 - beta)


def _plain_params(p, names) -> bool:
    """True when every tensor among the parameters ``names`` is a constant scalar or vector."""
    for name in names:
        value = getattr(p, name)
        if isinstance(value, torch.Tensor) and (value.requires_grad or value.dim() > 1):
            return False
    return True


def _shapes_fit(xs: torch.Tensor, v0: torch.Tensor) -> bool:
    """At least one step, CPU tensors, and a state ``v0`` of shape ``[B, n]`` for ``xs [T, B, n]``."""
    return (xs.dim() == 3 and xs.shape[0] > 0 and v0.shape == xs.shape[1:]
            and xs.device.type == "cpu" and v0.device.type == "cpu")


def lif_supported(p, dt: float, spike_fn, xs: torch.Tensor, v0: torch.Tensor) -> bool:
    """True when :func:`lif_sequence` computes what the step-by-step loop of ``lif_step`` would:
    the exact method, no synaptic currents, no refractory steps, a built-in surrogate, constant
    scalar or per-neuron parameters, CPU tensors, at least one step."""
    return (p.method == "exact" and p.tau_syn_exc is None and not isinstance(p.tau_ref, torch.Tensor)
            and refractory_steps(p.tau_ref, dt) == 0
            and type(spike_fn) is Surrogate and spike_fn.name in SURROGATES
            and _plain_params(p, ("tau_mem", "v_leak", "v_th", "v_reset"))
            and _shapes_fit(xs, v0))


def li_supported(p, xs: torch.Tensor, v0: torch.Tensor) -> bool:
    """True when :func:`li_sequence` applies: constant parameters, CPU tensors, at least one step."""
    return _plain_params(p, ("tau_mem", "v_leak")) and _shapes_fit(xs, v0)


class _LIFSequence(torch.autograd.Function):
    """LIF over a sequence and its BPTT (module docstring); ``coeffs`` stacks ``v_leak``, ``beta``,
    the input gain, ``v_th`` and the reset value, one row of ``n`` each."""

    @staticmethod
    def forward(ctx, xs, v0, coeffs, subtract, detach, kind, scale, membranes, name):
        z, u = xs.new_empty(xs.shape), xs.new_empty(xs.shape)
        v = xs.new_empty((xs.shape[0] if membranes else 2,) + xs.shape[1:])
        v_leak, beta, gain, v_th, reset_value = _np(coeffs)
        if _lif_forward(_np(xs), _np(v0), v_leak, beta, gain, v_th, reset_value, subtract,
                        z.numpy(), u.numpy(), v.numpy()):
            check_finite(name, xs)
        ctx.save_for_backward(u, coeffs)
        ctx.config = (subtract, detach, kind, scale)
        return z, v if membranes else v[(xs.shape[0] - 1) % 2]

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gz, gv):
        u, coeffs = ctx.saved_tensors
        subtract, detach, kind, scale = ctx.config
        _, beta, gain, v_th, reset_value = _np(coeffs)
        gx = torch.empty_like(u)
        gv0 = torch.empty_like(u[0])
        dtype = beta.dtype.type
        _lif_backward(_np(gz), _np(gv.reshape((-1,) + u.shape[1:])), u.numpy(), beta, gain, v_th, reset_value,
                      subtract, detach, kind, dtype(1), dtype(scale), dtype(scale / 2), dtype(math.pi / 2 * scale),
                      gx.numpy(), gv0.numpy())
        return gx, gv0, None, None, None, None, None, None, None


class _LISequence(torch.autograd.Function):
    """Leaky integrator over a sequence and its BPTT; ``coeffs`` stacks ``v_leak``, ``beta`` and the input gain."""

    @staticmethod
    def forward(ctx, xs, v0, coeffs):
        v = xs.new_empty(xs.shape)
        v_leak, beta, gain = _np(coeffs)
        _li_forward(_np(xs), _np(v0), v_leak, beta, gain, v.numpy())
        ctx.save_for_backward(coeffs)
        return v

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gv):
        (coeffs,) = ctx.saved_tensors
        _, beta, gain = _np(coeffs)
        gx = torch.empty_like(gv)
        gv0 = torch.empty_like(gv[0])
        _li_backward(_np(gv), beta, gain, gx.numpy(), gv0.numpy())
        return gx, gv0, None


def lif_sequence(xs: torch.Tensor, v0: torch.Tensor, p, dt: float, spike_fn: Surrogate, membranes: bool = False,
                 name: str = "input"):
    """LIF (parameters ``p``, see :func:`lif_supported`) over ``xs [T, B, n]`` from membranes
    ``v0 [B, n]``; returns the spikes ``[T, B, n]`` and the membranes after the reset: all steps
    (``[T, B, n]``) if ``membranes``, else the last one (``[B, n]``).

    Differentiable with respect to ``xs`` and ``v0`` (surrogate ``spike_fn`` for the spikes).
    Raises :class:`~neurosim.errors.NeurosimError`, naming the input ``name``, if ``xs`` is not finite.
    """
    n, dtype = xs.shape[-1], xs.dtype
    beta, gain = _decay_and_gain(p, dt)
    reset_value = p.v_th - p.v_reset if p.reset == "subtract" else p.v_reset
    coeffs = torch.stack([_vector(c, n, dtype) for c in (p.v_leak, beta, gain, p.v_th, reset_value)])
    return _LIFSequence.apply(xs, v0.to(dtype), coeffs, p.reset == "subtract", p.detach_reset,
                              SURROGATES[spike_fn.name], spike_fn.scale, membranes, name)


def li_sequence(xs: torch.Tensor, v0: torch.Tensor, p, dt: float) -> torch.Tensor:
    """Leaky integrator (parameters ``p``) over ``xs [T, B, n]`` from ``v0 [B, n]``; returns the
    membranes ``[T, B, n]``, differentiable with respect to ``xs`` and ``v0``."""
    n, dtype = xs.shape[-1], xs.dtype
    beta, gain = _decay_and_gain(p, dt)
    coeffs = torch.stack([_vector(c, n, dtype) for c in (p.v_leak, beta, gain)])
    return _LISequence.apply(xs, v0.to(dtype), coeffs)


def lif_forward(pop: LIF, xs: torch.Tensor, state: LIFState | None):
    """:meth:`LIF.forward <neurosim.neurons.base.Population.forward>` by :func:`lif_sequence`, or
    None where :func:`lif_supported` says no (synaptic currents, refractory steps, ...)."""
    if not isinstance(xs, torch.Tensor) or xs.dim() != 3 or xs.shape[-1] != pop.n:
        return None  # the step loop reports the bad input
    xs = xs.to(pop.dtype)
    if state is None:
        state = pop.initial_state(xs.shape[1], xs.device)
    p = pop.params
    if not lif_supported(p, pop.dt, pop.spike_fn, xs, state.v):
        return None
    zs, v = lif_sequence(xs, state.v, p, pop.dt, pop.spike_fn, name=f"input to {type(pop).__name__}({pop.n})")
    return zs, LIFState(v, state.i_exc, state.i_inh, state.refrac)


def li_forward(pop: LI, xs: torch.Tensor, state: LIState | None):
    """:meth:`LI.forward <neurosim.neurons.base.Population.forward>` by :func:`li_sequence`, or None
    where :func:`li_supported` says no."""
    pop.check_input(xs, ndim=3)
    xs = xs.to(pop.dtype)
    if state is None:
        state = pop.initial_state(xs.shape[1], xs.device)
    p = pop.params
    if not li_supported(p, xs, state.v):
        return None
    vs = li_sequence(xs, state.v, p, pop.dt)
    return vs, LIState(vs[-1])


register("sequence", LIF, lif_forward)
register("sequence", LI, li_forward)
