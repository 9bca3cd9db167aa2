"""Fast paths by model: where a neuron model or a projection declares the kernels that run it faster
than its step-by-step torch code, and where populations and the network find them.

Three kinds, each looked up by the exact type of the object (a subclass that changes the dynamics
registers its own, or gets the torch path):

- **sequence** ``fn(population, xs, state) -> (outputs, state) | None``: a whole ``[T, B, n]``
  sequence, differentiable (for example the fused LIF recurrence and its backward pass), with the
  results of the step loop. :meth:`Population.forward <neurosim.neurons.base.Population.forward>`
  calls it.
- **loop** ``fn(population, projections, drive, state, probes, keep_output, progress, *,
  plasticity=None, noise=None, threads=None) -> ((state, last spikes), outputs | None, traces) |
  None``: a population and its recurrent projections over all steps without gradients, with
  their STDP and the population's noise (the compiled event-driven loops,
  :func:`neurosim.kernels.compiled.try_run_compiled`); the network calls it.
- **synapses** ``fn(projection, dtype) -> (indptr, post, weight) | None``: the projection as CSR
  arrays over presynaptic neurons, as the compiled loops read it.

A kernel returns ``None`` for a configuration it does not support (an integration method, a
schedule, a per-neuron parameter it was not written for, a device); the caller then takes the
torch path, so a kernel never has to cover every case and a model never has to know its kernels.

The built-in kernels register themselves when their module is imported: :mod:`neurosim.kernels.fused`
(``sequence``) and :mod:`neurosim.kernels.compiled` (``loop``, ``synapses``; it loads numba). Neither
is imported with :mod:`neurosim`: the registry imports a kind's built-in modules on the first
:func:`register` or :func:`lookup` of that kind, so numba is loaded by the first run that can use a
compiled loop (no gradients), not by training or by the command line.
"""
from __future__ import annotations

import importlib
from typing import Callable

from ..errors import NeurosimError

_KINDS = ("sequence", "loop", "synapses")
_TABLES: dict[str, dict[type, Callable]] = {kind: {} for kind in _KINDS}
_BUILT_IN = {"sequence": ("neurosim.kernels.fused",), "loop": ("neurosim.kernels.compiled",),
             "synapses": ("neurosim.kernels.compiled",)}
_imported: set[str] = set()


def _import_built_in(kind: str) -> None:
    """Import the modules holding the built-in kernels of ``kind`` (once), so that they register first."""
    for module in _BUILT_IN[kind]:
        if module not in _imported:
            _imported.add(module)
            importlib.import_module(module)


def register(kind: str, model: type, fn: Callable) -> None:
    """Declare ``fn`` as the ``kind`` fast path (``"sequence"``, ``"loop"`` or ``"synapses"``) of ``model``
    (replacing a built-in one)."""
    if kind not in _TABLES:
        raise NeurosimError(f"unknown kind of fast path {kind!r}; expected one of: {', '.join(_KINDS)}")
    if not isinstance(model, type) or not callable(fn):
        raise NeurosimError(f"register({kind!r}, model, fn) needs a class and a function, got {model!r}, {fn!r}")
    _import_built_in(kind)
    _TABLES[kind][model] = fn


def lookup(kind: str, obj) -> Callable | None:
    """The ``kind`` fast path registered for ``type(obj)``, or None."""
    _import_built_in(kind)
    return _TABLES[kind].get(type(obj))
