"""Compiled simulation loops for the no-gradient path.

A single spiking population (:class:`~neurosim.neurons.LIF` or
:class:`~neurosim.neurons.Izhikevich`) with its recurrent :class:`~neurosim.projections.Sparse`
and :class:`~neurosim.projections.Dense` projections runs its whole time loop in one numba
kernel. The neurons are cut into ranges, one per thread (:func:`ranges`); each step, for each
sample, the thread of a range:

1. propagates the spikes of the previous step event-driven into its range: for every neuron that
   spiked (in ascending order), the outgoing weights whose targets lie in the range (CSR over
   presynaptic neurons sorted by target; a Dense projection is a CSR holding every synapse of its
   mask) are added to that projection's input row. Synapse indices and targets are unsigned, so
   that numba reads them without its negative-index check;
2. runs the STDP pathways of plastic projections for those spikes, on the synapses onto its range
   (:mod:`neurosim.projections.plasticity`; the weights delivered in step 1 are those before the
   change, as Brian2's ``on_pre`` delivers before it changes ``w``), and the three-factor rule's
   step for them (:mod:`neurosim.projections.eligibility`: the eligibility of every synapse onto
   its range, the change under the modulator of that step, the traces; the last step's is run
   after the loop);
3. sums, per synaptic channel, the external drive, the noise drawn for the step
   (:mod:`neurosim.kernels.noise`) and the projection rows in the order of
   :meth:`Network._run_loop <neurosim.network.Network._run_loop>`;
4. applies the model's step to its neurons with the arithmetic of the model's torch step
   function, in the same order and with the same constants (computed by the same Python code),
   then updates the presynaptic STDP traces and lists the neurons that spiked.

Probes copy the range's state rows; once every thread has stepped its ranges (a barrier), each
records its ranges' spikes as events at their place in the step's list (ranges in order, so
ascending). The threads start once for all the steps of a call, not once per step, and meet at one
barrier per step (spinning on an atomic counter, :mod:`neurosim.kernels.atomics`), which costs a
fraction of a microsecond where starting and joining the threads each step cost 1 to 3; if they do
not all start at once (a busy machine), the first to stop waiting steps every range alone. Each target's input is summed in the same order whatever the number of ranges,
so results do not depend on the number of threads; they agree with the torch path to the last
bit (Dense rows are summed in another order than torch's reduction, so they agree to rounding).

Threads: a network of fewer than :data:`PARALLEL_NEURONS` neurons (times samples) runs on one
thread, a larger one on ``min(torch.get_num_threads(), numba.get_num_threads())`` unless the
caller asks for a number; a run that probes state variables (spike events aside) steps its ranges
on one thread. Kernels are specialised by numba on argument types: an optional
feature passed as ``None`` (synaptic currents, refractoriness, a drive, noise, plasticity, a
probe) is removed at compile time, and a parameter is a scalar shared by all neurons or a
per-neuron array. Compiled code is cached on disk (``cache=True``), so only the first run of a
configuration ever pays for compilation.

A model joins by a :class:`LoopKernel`: the time loop compiled around its njit update
``update(args, states, b, lo, hi, src_exc, src_inh, zb)``, which steps neurons ``lo <= i < hi``
of sample ``b`` (input ``src_exc[i]`` and ``src_inh[i]``, which it sets to zero; spike
``zb[i]``) with the parameter arguments ``args`` (:func:`loop_kernels`); the ``loop`` fast paths
of LIF and Izhikevich and the ``synapses`` layouts of Sparse and Dense in
:mod:`neurosim.kernels.registry` are built so.
"""
from __future__ import annotations

import math
import types as pytypes
import weakref
from typing import Callable, NamedTuple

import numba
import numpy as np
import torch
from numba import literal_unroll, njit, prange

from ..progress import progress_bar
from ..events import SpikeEvents
from ..neurons.izhikevich import Izhikevich
from ..neurons.lif import LIF, decay, refractory_steps, synaptic_gain
from ..projections.dense import Dense
from ..projections.eligibility import ThreeFactorParameters
from ..projections.plasticity import STDPParameters, stdp_bounds
from ..projections.sparse import Sparse
from . import atomics
from .noise import noise_value
from .per_neuron import at, part
from .registry import lookup, register

#: Populations (neurons times samples) from this size on run on several threads.
PARALLEL_NEURONS = 20000
_ALIGN = 64  # range boundaries are multiples of this (whole 64-bit words of spike flags)


# -- the steps of one range ------------------------------------------------------------------

@njit(cache=True)
def _deliver(rec, post, w, split, spk, count, bounds, r):
    """Adds to ``rec[k]`` the weights of projection ``k`` from the neurons listed in ``spk`` (range
    ``rr``'s list at ``spk[bounds[rr]:]``, ``count[rr]`` long) onto targets in range ``r``
    (synapses ``split[k][j, r] <= q < split[k][j, r + 1]`` of neuron ``j``)."""
    for k in range(rec.shape[0]):
        row, targets, weights, cut = rec[k], post[k], w[k], split[k]
        for rr in range(count.size):
            base = bounds[rr]
            for s in range(count[rr]):
                j = spk[base + s]
                for q in range(cut[j, r], cut[j, r + 1]):
                    row[targets[q]] += weights[q]


@njit(cache=True)
def _stdp(lo, hi, r, spk, count, bounds, post, w, split, prm, x, y, colptr, colsyn, colpre, sgn):
    """The pathways of one plastic projection for the spikes listed in ``spk`` (as :func:`_deliver`),
    on the synapses onto neurons ``lo <= i < hi``: decay of the postsynaptic trace ``y``, the
    presynaptic pathway (``w += y[i]``, clipped), the postsynaptic spikes into ``y``, the
    postsynaptic pathway (``w += x[j]``, clipped; the synapses onto ``i`` listed by ``colsyn``, their
    presynaptic neurons by ``colpre``, so that only the weights are read out of order).
    ``prm``: ``lambda_pre, lambda_post, A+, A-, low, high``; ``sgn``: the presynaptic signs, the
    weight being ``sgn[j] * magnitude`` (all 1 without Dale's law)."""
    lam_post, a_minus, low, high = prm[1], prm[3], prm[4], prm[5]
    own = y[lo:hi]
    for i in range(hi - lo):
        own[i] = lam_post * own[i]
    for rr in range(count.size):
        base = bounds[rr]
        for s in range(count[rr]):
            j = spk[base + s]
            g = sgn[j]
            for q in range(split[j, r], split[j, r + 1]):
                m = w[q] * g + y[post[q]]
                w[q] = min(max(m, low), high) * g
    base = bounds[r]
    for s in range(count[r]):
        i = spk[base + s]
        y[i] = y[i] - a_minus
        for p in range(colptr[i], colptr[i + 1]):
            q, j = colsyn[p], colpre[p]
            g = sgn[j]
            m = w[q] * g + x[j]
            w[q] = min(max(m, low), high) * g


@njit(cache=True)
def _eligibility(lo, hi, s, prm, x, x_next, y, e, acc, m, z, colptr, colpre):
    """The three-factor rule's step for the spikes ``z`` (0 or 1, every neuron) of step ``s`` on the
    synapses onto neurons ``lo <= i < hi`` (``colptr[i] <= p < colptr[i + 1]``, their presynaptic
    neurons ``colpre[p]``): the Hebbian term from the traces before the step (``x``, ``y``), the
    eligibility ``e[p]``, the change ``acc[p] -= m e[p]`` under the modulator row ``m[s]`` (``m``
    ``[1, 0]``: none), then the postsynaptic traces ``y`` of those neurons and their presynaptic
    traces into ``x_next``. ``e`` and ``acc`` are in this order (by target), read and written in
    sequence.
    ``prm``: ``lambda_pre, lambda_post, lambda_e, A+, A-`` and 1 for ``hebbian="pre"``."""
    lam_pre, lam_post, lam_e, a_plus, a_minus = prm[0], prm[1], prm[2], prm[3], prm[4]
    pre_only = prm[5] != 0
    modulated = m.shape[1] > 0
    row = m[s if modulated else 0]
    per_neuron = row.size > 1
    mi = row[0] if modulated else lam_e
    for i in range(lo, hi):
        si, yi = z[i], y[i]
        if per_neuron:
            mi = row[i]
        for p in range(colptr[i], colptr[i + 1]):
            j = colpre[p]
            if pre_only:
                h = a_plus * (lam_pre * x[j] + z[j])
            else:
                h = a_plus * si * x[j] - a_minus * yi * z[j]
            ep = lam_e * e[p] + h
            e[p] = ep
            if modulated:
                acc[p] = acc[p] - mi * ep
        y[i] = lam_post * yi + si
    for j in range(lo, min(hi, x.size)):
        x_next[j] = lam_pre * x[j] + z[j]


@njit(cache=True)
def _fold(drive, t, b, rows, rec, dst, lo, hi, keys, step, kind, p1, p2):
    """``dst[i] = drive[t, b, i] + noise_i + rec[rows[0], i] + ...`` for ``lo <= i < hi``, summed
    left to right; clears those rows. ``drive`` is ``[T or 1, B or 1, n]`` (broadcast over time /
    samples) or ``None``; the noise (``keys`` not None) is rounded to the dtype before it is added."""
    n = dst.size
    out = dst[lo:hi]
    first = 0
    if keys is not None:
        key, base = keys[b], step * n + lo
        p1, p2 = part(p1, lo, hi), part(p2, lo, hi)
        for i in range(hi - lo):
            out[i] = noise_value(kind, key, base + i, p1, p2, i)
    if drive is not None:
        src = drive[t if drive.shape[0] > 1 else 0, b if drive.shape[1] > 1 else 0, lo:hi]
        if keys is not None:
            for i in range(hi - lo):
                out[i] = src[i] + out[i]
        else:
            for i in range(hi - lo):
                out[i] = src[i]
    elif keys is None:
        row = rec[rows[0], lo:hi]
        for i in range(hi - lo):
            out[i] = row[i]
            row[i] = 0
        first = 1
    for r in rows[first:]:
        row = rec[r, lo:hi]
        for i in range(hi - lo):
            out[i] = out[i] + row[i]
            row[i] = 0


@njit(cache=True)
def _traces(lo, hi, zb, prm, x, out):
    """The presynaptic STDP trace after the step's spikes: ``out = lambda_pre x + A+ s``."""
    lam_pre, a_plus = prm[0], prm[2]
    x, out, z = x[lo:hi], out[lo:hi], zb[lo:hi]
    for i in range(hi - lo):
        out[i] = lam_pre * x[i] + a_plus if z[i] else lam_pre * x[i]


@njit(cache=True)
def _spiked(zb, zw, lo, hi, out):
    """Writes to ``out[lo:]`` the indices ``lo <= i < hi`` with ``zb[i] != 0`` in ascending order
    (``zw``: ``zb`` as 64-bit words, to skip silent neurons eight at a time); returns their number."""
    c = 0
    for k in range(lo // 8, (hi + 7) // 8):
        if zw[k] != 0:
            for i in range(8 * k, 8 * k + 8):
                if zb[i]:
                    out[lo + c] = i
                    c += 1
    return c


# -- model updates ----------------------------------------------------------------------------

class LIFArgs(NamedTuple):
    """Parameter arguments of :func:`lif_range` (see :func:`_lif_args`)."""

    v_leak: object
    beta: object
    one_minus_beta: object
    kappa_exc: object
    kappa_inh: object
    decay_exc: object
    decay_inh: object
    v_th: object
    n_ref: object
    subtract: object
    v_after: object


@njit(cache=True)
def lif_range(v, i_exc, i_inh, refrac, src_exc, src_inh, zb, v_leak, beta, one_minus_beta, kappa_exc, kappa_inh,
              decay_exc, decay_inh, v_th, n_ref, subtract, v_after):
    """LIF step of the neurons of the rows ``v, i_exc, i_inh, refrac`` (updated in place; see
    :mod:`neurosim.neurons.lif`), per-neuron parameters cut to the same neurons.

    Membrane: ``v_leak + (v - v_leak) beta + x`` (jump input), ``+ one_minus_beta x`` (current
    input) or, with synapses, ``+ i_exc kappa_exc (+ i_inh kappa_inh)`` after the input was
    added to the currents, which then decay by ``decay_exc`` / ``decay_inh``. With ``n_ref`` a
    spike holds the membrane ``n_ref - 1`` steps. Spike ``v - v_th > 0``; reset ``v - v_after``
    with ``subtract`` (``v_after = v_th - v_reset``), else ``v = v_after`` (``v_reset``).
    """
    for i in range(v.size):
        x = src_exc[i]
        src_exc[i] = 0
        vo = v[i]
        vl = at(v_leak, i)
        if kappa_exc is None:
            if one_minus_beta is None:
                vn = vl + (vo - vl) * at(beta, i) + x
            else:
                vn = vl + (vo - vl) * at(beta, i) + at(one_minus_beta, i) * x
        else:
            ie = i_exc[i] + x
            if kappa_inh is None:
                syn = ie * at(kappa_exc, i)
            else:
                ii = i_inh[i] + src_inh[i]
                src_inh[i] = 0
                syn = ie * at(kappa_exc, i) + ii * at(kappa_inh, i)
                i_inh[i] = ii * decay_inh
            vn = vl + (vo - vl) * at(beta, i) + syn
            i_exc[i] = ie * decay_exc
        if n_ref is None:
            s = vn - at(v_th, i) > 0
        else:
            r = max(refrac[i] - 1, 0)
            active = r == 0
            vn = vn if active else vo
            s = (vn - at(v_th, i) > 0) & active
            refrac[i] = n_ref if s else r
        if subtract is None:
            v[i] = at(v_after, i) if s else vn
        else:
            v[i] = vn - at(v_after, i) if s else vn
        zb[i] = s


class IzhikevichArgs(NamedTuple):
    """Parameter arguments of :func:`izhikevich_range` (see :func:`_izhikevich_args`)."""

    h: object
    k_sq: object
    k_lin: object
    k_const: object
    dt_a: object
    b: object
    c: object
    d: object
    v_peak: object
    threshold_first: object


@njit(cache=True)
def izhikevich_range(v, u, src_exc, zb, h, k_sq, k_lin, k_const, dt_a, b, c, d, v_peak, threshold_first):
    """Izhikevich step of the neurons of the rows ``v, u`` (updated in place; see
    :mod:`neurosim.neurons.izhikevich`), per-neuron parameters cut to the same neurons.

    Two half steps ``v += h (k_sq (v v) + k_lin v + k_const - u + x)``, then
    ``u += dt_a (b v - u)``; a spike ``v - v_peak > 0`` sets ``v = c`` and ``u += d``: after the
    update, or with ``threshold_first`` on the state before it.
    """
    for i in range(v.size):
        x = src_exc[i]
        src_exc[i] = 0
        vo = v[i]
        uo = u[i]
        if threshold_first is not None:
            s = vo - at(v_peak, i) > 0
            if s:
                vo = at(c, i)
                uo = uo + at(d, i)
        vv = vo + h * (k_sq * (vo * vo) + k_lin * vo + k_const - uo + x)
        vv = vv + h * (k_sq * (vv * vv) + k_lin * vv + k_const - uo + x)
        uu = uo + at(dt_a, i) * (at(b, i) * vv - uo)
        if threshold_first is None:
            s = vv - at(v_peak, i) > 0
            v[i] = at(c, i) if s else vv
            u[i] = uu + at(d, i) if s else uu
        else:
            v[i] = vv
            u[i] = uu
        zb[i] = s


@njit(cache=True)
def _lif_update(a, states, b, lo, hi, src_exc, src_inh, zb):
    """:func:`lif_range` on neurons ``lo <= i < hi`` of sample ``b``. The rows are cut to the range
    and indexed from 0, which lets the compiler drop numba's negative-index checks and vectorise."""
    lif_range(states[0][b, lo:hi], states[1][b, lo:hi], states[2][b, lo:hi], states[3][b, lo:hi], src_exc[lo:hi],
              part(src_inh, lo, hi), zb[lo:hi], part(a.v_leak, lo, hi), part(a.beta, lo, hi), part(a.one_minus_beta, lo, hi),
              part(a.kappa_exc, lo, hi), part(a.kappa_inh, lo, hi), a.decay_exc, a.decay_inh, part(a.v_th, lo, hi),
              a.n_ref, a.subtract, part(a.v_after, lo, hi))


@njit(cache=True)
def _izhikevich_update(a, states, b, lo, hi, src_exc, src_inh, zb):
    """:func:`izhikevich_range` on neurons ``lo <= i < hi`` of sample ``b`` (as :func:`_lif_update`)."""
    izhikevich_range(states[0][b, lo:hi], states[1][b, lo:hi], src_exc[lo:hi], zb[lo:hi], a.h, a.k_sq, a.k_lin,
                     a.k_const, part(a.dt_a, lo, hi), part(a.b, lo, hi), part(a.c, lo, hi), part(a.d, lo, hi),
                     part(a.v_peak, lo, hi), a.threshold_first)


# -- the time loop ----------------------------------------------------------------------------

def update(args, states, b, lo, hi, src_exc, src_inh, zb):
    """The model update that :func:`_steps` calls: each model's copy of it binds its own
    (:func:`loop_kernels`)."""
    raise NotImplementedError("a model's update is bound by loop_kernels")


#: Entries of the array the threads of :func:`_steps` share (``sync``).
_ARRIVED, _MODE, _WAITING, _GENERATION, _REACHED = range(5)
#: Modes of :func:`_join`.
_UNDECIDED, _TEAM, _ALONE, _NONE = range(4)
#: Loads a thread makes waiting for the others to start before it runs every range itself.
_JOIN_SPINS = 1 << 22


@njit(cache=True)
def _join(sync, team):
    """Called once by each of the ``team`` iterations of the parallel loop as it starts: ``_TEAM``
    when all of them run at once (the last to arrive says so), else ``_ALONE`` for the one that
    stops waiting first (it then runs every range) and ``_NONE`` for the others. A loop run on fewer
    threads than iterations thus still finishes."""
    if atomics.fetch_add(sync, _ARRIVED, 1) == team - 1:
        atomics.compare_exchange(sync, _MODE, _UNDECIDED, _TEAM)
    spins = 0
    while True:
        mode = atomics.load(sync, _MODE)
        if mode == _TEAM:
            return _TEAM
        if mode == _ALONE:
            return _NONE
        spins += 1
        if spins > _JOIN_SPINS and atomics.compare_exchange(sync, _MODE, _UNDECIDED, _ALONE):
            return _ALONE


@njit(cache=True)
def _barrier(sync, team):
    """Waits until all ``team`` threads have called it (the writes of each before are then seen by all)."""
    generation = atomics.load(sync, _GENERATION)
    if atomics.fetch_add(sync, _WAITING, 1) == team - 1:
        atomics.store(sync, _WAITING, 0)
        atomics.fetch_add(sync, _GENERATION, 1)
    else:
        while atomics.load(sync, _GENERATION) == generation:
            pass


def _steps(t0, t1, args, states, probe_items, exc, fold_exc, src_exc, inh, fold_inh, src_inh,
           keys, step0, kind, p1, p2, rec, post, w, split, stdp, x_tr, y_tr, colptr, colsyn, colpre, sgn,
           tf, tf_e, tf_acc, tf_m, zf, spk, count, zb, zw, bounds, team, sync, ev_idx, ev_ptr):
    """Steps ``t0 <= t < t1`` (module docstring) with the model's ``update``, a global name bound
    per model by :func:`loop_kernels`. ``spk[t % 2, b]`` and ``count[t % 2, b]`` list
    the spikes of step ``t`` by range; ``stdp[k]`` (None without plasticity) holds the parameters
    of projection ``k`` (empty when it is not plastic), ``x_tr[k][t % 2]`` its presynaptic trace
    after step ``t`` (read by the other threads during step ``t + 1``), ``y_tr[k]`` its
    postsynaptic trace; ``tf[k]`` (None without the three-factor rule) the three-factor parameters
    (empty when projection ``k`` has not that rule), ``tf_e[k]``, ``tf_acc[k]``, ``tf_m[k]`` its
    eligibility, change and modulator (:func:`_eligibility`), ``x_tr[k][(s + 1) % 2]`` its
    presynaptic trace before step ``s``, whose spikes it reads in ``zf[s % 2]`` during step ``s + 1``.

    ``team`` threads run all the steps (the parallel loop starts once, not once per step), each on
    its block of consecutive ranges: each step a thread steps its ranges and copies their probes,
    waits for the others (:func:`_barrier`: the next step reads every range's spikes), then records
    its ranges' events at their place in the step's list (after the earlier ranges' counts).
    ``sync`` (int64, 5 entries, zero) is what they share (:func:`_join`). Returns the step reached: ``t1``, or earlier when the event buffer
    ``ev_idx`` could overflow during the next step."""
    nb, n = count.shape[1], src_exc.size
    ranges = bounds.size - 1
    sync[_REACHED] = t1
    for worker in prange(team):
        mode = _join(sync, team)
        if mode != _NONE:
            first, last = (worker * ranges // team, (worker + 1) * ranges // team) if mode == _TEAM else (0, ranges)
            base = ev_ptr[t0 * nb]  # where the events of step t start: every thread keeps its own count
            for t in range(t0, t1):
                if ev_idx is not None:
                    if base + nb * n > ev_idx.size:  # the same in every thread, so all stop
                        if first == 0:
                            sync[_REACHED] = t
                        break
                cur, prev = t % 2, (t + 1) % 2
                for r in range(first, last):
                    lo, hi = bounds[r], bounds[r + 1]
                    for b in range(nb):
                        spk_prev, count_prev = spk[prev, b], count[prev, b]
                        _deliver(rec, post, w, split, spk_prev, count_prev, bounds, r)
                        if stdp is not None:
                            for k in range(len(w)):
                                if stdp[k].size:
                                    _stdp(lo, hi, r, spk_prev, count_prev, bounds, post[k], w[k], split[k],
                                          stdp[k], x_tr[k][prev], y_tr[k], colptr[k], colsyn[k], colpre[k], sgn[k])
                        if tf is not None and t > 0:
                            for k in range(len(w)):
                                if tf[k].size:
                                    _eligibility(lo, hi, t - 1, tf[k], x_tr[k][cur], x_tr[k][prev], y_tr[k],
                                                 tf_e[k], tf_acc[k], tf_m[k], zf[prev], colptr[k], colpre[k])
                        if fold_exc is not None:
                            _fold(exc, t, b, fold_exc, rec, src_exc, lo, hi, keys, step0 + t, kind, p1, p2)
                        if fold_inh is not None:
                            _fold(inh, t, b, fold_inh, rec, src_inh, lo, hi, None, 0, 0, 0.0, 0.0)
                        update(args, states, b, lo, hi, src_exc, src_inh, zb)
                        if stdp is not None:
                            for k in range(len(w)):
                                if stdp[k].size:
                                    _traces(lo, hi, zb, stdp[k], x_tr[k][prev], x_tr[k][cur])
                        if zf is not None:
                            for i in range(lo, hi):
                                zf[cur, i] = 1 if zb[i] else 0
                        count[cur, b, r] = _spiked(zb, zw, lo, hi, spk[cur, b])
                        if probe_items is not None:
                            for item in literal_unroll(probe_items):
                                state, out, stride = item
                                if t % stride == 0:
                                    out[t // stride, b, lo:hi] = state[b, lo:hi]
                if mode == _TEAM:
                    _barrier(sync, team)
                if ev_idx is not None:
                    for b in range(nb):
                        e = base
                        for r in range(ranges):
                            c = count[cur, b, r]
                            if first <= r < last:
                                ev_idx[e:e + c] = spk[cur, b, bounds[r]:bounds[r] + c]
                            e += c
                        if first == 0:
                            ev_ptr[t * nb + b + 1] = e
                        base = e
    return sync[_REACHED]


def _variant(fn, name: str, **names):
    """A copy of ``fn`` under another name (numba caches compiled code by function name) whose
    global ``names`` are bound to the given objects."""
    copy = pytypes.FunctionType(fn.__code__, {**fn.__globals__, **names}, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = fn.__doc__
    return copy


def loop_kernels(update, name: str) -> tuple:
    """The serial and the parallel time loop (:func:`_steps`) of a model whose njit ``update(args,
    states, b, lo, hi, src_exc, src_inh, zb)`` steps neurons ``lo <= i < hi`` of sample ``b``;
    ``name`` (an identifier) names their compiled code in numba's cache."""
    return (njit(cache=True)(_variant(_steps, f"_{name}_serial_steps", update=update)),
            njit(cache=True, parallel=True)(_variant(_steps, f"_{name}_parallel_steps", update=update)))


# -- arguments from the torch objects ---------------------------------------------------------

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


def _single(value) -> bool:
    """True for a number or a tensor holding one value."""
    return not isinstance(value, torch.Tensor) or value.numel() == 1


def _lif_args(pop: LIF, dtype) -> LIFArgs:
    """Parameter arguments of :func:`lif_range`, computed by the expressions of :func:`lif_step`;
    the exact method with one refractory period and one synaptic time constant per channel."""
    p, dt, n = pop.params, pop.dt, pop.n
    if p.method != "exact" or not all(_single(v) for v in (p.tau_ref, p.tau_syn_exc, p.tau_syn_inh)):
        raise _Unsupported
    beta = decay(dt, p.tau_mem)
    syn, split = p.tau_syn_exc is not None, p.tau_syn_inh is not None
    tau_ref, tau_exc, tau_inh = (float(v) if isinstance(v, torch.Tensor) else v
                                 for v in (p.tau_ref, p.tau_syn_exc, p.tau_syn_inh))
    return LIFArgs(
        _param(p.v_leak, n, dtype),
        _param(beta, n, dtype),
        _param(1 - beta, n, dtype) if not syn and p.input_mode == "current" else None,
        _param(synaptic_gain(dt, p.tau_mem, p.tau_syn_exc), n, dtype) if syn else None,
        _param(synaptic_gain(dt, p.tau_mem, p.tau_syn_inh), n, dtype) if split else None,
        dtype(math.exp(-dt / tau_exc)) if syn else None,
        dtype(math.exp(-dt / tau_inh)) if split else None,
        _param(p.v_th, n, dtype),
        refractory_steps(tau_ref, dt) or None,
        True if p.reset == "subtract" else None,
        _param(p.v_th - p.v_reset if p.reset == "subtract" else p.v_reset, n, dtype),
    )


def _izhikevich_args(pop: Izhikevich, dtype) -> IzhikevichArgs:
    """Parameter arguments of :func:`izhikevich_range`, computed by the expressions of :func:`izhikevich_step`."""
    p, dt, n = pop.params, pop.dt, pop.n
    return IzhikevichArgs(dtype(0.5 * dt), dtype(0.04), dtype(5.0), dtype(140.0), _param(dt * p.a, n, dtype),
                          _param(p.b, n, dtype), _param(p.c, n, dtype), _param(p.d, n, dtype),
                          _param(p.v_peak, n, dtype), True if p.schedule == "threshold_first" else None)


def _key(*tensors) -> tuple:
    """What identifies the contents of ``tensors``: storage address, in-place version, dtype, shape."""
    return tuple(None if t is None else (t.data_ptr(), t._version, t.dtype, tuple(t.shape)) for t in tensors)


_packed: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class _Synapses(NamedTuple):
    """A projection as the loop reads it: CSR ``indptr`` (int64), targets ``post`` (:func:`target_type`), effective
    ``weight``, and for scattering weights back ``rows`` / ``cols``, the synapses' positions in
    the projection's own weight (None for a per-synapse weight)."""

    indptr: np.ndarray
    post: np.ndarray
    weight: np.ndarray
    positions: tuple | None


def _csr(proj, dtype, index_sources, weight_sources, index, weight) -> _Synapses | None:
    """CSR arrays of ``proj`` from ``index() -> (indptr, post, positions)`` and ``weight(effective
    weight)``, kept per projection until the tensors they come from change, so that runs in
    chunks do not convert large connectivities again and again. The cache holds the source
    tensors, so that their storage addresses, part of the key, cannot be reused meanwhile."""
    cached = _packed.setdefault(proj, {})
    index_key = (proj.n_in, proj.n_out, _key(*index_sources))
    if cached.get("index_key") != index_key:
        for derived in [k for k in cached if isinstance(k, tuple)]:
            del cached[derived]
        cached["index"] = index()
        cached["index_key"], cached["index_sources"] = index_key, [t.detach() for t in index_sources if t is not None]
    weight_key = _key(*weight_sources)
    if cached.get("weight_key") != weight_key:
        cached["weight"] = np.ascontiguousarray(weight(_cpu(proj.effective_weight())).numpy())
        cached["weight_key"] = weight_key
        cached["weight_sources"] = [t.detach() for t in weight_sources if t is not None]
    if cached["weight"].dtype != dtype:
        return None
    indptr, post, positions = cached["index"]
    return _Synapses(indptr, post, cached["weight"], positions)


def _derived(proj, name: tuple, make):
    """``make()`` cached with the projection's CSR until its connectivity changes."""
    cached = _packed[proj]
    if name not in cached:
        cached[name] = make()
    return cached[name]


def _stored(proj, weight_sources) -> None:
    """Declare the cached weights of ``proj`` to be those of its (just written) weight tensors."""
    cached = _packed[proj]
    cached["weight_key"] = _key(*weight_sources)
    cached["weight_sources"] = [t.detach() for t in weight_sources if t is not None]


def _weight_sources(proj) -> tuple:
    return (proj.weight, proj.signs, proj.pre) if isinstance(proj, Sparse) else (proj.weight, proj.signs, proj.mask)


def target_type(n: int) -> type:
    """The unsigned type of the targets' indices onto a population of ``n``: 16 bits up to 65,536
    neurons (a quarter less to read per synapse than 32), else 32."""
    return np.uint16 if n <= 1 << 16 else np.uint32


def sparse_synapses(proj: Sparse, dtype):
    """A Sparse projection's own CSR, with its effective weights (Dale's signs applied)."""
    def index():
        return _cpu(proj.indptr).numpy(), _cpu(proj.post).numpy().astype(target_type(proj.n_out)), None

    return _csr(proj, dtype, (proj.indptr, proj.post), _weight_sources(proj), index, lambda w: w)


def dense_synapses(proj: Dense, dtype):
    """A Dense projection without bias as a CSR of the synapses of its mask (every entry without
    one), signs and mask applied."""
    if proj.bias is not None:
        return None

    def index():
        if proj.mask is None:
            return (np.arange(proj.n_in + 1, dtype=np.int64) * proj.n_out,
                    np.tile(np.arange(proj.n_out, dtype=target_type(proj.n_out)), proj.n_in),
                    None)
        pre, post = np.nonzero(_cpu(proj.mask).t().numpy())
        indptr = np.zeros(proj.n_in + 1, np.int64)
        np.cumsum(np.bincount(pre, minlength=proj.n_in), out=indptr[1:])
        return indptr, post.astype(target_type(proj.n_out)), (torch.from_numpy(post), torch.from_numpy(pre))

    def weight(w):
        return w.t().reshape(-1) if proj.mask is None else w.t()[_cpu(proj.mask).t()]

    return _csr(proj, dtype, (proj.mask,), _weight_sources(proj), index, weight)


def _synapses(proj, dtype) -> _Synapses:
    fn = lookup("synapses", proj)
    arrays = None if fn is None else fn(proj, dtype)
    if arrays is None:
        raise _Unsupported
    return arrays


@njit(cache=True)
def _split_rows(indptr, post, bounds):
    """``out[j, r]``: the first synapse of neuron ``j`` onto range ``r`` (targets sorted within rows)."""
    n_pre, ranges = indptr.size - 1, bounds.size - 1
    out = np.empty((n_pre, ranges + 1), np.uint64)
    for j in range(n_pre):
        q, end = indptr[j], indptr[j + 1]
        out[j, 0] = q
        for r in range(1, ranges):
            while q < end and post[q] < bounds[r]:
                q += 1
            out[j, r] = q
        out[j, ranges] = end
    return out


def ranges(n: int, count: int) -> np.ndarray:
    """Boundaries ``[0, ..., n]`` of ``count`` (or fewer) ranges of neurons of nearly equal size,
    each starting at a multiple of 64."""
    size = -(-n // count)
    size = -(-size // _ALIGN) * _ALIGN
    return np.array(list(range(0, n, size)) + [n], dtype=np.int64)


def threads_for(n: int, batch: int, threads: int | None) -> int:
    """The number of ranges (threads) for ``n`` neurons and ``batch`` samples (module docstring)."""
    if threads is None:
        if n * batch < PARALLEL_NEURONS:
            return 1
        threads = min(torch.get_num_threads(), numba.get_num_threads())
    return max(1, min(int(threads), max(1, n // _ALIGN)))


class _Plastic(NamedTuple):
    """Plasticity arguments of one projection: the parameters of STDP (``stdp``) or of the
    three-factor rule (``tf``; the other empty), traces (numpy, in place; ``x`` ``[2, n_in]``
    alternating by step), the three-factor rule's eligibility ``e``, change ``acc`` (from
    ``weight.grad``) per synapse by target (CSC order), the modulator ``m`` ``[T, 1 or n_out]``
    (``[1, 0]``: none), the synapses by target (CSC: ``colptr``, ``colsyn``, ``colpre``), presynaptic
    signs, and each synapse's presynaptic neuron ``pre``."""

    stdp: np.ndarray
    tf: np.ndarray
    x: np.ndarray
    y: np.ndarray
    e: np.ndarray
    acc: np.ndarray
    m: np.ndarray
    colptr: np.ndarray
    colsyn: np.ndarray
    colpre: np.ndarray
    sgn: np.ndarray
    pre: np.ndarray


def _in_loop_order(proj, syn: _Synapses, values: torch.Tensor) -> np.ndarray:
    """Per-synapse ``values`` (a Sparse projection's ``[nnz]``, a Dense one's ``[n_out, n_in]``) in
    the loop's synapse order, as a new array."""
    values = _cpu(values)
    if isinstance(proj, Sparse):
        return np.array(values.numpy())
    if syn.positions is None:
        return np.array(values.t().reshape(-1).numpy())
    return np.array(values[syn.positions].numpy())


def _in_projection_order(proj, syn: _Synapses, values: np.ndarray, into: torch.Tensor) -> None:
    """Per-synapse ``values`` in the loop's order written into ``into`` (the projection's layout)."""
    values = torch.from_numpy(values)
    if isinstance(proj, Sparse):
        into.copy_(values)
    elif syn.positions is None:
        into.copy_(values.reshape(proj.n_in, proj.n_out).t())
    else:
        into.index_put_(syn.positions, values)


def _plastic(proj, syn: _Synapses, rule, dt: float, dtype, steps: int) -> _Plastic:
    """The kernel's plasticity arguments of ``proj`` from ``(parameters, state, modulator or None)``
    of :meth:`Network.plasticity <neurosim.network.Network.plasticity>`."""
    params, traces, modulator = rule
    empty = np.zeros(0, dtype)
    x, y = (_cpu(t) for t in traces[:2])
    if x.shape != (1, proj.n_in) or y.shape != (1, proj.n_out) or x.dtype != y.dtype or x.numpy().dtype != dtype:
        raise _Unsupported
    def csc():
        counts = np.diff(syn.indptr)
        pre = np.repeat(np.arange(proj.n_in, dtype=np.int32), counts)
        colsyn = np.argsort(syn.post, kind="stable").astype(np.uint64)
        colptr = np.zeros(proj.n_out + 1, np.int64)
        np.cumsum(np.bincount(syn.post, minlength=proj.n_out), out=colptr[1:])
        return colptr.astype(np.uint64), colsyn, pre[colsyn].astype(np.uint32), pre

    colptr, colsyn, colpre, pre = _derived(proj, ("csc",), csc)
    e, acc, m = empty, empty, np.zeros((1, 0), dtype)
    if isinstance(params, STDPParameters):
        lam_pre, lam_post = params.decays(dt)
        low, high = stdp_bounds(params, proj.signs is not None)
        stdp = np.array([lam_pre, lam_post, params.a_plus, params.a_minus,
                         -np.inf if low is None else low, np.inf if high is None else high], dtype)
        tf = empty
    elif isinstance(params, ThreeFactorParameters):
        stdp = empty
        tf = np.array([*params.decays(dt), params.a_plus, params.a_minus, params.hebbian == "pre"], dtype)
        e = _in_loop_order(proj, syn, traces[2][0])[colsyn]
        if modulator is not None:
            m = _cpu(modulator)
            if m.shape[:2] != (steps, 1) or m.numpy().dtype != dtype:
                raise _Unsupported
            m = np.ascontiguousarray(m[:, 0].numpy())
            grad = proj.weight.grad
            acc = np.zeros(syn.post.size, dtype) if grad is None else _in_loop_order(proj, syn, grad)[colsyn]
    else:
        raise _Unsupported

    sgn = np.ones(proj.n_in, dtype) if proj.signs is None else _cpu(proj.signs).numpy().astype(dtype)
    both = np.empty((2, proj.n_in), dtype)
    both[1] = x.numpy()[0]  # the trace after step -1, which step 0 reads
    return _Plastic(stdp, tf, both, np.array(y.numpy()[0]), e, acc, m, colptr, colsyn, colpre, sgn, pre)


def _write_back(proj, syn: _Synapses, plastic: _Plastic, traces, last: int) -> tuple:
    """What the kernel changed, back into torch: STDP's weights into ``proj.weight`` (magnitudes
    under Dale's law; the cache declared up to date), the three-factor rule's change into
    ``weight.grad``. Returns the rule's new state (its fields), from the kernel's arrays (the
    presynaptic trace of parity ``last``) and the previous state ``traces``."""
    x, y = torch.from_numpy(plastic.x[last].copy())[None], torch.from_numpy(plastic.y)[None]
    if plastic.stdp.size:
        with torch.no_grad():
            _in_projection_order(proj, syn, syn.weight * plastic.sgn[plastic.pre], proj.weight)
        _stored(proj, _weight_sources(proj))
        return x, y
    e, by_source = traces[2].clone(), np.empty_like(plastic.e)
    by_source[plastic.colsyn] = plastic.e
    _in_projection_order(proj, syn, by_source, e[0])
    if plastic.m.shape[1]:
        if proj.weight.grad is None:
            proj.weight.grad = torch.zeros_like(proj.weight)
        by_source[plastic.colsyn] = plastic.acc
        _in_projection_order(proj, syn, by_source, proj.weight.grad)
    return x, y, e


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


def _channel(drive, noisy: bool, rows: list[int], rec: np.ndarray, n: int, dtype) -> tuple:
    """``(fold rows or None, source row)`` of a synaptic channel: a lone projection is read in place,
    anything else is summed by :func:`_fold` into a row of its own each step."""
    if drive is None and not noisy and len(rows) == 1:
        return None, rec[rows[0]]
    if drive is None and not noisy and not rows:
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
    """A model's compiled loop: its serial and parallel ``kernels`` (:func:`loop_kernels`), the state
    ``fields`` its update changes in place, the function giving its parameter arguments (it raises
    :class:`_Unsupported` for a configuration the update does not compute), and whether it takes
    an inhibitory channel."""

    kernels: tuple
    fields: tuple
    params: Callable
    inh_channel: bool


class Noise(NamedTuple):
    """Noise added to the excitatory channel each step (:mod:`neurosim.kernels.noise`): ``kind``
    (``GAUSSIAN`` or ``POISSON``), one stream key per sample (uint64), the step of the run's first
    step in the streams, and the two parameters (numbers or per-neuron arrays of the population's
    dtype)."""

    kind: int
    keys: np.ndarray
    step: int
    p1: object
    p2: object


def try_run_compiled(spec: LoopKernel, population, projections, drive, state, probes, keep_output, progress,
                     plasticity=None, noise: Noise | None = None, threads: int | None = None):
    """Run ``population`` with its recurrent ``projections`` over all steps of ``drive`` (``(exc
    [T, B, n], inh [T, B, n] or None)``) in the compiled loop of ``spec``, as :meth:`Network._run_loop` would.

    ``state`` is ``(population state, last spikes [B, n])``; recurrent input at step ``t`` comes
    from the spikes of step ``t - 1``. ``plasticity``: one entry per projection, None or
    ``(rule, state, modulator)`` with the parameters (STDP's or the three-factor rule's), the state
    and the modulator ``[T, 1, n_out or 1]`` or None (three-factor rule) of :meth:`Network.plasticity
    <neurosim.network.Network.plasticity>` (batch 1 only); ``noise``: :class:`Noise`;
    ``threads``: the number of threads, or None (module docstring). Appends to each probe's
    ``chunks`` one tensor ``[ceil(T / stride), B, n]``, or :class:`SpikeEvents` for an event probe.
    Returns ``((state, last spikes), spikes [T, B, n] if keep_output else None, traces)`` with the
    fields of each projection's new plasticity state (None where not plastic), or ``None`` when the
    configuration is not supported.
    """
    plasticity = list(plasticity or [None] * len(projections))
    split_channels = spec.inh_channel and population.has_inh_channel
    try:
        dtype, n = _DTYPES[population.dtype], population.n
        st, z0 = state
        z0 = _cpu(z0)
        if z0.dim() != 2 or z0.shape[1] != n:
            raise _Unsupported
        batch = z0.shape[0]
        arrays = []
        for f in spec.fields:
            x = _cpu(getattr(st, f))
            if x.shape != (batch, n) or (x.is_floating_point() and x.dtype != population.dtype):
                raise _Unsupported
            arrays.append(np.array(x.numpy(), order="C"))
        args = spec.params(population, dtype)
        synapses = [_synapses(proj, dtype) for proj in projections]
        z0 = z0.numpy()
        if any(type(p) is Dense for p in projections) and not np.isin(z0, (0, 1)).all():
            raise _Unsupported
        exc, inh = (_drive_array(x, batch, n, population.dtype) for x in drive)
        steps = drive[0].shape[0]
        plastic = [None if rule is None else _plastic(proj, syn, rule, population.dt, dtype, steps)
                   for proj, syn, rule in zip(projections, synapses, plasticity)]
        if batch > 1 and any(p is not None for p in plastic):
            raise _Unsupported
        if noise is not None:
            p1, p2 = noise.p1, noise.p2
            if noise.keys.shape != (batch,) or any(np.ndim(v) and (np.shape(v) != (n,) or v.dtype != dtype)
                                                   for v in (p1, p2)):
                raise _Unsupported
    except _Unsupported:
        return None

    count_ranges = threads_for(n, batch, threads)
    bounds = ranges(n, count_ranges)
    count_ranges = bounds.size - 1
    split = tuple(_derived(proj, ("split", tuple(bounds)), lambda s=syn: _split_rows(s.indptr, s.post, bounds))
                  for proj, syn in zip(projections, synapses))
    rec = np.zeros((len(projections), n), dtype)
    inh_rows = [k for k, p in enumerate(projections) if split_channels and p.channel == "inh"]
    exc_rows = [k for k in range(len(projections)) if k not in inh_rows]
    channels = (exc, *_channel(exc, noise is not None, exc_rows, rec, n, dtype))
    channels += (inh, *_channel(inh, False, inh_rows, rec, n, dtype)) if split_channels else (None, None, None)
    noise_args = (None, 0, 0, dtype(0), dtype(0)) if noise is None else (noise.keys, noise.step, noise.kind, p1, p2)

    empty = np.zeros(0, dtype)
    if any(p is not None for p in plastic):
        none_int = np.zeros(0, np.uint64)
        stdp_args = (tuple(empty if p is None else p.stdp for p in plastic),
                     tuple(np.zeros((2, 0), dtype) if p is None else p.x for p in plastic),
                     tuple(empty if p is None else p.y for p in plastic))
        stdp_args += (tuple(none_int if p is None else p.colptr for p in plastic),
                      tuple(none_int if p is None else p.colsyn for p in plastic),
                      tuple(np.zeros(0, np.uint32) if p is None else p.colpre for p in plastic),
                      tuple(empty if p is None else p.sgn for p in plastic))
    else:
        stdp_args = (None,) * 7
    eligible = [k for k, p in enumerate(plastic) if p is not None and p.tf.size]
    if eligible:
        zf = np.zeros((2, n), dtype)  # spikes of the last two steps, as the rule reads them
        tf_args = (tuple(empty if p is None else p.tf for p in plastic),
                   tuple(empty if p is None else p.e for p in plastic),
                   tuple(empty if p is None else p.acc for p in plastic),
                   tuple(np.zeros((1, 0), dtype) if p is None else p.m for p in plastic), zf)
    else:
        tf_args = (None,) * 5

    spk = np.zeros((2, batch, n), np.int32)
    count = np.zeros((2, batch, count_ranges), np.int64)
    last = (steps - 1) % 2
    for b in range(batch):  # the spikes of step -1, where step 0 reads them
        idx = np.flatnonzero(z0[b])
        for r in range(count_ranges):
            part = idx[(idx >= bounds[r]) & (idx < bounds[r + 1])]
            spk[1, b, bounds[r]:bounds[r] + part.size] = part
            count[1, b, r] = part.size
    zb = np.zeros(-(-n // 8) * 8, np.uint8)
    events = keep_output or any(p.variable == "spikes" for p in probes)
    ev_idx = np.empty(batch * n + steps * batch * max(1, n // 100), np.int32) if events else None
    ev_ptr = np.zeros(steps * batch + 1, np.int64)
    recordings, items = {}, []
    for f, a in zip(spec.fields, arrays):
        strides = [p.stride for p in probes if p.variable == f]
        if strides:
            g = math.gcd(*strides)
            recordings[f] = (g, np.empty((-(-steps // g), batch, n), a.dtype))
            items.append((a, recordings[f][1], g))

    # threads, each on a block of ranges; one with state probes (numba's parallel loop does not run the
    # literal_unroll over their heterogeneous tuple)
    team = 1 if items else min(count_ranges, numba.config.NUMBA_NUM_THREADS)
    kernel = spec.kernels[0 if team == 1 else 1]
    bar = progress_bar(total=steps, desc="simulating", unit="step") if progress else None
    chunk = max(1, steps // 100) if progress else steps
    torch_threads = torch.get_num_threads()
    previous_threads = numba.get_num_threads()
    if team > 1:
        numba.set_num_threads(team)
    try:
        t = 0
        while t < steps:
            stop = min(steps, t + chunk)
            reached = kernel(t, stop, args, tuple(arrays), tuple(items) if items else None, *channels, *noise_args,
                             rec, tuple(s.post for s in synapses), tuple(s.weight for s in synapses), split,
                             *stdp_args, *tf_args, spk, count, zb, zb.view(np.uint64), bounds, team, np.zeros(5, np.int64), ev_idx, ev_ptr)
            if reached < stop:
                grown = np.empty(max(2 * ev_idx.size, ev_ptr[reached * batch] + batch * n), np.int32)
                grown[:ev_ptr[reached * batch]] = ev_idx[:ev_ptr[reached * batch]]
                ev_idx = grown
            if bar is not None:
                bar.update(reached - t)
            t = reached
        for k in eligible:  # the rule's step for the spikes of the last step
            p = plastic[k]
            for r in range(count_ranges):
                _eligibility(bounds[r], bounds[r + 1], steps - 1, p.tf, p.x[steps % 2], p.x[last], p.y, p.e, p.acc,
                             p.m, tf_args[4][last], p.colptr, p.colpre)
    finally:
        numba.set_num_threads(previous_threads)
        if torch.get_num_threads() != torch_threads:  # numba's OpenMP layer may share torch's thread pool
            torch.set_num_threads(torch_threads)
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
        idx = np.concatenate([spk[last, b, bounds[r]:bounds[r] + count[last, b, r]] for r in range(count_ranges)])
        z[b, torch.from_numpy(idx.astype(np.int64))] = 1
    traces = [None if p is None else _write_back(proj, syn, p, rule[1], last)
              for proj, syn, p, rule in zip(projections, synapses, plastic, plasticity)]
    new_state = type(st)(*(torch.from_numpy(a) for a in arrays))
    out = _events_to_dense(ev_idx, ev_ptr, steps, batch, n, tdtype) if keep_output else None
    return (new_state, z), out, traces


LIF_LOOP = LoopKernel(loop_kernels(_lif_update, "lif"), ("v", "i_exc", "i_inh", "refrac"), _lif_args, True)
IZHIKEVICH_LOOP = LoopKernel(loop_kernels(_izhikevich_update, "izhikevich"), ("v", "u"), _izhikevich_args, False)


def lif_loop(population: LIF, *args, **kwargs):
    """The compiled loop of LIF (:func:`try_run_compiled`)."""
    return try_run_compiled(LIF_LOOP, population, *args, **kwargs)


def izhikevich_loop(population: Izhikevich, *args, **kwargs):
    """The compiled loop of Izhikevich neurons (:func:`try_run_compiled`)."""
    return try_run_compiled(IZHIKEVICH_LOOP, population, *args, **kwargs)


register("loop", LIF, lif_loop)
register("loop", Izhikevich, izhikevich_loop)
register("synapses", Sparse, sparse_synapses)
register("synapses", Dense, dense_synapses)
