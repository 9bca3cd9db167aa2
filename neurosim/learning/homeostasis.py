r"""E/I homeostasis: a local rule that moves each neuron's inhibitory input toward a target firing rate.

After every window of :math:`W` steps of length :math:`dt` (ms), neuron :math:`i` has fired
:math:`n_i` spikes (averaged over the batch) and its rate is :math:`\hat r_i = 1000\, n_i / (W\, dt)` Hz.
The rate the rule acts on is that window rate, or, with a time constant :math:`\tau` (ms), its
exponential trace over windows :math:`r_i \leftarrow a\, r_i + (1 - a)\, \hat r_i` with
:math:`a = e^{-W dt / \tau}` (the first window sets :math:`r_i = \hat r_i`).

Every existing inhibitory synapse :math:`j \to i` then changes its magnitude (the size of the
negative weight) by

.. math::
    A^I_{ij} \leftarrow \min\!\big(\max(A^I_{ij} + \delta\, (r_i - \rho_i),\ 0),\ A_{max}\big),

so a neuron firing above its target gets more inhibition and one below gets less; weights stay
inhibitory (magnitude clipped at zero) and, optionally, below :math:`A_{max}`. Targets are
heterogeneous, :math:`\rho_i = \rho_{low} + (\rho_{high} - \rho_{low})\, b_i` with
:math:`b_i \sim \mathrm{Beta}(2, 2)` (mean :math:`(\rho_{low} + \rho_{high})/2`, variance
:math:`(\rho_{high} - \rho_{low})^2 / 20`); ``rate_low == rate_high`` gives one target for all.
(Srinivasan, Plenz & Girvan 2025.)

Which synapses are inhibitory: in a projection with Dale signs, those from presynaptic neurons of
sign -1 (the stored weight is the magnitude); in a projection without signs, every synapse, whose
weights must then be <= 0 (magnitude ``-w``). :class:`~neurosim.projections.Sparse` and
:class:`~neurosim.projections.Dense` projections (within their mask) are supported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import numpy as np
import torch

from ..errors import NeurosimError, check_positive
from ..progress import progress_bar
from ..network import Network
from ..projections import Dense, Sparse


@dataclass(frozen=True)
class HomeostasisParameters:
    """``delta``: magnitude change per Hz of rate error and update; target rates (Hz) in
    ``[rate_low, rate_high]``; ``w_max``: largest magnitude (None: unbounded); ``tau`` (ms):
    time constant of the rate trace over windows (None: the last window's rate)."""

    delta: float = 0.01
    rate_low: float = 2.0
    rate_high: float = 20.0
    w_max: float | None = None
    tau: float | None = None

    def __post_init__(self):
        check_positive("delta", self.delta)
        check_positive("rate_low", self.rate_low, allow_zero=True)
        check_positive("rate_high", self.rate_high, allow_zero=True)
        if self.rate_high < self.rate_low:
            raise NeurosimError(f"rate_high must be >= rate_low, got rate_low={self.rate_low!r}, "
                                f"rate_high={self.rate_high!r}")
        if self.w_max is not None:
            check_positive("w_max", self.w_max)
        if self.tau is not None:
            check_positive("tau", self.tau)


def target_rates(n: int, rate_low: float, rate_high: float, rng: np.random.Generator) -> torch.Tensor:
    r""":math:`\rho_i = \rho_{low} + (\rho_{high} - \rho_{low}) b_i`, :math:`b_i \sim \mathrm{Beta}(2, 2)`, float64."""
    return torch.as_tensor(rate_low + (rate_high - rate_low) * rng.beta(2.0, 2.0, n), dtype=torch.float64)


def window_rates(spikes: torch.Tensor, dt: float) -> torch.Tensor:
    """Rates (Hz, float64) of spikes ``[T, B, n]`` of a window of ``T`` steps of ``dt`` ms, averaged over the batch."""
    if spikes.dim() != 3:
        raise NeurosimError(f"spikes must be [T, B, n], got shape {tuple(spikes.shape)}")
    return spikes.to(torch.float64).sum(0).mean(0) * (1000.0 / (spikes.shape[0] * dt))


def inhibitory_update(magnitude: torch.Tensor, post: torch.Tensor, error: torch.Tensor, delta: float,
                      w_max: float | None = None) -> torch.Tensor:
    r"""New magnitudes :math:`\mathrm{clip}(A_k + \delta\, e_{post_k}, 0, A_{max})` of synapses onto
    neurons ``post`` given per-neuron rate errors :math:`e_i = r_i - \rho_i` (Hz)."""
    new = magnitude + delta * error.to(magnitude.dtype)[post]
    return new.clamp(min=0.0, max=w_max)


class _Target(NamedTuple):
    """The inhibitory synapses of one projection: flat indices into its weight, and their postsynaptic neuron."""

    projection: Sparse | Dense
    index: torch.Tensor
    post: torch.Tensor
    signed: bool


def _inhibitory_synapses(name: str, proj) -> _Target:
    if isinstance(proj, Sparse):
        post = proj.post
        inh = torch.ones(proj.nnz, dtype=torch.bool) if proj.signs is None else proj.signs[proj.pre] < 0
    elif isinstance(proj, Dense):
        post = torch.arange(proj.n_out).unsqueeze(1).expand(proj.n_out, proj.n_in)
        inh = torch.ones(proj.n_out, proj.n_in, dtype=torch.bool)
        if proj.signs is not None:
            inh = inh & (proj.signs < 0).unsqueeze(0)
        if proj.mask is not None:
            inh = inh & proj.mask
        post, inh = post.reshape(-1), inh.reshape(-1)
    else:
        raise NeurosimError(f"projection {name!r} is a {type(proj).__name__}; homeostasis acts on Sparse or Dense")
    index = torch.nonzero(inh, as_tuple=True)[0]
    if index.numel() == 0:
        raise NeurosimError(f"projection {name!r} has no inhibitory synapses")
    if proj.signs is None and bool((proj.weight.detach().reshape(-1)[index] > 0).any()):
        raise NeurosimError(f"projection {name!r} has no Dale signs and positive weights; inhibitory weights must be <= 0")
    return _Target(proj, index, post[index], proj.signs is not None)


class EIHomeostasis:
    """The rule acting on the inhibitory ``projections`` (names in ``net``) onto one spiking population.

    Targets are drawn from ``numpy.random.default_rng(seed)``, or given per neuron as ``targets``
    (Hz, ``[n]``). ``observe`` takes a window's spikes, ``update`` changes the weights in place;
    :func:`adapt` runs a network with both.
    """

    def __init__(self, net: Network, projections: str | Sequence[str] = "inh",
                 params: HomeostasisParameters = HomeostasisParameters(), seed: int | None = 0,
                 targets=None):
        if not isinstance(net, Network):
            raise NeurosimError(f"net must be a neurosim Network, got {type(net).__name__}")
        if not isinstance(params, HomeostasisParameters):
            raise NeurosimError(f"params must be HomeostasisParameters, got {type(params).__name__}")
        names = [projections] if isinstance(projections, str) else list(projections)
        if not names:
            raise NeurosimError("projections must name at least one inhibitory projection")
        posts = set()
        for name in names:
            if name not in net.connections:
                raise NeurosimError(f"unknown projection {name!r}; known: {', '.join(net.connections)}")
            posts.add(net.connections[name].post)
        if len(posts) > 1:
            raise NeurosimError(f"projections {names} end in different populations {sorted(posts)}; give one population's")
        self.population = posts.pop()
        pop = net.populations[self.population]
        if not pop.spiking:
            raise NeurosimError(f"population {self.population!r} does not spike; homeostasis needs firing rates")
        self.net, self.params, self.names = net, params, names
        self._targets = [_inhibitory_synapses(name, net.projections[name]) for name in names]
        if targets is None:
            self.targets = target_rates(pop.n, params.rate_low, params.rate_high, np.random.default_rng(seed))
        else:
            self.targets = torch.as_tensor(targets, dtype=torch.float64).clone()
            if self.targets.shape != (pop.n,) or not bool((torch.isfinite(self.targets) & (self.targets >= 0)).all()):
                raise NeurosimError(f"targets must be {pop.n} finite rates >= 0 (Hz), one per neuron of "
                                    f"{self.population!r}")
        self.rates: torch.Tensor | None = None

    def observe(self, spikes: torch.Tensor) -> torch.Tensor:
        """Fold a window's spikes ``[T, B, n]`` into the rates; returns them (Hz)."""
        n = self.targets.numel()
        if spikes.dim() != 3 or spikes.shape[-1] != n:
            raise NeurosimError(f"spikes must be [T, B, {n}], got shape {tuple(spikes.shape)}")
        rate = window_rates(spikes, self.net.dt)
        if self.rates is None or self.params.tau is None:
            self.rates = rate
        else:
            a = math.exp(-spikes.shape[0] * self.net.dt / self.params.tau)
            self.rates = a * self.rates + (1 - a) * rate
        return self.rates

    def error(self) -> torch.Tensor:
        """``r_i - rho_i`` (Hz)."""
        if self.rates is None:
            raise NeurosimError("no rates yet: observe a window of spikes first")
        return self.rates - self.targets

    @torch.no_grad()
    def update(self) -> None:
        """Apply the rule once to every inhibitory synapse, with the current rates."""
        error = self.error()
        for t in self._targets:
            flat = t.projection.weight.view(-1)
            w = flat[t.index]
            magnitude = w.abs() if t.signed else -w
            new = inhibitory_update(magnitude, t.post, error, self.params.delta, self.params.w_max)
            flat[t.index] = new if t.signed else -new


class AdaptResult(NamedTuple):
    """``state``: the network state after the run; ``mismatch``: mean ``|r_i - rho_i|`` (Hz) of each
    window, before its update; ``rule``: the :class:`EIHomeostasis` (targets, last rates)."""

    state: dict
    mismatch: np.ndarray
    rule: EIHomeostasis


def adapt(net: Network, steps: int, window: int, inputs=None, *, rule: EIHomeostasis | None = None,
          state: dict | None = None, batch: int | None = None, progress: bool = False) -> AdaptResult:
    """Run ``net`` for ``steps`` in windows of ``window`` steps without gradients, applying the
    homeostatic ``rule`` (default: :class:`EIHomeostasis` on the projection ``"inh"``) after each.

    ``inputs``: as :meth:`Network.run` with ``steps`` steps, sliced per window (the last window
    may be shorter); ``state`` continues an earlier run.
    """
    for name, value in (("steps", steps), ("window", window)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise NeurosimError(f"{name} must be a positive integer, got {value!r}")
    rule = EIHomeostasis(net) if rule is None else rule
    if not isinstance(rule, EIHomeostasis) or rule.net is not net:
        raise NeurosimError("rule must be an EIHomeostasis built on this network")
    if isinstance(inputs, torch.Tensor):
        if len(net.inputs) != 1:
            raise NeurosimError(f"the network has {len(net.inputs)} inputs; pass a dict name -> tensor")
        inputs = {next(iter(net.inputs)): inputs}
    inputs = dict(inputs or {})
    for k, x in inputs.items():
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != steps:
            raise NeurosimError(f"input {k!r} must be a [steps={steps}, B, n] tensor, got "
                                f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    mismatch = []
    starts = range(0, steps, window)
    with torch.no_grad():
        for start in progress_bar(starts, desc="adapting", unit="window", enabled=progress):
            length = min(window, steps - start)
            part = {k: x[start:start + length] for k, x in inputs.items()}
            res = net.run(part, state=state, steps=length, batch=batch, outputs=[rule.population])
            state = res.state
            rule.observe(res.outputs[rule.population])
            mismatch.append(float(rule.error().abs().mean()))
            rule.update()
    return AdaptResult(state, np.asarray(mismatch), rule)
