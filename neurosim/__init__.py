"""neurosim: a discrete-time spiking network simulator in PyTorch with continual-learning plugins.

The layers, each a subpackage, from the bottom: :mod:`~neurosim.neurons` and
:mod:`~neurosim.projections` (models), :mod:`~neurosim.kernels` (their fast paths),
:mod:`~neurosim.network` (graph, plan, probes), then :mod:`~neurosim.learning` (local rules,
homeostasis), :mod:`~neurosim.datasets`, :mod:`~neurosim.reservoirs` and :mod:`~neurosim.storage`
(the run file), then :mod:`~neurosim.continual` (the runner and its plugin API), the built-in
strategies (:mod:`neurosim.plugins`) and reference networks (:mod:`neurosim.models`), then
:mod:`~neurosim.runs` (experiment files, replay) and :mod:`~neurosim.cli`.

The names below are the public API, one import for the main tasks: building and running a network
(neurons, projections, :class:`Network`, :class:`Probe`), local learning rules, data sets, continual
learning (:class:`Continual`, scenarios, learners, plugins) and the run file (:class:`RunStore`).
The subpackages ``datasets``, ``learning``, ``reservoirs``, ``plugins``, ``models`` and ``runs`` (with
``runs.experiment`` and ``runs.replay``) are attributes too, e.g. ``neurosim.models.pmnist``.
"""
import importlib

from .version import __version__

# Where each public name lives. Names are imported on first use (PEP 562), so that ``import neurosim``
# and the command line load neither torch nor anything else they do not need.
_EXPORTS = {
    "errors": ("NeurosimError",),
    "events": ("SpikeEvents",),
    "network": ("GaussianNoise", "Network", "PoissonNoise", "Probe", "RunResult"),
    "neurons": ("ALIF", "DSR", "LI", "LIF", "AdaptiveThresholdLIF", "AdaptiveThresholdLIFParameters", "ALIFParameters",
                "Izhikevich", "IzhikevichParameters", "LIFParameters", "LIParameters", "Population", "surrogate"),
    "projections": ("Chain", "Conv2d", "Delayed", "Dense", "Projection", "Sparse"),
    "projections.plasticity": ("STDPParameters",),
    "projections.eligibility": ("ThreeFactorParameters",),
    "learning": ("EProp", "FORCE", "STDP", "ThreeFactor"),
    "datasets": ("Dataset", "Split", "digits", "fsdd", "generated", "idx_dataset", "lag_task", "standardised"),
    "continual": ("BPTT", "Continual", "ContinualResult", "EPropLearner", "Plugin", "Scenario", "Task",
                  "ThreeFactorLearner", "available_plugins", "create_plugin", "permuted", "split"),
    "storage": ("RunStore",),
}
_SUBPACKAGES = ("datasets", "learning", "models", "plugins", "reservoirs", "runs")
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "NeurosimError", "SpikeEvents", "Network", "Probe", "RunResult", "GaussianNoise", "PoissonNoise", "Population",
    "LIF", "LIFParameters", "ALIF", "ALIFParameters", "AdaptiveThresholdLIF", "AdaptiveThresholdLIFParameters", "DSR",
    "Izhikevich", "IzhikevichParameters", "LI", "LIParameters", "surrogate", "Projection",
    "Dense", "Sparse", "Conv2d", "Delayed", "Chain", "STDP", "STDPParameters", "ThreeFactor",
    "ThreeFactorParameters", "EProp", "FORCE",
    "Dataset", "Split", "digits", "standardised", "generated", "idx_dataset", "fsdd", "lag_task", "BPTT",
    "ThreeFactorLearner", "EPropLearner", "Continual", "ContinualResult", "Plugin", "available_plugins",
    "create_plugin", "Scenario", "Task", "permuted", "split", "RunStore", "datasets", "learning", "reservoirs",
    "plugins", "models", "runs", "__version__",
]


def __getattr__(name: str):
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)  # which sets the attribute
    if name not in _HOME:
        raise AttributeError(f"module 'neurosim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
