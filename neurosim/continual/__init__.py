"""Continual learning: the runner, its learners, the plugin API, scenarios and metrics."""
from .learners import BPTT, EPropLearner, ThreeFactorLearner
from .metrics import acc, bwt, fwt
from .plugin import Plugin, available_plugins, create_plugin
from .runner import Continual, ContinualResult, Diverged, Interrupted
from .scenarios import Scenario, Task, permuted, split

__all__ = ["BPTT", "EPropLearner", "ThreeFactorLearner", "acc", "bwt", "fwt", "Plugin", "available_plugins",
           "create_plugin", "Continual", "ContinualResult", "Diverged", "Interrupted", "Scenario", "Task", "permuted",
           "split"]
