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
importable, e.g. a network of a neuron model defined outside neurosim; its memory is not estimated). ``scenario``: ``permuted`` or ``split`` (with
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
or ``"file.py:Class"``, a path relative to the experiment file) with their keyword arguments.
``record`` (optional): ``{"samples": K, "populations": [...]}``, what the
runner records after each task for replay. :func:`check` checks every value's type and bounds
(:mod:`neurosim.runs.checks`); :func:`build` checks, estimates the memory the run needs against the
machine's, then turns a configuration into a ready runner; the configuration is all a run file
needs to rebuild the run: :func:`start` runs one into a new run file, :func:`resume` continues one
from its file, :func:`load` reads one from TOML. A bad configuration ends in one line naming the
value, before any file is created. :func:`start` and
:func:`resume` take ``nproc``: data-parallel training in that many local processes
(:mod:`neurosim.continual.distributed`); a resumed run needs the count it was written with. In a
process group that already exists (started by ``torchrun``) they train data-parallel across it.
"""
from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
import tomllib
from pathlib import Path

from . import checks
from ..continual import distributed
from ..continual.runner import OPTIMIZERS, Continual, ContinualResult, Diverged, Interrupted
from ..datasets.encoding import ENCODINGS
from ..datasets.images import Split, digits, idx_dataset, standardised, subset
from ..datasets.event_sets import as_split, fsdd
from ..errors import NeurosimError
from ..continual.learners import BPTT, EPropLearner, ThreeFactorLearner
from ..continual.plugin import Plugin, available_plugins, create_plugin, plugin_class
from ..continual.scenarios import SPLIT_MODES, Scenario, permuted, split
from ..storage.store import RunStore, StoreWriteError
from ..datasets.temporal_tasks import lag_task
from .builtin import DEFAULT_EXPERIMENT

#: Model name -> (module, network builder, readout function).
MODELS = {"pmnist": ("neurosim.models.pmnist", "build_pmnist", "readout"),
          "delays": ("neurosim.models.delays", "build_delay_net", "scores")}
DATA = ("digits", "mnist", "fashion_mnist", "lags", "fsdd")
EVENT_DATA = ("lags", "fsdd")
IMAGE_OPTIONS = ("n_train", "n_test")
SCENARIOS = ("permuted", "split")
SECTIONS = ("name", "model", "scenario", "training", "plugins", "record")
SCENARIO_KEYS = ("name", "data", "tasks", "seed", "mode", "root", "options")
TRAINING = ("steps", "encoding", "epochs", "batch_size", "lr", "optimizer", "momentum", "seed", "checkpoint_every",
            "learning", "keep", "divergence", "health_every")
RECORD_KEYS = ("samples", "populations")
LEARNERS = {"bptt": BPTT, "three_factor": ThreeFactorLearner, "eprop": EPropLearner}
#: Checkpoints a run file keeps unless the experiment says otherwise (:func:`retention`).
DEFAULT_KEEP = 2

#: The default experiment of ``neurosim run``: five permuted digit tasks on the HLOP paper's
#: network at the size of 8x8 digits.
PERMUTED_DIGITS = {
    "name": DEFAULT_EXPERIMENT,
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


def _model(config: dict) -> tuple[str, dict]:
    """``(name, builder keyword arguments)``; a ``"module:function"`` name keeps its ``readout``."""
    model = checks.table("model", config.get("model"))
    name = model.pop("name", None)
    if isinstance(name, str) and ":" in name:
        return name, model
    return checks.choice("model.name", name, list(MODELS)), model


def _reference(ref, what: str):
    """The function a ``"module:function"`` reference names."""
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


def _builder(name: str, model: dict):
    """``(module or None, network builder, readout)``; takes a reference's ``readout`` out of ``model``."""
    if ":" in name:
        return None, _reference(name, "model.name"), _reference(model.pop("readout", None), "model.readout")
    module, builder, readout = MODELS[name]
    mod = importlib.import_module(module)
    return mod, getattr(mod, builder), getattr(mod, readout)


def _plugin_class(name: str):
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
    return cls


def check(config: dict) -> None:
    """Raise a one-line NeurosimError on the first value of ``config`` of the wrong type or out of
    bounds (:mod:`neurosim.runs.checks`); loads no data and builds nothing."""
    if not isinstance(config, dict):
        raise NeurosimError(f"an experiment must be a table, got {type(config).__name__}")
    checks.known("experiment", config, SECTIONS)
    if "name" in config:
        checks.text("name", config["name"])
    name, model = _model(config)
    checks.keywords("model", _builder(name, model)[1], model, positive_ints=True)
    scenario = checks.table("scenario", config.get("scenario"))
    checks.known("scenario", scenario, SCENARIO_KEYS)
    kind = checks.choice("scenario.name", scenario.get("name", "permuted"), SCENARIOS)
    data = checks.choice("scenario.data", scenario.get("data", "digits"), DATA)
    checks.integer("scenario.tasks", scenario.get("tasks", 5))
    checks.seed("scenario.seed", scenario.get("seed", 0))
    if "mode" in scenario:
        if kind != "split":
            raise NeurosimError("scenario.mode is for split scenarios")
        checks.choice("scenario.mode", scenario["mode"], SPLIT_MODES)
    if "root" in scenario:
        checks.text("scenario.root", scenario["root"])
    options = checks.table("scenario.options", scenario.get("options", {}))
    if data in EVENT_DATA:
        checks.keywords("scenario.options", lag_task if data == "lags" else fsdd, options)
    else:
        checks.known(f"scenario.options ({data})", options, IMAGE_OPTIONS)
        for key, value in options.items():
            checks.integer(f"scenario.options.{key}", value)
    training = checks.table("training", config.get("training"))
    checks.known("training", training, TRAINING)
    for key in ("steps", "epochs", "batch_size"):
        if key in training:
            checks.integer(f"training.{key}", training[key])
    for key in ("checkpoint_every", "health_every"):
        if training.get(key) is not None:
            checks.integer(f"training.{key}", training[key])
    if "lr" in training:
        checks.number("training.lr", training["lr"], 0, checks.LR_MAX, low_open=True)
    optimizer = checks.choice("training.optimizer", training.get("optimizer", "sgd"), OPTIMIZERS)
    if "momentum" in training:
        checks.number("training.momentum", training["momentum"], 0, 1, high_open=True)
        if optimizer != "sgd":
            raise NeurosimError("training.momentum is for the sgd optimizer")
    if "seed" in training:
        checks.seed("training.seed", training["seed"])
    if "encoding" in training:
        checks.choice("training.encoding", training["encoding"], ENCODINGS)
    if "keep" in training:
        try:
            retention(config)
        except NeurosimError as e:
            raise NeurosimError(f"training.{e}") from None
    checks.choice("training.learning", training.get("learning", "bptt"), list(LEARNERS))
    if "divergence" in training:
        try:
            Continual._check_divergence(training["divergence"])
        except NeurosimError as e:
            raise NeurosimError(f"training.{e}") from None
    plugins = config.get("plugins", [])
    if not isinstance(plugins, list):
        raise NeurosimError(f"plugins must be a list of tables, got {type(plugins).__name__}")
    for i, spec in enumerate(plugins):
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise NeurosimError(f"plugins[{i}] must be a table with a name, got {spec!r}")
        cls = _plugin_class(spec["name"])
        checks.keywords(f"plugins[{i}] ({spec['name']})", cls.__init__, {k: v for k, v in spec.items() if k != "name"})
    if "record" in config:
        record = checks.table("record", config["record"])
        checks.known("record", record, RECORD_KEYS)
        checks.integer("record.samples", record.get("samples", 8))
        pops = record.get("populations", [])
        if not isinstance(pops, list) or not all(isinstance(p, str) for p in pops):
            raise NeurosimError(f"record.populations must be a list of population names, got {pops!r}")
    try:
        json.dumps(config, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise NeurosimError(f"the experiment holds a value a run file cannot store: {e}") from None


def _data(name: str, root: str | None, seed: int, options: dict) -> Split:
    """A data set of :data:`DATA`: images standardised, ``options`` ``n_train`` / ``n_test`` for a
    random subset (:func:`~neurosim.datasets.images.subset`); events (``lags``, ``fsdd``) as binned
    counts, ``options`` passed to :func:`~neurosim.datasets.temporal_tasks.lag_task` or
    :func:`~neurosim.datasets.event_sets.fsdd`."""
    if name in EVENT_DATA:
        try:
            if name == "lags":
                opts = _defaults(lag_task, {"seed": seed, **options})
                checks.check_memory({"data": 4 * (opts["n_train"] + opts["n_test"]) * opts["steps"]
                                     * opts["n_channels"]})
                train, test, _ = lag_task(**opts)
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


def _defaults(fn, kwargs: dict) -> dict:
    bound = inspect.signature(fn).bind_partial(**kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _network_size(name: str, builder, kwargs: dict) -> tuple[int, int, int]:
    """(parameters, neurons, extra activation bytes) of a model of :data:`MODELS`, from its settings;
    zeros for a model of one's own."""
    if name not in MODELS:
        return 0, 0, 0
    kw = _defaults(builder, kwargs)
    if name == "pmnist":
        n_in, h, n_out = kw["n_in"], kw["hidden"], kw["n_out"]
        return n_in * h + h * h + h * n_out + 2 * h, 2 * h + n_out, 0
    dims = [kw["n_in"], *kw["hidden"], kw["n_out"]]
    synapses = sum(a * b for a, b in zip(dims, dims[1:]))
    taps = 1 if kw["delays"] == "none" else kw["max_delay"]
    return 2 * synapses + 4 * sum(kw["hidden"]), sum(dims[1:]), 3 * 4 * synapses * taps


def scenario_from(spec: dict, data: Split | None = None) -> Scenario:
    """The scenario of a configuration's ``scenario`` section (``data``: its data set, if loaded)."""
    spec = dict(spec)
    kind, name = spec.get("name", "permuted"), spec.get("data", "digits")
    seed, tasks = spec.get("seed", 0), spec.get("tasks", 5)
    d = data if data is not None else _data(name, spec.get("root"), seed, dict(spec.get("options", {})))
    if kind == "permuted":
        return permuted(d, tasks, seed)
    return split(d, tasks, spec.get("mode", "task"))


def build(config: dict, progress: bool = True, store: RunStore | None = None) -> Continual:
    """A :class:`~neurosim.continual.runner.Continual` runner for ``config`` (module docstring), after
    :func:`check` and a memory estimate against the machine's (data loaded, nothing large built yet)."""
    check(config)
    name, model = _model(config)
    mod, builder, readout = _builder(name, model)
    scenario_spec = dict(config["scenario"])
    training = dict(config["training"])
    data = _data(scenario_spec.get("data", "digits"), scenario_spec.get("root"), scenario_spec.get("seed", 0),
                 dict(scenario_spec.get("options", {})))
    tasks = scenario_spec.get("tasks", 5)
    _check_batch(training.get("batch_size", 64), len(data.train.y))
    params, neurons, extra = _network_size(name, builder, model)
    sample_bytes = data.train.x[0].nbytes if len(data.train.x) else 0
    checks.check_memory(checks.memory_needed(
        params=params, neurons=neurons, itemsize=4, steps=max(training.get("steps", 10), data.train.x.shape[1]
                                                             if data.train.x.ndim == 3 else 0),
        batch=training.get("batch_size", 64), optimizer=training.get("optimizer", "sgd"),
        momentum=training.get("momentum", 0.0), plugins=config.get("plugins", []), tasks=tasks,
        data_bytes=data.train.x.nbytes + data.test.x.nbytes, sample_bytes=sample_bytes,
        data_copies=tasks + 1 if scenario_spec.get("name", "permuted") == "permuted" else 2, extra_activations=extra))
    try:
        network = builder(**model)
    except (TypeError, ValueError, RuntimeError) as e:
        raise NeurosimError(f"model {name!r}: {_first_line(e)}") from None
    plugins = []
    for i, spec in enumerate(config.get("plugins", [])):
        try:
            plugins.append(create_plugin(spec["name"], **{k: v for k, v in spec.items() if k != "name"}))
        except (TypeError, ValueError, RuntimeError) as e:  # NeurosimError too: one line, prefixed
            raise NeurosimError(f"plugins[{i}] ({spec['name']}): {_first_line(e)}") from None
    scenario = scenario_from(scenario_spec, data)
    _check_batch(training.get("batch_size", 64), min(len(t.train.y) for t in scenario.tasks))
    record = config.get("record")
    if record is not None:
        smallest_test = min(len(t.test.y) for t in scenario.tasks)
        if record.get("samples", 8) > smallest_test:
            raise NeurosimError(f"record.samples {record['samples']} is larger than a task's test set "
                                f"({smallest_test} samples)")
    training.pop("keep", None)
    training["learning"] = LEARNERS[training.pop("learning", "bptt")]()
    return Continual(network, scenario, plugins, readout=readout, progress=progress, store=store, record=record,
                     **training)


def _check_batch(batch: int, samples: int) -> None:
    if batch > samples:
        raise NeurosimError(f"training.batch_size {batch} is larger than a task's training set ({samples} samples)")


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


MAX_FILE_BYTES = 1 << 24


def load(path: str | os.PathLike) -> dict:
    """An experiment from a TOML file (the sections of the module docstring as tables, plugins as an
    array of tables, ``[[plugins]]``), checked (:func:`check`)."""
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise NeurosimError(f"{path} is too large for an experiment file ({os.path.getsize(path)} bytes)")
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise NeurosimError(f"cannot read {path}: {e.strerror}") from None
    try:
        source = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NeurosimError(f"{path} is not a text file (not UTF-8 at byte {e.start})") from None
    try:
        config = tomllib.loads(source)
    except tomllib.TOMLDecodeError as e:
        raise NeurosimError(f"{path} is not valid TOML: {_first_line(e)}") from None
    config.setdefault("name", Path(path).stem)
    config.setdefault("plugins", [])
    for spec in config["plugins"] if isinstance(config["plugins"], list) else []:
        name = spec.get("name") if isinstance(spec, dict) else None  # "file.py:Class" relative to the file
        if isinstance(name, str) and ".py:" in name and not os.path.isabs(name):
            spec["name"] = os.path.join(os.path.dirname(os.path.abspath(path)), name)
    check(config)
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
    the latest ``keep`` checkpoints (:func:`retention`; the run file records the choice, so that
    :func:`resume` keeps as many). The experiment is checked and built before the file is created,
    so a bad one leaves nothing behind; a run that fails before its first checkpoint (other than by
    a signal or a failed write) removes its file too. ``callbacks``: the runner's ``task_callbacks``."""
    if nproc != 1:  # launch checks the count
        return distributed.launch(_start, nproc, config, os.fspath(path), overwrite, keep, progress, callbacks)
    return _start(config, path, overwrite, keep, progress, callbacks)


def _start(config, path, overwrite, keep, progress, callbacks) -> ContinualResult:
    runner = build(config, progress)
    runner.task_callbacks.extend(callbacks)
    if distributed.rank() > 0:
        return runner.run()
    keep = retention(config, keep)
    config = copy.deepcopy(config)
    config["training"]["keep"] = "all" if keep is None else keep
    store = RunStore.create(path, config, n_tasks=len(runner.scenario), recordings=runner.recordings(), keep=keep,
                            overwrite=overwrite)
    try:
        with store:
            runner.store = store
            return runner.run()
    except NeurosimError as e:
        if not isinstance(e, (Interrupted, StoreWriteError)) and store.count("checkpoints") == 0:
            os.unlink(path)
        raise


def resume(path: str | os.PathLike, *, progress: bool = True, nproc: int = 1,
           callbacks: tuple = ()) -> ContinualResult:
    """Continue the run in ``path`` from its last complete checkpoint (or from the beginning), keeping
    as many checkpoints as the run file says. The stored experiment is checked and built, and its last
    checkpoint loaded into it, before the file is opened for writing; the file is validated in full
    before anything is written."""
    if nproc != 1:  # launch checks the count
        return distributed.launch(_resume, nproc, os.fspath(path), progress, callbacks)
    return _resume(path, progress, callbacks)


def _resume(path, progress, callbacks) -> ContinualResult:
    config = distributed.broadcast_object(RunStore.read_config(path) if distributed.rank() == 0 else None)
    runner = build(config, progress)
    runner.task_callbacks.extend(callbacks)
    refusal, finished = None, False
    if distributed.rank() == 0:  # the checkpoint must load before the file is opened for writing
        try:
            with RunStore.open(path) as reader:
                runner.store = reader
                found = reader.latest_checkpoint()
                if found is not None:
                    finished = runner.load_checkpoint(*found)["cursor"]["task"] >= len(runner.scenario.tasks)
        except NeurosimError as e:
            refusal = str(e)
        runner.store = None
    refusal, finished = distributed.broadcast_object((refusal, finished))
    if refusal is not None:
        raise NeurosimError(refusal)
    if finished:  # nothing left to train: the file is not opened for writing
        return runner.result(finished_before=True)
    if distributed.rank() > 0:
        return runner.run(resume=True)
    with RunStore.open(path, "a", keep=retention(config)) as store:
        runner.store = store
        return runner.run(resume=True)
