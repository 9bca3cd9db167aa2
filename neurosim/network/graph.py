"""A network of populations and projections, run over whole input sequences.

Execution plan: the graph's strongly connected components, in topological order.

- A population outside any loop runs *layer-at-a-time*: its input for all ``T`` steps is one
  projection call on the presynaptic sequences (one big matmul), then the neuron recurrence.
- Inside a loop (recurrent projection, or populations feeding each other) populations run
  *step-at-a-time*; a projection inside a loop carries the previous step's output (one-step
  delay). Without gradients, spikes propagate event-driven, and a single spiking population with
  its recurrent projections runs in the compiled loop registered for its model
  (:mod:`neurosim.kernels.registry`) when there is one and it supports the configuration.

Plasticity (:meth:`Network.plasticity`) runs on projections inside loops during a run, without
gradients: STDP changes their weights, the three-factor rule puts its change into ``.grad``;
noise (:meth:`Network.add_noise`) is drawn inside the run. Both keep their state in the run
state next to the populations', so runs in chunks equal one long run.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, NamedTuple

import torch
from torch import nn

from ..errors import NeurosimError, check_finite, check_positive
from ..progress import progress_bar
from ..kernels.registry import lookup
from ..neurons.base import Population
from ..projections.base import Projection
from ..projections.dense import Dense
from ..projections.eligibility import (ThreeFactorParameters, ThreeFactorState, deposit, three_factor_initial_state,
                                       three_factor_synapses)
from ..projections.plasticity import STDPParameters, STDPState, stdp_bounds, stdp_pathways, stdp_trace
from ..projections.sparse import Sparse
from .noise import NOISES, draw, kernel_noise
from .plan import components
from .probes import Probe

PLASTICITY, NOISE = "plasticity:", "noise:"
RULES = (STDPParameters, ThreeFactorParameters)


@dataclass
class Connection:
    pre: str
    post: str
    projection: Projection


class RunResult(NamedTuple):
    """``outputs``: full ``[T, B, n]`` sequences of the requested populations; ``probes``: recordings
    ``[ceil(T / stride), B, n]`` by probe name (:class:`~neurosim.events.SpikeEvents` for event
    probes); ``state``: pass to the next ``run`` to continue (:meth:`Network.initial_state`)."""

    outputs: dict
    probes: dict
    state: dict


class Network(nn.Module):
    """Populations, inputs and projections sharing one time step ``dt`` (ms).

    ``compiled``: run loops in their compiled kernels where one applies (default True);
    ``threads``: the threads of a compiled loop, or None to let the kernel choose (one for small
    networks, else ``min(torch.get_num_threads(), numba.get_num_threads())``); results do not
    depend on it.
    """

    def __init__(self, dt: float = 1.0):
        super().__init__()
        check_positive("dt", dt)
        self.dt = float(dt)
        self.populations = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        self.inputs: dict[str, int] = {}
        self.connections: dict[str, Connection] = {}
        self.probes: dict[str, Probe] = {}
        self.plastic: dict[str, STDPParameters | ThreeFactorParameters] = {}
        self.noises: dict[str, tuple] = {}
        self.compiled = True
        self.threads: int | None = None

    # -- building ---------------------------------------------------------------------------
    def _check_new_name(self, name: str) -> None:
        if not isinstance(name, str) or not name.isidentifier():
            raise NeurosimError(f"names must be identifiers, got {name!r}")
        if name in self.populations or name in self.inputs:
            raise NeurosimError(f"the network already has a population or input named {name!r}")

    def add_input(self, name: str, n: int) -> None:
        """Declare an input of ``n`` channels, fed by ``run(inputs={name: [T, B, n]})``."""
        self._check_new_name(name)
        if not isinstance(n, int) or n < 1:
            raise NeurosimError(f"input size must be a positive integer, got {n!r}")
        self.inputs[name] = n

    def add(self, name: str, population: Population) -> Population:
        """Add a population; it takes the network's ``dt`` (an explicit different ``dt`` is an error)."""
        self._check_new_name(name)
        if not isinstance(population, Population):
            raise NeurosimError(f"{name!r} must be a neurosim Population, got {type(population).__name__}")
        if population._dt is not None and population._dt != self.dt:
            raise NeurosimError(f"population {name!r} has dt={population._dt} but the network has dt={self.dt}")
        population.dt = self.dt
        self.populations[name] = population
        return population

    def min_steps(self) -> int:
        """The shortest input sequence every projection accepts."""
        return max((c.projection.min_steps for c in self.connections.values()), default=1)

    def size(self, name: str) -> int:
        if name in self.inputs:
            return self.inputs[name]
        if name in self.populations:
            return self.populations[name].n
        raise NeurosimError(f"unknown population or input {name!r}; known: {', '.join(self.names())}")

    def names(self) -> list[str]:
        return list(self.inputs) + list(self.populations)

    def connect(self, pre: str, post: str, projection: Projection, name: str | None = None, *,
                plasticity: STDPParameters | ThreeFactorParameters | None = None) -> Projection:
        """Connect ``pre`` (population or input) to population ``post``; recurrent if they are the same.
        ``plasticity``: a rule for the projection's weights (:meth:`plasticity`)."""
        n_pre, n_post = self.size(pre), self.size(post)
        if post in self.inputs:
            raise NeurosimError(f"{post!r} is an input and cannot receive a projection")
        if not isinstance(projection, Projection):
            raise NeurosimError(f"projection must be a neurosim Projection, got {type(projection).__name__}")
        if (projection.n_in, projection.n_out) != (n_pre, n_post):
            raise NeurosimError(f"projection {pre}->{post} maps {projection.n_in}->{projection.n_out} "
                                f"but the populations have {n_pre} and {n_post} neurons")
        name = name or f"{pre}_to_{post}"
        if name in self.connections:
            raise NeurosimError(f"the network already has a projection named {name!r}")
        if plasticity is not None:  # checked before anything is added
            self._check_plastic(name, Connection(pre, post, projection), plasticity)
        self.projections[name] = projection
        self.connections[name] = Connection(pre, post, projection)
        if plasticity is not None:
            self.plasticity(name, plasticity)
        return projection

    def _check_plastic(self, name: str, c: Connection, rule) -> None:
        if not isinstance(rule, RULES):
            raise NeurosimError("plasticity must be STDPParameters or ThreeFactorParameters (or None to remove it), "
                                f"got {type(rule).__name__}")
        kind = "STDP" if isinstance(rule, STDPParameters) else "the three-factor rule"
        if not isinstance(c.projection, (Dense, Sparse)):
            raise NeurosimError(f"{kind} needs a Dense or Sparse projection; {name!r} is {type(c.projection).__name__}")
        for role, pop in (("presynaptic", c.pre), ("postsynaptic", c.post)):
            if pop not in self.populations or not self.populations[pop].spiking:
                raise NeurosimError(f"{kind} on {name!r} needs a spiking {role} population, not {pop!r}")
        if isinstance(rule, STDPParameters):
            stdp_bounds(rule, c.projection.signs is not None)

    def plasticity(self, projection: str, rule: STDPParameters | ThreeFactorParameters | None) -> None:
        r"""Let ``rule`` act on the weights of ``projection`` during every run without gradients (or
        remove the rule with ``None``).

        :class:`STDPParameters`: Brian2's STDP synapse (:mod:`neurosim.projections.plasticity`): in each step,
        the spikes of the previous step are delivered with the weights they find, then the
        presynaptic and the postsynaptic pathway change those weights (clipping after each), then
        the neurons update, and the presynaptic traces take the new spikes. The weights change in
        place, in the projection's ``weight`` (its state dict, so checkpoints, hold them); the
        traces are part of the run state (entry ``"plasticity:NAME"``, :class:`STDPState` with
        the presynaptic trace after the last step's spikes and the postsynaptic one before them,
        whose pathways run at the start of the next step), so runs in chunks equal one long run.
        The projection must lie inside a recurrent loop (its pre- and postsynaptic populations in
        one); a Dense projection changes within its mask. Under Dale's law the rule acts on the
        magnitude ``|w|`` with the sign fixed, the bounds are magnitudes (``w_min`` >= 0, default
        0), and attaching the rule stores the weights as their magnitudes (the effective weights
        do not change). With several samples, each pathway adds the batch mean of its changes.
        Compiled loops run it for one sample; other runs use the torch step loop, with the same
        results.

        :class:`ThreeFactorParameters`: the three-factor rule (:mod:`neurosim.projections.eligibility`)
        on the projection's synapses, with the spikes of each step as pre- and postsynaptic activity.
        The weights stay as they are during the run: the change :math:`\sum_t M[t] e[t]` (batch
        mean) is added to ``weight.grad`` as a descent direction (``grad -= dW``), for an optimiser
        step after the run, as :class:`~neurosim.learning.ThreeFactor` does step by step; the
        modulator of each step is given to :meth:`run` (``modulators={name: M}``), and without one
        the run updates the traces alone. The traces and the eligibility of every synapse
        (``[B, n_out, n_in]`` on a Dense projection, zero outside its mask; ``[B, nnz]`` on a
        Sparse one) are the run state's ``"plasticity:NAME"``
        (:class:`~neurosim.projections.eligibility.ThreeFactorState`), so that a reward arriving
        after the run can still act on them. Under Dale's law the rule acts on the magnitude, as
        STDP does. Compiled loops run it for one sample (every synapse's eligibility decays every
        step); other runs use the torch step loop, with the same results.
        """
        if projection not in self.connections:
            raise NeurosimError(f"unknown projection {projection!r}; known: {', '.join(self.connections)}")
        if rule is None:
            self.plastic.pop(projection, None)
            return
        c = self.connections[projection]
        self._check_plastic(projection, c, rule)
        if c.projection.signs is not None:
            with torch.no_grad():
                c.projection.weight.abs_()
        self.plastic[projection] = rule

    def add_noise(self, name: str, target: str, noise) -> None:
        """Add ``noise`` (:class:`~neurosim.network.noise.GaussianNoise` or
        :class:`~neurosim.network.noise.PoissonNoise`) to the excitatory input of population
        ``target`` every step, drawn inside the run (:mod:`neurosim.network.noise`): after the
        external drive, before the projections. One source per population."""
        if not isinstance(name, str) or not name.isidentifier() or name in self.noises:
            raise NeurosimError(f"noise names must be new identifiers, got {name!r}")
        if target not in self.populations:
            raise NeurosimError(f"cannot add noise to {target!r}: no such population; known: {', '.join(self.populations)}")
        if not isinstance(noise, NOISES):
            raise NeurosimError(f"noise must be GaussianNoise or PoissonNoise, got {type(noise).__name__}")
        if any(t == target for t, _ in self.noises.values()):
            raise NeurosimError(f"population {target!r} already has a noise source")
        kernel_noise(noise, self.populations[target], 1, 0)  # checks per-neuron sizes and the Poisson mean
        self.noises[name] = (target, noise)

    def probe(self, target: str, variable: str = "spikes", stride: int = 1, name: str | None = None,
              events: bool = False) -> str:
        """Record ``variable`` of population ``target`` every ``stride`` steps; returns the probe name.

        With ``events``, spikes come as :class:`~neurosim.events.SpikeEvents` (the spikes of steps
        ``0, stride, ...``) instead of a dense tensor: far smaller, and cheap from the compiled loop.
        """
        probe = self.check_probe(Probe(target, variable, stride, bool(events)))
        name = name or f"{target}_{variable}"
        if name in self.probes:
            raise NeurosimError(f"the network already has a probe named {name!r}")
        self.probes[name] = probe
        return name

    def check_probe(self, probe: Probe) -> Probe:
        """``probe`` if this network can record it (an existing population and variable, a positive
        stride, events only of spikes); a NeurosimError naming what is wrong otherwise."""
        if not isinstance(probe, Probe):
            raise NeurosimError(f"a probe must be a neurosim Probe, got {type(probe).__name__}")
        target, variable, stride = probe.target, probe.variable, probe.stride
        if target not in self.populations:
            raise NeurosimError(f"cannot probe {target!r}: no such population; known: {', '.join(self.populations)}")
        obs = self.populations[target].observables
        if variable not in obs:
            raise NeurosimError(f"population {target!r} has no variable {variable!r}; it has: {', '.join(obs)}")
        if not isinstance(stride, int) or isinstance(stride, bool) or stride < 1:
            raise NeurosimError(f"probe stride must be a positive integer, got {stride!r}")
        if probe.events and variable != "spikes":
            raise NeurosimError(f"only spikes can be probed as events, not {variable!r}")
        return probe

    # -- planning ---------------------------------------------------------------------------
    def plan(self) -> list[list[str]]:
        """Strongly connected components of the population graph, in topological order."""
        return components(list(self.populations), [(c.pre, c.post) for c in self.connections.values()])

    def _is_loop(self, group: list[str]) -> bool:
        return len(group) > 1 or any(c.pre == c.post == group[0] for c in self.connections.values())

    # -- running ----------------------------------------------------------------------------
    def _check_inputs(self, inputs, steps: int | None, batch: int | None) -> tuple[dict, int, int]:
        if inputs is None:
            inputs = {}
        elif isinstance(inputs, torch.Tensor):
            if len(self.inputs) != 1:
                raise NeurosimError(f"the network has {len(self.inputs)} inputs; pass a dict name -> tensor")
            inputs = {next(iter(self.inputs)): inputs}
        elif not isinstance(inputs, Mapping):
            raise NeurosimError(f"inputs must be a tensor or a dict of tensors, got {type(inputs).__name__}")
        missing = [k for k in self.inputs if k not in inputs]
        if missing:
            raise NeurosimError(f"missing input {missing[0]!r}")
        shapes = set()
        for k, x in inputs.items():
            if k not in self.inputs and k not in self.populations:
                raise NeurosimError(f"unknown input {k!r}; known: {', '.join(self.names())}")
            if not isinstance(x, torch.Tensor):
                raise NeurosimError(f"input {k!r} must be a torch.Tensor, got {type(x).__name__}")
            n = self.size(k)
            if x.dim() != 3 or x.shape[-1] != n:
                raise NeurosimError(f"input {k!r} must have shape [T, B, {n}], got {tuple(x.shape)}")
            check_finite(f"input {k!r}", x)
            shapes.add(tuple(x.shape[:2]))
        if len(shapes) > 1:
            raise NeurosimError(f"inputs disagree on [T, B]: {sorted(shapes)}")
        if shapes:
            T, B = shapes.pop()
            if steps is not None and steps != T:
                raise NeurosimError(f"steps={steps} but the inputs have {T} steps")
            if batch is not None and batch != B:
                raise NeurosimError(f"batch={batch} but the inputs have batch {B}")
        else:
            if steps is None:
                raise NeurosimError("a network without inputs needs steps=")
            T, B = steps, batch or 1
        if T < 1 or B < 1:
            raise NeurosimError(f"need at least one step and one sample, got T={T}, B={B}")
        return dict(inputs), T, B

    def initial_state(self, batch: int, device=None) -> dict:
        """Per population (by name): its neuron state and its last spikes (which loops carry to the
        next step); per plastic projection (``"plasticity:NAME"``): its :class:`STDPState` or
        :class:`ThreeFactorState`; per noise source (``"noise:NAME"``): the step its streams have reached."""
        state = {n: (p.initial_state(batch, device), torch.zeros(batch, p.n, dtype=p.dtype, device=device))
                 for n, p in self.populations.items()}
        for name, rule in self.plastic.items():
            proj = self.projections[name]
            w = proj.weight
            if isinstance(rule, ThreeFactorParameters):
                state[PLASTICITY + name] = three_factor_initial_state(
                    batch, proj.n_in, proj.n_out, w.dtype, w.device, w.numel() if isinstance(proj, Sparse) else None)
            else:
                state[PLASTICITY + name] = STDPState(torch.zeros(batch, proj.n_in, dtype=w.dtype, device=w.device),
                                                     torch.zeros(batch, proj.n_out, dtype=w.dtype, device=w.device))
        for name in self.noises:
            state[NOISE + name] = 0
        return state

    def _restore(self, state: dict, batch: int) -> dict:
        """``state`` with named tuples where a checkpoint gave plain tuples, and the initial value
        of any entry it lacks (a population, rule or noise source added since)."""
        initial = self.initial_state(batch, self._device())
        state = {**initial, **state}
        for name, pop in self.populations.items():
            st, z = state[name]
            state[name] = (st if isinstance(st, pop.State) else pop.State(*st), z)
        for name, rule in self.plastic.items():
            traces, kind = state[PLASTICITY + name], STDPState if isinstance(rule, STDPParameters) else ThreeFactorState
            state[PLASTICITY + name] = traces if isinstance(traces, kind) else kind(*traces)
        return state

    def _drive(self, post: str, group: set[str], seqs: dict, inputs: dict, T: int, B: int):
        """Input to ``post`` from everything outside its group, for all steps: (exc, inh or None)."""
        pop = self.populations[post]
        exc = inputs[post].to(pop.dtype) if post in inputs else None
        inh = None
        split = getattr(pop, "has_inh_channel", False)
        for c in self.connections.values():
            if c.post != post or c.pre in group:
                continue
            y = c.projection(seqs[c.pre])
            if split and c.projection.channel == "inh":
                inh = y if inh is None else inh + y
            else:
                exc = y if exc is None else exc + y
        if exc is None:
            exc = torch.zeros(pop.n, dtype=pop.dtype, device=self._device()).expand(T, B, pop.n)
        return exc, inh

    def _device(self):
        for b in self.buffers():
            return b.device
        for p in self.parameters():
            return p.device
        return torch.device("cpu")

    def run(self, inputs=None, *, state: dict | None = None, steps: int | None = None,
            batch: int | None = None, outputs=None, probes: Mapping[str, Probe] | None = None,
            modulators: Mapping[str, torch.Tensor] | None = None, progress: bool = False) -> RunResult:
        """Simulate all steps of ``inputs`` (``[T, B, n]`` per input; a population's name feeds it
        directly). Returns full sequences for ``outputs`` (default: populations with no outgoing
        projection), the recordings of the network's probes and of ``probes`` (name ->
        :class:`Probe`, for this run only), and the final state. ``modulators``: per projection
        with the three-factor rule (:meth:`plasticity`), the modulator of every step: ``[T]``,
        ``[T, B]`` or ``[T, B, n_out]``.

        ``net.run(...)`` and ``net(...)`` are the same call (through :meth:`forward`, so the
        network's forward hooks see every run)."""
        return self(inputs, state=state, steps=steps, batch=batch, outputs=outputs, probes=probes,
                    modulators=modulators, progress=progress)

    def forward(self, inputs=None, *, state: dict | None = None, steps: int | None = None,
                batch: int | None = None, outputs=None, probes: Mapping[str, Probe] | None = None,
                modulators: Mapping[str, torch.Tensor] | None = None, progress: bool = False) -> RunResult:
        """The simulation behind :meth:`run`, with the same arguments and the same :class:`RunResult`."""
        inputs, T, B = self._check_inputs(inputs, steps, batch)
        modulators = self._check_modulators(modulators, T, B)
        probes = dict(probes or {})
        for name, probe in probes.items():
            if name in self.probes:
                raise NeurosimError(f"the network already has a probe named {name!r}")
            self.check_probe(probe)
        active = {name: p.fresh() for name, p in {**self.probes, **probes}.items()}
        if outputs is None:
            outputs = [n for n in self.populations if not any(c.pre == n for c in self.connections.values())]
        for n in outputs:
            if n not in self.populations:
                raise NeurosimError(f"unknown output population {n!r}")
        if state is None:
            state = self.initial_state(B, self._device())
        else:
            state = self._restore(state, B)
        if self.plastic and torch.is_grad_enabled():
            raise NeurosimError("plasticity changes weights in place: run the network under torch.no_grad()")
        noise = {t: (name, kernel_noise(n, self.populations[t], B, state[NOISE + name]))
                 for name, (t, n) in self.noises.items()}
        seqs: dict[str, torch.Tensor] = {k: v for k, v in inputs.items() if k in self.inputs}
        for group in self.plan():
            gset = set(group)
            drives = {p: self._drive(p, gset, seqs, inputs, T, B) for p in group}
            of = {p: [probe for probe in active.values() if probe.target == p] for p in group}
            if self._is_loop(group):
                self._run_loop(group, drives, state, seqs, outputs, of, T, progress, noise, modulators)
            else:
                for name in self.plastic:
                    if self.connections[name].post == group[0]:
                        raise NeurosimError(f"plastic projection {name!r} must lie inside a recurrent loop")
                name = group[0]
                exc, inh = drives[name]
                if name in noise:
                    pop = self.populations[name]
                    exc = exc + torch.stack([draw(noise[name][1], t, pop.n, pop.dtype, exc.device) for t in range(T)])
                self._run_layer(name, (exc, inh), state, seqs, of[name])
        for name in self.noises:
            state[NOISE + name] += T
        return RunResult({n: seqs[n] for n in outputs}, {n: p.collect() for n, p in active.items()}, state)

    def _run_layer(self, name: str, drive, state: dict, seqs: dict, probes: list[Probe]) -> None:
        pop = self.populations[name]
        st, _ = state[name]
        exc, inh = drive
        if inh is None and all(p.variable == "spikes" for p in probes):
            zs, st = pop(exc, st)
            for p in probes:
                p.chunks.append(zs[:: p.stride])
        else:
            out = []
            for t in range(exc.shape[0]):
                z, st = pop.step(exc[t], st) if inh is None else pop.step(exc[t], st, x_inh=inh[t])
                out.append(z)
                for p in probes:
                    p.record(t, z, st)
            zs = torch.stack(out)
        seqs[name] = zs
        state[name] = (st, zs[-1])

    def _check_modulators(self, modulators, T: int, B: int) -> dict:
        """``modulators`` checked (:meth:`run`), each as ``[T, B or 1, n_out or 1]``."""
        if modulators is None:
            return {}
        if not isinstance(modulators, Mapping):
            raise NeurosimError(f"modulators must be a dict of tensors, got {type(modulators).__name__}")
        checked = {}
        for name, m in modulators.items():
            if not isinstance(self.plastic.get(name), ThreeFactorParameters):
                raise NeurosimError(f"modulator for {name!r}: no projection of that name has the three-factor rule")
            if not isinstance(m, torch.Tensor):
                raise NeurosimError(f"modulator {name!r} must be a torch.Tensor, got {type(m).__name__}")
            n_out = self.projections[name].n_out
            shapes = {(T,): (T, 1, 1), (T, B): (T, B, 1), (T, B, n_out): (T, B, n_out)}
            if tuple(m.shape) not in shapes:
                raise NeurosimError(f"modulator {name!r} must have shape [T] = [{T}], [T, B] = [{T}, {B}] or "
                                    f"[T, B, n_out] = [{T}, {B}, {n_out}], got {tuple(m.shape)}")
            check_finite(f"modulator {name!r}", m)
            checked[name] = m.detach().reshape(shapes[tuple(m.shape)]).to(self.projections[name].weight.dtype)
        return checked

    def _run_loop(self, group: list[str], drives: dict, state: dict, seqs: dict, outputs, probes: dict,
                  T: int, progress: bool, noise: dict, modulators: dict) -> None:
        inner = [(n, c) for n, c in self.connections.items() if c.pre in group and c.post in group]
        for name in self.plastic:
            c = self.connections[name]
            if (c.post in group) != (c.pre in group):
                raise NeurosimError(f"plastic projection {name!r} must lie inside a recurrent loop")
        keep = {n: [] for n in group if n in outputs or any(c.pre == n for c in self.connections.values()
                                                                if c.post not in group)}
        loop = self.compiled and len(group) == 1 and not torch.is_grad_enabled()
        compiled = lookup("loop", self.populations[group[0]]) if loop else None
        if compiled is not None:
            name = group[0]
            plasticity = [(self.plastic[n], state[PLASTICITY + n], modulators.get(n)) if n in self.plastic else None
                          for n, _ in inner]
            done = compiled(self.populations[name], [c.projection for _, c in inner], drives[name], state[name],
                            probes[name], name in keep, progress, plasticity=plasticity,
                            noise=noise[name][1] if name in noise else None, threads=self.threads)
            if done is not None:
                state[name], seq, traces = done
                for (n, _), tr in zip(inner, traces):
                    if tr is not None:
                        state[PLASTICITY + n] = type(state[PLASTICITY + n])(*tr)
                if seq is not None:
                    seqs[name] = seq
                return
        plastic = [(n, c, self.plastic[n]) for n, c in inner if isinstance(self.plastic.get(n), STDPParameters)]
        eligible = [(n, c, self.plastic[n]) for n, c in inner if isinstance(self.plastic.get(n), ThreeFactorParameters)]
        steps = progress_bar(range(T), desc="simulating", unit="step") if progress else range(T)
        for t in steps:
            currents = {}
            for name in group:
                pop = self.populations[name]
                exc, inh = drives[name]
                x, xi = exc[t], None if inh is None else inh[t]
                if name in noise:
                    x = x + draw(noise[name][1], t, pop.n, pop.dtype, x.device)
                for _, c in inner:
                    if c.post != name:
                        continue
                    z_pre = state[c.pre][1]
                    y = c.projection.propagate_spikes(z_pre) if self.populations[c.pre].spiking else c.projection(z_pre)
                    if c.projection.channel == "inh" and getattr(pop, "has_inh_channel", False):
                        xi = y if xi is None else xi + y
                    else:
                        x = x + y
                currents[name] = (x, xi)
            for n, c, rule in plastic:
                self._pathways(n, c, rule, state)
            new = {}
            for name in group:
                pop = self.populations[name]
                st, _ = state[name]
                x, xi = currents[name]
                z, st = pop.step(x, st) if xi is None else pop.step(x, st, x_inh=xi)
                new[name] = (st, z)
                for p in probes[name]:
                    p.record(t, z, st)
                if name in keep:
                    keep[name].append(z)
            state.update(new)
            for n, c, rule in plastic:
                traces = state[PLASTICITY + n]
                pre = state[c.pre][1].to(traces.x.dtype)
                state[PLASTICITY + n] = STDPState(stdp_trace(traces.x, pre, rule, self.dt), traces.y)
            for n, c, rule in eligible:
                self._eligibility(n, c, rule, state, None if n not in modulators else modulators[n][t])
        for name, zs in keep.items():
            seqs[name] = torch.stack(zs)

    def _eligibility(self, name: str, c: Connection, rule: ThreeFactorParameters, state: dict, modulator) -> None:
        """The three-factor rule's step on projection ``name`` for the last spikes in ``state``,
        its change deposited into ``weight.grad`` when there is a ``modulator`` (:meth:`plasticity`)."""
        proj, traces = c.projection, state[PLASTICITY + name]
        pre, post = (state[p][1].to(traces.x.dtype) for p in (c.pre, c.post))
        sparse = isinstance(proj, Sparse)
        if modulator is not None:
            modulator = modulator.expand(post.shape)  # from [B or 1, n_out or 1]
        state[PLASTICITY + name], dw = three_factor_synapses(
            pre, post, modulator, traces, rule, self.dt, (proj.post, proj.pre) if sparse else None,
            None if sparse else proj.mask)
        if dw is not None:
            deposit(proj.weight, dw if sparse or proj.mask is None else dw * proj.mask)

    def _pathways(self, name: str, c: Connection, rule: STDPParameters, state: dict) -> None:
        """The STDP pathways of projection ``name`` for the last spikes in ``state`` (:meth:`plasticity`)."""
        proj, traces = c.projection, state[PLASTICITY + name]
        pre, post = (state[p][1].to(traces.x.dtype) for p in (c.pre, c.post))
        synapses = (proj.post, proj.pre) if isinstance(proj, Sparse) else None
        y, w = stdp_pathways(pre, post, traces, rule, self.dt, proj.weight.detach(), synapses,
                             None if isinstance(proj, Sparse) else proj.mask, proj.signs is not None)
        with torch.no_grad():
            proj.weight.copy_(w)
        state[PLASTICITY + name] = STDPState(traces.x, y)
