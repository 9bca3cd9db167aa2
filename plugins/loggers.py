"""Loggers: the metrics of a run, as the run file gets them, also to TensorBoard, CSV files or Weights & Biases.

Each is a plugin fed by the runner's ``on_metrics`` hook (:class:`neurosim.continual.plugin.Plugin`),
with the values the runner writes to its run file, which stays the record of the run: the loss of
every batch (against the number of batches so far, ``step``) and after each task the row of the
accuracy matrix (``accuracy/task_J``: accuracy on task ``J`` after training task ``I``, against
``I``) with ACC, BWT and FWT over the tasks trained so far. In an experiment file::

    [[plugins]]
    name = "tensorboard"       # or "csv", "wandb"
    dir = "logs/tb"            # default: next to the run file (RUN_tensorboard, RUN_csv, RUN_wandb)

A resumed run appends from where it resumes, so batches logged after its last checkpoint and
before the interruption appear twice (with the same steps). The packages are imported when a run
starts: ``tensorboard`` for :class:`TensorBoard`, ``wandb`` for :class:`WandB`.
"""
from __future__ import annotations

import csv
import math
import os

from neurosim.continual.plugin import Plugin
from neurosim.errors import NeurosimError


class Logger(Plugin):
    """Base: a directory, opened at ``before_training``, closed at ``after_training``; subclasses
    write scalars (:meth:`scalar`) or whole records (:meth:`batch`, :meth:`task`)."""

    name = "logger"

    def __init__(self, dir: str | os.PathLike | None = None):
        self.dir = None if dir is None else os.fspath(dir)
        self.path: str | None = None

    def folder(self, runner) -> str:
        """``dir``, or the run file's path without ``.h5`` and with ``_NAME`` (``neurosim_NAME`` without a run file)."""
        if self.dir is not None:
            path = self.dir
        elif runner.store is not None:
            path = f"{os.path.splitext(runner.store.path)[0]}_{self.name}"
        else:
            path = f"neurosim_{self.name}"
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as e:
            raise NeurosimError(f"{self.name} logger: cannot create {path}: {e.strerror}") from None
        return path

    def before_training(self, runner) -> None:
        self.path = self.folder(runner)
        self.open(runner)

    def on_metrics(self, runner, kind: str, metrics: dict) -> None:
        if kind == "batch":
            self.batch(metrics)
        elif kind == "task":
            self.task(metrics)
            self.flush()

    def after_training(self, runner) -> None:
        self.close()

    # what a logger implements
    def open(self, runner) -> None: ...
    def flush(self) -> None: ...
    def close(self) -> None: ...

    def scalar(self, tag: str, value: float, step: int) -> None: ...

    def batch(self, m: dict) -> None:
        self.scalar("loss", m["loss"], m["step"])

    def task(self, m: dict) -> None:
        for j, a in enumerate(m["accuracy"]):
            self.scalar(f"accuracy/task_{j}", a, m["task"])
        for key in ("acc", "bwt", "fwt"):
            if not math.isnan(m[key]):
                self.scalar(key.upper(), m[key], m["task"])


class TensorBoard(Logger):
    """TensorBoard event files (``tensorboard --logdir DIR``)."""

    name = "tensorboard"

    def open(self, runner) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise NeurosimError("the tensorboard logger needs the tensorboard package: pip install tensorboard") from None
        self.writer = SummaryWriter(self.path, flush_secs=10)

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class CSV(Logger):
    """Two CSV files in ``dir``: ``batches.csv`` (task, epoch, step, loss) and ``tasks.csv`` (task,
    step, accuracy on each task, ACC, BWT, FWT); appended to when they exist (a resumed run)."""

    name = "csv"

    def open(self, runner) -> None:
        n = len(runner.scenario)
        self.files, self.writers = {}, {}
        for key, header in (("batches", ["task", "epoch", "step", "loss"]),
                            ("tasks", ["task", "step"] + [f"task_{j}" for j in range(n)] + ["ACC", "BWT", "FWT"])):
            path = os.path.join(self.path, f"{key}.csv")
            fresh = not os.path.exists(path) or os.path.getsize(path) == 0
            self.files[key] = open(path, "a", newline="")
            self.writers[key] = csv.writer(self.files[key])
            if fresh:
                self.writers[key].writerow(header)

    def batch(self, m: dict) -> None:
        self.writers["batches"].writerow([m["task"], m["epoch"], m["step"], repr(float(m["loss"]))])

    def task(self, m: dict) -> None:
        values = [*m["accuracy"], m["acc"], m["bwt"], m["fwt"]]
        self.writers["tasks"].writerow([m["task"], m["step"]] + [repr(float(v)) for v in values])

    def flush(self) -> None:
        for f in self.files.values():
            f.flush()

    def close(self) -> None:
        for f in self.files.values():
            f.close()


class WandB(Logger):
    """Weights & Biases, offline by default (``mode="offline"``: files under ``dir``, uploaded later
    with ``wandb sync``). ``project`` and ``run_name`` name the run; the experiment's configuration
    goes along when the run has a run file."""

    name = "wandb"

    def __init__(self, dir: str | os.PathLike | None = None, project: str = "neurosim", run_name: str | None = None,
                 mode: str = "offline"):
        super().__init__(dir)
        if mode not in ("offline", "online", "disabled"):
            raise NeurosimError(f"unknown wandb mode {mode!r}; expected one of: offline, online, disabled")
        self.project, self.run_name, self.mode = project, run_name, mode

    def open(self, runner) -> None:
        try:
            import wandb
        except ImportError:
            raise NeurosimError("the wandb logger needs the wandb package: pip install wandb") from None
        config = runner.store.config if runner.store is not None else None
        self.run = wandb.init(project=self.project, name=self.run_name, dir=self.path, mode=self.mode, config=config)
        self.run.define_metric("step")
        self.run.define_metric("loss", step_metric="step")
        self.run.define_metric("after_task")
        for key in ("accuracy/*", "ACC", "BWT", "FWT"):
            self.run.define_metric(key, step_metric="after_task")

    def batch(self, m: dict) -> None:
        self.run.log({"loss": m["loss"], "step": m["step"]})

    def task(self, m: dict) -> None:
        row = {f"accuracy/task_{j}": a for j, a in enumerate(m["accuracy"])}
        row.update({k.upper(): m[k] for k in ("acc", "bwt", "fwt") if not math.isnan(m[k])})
        self.run.log({**row, "after_task": m["task"]})

    def close(self) -> None:
        self.run.finish()
