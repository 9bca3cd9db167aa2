r"""Generated event tasks that only timing between channels can solve.

:func:`lag_task`: every class :math:`k` is a pattern of lags :math:`\ell_{kc}` (whole steps) over the
``n_channels`` input channels. A sample of class :math:`k` with onset :math:`o` (drawn uniformly per
sample) has one spike on each channel :math:`c`, at step

.. math:: t_c = o + \ell_{kc} + \epsilon_c, \qquad \epsilon_c \in \{-j, \dots, j\} \text{ uniform (jitter } j),

plus optional background spikes (each channel and step independently with probability
``noise_rate``, whatever the class). Within a class the lags are distinct multiples of
:math:`2j + 1`, so two channels never fire at the same step by design (with jitter their windows
do not overlap). Every channel fires exactly once in every sample, so spike counts per channel,
firing rates and coincidences carry no class information; only the relative timing does. A unit
that detects class :math:`k` through synaptic delays :math:`d_{kc}` needs
:math:`d_{kc} + \ell_{kc} = \text{const}`: then all spikes of the pattern arrive at once.

Event times are ``t_c dt`` seconds, so binning with the same ``dt`` puts each spike in step
``t_c``; every sample lasts ``steps`` steps.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import NeurosimError, check_int, check_positive
from .event_sets import EventSet


def lag_patterns(n_classes: int, n_channels: int, max_lag: int, jitter: int = 0, seed: int = 0) -> np.ndarray:
    """Lags ``[n_classes, n_channels]`` (int64): per class, distinct multiples of ``2 jitter + 1`` in
    ``[0, max_lag]`` in random order; no two classes share a pattern."""
    n_classes, n_channels = check_int("n_classes", n_classes, 2), check_int("n_channels", n_channels, 2)
    max_lag, jitter = check_int("max_lag", max_lag, 1), check_int("jitter", jitter, 0)
    grid = np.arange(0, max_lag + 1, 2 * jitter + 1)
    if grid.size < n_channels:
        raise NeurosimError(f"max_lag={max_lag} leaves {grid.size} distinct lags {2 * jitter + 1} steps apart "
                            f"(jitter={jitter}) for {n_channels} channels; raise max_lag to at least "
                            f"{(n_channels - 1) * (2 * jitter + 1)}")
    if math.perm(grid.size, n_channels) < n_classes:
        raise NeurosimError(f"{n_channels} channels allow only {math.perm(grid.size, n_channels)} lag patterns "
                            f"with max_lag={max_lag} and jitter={jitter}, fewer than n_classes={n_classes}")
    rng = np.random.default_rng(seed)
    lags: list[np.ndarray] = []
    seen: set[tuple] = set()
    while len(lags) < n_classes:
        pattern = rng.permutation(rng.choice(grid, n_channels, replace=False))
        if tuple(pattern) not in seen:
            seen.add(tuple(pattern))
            lags.append(pattern)
    return np.stack(lags).astype(np.int64)


def lag_task(n_classes: int = 4, n_channels: int = 8, max_lag: int = 12, n_train: int = 512, n_test: int = 256,
             steps: int = 40, *, jitter: int = 0, noise_rate: float = 0.0, dt: float = 0.001, seed: int = 0
             ) -> tuple[EventSet, EventSet, np.ndarray]:
    """Train and test sets of the lag task (module docstring) and the planted lags ``[n_classes, n_channels]``.

    Classes are balanced (sample ``i`` has class ``i % n_classes``); onsets are uniform on
    ``[jitter, steps - max_lag - jitter - 1]``, so every spike falls inside the ``steps`` steps.
    ``noise_rate`` is the probability of a background spike per channel and step. ``dt`` (s) is the
    sets' default step.
    """
    n_train, n_test, steps = check_int("n_train", n_train, 1), check_int("n_test", n_test, 1), check_int("steps", steps, 1)
    lags = lag_patterns(n_classes, n_channels, max_lag, jitter, seed)
    if not 0 <= noise_rate < 1:
        raise NeurosimError(f"noise_rate must be a probability in [0, 1), got {noise_rate!r}")
    check_positive("dt", dt)
    last_onset = steps - max_lag - 2 * jitter - 1
    if last_onset < 0:
        raise NeurosimError(f"steps={steps} is too short for max_lag={max_lag} and jitter={jitter}: "
                            f"need at least {max_lag + 2 * jitter + 1}")
    rng = np.random.default_rng([seed, 1])

    def make(n: int) -> EventSet:
        labels = np.arange(n) % n_classes
        onsets = jitter + rng.integers(0, last_onset + 1, size=n)
        t = onsets[:, None] + lags[labels] + rng.integers(-jitter, jitter + 1, size=(n, n_channels))
        times, units = [], []
        for i in range(n):
            noise_t, noise_c = np.nonzero(rng.random((steps, n_channels)) < noise_rate)
            k = np.concatenate([t[i], noise_t])
            c = np.concatenate([np.arange(n_channels), noise_c])
            order = np.argsort(k, kind="stable")
            times.append((k[order] * dt).astype(np.float32))
            units.append(c[order].astype(np.int32))
        return EventSet.from_lists(times, units, labels, n_channels, durations=np.full(n, steps * dt), dt=dt,
                                   classes=n_classes)

    return make(n_train), make(n_test), lags
