"""The continual runner: train task after task, evaluate every task seen, keep the accuracy matrix.

``Continual(network, scenario, plugins=[...])`` feeds each sample as an encoded sequence to the
network's input (samples that are already sequences, ``[T, F]`` such as binned events, as they
are: see :meth:`Continual.encode`), reads class scores from the output population's sequence with ``readout``
(``"mean"`` over time, ``"last"`` step, or a function ``[T, B, n] -> [B, n]``), and trains with
cross-entropy. ``learning`` says how a batch's update reaches ``.grad``: :class:`~neurosim.continual.learners.BPTT` (default,
autograd through the whole run), :class:`ThreeFactorLearner` (a modulated Hebbian rule on the
projections into the output) or :class:`EPropLearner` (e-prop in a recurrent layer). Every learner
leaves the update in ``.grad`` and the same hooks follow: ``after_forward`` (the projections were
called on their presynaptic activity, so forward hooks such as HLOP's have captured it),
``before_backward`` (a penalty's gradient is added to a local rule's update), ``after_backward``
(gradient filters act on whatever is in ``.grad``), then the optimiser step. ``on_step(t, state)``
is called by the learners that step the network one time step at a time, with ``state`` mapping
population names to ``(neuron state or None, output at t)``: :class:`ThreeFactorLearner` and
:class:`EPropLearner` do, :class:`BPTT` (which runs layer by layer over all steps) does not. Local
rules need HLOP's ``form="gradient"`` (its input form acts inside autograd). After task ``i`` it tests on every task ``j``, filling row ``i`` of ``R``
(rows of tasks not yet trained stay NaN; testing in evaluation mode, :func:`evaluation_mode`), and reports ACC, BWT and FWT (:mod:`neurosim.continual.metrics`). Plugins see the runner: ``network``, ``optimizer``, ``task``,
``epoch``, ``step``, ``inputs``, ``targets``, ``sample_tasks``, ``outputs``, ``loss``, ``R``, and
``global_batch``, the number of samples in the training batch (``inputs`` and ``targets`` hold them all
in one process). ``sample_tasks`` holds the task index of every sample of the batch (``[B]``, int64):
the task being trained, unless a plugin added samples of earlier tasks (replay), which keep theirs. In a
task-incremental scenario every sample's scores are masked with its own task's classes
(:meth:`Continual.mask`), so the loss of a mixed batch is the mean over its samples of each one's
cross-entropy over its own task's classes.

With a ``store`` (:class:`neurosim.storage.store.RunStore`) the runner logs every batch's loss, writes each
row of ``R`` as it is known, and writes a checkpoint after every task and every
``checkpoint_every`` batches: parameters with their ``requires_grad`` flags, module modes, the
optimiser, every plugin's ``state_dict``, the RNG states, the epoch's sample order and the cursor
(task, epoch, batch). With ``record={"samples": K, "populations": [...]}`` it also records, after
each task ``t``, the encoded input of the first ``K`` test samples of that task (``t{t}_input``) and
the spikes they cause in each population (``t{t}_{population}``), just before the checkpoint of
the task's end: :mod:`neurosim.runs.replay` feeds them back. ``run(resume=True)`` continues from the last complete checkpoint to the same
result, bit for bit, as a run never interrupted. A resumed run calls ``before_training`` again
(plugins attach there and must not reset what they learnt), but not ``before_task`` or
``before_epoch`` of the task and epoch it resumes inside: what those set up comes back from the
checkpoint. ``task_callbacks`` are called after each task's row of ``R`` and its checkpoint.

While a run with a store trains, SIGINT (Ctrl-C) and SIGTERM (a cluster's preemption notice) let
the current batch finish, write a checkpoint and raise :class:`Interrupted` ("interrupted at task
3, batch 120; resume with: ..."); a second signal ends the process at once, leaving the file as a
kill would (consistent, resumable).

The divergence guard stops a run with :class:`Diverged`, before the update, when a batch's loss is
not finite, or (``divergence``, on by default, :data:`DIVERGENCE`) exceeds ``factor`` times the
median of the task's last ``window`` losses once ``warmup`` batches of the task ran, and ``factor``
times the cross-entropy of a uniform guess, ``log C`` for ``C`` classes; and after the
update when a parameter became NaN or infinite. Its one line names the task, batch and step, the
population or projection, and the plugins acting on updates; nothing of the diverged batch is
written, so the file keeps its last checkpoint. ``divergence=False`` turns the rise and parameter
checks off (a non-finite loss still stops the run). Every ``health_every`` batches and at the end of
each task, plugins' :meth:`~neurosim.continual.plugin.Plugin.health` figures go to the store's health
table (``"<plugin>.<figure>"``, :meth:`~neurosim.storage.store.RunStore.read_health`).

In a process group (:mod:`neurosim.continual.distributed`) the runner trains data-parallel: plugins'
``before_batch`` sees the global batch, which is then encoded (as in one process) and split into
one contiguous shard per rank (:func:`~neurosim.continual.distributed.shard` ``(global_batch)``, the
samples with their ``targets`` and ``sample_tasks``);
learners and the remaining hooks see the rank's shard; the loss
(for the log and the divergence guard) and the gradients are averaged, weighted by shard size, in
one collective call before ``after_backward`` (so it and everything after it see the global gradient). Every rank
evaluates and takes part in each checkpoint; rank 0 alone logs, records, fires ``on_metrics`` and
writes the store, and its checkpoints hold every rank's RNG states. A checkpoint resumes only with
as many processes as wrote it. Signals are not caught there: a stopped process group leaves the
file as a kill does (consistent, resumable from its last checkpoint).
"""
from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from ..datasets.encoding import encode
from . import distributed
from .learners import BPTT
from ..errors import NeurosimError, check_int, check_known, check_positive
from ..progress import progress_bar
from .metrics import acc, bwt, fwt
from ..network import Network, Probe
from .plugin import Plugin
from ..storage.recording import Recording
from .scenarios import Scenario, Task

OPTIMIZERS = ("sgd", "adam")
READOUTS = {"mean": lambda out: out.mean(0), "last": lambda out: out[-1]}
DIVERGENCE = {"factor": 100.0, "window": 50, "warmup": 10}
"""The divergence guard's defaults: stop when a batch's loss exceeds ``factor`` times the median of
the task's last ``window`` batch losses (and ``factor`` times ``log C``, a uniform guess's loss over
``C`` classes), once ``warmup`` batches of the task have run."""
_UPDATE_HOOKS = ("before_backward", "after_backward", "before_update", "after_update")


class Interrupted(NeurosimError):
    """The run stopped on SIGINT or SIGTERM after writing a checkpoint; ``exit_code`` is 128 + signal."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum, self.exit_code = signum, 128 + signum


class Diverged(NeurosimError):
    """The divergence guard stopped the run (a non-finite or runaway loss, a non-finite parameter)."""


@contextlib.contextmanager
def evaluation_mode(network: torch.nn.Module):
    """Testing without changing what training will see: dropout is off (every module but batch
    norms in evaluation mode); a batch norm still learning (training mode) normalises each test
    batch with that batch's statistics, as in training, without updating its running estimates; a
    frozen one (evaluation mode, as HLOP, GPM and ``freeze`` leave them after the first task) uses
    its running estimates. Every module's mode is restored on exit."""
    modes = {m: m.training for m in network.modules()}
    norms = [m for m in network.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
    tracking = [m.track_running_stats for m in norms]
    try:
        network.eval()
        for m in norms:
            m.train()
            m.track_running_stats = False
        yield network
    finally:
        for m, t in zip(norms, tracking):
            m.track_running_stats = t
        for m, training in modes.items():
            m.training = training


@dataclass
class ContinualResult:
    """The accuracy matrix ``R``, the untrained accuracies ``b`` and their ACC, BWT and FWT;
    ``finished_before``: a resume found the run already finished and wrote nothing."""
    R: np.ndarray
    b: np.ndarray
    acc: float
    bwt: float
    fwt: float
    finished_before: bool = False


class Continual:
    """Runs ``scenario`` on ``network`` with ``plugins``; see the module docstring."""

    def __init__(self, network: Network, scenario: Scenario, plugins: list[Plugin] = (), *,
                 input: str | None = None, output: str | None = None, steps: int = 10,
                 encoding: str = "current", readout: str | Callable = "mean", epochs: int = 1,
                 batch_size: int = 64, lr: float = 0.1,
                 optimizer: str = "sgd", momentum: float = 0.0, seed: int = 0, progress: bool = True,
                 store=None, checkpoint_every: int | None = None, record: dict | None = None, learning=None,
                 divergence: dict | bool | None = None, health_every: int | None = 20):
        if not isinstance(network, Network):
            raise NeurosimError(f"network must be a neurosim Network, got {type(network).__name__}")
        self.network, self.scenario = network, scenario
        self.plugins = list(plugins)
        for p in self.plugins:
            if not isinstance(p, Plugin):
                raise NeurosimError(f"plugins must be neurosim.Plugin instances, got {type(p).__name__}")
        self.learning = BPTT() if learning is None else learning
        if not all(callable(getattr(self.learning, m, None)) for m in ("forward", "backward")):
            raise NeurosimError(f"learning must be a learner with forward(runner, task) and backward(runner, loss) "
                                f"methods, got {type(self.learning).__name__}")
        self.input = input or self._only(list(network.inputs), "input")
        sinks = [n for n in network.populations if not any(c.pre == n for c in network.connections.values())]
        self.output = output or self._only(sinks, "output population")
        if network.size(self.input) != scenario.n_inputs:
            raise NeurosimError(f"input {self.input!r} has {network.size(self.input)} channels but the "
                                f"scenario's samples have {scenario.n_inputs} features")
        if network.size(self.output) < scenario.n_outputs:
            raise NeurosimError(f"output {self.output!r} has {network.size(self.output)} neurons but the "
                                f"scenario needs {scenario.n_outputs}")
        if optimizer not in OPTIMIZERS:
            raise NeurosimError(f"unknown optimizer {optimizer!r}; expected one of: {', '.join(OPTIMIZERS)}")
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise NeurosimError(f"lr must be a number, got {lr!r}")
        check_positive("lr", lr)
        if not callable(readout) and readout not in READOUTS:
            raise NeurosimError(f"unknown readout {readout!r}; expected one of: {', '.join(READOUTS)}, or a function")
        self.readout = readout if callable(readout) else READOUTS[readout]
        for name, v in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
            check_int(name, v)
        self.steps, self.encoding, self.epochs, self.batch_size = steps, encoding, epochs, batch_size
        self.min_steps = max(steps, network.min_steps())
        if scenario.tasks and scenario.tasks[0].train.x.ndim == 2 and steps < self.min_steps:
            raise NeurosimError(f"steps={steps} is shorter than the network accepts ({self.min_steps}: "
                                "the longest synaptic delay)")
        for name, v in (("checkpoint_every", checkpoint_every), ("health_every", health_every)):
            if v is not None:
                check_int(name, v)
        self.divergence = self._check_divergence(divergence)
        self.health_every = health_every
        self._losses: deque = deque(maxlen=self.divergence["window"] if self.divergence else 1)
        self._stop_signal: int | None = None
        self.batch: int = -1
        self.lr, self.optimizer_name, self.momentum, self.seed = lr, optimizer, momentum, seed
        self.store, self.checkpoint_every = store, checkpoint_every
        self.record = self._check_record(record)
        self.step = 0
        self._resumed: dict | None = None
        self.progress = progress
        n = len(scenario)
        self.R = np.full((n, n), np.nan)
        self.b = np.full(n, np.nan)
        self.task: int = -1
        self.epoch: int = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.inputs = self.targets = self.sample_tasks = self.outputs = self.loss = None
        self._task_masks: torch.Tensor | None = None
        self.global_batch = 0
        self.generator = torch.Generator().manual_seed(seed)
        #: Functions ``f(runner, task)`` called after each task's row of ``R`` and its checkpoint
        #: (progress reports such as a sweep's); not plugins, so not part of the checkpoint.
        self.task_callbacks: list[Callable] = []
        self._keeping = store is not None  # whether checkpoints are kept (by rank 0, under data parallelism)
        self._batch_seq: torch.Tensor | None = None

    def _check_record(self, record: dict | None) -> dict | None:
        if record is None:
            return None
        if not isinstance(record, dict):
            raise NeurosimError(f"record must be a table of samples and populations, got {record!r}")
        check_known("record", record, ["samples", "populations"])
        samples, pops = record.get("samples", 8), list(record.get("populations", []))
        if not isinstance(samples, int) or samples < 1:
            raise NeurosimError(f"record samples must be a positive integer, got {samples!r}")
        for name in pops:
            if name not in self.network.populations or not self.network.populations[name].observables[0] == "spikes":
                raise NeurosimError(f"cannot record spikes of {name!r}: not a spiking population of the network")
        return {"samples": samples, "populations": pops}

    @staticmethod
    def _check_divergence(divergence) -> dict | None:
        if divergence is False:
            return None
        if divergence is None or divergence is True:
            return dict(DIVERGENCE)
        if not isinstance(divergence, dict):
            raise NeurosimError(f"divergence must be a table of {', '.join(DIVERGENCE)}, or false, got {divergence!r}")
        check_known("divergence", divergence, list(DIVERGENCE))
        out = {**DIVERGENCE, **divergence}
        factor = out["factor"]
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor <= 1:
            raise NeurosimError(f"divergence factor must be a number > 1, got {factor!r}")
        for key, low in (("window", 1), ("warmup", 0)):
            v = out[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise NeurosimError(f"divergence {key} must be an integer >= {low}, got {v!r}")
        out["factor"] = float(factor)
        return out

    def recordings(self) -> dict[str, Recording]:
        """The recordings ``record`` asks for, to declare when the store is created."""
        out = {}
        if self.record is None:
            return out
        dt, k = self.network.dt, self.record["samples"]
        for task in self.scenario.tasks:
            k_t = min(k, len(task.test.y))
            out[f"t{task.index}_input"] = Recording("state", n=self.scenario.n_inputs, dt=dt, source=self.input,
                                                    variable="input", batch=k_t)
            for pop in self.record["populations"]:
                out[f"t{task.index}_{pop}"] = Recording("spikes", n=self.network.size(pop), dt=dt, source=pop,
                                                        batch=k_t)
        return out

    def _record(self, task: Task) -> None:
        """Record the encoded input of ``task``'s first test samples and the spikes they cause."""
        k = min(self.record["samples"], len(task.test.y))
        seq = self.encode(torch.as_tensor(task.test.x[:k]))
        probes = {f"record {pop}": Probe(pop, "spikes", events=True) for pop in self.record["populations"]}
        with torch.no_grad(), evaluation_mode(self.network):
            res = self.network.run({self.input: seq}, outputs=[self.output], probes=probes)
        if self.store is None:  # a rank other than 0: it encoded the input as rank 0 did, and writes nothing
            return
        self.store.recorder(f"t{task.index}_input").append(seq)
        for pop, name in zip(self.record["populations"], probes):
            t, b, i = res.probes[name]  # ordered by step
            self.store.recorder(f"t{task.index}_{pop}").append(t, i, b, until=seq.shape[0])

    @staticmethod
    def _only(names: list[str], what: str) -> str:
        if len(names) != 1:
            raise NeurosimError(f"the network has {len(names)} candidates for the {what}; name it explicitly")
        return names[0]

    def _metrics(self, kind: str, metrics: dict) -> None:
        """``on_metrics``, on rank 0 only under data parallelism (every rank holds the same numbers)."""
        if distributed.rank() == 0:
            self._fire("on_metrics", kind, metrics)

    def _fire(self, hook: str, *args):
        for p in self.plugins:
            getattr(p, hook)(self, *args)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimiser over the parameters that require gradients (rebuilt at every task)."""
        params = [p for p in self.network.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        return torch.optim.Adam(params, lr=self.lr)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The input sequence ``[T, B, F]``: features ``[B, F]`` encoded over ``steps``, or sequence
        samples ``[B, T, F]`` as they are, cut after the batch's last nonzero step and zero-padded
        to at least ``steps`` and what the network accepts (:meth:`Network.min_steps`)."""
        if x.dim() != 3:
            return encode(x, self.steps, self.encoding, generator=self.generator)
        active = torch.nonzero(x.abs().sum((0, 2)))
        length = int(active[-1]) + 1 if active.numel() else 0
        seq = x[:, :length].transpose(0, 1)
        return F.pad(seq, (0, 0, 0, 0, 0, max(0, self.min_steps - length))).contiguous()

    def scores(self, x: torch.Tensor, task: Task | None = None) -> torch.Tensor:
        """Class scores ``[B, n_outputs]``: the readout of the output population's sequence."""
        return self.sequence_scores(self.encode(x), task)

    def sequence_scores(self, seq: torch.Tensor, task: Task | torch.Tensor | None = None) -> torch.Tensor:
        """Class scores ``[B, n_outputs]`` of an encoded input sequence ``[T, B, F]``, masked with
        ``task`` (:meth:`mask`)."""
        out = self.network.run({self.input: seq}, outputs=[self.output]).outputs[self.output]
        return self.mask(self.readout(out)[:, : self.scenario.n_outputs], task)

    def batch_sequence(self) -> torch.Tensor:
        """The encoded input ``[T, B, F]`` of the training batch ``inputs`` (learners run this): the
        global batch encoded as one process would, and this rank's shard of it."""
        return self._batch_seq

    def evaluate(self, task: Task, batch_size: int = 512) -> float:
        """Accuracy on ``task``'s test set, the network in :func:`evaluation_mode`."""
        self._fire("before_eval")
        correct = 0
        with torch.no_grad(), evaluation_mode(self.network):
            for i in range(0, len(task.test.y), batch_size):
                x = torch.as_tensor(task.test.x[i:i + batch_size])
                y = torch.as_tensor(task.test.y[i:i + batch_size])
                correct += int((self.scores(x, task).argmax(1) == y).sum())
        self._fire("after_eval")
        return correct / len(task.test.y)

    def train_task(self, task: Task, epoch: int = 0, batch: int = 0) -> None:
        """Train ``task`` from ``epoch`` and ``batch`` on (not 0 only when resuming)."""
        n = len(task.train.y)
        batches = range(0, n, self.batch_size)
        for self.epoch in range(epoch, self.epochs):
            resumed = self._resumed
            if resumed is not None:
                order, self._resumed = resumed["order"], None
            else:
                self._fire("before_epoch")
                order = torch.randperm(n, generator=self.generator)
            bar = progress_bar(total=len(batches), desc=f"task {task.index} epoch {self.epoch}", unit="batch",
                               initial=batch, enabled=self.progress and distributed.rank() == 0)
            for b in range(batch, len(batches)):
                self.batch = b
                idx = order[batches[b]:batches[b] + self.batch_size].numpy()
                loss = self.train_batch(task, idx)
                self.step += 1
                if self.store is not None:
                    self.store.log(task.index, self.epoch, self.step, loss)
                self._metrics("batch", {"task": task.index, "epoch": self.epoch, "step": self.step, "loss": loss})
                if self._keeping:
                    if self.health_every and self.step % self.health_every == 0:
                        self._log_health()
                    if self.checkpoint_every and self.step % self.checkpoint_every == 0 or self._stop_signal:
                        self.checkpoint({"task": self.task, "epoch": self.epoch, "batch": b + 1}, order)
                    if self._stop_signal:
                        epoch = f", epoch {self.epoch}" if self.epochs > 1 else ""
                        self._stop(f"task {self.task}{epoch}, batch {b + 1}")
                bar.update()
                bar.set_postfix(loss=f"{loss:.3f}")
            bar.close()
            batch = 0
            self._fire("after_epoch")

    def train_batch(self, task: Task, idx: np.ndarray) -> float:
        """One optimiser step on the samples ``idx`` of ``task``; returns the loss (of the global
        batch under data parallelism: :mod:`neurosim.continual.distributed`)."""
        self.inputs = torch.as_tensor(task.train.x[idx])
        self.targets = torch.as_tensor(task.train.y[idx])
        self.sample_tasks = torch.full((len(idx),), task.index, dtype=torch.int64)
        self._fire("before_batch")  # plugins see (and may extend) the global batch
        self.optimizer.zero_grad()
        total = self.global_batch = len(self.targets)
        self._batch_seq = self.encode(self.inputs)
        if distributed.active():
            part = distributed.shard(total)
            self.inputs, self.targets, self.sample_tasks = (t[part] for t in (self.inputs, self.targets, self.sample_tasks))
            self._batch_seq = self._batch_seq[:, part]
        self.outputs = self.learning.forward(self, task)
        self._fire("after_forward", self.outputs)
        loss = F.cross_entropy(self.outputs, self.targets)
        for p in self.plugins:
            loss = p.before_backward(self, loss)
        self.loss = loss
        self.learning.backward(self, loss)
        value = distributed.average_gradients(self.network.parameters(), len(self.targets), total, loss)
        self._guard_loss(task, value)
        self._fire("after_backward")
        self._fire("before_update")
        self.optimizer.step()
        self._fire("after_update")
        self._guard_parameters(task)
        self._fire("after_batch")
        return value

    # -- divergence guard ------------------------------------------------------------------------
    def _where(self, task: Task) -> str:
        epoch = f", epoch {self.epoch}" if self.epochs > 1 else ""
        return f"task {task.index}{epoch}, batch {self.batch + 1} (step {self.step + 1})"

    def _update_plugins(self) -> str:
        names = [p.name for p in self.plugins
                 if any(getattr(type(p), h) is not getattr(Plugin, h) for h in _UPDATE_HOOKS)]
        return f"; plugins acting on the update: {', '.join(names)}" if names else "; no plugin acts on the update"

    def _diverged(self, task: Task, what: str) -> Diverged:
        kept = ""
        if self.store is not None:
            k = self.store.count("checkpoints") - 1
            kept = f"; {self.store.path} keeps checkpoint {k}" if k >= 0 else f"; {self.store.path} holds no checkpoint"
        return Diverged(f"the run diverged at {self._where(task)}: {what}{self._update_plugins()}{kept}")

    def _guard_loss(self, task: Task, value: float) -> None:
        """Stop before the update on a non-finite loss (always) or, with the guard on, on a loss
        ``factor`` times above the median of the task's recent losses after the warm-up, and above
        ``factor`` times the loss of a uniform guess over the task's classes (``log C``): once a
        task's loss is near zero, one batch with a mistake is many times the median, not a runaway."""
        if not math.isfinite(value):
            raise self._diverged(task, f"the loss became {value}")
        guard = self.divergence
        if guard is None:
            return
        if len(self._losses) >= max(1, guard["warmup"]):
            median = float(np.median(self._losses))
            classes = len(task.classes) if self.scenario.task_incremental else self.scenario.n_outputs
            factor, guess = guard["factor"], math.log(classes)
            if median > 0 and value > factor * max(median, guess):
                raise self._diverged(task, f"the loss {value:.4g} is {value / median:.0f} times its running median "
                                           f"{median:.4g} (limit {factor:g} times, and at least {factor:g} log "
                                           f"{classes} = {factor * guess:.4g})")
        self._losses.append(value)

    def _guard_parameters(self, task: Task) -> None:
        """With the guard on, stop when the update made a parameter non-finite; names its population
        or projection."""
        if self.divergence is None:
            return
        params = [(n, p) for n, p in self.network.named_parameters() if p.requires_grad]
        if not params or bool(torch.isfinite(torch.stack([p.detach().abs().amax() for _, p in params])).all()):
            return
        for name, p in params:
            bad = ~torch.isfinite(p.detach())
            if bool(bad.any()):
                kind = "NaN" if bool(torch.isnan(p.detach()).any()) else "infinite"
                raise self._diverged(task, f"the update made {self._owner(name)} {kind}")

    @staticmethod
    def _owner(name: str) -> str:
        """``"projections.x_to_h1.weight"`` -> ``"the weight of projection x_to_h1"``."""
        parts = name.split(".")
        if len(parts) >= 3 and parts[0] in ("projections", "populations"):
            return f"the {'.'.join(parts[2:])} of {parts[0][:-1]} {parts[1]}"
        return f"parameter {name}"

    # -- health, signals -------------------------------------------------------------------------
    def _log_health(self) -> None:
        if self.store is None:  # a rank other than 0
            return
        figures = {}
        for p in self.plugins:
            for key, value in (p.health(self) or {}).items():
                figures[f"{p.name}.{key}"] = float(value)
        if figures:
            self.store.log_health(max(self.task, 0), max(self.epoch, 0), self.step, figures)

    @contextlib.contextmanager
    def _signals(self):
        """While a run with a store trains (in the main thread): SIGINT and SIGTERM ask it to stop
        after the current batch (:class:`Interrupted`); a second one ends the process at once (the
        file is then as after a kill: consistent, resumable)."""
        if self.store is None or threading.current_thread() is not threading.main_thread() or distributed.active():
            yield
            return
        self._stop_signal = None
        path = self.store.path

        def handler(signum, frame):
            if self._stop_signal is not None:
                os.write(2, f"neurosim: stopped at once; resume with: neurosim resume {path}\n".encode())
                os._exit(128 + signum)
            self._stop_signal = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

    def _stop(self, where: str) -> None:
        """After the checkpoint a signal asked for: commit, then raise :class:`Interrupted`."""
        self.store.flush()
        raise Interrupted(self._stop_signal, f"interrupted at {where}; resume with: neurosim resume {self.store.path}")

    def mask(self, scores: torch.Tensor, task: Task | torch.Tensor | None) -> torch.Tensor:
        """Scores ``[B, n]`` outside their task's classes set to -inf in a task-incremental scenario:
        ``task`` is one :class:`Task` for every row, or the task index of each row (``[B]``, such as
        the training batch's ``sample_tasks``)."""
        if task is None or not self.scenario.task_incremental:
            return scores
        if isinstance(task, Task):
            mask = torch.full_like(scores, float("-inf"))
            mask[:, list(task.classes)] = 0
            return scores + mask
        if self._task_masks is None:  # per task, 0 on its classes and -inf elsewhere; built once
            self._task_masks = torch.full((len(self.scenario), self.scenario.n_outputs), float("-inf"))
            for t in self.scenario.tasks:
                self._task_masks[t.index, list(t.classes)] = 0
        return scores + self._task_masks.to(scores)[task.to(scores.device)]

    def on_step(self, t: int, state) -> None:
        """Plugins' ``on_step`` hook, for learners that step the network one time step at a time."""
        self._fire("on_step", t, state)

    # -- checkpoints -----------------------------------------------------------------------------
    def checkpoint(self, cursor: dict, order: torch.Tensor | None = None) -> int:
        """Write a checkpoint to the store: everything needed to continue from ``cursor``. Under data
        parallelism every rank calls it; rank 0 writes, with every rank's RNG states."""
        mid_task = cursor["epoch"] > 0 or cursor["batch"] > 0
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        ranks = distributed.all_gather_object(rng)
        if self.store is None:
            return -1
        if len(ranks) > 1:
            rng = dict(rng, ranks=ranks)
        return self.store.write_checkpoint({
            "cursor": dict(cursor, step=self.step),
            "order": order,
            "network": self.network.state_dict(),
            "requires_grad": [p.requires_grad for p in self.network.parameters()],
            "training": [m.training for m in self.network.modules()],
            "optimizer": self.optimizer.state_dict() if mid_task else None,
            "plugins": [p.state_dict() for p in self.plugins],
            "rng": rng,
            "R": self.R, "b": self.b,
            "losses": list(self._losses),
        })

    def _check_parallel(self) -> None:
        """Refuse what data parallelism cannot split exactly: per-batch statistics and random masks drawn
        per local sample, and batches with fewer samples than processes."""
        for name, m in self.network.named_modules():
            if getattr(m, "running_mean", None) is not None or getattr(m, "dropout", 0) or \
                    isinstance(m, torch.nn.modules.dropout._DropoutNd):
                raise NeurosimError(f"data-parallel training cannot split module {name!r} exactly: batch "
                                    "normalisation and dropout draw on the local batch; run it in one process")
        size = distributed.world_size()
        for task in self.scenario.tasks:
            n = len(task.train.y)
            smallest = min(self.batch_size, n % self.batch_size or self.batch_size)
            if smallest < size:
                raise NeurosimError(f"task {task.index} has a batch of {smallest} samples, fewer than the "
                                    f"{size} processes: choose batch_size and the process count so that every "
                                    "batch has at least one sample per process")

    def _restore(self) -> dict | None:
        """Load the store's last complete checkpoint, then rewind the store to it; returns its cursor
        (None: start afresh). Nothing is written before the checkpoint's state has loaded."""
        if not self._keeping:
            raise NeurosimError("resuming needs a store: pass store= to Continual")
        found = distributed.broadcast_object(self.store.latest_checkpoint() if self.store is not None else None)
        s = None if found is None else self.load_checkpoint(*found)
        if self.store is not None:
            self.store.resume()
        return None if s is None else s["cursor"]

    def load_checkpoint(self, k: int, s: dict) -> dict:
        """Give the network, the plugins and the random generators checkpoint ``k``'s state ``s``
        (refused in one line if it was written by another run); returns ``s``."""
        ranks = s["rng"].get("ranks", [s["rng"]])
        if len(ranks) != distributed.world_size():
            raise NeurosimError(f"checkpoint {k} was written by {len(ranks)} process(es): resume it with "
                                f"{len(ranks)}, not {distributed.world_size()}")
        params, modules = list(self.network.parameters()), list(self.network.modules())
        if len(s["plugins"]) != len(self.plugins) or len(s["requires_grad"]) != len(params) \
                or len(s["training"]) != len(modules):
            raise NeurosimError(f"checkpoint {k} of {getattr(self.store, 'path', 'the run file')} does not match this run: it holds "
                                f"{len(s['plugins'])} plugin states and {len(s['requires_grad'])} parameters, "
                                f"the run has {len(self.plugins)} and {len(params)}")
        self.network.load_state_dict(s["network"])
        for p, flag in zip(params, s["requires_grad"]):
            p.requires_grad_(flag)
        for m, flag in zip(modules, s["training"]):
            m.training = flag
        for p, state in zip(self.plugins, s["plugins"]):
            p.load_state_dict(state)
        rng = ranks[distributed.rank()]
        torch.set_rng_state(rng["torch"])
        self.generator.set_state(rng["generator"])
        self.R, self.b = np.array(s["R"]), np.array(s["b"])
        self._losses.clear()
        self._losses.extend(s.get("losses", []))
        self.step = s["cursor"]["step"]
        self._resumed = s
        return s

    def run(self, resume: bool = False) -> ContinualResult:
        """Train every task in order (see the module docstring); with ``resume``, continue from
        the store's last complete checkpoint, or from the start if it has none."""
        self._keeping = bool(distributed.broadcast_object(self.store is not None))
        if distributed.active():
            self._check_parallel()
        with self._signals():
            return self._run(resume)

    def _run(self, resume: bool) -> ContinualResult:
        cursor = self._restore() if resume else None
        tasks = self.scenario.tasks
        if cursor is None:
            torch.manual_seed(self.seed)
            self.b = np.array([self.evaluate(t) for t in tasks])
            cursor = {"task": 0, "epoch": 0, "batch": 0}
        self._fire("before_training")
        for self.task in range(cursor["task"], len(tasks)):
            task = tasks[self.task]
            self.optimizer = None
            if self._resumed is not None and self._resumed["optimizer"] is not None:
                self.optimizer = self.make_optimizer()
                self.optimizer.load_state_dict(self._resumed["optimizer"])
                self.train_task(task, cursor["epoch"], cursor["batch"])
            else:
                self._resumed = None
                self._losses.clear()
                self._fire("before_task", self.task)
                self.optimizer = self.make_optimizer()
                self.train_task(task)
            self._fire("after_task", self.task)
            self.R[self.task] = [self.evaluate(t) for t in tasks]
            if self.store is not None:
                self.store.set_R(self.task, self.R[self.task])
            self._metrics("task", {"task": self.task, "step": self.step, "accuracy": self.R[self.task].copy(),
                                   "acc": acc(self.R), "bwt": bwt(self.R), "fwt": fwt(self.R, self.b)})
            if self._keeping:
                if self.record is not None:
                    self._record(task)
                if self.health_every:
                    self._log_health()
                self.checkpoint({"task": self.task + 1, "epoch": 0, "batch": 0})
                if self._stop_signal and self.task + 1 < len(tasks):
                    self._stop(f"the end of task {self.task}")
            for f in self.task_callbacks:
                f(self, self.task)
        self._fire("after_training")
        if self.store is not None:
            self.store.flush()
        return self.result()

    def result(self, finished_before: bool = False) -> ContinualResult:
        """The accuracy matrix so far and its metrics."""
        return ContinualResult(self.R.copy(), self.b.copy(), acc(self.R), bwt(self.R), fwt(self.R, self.b),
                               finished_before)
