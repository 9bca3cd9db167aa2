r"""Counter-based random numbers, and the noise a network draws from them each step.

Every draw is a function of ``(seed, sample, step, neuron)`` alone, so the noise does not depend on
the number of samples in a batch, on the threads that draw it or on how a run is cut into
chunks: the only state a stream carries is the step it has reached.

**Generator.** SplitMix64 (Steele, Lea & Flood 2014) used as a counter-based generator: the
64-bit words of a stream with key :math:`k` are :math:`m(k + (c + 1)\gamma)` for counters
:math:`c = 0, 1, \dots`, with :math:`\gamma` = ``0x9E3779B97F4A7C15`` and the mixing function
:math:`m` of SplitMix64 (arithmetic modulo :math:`2^{64}`). Sample ``b`` of a source with
``seed`` has the key :math:`m(m(\mathrm{seed} + \gamma) + (b + 1)\gamma)`; neuron ``i`` at step
``t`` of a population of ``n`` takes counter :math:`c = t n + i`. When one draw needs more than one
word (a rejection), the further words continue SplitMix64's sequence from the first word as state.

**Distributions.** A uniform in :math:`[0, 1)` is the top 53 bits of a word times
:math:`2^{-53}`. A standard normal comes from the ziggurat method with 128 layers (Marsaglia &
Tsang 2000, in Doornik's 2005 form: the layer from the low 7 bits, the abscissa in :math:`[-1, 1)` from the
top 53 bits of the same word read as a signed number, the tail beyond :math:`r = 3.442619855899` by Marsaglia's exponential
rejection). A Poisson count with mean :math:`\lambda` (at most :data:`MAX_POISSON_MEAN`) is drawn
by inversion.

**Noise.** Per step and neuron, Gaussian noise is ``mean + std * xi`` and Poisson noise is
``weight * k``, computed in float64 and rounded to the population's dtype
(:func:`noise_value`); the compiled loops and the torch step loop call the same function, so
the two paths draw the same bits.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from .per_neuron import at

GAUSSIAN, POISSON = 1, 2
#: The largest mean count per step that Poisson noise takes (inversion costs O(mean) per draw).
MAX_POISSON_MEAN = 100.0

_GAMMA = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_ONE = np.uint64(1)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_LAYER = np.uint64(127)
_EPS = 2.0 ** -53
_EPS2 = 2.0 ** -52

_R = 3.442619855899
_V = 9.91256303526217e-3


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray]:
    """Abscissae ``x[0..128]`` of the 128 layers (``x[0] = V / f(r)``, ``x[1] = r``, ``x[128] = 0``)
    and the ratios ``x[i + 1] / x[i]`` under which a point lies inside the layer's rectangle."""
    x = np.zeros(129)
    f = math.exp(-0.5 * _R * _R)
    x[0], x[1] = _V / f, _R
    for i in range(2, 128):
        x[i] = math.sqrt(-2.0 * math.log(_V / x[i - 1] + f))
        f = math.exp(-0.5 * x[i] * x[i])
    return x, x[1:] / x[:-1]


_ZX, _ZR = _ziggurat_tables()


@njit(cache=True, inline="always")
def mix64(z):
    """SplitMix64's mixing function of a uint64."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True)
def stream_key(seed, sample):
    """The key of the stream of ``sample`` of a source with ``seed`` (module docstring)."""
    return mix64(mix64(np.uint64(seed) + _GAMMA) + (np.uint64(sample) + _ONE) * _GAMMA)


@njit(cache=True, inline="always")
def _word(key, counter):
    return mix64(key + (np.uint64(counter) + _ONE) * _GAMMA)


@njit(cache=True, inline="always")
def _uniform(word):
    """A uniform in [0, 1) from the top 53 bits of ``word``."""
    return float(np.int64(word >> _S11)) * _EPS


@njit(cache=True, inline="always")
def _signed(word):
    """A uniform in [-1, 1) from the top 53 bits of ``word`` read as a signed number."""
    return float(np.int64(word) >> np.int64(11)) * _EPS2


@njit(cache=True)
def _normal_slow(word, i, u):
    """The rare rest of the ziggurat after the first word ``word`` missed layer ``i``'s rectangle."""
    state = word
    while True:
        if i == 0:  # the tail beyond r
            while True:
                state += _GAMMA
                a = math.log(_uniform(mix64(state)) + _EPS) / _R
                state += _GAMMA
                b = math.log(_uniform(mix64(state)) + _EPS)
                if -2.0 * b >= a * a:
                    return a - _R if u < 0 else _R - a
        x = u * _ZX[i]
        f0 = math.exp(-0.5 * (_ZX[i] * _ZX[i] - x * x))
        f1 = math.exp(-0.5 * (_ZX[i + 1] * _ZX[i + 1] - x * x))
        state += _GAMMA
        if f1 + _uniform(mix64(state)) * (f0 - f1) < 1.0:
            return x
        state += _GAMMA
        word = mix64(state)
        u = _signed(word)
        i = int(word & _LAYER)
        if abs(u) < _ZR[i]:
            return u * _ZX[i]


@njit(cache=True, inline="always")
def normal(key, counter):
    """A standard normal: the draw of ``counter`` in the stream ``key`` (module docstring)."""
    word = _word(key, counter)
    u = _signed(word)
    i = int(word & _LAYER)
    if abs(u) < _ZR[i]:
        return u * _ZX[i]
    return _normal_slow(word, i, u)


@njit(cache=True)
def poisson(key, counter, mean):
    """A Poisson count of mean ``mean`` (<= :data:`MAX_POISSON_MEAN`) by inversion."""
    word = _word(key, counter)
    u = _uniform(word)
    p = math.exp(-mean)
    total = p
    k = 0
    while u > total and p > 0.0:
        k += 1
        p *= mean / k
        total += p
    return k


@njit(cache=True, inline="always")
def noise_value(kind, key, counter, p1, p2, i):
    """The noise of neuron ``i`` (a draw at ``counter``) in float64, to be stored in the
    population's dtype: Gaussian ``p2 + p1 * xi`` (``p1`` std, ``p2`` mean), Poisson ``p2 * k``
    (``p1`` mean count, ``p2`` weight); ``p1``, ``p2`` are numbers or per-neuron arrays."""
    if kind == GAUSSIAN:
        return float(at(p2, i)) + float(at(p1, i)) * normal(key, counter)
    return float(at(p2, i)) * poisson(key, counter, float(at(p1, i)))


@njit(cache=True)
def fill_noise(kind, keys, step, p1, p2, out):
    """``out[b, i]`` = the noise of sample ``b`` (stream ``keys[b]``) and neuron ``i`` at ``step``."""
    batch, n = out.shape
    for b in range(batch):
        row = out[b]
        for i in range(n):
            row[i] = noise_value(kind, keys[b], step * n + i, p1, p2, i)
