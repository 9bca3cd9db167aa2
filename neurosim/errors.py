"""One error type for bad input, and the checks that raise it.

Every message is one line that names the offending argument, so the CLI can print it as is.
"""
from __future__ import annotations

import importlib
import math
from typing import Iterable, Sequence

import numpy as np
import torch


class NeurosimError(ValueError):
    """Bad input to neurosim: wrong shape, unknown name, invalid value, non-finite data."""


def optional_import(module: str, extra: str, purpose: str):
    """Import ``module``, a dependency only some features need; if it is missing, say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise NeurosimError(f"{purpose} needs {module.split('.')[0]}, which is not installed: "
                            f"pip install 'neurosim[{extra}]'") from None


def check_positive(name: str, value, allow_zero: bool = False) -> None:
    """Raise unless ``value`` (a number or tensor) is finite and > 0 (or >= 0 with ``allow_zero``)."""
    if isinstance(value, torch.Tensor):
        bad = ~torch.isfinite(value) | ((value < 0) if allow_zero else (value <= 0))
        if bool(bad.any()):
            raise NeurosimError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value[bad].flatten()[0].item()!r}")
        return
    try:
        if isinstance(value, (bool, np.bool_, str, bytes)):  # float() would take True and "1"
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise NeurosimError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise NeurosimError(f"{name} must be {'>= 0' if allow_zero else '> 0'} and finite, got {value!r}")


def check_int(name: str, value, minimum: int = 1) -> int:
    """``int(value)``; raise unless ``value`` is an integer (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise NeurosimError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise if ``x`` holds NaN or infinity. A finite sum proves every element finite (a NaN or an
    infinity makes the sum NaN or infinite) in one pass without a mask; a sum that overflowed is
    checked element by element."""
    if not x.is_floating_point():
        return
    x = x.detach()
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        kind = "NaN" if bool(torch.isnan(x).any()) else "infinite values"
        raise NeurosimError(f"{name} contains {kind}")


def check_choice(name: str, value: str, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise NeurosimError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}")


def check_last_dim(name: str, x: torch.Tensor, size: int, ndim: int | Sequence[int]) -> None:
    """Raise unless ``x`` has ``ndim`` dimensions (one of, if a sequence) and last dimension ``size``."""
    ndims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.dim() not in ndims or x.shape[-1] != size:
        want = " or ".join(f"{d}-d" for d in ndims)
        raise NeurosimError(f"{name} must be {want} with last dimension {size}, got shape {tuple(x.shape)}")


def check_known(kind: str, given: Iterable[str], known: Iterable[str]) -> None:
    """Raise on the first name in ``given`` that is not in ``known``."""
    known = tuple(known)
    for key in given:
        if key not in known:
            raise NeurosimError(f"unknown {kind} parameter {key!r}; known: {', '.join(known)}")
