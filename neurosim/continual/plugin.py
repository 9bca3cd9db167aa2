"""The plugin API: a flat list of no-op hooks, called in list order with the runner first.

::

    before_training
      before_task(task)            add subspace rows, freeze statistics, rebuild the optimiser
        before_epoch
          before_batch
            after_forward(outputs) Hebbian updates from captured presynaptic activity
            before_backward(loss)  -> loss: penalties (EWC, SI)
            after_backward         gradient filters (HLOP, GPM projections)
            before_update / after_update  update filters (metaplasticity; EWC's, SI's proximal steps)
          after_batch
        after_epoch
      after_task(task)             consolidation (Fisher, subspace merge)
      before_eval / after_eval
    after_training
    on_step(t, state)              per simulated step, for online plasticity and monitors
    on_metrics(kind, metrics)      the metrics the run file gets, as it gets them (loggers)

A plugin finds what it acts on through the network (its learnable projections and their
presynaptic populations), never through model-specific code. ``state_dict`` /
``load_state_dict`` hold everything it needs to resume; ``health`` returns figures the runner logs
into the run file (for example how far a projection is from orthonormal).

Plugins register under the entry-point group ``neurosim.plugins``; the built-ins do the same.
:func:`create_plugin` also takes a class by ``"package.module:Class"`` (importable) or
``"path/to/file.py:Class"`` (a file of one's own, no package needed).
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import sys
from importlib.metadata import entry_points

from ..errors import NeurosimError, check_known

ENTRY_POINT_GROUP = "neurosim.plugins"


class Plugin:
    """Base class: every hook does nothing. Override the ones you need."""

    name = "plugin"

    def before_training(self, runner) -> None: ...
    def before_task(self, runner, task: int) -> None: ...
    def before_epoch(self, runner) -> None: ...
    def before_batch(self, runner) -> None: ...
    def after_forward(self, runner, outputs) -> None: ...

    def before_backward(self, runner, loss):
        return loss

    def after_backward(self, runner) -> None: ...
    def before_update(self, runner) -> None: ...
    def after_update(self, runner) -> None: ...
    def after_batch(self, runner) -> None: ...
    def after_epoch(self, runner) -> None: ...
    def after_task(self, runner, task: int) -> None: ...
    def before_eval(self, runner) -> None: ...
    def after_eval(self, runner) -> None: ...
    def after_training(self, runner) -> None: ...
    def on_step(self, runner, t: int, state) -> None: ...

    def on_metrics(self, runner, kind: str, metrics: dict) -> None:
        """``kind`` ``"batch"``: ``task``, ``epoch``, ``step`` (batches so far), ``loss``, after every
        batch; ``"task"``: ``task``, ``step``, ``accuracy`` (row ``task`` of R: the accuracy on every
        task, later ones included) and ``acc``, ``bwt``, ``fwt`` over the tasks trained so far (NaN
        until defined), after each task's evaluation."""

    def health(self, runner) -> dict[str, float]:
        """Figures of the plugin's own health (name -> float), logged into the run file now and then
        by the runner; none by default."""
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise NeurosimError(f"plugin {self.name!r} keeps no state but was given {sorted(state)}")


def available_plugins() -> dict[str, object]:
    """Registered plugin names and their entry points."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def create_plugin(name: str, **kwargs) -> Plugin:
    """Instantiate a plugin: a registered name, ``"package.module:Class"`` or ``"file.py:Class"``
    (a path, relative to the working directory)."""
    if ":" in name:
        cls = plugin_class(name)
    else:
        eps = available_plugins()
        if name not in eps:
            raise NeurosimError(f"unknown plugin {name!r}; registered: {', '.join(sorted(eps)) or 'none'}; "
                                "or give 'package.module:Class' or 'file.py:Class'")
        cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise NeurosimError(f"plugin {name!r} is not a neurosim.Plugin subclass")
    params = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        check_known(f"plugin {name!r}", kwargs, params)
    return cls(**kwargs)


def plugin_class(spec: str):
    """The object ``"package.module:Class"`` or ``"path/to/file.py:Class"`` names (a file is
    loaded once per process)."""
    target, _, attr = spec.rpartition(":")
    if target.endswith(".py"):
        path = os.path.abspath(target)
        if not os.path.isfile(path):
            raise NeurosimError(f"plugin {spec!r}: no such file {path}")
        key = f"neurosim_plugin_{os.path.splitext(os.path.basename(path))[0]}_" \
              f"{hashlib.sha1(path.encode()).hexdigest()[:10]}"
        module = sys.modules.get(key)
        if module is None:
            loader = importlib.util.spec_from_file_location(key, path)
            module = importlib.util.module_from_spec(loader)
            sys.modules[key] = module
            try:
                loader.loader.exec_module(module)
            except BaseException:
                del sys.modules[key]
                raise
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise NeurosimError(f"plugin {spec!r}: cannot import {target} ({e})") from None
    if not attr or not hasattr(module, attr):
        raise NeurosimError(f"plugin {spec!r}: {target} has no {attr or 'class named after the colon'}")
    return getattr(module, attr)


def learnable_projections(network) -> dict:
    """The network's projections whose weight is trained, by connection name."""
    return {name: c.projection for name, c in network.connections.items()
            if getattr(c.projection, "weight", None) is not None and c.projection.weight.requires_grad}


def trained_parameters(network) -> dict:
    """Every parameter of the network that requires a gradient, by its qualified name."""
    return {name: p for name, p in network.named_parameters() if p.requires_grad}
