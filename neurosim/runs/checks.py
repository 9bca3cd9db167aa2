"""Checks of an experiment before anything runs or is written: each value's type and bounds, then the
memory the run would need against the machine's.

Values come from TOML or JSON, so a check names the value by its place in the file
(``training.lr``, ``plugins[1] (ewc).lam``) and says what it must be, in one line. ``true`` is never
taken for 1. Keyword arguments of model builders and plugins are checked against their
annotations (int, float, bool, str, None, lists, tuples, dicts and unions of these); their own
constructors then check their bounds.

The memory estimate (:func:`memory_needed`) adds the network's parameters with their gradients,
optimiser and plugin states, the activations that backpropagation through time keeps (``steps x
batch x neurons``, about ten values each) and those of evaluation, and the data: the set once per
permuted task. It is a rough upper bound; a run is refused when it exceeds 80 % of the machine's
memory (:func:`machine_memory`: physical memory, or a smaller container limit where one is set).
"""
from __future__ import annotations

import inspect
import math
import os
import sys
import types
import typing
from collections.abc import Mapping, Sequence

from ..errors import NeurosimError

SEED_LIMIT = 2 ** 63
"""Seeds are integers in ``[0, SEED_LIMIT)`` (what torch and numpy both accept)."""
LR_MAX = 1e3
"""Learning rates above this are refused (a float32 network diverges at the first update)."""
MEMORY_SHARE = 0.8
EVAL_BATCH = 512


def where(section: str, key) -> str:
    return f"{section}.{key}" if section else str(key)


def integer(name: str, v, low: int | None = 1, high: int | None = None) -> int:
    """``v`` as an int; raise unless an integer (not a bool) in ``[low, high)``."""
    if isinstance(v, bool) or not isinstance(v, int):
        raise NeurosimError(f"{name} must be an integer, got {v!r}")
    if low is not None and v < low or high is not None and v >= high:
        bounds = f">= {low}" if high is None else f"in [{low}, {high})" if low is not None else f"< {high}"
        raise NeurosimError(f"{name} must be an integer {bounds}, got {v!r}")
    return v


def number(name: str, v, low: float | None = None, high: float | None = None, *, low_open: bool = False,
           high_open: bool = False) -> float:
    """``v`` as a float; raise unless a finite number (not a bool, not a string) within the bounds."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise NeurosimError(f"{name} must be a number, got {v!r}")
    if not math.isfinite(v):
        raise NeurosimError(f"{name} must be finite, got {v!r}")
    below = low is not None and (v <= low if low_open else v < low)
    above = high is not None and (v >= high if high_open else v > high)
    if below or above:
        lo = "" if low is None else f"{'(' if low_open else '['}{low:g}"
        hi = "" if high is None else f"{high:g}{')' if high_open else ']'}"
        rng = f"in {lo}, {hi}" if low is not None and high is not None else (
            f"{'>' if low_open else '>='} {low:g}" if low is not None else f"{'<' if high_open else '<='} {high:g}")
        raise NeurosimError(f"{name} must be {rng}, got {v!r}")
    return float(v)


def choice(name: str, v, choices: Sequence[str]) -> str:
    if not isinstance(v, str) or v not in choices:
        raise NeurosimError(f"{name} must be one of: {', '.join(choices)}; got {v!r}")
    return v


def text(name: str, v) -> str:
    if not isinstance(v, str):
        raise NeurosimError(f"{name} must be a string, got {v!r}")
    return v


def table(name: str, v) -> dict:
    if v is None:
        raise NeurosimError(f"the experiment has no {name} table")
    if not isinstance(v, dict):
        raise NeurosimError(f"{name} must be a table, got {type(v).__name__} {_short(v)}")
    return dict(v)


def seed(name: str, v) -> int:
    return integer(name, v, 0, SEED_LIMIT)


def known(name: str, given, allowed: Sequence[str]) -> None:
    for key in given:
        if key not in allowed:
            raise NeurosimError(f"unknown {name} key {key!r}; known: {', '.join(allowed)}")


def _short(v) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


# -- keyword arguments against annotations ----------------------------------------------------------
def _conforms(v, t) -> bool:
    if t is typing.Any or t is inspect.Parameter.empty:
        return True
    if t is type(None) or t is None:
        return v is None
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return any(_conforms(v, a) for a in typing.get_args(t))
    if t is bool:
        return isinstance(v, bool)
    if t is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if t is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if t is str:
        return isinstance(v, str)
    args = typing.get_args(t)
    if origin in (list, tuple, Sequence) or t in (list, tuple):
        if not isinstance(v, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(v) == len(args) and all(_conforms(x, a) for x, a in zip(v, args))
        return not args or all(_conforms(x, args[0]) for x in v)
    if origin in (dict, Mapping) or t is dict:
        return isinstance(v, dict) and (not args or all(_conforms(k, args[0]) and _conforms(x, args[1])
                                                        for k, x in v.items()))
    return False  # a type a configuration cannot hold (a callable, a torch dtype, ...)


def _representable(t) -> bool:
    """Whether some value of a configuration can have type ``t``."""
    if t in (typing.Any, inspect.Parameter.empty, type(None), None, bool, int, float, str, list, tuple, dict):
        return True
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return any(_representable(a) and a is not type(None) for a in typing.get_args(t))
    return origin in (list, tuple, Sequence, dict, Mapping)


def _describe(t) -> str:
    if t is type(None) or t is None:
        return "none"
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(t) if a is not type(None))
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}
    if t in names:
        return names[t]
    args = typing.get_args(t)
    if origin in (list, tuple, Sequence) or t in (list, tuple):
        plural = {bool: "booleans", int: "integers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(args[0], 'values')}" if args else "a list"
    if origin in (dict, Mapping) or t is dict:
        return "a table"
    return getattr(t, "__name__", str(t))


def keywords(name: str, fn, kwargs: Mapping, *, positive_ints: bool = False, skip: Sequence[str] = ()) -> None:
    """Raise unless every key of ``kwargs`` is a parameter of ``fn`` and its value matches the
    annotation (``positive_ints``: integers, but seeds, must also be >= 1)."""
    signature = inspect.signature(fn).parameters.values()
    params = {p.name: p for p in signature if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"}
    open_ended = any(p.kind == p.VAR_KEYWORD for p in signature)
    for key in kwargs:
        if key not in params and key not in skip and not open_ended:
            raise NeurosimError(f"unknown {name} parameter {key!r}; known: {', '.join(params)}")
    for p in params.values():
        if p.default is inspect.Parameter.empty and p.name not in kwargs and p.name not in skip:
            raise NeurosimError(f"{name} needs {p.name}")
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - annotations that do not resolve: the constructor checks alone
        hints = {}
    for key, v in kwargs.items():
        if key in skip:
            continue
        t = hints.get(key, inspect.Parameter.empty)
        if key == "seed":
            seed(where(name, key), v)
        elif not _representable(t):
            raise NeurosimError(f"{where(name, key)} cannot be set in an experiment file")
        elif not _conforms(v, t):
            raise NeurosimError(f"{where(name, key)} must be {_describe(t)}, got {_short(v)}")
        if positive_ints:
            for x in (v if isinstance(v, (list, tuple)) else [v]):
                if isinstance(x, int) and not isinstance(x, bool) and key != "seed" and x < 1:
                    raise NeurosimError(f"{where(name, key)} must be >= 1, got {_short(v)}")


# -- memory ----------------------------------------------------------------------------------------
def machine_memory() -> int | None:
    """Bytes of physical memory (or the container's limit, if lower), None where unknown."""
    total = None
    try:
        if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        total = None
    if total is None and os.name == "nt":
        total = _windows_memory()
    if sys.platform.startswith("linux"):
        for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
            try:
                with open(limit_file) as f:
                    value = f.read().strip()
                if value.isdigit() and int(value) < (total or 1 << 62):
                    total = int(value)
                break
            except OSError:
                continue
    return total


def _windows_memory() -> int | None:
    import ctypes

    class Status(ctypes.Structure):
        _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong), ("total", ctypes.c_ulonglong),
                    ("avail", ctypes.c_ulonglong), ("total_page", ctypes.c_ulonglong),
                    ("avail_page", ctypes.c_ulonglong), ("total_virtual", ctypes.c_ulonglong),
                    ("avail_virtual", ctypes.c_ulonglong), ("avail_extended", ctypes.c_ulonglong)]

    status = Status()
    status.length = ctypes.sizeof(Status)
    try:
        return int(status.total) if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)) else None
    except (AttributeError, OSError):
        return None


_PLUGIN_STATE = {"ewc": 2, "si": 5, "hlop": 2, "gpm": 2, "metaplasticity": 2}  # parameter copies a plugin keeps


def memory_needed(*, params: int, neurons: int, itemsize: int, steps: int, batch: int, optimizer: str,
                  momentum: float, plugins: Sequence[Mapping], tasks: int, data_bytes: int, sample_bytes: int,
                  data_copies: int, extra_activations: int = 0) -> dict[str, int]:
    """Bytes by part (``network``, ``activations``, ``data``) of a run; see the module docstring."""
    states = {"adam": 2}.get(optimizer, 1 if momentum else 0)
    network = params * itemsize * (2 + states)
    for p in plugins:
        name = p.get("name")
        if name == "ewc" and not p.get("online", False):
            network += 2 * params * itemsize * tasks
        elif name == "replay":
            network += int(p.get("memory_size", 200)) * sample_bytes
        else:
            network += _PLUGIN_STATE.get(name, 1) * params * itemsize
    activations = steps * neurons * itemsize * (10 * batch + 3 * EVAL_BATCH) + extra_activations
    return {"network": network, "activations": activations, "data": data_bytes * data_copies}


def check_memory(parts: Mapping[str, int]) -> None:
    """Raise when the estimate exceeds :data:`MEMORY_SHARE` of the machine's memory."""
    total = machine_memory()
    need = sum(parts.values())
    if total is None or need <= MEMORY_SHARE * total:
        return
    detail = ", ".join(f"{k} {_size(v)}" for k, v in parts.items())
    raise NeurosimError(f"the experiment needs about {_size(need)} of memory ({detail}), more than this machine's "
                        f"{_size(total)} allows: make it smaller (model sizes, scenario.tasks, training.steps or "
                        f"batch_size)")


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if n < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError
