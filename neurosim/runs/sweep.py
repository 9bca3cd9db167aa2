"""Hyperparameter sweeps of continual-learning experiments on Ray Tune.

A sweep is a base experiment (:mod:`neurosim.runs.experiment`), a search space over its keys and
how to search it, written as TOML::

    name = "ewc-lambda"
    experiment = "experiment.toml"   # a path relative to this file, or an inline [experiment] table
    storage = "sweeps"               # where trials live: STORAGE/NAME/<trial>/run.h5 (default: beside this file)

    [search]
    algorithm = "grid"               # grid | random | optuna
    samples = 1                      # random, optuna: trials (a grid is run once)
    metric = "acc"                   # acc | bwt | fwt | loss, reported after every task
    mode = "max"
    concurrency = 2                  # trials at once
    scheduler = "fifo"               # or "asha": stops poor trials at task boundaries
    grace_tasks = 1                  # asha: tasks every trial runs before it may be stopped
    max_failures = 2                 # retries of a trial whose worker died
    seed = 0

    [resources]                      # per trial
    cpu = 1

    [space]
    "training.seed" = [0, 1, 2]                        # a list: grid (a choice for random / optuna)
    "plugins.ewc.lam" = { loguniform = [1.0, 1e4] }    # also uniform, randint, quniform, choice, grid
    "training.lr" = { choice = [0.05, 0.1] }
    method = ["baseline", "ewc"]                       # a whole plugin list, named in [methods]

    [methods]
    baseline = []
    ewc = [{ name = "ewc", lam = 100.0 }]

A key is a dotted path into the experiment: ``section.key`` (``training.lr``, ``model.hidden``),
``plugins.NAME.key`` (the option ``key`` of every plugin named ``NAME`` in the trial's plugin list;
ignored for a method whose list has no such plugin), or ``method``, which replaces the plugin list.
Tune draws a random domain anew for every trial, seeds included: only values given as a list (a
grid) are shared by several seeds, and only those give :func:`groups` a mean over seeds. A grid
search of grids only runs each distinct run once: points that differ only in values for plugins
their method does not run are one trial (:func:`grid_points`).

Every trial trains its experiment into one run file, ``run.h5`` in a folder of the sweep's
directory ``STORAGE/NAME`` named after the method and a hash of the trial's values, beside
``params.json`` (the values); on a cluster, ``storage`` must be a folder every node sees. The run
file is the trial's checkpoint: after every task the trial reports ACC, BWT and FWT so far and the
task's mean training loss to Tune, with a Tune checkpoint that names the task, so a scheduler
(ASHA) can stop a poor trial at a task boundary. A trial whose worker dies is retried by Tune
(``max_failures``) and resumes its run file, bit for bit as if never interrupted; a sweep whose
driver died continues with ``resume=True`` (Tune's experiment restore) without rerunning finished
trials. :func:`collect` reads back every trial's run file for the report.

Trials reuse their worker processes (Tune's ``reuse_actors``), so imports are paid once per worker.
Ray is an optional dependency (``pip install neurosim[sweep]``), imported when a sweep starts.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..continual.metrics import acc, bwt, fwt
from ..continual.plugin import create_plugin
from ..errors import NeurosimError, check_int, check_positive, optional_import
from ..storage.store import RunStore
from . import experiment

SEARCHES = ("grid", "random", "optuna")
SCHEDULERS = ("fifo", "asha")
METRICS = ("acc", "bwt", "fwt", "loss")
DOMAINS = ("grid", "choice", "uniform", "loguniform", "randint", "quniform")
RUN_FILE = "run.h5"
PARAMS_FILE = "params.json"
PROGRESS_FILE = "progress.json"


def ray_modules():
    """``(ray, ray.tune)``, or a one-line error naming the extra that installs them."""
    return optional_import("ray", "sweep", "a sweep"), optional_import("ray.tune", "sweep", "a sweep")


@dataclass
class Sweep:
    """A sweep as :func:`load` reads it (see the module docstring)."""

    name: str
    experiment: dict
    space: dict
    storage: str
    methods: dict = field(default_factory=dict)
    algorithm: str = "grid"
    samples: int = 1
    metric: str = "acc"
    mode: str = "max"
    concurrency: int = 2
    scheduler: str = "fifo"
    grace_tasks: int = 1
    max_failures: int = 2
    seed: int = 0
    cpu: float = 1.0

    def __post_init__(self):
        if self.algorithm not in SEARCHES:
            raise NeurosimError(f"unknown search algorithm {self.algorithm!r}; expected one of: {', '.join(SEARCHES)}")
        if self.scheduler not in SCHEDULERS:
            raise NeurosimError(f"unknown scheduler {self.scheduler!r}; expected one of: {', '.join(SCHEDULERS)}")
        if self.metric not in METRICS:
            raise NeurosimError(f"unknown metric {self.metric!r}; expected one of: {', '.join(METRICS)}")
        if self.mode not in ("max", "min"):
            raise NeurosimError(f"mode must be 'max' or 'min', got {self.mode!r}")
        for name in ("samples", "concurrency", "grace_tasks"):
            check_int(name, getattr(self, name))
        check_int("max_failures", self.max_failures, minimum=0)
        check_positive("cpu", self.cpu)
        if not self.space:
            raise NeurosimError("the sweep's [space] is empty: name at least one key to sweep")
        kinds = []
        for key, spec in self.space.items():
            kinds.append(_domain_kind(key, spec))
            self._check_key(key, spec)
        if self.samples > 1 and all(k in ("grid", "choice") for k in kinds) and self.algorithm == "grid":
            raise NeurosimError(f"samples = {self.samples} repeats every trial of a grid, and a trial is a "
                                "function of its values: sweep training.seed instead")
        self._check_values()

    def _check_values(self) -> None:
        """Check (:func:`neurosim.runs.experiment.check`; a built-in plugin's values by making it)
        the trial experiment of every value a key may take (each listed value, each end of a range),
        one key at a time, with every method, so that a bad value is refused before Ray starts."""
        methods = _values(self.space["method"]) if "method" in self.space else [None]
        for key, spec in self.space.items():
            kind, args = _domain_kind(key, spec), _values(spec)
            values = args if kind in ("grid", "choice") else [args[0], args[1] - 1 if kind == "randint" else args[1]]
            for value in values:
                for m in methods:
                    params = {key: value} if m is None else {"method": m, key: value}
                    try:
                        config = trial_experiment(self.experiment, params, self.methods)
                        experiment.check(config)
                        for plugin in config["plugins"]:  # a registered plugin checks its values when made
                            if key.startswith(f"plugins.{plugin['name']}.") and ":" not in plugin["name"]:
                                create_plugin(plugin["name"], **{k: v for k, v in plugin.items() if k != "name"})
                    except NeurosimError as e:
                        where = "" if m is None or key == "method" else f" (method {m})"
                        raise NeurosimError(f"space key {key!r} = {value!r}{where}: {e}") from None

    def _check_key(self, key: str, spec) -> None:
        parts = key.split(".")
        if key == "method":
            for name in _values(spec):
                if name not in self.methods:
                    raise NeurosimError(f"method {name!r} is not in [methods]; known: {', '.join(self.methods) or 'none'}")
            return
        if parts[0] == "plugins":
            if len(parts) < 3:
                raise NeurosimError(f"space key {key!r}: a plugin option is plugins.NAME.option")
            lists = [self.experiment.get("plugins", [])] + list(self.methods.values())
            if not any(p.get("name") == parts[1] for lst in lists for p in lst):
                raise NeurosimError(f"space key {key!r}: no plugin {parts[1]!r} in the experiment or its methods")
            return
        if parts[0] not in ("model", "scenario", "training", "record") or len(parts) < 2:
            raise NeurosimError(f"space key {key!r} is not a dotted path into model, scenario, training, "
                                "record or plugins, nor 'method'")

    @property
    def n_tasks(self) -> int:
        return int(self.experiment.get("scenario", {}).get("tasks", 5))

    def directory(self) -> str:
        """The experiment directory Tune keeps the trials in."""
        return os.path.join(self.storage, self.name)


def _domain_kind(key: str, spec) -> str:
    if isinstance(spec, list):
        return "grid"
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DOMAINS:
        raise NeurosimError(f"space key {key!r} must be a list or one of {{{', '.join(DOMAINS)} = ...}}, got {spec!r}")
    kind, args = next(iter(spec.items()))
    if kind in ("grid", "choice"):
        if not isinstance(args, list) or not args:
            raise NeurosimError(f"space key {key!r}: {kind} needs a non-empty list of values")
    elif not isinstance(args, list) or len(args) != (3 if kind == "quniform" else 2):
        raise NeurosimError(f"space key {key!r}: {kind} needs [low, high{', q' if kind == 'quniform' else ''}]")
    return kind


def _values(spec) -> list:
    return spec if isinstance(spec, list) else next(iter(spec.values()))


def load(path: str | os.PathLike) -> Sweep:
    """A sweep from its TOML file (module docstring)."""
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as e:
        raise NeurosimError(f"cannot read {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise NeurosimError(f"{path} is not valid TOML: {e}") from None
    unknown = set(doc) - {"name", "experiment", "storage", "search", "resources", "space", "methods"}
    if unknown:
        raise NeurosimError(f"unknown sweep key {sorted(unknown)[0]!r}; expected name, experiment, storage, "
                            "search, resources, space, methods")
    here = Path(path).resolve().parent
    base = doc.get("experiment")
    if isinstance(base, str):
        base = experiment.load(here / base)
    elif isinstance(base, dict):
        base = dict(base)
        base.setdefault("name", doc.get("name", Path(path).stem))
        base.setdefault("plugins", [])
    else:
        raise NeurosimError("a sweep needs experiment = \"FILE.toml\" or an [experiment] table")
    search = dict(doc.get("search", {}))
    known = {"algorithm", "samples", "metric", "mode", "concurrency", "scheduler", "grace_tasks", "max_failures", "seed"}
    if set(search) - known:
        raise NeurosimError(f"unknown [search] key {sorted(set(search) - known)[0]!r}; expected {', '.join(sorted(known))}")
    resources = dict(doc.get("resources", {}))
    if set(resources) - {"cpu"}:
        raise NeurosimError(f"unknown [resources] key {sorted(set(resources) - {'cpu'})[0]!r}; expected cpu")
    storage = doc.get("storage", ".")
    return Sweep(name=doc.get("name", Path(path).stem), experiment=base, space=dict(doc.get("space", {})),
                 storage=str((here / storage).resolve()), methods=dict(doc.get("methods", {})),
                 cpu=resources.get("cpu", 1.0), **search)


# -- one trial's experiment -------------------------------------------------------------------
def trial_experiment(base: dict, params: dict, methods: dict) -> dict:
    """``base`` with the sampled ``params`` (dotted keys) applied."""
    config = copy.deepcopy(base)
    if "method" in params:
        config["plugins"] = copy.deepcopy(methods[params["method"]])
    for key, value in params.items():
        parts = key.split(".")
        if key == "method":
            continue
        if parts[0] == "plugins":
            for p in config["plugins"]:
                if p.get("name") == parts[1]:
                    _set(p, parts[2:], value)
            continue
        _set(config.setdefault(parts[0], {}), parts[1:], value)
    return config


def _set(table: dict, path: list[str], value) -> None:
    for k in path[:-1]:
        table = table.setdefault(k, {})
    table[path[-1]] = value


def method_of(params: dict, config: dict) -> str:
    """The trial's method: its ``method`` if swept, else its plugin names (``baseline`` for none)."""
    if "method" in params:
        return str(params["method"])
    return "+".join(p["name"] for p in config.get("plugins", [])) or "baseline"


def metrics_after(R: np.ndarray, b: np.ndarray, task: int) -> dict:
    """ACC, BWT and FWT from the rows of ``R`` known after ``task``."""
    seen = np.full_like(R, np.nan)
    seen[:task + 1] = R[:task + 1]
    return {"acc": acc(seen), "bwt": bwt(seen), "fwt": fwt(seen, b)}


class _Reporter:
    """After each task (a runner callback), reports the tasks not reported yet to Tune, each with a
    Tune checkpoint naming the task (the state itself is in the run file)."""

    def __init__(self, tune, first: int):
        self.tune, self.next = tune, first

    def __call__(self, runner, task: int) -> None:
        self.until(runner.R, runner.b, runner.store.read_log(), task)

    def until(self, R: np.ndarray, b: np.ndarray, log: np.ndarray, task: int) -> None:
        while self.next <= task:
            t = self.next
            losses = log["loss"][log["task"] == t]
            metrics = dict(metrics_after(R, b, t), task=t,
                           loss=float(losses.mean()) if len(losses) else float("nan"))
            with tempfile.TemporaryDirectory() as d:
                with open(os.path.join(d, PROGRESS_FILE), "w") as f:
                    json.dump({"task": t}, f)
                self.next = t + 1
                self.tune.report(metrics, checkpoint=self.tune.Checkpoint.from_directory(d))


def trial_folder(directory: str, params: dict) -> str:
    """The folder of the trial with ``params`` in the sweep's ``directory``, named after the values
    (not after Tune's trial, whose name a restored sweep may not keep), so a trial retried or
    restored finds its run file. A trial is a function of its values, so no two trials of a sweep
    share values (:class:`Sweep` refuses repeats of a grid)."""
    text = json.dumps(params, sort_keys=True, default=str)
    method = str(params.get("method", "trial"))
    return os.path.join(directory, f"{method}-{hashlib.sha1(text.encode()).hexdigest()[:12]}")


def run_trial(config: dict, sweep: dict) -> None:
    """The Tune trainable: train (or resume) the trial's run file, reporting after every task."""
    import torch

    _, tune = ray_modules()
    torch.set_num_threads(max(1, int(sweep["cpu"])))
    ckpt = tune.get_checkpoint()
    first = 0
    if ckpt is not None:
        with ckpt.as_directory() as d:
            with open(os.path.join(d, PROGRESS_FILE)) as f:
                first = json.load(f)["task"] + 1
    folder = trial_folder(sweep["directory"], config["params"])
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, PARAMS_FILE), "w") as f:
        json.dump({"params": config["params"]}, f, sort_keys=True)
    path = os.path.join(folder, RUN_FILE)
    exp = trial_experiment(sweep["experiment"], config["params"], sweep["methods"])
    reporter = _Reporter(tune, first)
    if not os.path.exists(path):
        experiment.start(exp, path, progress=False, callbacks=[reporter])
    else:  # a retried or restored trial: continue its run file, unless it is complete
        with RunStore.open(path) as store:
            complete = not np.isnan(store.R).any()
        if not complete:
            experiment.resume(path, progress=False, callbacks=[reporter])
    with RunStore.open(path) as store:  # tasks whose report a dying worker or driver did not send
        b = store.latest_checkpoint()[1]["b"]
        reporter.until(store.R, np.asarray(b, float), store.read_log(), len(store.R) - 1)


# -- running a sweep ----------------------------------------------------------------------------
def applies(key: str, plugins) -> bool:
    """Whether the swept ``key`` sets anything in a trial running ``plugins`` (names):
    ``plugins.NAME.option`` only if it runs NAME."""
    parts = key.split(".")
    return parts[0] != "plugins" or len(parts) < 2 or parts[1] in plugins


def run_key(method: str, params: dict, plugins) -> str:
    """What makes a run: its method and the swept values that set something (:func:`applies`)."""
    applied = {k: v for k, v in params.items() if k != "method" and applies(k, plugins)}
    return json.dumps([method, applied], sort_keys=True, default=str)


def grid_points(sweep: Sweep) -> list[dict]:
    """Every point of a space of grids only, less each point that differs from an earlier one only
    in values for plugins its method does not run (the same run again)."""
    keys = list(sweep.space)
    points, seen = [], set()
    for values in itertools.product(*(_values(sweep.space[k]) for k in keys)):
        point = dict(zip(keys, values))
        plugins = sweep.methods[point["method"]] if "method" in point else sweep.experiment.get("plugins", [])
        run = run_key(point.get("method"), point, {p.get("name") for p in plugins})
        if run not in seen:
            seen.add(run)
            points.append(point)
    return points


def _space(sweep: Sweep, tune) -> dict:
    if sweep.algorithm == "grid" and all(_domain_kind(k, v) == "grid" for k, v in sweep.space.items()):
        return {"params": tune.grid_search(grid_points(sweep))}
    out = {}
    for key, spec in sweep.space.items():
        kind, args = ("grid", spec) if isinstance(spec, list) else next(iter(spec.items()))
        if kind == "grid":
            out[key] = tune.grid_search(args) if sweep.algorithm == "grid" else tune.choice(args)
        elif kind == "choice":
            out[key] = tune.choice(args)
        else:
            out[key] = getattr(tune, kind)(*args)
    return {"params": out}


def _trainable(sweep: Sweep, tune):
    spec = {"experiment": sweep.experiment, "methods": sweep.methods, "cpu": sweep.cpu,
            "directory": sweep.directory()}
    return tune.with_resources(tune.with_parameters(run_trial, sweep=spec), {"cpu": sweep.cpu})


def start_ray(address: str | None = None, num_cpus: int | None = None, temp_dir: str | None = None):
    """Connect to the cluster at ``address`` (``auto``, ``ray://host:port``), or start a local Ray
    (no dashboard, no usage reporting)."""
    ray, _ = ray_modules()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray
    if address:
        ray.init(address=address)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, _temp_dir=temp_dir, log_to_driver=False)
    return ray


@dataclass
class SweepResult:
    """The sweep's folder and its count of trials, and of trials that ended in an error."""
    directory: str
    trials: int
    errors: int


def run(sweep: Sweep, *, address: str | None = None, resume: bool = False, num_cpus: int | None = None,
        temp_dir: str | None = None, verbose: int = 0) -> SweepResult:
    """Run ``sweep`` on Ray Tune (module docstring); with ``resume``, continue the sweep found in
    its directory (Tune's experiment restore: finished trials stay finished)."""
    _, tune = ray_modules()
    if resume and not tune.Tuner.can_restore(sweep.directory()):
        raise NeurosimError(f"no sweep to resume in {sweep.directory()}")
    if not resume and os.path.exists(sweep.directory()):
        raise NeurosimError(f"{sweep.directory()} exists: continue that sweep with --resume, or rename")
    cpus = num_cpus or os.cpu_count() or 1
    if not address and sweep.cpu > cpus:  # Tune would wait for a trial that never fits
        raise NeurosimError(f"a trial needs {sweep.cpu:g} CPUs ([resources] cpu) and the local Ray has {cpus}: "
                            "lower cpu or raise --num-cpus")
    ray = start_ray(address, num_cpus, temp_dir)
    try:
        from ray.tune.schedulers import ASHAScheduler
        from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

        trainable = _trainable(sweep, tune)
        if resume:
            tuner = tune.Tuner.restore(sweep.directory(), trainable, resume_unfinished=True, resume_errored=True)
        else:
            if sweep.algorithm == "optuna":
                from ray.tune.search.optuna import OptunaSearch

                search = ConcurrencyLimiter(OptunaSearch(seed=sweep.seed), max_concurrent=sweep.concurrency)
            else:
                search = BasicVariantGenerator(random_state=sweep.seed, max_concurrent=sweep.concurrency)
            scheduler = None
            if sweep.scheduler == "asha":
                scheduler = ASHAScheduler(time_attr="training_iteration", max_t=sweep.n_tasks,
                                          grace_period=sweep.grace_tasks)
            tuner = tune.Tuner(
                trainable, param_space=_space(sweep, tune),
                tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, search_alg=search,
                                            scheduler=scheduler, num_samples=sweep.samples, reuse_actors=True),
                run_config=tune.RunConfig(name=sweep.name, storage_path=sweep.storage, verbose=verbose,
                                          failure_config=tune.FailureConfig(max_failures=sweep.max_failures)))
        grid = tuner.fit()
        return SweepResult(sweep.directory(), len(grid), sum(1 for r in grid if r.error is not None))
    finally:
        if not address:
            ray.shutdown()


# -- reading a sweep back --------------------------------------------------------------------------
@dataclass
class Trial:
    """One trial as its directory holds it: swept values (Tune's ``params.json``), run file, and the
    names of the plugins its experiment ran."""

    name: str
    params: dict
    method: str
    R: np.ndarray
    b: np.ndarray
    wall: float
    run: str
    plugins: tuple[str, ...] = ()

    def applies(self, key: str) -> bool:
        """Whether the swept ``key`` set anything in this trial (:func:`applies`)."""
        return applies(key, self.plugins)

    @property
    def complete(self) -> bool:
        return not np.isnan(self.R).any()

    @property
    def acc(self) -> float:
        return acc(self.R)

    @property
    def bwt(self) -> float:
        return bwt(self.R)

    @property
    def fwt(self) -> float:
        return fwt(self.R, self.b)


def collect(directory: str | os.PathLike) -> list[Trial]:
    """Every trial of the sweep in ``directory`` (one folder per trial, each with ``params.json`` and
    the run file), sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NeurosimError(f"{directory} is not a directory")
    trials = []
    for run in sorted(directory.glob(f"*/{RUN_FILE}")):
        try:
            params = json.loads((run.parent / PARAMS_FILE).read_text()).get("params", {})
        except (OSError, ValueError):
            params = {}
        with RunStore.open(run) as store:
            R, config, log = store.R, store.config, store.read_log()
            found = store.latest_checkpoint()
        b = np.asarray(found[1]["b"], float) if found is not None else np.full(len(R), np.nan)
        wall = float(log["time"][-1] - log["time"][0]) if len(log) > 1 else float("nan")
        names = tuple(p.get("name", "") for p in config.get("plugins", []))
        trials.append(Trial(run.parent.name, params, method_of(params, config), R, b, wall, str(run), names))
    if not trials:
        raise NeurosimError(f"{directory} holds no trial run files (*/{RUN_FILE})")
    return trials


@dataclass
class Group:
    """Trials that differ only in their seeds: one setting of one method."""

    method: str
    setting: dict
    trials: list

    def values(self, what: str) -> np.ndarray:
        return np.array([getattr(t, what) for t in self.trials], float)

    def mean(self, what: str) -> float:
        return float(np.mean(self.values(what)))

    def spread(self, what: str) -> float:
        """Sample standard deviation over the group's trials (NaN for one trial)."""
        v = self.values(what)
        return float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")


def is_seed(key: str) -> bool:
    return key.split(".")[-1] == "seed"


def groups(trials: list[Trial]) -> list[Group]:
    """Complete trials grouped by method and every swept value that is not a seed. A value for a
    plugin the trial did not run set nothing: it is left out, and trials that differ only in such
    values are one run repeated, counted once."""
    out: dict[str, Group] = {}
    seen = set()
    for t in trials:
        if not t.complete:
            continue
        repeat = run_key(t.method, t.params, t.plugins)
        if repeat in seen:
            continue
        seen.add(repeat)
        setting = {k: v for k, v in sorted(t.params.items()) if k != "method" and t.applies(k) and not is_seed(k)}
        key = json.dumps([t.method, setting], sort_keys=True, default=str)
        out.setdefault(key, Group(t.method, setting, [])).trials.append(t)
    return sorted(out.values(), key=lambda g: (g.method, json.dumps(g.setting, sort_keys=True, default=str)))


def best(gs: list[Group], metric: str = "acc", mode: str = "max") -> Group | None:
    """The group with the best mean ``metric``."""
    scored = [g for g in gs if not math.isnan(g.mean(metric))]
    if not scored:
        return None
    return (max if mode == "max" else min)(scored, key=lambda g: g.mean(metric))
