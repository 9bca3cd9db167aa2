"""Replay: feed a run's recorded input back into its network, at any of its checkpoints.

A run made with ``record`` (:class:`neurosim.continual.runner.Continual`) holds, for each task ``t``, the
encoded input of a few test samples and the spikes they caused, recorded with the network of the
checkpoint written at the end of task ``t``. :func:`replay` rebuilds the network from the run's
configuration, loads the parameters and module modes of a checkpoint (by default that one;
``after_task=u`` takes the one written at the end of task ``u``, to see how later learning changed
the response to old inputs), feeds the recorded input in evaluation mode, as it was recorded
(:func:`neurosim.continual.runner.evaluation_mode`), and compares the spikes with the recorded ones.
"""
from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import torch

from ..continual.runner import evaluation_mode
from ..errors import NeurosimError
from ..network import Probe
from ..storage.store import RunStore


class Replayed(NamedTuple):
    """Per population: recorded and replayed events ``(t, i, b)`` and how many differ; the
    checkpoint used, the readout's class scores ``[B, n_outputs]`` (``-inf`` outside the task's
    classes in a task-incremental run, as the run evaluates) and the samples' labels ``[B]``."""

    checkpoint: int
    recorded: dict
    replayed: dict
    differing: dict
    scores: torch.Tensor
    labels: np.ndarray


def _key(events) -> set:
    return set(zip(*(np.asarray(e).tolist() for e in events)))


def task_end_checkpoint(store: RunStore, task: int) -> int:
    """The index of the checkpoint written at the end of ``task``."""
    for info in reversed(store.checkpoints()):
        if info.complete and info.retained:
            cursor = store.checkpoint(info.index)["cursor"]
            if cursor == {"task": task + 1, "epoch": 0, "batch": 0, "step": cursor["step"]}:
                return info.index
    raise NeurosimError(f"{store.path} has no retained checkpoint from the end of task {task}")


def replay(path: str | os.PathLike, task: int, after_task: int | None = None) -> Replayed:
    """Replay the recording of ``task`` at the checkpoint of the end of ``after_task`` (default
    ``task``); see the module docstring."""
    from .experiment import build

    with RunStore.open(path, validate=True) as store:
        n = store.R.shape[0]
        for t in (task, after_task):
            if t is not None and not (isinstance(t, int) and 0 <= t < n):
                raise NeurosimError(f"{path} is a run of {n} tasks (0-{n - 1}); it has no task {t}")
        name = f"t{task}_input"
        if name not in store.recorders:
            raise NeurosimError(f"{path} has no recording of task {task}: run the experiment with record=")
        k = task_end_checkpoint(store, task if after_task is None else after_task)
        state = store.checkpoint(k)
        _, seq = store.read_state(name)
        pops = [r for r in store.recorders if r.startswith(f"t{task}_") and r != name]
        recorded = {r.removeprefix(f"t{task}_"): store.read_spikes(r) for r in pops}
        runner = build(store.config, progress=False)
    net = runner.network
    net.load_state_dict(state["network"])
    for m, training in zip(net.modules(), state.get("training", [])):  # modes as recorded (frozen batch norms)
        m.training = training
    probes = {pop: Probe(pop, "spikes", events=True) for pop in recorded}
    with torch.no_grad(), evaluation_mode(net):
        res = net.run({runner.input: torch.as_tensor(seq)}, outputs=[runner.output], probes=probes)
    replayed = {pop: tuple(e.numpy() for e in (t, i, b))[:len(recorded[pop])]  # (t, i) if batch 1
                for pop, (t, b, i) in res.probes.items()}
    differing = {pop: len(_key(recorded[pop]) ^ _key(replayed[pop])) for pop in recorded}
    spec = runner.scenario.tasks[task]
    scores = runner.mask(runner.readout(res.outputs[runner.output])[:, : runner.scenario.n_outputs], spec)
    return Replayed(k, recorded, replayed, differing, scores, spec.test.y[:seq.shape[1]])
