"""A continual-learning experiment as data: a JSON-able configuration that builds the whole run.

::

    {"name": "permuted-digits",
     "model": {"name": "pmnist", "n_in": 64, "hidden": 256, "seed": 0},
     "scenario": {"name": "permuted", "data": "digits", "tasks": 5, "seed": 0},
     "training": {"steps": 20, "epochs": 20, "batch_size": 32, "lr": 0.1, "optimizer": "sgd", "seed": 0},
     "plugins": [{"name": "hlop", "rows_per_task": [...], ...}]}

``model``: a builder of :data:`MODELS` and its keyword arguments. ``scenario``: ``permuted`` or
``split`` (with ``mode``) over ``data`` (``digits``, ``mnist``, ``fashion_mnist``; ``root`` for
IDX files), standardised with the training set's mean and deviation. ``training``: the keyword
arguments of :class:`neurosim.continual.Continual`. ``plugins``: registered plugin names with
their keyword arguments. :func:`build` turns a configuration into a ready runner; the
configuration is all a run file needs to rebuild the run.
"""
from __future__ import annotations

import copy
import importlib

from .continual import Continual
from .datasets import digits, idx_dataset, standardised
from .errors import NeurosimError, check_known
from .plugin import create_plugin
from .scenarios import Scenario, permuted, split

#: Model name -> (module, network builder, readout function).
MODELS = {"pmnist": ("neurosim.models.pmnist", "build_pmnist", "readout")}
DATA = ("digits", "mnist", "fashion_mnist")
SCENARIOS = ("permuted", "split")
SECTIONS = ("name", "model", "scenario", "training", "plugins")

#: The default experiment of ``neurosim run``: five permuted digit tasks on the HLOP paper's
#: network at the size of 8x8 digits.
PERMUTED_DIGITS = {
    "name": "permuted-digits",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 256, "seed": 0},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 5, "seed": 0},
    "training": {"steps": 20, "epochs": 20, "batch_size": 32, "lr": 0.1, "optimizer": "sgd", "seed": 0},
    "plugins": [],
}
#: HLOP for :data:`PERMUTED_DIGITS`: the paper's options, rows scaled to the 64-pixel input.
HLOP_DIGITS = {"name": "hlop", "rows_per_task": [[16, 60, 40]] + [[8, 20, 15]] * 4,
               "lr_hebb": {"x_to_h1": 0.001, "h1_to_h2": 0.01, "h2_to_out": 0.01}, "rates": 1.0,
               "form": "gradient"}


def with_plugins(config: dict, plugins: list[dict]) -> dict:
    """A copy of ``config`` with ``plugins`` replaced."""
    out = copy.deepcopy(config)
    out["plugins"] = copy.deepcopy(plugins)
    return out


def _section(config: dict, key: str) -> dict:
    value = config.get(key)
    if not isinstance(value, dict):
        raise NeurosimError(f"experiment section {key!r} must be a table, got {type(value).__name__}")
    return dict(value)


def scenario_from(spec: dict) -> Scenario:
    """The scenario of a configuration's ``scenario`` section."""
    spec = dict(spec)
    check_known("scenario", spec, ["name", "data", "tasks", "seed", "mode", "root"])
    kind, data = spec.get("name", "permuted"), spec.get("data", "digits")
    if kind not in SCENARIOS:
        raise NeurosimError(f"unknown scenario {kind!r}; expected one of: {', '.join(SCENARIOS)}")
    if data not in DATA:
        raise NeurosimError(f"unknown data set {data!r}; expected one of: {', '.join(DATA)}")
    seed, tasks = spec.get("seed", 0), spec.get("tasks", 5)
    d = standardised(digits(seed=seed) if data == "digits" else idx_dataset(data, spec.get("root")))
    if kind == "permuted":
        return permuted(d, tasks, seed)
    return split(d, tasks, spec.get("mode", "task"))


def build(config: dict, progress: bool = True) -> Continual:
    """A :class:`~neurosim.continual.Continual` runner for ``config`` (module docstring)."""
    if not isinstance(config, dict):
        raise NeurosimError(f"an experiment must be a table, got {type(config).__name__}")
    check_known("experiment", config, SECTIONS)
    model = _section(config, "model")
    name = model.pop("name", None)
    if name not in MODELS:
        raise NeurosimError(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}")
    module, builder, readout = MODELS[name]
    mod = importlib.import_module(module)
    try:
        network = getattr(mod, builder)(**model)
    except TypeError as e:
        raise NeurosimError(f"model {name!r}: {e}") from None
    plugins = []
    for spec in config.get("plugins", []):
        if not isinstance(spec, dict) or "name" not in spec:
            raise NeurosimError(f"each plugin must be a table with a name, got {spec!r}")
        options = {k: v for k, v in spec.items() if k != "name"}
        try:
            plugins.append(create_plugin(spec["name"], **options))
        except TypeError as e:
            raise NeurosimError(f"plugin {spec['name']!r}: {e}") from None
    training = _section(config, "training")
    check_known("training", training, ["steps", "encoding", "epochs", "batch_size", "lr", "optimizer",
                                       "momentum", "seed"])
    return Continual(network, scenario_from(_section(config, "scenario")), plugins,
                     readout=getattr(mod, readout), progress=progress, **training)
