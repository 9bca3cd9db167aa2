"""Freezing after the first task: from task ``after + 1`` on, only the projections' weights learn.

What stops learning is :func:`neurosim.plugins.orthogonal.freeze`: neuron parameters
(thresholds, time constants), batch-norm statistics and affines, delay positions, biases. It is
the protocol of the HLOP paper's scripts (Xiao et al., ICLR 2024), which fix thresholds and batch
norms after the first task for every method they run, and HLOP and GPM apply it by themselves
(``freeze_after_first_task``); this plugin gives the same protocol to any other strategy. It acts
in ``before_task`` (before the runner builds the task's optimiser from the parameters that require
gradients) and again before every batch (a learner may put the network back in training mode).
It keeps no state: the flags and module modes are in the runner's checkpoints.
"""
from __future__ import annotations

from neurosim.continual.plugin import Plugin
from neurosim.errors import check_int

from .orthogonal import freeze


class Freeze(Plugin):
    """``Freeze(after=0)``: only weights learn from task ``after + 1`` on."""

    name = "freeze"

    def __init__(self, after: int = 0):
        self.after = check_int("after", after, minimum=0)

    def before_task(self, runner, task: int) -> None:
        if task > self.after:
            freeze(runner.network)

    def before_batch(self, runner) -> None:
        if getattr(runner, "task", -1) > self.after:
            freeze(runner.network)
