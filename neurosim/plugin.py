"""The plugin API: a flat list of no-op hooks, called in list order with the runner first.

::

    before_training
      before_task(task)            add subspace rows, freeze statistics, rebuild the optimiser
        before_epoch
          before_batch
            after_forward(outputs) Hebbian updates from captured presynaptic activity
            before_backward(loss)  -> loss: penalties (EWC, SI)
            after_backward         gradient filters (HLOP projection, metaplasticity)
            before_update / after_update
          after_batch
        after_epoch
      after_task(task)             consolidation (Fisher, subspace merge)
      before_eval / after_eval
    after_training
    on_step(t, state)              per simulated step, for online plasticity and monitors

A plugin finds what it acts on through the network (its learnable projections and their
presynaptic populations), never through model-specific code. ``state_dict`` /
``load_state_dict`` hold everything it needs to resume.

Plugins register under the entry-point group ``neurosim.plugins``; the built-ins do the same.
"""
from __future__ import annotations

from importlib.metadata import entry_points

from .errors import NeurosimError
from .neurons import Population
from .projections import Delayed

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

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        if state:
            raise NeurosimError(f"plugin {self.name!r} keeps no state but was given {sorted(state)}")


def available_plugins() -> dict[str, object]:
    """Registered plugin names and their entry points."""
    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def create_plugin(name: str, **kwargs) -> Plugin:
    """Instantiate a registered plugin by name."""
    eps = available_plugins()
    if name not in eps:
        raise NeurosimError(f"unknown plugin {name!r}; registered: {', '.join(sorted(eps)) or 'none'}")
    cls = eps[name].load()
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise NeurosimError(f"entry point {name!r} does not name a neurosim.Plugin subclass")
    return cls(**kwargs)


def learnable_projections(network) -> dict:
    """The network's projections whose weight is trained, by connection name."""
    return {name: c.projection for name, c in network.connections.items()
            if getattr(c.projection, "weight", None) is not None and c.projection.weight.requires_grad}


def freeze_all_but_weights(network) -> None:
    """Let only the projections' weights learn: modules with running statistics (batch
    normalisation) go to eval mode and stop learning, as do neuron populations (thresholds, time
    constants) and the positions of delayed projections; every other 1-D parameter (biases, norm
    affines; not projection weights, which are 1-D in Sparse) stops learning. Done by
    ``requires_grad = False``, so an optimiser built afterwards leaves them out; call it again
    after anything that puts the network back in training mode."""
    weights = {id(c.projection.weight) for c in network.connections.values()
               if getattr(c.projection, "weight", None) is not None}
    for module in network.modules():
        if isinstance(module, Delayed) and module.positions is not None:
            module.positions.requires_grad_(False)
        stats = getattr(module, "running_mean", None) is not None
        if stats:
            module.eval()
        if stats or isinstance(module, Population):
            module.requires_grad_(False)
    for p in network.parameters():
        if p.dim() <= 1 and id(p) not in weights:
            p.requires_grad_(False)


def trained_parameters(network) -> dict:
    """Every parameter of the network that requires a gradient, by its qualified name."""
    return {name: p for name, p in network.named_parameters() if p.requires_grad}
