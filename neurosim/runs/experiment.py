"""A continual-learning experiment as data: a JSON-able configuration that builds the whole run.

::

    {"name": "permuted-digits",
     "model": {"name": "pmnist", "n_in": 64, "hidden": 256, "seed": 0},
     "scenario": {"name": "permuted", "data": "digits", "tasks": 5, "seed": 0},
     "training": {"steps": 20, "epochs": 20, "batch_size": 32, "lr": 0.1, "optimizer": "sgd", "seed": 0},
     "plugins": [{"name": "hlop", "rows_per_task": [...], ...}]}

``model``: a builder of :data:`MODELS` and its keyword arguments (``pmnist``: the HLOP paper's
network; ``delays``: the learnable-delay network), ``dtype`` as ``"float32"`` or ``"float64"``. ``scenario``: ``permuted`` or ``split`` (with
``mode``) over ``data``: ``digits``, ``mnist``, ``fashion_mnist`` (``root`` for IDX files;
``options = {n_train = N, n_test = M}`` for a random subset), standardised with the training
set's mean and deviation; or event data fed as sequences of
counts, ``lags`` (generated: classes that differ only in the lags between channels) or ``fsdd``
(spoken digits; ``root`` or ``$NEUROSIM_DATA/fsdd``), with ``options`` for their generator or
loader. Permuting event data permutes its channels. ``training``: the keyword
arguments of :class:`neurosim.continual.runner.Continual`, with ``learning`` one of ``bptt`` (default),
``three_factor`` or ``eprop`` (:mod:`neurosim.continual.learners`), and ``keep``, how many of the latest
checkpoints the run file keeps (:func:`retention`: 2 by default, all when the run records for
replay; ``"all"`` keeps every one). ``plugins``: plugins by name (registered, ``"package.module:Class"``
or ``"file.py:Class"``, a path relative to the experiment file) with their keyword arguments. ``record`` (optional): ``{"samples": K, "populations": [...]}``, what the
runner records after each task for replay. :func:`build` turns a configuration into a ready runner; the
configuration is all a run file needs to rebuild the run: :func:`start` runs one into a new run
file, :func:`resume` continues one from its file, :func:`load` reads one from TOML. Both take
``nproc``: data-parallel training in that many local processes
(:mod:`neurosim.continual.distributed`); a resumed run needs the count it was written with. In a
process group that already exists (started by ``torchrun``) they train data-parallel across it.
"""
from __future__ import annotations

import copy
import importlib
import os
import tomllib
from pathlib import Path

import torch

from ..continual import distributed
from ..continual.runner import Continual, ContinualResult
from ..datasets.images import Split, digits, idx_dataset, standardised, subset
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
IMAGE_OPTIONS = ("n_train", "n_test")
SCENARIOS = ("permuted", "split")
SECTIONS = ("name", "model", "scenario", "training", "plugins", "record")
LEARNERS = {"bptt": BPTT, "three_factor": ThreeFactorLearner, "eprop": EPropLearner}
DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: Checkpoints a run file keeps unless the experiment says otherwise (:func:`retention`).
DEFAULT_KEEP = 2

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
    """A data set of :data:`DATA`: images standardised, ``options`` ``n_train`` / ``n_test`` for a
    random subset (:func:`~neurosim.datasets.images.subset`); events (``lags``, ``fsdd``) as binned
    counts, ``options`` passed to :func:`~neurosim.datasets.temporal_tasks.lag_task` or
    :func:`~neurosim.datasets.event_sets.fsdd`."""
    if name in ("lags", "fsdd"):
        try:
            if name == "lags":
                train, test, _ = lag_task(**{"seed": seed, **options})
            else:
                train, test, _ = fsdd(root, **options)
        except TypeError as e:
            raise NeurosimError(f"scenario options for {name!r}: {e}") from None
        return as_split(train, test)
    for key in options:
        if key not in IMAGE_OPTIONS:
            raise NeurosimError(f"unknown {name} option {key!r}; image data sets take: {', '.join(IMAGE_OPTIONS)}")
    data = digits(seed=seed) if name == "digits" else idx_dataset(name, root)
    return standardised(subset(data, seed=seed, name=name, **options))


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


def build(config: dict, progress: bool = True, store: RunStore | None = None) -> Continual:
    """A :class:`~neurosim.continual.runner.Continual` runner for ``config`` (module docstring)."""
    if not isinstance(config, dict):
        raise NeurosimError(f"an experiment must be a table, got {type(config).__name__}")
    check_known("experiment", config, SECTIONS)
    model = _section(config, "model")
    name = model.pop("name", None)
    if name not in MODELS:
        raise NeurosimError(f"unknown model {name!r}; expected one of: {', '.join(MODELS)}")
    module, builder, readout = MODELS[name]
    if "dtype" in model:
        if model["dtype"] not in DTYPES:
            raise NeurosimError(f"unknown model dtype {model['dtype']!r}; expected one of: {', '.join(DTYPES)}")
        model["dtype"] = DTYPES[model["dtype"]]
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
                                       "momentum", "seed", "checkpoint_every", "learning", "keep"])
    retention(config)
    training.pop("keep", None)
    learning = training.pop("learning", "bptt")
    if learning not in LEARNERS:
        raise NeurosimError(f"unknown learning {learning!r}; expected one of: {', '.join(LEARNERS)}")
    training["learning"] = LEARNERS[learning]()
    return Continual(network, scenario_from(_section(config, "scenario")), plugins,
                     readout=getattr(mod, readout), progress=progress, store=store, record=config.get("record"),
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
    for spec in config["plugins"]:  # "file.py:Class" relative to the experiment file
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str) and ".py:" in name and not os.path.isabs(name):
            spec["name"] = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    return config


def retention(config: dict, keep: int | str | None = None) -> int | None:
    """How many of the latest checkpoints a run file keeps (None: all): ``keep`` when given, else
    ``training.keep`` of ``config`` (a positive integer or ``"all"``), else :data:`DEFAULT_KEEP`,
    or all when the experiment records for replay (which loads the checkpoint of every task's end)."""
    if keep is None:
        keep = config.get("training", {}).get("keep") if isinstance(config.get("training"), dict) else None
    if keep is None:
        return None if config.get("record") is not None else DEFAULT_KEEP
    if keep == "all":
        return None
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise NeurosimError(f"keep must be a positive integer or 'all', got {keep!r}")
    return keep


def start(config: dict, path: str | os.PathLike, *, overwrite: bool = False, keep: int | str | None = None,
          progress: bool = True, nproc: int = 1, callbacks: tuple = ()) -> ContinualResult:
    """Run ``config`` from the beginning, into a new run file at ``path`` (written by rank 0), keeping
    the latest ``keep`` checkpoints (:func:`retention`; the run file's configuration records the
    choice, so that :func:`resume` keeps as many). ``callbacks``: the runner's ``task_callbacks``."""
    if nproc != 1:  # launch checks the count
        return distributed.launch(_start, nproc, config, os.fspath(path), overwrite, keep, progress, callbacks)
    return _start(config, path, overwrite, keep, progress, callbacks)


def _start(config, path, overwrite, keep, progress, callbacks) -> ContinualResult:
    runner = build(config, progress)  # before creating the file: a bad config leaves nothing behind
    runner.task_callbacks.extend(callbacks)
    if distributed.rank() > 0:
        return runner.run()
    keep = retention(config, keep)
    config = copy.deepcopy(config)
    config["training"]["keep"] = "all" if keep is None else keep
    with RunStore.create(path, config, n_tasks=len(runner.scenario), recordings=runner.recordings(), keep=keep,
                         overwrite=overwrite) as store:
        runner.store = store
        return runner.run()


def resume(path: str | os.PathLike, *, progress: bool = True, nproc: int = 1, callbacks: tuple = ()) -> ContinualResult:
    """Continue the run in ``path`` from its last complete checkpoint (or from the beginning)."""
    if nproc != 1:  # launch checks the count
        return distributed.launch(_resume, nproc, os.fspath(path), progress, callbacks)
    return _resume(path, progress, callbacks)


def _resume(path, progress, callbacks) -> ContinualResult:
    store = RunStore.open(path, "a") if distributed.rank() == 0 else None
    try:
        if store is not None:
            store.keep = retention(store.config)
        runner = build(distributed.broadcast_object(store.config if store else None), progress, store=store)
        runner.task_callbacks.extend(callbacks)
        return runner.run(resume=True)
    finally:
        if store is not None:
            store.close()
