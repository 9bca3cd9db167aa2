"""A continual-learning experiment as data: a JSON-able configuration that builds the whole run.

::

    {"name": "permuted-digits",
     "model": {"name": "pmnist", "n_in": 64, "hidden": 256, "seed": 0},
     "scenario": {"name": "permuted", "data": "digits", "tasks": 5, "seed": 0},
     "training": {"steps": 20, "epochs": 20, "batch_size": 32, "lr": 0.1, "optimizer": "sgd", "seed": 0},
     "plugins": [{"name": "hlop", "rows_per_task": [...], ...}]}

``model``: a builder of :data:`MODELS` and its keyword arguments (``pmnist``: the HLOP paper's
network; ``delays``: the learnable-delay network), or a network builder of one's own named
``"module:function"`` with its scores function as ``readout = "module:function"`` (the module
importable, e.g. a network of a neuron model defined outside neurosim). ``scenario``: ``permuted`` or ``split`` (with
``mode``) over ``data``: ``digits``, ``mnist``, ``fashion_mnist`` (``root`` for IDX files),
standardised with the training set's mean and deviation; or event data fed as sequences of
counts, ``lags`` (generated: classes that differ only in the lags between channels) or ``fsdd``
(spoken digits; ``root`` or ``$NEUROSIM_DATA/fsdd``), with ``options`` for their generator or
loader. Permuting event data permutes its channels. ``training``: the keyword
arguments of :class:`neurosim.continual.runner.Continual`, with ``learning`` one of ``bptt`` (default),
``three_factor`` or ``eprop`` (:mod:`neurosim.continual.learners`). ``plugins``: registered plugin names with
their keyword arguments. ``record`` (optional): ``{"samples": K, "populations": [...]}``, what the
runner records after each task for replay. :func:`build` turns a configuration into a ready runner; the
configuration is all a run file needs to rebuild the run: :func:`start` runs one into a new run
file, :func:`resume` continues one from its file, :func:`load` reads one from TOML.
"""
from __future__ import annotations

import copy
import importlib
import os
import tomllib
from pathlib import Path

from ..continual.runner import Continual, ContinualResult
from ..datasets.images import Split, digits, idx_dataset, standardised
from ..datasets.event_sets import as_split, fsdd
from ..errors import NeurosimError, check_known
from ..continual.learners import BPTT, EPropLearner, ThreeFactorLearner
from ..continual.plugin import create_plugin
from ..continual.scenarios import Scenario, permuted, split
from ..storage.store import RunStore
from ..datasets.temporal_tasks import lag_task

#: Model name -> (module, network builder, readout function).
MODELS = {"pmnist": ("neurosim.models.pmnist", "build_pmnist", "readout"),
          "delays": ("neurosim.models.delays", "build_delay_net", "scores")}
DATA = ("digits", "mnist", "fashion_mnist", "lags", "fsdd")
SCENARIOS = ("permuted", "split")
SECTIONS = ("name", "model", "scenario", "training", "plugins", "record")
LEARNERS = {"bptt": BPTT, "three_factor": ThreeFactorLearner, "eprop": EPropLearner}

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


def _data(name: str, root: str | None, seed: int, options: dict) -> Split:
    """A data set of :data:`DATA`: images standardised; events (``lags``, ``fsdd``) as binned counts,
    ``options`` passed to :func:`~neurosim.datasets.temporal_tasks.lag_task` or :func:`~neurosim.datasets.event_sets.fsdd`."""
    if name in ("lags", "fsdd"):
        try:
            if name == "lags":
                train, test, _ = lag_task(**{"seed": seed, **options})
            else:
                train, test, _ = fsdd(root, **options)
        except TypeError as e:
            raise NeurosimError(f"scenario options for {name!r}: {e}") from None
        return as_split(train, test)
    if options:
        raise NeurosimError(f"scenario options are for the event data sets (lags, fsdd), not {name!r}")
    return standardised(digits(seed=seed) if name == "digits" else idx_dataset(name, root))


def scenario_from(spec: dict) -> Scenario:
    """The scenario of a configuration's ``scenario`` section."""
    spec = dict(spec)
    check_known("scenario", spec, ["name", "data", "tasks", "seed", "mode", "root", "options"])
    kind, data = spec.get("name", "permuted"), spec.get("data", "digits")
    if kind not in SCENARIOS:
        raise NeurosimError(f"unknown scenario {kind!r}; expected one of: {', '.join(SCENARIOS)}")
    if data not in DATA:
        raise NeurosimError(f"unknown data set {data!r}; expected one of: {', '.join(DATA)}")
    seed, tasks = spec.get("seed", 0), spec.get("tasks", 5)
    d = _data(data, spec.get("root"), seed, dict(spec.get("options", {})))
    if kind == "permuted":
        return permuted(d, tasks, seed)
    return split(d, tasks, spec.get("mode", "task"))


def _reference(ref, what: str):
    """The object a ``"module:function"`` reference names."""
    if not isinstance(ref, str) or ref.count(":") != 1:
        raise NeurosimError(f"{what} must be 'module:function', got {ref!r}")
    module, attribute = ref.split(":")
    try:
        found = getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as e:
        raise NeurosimError(f"{what} {ref!r} cannot be imported: {e}") from None
    if not callable(found):
        raise NeurosimError(f"{what} {ref!r} is not a function")
    return found


def build(config: dict, progress: bool = True, store: RunStore | None = None) -> Continual:
    """A :class:`~neurosim.continual.runner.Continual` runner for ``config`` (module docstring)."""
    if not isinstance(config, dict):
        raise NeurosimError(f"an experiment must be a table, got {type(config).__name__}")
    check_known("experiment", config, SECTIONS)
    model = _section(config, "model")
    name = model.pop("name", None)
    if isinstance(name, str) and ":" in name:
        build_network, readout = _reference(name, "model name"), _reference(model.pop("readout", None), "model readout")
    elif name in MODELS:
        module, builder, readout = MODELS[name]
        mod = importlib.import_module(module)
        build_network, readout = getattr(mod, builder), getattr(mod, readout)
    else:
        raise NeurosimError(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}, or 'module:function'")
    try:
        network = build_network(**model)
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
                                       "momentum", "seed", "checkpoint_every", "learning"])
    learning = training.pop("learning", "bptt")
    if learning not in LEARNERS:
        raise NeurosimError(f"unknown learning {learning!r}; expected one of: {', '.join(LEARNERS)}")
    training["learning"] = LEARNERS[learning]()
    return Continual(network, scenario_from(_section(config, "scenario")), plugins,
                     readout=readout, progress=progress, store=store, record=config.get("record"),
                     **training)


def load(path: str | os.PathLike) -> dict:
    """An experiment from a TOML file: the sections of the module docstring as tables, plugins
    as an array of tables (``[[plugins]]``)."""
    try:
        with open(path, "rb") as f:
            config = tomllib.load(f)
    except OSError as e:
        raise NeurosimError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise NeurosimError(f"{path} is not valid TOML: {e}") from None
    config.setdefault("name", Path(path).stem)
    config.setdefault("plugins", [])
    check_known("experiment", config, SECTIONS)
    return config


def start(config: dict, path: str | os.PathLike, *, overwrite: bool = False, keep: int | None = None,
          progress: bool = True) -> ContinualResult:
    """Run ``config`` from the beginning, into a new run file at ``path``."""
    runner = build(config, progress)  # before creating the file: a bad config leaves nothing behind
    with RunStore.create(path, config, n_tasks=len(runner.scenario), recordings=runner.recordings(), keep=keep,
                         overwrite=overwrite) as store:
        runner.store = store
        return runner.run()


def resume(path: str | os.PathLike, *, progress: bool = True) -> ContinualResult:
    """Continue the run in ``path`` from its last complete checkpoint (or from the beginning)."""
    with RunStore.open(path, "a") as store:
        runner = build(store.config, progress, store=store)
        return runner.run(resume=True)
