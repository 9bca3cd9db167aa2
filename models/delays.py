r"""The learnable-delay network of Hammouamri et al. (ICLR 2024) and its training.

**Network** (:func:`build_delay_net`): input ``"x"`` (event counts per step), hidden LIF
populations ``"h1"``, ``"h2"``, ... and a readout ``"out"``. Every projection is a
:class:`~neurosim.projections.Chain` around a :class:`~neurosim.Delayed` projection (``D`` =
``max_delay`` taps): into a hidden layer ``delay-conv -> BatchNorm1d`` (statistics over time and
batch), with dropout (one mask per sequence) on its input except from ``"x"``; into the readout
``delay-conv`` alone, after the same dropout. So each hidden layer is the paper's block
``delay-conv -> BN -> LIF -> dropout``. The neurons follow SpikingJelly's LIF without input decay,
with :math:`\tau` in steps,

.. math::

    V[t] = V[t-1]\,(1 - 1/\tau) + I[t], \qquad z[t] = H(V[t] - 1), \qquad V[t] \leftarrow V[t]\,(1 - z[t]),

:math:`\tau = 1.005`, the reset detached from the graph, ATan surrogate
:math:`\partial z / \partial V = (\alpha/2) / (1 + (\pi \alpha (V - 1)/2)^2)` with :math:`\alpha = 5`.
:class:`~neurosim.LIF` decays by :math:`\beta = e^{-dt/\tau_m}` per step, so :math:`\tau_m` is
set to :math:`-dt / \ln(1 - 1/\tau)` (:func:`lif_parameters`), which makes :math:`\beta = 1 - 1/\tau`
(to rounding in the last bit). It fires strictly above the threshold (SpikingJelly at equality too:
a difference only on a set of measure zero). The readout is the same update with a threshold of
:math:`10^9`, i.e. the leaky integrator :class:`~neurosim.LI` with the same :math:`\tau_m`; its
membrane :math:`V_{out}` gives the loss (:func:`delay_loss`)

.. math:: \mathcal L = \mathrm{CE}\Big(\sum_t \mathrm{softmax}(V_{out}[t]),\; y\Big),

the sum of softmaxes passed to the cross-entropy as logits (a second log-softmax), and the
prediction :math:`\arg\max_k \sum_t \mathrm{softmax}(V_{out}[t])_k`. ``delays="random"`` fixes
integer delays drawn uniformly from ``0 .. D-1``; ``"none"`` uses plain dense synapses (``D = 1``).

**Training** (:class:`DelayTrainer`, :func:`fit`): the weights (with weight decay :math:`10^{-5}`)
and the batch-norm affines (without) share one Adam with ``OneCycleLR`` (max :math:`5 \cdot 10^{-3}`,
PyTorch's defaults), the positions another Adam (lr 0.1, cosine annealing over ``epochs``, no weight
decay); both schedulers step once per epoch, then :math:`\sigma` takes the next value of
:func:`~neurosim.projections.sigma_schedule`. Batches are event counts per step (not 0/1) padded to
the longest sample of the batch and to at least ``D`` steps, then by ``tail`` zero steps (default
:math:`L \lfloor (D-1)/2 \rfloor` for :math:`L` delayed layers: the paper pads :math:`(D-1)/\!/2`
steps on the right of each layer, so the output of the last layer has that many more steps).
Evaluation uses the rounded integer delays (:func:`~neurosim.projections.integer_delays`) with
batch norm on its running statistics and no dropout; training then continues from the
continuous positions.
"""
from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.nn import functional as F

from neurosim.errors import NeurosimError, check_choice, check_positive
from neurosim.datasets.event_sets import EventSet
from neurosim.network import Network
from neurosim.neurons import LI, LIF, LIFParameters
from neurosim.projections import Chain, Delayed, Dense, integer_delays, sigma_schedule
from neurosim.projections.delayed import SIGMA_FINAL
from neurosim.neurons.surrogate import surrogate

#: Neuron settings of the paper: tau in steps, threshold, ATan surrogate scale.
TAU_STEPS, V_TH, ALPHA = 1.005, 1.0, 5.0
#: Optimiser settings of the paper.
LR, LR_POSITIONS, WEIGHT_DECAY = 5e-3, 0.1, 1e-5
DELAY_MODES = ("learnable", "random", "none")


def lif_parameters(dt: float = 1.0, tau: float = TAU_STEPS) -> LIFParameters:
    """The paper's LIF for a network step ``dt``: ``exp(-dt / tau_mem) = 1 - 1/tau`` (``tau`` in steps, > 1),
    threshold 1, hard reset to 0 (detached), jump input."""
    check_positive("dt", dt)
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 1:
        raise NeurosimError(f"tau must be a number of steps > 1 (decay 1 - 1/tau), got {tau!r}")
    return LIFParameters(tau_mem=-dt / math.log(1 - 1 / tau), v_th=V_TH, v_reset=0.0, reset="zero",
                         input_mode="jump", detach_reset=True)


def build_delay_net(n_in: int, n_out: int, hidden: Sequence[int] = (256, 256), max_delay: int = 25, *,
                    delays: str = "learnable", dropout: float = 0.4, seed: int = 0, dt: float = 1.0,
                    tau: float = TAU_STEPS, alpha: float = ALPHA, batch_norm: bool = True,
                    dtype: torch.dtype = torch.float32) -> Network:
    """The network of the module docstring: ``"x"`` (``n_in``) -> ``"h1"`` ... -> ``"out"`` (``n_out``).

    ``hidden`` may be empty (one delayed layer straight into the readout). ``delays``:
    ``"learnable"``, ``"random"`` or ``"none"``. ``dt`` is the network step (any unit: ``tau`` is in
    steps). Projections are named ``"x_to_h1"``, ..., ``"h<L>_to_out"``.
    """
    check_choice("delays", delays, DELAY_MODES)
    for name, n in (("n_in", n_in), ("n_out", n_out), ("max_delay", max_delay)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise NeurosimError(f"{name} must be a positive integer, got {n!r}")
    hidden = tuple(hidden)
    for h in hidden:
        if isinstance(h, bool) or not isinstance(h, int) or h < 1:
            raise NeurosimError(f"hidden sizes must be positive integers, got {hidden!r}")
    check_positive("alpha", alpha)
    params = lif_parameters(dt, tau)
    g = torch.Generator().manual_seed(seed)
    net = Network(dt=dt)
    net.add_input("x", n_in)
    names = ["x"] + [f"h{i + 1}" for i in range(len(hidden))] + ["out"]
    for name, n in zip(names[1:-1], hidden):
        net.add(name, LIF(n, params, spike_fn=surrogate("atan", alpha), dtype=dtype))
    net.add("out", LI(n_out, tau_mem=params.tau_mem, input_mode="jump", dtype=dtype))
    sizes = (n_in,) + hidden + (n_out,)
    for k, (pre, post) in enumerate(zip(names[:-1], names[1:])):
        a, b = sizes[k], sizes[k + 1]
        if delays == "none":
            proj = Dense(a, b, generator=g, dtype=dtype)
        else:
            proj = Delayed(a, b, max_delay, delays=delays, generator=g, dtype=dtype)
        net.connect(pre, post, Chain(proj, dropout=dropout if pre != "x" else 0.0,
                                     batch_norm=batch_norm and post != "out"))
    return net


def scores(v_out: torch.Tensor) -> torch.Tensor:
    """The logits ``sum_t softmax(v_out[t])`` ``[B, C]`` of the readout membrane ``v_out`` ``[T, B, C]``
    (the continual runner's readout for this network)."""
    return F.softmax(v_out, dim=-1).sum(0)


def delay_loss(v_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of :func:`scores` taken as logits; ``v_out`` ``[T, B, C]``, ``y`` ``[B]``."""
    return F.cross_entropy(scores(v_out), y)


def predict(v_out: torch.Tensor) -> torch.Tensor:
    """Class of each sample: ``argmax_k`` of :func:`scores`."""
    return scores(v_out).argmax(-1)


def delayed_projections(net: Network) -> list[Delayed]:
    return [m for m in net.modules() if isinstance(m, Delayed)]


@dataclass(frozen=True)
class EpochLog:
    """One epoch: mean training loss and accuracy (continuous delays, dropout on), test loss and
    accuracy (rounded delays), training and evaluation seconds, the sigma it trained with."""

    epoch: int
    loss: float
    train_acc: float
    test_loss: float
    test_acc: float
    seconds: float
    eval_seconds: float
    sigma: float


class DelayTrainer:
    """Trains a :func:`build_delay_net` network (or any network of ``Chain``/``Delayed``/``Dense``
    projections with one input and an ``"out"`` readout) on :class:`EventSet` data as in the paper.

    ``epochs`` sets the schedules (OneCycle, cosine, sigma). ``tail``: zero steps appended to every
    batch (default: ``sum over delayed layers of (D-1)//2``). ``seed`` fixes dropout and batch order.
    """

    def __init__(self, net: Network, epochs: int, *, batch_size: int = 64, lr: float = LR,
                 lr_positions: float = LR_POSITIONS, weight_decay: float = WEIGHT_DECAY,
                 tail: int | None = None, seed: int = 0, output: str = "out"):
        if not isinstance(net, Network):
            raise NeurosimError(f"net must be a neurosim Network, got {type(net).__name__}")
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise NeurosimError(f"epochs must be a positive integer, got {epochs!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise NeurosimError(f"batch_size must be a positive integer, got {batch_size!r}")
        for name, v in (("lr", lr), ("lr_positions", lr_positions)):
            check_positive(name, v)
        check_positive("weight_decay", weight_decay, allow_zero=True)
        if len(net.inputs) != 1:
            raise NeurosimError(f"the network must have one input, it has {len(net.inputs)}")
        if output not in net.populations:
            raise NeurosimError(f"the network has no output population {output!r}")
        self.net, self.epochs, self.batch_size, self.seed, self.output = net, epochs, batch_size, seed, output
        self.input = next(iter(net.inputs))
        self.delayed = delayed_projections(net)
        self.max_delay = max((m.max_delay for m in self.delayed), default=1)
        if tail is None:
            tail = default_tail(net)
        if isinstance(tail, bool) or not isinstance(tail, int) or tail < 0:
            raise NeurosimError(f"tail must be an integer >= 0, got {tail!r}")
        self.tail = tail
        positions = [m.positions for m in self.delayed if m.positions is not None]
        ids = {id(p) for p in positions}
        weights = [p for c in net.connections.values() for p in [c.projection.weight]
                   if p is not None and p.requires_grad]
        ids |= {id(p) for p in weights}
        others = [p for p in net.parameters() if p.requires_grad and id(p) not in ids]
        groups = [{"params": weights, "weight_decay": weight_decay}, {"params": others, "weight_decay": 0.0}]
        self.opt = torch.optim.Adam([gr for gr in groups if gr["params"]], lr=lr)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(self.opt, max_lr=lr, total_steps=epochs)
        self.opt_pos = self.sched_pos = None
        if positions:
            self.opt_pos = torch.optim.Adam(positions, lr=lr_positions)
            self.sched_pos = torch.optim.lr_scheduler.CosineAnnealingLR(self.opt_pos, T_max=epochs)
        learnable = [m for m in self.delayed if m.positions is not None]
        self.sigmas = None
        if learnable:  # from the current sigma (D // 2 when built), lowered only (as the paper)
            s0 = learnable[0].sigma
            self.sigmas = sigma_schedule(s0, epochs) if s0 > SIGMA_FINAL else [s0] * epochs
        self.epoch = 0
        self.history: list[EpochLog] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The readout membrane ``[T, B, n_out]`` for input counts ``x``."""
        return readout(self.net, x, self.output)

    # -- training ---------------------------------------------------------------------------
    def train_epoch(self, train: EventSet) -> tuple[float, float, float]:
        """One epoch over ``train``; returns (mean loss, accuracy, seconds). Steps the schedulers and sigma."""
        self._check(train)
        self.net.train()
        torch.manual_seed(self.seed * 100_003 + self.epoch)
        start = time.perf_counter()
        total, correct, count = 0.0, 0, 0
        for x, y in padded_batches(train, self.batch_size, self.max_delay, self.tail, shuffle=True,
                                   seed=self.seed * 100_003 + self.epoch):
            self.opt.zero_grad(set_to_none=True)
            if self.opt_pos is not None:
                self.opt_pos.zero_grad(set_to_none=True)
            v = self.forward(x)
            loss = delay_loss(v, y)
            loss.backward()
            self.opt.step()
            if self.opt_pos is not None:
                self.opt_pos.step()
            total += loss.item() * y.numel()
            correct += int((predict(v.detach()) == y).sum())
            count += y.numel()
        self.sched.step()
        if self.sched_pos is not None:
            self.sched_pos.step()
        self.epoch += 1
        if self.sigmas is not None:
            sigma = self.sigmas[min(self.epoch, self.epochs - 1)]
            for m in self.delayed:
                if m.positions is not None:
                    m.sigma = sigma
        return total / max(count, 1), correct / max(count, 1), time.perf_counter() - start

    def evaluate(self, data: EventSet, rounded: bool = True) -> tuple[float, float]:
        """(mean loss, accuracy) on ``data``: :func:`evaluate` with this trainer's batches."""
        self._check(data)
        return evaluate(self.net, data, self.batch_size, rounded=rounded, tail=self.tail, output=self.output)

    def fit(self, train: EventSet, test: EventSet, epochs: int | None = None,
            callback: Callable[[EpochLog], None] | None = None) -> list[EpochLog]:
        """Train ``epochs`` more epochs (default: the rest of the schedule), evaluating on ``test``
        after each; returns the logs of these epochs (all are kept in ``history``)."""
        left = self.epochs - self.epoch
        epochs = left if epochs is None else epochs
        if isinstance(epochs, bool) or not isinstance(epochs, int) or not 0 <= epochs <= left:
            raise NeurosimError(f"epochs must be an integer in [0, {left}] (the schedule's epochs left), got {epochs!r}")
        logs = []
        for _ in range(epochs):
            sigma = max((m.sigma for m in self.delayed if m.positions is not None), default=float("nan"))
            loss, acc, seconds = self.train_epoch(train)
            start = time.perf_counter()
            test_loss, test_acc = self.evaluate(test)
            log = EpochLog(self.epoch - 1, loss, acc, test_loss, test_acc, seconds, time.perf_counter() - start,
                           sigma)
            self.history.append(log)
            logs.append(log)
            if callback is not None:
                callback(log)
        return logs

    def _check(self, data: EventSet) -> None:
        if not isinstance(data, EventSet):
            raise NeurosimError(f"data must be an EventSet, got {type(data).__name__}")
        n_in, n_out = self.net.inputs[self.input], self.net.populations[self.output].n
        if data.channels != n_in:
            raise NeurosimError(f"the data has {data.channels} channels but the network input has {n_in}")
        if len(data) and int(data.labels.max()) >= n_out:
            raise NeurosimError(f"the data has label {int(data.labels.max())} but the readout has {n_out} classes")


def fit(net: Network, train: EventSet, test: EventSet, epochs: int, *, batch_size: int = 64,
        callback: Callable[[EpochLog], None] | None = None, **kwargs) -> list[EpochLog]:
    """Train ``net`` for ``epochs`` as in the paper (:class:`DelayTrainer`, ``kwargs`` passed on);
    returns one :class:`EpochLog` per epoch."""
    return DelayTrainer(net, epochs, batch_size=batch_size, **kwargs).fit(train, test, callback=callback)


def padded_batches(data: EventSet, batch_size: int, min_steps: int = 1, tail: int = 0, *, shuffle: bool = False,
                   seed: int | None = None):
    """``(x [T + tail, B, C], y [B])`` batches of ``data``: counts padded to the longest sample of the
    batch (at least ``min_steps`` steps), then ``tail`` zero steps."""
    for x, y, _ in data.batches(batch_size, shuffle=shuffle, seed=seed, min_steps=min_steps):
        yield (F.pad(x, (0, 0, 0, 0, 0, tail)) if tail else x), y


def readout(net: Network, x: torch.Tensor, output: str = "out") -> torch.Tensor:
    """The membrane ``[T, B, n_out]`` of ``output`` for counts ``x`` fed to the network's one input."""
    return net.run({next(iter(net.inputs)): x}, outputs=[output]).outputs[output]


def default_tail(net: Network) -> int:
    """Zero steps the paper's padding adds at the end: ``(D-1)//2`` per delayed layer."""
    return sum((m.max_delay - 1) // 2 for m in delayed_projections(net))


@torch.no_grad()
def evaluate(net: Network, data: EventSet, batch_size: int = 256, *, rounded: bool = True, tail: int | None = None,
             output: str = "out") -> tuple[float, float]:
    """(mean loss, accuracy) of ``net`` on ``data`` in evaluation mode (batch norm on running
    statistics, no dropout), with rounded integer delays if ``rounded``; ``tail`` as in training."""
    tail = default_tail(net) if tail is None else tail
    min_steps = max((m.max_delay for m in delayed_projections(net)), default=1)
    was = net.training
    net.eval()
    total, correct = 0.0, 0
    try:
        with integer_delays(net) if rounded else nullcontext():
            for x, y in padded_batches(data, batch_size, min_steps, tail):
                v = readout(net, x, output)
                total += float(delay_loss(v, y)) * y.numel()
                correct += int((predict(v) == y).sum())
    finally:
        net.train(was)
    return total / max(len(data), 1), correct / max(len(data), 1)
