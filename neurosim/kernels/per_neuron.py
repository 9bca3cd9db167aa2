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
