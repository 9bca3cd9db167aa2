"""Parameters in compiled kernels: one value shared by all neurons, or one per neuron."""
from __future__ import annotations

import numpy as np
from numba.core import types
from numba.extending import overload


def at(p, i):
    """``p[i]`` for a per-neuron array, ``p`` for a value shared by all neurons (inside numba code
    the choice is made at compile time)."""
    return p[i] if isinstance(p, np.ndarray) else p


@overload(at, inline="always")
def _at_impl(p, i):
    if isinstance(p, types.Array):
        return lambda p, i: p[i]
    return lambda p, i: p


def part(p, lo, hi):
    """``p[lo:hi]`` for a per-neuron array, ``p`` for a value shared by all neurons. Loops over a
    range of neurons index the parts from 0, which lets the compiler drop numba's negative-index
    check and vectorise (an index ``lo + k`` of unknown sign keeps it in the loop)."""
    return p[lo:hi] if isinstance(p, np.ndarray) else p


@overload(part, inline="always")
def _part_impl(p, lo, hi):
    if isinstance(p, types.Array):
        return lambda p, lo, hi: p[lo:hi]
    return lambda p, lo, hi: p
