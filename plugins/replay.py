"""Rehearsal: a fixed-size memory of past tasks' samples mixed into every training batch.

After each task the memory holds ``memory_size`` samples split evenly over the tasks seen
(each task's share drawn at random from its training set). Every batch of a later task is
extended by ``batch_size`` samples drawn from the memory, each with the index of the task it came
from in the runner's ``sample_tasks``: in a task-incremental scenario (split mode ``task``) its
scores are masked with its own task's classes, so each replayed sample trains its own task's head.
Under data parallelism every rank holds the same memory and draws the same samples (one generator,
``seed``), into the global batch that the runner then splits between the ranks, with their tasks.
"""
from __future__ import annotations

import numpy as np
import torch

from neurosim.errors import NeurosimError
from neurosim.continual.plugin import Plugin


class Replay(Plugin):
    name = "replay"

    def __init__(self, memory_size: int = 200, batch_size: int = 32, seed: int = 0):
        for n, v in (("memory_size", memory_size), ("batch_size", batch_size)):
            if not isinstance(v, int) or v < 1:
                raise NeurosimError(f"{n} must be a positive integer, got {v!r}")
        self.memory_size, self.batch_size = memory_size, batch_size
        self.rng = np.random.default_rng(seed)
        self.x: list[np.ndarray] = []
        self.y: list[np.ndarray] = []
        self.tasks: list[int] = []  # the task of each entry of x and y

    def after_task(self, runner, task: int) -> None:
        data = runner.scenario.tasks[task].train
        share = self.memory_size // (len(self.x) + 1)
        self.x = [x[:share] for x in self.x]
        self.y = [y[:share] for y in self.y]
        pick = self.rng.choice(len(data.y), size=min(share, len(data.y)), replace=False)
        self.x.append(data.x[pick])
        self.y.append(data.y[pick])
        self.tasks.append(task)

    def before_batch(self, runner) -> None:
        if not self.x:
            return
        xs, ys = np.concatenate(self.x), np.concatenate(self.y)
        pick = self.rng.choice(len(ys), size=min(self.batch_size, len(ys)), replace=False)
        runner.inputs = torch.cat([runner.inputs, torch.as_tensor(xs[pick])])
        runner.targets = torch.cat([runner.targets, torch.as_tensor(ys[pick])])
        ts = np.repeat(np.array(self.tasks, dtype=np.int64), [len(y) for y in self.y])
        runner.sample_tasks = torch.cat([runner.sample_tasks, torch.as_tensor(ts[pick])])

    def state_dict(self) -> dict:
        return {"x": [x.copy() for x in self.x], "y": [y.copy() for y in self.y], "tasks": list(self.tasks),
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.x = [np.array(x) for x in state["x"]]
        self.y = [np.array(y) for y in state["y"]]
        # checkpoints without "tasks" hold one entry per task, in task order
        self.tasks = [int(t) for t in state.get("tasks", range(len(self.y)))]
        self.rng.bit_generator.state = state["rng"]
