"""The continual runner: train task after task, evaluate every task seen, keep the accuracy matrix.

``Continual(network, scenario, plugins=[...])`` feeds each sample as an encoded sequence to the
network's input, reads class scores from the output population's sequence with ``readout``
(``"mean"`` over time, ``"last"`` step, or a function ``[T, B, n] -> [B, n]``), and trains with
cross-entropy by BPTT. After task ``i`` it tests on every task ``j``, filling row ``i`` of ``R``
(rows of tasks not yet trained stay NaN), and reports ACC, BWT and FWT (:mod:`neurosim.metrics`). Plugins see the runner: ``network``, ``optimizer``, ``task``,
``epoch``, ``inputs``, ``targets``, ``outputs``, ``loss``, ``R``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from .encoding import encode
from .errors import NeurosimError, check_positive
from .metrics import acc, bwt, fwt
from .network import Network
from .plugin import Plugin
from .scenarios import Scenario, Task

OPTIMIZERS = ("sgd", "adam")
READOUTS = {"mean": lambda out: out.mean(0), "last": lambda out: out[-1]}


@dataclass
class ContinualResult:
    R: np.ndarray
    b: np.ndarray
    acc: float
    bwt: float
    fwt: float


class Continual:
    """Runs ``scenario`` on ``network`` with ``plugins``; see the module docstring."""

    def __init__(self, network: Network, scenario: Scenario, plugins: list[Plugin] = (), *,
                 input: str | None = None, output: str | None = None, steps: int = 10,
                 encoding: str = "current", readout: str | Callable = "mean", epochs: int = 1,
                 batch_size: int = 64, lr: float = 0.1,
                 optimizer: str = "sgd", momentum: float = 0.0, seed: int = 0, progress: bool = True):
        if not isinstance(network, Network):
            raise NeurosimError(f"network must be a neurosim Network, got {type(network).__name__}")
        self.network, self.scenario = network, scenario
        self.plugins = list(plugins)
        for p in self.plugins:
            if not isinstance(p, Plugin):
                raise NeurosimError(f"plugins must be neurosim.Plugin instances, got {type(p).__name__}")
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
        check_positive("lr", lr)
        if not callable(readout) and readout not in READOUTS:
            raise NeurosimError(f"unknown readout {readout!r}; expected one of: {', '.join(READOUTS)}, or a function")
        self.readout = readout if callable(readout) else READOUTS[readout]
        for name, v in (("steps", steps), ("epochs", epochs), ("batch_size", batch_size)):
            if not isinstance(v, int) or v < 1:
                raise NeurosimError(f"{name} must be a positive integer, got {v!r}")
        self.steps, self.encoding, self.epochs, self.batch_size = steps, encoding, epochs, batch_size
        self.lr, self.optimizer_name, self.momentum, self.seed = lr, optimizer, momentum, seed
        self.progress = progress
        n = len(scenario)
        self.R = np.full((n, n), np.nan)
        self.b = np.full(n, np.nan)
        self.task: int = -1
        self.epoch: int = -1
        self.optimizer: torch.optim.Optimizer | None = None
        self.inputs = self.targets = self.outputs = self.loss = None
        self.generator = torch.Generator().manual_seed(seed)

    @staticmethod
    def _only(names: list[str], what: str) -> str:
        if len(names) != 1:
            raise NeurosimError(f"the network has {len(names)} candidates for the {what}; name it explicitly")
        return names[0]

    def _call(self, hook: str, *args):
        for p in self.plugins:
            getattr(p, hook)(self, *args)

    def make_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimiser over the parameters that require gradients (rebuilt at every task)."""
        params = [p for p in self.network.parameters() if p.requires_grad]
        if self.optimizer_name == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum)
        return torch.optim.Adam(params, lr=self.lr)

    def scores(self, x: torch.Tensor, task: Task | None = None) -> torch.Tensor:
        """Class scores ``[B, n_outputs]``: the readout of the output population's sequence."""
        seq = encode(x, self.steps, self.encoding, generator=self.generator)
        out = self.network.run({self.input: seq}, outputs=[self.output]).outputs[self.output]
        s = self.readout(out)[:, : self.scenario.n_outputs]
        if task is not None and self.scenario.task_incremental:
            mask = torch.full_like(s, float("-inf"))
            mask[:, list(task.classes)] = 0
            s = s + mask
        return s

    def evaluate(self, task: Task, batch_size: int = 512) -> float:
        self._call("before_eval")
        correct = 0
        with torch.no_grad():
            for i in range(0, len(task.test.y), batch_size):
                x = torch.as_tensor(task.test.x[i:i + batch_size])
                y = torch.as_tensor(task.test.y[i:i + batch_size])
                correct += int((self.scores(x, task).argmax(1) == y).sum())
        self._call("after_eval")
        return correct / len(task.test.y)

    def train_task(self, task: Task) -> None:
        n = len(task.train.y)
        for self.epoch in range(self.epochs):
            self._call("before_epoch")
            order = torch.randperm(n, generator=self.generator)
            bar = tqdm(range(0, n, self.batch_size), desc=f"task {task.index} epoch {self.epoch}",
                       unit="batch", leave=False, disable=not self.progress)
            for i in bar:
                idx = order[i:i + self.batch_size].numpy()
                self.inputs = torch.as_tensor(task.train.x[idx])
                self.targets = torch.as_tensor(task.train.y[idx])
                self._call("before_batch")
                self.outputs = self.scores(self.inputs, task)
                self._call("after_forward", self.outputs)
                loss = F.cross_entropy(self.outputs, self.targets)
                for p in self.plugins:
                    loss = p.before_backward(self, loss)
                if not torch.isfinite(loss):
                    raise NeurosimError(f"the loss became {loss.item()} in task {task.index}, epoch {self.epoch}")
                self.loss = loss
                self.optimizer.zero_grad()
                loss.backward()
                self._call("after_backward")
                self._call("before_update")
                self.optimizer.step()
                self._call("after_update")
                self._call("after_batch")
                bar.set_postfix(loss=f"{loss.item():.3f}")
            self._call("after_epoch")

    def run(self) -> ContinualResult:
        torch.manual_seed(self.seed)
        tasks = self.scenario.tasks
        self.b = np.array([self.evaluate(t) for t in tasks])
        self._call("before_training")
        for self.task, task in enumerate(tasks):
            self._call("before_task", self.task)
            self.optimizer = self.make_optimizer()
            self.train_task(task)
            self._call("after_task", self.task)
            self.R[self.task] = [self.evaluate(t) for t in tasks]
        self._call("after_training")
        return ContinualResult(self.R.copy(), self.b.copy(), acc(self.R), bwt(self.R), fwt(self.R, self.b))
