r"""Predicting what will happen, when and with what probability (after Yamada & Chao 2025).

**Task.** A trial of ``trial_ms`` steps of 1 ms shows one cue at ``cue_onset``. Each cue has a
:class:`Contingency`: with probability ``probability`` an event follows ``latency`` ms after the
cue's onset, on readout ``readout`` (the "what"). The event is the readouts' target, a Gaussian
pulse :math:`f_i[t] = \exp(-(t - t_{cue} - L)^2 / 2\sigma^2)` on its readout and zero elsewhere;
without an event the target is zero throughout. Trials draw their cue uniformly.

**Reservoir** (:class:`CueReservoir`). An E/I Izhikevich network (Izhikevich 2003:
per-neuron :math:`r \sim U(0, 1)`, E: :math:`a = 0.02, b = 0.2, c = -65 + 15 r^2, d = 8 - 6 r^2`;
I: :math:`a = 0.02 + 0.08 r, b = 0.25 - 0.05 r, c = -65, d = 2`; all-to-all synapses
:math:`(w_{exc}/n) U(0, 1)` from E and :math:`(w_{inh}/n) U(0, 1)` from I) in a tonic regime:
each neuron gets a constant current :math:`I_i \sim U(I_{lo}, I_{hi})` plus ``noise`` times the
thalamic noise of section 6 (:math:`5 N(0, 1)` for E, :math:`2 N(0, 1)` for I, per step). A cue
is a burst of input spikes: ``channels`` channels of its own, each with a spike pattern drawn once
(probability ``cue_rate`` per ms over ``cue_ms``), reaching each neuron with probability ``p_in``
and weight ``w_in``. The burst resets the phases of the neurons it reaches, which then drift
apart at their own rates: the population state encodes which cue came and how long ago. The
reservoir runs on without resets; a random gap of ``gap_ms`` steps separates trials. Its
recurrent weights are ~17 times weaker than the 2003 network's: with those, a cue burst silences
the network for a hundred milliseconds and leaves no cue-specific timing.

**Readouts** (:class:`ThreeFactorReadout`). Synaptic traces of the reservoir's spikes minus
each neuron's baseline rate :math:`\bar s_j` (measured without cues, :meth:`CueReservoir.baseline`),
:math:`x_j[t] = \lambda_{pre} x_j[t-1] + s_j[t] - \bar s_j`, drive leaky-integrator readouts
:math:`z_i[t] = \lambda_z z_i[t-1] + (1 - \lambda_z) \sum_j W_{ij} x_j[t]`
(:math:`\lambda = e^{-dt/\tau}`). :math:`W` learns with the three-factor rule of
:mod:`neurosim.learning.three_factor` (``hebbian="pre"``, :math:`\tau_e = \tau_z`,
:math:`A_+ = 1 - \lambda_z`), so the eligibility
:math:`e_{ij}[t] = \lambda_z e_{ij}[t-1] + (1 - \lambda_z) x_j[t]` is
:math:`\partial z_i[t] / \partial W_{ij}` (for weights held fixed), and the modulator is the
readout's error gated by attention, :math:`M_i[t] = g[t] (f_i[t] - z_i[t])`, with :math:`g = 1`
from ``attention_delay`` ms after the cue's onset to the trial's end and 0 before (the cue's own
burst, whose large activity would make the updates noisy, is not attended). Learning is online:
at every step :math:`W \leftarrow W + \eta M[t] e[t]`, which descends
:math:`\frac12 \sum_t g (f - z)^2`. Its expectation over trials vanishes where :math:`z` equals
the expected target :math:`E[f \mid \text{state}]`, so at the event time a readout tends to the
event's probability, times the precision with which the state tells the elapsed time (which
falls with the latency). The reservoir does not see the readouts: each trial is simulated first,
without gradients (compiled loop), then the rule steps over the recorded spikes; the rule
deposits into ``.grad`` and one SGD step per time step applies it, after gradient filters
(HLOP's gradient form) have acted on it.

**Baseline** (:class:`ForceReadout`). The same readout, :math:`z = W \phi` with :math:`\phi` the
traces :math:`x` filtered by the readout's leak (what :math:`z` integrates), trained by FORCE
(:mod:`neurosim.learning.force`) online on the attended steps.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

from neurosim.errors import NeurosimError, check_int, check_positive
from neurosim.learning import FORCE, FORCEParameters, ThreeFactor, ThreeFactorParameters
from neurosim.network import Network
from neurosim.neurons import LI
from neurosim.projections import Dense, random_connectivity
from neurosim.reservoirs.builders import ei_sizes, izhikevich_reservoir

DT = 1.0  # ms: the Izhikevich scheme of section 6


def _check_interval(name: str, value, minimum: float) -> None:
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
            or not minimum <= value[0] <= value[1]):
        raise NeurosimError(f"{name} must be a (low, high) pair with {minimum} <= low <= high, got {value!r}")


@dataclass(frozen=True)
class Contingency:
    """Cue ``cue`` is followed, with ``probability``, by an event on readout ``readout`` at
    ``latency`` ms after the cue's onset."""

    cue: int
    latency: float
    probability: float
    readout: int = 0

    def __post_init__(self):
        check_int("cue", self.cue, 0)
        check_int("readout", self.readout, 0)
        check_positive("latency", self.latency)
        p = self.probability
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise NeurosimError(f"probability must be a number in [0, 1], got {p!r}")


@dataclass(frozen=True)
class PredictionTask:
    """Contingencies (one per cue) and the trial's timing (ms); ``pulse_ms`` is the target pulse's
    sigma; attention is on from ``attention_delay`` ms after the cue's onset to the trial's end."""

    contingencies: tuple[Contingency, ...]
    trial_ms: int = 600
    cue_onset: int = 100
    pulse_ms: float = 20.0
    attention_delay: int = 50

    def __post_init__(self):
        object.__setattr__(self, "contingencies", tuple(self.contingencies))
        if not self.contingencies or not all(isinstance(c, Contingency) for c in self.contingencies):
            raise NeurosimError("contingencies must be a non-empty sequence of Contingency")
        cues = [c.cue for c in self.contingencies]
        if len(set(cues)) != len(cues):
            raise NeurosimError(f"each cue may have one contingency, got cues {cues}")
        check_int("trial_ms", self.trial_ms, 1)
        check_int("cue_onset", self.cue_onset, 0)
        check_positive("pulse_ms", self.pulse_ms)
        check_int("attention_delay", self.attention_delay, 0)
        for c in self.contingencies:
            if c.latency <= self.attention_delay:
                raise NeurosimError(f"cue {c.cue}'s event at {c.latency} ms after the cue comes before attention "
                                    f"({self.attention_delay} ms after the cue)")
            if self.cue_onset + c.latency >= self.trial_ms:
                raise NeurosimError(f"cue {c.cue}'s event at {c.latency} ms after the cue falls after the trial's "
                                    f"end ({self.trial_ms} ms, cue at {self.cue_onset} ms)")

    def contingency(self, cue: int) -> Contingency:
        for c in self.contingencies:
            if c.cue == cue:
                return c
        raise NeurosimError(f"the task has no cue {cue}; its cues: {[c.cue for c in self.contingencies]}")

    def replace(self, cue: int, **changes) -> "PredictionTask":
        """The task with cue ``cue``'s contingency changed (``latency=``, ``probability=``, ``readout=``)."""
        old = self.contingency(cue)
        new = tuple(dataclasses.replace(c, **changes) if c is old else c for c in self.contingencies)
        return dataclasses.replace(self, contingencies=new)

    def pulse(self, latency: float) -> torch.Tensor:
        """``[trial_ms]``: the target pulse of an event ``latency`` ms after the cue."""
        t = torch.arange(self.trial_ms, dtype=torch.float64) - self.cue_onset - latency
        return torch.exp(-0.5 * (t / self.pulse_ms) ** 2).float()

    def target(self, cue: int, event: bool, n_readouts: int) -> torch.Tensor:
        """``[trial_ms, n_readouts]``: the pulse on the cue's readout if the event happens, else zeros."""
        c = self.contingency(cue)
        self._check_readout(c, n_readouts)
        f = torch.zeros(self.trial_ms, n_readouts)
        if event:
            f[:, c.readout] = self.pulse(c.latency)
        return f

    def expected(self, cue: int, n_readouts: int) -> torch.Tensor:
        """``[trial_ms, n_readouts]``: the target's expectation over trials of cue ``cue``."""
        c = self.contingency(cue)
        return self.target(cue, True, n_readouts) * c.probability

    @property
    def attention_onset(self) -> int:
        return self.cue_onset + self.attention_delay

    def gate(self) -> torch.Tensor:
        """``[trial_ms]``: attention, 1 from ``attention_onset`` to the trial's end, 0 before."""
        g = torch.zeros(self.trial_ms)
        g[self.attention_onset:] = 1.0
        return g

    @staticmethod
    def _check_readout(c: Contingency, n_readouts: int) -> None:
        if c.readout >= n_readouts:
            raise NeurosimError(f"cue {c.cue}'s event is on readout {c.readout} but there are {n_readouts} readouts")


@dataclass(frozen=True)
class ReservoirParameters:
    """The cue-driven reservoir (module docstring). Weights ``w_exc`` / ``w_inh`` are summed scales:
    a synapse draws ``(w / n) U(0, 1)``. ``bias`` (the tonic current's range), ``noise`` (times the
    thalamic noise of section 6), ``w_in`` in the units of the Izhikevich current; times in ms."""

    n: int = 500
    exc_fraction: float = 0.8
    w_exc: float = 30.0
    w_inh: float = -60.0
    heterogeneity: float = 1.0
    bias: tuple[float, float] = (3.0, 8.0)
    noise: float = 0.05
    n_cues: int = 4
    channels: int = 20
    p_in: float = 0.1
    w_in: float = 20.0
    cue_rate: float = 0.05
    cue_ms: int = 30
    gap_ms: tuple[int, int] = (100, 300)
    seed: int = 0

    def __post_init__(self):
        ei_sizes(self.n, self.exc_fraction)
        check_positive("w_exc", self.w_exc, allow_zero=True)
        check_positive("-w_inh", -self.w_inh, allow_zero=True)
        _check_interval("bias", self.bias, -math.inf)
        check_positive("noise", self.noise, allow_zero=True)
        for name in ("n_cues", "channels", "cue_ms"):
            check_int(name, getattr(self, name), 1)
        for name in ("p_in", "cue_rate"):
            v = getattr(self, name)
            if not 0 < v <= 1:
                raise NeurosimError(f"{name} must be in (0, 1], got {v!r}")
        _check_interval("gap_ms", self.gap_ms, 0)
        check_int("seed", self.seed, 0)


class CueReservoir:
    """The reservoir of :class:`ReservoirParameters`, run on without resets, trial after trial.

    ``trial(cue, task)`` simulates a random gap then one trial and returns its spikes
    ``[trial_ms, 1, n]``; ``trials(cue, task, k)`` stacks ``k`` successive trials of one cue along
    the batch dimension (held-out sets). Noise and gaps come from ``torch.Generator`` seeded by
    ``seed``; the network, biases and cue patterns from ``numpy.random.default_rng(seed)``.
    """

    def __init__(self, params: ReservoirParameters | None = None):
        p = params if params is not None else ReservoirParameters()
        if not isinstance(p, ReservoirParameters):
            raise NeurosimError(f"params must be ReservoirParameters, got {type(p).__name__}")
        self.params = p
        self.network = izhikevich_reservoir(p.n, p.exc_fraction, 1.0, p.w_exc / p.n, p.w_inh / p.n,
                                            p.heterogeneity, seed=p.seed, dt=DT)
        n_exc, _ = ei_sizes(p.n, p.exc_fraction)
        rng = np.random.default_rng([p.seed, 1])
        self.bias = torch.as_tensor(rng.uniform(p.bias[0], p.bias[1], p.n), dtype=torch.float32)
        self.noise_scale = p.noise * torch.cat([torch.full((n_exc,), 5.0), torch.full((p.n - n_exc,), 2.0)])
        n_in = p.n_cues * p.channels
        pre, post = random_connectivity(n_in, p.n, p.p_in, rng)
        w_in = torch.zeros(p.n, n_in)
        w_in[torch.as_tensor(post, dtype=torch.long), torch.as_tensor(pre, dtype=torch.long)] = p.w_in
        patterns = torch.as_tensor(rng.random((p.n_cues, p.cue_ms, p.channels)) < p.cue_rate, dtype=torch.float32)
        #: per cue, its spike pattern's current into the neurons, ``[cue_ms, n]``
        self.cue_currents = [patterns[c] @ w_in[:, c * p.channels:(c + 1) * p.channels].t() for c in range(p.n_cues)]
        self.generator = torch.Generator().manual_seed(p.seed)
        self.state = None

    def trial(self, cue: int, task: PredictionTask) -> torch.Tensor:
        p = self.params
        check_int("cue", cue, 0)
        if cue >= p.n_cues:
            raise NeurosimError(f"cue {cue} does not exist: the reservoir has {p.n_cues} cues")
        gap = int(torch.randint(p.gap_ms[0], p.gap_ms[1] + 1, (1,), generator=self.generator))
        steps = gap + task.trial_ms
        drive = self.bias + self.noise_scale * torch.randn(steps, 1, p.n, generator=self.generator)
        start = gap + task.cue_onset
        stop = min(start + p.cue_ms, steps)
        drive[start:stop, 0] += self.cue_currents[cue][:stop - start]
        with torch.no_grad():
            res = self.network.run({"neurons": drive}, state=self.state, outputs=["neurons"])
        self.state = res.state
        return res.outputs["neurons"][gap:]

    def baseline(self, ms: int = 2000) -> torch.Tensor:
        """``[n]``: each neuron's spikes per step over ``ms`` steps without cues (the run goes on from there)."""
        check_int("ms", ms, 1)
        drive = self.bias + self.noise_scale * torch.randn(ms, 1, self.params.n, generator=self.generator)
        with torch.no_grad():
            res = self.network.run({"neurons": drive}, state=self.state, outputs=["neurons"])
        self.state = res.state
        return res.outputs["neurons"].mean((0, 1))

    def trials(self, cue: int, task: PredictionTask, k: int) -> torch.Tensor:
        check_int("k", k, 1)
        return torch.cat([self.trial(cue, task) for _ in range(k)], dim=1)


def _trace_filters(n: int, tau_pre: float, tau_readout: float) -> tuple[LI, LI]:
    """The synaptic trace (:math:`x \\leftarrow \\lambda_{pre} x + s`) and the readout's leak
    (:math:`\\phi \\leftarrow \\lambda_z \\phi + (1 - \\lambda_z) x`) as leaky integrators."""
    return (LI(n, tau_mem=tau_pre, dt=DT),
            LI(n, tau_mem=tau_readout, input_mode="current", dt=DT))


def _baseline(baseline: torch.Tensor | None, n: int) -> torch.Tensor:
    if baseline is None:
        return torch.zeros(n)
    b = torch.as_tensor(baseline, dtype=torch.float32)
    if b.shape != (n,):
        raise NeurosimError(f"baseline must have shape ({n},), got {tuple(b.shape)}")
    return b


class ThreeFactorReadout:
    """Leaky-integrator readouts of the reservoir's traces, learning with the three-factor rule.

    ``network``: population ``"trace"`` (fed with the spikes) projecting through the Dense
    ``"readout"`` (weights start at zero) to the leaky integrators ``"readout"``. ``lr`` is the
    SGD learning rate :math:`\\eta`.
    """

    def __init__(self, n: int, n_readouts: int, lr: float, baseline: torch.Tensor | None = None,
                 tau_pre: float = 20.0, tau_readout: float = 20.0):
        check_positive("lr", lr)
        self.baseline = _baseline(baseline, n)
        self.network = Network(DT)
        trace, _ = _trace_filters(n, tau_pre, tau_readout)
        self.network.add("trace", trace)
        self.network.add("readout", LI(n_readouts, tau_mem=tau_readout, input_mode="current"))
        self.projection = self.network.connect("trace", "readout", Dense(n, n_readouts, weight=torch.zeros(n_readouts, n)),
                                               name="readout")
        self.decay = math.exp(-DT / tau_readout)
        self.rule = ThreeFactor(self.projection, ThreeFactorParameters(tau_pre=tau_pre, tau_e=tau_readout,
                                                                       a_plus=1 - self.decay, hebbian="pre"), dt=DT)
        self.optimizer = torch.optim.SGD([self.projection.weight], lr=lr)
        self.n_readouts = n_readouts

    def predict(self, spikes: torch.Tensor) -> torch.Tensor:
        """Readouts ``[T, B, n_readouts]`` for spikes ``[T, B, n]`` with the current weights."""
        with torch.no_grad():
            return self.network.run({"trace": spikes - self.baseline}, outputs=["readout"]).outputs["readout"]

    def learn(self, spikes: torch.Tensor, target: torch.Tensor, gate: torch.Tensor, plugins: Sequence = ()) -> torch.Tensor:
        """One trial of spikes ``[T, 1, n]``, learning online: at every step the readouts
        :math:`z[t]` with the current weights, the rule with modulator
        ``gate[t] * (target[t] - z[t])`` (``gate [T]``, ``target [T, n_readouts]``), one optimiser
        step. ``plugins`` get ``before_batch`` and ``after_forward`` around the trial's forward pass
        (which records the presynaptic activity) and ``after_backward`` before every optimiser
        step, with this object as the runner. Returns the online readouts ``[T, 1, n_readouts]``."""
        for p in plugins:
            p.before_batch(self)
        with torch.no_grad():
            out = self.network.run({"trace": spikes - self.baseline}, outputs=["trace", "readout"]).outputs
        for p in plugins:
            p.after_forward(self, out["readout"])
        lam, w = self.decay, self.projection.weight
        post = torch.ones(spikes.shape[1], self.n_readouts)
        state = self.rule.initial_state(spikes.shape[1])
        z = torch.zeros(spikes.shape[1], self.n_readouts)
        zs = []
        for t in range(spikes.shape[0]):
            with torch.no_grad():
                z = lam * z + (1 - lam) * out["trace"][t] @ w.t()
            zs.append(z)
            state = self.rule.step(spikes[t] - self.baseline, post, gate[t] * (target[t] - z), state)
            for p in plugins:
                p.after_backward(self)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=False)
        return torch.stack(zs)


class ForceReadout:
    """The same readouts, :math:`z = W \\phi`, trained by FORCE online on the gated steps.

    ``reset()`` sets FORCE's :math:`P` back to :math:`I / \\alpha` (a reset at a known change).
    """

    def __init__(self, n: int, n_readouts: int, alpha: float = 1.0, every: int = 1,
                 baseline: torch.Tensor | None = None, tau_pre: float = 20.0, tau_readout: float = 20.0):
        self.baseline = _baseline(baseline, n)
        self.filters = _trace_filters(n, tau_pre, tau_readout)
        self.projection = Dense(n, n_readouts, weight=torch.zeros(n_readouts, n))
        self.rule = FORCE(self.projection, FORCEParameters(alpha=alpha, every=every))
        self.optimizer = torch.optim.SGD([self.projection.weight], lr=1.0)
        self.state = self.rule.initial_state()

    def features(self, spikes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            x, _ = self.filters[0](spikes - self.baseline)
            phi, _ = self.filters[1](x)
        return phi

    def predict(self, spikes: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.projection(self.features(spikes))

    def learn(self, spikes: torch.Tensor, target: torch.Tensor, gate: torch.Tensor) -> None:
        phi = self.features(spikes)[:, 0]
        for t in torch.nonzero(gate > 0).flatten().tolist():
            self.state = self.rule.step(phi[t:t + 1], target[t:t + 1], self.state)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=False)

    def reset(self) -> None:
        self.state = self.rule.reset(self.state)


class Response(NamedTuple):
    """A readout's mean response to one cue: its peak's time (ms after the cue) and value, and its
    value at the contingency's latency."""

    cue: int
    peak_ms: float
    amplitude: float
    at_latency: float


def evaluate(readout, task: PredictionTask, held_out: dict[int, torch.Tensor]) -> list[Response]:
    """Per contingency, the response of its readout averaged over the held-out trials of its cue
    (``held_out[cue]``: spikes ``[trial_ms, k, n]``), searched where attention is on."""
    out = []
    for c in task.contingencies:
        if c.cue not in held_out:
            raise NeurosimError(f"no held-out trials for cue {c.cue}")
        mean = readout.predict(held_out[c.cue]).mean(1)[task.attention_onset:, c.readout]
        peak = int(torch.argmax(mean))
        at = int(round(c.latency)) - task.attention_delay
        out.append(Response(c.cue, float(peak + task.attention_delay), float(mean[peak]), float(mean[at])))
    return out


def draw_trials(task: PredictionTask, n: int, rng: np.random.Generator) -> list[tuple[int, bool]]:
    """``n`` trials as ``(cue, event happened)``: cues uniform over the task's, events Bernoulli."""
    check_int("n", n, 1)
    cs = task.contingencies
    picks = rng.integers(len(cs), size=n)
    events = rng.random(n)
    return [(cs[i].cue, bool(u < cs[i].probability)) for i, u in zip(picks, events)]
