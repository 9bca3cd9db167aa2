"""Continual-learning scenarios: a sequence of tasks built from one labelled data set.

- :func:`permuted`: every task is the whole data set under a fixed pixel permutation (task 0
  unpermuted); one shared head (domain-incremental over permutations).
- :func:`split` with ``mode="task"``: the classes are cut into groups, one per task, and
  evaluation restricts the output to the task's classes (one head per task);
  ``mode="class"``: the same tasks with one shared head over all classes seen;
  ``mode="domain"``: labels are the position within the task's group (one shared head of
  group size; the model is never told the task).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..datasets.images import Dataset, Split
from ..errors import NeurosimError

SPLIT_MODES = ("task", "class", "domain")


@dataclass
class Task:
    index: int
    train: Dataset
    test: Dataset
    classes: tuple[int, ...]


@dataclass
class Scenario:
    """Tasks in order; ``n_outputs`` of the shared output layer; ``task_incremental``: evaluate
    (and train) on the task's own classes only."""

    name: str
    tasks: list[Task]
    n_inputs: int
    n_outputs: int
    task_incremental: bool = False

    def __len__(self) -> int:
        return len(self.tasks)


def permuted(data: Split, n_tasks: int = 5, seed: int = 0) -> Scenario:
    """``n_tasks`` permutations of the features of ``data`` (pixels; the channels of sequences),
    task 0 the identity."""
    if not isinstance(n_tasks, int) or n_tasks < 1:
        raise NeurosimError(f"n_tasks must be a positive integer, got {n_tasks!r}")
    rng = np.random.default_rng(seed)
    n_feat = data.train.x.shape[-1]
    classes = tuple(int(c) for c in np.unique(data.train.y))
    tasks = []
    for k in range(n_tasks):
        perm = np.arange(n_feat) if k == 0 else rng.permutation(n_feat)
        tasks.append(Task(k, Dataset(data.train.x[..., perm], data.train.y, data.train.shape),
                          Dataset(data.test.x[..., perm], data.test.y, data.test.shape), classes))
    return Scenario("permuted", tasks, n_feat, max(classes) + 1)


def split(data: Split, n_tasks: int = 5, mode: str = "task") -> Scenario:
    """Cut the sorted classes of ``data`` into ``n_tasks`` equal groups (see module docstring)."""
    if mode not in SPLIT_MODES:
        raise NeurosimError(f"unknown split mode {mode!r}; expected one of: {', '.join(SPLIT_MODES)}")
    classes = np.unique(data.train.y)
    if not isinstance(n_tasks, int) or n_tasks < 1 or len(classes) % n_tasks:
        raise NeurosimError(f"cannot split {len(classes)} classes into {n_tasks!r} equal tasks")
    groups = classes.reshape(n_tasks, -1)
    tasks = []
    for k, group in enumerate(groups):
        def part(d: Dataset) -> Dataset:
            keep = np.isin(d.y, group)
            y = d.y[keep]
            if mode == "domain":
                y = np.searchsorted(group, y)
            return Dataset(d.x[keep], y.astype(np.int64), d.shape)

        labels = tuple(range(len(group))) if mode == "domain" else tuple(int(c) for c in group)
        tasks.append(Task(k, part(data.train), part(data.test), labels))
    n_out = groups.shape[1] if mode == "domain" else int(classes.max()) + 1
    return Scenario(f"split-{mode}", tasks, data.train.x.shape[-1], n_out, task_incremental=mode == "task")
