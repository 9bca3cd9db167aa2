"""What every neuron model shares: validated parameter records and the thin stateful module.

A model is a pure step function ``step(x, state, params, dt) -> (z, state)`` over immutable
tuples, plus a :class:`Population` that owns the parameters, the time step and the spike
function, and loops the step over a ``[T, B, N]`` sequence.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch
from torch import nn

from ..errors import NeurosimError, check_finite, check_known, check_last_dim, check_positive
from ..kernels.registry import lookup
from .surrogate import Surrogate, surrogate


def as_param(x: Any, dtype: torch.dtype | None = None, name: str = "parameter") -> Any:
    """Numbers stay Python floats; sequences and arrays become tensors of at most one dimension
    (one value per neuron). Raises a :class:`NeurosimError` naming ``name`` for anything else,
    for more dimensions and for NaN or infinite values."""
    if isinstance(x, bool) or x is None or isinstance(x, str):
        raise NeurosimError(f"{name} must be a number or one value per neuron, got {x!r}")
    if isinstance(x, (int, float)):
        if not math.isfinite(x):
            raise NeurosimError(f"{name} must be finite, got {x!r}")
        return float(x)
    try:
        t = torch.as_tensor(x)
    except (TypeError, ValueError, RuntimeError):
        raise NeurosimError(f"{name} must be a number or one value per neuron, got {type(x).__name__}") from None
    if t.dtype == torch.bool or t.is_complex() or t.dim() > 1:
        raise NeurosimError(f"{name} must be a number or a 1-d tensor of one real value per neuron, "
                            f"got {'shape ' + str(tuple(t.shape)) if t.dim() > 1 else t.dtype}")
    check_finite(name, t)
    return t.to(dtype) if dtype is not None else t


class NeuronParameters:
    """Base of the parameter records (frozen dataclasses).

    Fields named in ``per_neuron`` take a number or a tensor of one value per neuron (converted by
    :func:`as_param`; ``None`` passes for an optional one); every other field must be a single
    value, and a tensor, array or sequence there is refused naming the field. The record then runs ``validate`` (value checks, choices).
    The population checks the length of per-neuron tensors when it takes the record
    (:meth:`Population.set_params`).
    """

    per_neuron: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in self.per_neuron:
                if value is not None:  # an optional field left unset
                    object.__setattr__(self, f.name, as_param(value, name=f.name))
            elif isinstance(value, (torch.Tensor, np.ndarray, list, tuple)):
                raise NeurosimError(f"{f.name} must be a single value for the whole population, "
                                    f"got {type(value).__name__} (per-neuron values: {', '.join(self.per_neuron)})")
        self.validate()

    def validate(self) -> None:
        """Value checks of the model; raise :class:`NeurosimError` naming the field."""


def params_from_kwargs(cls, params, kwargs: dict):
    """Build a parameter record of type ``cls`` from a record and/or keyword overrides."""
    names = [f.name for f in dataclasses.fields(cls)]
    check_known(cls.__name__.removesuffix("Parameters"), kwargs, names)
    if params is None:
        return cls(**kwargs)
    if not isinstance(params, cls):
        raise NeurosimError(f"params must be {cls.__name__}, got {type(params).__name__}")
    return dataclasses.replace(params, **kwargs) if kwargs else params


def check_per_neuron(name: str, value: Any, n: int) -> None:
    """Raise unless ``value`` is a number or a tensor of shape ``()``, ``(1,)`` or ``(n,)``."""
    if isinstance(value, torch.Tensor) and value.dim() > 0 and tuple(value.shape) not in ((1,), (n,)):
        raise NeurosimError(f"parameter {name} has {value.shape[-1] if value.dim() == 1 else tuple(value.shape)} "
                            f"values for a population of {n} neurons")


class Population(nn.Module):
    """A group of ``n`` neurons of one model.

    Subclasses set ``step_fn`` (the pure step), ``State`` and implement ``initial_state``; a
    faster way to run a whole sequence is declared in :mod:`neurosim.kernels.registry`, not here.
    ``observables`` lists what a probe may record: ``"spikes"`` plus the state fields.
    ``spiking``: the output is binary events, which projections may propagate event-driven.
    """

    step_fn = None
    spiking = True

    def __init__(self, n: int, params, dt: float | None, spike_fn: str | Surrogate, dtype: torch.dtype):
        super().__init__()
        if not isinstance(n, int) or n < 1:
            raise NeurosimError(f"population size must be a positive integer, got {n!r}")
        if dtype not in (torch.float32, torch.float64):
            raise NeurosimError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.n = n
        self.dtype = dtype
        self.spike_fn = surrogate(spike_fn)
        self._dt: float | None = None
        if dt is not None:
            self.dt = dt
        self._tensor_fields: list[str] = []
        self.set_params(params)

    @property
    def dt(self) -> float:
        if self._dt is None:
            raise NeurosimError(f"{type(self).__name__} has no dt: pass dt= or add it to a Network")
        return self._dt

    @dt.setter
    def dt(self, value: float) -> None:
        check_positive("dt", value)
        self._dt = float(value)

    def set_params(self, params) -> None:
        """Replace the parameter record; per-neuron tensors (checked: one value or one per neuron)
        become buffers of the population's dtype (they follow ``.to()``)."""
        tensors = {}
        for f in dataclasses.fields(params):
            v = getattr(params, f.name)
            if isinstance(v, torch.Tensor):
                tensors[f.name] = self.per_neuron_value(f.name, v)
        for name in self._tensor_fields:
            delattr(self, "_p_" + name)
        for name, v in tensors.items():
            self.register_buffer("_p_" + name, v)
        self._tensor_fields = list(tensors)
        self._params = params

    def per_neuron_value(self, name: str, value: Any) -> Any:
        """``value`` as a number or a tensor of the population's dtype of shape ``()``, ``(1,)`` or ``(n,)``."""
        value = as_param(value, self.dtype, name)
        check_per_neuron(name, value, self.n)
        return value

    @property
    def params(self):
        if not self._tensor_fields:
            return self._params
        return dataclasses.replace(self._params, **{k: getattr(self, "_p_" + k) for k in self._tensor_fields})

    @property
    def observables(self) -> tuple[str, ...]:
        return ("spikes",) + tuple(self.State._fields)

    def initial_state(self, batch: int, device=None) -> NamedTuple:
        raise NotImplementedError

    def filled(self, value, batch: int, device=None) -> torch.Tensor:
        """A ``[batch, n]`` state tensor of the population's dtype holding ``value`` (a number or per-neuron tensor)."""
        zeros = torch.zeros(batch, self.n, dtype=self.dtype, device=device)
        return zeros + (value.to(zeros.device) if isinstance(value, torch.Tensor) else value)

    def check_input(self, x: torch.Tensor, ndim=(2, 3)) -> None:
        if not isinstance(x, torch.Tensor):
            raise NeurosimError(f"input must be a torch.Tensor, got {type(x).__name__}")
        check_last_dim(f"input to {type(self).__name__}({self.n})", x, self.n, ndim)
        check_finite(f"input to {type(self).__name__}({self.n})", x)

    def step(self, x: torch.Tensor, state: NamedTuple | None = None):
        """One time step on ``x`` of shape ``[B, n]``; returns ``(z, state)``."""
        if state is None:
            state = self.initial_state(x.shape[0], x.device)
        return type(self).step_fn(x.to(self.dtype), state, self.params, self.dt, self.spike_fn)

    def forward(self, xs: torch.Tensor, state: NamedTuple | None = None):
        """Run over a whole sequence ``xs`` of shape ``[T, B, n]``; returns ``(zs [T, B, n], state)``:
        by the sequence kernel registered for this model when it takes the input (same results),
        otherwise by :meth:`steps`."""
        fast = lookup("sequence", self)
        out = None if fast is None else fast(self, xs, state)
        return self.steps(xs, state) if out is None else out

    def steps(self, xs: torch.Tensor, state: NamedTuple | None = None):
        """:meth:`forward` step by step: the model's step function at every step of ``xs``."""
        self.check_input(xs, ndim=3)
        xs = xs.to(self.dtype)
        if state is None:
            state = self.initial_state(xs.shape[1], xs.device)
        fn, p, dt, sf = type(self).step_fn, self.params, self.dt, self.spike_fn
        out = []
        for x in xs:
            z, state = fn(x, state, p, dt, sf)
            out.append(z)
        return torch.stack(out), state

    def extra_repr(self) -> str:
        return f"n={self.n}, dt={self._dt}, {self._params}"
