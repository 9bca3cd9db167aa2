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
from .errors import NeurosimError
from .events import SpikeEvents
from .kernels import compiled as _compiled, fused as _fused  # noqa: F401  (register the built-in fast paths)
from .network import GaussianNoise, Network, PoissonNoise, Probe, RunResult
from .neurons import (ALIF, DSR, LI, LIF, AdaptiveThresholdLIF, AdaptiveThresholdLIFParameters, ALIFParameters,
                      Izhikevich, IzhikevichParameters, LIFParameters, LIParameters, Population, surrogate)
from .projections import Chain, Conv2d, Delayed, Dense, Projection, Sparse
from .projections.plasticity import STDPParameters
from .learning import EProp, FORCE, STDP, ThreeFactor
from .datasets import Dataset, Split, digits, fsdd, generated, idx_dataset, lag_task, standardised
from .continual import (BPTT, Continual, ContinualResult, EPropLearner, Plugin, Scenario, Task, ThreeFactorLearner,
                        available_plugins, create_plugin, permuted, split)
from .storage import RunStore
from . import datasets, learning, models, plugins, reservoirs, runs
from .version import __version__

__all__ = [
    "NeurosimError", "SpikeEvents", "Network", "Probe", "RunResult", "GaussianNoise", "PoissonNoise", "Population",
    "LIF", "LIFParameters", "ALIF", "ALIFParameters", "AdaptiveThresholdLIF", "AdaptiveThresholdLIFParameters", "DSR",
    "Izhikevich", "IzhikevichParameters", "LI", "LIParameters", "surrogate", "Projection",
    "Dense", "Sparse", "Conv2d", "Delayed", "Chain", "STDP", "STDPParameters", "ThreeFactor", "EProp", "FORCE",
    "Dataset", "Split", "digits", "standardised", "generated", "idx_dataset", "fsdd", "lag_task", "BPTT",
    "ThreeFactorLearner", "EPropLearner", "Continual", "ContinualResult", "Plugin", "available_plugins",
    "create_plugin", "Scenario", "Task", "permuted", "split", "RunStore", "datasets", "learning", "reservoirs",
    "plugins", "models", "runs", "__version__",
]
