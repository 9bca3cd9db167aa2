"""Compiled simulation loops for the no-gradient path.

A single spiking population (:class:`~neurosim.neurons.LIF` or
:class:`~neurosim.neurons.Izhikevich`) with its recurrent :class:`~neurosim.projections.Sparse`
and :class:`~neurosim.projections.Dense` projections runs its whole time loop in one numba
kernel. Each step, for each sample:

1. the spikes of the previous step are propagated event-driven: for every neuron that spiked,
   its outgoing weights (CSR over presynaptic neurons, int32 targets; a Dense projection is a CSR
   holding every entry) are added to that projection's input row;
2. the external drive and the projection rows of each synaptic channel are summed in the order
   of :meth:`Network._run_loop <neurosim.network.Network._run_loop>` (drive first, then the
   projections in connection order, each row summed over presynaptic neurons in ascending order);
3. one fused loop over the neurons applies the model's step with the arithmetic of its torch step
   function in the same order, with the same constants (computed by the same Python code), so
   results agree with the torch path to the last bit (Dense rows are summed in another order
   than torch's reduction, so they agree to rounding);
4. the neurons that spiked are listed, recorded as events if asked, and probes copy state rows;
   event probes get these events as they are, dense spike probes a tensor built from them.

Kernels are specialised by numba on argument types: an optional feature passed as ``None``
(synaptic currents, refractoriness, a drive, a probe) is removed at compile time, and a
parameter is a scalar shared by all neurons or a per-neuron array. Compiled code is cached on
disk (``cache=True``), so only the first run of a configuration ever pays for compilation.

These are the ``loop`` fast paths of LIF and Izhikevich and the ``synapses`` layouts of Sparse and
Dense in :mod:`neurosim.kernels.registry`; another model plugs in by registering its own.
"""
from __future__ import annotations

import math
import weakref
from typing import Callable, NamedTuple

import numpy as np
import torch
from numba import njit
from numba.core import types
from numba.extending import overload

from ..progress import progress_bar
from ..events import SpikeEvents
from ..neurons.izhikevich import Izhikevich
from ..neurons.lif import LIF, decay, refractory_steps, synaptic_gain
from ..projections.dense import Dense
from ..projections.sparse import Sparse
from .registry import lookup, register


def _at(p, i):
    """``p[i]`` for a per-neuron array, ``p`` for a value shared by all neurons."""
    return p[i] if isinstance(p, np.ndarray) else p


@overload(_at, inline="always")
def _at_impl(p, i):
    if isinstance(p, types.Array):
        return lambda p, i: p[i]
    return lambda p, i: p


@njit(cache=True)
def _propagate(rec, indptr, post, w, spk, count):
    """Adds to ``rec[k]`` the outgoing weights in projection ``k`` (CSR ``indptr[k], post[k], w[k]``)
    of the ``count`` neurons listed in ``spk``."""
    for k in range(rec.shape[0]):
        row, ptr, targets, weights = rec[k], indptr[k], post[k], w[k]
        for s in range(count):
            j = spk[s]
            for q in range(ptr[j], ptr[j + 1]):
                row[targets[q]] += weights[q]


@njit(cache=True)
def _fold(drive, t, b, rows, rec, dst):
    """``dst = drive[t, b] + rec[rows[0]] + rec[rows[1]] + ...`` summed left to right; clears those rows.

    ``drive`` is ``[T or 1, B or 1, n]`` (broadcast over time / samples), or ``None`` (then at
    least two rows).
    """
    n = dst.size
    if drive is None:
        first = rec[rows[0]]
        for i in range(n):
            dst[i] = first[i]
            first[i] = 0
        for r in rows[1:]:
            row = rec[r]
            for i in range(n):
                dst[i] = dst[i] + row[i]
                row[i] = 0
    else:
        src = drive[t if drive.shape[0] > 1 else 0, b if drive.shape[1] > 1 else 0]
        for i in range(n):
            dst[i] = src[i]
        for r in rows:
            row = rec[r]
            for i in range(n):
                dst[i] = dst[i] + row[i]
                row[i] = 0


@njit(cache=True)
def _spiked(zb, zw, out):
    """Writes to ``out`` the indices ``i`` with ``zb[i] != 0`` in ascending order (``zw``: ``zb`` as
    64-bit words, to skip silent neurons eight at a time); returns their number."""
    c = 0
    for k in range(zw.size):
        if zw[k] != 0:
            for i in range(8 * k, 8 * k + 8):
                if zb[i]:
                    out[c] = i
                    c += 1
    return c


@njit(cache=True)
def _record(t, b, spk, count, ev_idx, ev_ptr, nb):
    """Appends the ``count`` spikes of sample ``b`` at step ``t`` to the event list."""
    e = ev_ptr[t * nb + b]
    ev_idx[e:e + count] = spk[:count]
    ev_ptr[t * nb + b + 1] = e + count


@njit(cache=True)
def _probe(out, stride, t, b, row):
    """Copies ``row`` into ``out[t // stride, b]`` when ``t`` is a multiple of ``stride``."""
    if t % stride == 0:
        out[t // stride, b] = row


@njit(cache=True)
def _lif_kernel(t0, t1, v, i_exc, i_inh, refrac,
                v_leak, beta, one_minus_beta, kappa_exc, kappa_inh, decay_exc, decay_inh, v_th, n_ref,
                subtract, v_after,
                exc, fold_exc, src_exc, inh, fold_inh, src_inh, rec, indptr, post, w,
                spk, count, zb, zw, ev_idx, ev_ptr,
                out_v, stride_v, out_i_exc, stride_i_exc, out_i_inh, stride_i_inh, out_refrac, stride_refrac):
    """LIF steps ``t0 <= t < t1`` (see :mod:`neurosim.neurons.lif`), state ``[B, n]`` updated in place.

    Membrane: ``v_leak + (v - v_leak) beta + x`` (jump input), ``+ one_minus_beta x`` (current
    input) or, with synapses, ``+ i_exc kappa_exc (+ i_inh kappa_inh)`` after the input was
    added to the currents, which then decay by ``decay_exc`` / ``decay_inh``. With ``n_ref`` a
    spike holds the membrane ``n_ref - 1`` steps. Spike ``v - v_th > 0``; reset ``v - v_after``
    with ``subtract`` (``v_after = v_th - v_reset``), else ``v = v_after`` (``v_reset``).
    Returns the step reached: ``t1``, or earlier when the event buffer ``ev_idx`` could overflow
    during the next step.
    """
    nb, n = v.shape
    for t in range(t0, t1):
        if ev_idx is not None:
            if ev_ptr[t * nb] + nb * n > ev_idx.size:
                return t
        for b in range(nb):
            _propagate(rec, indptr, post, w, spk[b], count[b])
            if fold_exc is not None:
                _fold(exc, t, b, fold_exc, rec, src_exc)
            if fold_inh is not None:
                _fold(inh, t, b, fold_inh, rec, src_inh)
            vb, rb = v[b], refrac[b]
            ieb, iib = i_exc[b], i_inh[b]
            for i in range(n):
                x = src_exc[i]
                src_exc[i] = 0
                vo = vb[i]
                vl = _at(v_leak, i)
                if kappa_exc is None:
                    if one_minus_beta is None:
                        vn = vl + (vo - vl) * _at(beta, i) + x
                    else:
                        vn = vl + (vo - vl) * _at(beta, i) + _at(one_minus_beta, i) * x
                else:
                    ie = ieb[i] + x
                    if kappa_inh is None:
                        syn = ie * _at(kappa_exc, i)
                    else:
                        ii = iib[i] + src_inh[i]
                        src_inh[i] = 0
                        syn = ie * _at(kappa_exc, i) + ii * _at(kappa_inh, i)
                        iib[i] = ii * decay_inh
                    vn = vl + (vo - vl) * _at(beta, i) + syn
                    ieb[i] = ie * decay_exc
                if n_ref is None:
                    s = vn - _at(v_th, i) > 0
                else:
                    r = max(rb[i] - 1, 0)
                    active = r == 0
                    vn = vn if active else vo
                    s = (vn - _at(v_th, i) > 0) & active
                    rb[i] = n_ref if s else r
                if subtract is None:
                    vb[i] = _at(v_after, i) if s else vn
                else:
                    vb[i] = vn - _at(v_after, i) if s else vn
                zb[i] = s
            count[b] = _spiked(zb, zw, spk[b])
            if ev_idx is not None:
                _record(t, b, spk[b], count[b], ev_idx, ev_ptr, nb)
            if out_v is not None:
                _probe(out_v, stride_v, t, b, vb)
            if out_i_exc is not None:
                _probe(out_i_exc, stride_i_exc, t, b, ieb)
            if out_i_inh is not None:
                _probe(out_i_inh, stride_i_inh, t, b, iib)
            if out_refrac is not None:
                _probe(out_refrac, stride_refrac, t, b, rb)
    return t1


@njit(cache=True)
def _izhikevich_kernel(t0, t1, v, u, h, k_sq, k_lin, k_const, dt_a, b_, c, d, v_peak,
                       exc, fold_exc, src_exc, rec, indptr, post, w,
                       spk, count, zb, zw, ev_idx, ev_ptr,
                       out_v, stride_v, out_u, stride_u):
    """Izhikevich steps ``t0 <= t < t1`` (see :mod:`neurosim.neurons.izhikevich`), state updated in place.

    Two half steps ``v += h (k_sq v v + k_lin v + k_const - u + x)``, then
    ``u += dt_a (b v - u)``; a spike ``v - v_peak > 0`` sets ``v = c`` and ``u += d``.
    Returns the step reached, as :func:`_lif_kernel`.
    """
    nb, n = v.shape
    for t in range(t0, t1):
        if ev_idx is not None:
            if ev_ptr[t * nb] + nb * n > ev_idx.size:
                return t
        for b in range(nb):
            _propagate(rec, indptr, post, w, spk[b], count[b])
            if fold_exc is not None:
                _fold(exc, t, b, fold_exc, rec, src_exc)
            vb, ub = v[b], u[b]
            for i in range(n):
                x = src_exc[i]
                src_exc[i] = 0
                vo = vb[i]
                uo = ub[i]
                vv = vo + h * (k_sq * vo * vo + k_lin * vo + k_const - uo + x)
                vv = vv + h * (k_sq * vv * vv + k_lin * vv + k_const - uo + x)
                uu = uo + _at(dt_a, i) * (_at(b_, i) * vv - uo)
                s = vv - _at(v_peak, i) > 0
                vb[i] = _at(c, i) if s else vv
                ub[i] = uu + _at(d, i) if s else uu
                zb[i] = s
            count[b] = _spiked(zb, zw, spk[b])
            if ev_idx is not None:
                _record(t, b, spk[b], count[b], ev_idx, ev_ptr, nb)
            if out_v is not None:
                _probe(out_v, stride_v, t, b, vb)
            if out_u is not None:
                _probe(out_u, stride_u, t, b, ub)
    return t1


_DTYPES = {torch.float32: np.float32, torch.float64: np.float64}


class _Unsupported(Exception):
    """The configuration has no compiled kernel; the torch path runs it."""


def _cpu(x: torch.Tensor) -> torch.Tensor:
    if x.device.type != "cpu":
        raise _Unsupported
    return x.detach()


def _param(value, n: int, dtype):
    """A parameter as the kernels take it: a scalar of ``dtype`` or an array of ``n`` values.

    A Python number is rounded to ``dtype`` as torch rounds a scalar operand; a tensor already
    holds the values the torch step uses.
    """
    if not isinstance(value, torch.Tensor):
        return dtype(value)
    value = _cpu(value)
    if value.numel() == 1:
        return dtype(value.item())
    if value.numel() != n or value.shape[-1] != n:
        raise _Unsupported
    value = value.reshape(n).numpy()
    if value.dtype != dtype:
        raise _Unsupported
    return np.ascontiguousarray(value)


def _lif(pop: LIF, dtype) -> tuple:
    """Parameter arguments of :func:`_lif_kernel`, computed by the expressions of :func:`lif_step`."""
    p, dt, n = pop.params, pop.dt, pop.n
    beta = decay(dt, p.tau_mem)
    syn, split = p.tau_syn_exc is not None, p.tau_syn_inh is not None
    return (
        _param(p.v_leak, n, dtype),
        _param(beta, n, dtype),
        _param(1 - beta, n, dtype) if not syn and p.input_mode == "current" else None,
        _param(synaptic_gain(dt, p.tau_mem, p.tau_syn_exc), n, dtype) if syn else None,
        _param(synaptic_gain(dt, p.tau_mem, p.tau_syn_inh), n, dtype) if split else None,
        dtype(math.exp(-dt / p.tau_syn_exc)) if syn else None,
        dtype(math.exp(-dt / p.tau_syn_inh)) if split else None,
        _param(p.v_th, n, dtype),
        refractory_steps(p.tau_ref, dt) or None,
        True if p.reset == "subtract" else None,
        _param(p.v_th - p.v_reset if p.reset == "subtract" else p.v_reset, n, dtype),
    )


def _izhikevich(pop: Izhikevich, dtype) -> tuple:
    """Parameter arguments of :func:`_izhikevich_kernel`, computed by the expressions of :func:`izhikevich_step`."""
    p, dt, n = pop.params, pop.dt, pop.n
    return (dtype(0.5 * dt), dtype(0.04), dtype(5.0), dtype(140.0), _param(dt * p.a, n, dtype),
            _param(p.b, n, dtype), _param(p.c, n, dtype), _param(p.d, n, dtype), _param(p.v_peak, n, dtype))


def _key(*tensors) -> tuple:
    """What identifies the contents of ``tensors``: storage address, in-place version, dtype, shape."""
    return tuple(None if t is None else (t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for t in tensors)


_packed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _csr(proj, dtype, index_sources, weight_sources, index, weight):
    """CSR arrays ``(indptr int64, post int32, weight)`` of ``proj`` from ``index()`` and
    ``weight()``, kept per projection until the tensors they come from change, so that runs in
    chunks do not convert large connectivities again and again. The cache holds the source
    tensors, so that their storage addresses, part of the key, cannot be reused meanwhile."""
    cached = _packed.setdefault(proj, {})
    index_key = (proj.n_in, proj.n_out, _key(*index_sources))
    if cached.get("index_key") != index_key:
        cached["index"] = index()
        cached["index_key"], cached["index_sources"] = index_key, [t.detach() for t in index_sources]
    weight_key = _key(*weight_sources)
    if cached.get("weight_key") != weight_key:
        cached["weight"] = np.ascontiguousarray(weight(_cpu(proj.effective_weight())).numpy())
        cached["weight_key"] = weight_key
        cached["weight_sources"] = [t.detach() for t in weight_sources if t is not None]
    if cached["weight"].dtype != dtype:
        return None
    return (*cached["index"], cached["weight"])


def sparse_synapses(proj: Sparse, dtype):
    """A Sparse projection's own CSR, with its effective weights (Dale's signs applied)."""
    def index():
        return _cpu(proj.indptr).numpy(), _cpu(proj.post).numpy().astype(np.int32)

    return _csr(proj, dtype, (proj.indptr, proj.post), (proj.weight, proj.signs, proj.pre), index, lambda w: w)


def dense_synapses(proj: Dense, dtype):
    """A Dense projection without bias as a CSR holding every entry (signs and mask applied)."""
    if proj.bias is not None:
        return None

    def index():
        return (np.arange(proj.n_in + 1, dtype=np.int64) * proj.n_out,
                np.tile(np.arange(proj.n_out, dtype=np.int32), proj.n_in))

    return _csr(proj, dtype, (), (proj.weight, proj.signs, proj.mask), index, lambda w: w.t().reshape(-1))


def _synapses(proj, dtype):
    fn = lookup("synapses", proj)
    arrays = None if fn is None else fn(proj, dtype)
    if arrays is None:
        raise _Unsupported
    return arrays


def _drive_array(x: torch.Tensor | None, batch: int, n: int, pop_dtype: torch.dtype):
    """A drive ``[T, B, n]`` as ``[T or 1, B or 1, n]`` (broadcast dimensions kept once), or
    ``None`` when it is all zeros and broadcast over time and samples."""
    if x is None:
        return None
    x = _cpu(x)
    if x.dim() != 3 or x.shape[1] not in (1, batch) or x.shape[2] != n:
        raise _Unsupported
    if x.dtype != pop_dtype and not (x.dtype == torch.float32 and pop_dtype == torch.float64):
        raise _Unsupported
    if x.stride(0) == 0:
        x = x[:1]
    if x.stride(1) == 0:
        x = x[:, :1]
    if x.shape[:2] == (1, 1) and not bool(x.any()):
        return None
    return x.to(pop_dtype).contiguous().numpy()


def _channel(drive, rows: list[int], rec: np.ndarray, n: int, dtype) -> tuple:
    """``(fold rows or None, source row)`` of a synaptic channel: a lone projection is read in place,
    anything else is summed by :func:`_fold` into a row of its own each step."""
    if drive is None and len(rows) == 1:
        return None, rec[rows[0]]
    if drive is None and not rows:
        return None, np.zeros(n, dtype)
    return np.asarray(rows, dtype=np.int64), np.zeros(n, dtype)


def _events_to_dense(ev_idx, ev_ptr, steps: int, batch: int, n: int, dtype: torch.dtype,
                     stride: int = 1) -> torch.Tensor:
    """Spike events (step-major, then sample) as ``[ceil(steps / stride), B, n]`` for steps ``0, stride, ...``."""
    t, b, i = SpikeEvents.from_csr(ev_idx, ev_ptr, steps, batch, stride)
    out = torch.zeros(-(-steps // stride), batch, n, dtype=dtype)
    out.numpy()[t.numpy() // stride, b.numpy(), i.numpy()] = 1
    return out


class LoopKernel(NamedTuple):
    """A model's compiled loop: the numba ``kernel``, the state ``fields`` it updates in place, the
    function giving its parameter arguments, and whether it takes an inhibitory channel."""

    kernel: Callable
    fields: tuple
    params: Callable
    inh_channel: bool


def try_run_compiled(spec: LoopKernel, population, projections, drive, state, probes, keep_output, progress):
    """Run ``population`` with its recurrent ``projections`` over all steps of ``drive`` (``(exc
    [T, B, n], inh [T, B, n] or None)``) in the compiled loop ``spec``, as :meth:`Network._run_loop` would.

    ``state`` is ``(population state, last spikes [B, n])``; recurrent input at step ``t`` comes
    from the spikes of step ``t - 1``. Appends to each probe's ``chunks`` one tensor
    ``[ceil(T / stride), B, n]``, or :class:`SpikeEvents` for an event probe. Returns ``((state,
    last spikes), spikes [T, B, n] if keep_output else None)``, or ``None`` when the
    configuration is not supported.
    """
    kernel, fields, param_args = spec.kernel, spec.fields, spec.params
    split = spec.inh_channel and population.has_inh_channel
    try:
        dtype, n = _DTYPES[population.dtype], population.n
        st, z0 = state
        z0 = _cpu(z0)
        if z0.dim() != 2 or z0.shape[1] != n:
            raise _Unsupported
        batch = z0.shape[0]
        arrays = []
        for f in fields:
            x = _cpu(getattr(st, f))
            if x.shape != (batch, n) or (x.is_floating_point() and x.dtype != population.dtype):
                raise _Unsupported
            arrays.append(np.array(x.numpy(), order="C"))
        args = param_args(population, dtype)
        indptr, post, weight = zip(*(_synapses(proj, dtype) for proj in projections))
        z0 = z0.numpy()
        if any(type(p) is Dense for p in projections) and not np.isin(z0, (0, 1)).all():
            raise _Unsupported
        exc, inh = (_drive_array(x, batch, n, population.dtype) for x in drive)
        steps = drive[0].shape[0]
    except _Unsupported:
        return None

    rec = np.zeros((len(projections), n), dtype)
    inh_rows = [k for k, p in enumerate(projections) if split and p.channel == "inh"]
    exc_rows = [k for k in range(len(projections)) if k not in inh_rows]
    channels = (exc, *_channel(exc, exc_rows, rec, n, dtype))
    if split:
        channels += (inh, *_channel(inh, inh_rows, rec, n, dtype))
    elif spec.inh_channel:
        channels += (None, None, None)

    spk = np.zeros((batch, n), np.int32)
    count = np.zeros(batch, np.int64)
    for b in range(batch):
        idx = np.flatnonzero(z0[b])
        spk[b, :idx.size] = idx
        count[b] = idx.size
    zb = np.zeros(-(-n // 8) * 8, np.uint8)
    events = keep_output or any(p.variable == "spikes" for p in probes)
    ev_idx = np.empty(batch * n + steps * batch * max(1, n // 100), np.int32) if events else None
    ev_ptr = np.zeros(steps * batch + 1, np.int64)
    recordings = {}
    probe_args = ()
    for f, a in zip(fields, arrays):
        strides = [p.stride for p in probes if p.variable == f]
        if strides:
            g = math.gcd(*strides)
            recordings[f] = (g, np.empty((-(-steps // g), batch, n), a.dtype))
            probe_args += (recordings[f][1], g)
        else:
            probe_args += (None, 1)

    bar = progress_bar(total=steps, desc="simulating", unit="step") if progress else None
    chunk = max(1, steps // 100) if progress else steps
    t = 0
    while t < steps:
        stop = min(steps, t + chunk)
        reached = kernel(t, stop, *arrays, *args, *channels, rec, indptr, post, weight,
                         spk, count, zb, zb.view(np.uint64), ev_idx, ev_ptr, *probe_args)
        if reached < stop:
            grown = np.empty(max(2 * ev_idx.size, ev_ptr[reached * batch] + batch * n), np.int32)
            grown[:ev_ptr[reached * batch]] = ev_idx[:ev_ptr[reached * batch]]
            ev_idx = grown
        if bar is not None:
            bar.update(reached - t)
        t = reached
    if bar is not None:
        bar.close()

    tdtype = population.dtype
    for p in probes:
        if p.events:
            p.chunks.append(SpikeEvents.from_csr(ev_idx, ev_ptr, steps, batch, p.stride))
        elif p.variable == "spikes":
            p.chunks.append(_events_to_dense(ev_idx, ev_ptr, steps, batch, n, tdtype, p.stride))
        else:
            g, buf = recordings[p.variable]
            p.chunks.append(torch.from_numpy(np.ascontiguousarray(buf[:: p.stride // g])))
    z = torch.zeros(batch, n, dtype=tdtype)
    for b in range(batch):
        z[b, torch.from_numpy(spk[b, :count[b]].astype(np.int64))] = 1
    new_state = type(st)(*(torch.from_numpy(a) for a in arrays))
    out = _events_to_dense(ev_idx, ev_ptr, steps, batch, n, tdtype) if keep_output else None
    return (new_state, z), out


LIF_LOOP = LoopKernel(_lif_kernel, ("v", "i_exc", "i_inh", "refrac"), _lif, True)
IZHIKEVICH_LOOP = LoopKernel(_izhikevich_kernel, ("v", "u"), _izhikevich, False)


def lif_loop(population: LIF, *args):
    """The compiled loop of LIF (:func:`try_run_compiled`)."""
    return try_run_compiled(LIF_LOOP, population, *args)


def izhikevich_loop(population: Izhikevich, *args):
    """The compiled loop of Izhikevich neurons (:func:`try_run_compiled`)."""
    return try_run_compiled(IZHIKEVICH_LOOP, population, *args)


register("loop", LIF, lif_loop)
register("loop", Izhikevich, izhikevich_loop)
register("synapses", Sparse, sparse_synapses)
register("synapses", Dense, dense_synapses)
