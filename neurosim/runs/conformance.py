r"""The strategy x scenario conformance matrix: every built-in continual-learning strategy, with its default
settings (``create_plugin(name)``), on networks and scenarios it was not tuned on.

Scenarios (:data:`SCENARIOS`), on data that ships or is generated (scikit-learn's 8x8 digits,
standardised; the lag task of :mod:`neurosim.datasets.temporal_tasks`), trained by BPTT with plain
SGD (lr 0.1, batches of 32, input as a constant current over 8 steps) unless said otherwise:

- ``permuted``: three permuted digit tasks, one shared head; a LIF layer, ``64-128-10``
  (:func:`lif_mlp`), two epochs per task;
- ``permuted-long``: five permuted digit tasks trained eight epochs each (about 360 batches per
  task) on the DSR network of :mod:`neurosim.models.pmnist` at ``64-128-10``, scored by its readout:
  a strategy whose updates drift under gradient noise, or whose stiffness grows with every task,
  shows it here, not on three tasks of two epochs;
- ``split-task``: five tasks of two digit classes, task-incremental (each task trained and tested on
  its own classes), ``64-32-10``, five epochs per task;
- ``split-class``: the same tasks class-incremental (one head over every class);
- ``split-short``: ``split-task`` with one epoch of batches of 16 per task (about 17 batches);
- ``recurrent``: permuted digits (600 training and 150 test samples) on a LIF layer of 100 with a
  learnt recurrent Sparse projection (:func:`recurrent_lif`, as the README's first example);
- ``ei``: the same data on an E/I LIF reservoir of 100 (80 % excitatory) whose learnt recurrent
  Sparse projection keeps Dale's law, with a learnt input and a trained readout (:func:`ei_reservoir`);
- ``delayed``: two channel permutations of the lag task (classes differ only in the lags between
  channels; spike counts fed as sequences) on the learnable-delay network of
  :mod:`neurosim.models.delays`, ``8-16-4``, delays up to 13 steps, without dropout; lr 0.5,
  batches of 16, five epochs per task;
- ``three-factor``: permuted digits, the readout of a fixed spiking layer of 200
  (:func:`fixed_layer`) trained by the three-factor rule
  (:class:`~neurosim.continual.learners.ThreeFactorLearner`), lr 0.2.

:func:`run_cell` trains one strategy (or ``"none"``) on one scenario with :class:`UpdateCheck`
around it, which measures on every batch how much the strategies' hooks lengthen the update.
``benchmarks/conformance.py`` prints the matrix; ``tests/test_strategy_conformance.py`` asserts on it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from ..continual import Continual, ContinualResult, Plugin, Scenario, ThreeFactorLearner, create_plugin, permuted, split
from ..datasets import as_split, digits, lag_task, standardised
from ..datasets.images import Split, subset
from ..errors import NeurosimError, check_choice
from ..models.delays import build_delay_net, scores as delay_scores
from ..models.pmnist import build_pmnist, readout as pmnist_scores
from ..network import Network
from ..neurons import LI, LIF
from ..projections import Dense, Sparse

#: The built-in strategies the matrix covers, each made by ``create_plugin(name)``.
STRATEGIES = ("hlop", "gpm", "ewc", "si", "metaplasticity", "replay")
#: The row without protection.
NONE = "none"


class UpdateCheck(Plugin):
    """Measures what the plugins between :attr:`first` and this one do to the update, on every batch:
    ``grad_ratio``, the largest ratio of a parameter's gradient norm after their ``after_backward``
    to before it; ``update_ratio``, the largest ratio of a parameter's change after their
    ``after_update`` to the optimiser's step. Place :attr:`first` before the strategies and this
    plugin after them (:meth:`around`)."""

    name = "update-check"

    def __init__(self):
        self.first = _Before()
        self.grad_ratio = self.update_ratio = 0.0
        self.batches = 0

    def around(self, plugins: list[Plugin]) -> list[Plugin]:
        return [self.first, *plugins, self]

    @staticmethod
    def _ratio(before: dict, after: dict) -> float:
        worst = 0.0
        for name, a in before.items():
            b = float(after[name].norm())
            a = float(a.norm())
            worst = max(worst, b / a if a > 0 else (math.inf if b > 0 else 0.0))
        return worst

    def after_backward(self, runner) -> None:
        grads = {n: p.grad for n, p in runner.network.named_parameters() if n in self.first.grads}
        self.grad_ratio = max(self.grad_ratio, self._ratio(self.first.grads, grads))
        self.batches += 1

    def after_update(self, runner) -> None:
        final = {n: p.detach() - self.first.before[n] for n, p in runner.network.named_parameters()
                 if n in self.first.before}
        self.update_ratio = max(self.update_ratio, self._ratio(self.first.steps, final))


class _Before(Plugin):
    """The first half of :class:`UpdateCheck`: the raw gradient, the parameters before the step and the
    optimiser's step."""

    name = "update-check-first"

    def __init__(self):
        self.grads, self.before, self.steps = {}, {}, {}

    def after_backward(self, runner) -> None:
        self.grads = {n: p.grad.detach().clone() for n, p in runner.network.named_parameters()
                      if p.requires_grad and p.grad is not None}

    def before_update(self, runner) -> None:
        self.before = {n: p.detach().clone() for n, p in runner.network.named_parameters() if p.requires_grad}

    def after_update(self, runner) -> None:
        self.steps = {n: p.detach() - self.before[n] for n, p in runner.network.named_parameters()
                      if n in self.before}


# -- networks ----------------------------------------------------------------------------------
def lif_mlp(n_in: int, n_out: int, hidden: int = 128) -> Network:
    """``x -> h`` (LIF, Dense) ``-> out`` (LI readout, Dense)."""
    net = Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("h", LIF(hidden, tau_mem=10.0))
    net.add("out", LI(n_out, tau_mem=10.0))
    net.connect("x", "h", Dense(n_in, hidden))
    net.connect("h", "out", Dense(hidden, n_out))
    return net


def recurrent_lif(n_in: int, n_out: int, hidden: int = 100, seed: int = 0) -> Network:
    """:func:`lif_mlp` with a learnt recurrent Sparse projection ``h -> h`` (p 0.1, weight 0.05)."""
    net = lif_mlp(n_in, n_out, hidden)
    net.connect("h", "h", Sparse(hidden, hidden, p=0.1, weight=0.05, learnable=True, seed=seed))
    return net


def ei_reservoir(n_in: int, n_out: int, n: int = 100, seed: int = 0) -> Network:
    """An E/I LIF reservoir ``"res"`` (80 % excitatory) with a learnt recurrent Sparse projection
    under Dale's law (p 0.1, magnitudes 0.1 from E and 0.4 from I), a learnt Dense input and a
    trained readout."""
    n_exc = round(0.8 * n)
    signs = torch.where(torch.arange(n) < n_exc, 1.0, -1.0)
    net = Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("res", LIF(n, tau_mem=10.0))
    net.add("out", LI(n_out, tau_mem=10.0))
    net.connect("x", "res", Dense(n_in, n, scale=2.0))
    net.connect("res", "res", Sparse(n, n, p=0.1, dale=signs, learnable=True, seed=seed,
                                     weight=lambda pre, post: np.where(pre < n_exc, 0.1, 0.4)))
    net.connect("res", "out", Dense(n, n_out))
    return net


def fixed_layer(n_in: int, n_out: int, hidden: int = 200) -> Network:
    """A fixed spiking layer (``learnable=False``) and a readout for the three-factor rule."""
    net = Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("h", LIF(hidden, tau_mem=5.0))
    net.add("out", LI(n_out, tau_mem=5.0))
    net.connect("x", "h", Dense(n_in, hidden, scale=3.0, learnable=False))
    net.connect("h", "out", Dense(hidden, n_out, scale=0.1))
    return net


# -- scenarios ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One scenario: its data and network (built from a seed) and the runner's options."""

    name: str
    summary: str
    scenario: Callable[[int], Scenario]
    network: Callable[[Scenario, int], Network]
    options: dict = field(default_factory=dict)
    learning: Callable[[], object] | None = None


def _digits(n_train: int | None = None, n_test: int | None = None) -> Split:
    return subset(standardised(digits()), n_train, n_test)


def _lags(seed: int) -> Split:
    train, test, _ = lag_task(n_train=256, n_test=128, seed=seed)
    return as_split(train, test)


def _delay_net(sc: Scenario, seed: int) -> Network:
    return build_delay_net(sc.n_inputs, sc.n_outputs, hidden=[16], max_delay=13, seed=seed, dropout=0.0)


BPTT = dict(steps=8, epochs=2, batch_size=32, lr=0.1)
SCENARIOS: dict[str, Cell] = {c.name: c for c in (
    Cell("permuted", "3 permuted digit tasks, LIF 64-128-10",
         lambda seed: permuted(_digits(), 3, seed), lambda sc, seed: lif_mlp(sc.n_inputs, sc.n_outputs), BPTT),
    Cell("permuted-long", "5 permuted digit tasks, 8 epochs each, DSR 64-128-10",
         lambda seed: permuted(_digits(), 5, seed), lambda sc, seed: build_pmnist(sc.n_inputs, 128, sc.n_outputs, seed),
         dict(BPTT, epochs=8, readout=pmnist_scores)),
    Cell("split-task", "5 two-class digit tasks, task-incremental, LIF 64-32-10",
         lambda seed: split(_digits(), 5, "task"), lambda sc, seed: lif_mlp(sc.n_inputs, sc.n_outputs, 32),
         dict(BPTT, epochs=5)),
    Cell("split-class", "5 two-class digit tasks, class-incremental, LIF 64-32-10",
         lambda seed: split(_digits(), 5, "class"), lambda sc, seed: lif_mlp(sc.n_inputs, sc.n_outputs, 32),
         dict(BPTT, epochs=5)),
    Cell("split-short", "split-task with one epoch of ~17 batches per task",
         lambda seed: split(_digits(), 5, "task"), lambda sc, seed: lif_mlp(sc.n_inputs, sc.n_outputs, 32),
         dict(BPTT, epochs=1, batch_size=16)),
    Cell("recurrent", "3 permuted digit tasks, LIF 64-100-10 with a learnt recurrent Sparse projection",
         lambda seed: permuted(_digits(600, 150), 3, seed),
         lambda sc, seed: recurrent_lif(sc.n_inputs, sc.n_outputs, seed=seed), BPTT),
    Cell("ei", "3 permuted digit tasks, E/I reservoir of 100 under Dale's law, trained readout",
         lambda seed: permuted(_digits(600, 150), 3, seed),
         lambda sc, seed: ei_reservoir(sc.n_inputs, sc.n_outputs, seed=seed), BPTT),
    Cell("delayed", "2 channel permutations of the lag task, learnt delays 8-16-4",
         lambda seed: permuted(_lags(seed), 2, seed), _delay_net,
         dict(steps=13, epochs=5, batch_size=16, lr=0.5, readout=delay_scores)),
    Cell("three-factor", "3 permuted digit tasks, fixed LIF layer, readout by the three-factor rule",
         lambda seed: permuted(_digits(), 3, seed), lambda sc, seed: fixed_layer(sc.n_inputs, sc.n_outputs),
         dict(BPTT, lr=0.2), ThreeFactorLearner),
)}


@dataclass
class Outcome:
    """What :func:`run_cell` measured: the runner's result (None if the strategy refused or the run
    stopped), the refusal or stop (``error``), :class:`UpdateCheck`'s ratios, the CPU time and the
    network as training left it."""

    strategy: str
    scenario: str
    seed: int
    result: ContinualResult | None
    error: NeurosimError | None
    grad_ratio: float
    update_ratio: float
    batches: int
    cpu: float
    network: Network


def run_cell(strategy: str, scenario: str, seed: int = 0, plugin: Plugin | None = None) -> Outcome:
    """Train ``strategy`` (a name for ``create_plugin``, with its defaults, or ``"none"``) on
    ``scenario`` (a key of :data:`SCENARIOS`), network and sample order from ``seed``; ``plugin``, a
    configured plugin, replaces the strategy's defaults (``strategy`` then only names the outcome)."""
    check_choice("scenario", scenario, list(SCENARIOS))
    cell = SCENARIOS[scenario]
    sc = cell.scenario(seed)
    torch.manual_seed(seed)
    net = cell.network(sc, seed)
    check = UpdateCheck()
    start = time.process_time()
    result, error = None, None
    try:
        plugins = [plugin] if plugin is not None else [] if strategy == NONE else [create_plugin(strategy)]
        runner = Continual(net, sc, check.around(plugins), progress=False, seed=seed,
                           learning=cell.learning() if cell.learning else None, **cell.options)
        result = runner.run()
    except NeurosimError as e:
        error = e
    return Outcome(strategy, scenario, seed, result, error, check.grad_ratio, check.update_ratio, check.batches,
                   time.process_time() - start, net)
