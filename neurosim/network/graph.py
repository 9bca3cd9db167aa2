"""A network of populations and projections, run over whole input sequences.

Execution plan: the graph's strongly connected components, in topological order.

- A population outside any loop runs *layer-at-a-time*: its input for all ``T`` steps is one
  projection call on the presynaptic sequences (one big matmul), then the neuron recurrence.
- Inside a loop (recurrent projection, or populations feeding each other) populations run
  *step-at-a-time*; a projection inside a loop carries the previous step's output (one-step
  delay). Without gradients, spikes propagate event-driven, and a single spiking population with
  its recurrent projections runs in the compiled loop registered for its model
  (:mod:`neurosim.kernels.registry`) when there is one and it supports the configuration.
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
from .plan import components
from .probes import Probe


@dataclass
class Connection:
    pre: str
    post: str
    projection: Projection


class RunResult(NamedTuple):
    """``outputs``: full ``[T, B, n]`` sequences of the requested populations; ``probes``: recordings
    ``[ceil(T / stride), B, n]`` by probe name (:class:`~neurosim.events.SpikeEvents` for event
    probes); ``state``: pass to the next ``run`` to continue."""

    outputs: dict
    probes: dict
    state: dict


class Network(nn.Module):
    """Populations, inputs and projections sharing one time step ``dt`` (ms)."""

    def __init__(self, dt: float = 1.0):
        super().__init__()
        check_positive("dt", dt)
        self.dt = float(dt)
        self.populations = nn.ModuleDict()
        self.projections = nn.ModuleDict()
        self.inputs: dict[str, int] = {}
        self.connections: dict[str, Connection] = {}
        self.probes: dict[str, Probe] = {}
        self.compiled = True

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

    def connect(self, pre: str, post: str, projection: Projection, name: str | None = None) -> Projection:
        """Connect ``pre`` (population or input) to population ``post``; recurrent if they are the same."""
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
        self.projections[name] = projection
        self.connections[name] = Connection(pre, post, projection)
        return projection

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
        """Per population: its neuron state and its last spikes (which loops carry to the next step)."""
        return {n: (p.initial_state(batch, device), torch.zeros(batch, p.n, dtype=p.dtype, device=device))
                for n, p in self.populations.items()}

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
            progress: bool = False) -> RunResult:
        """Simulate all steps of ``inputs`` (``[T, B, n]`` per input; a population's name feeds it
        directly). Returns full sequences for ``outputs`` (default: populations with no outgoing
        projection), the recordings of the network's probes and of ``probes`` (name ->
        :class:`Probe`, for this run only), and the final state.

        ``net.run(...)`` and ``net(...)`` are the same call (through :meth:`forward`, so the
        network's forward hooks see every run)."""
        return self(inputs, state=state, steps=steps, batch=batch, outputs=outputs, probes=probes, progress=progress)

    def forward(self, inputs=None, *, state: dict | None = None, steps: int | None = None,
                batch: int | None = None, outputs=None, probes: Mapping[str, Probe] | None = None,
                progress: bool = False) -> RunResult:
        """The simulation behind :meth:`run`, with the same arguments and the same :class:`RunResult`."""
        inputs, T, B = self._check_inputs(inputs, steps, batch)
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
            state = dict(state)
        seqs: dict[str, torch.Tensor] = {k: v for k, v in inputs.items() if k in self.inputs}
        for group in self.plan():
            gset = set(group)
            drives = {p: self._drive(p, gset, seqs, inputs, T, B) for p in group}
            of = {p: [probe for probe in active.values() if probe.target == p] for p in group}
            if self._is_loop(group):
                self._run_loop(group, drives, state, seqs, outputs, of, T, progress)
            else:
                self._run_layer(group[0], drives[group[0]], state, seqs, of[group[0]])
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

    def _run_loop(self, group: list[str], drives: dict, state: dict, seqs: dict, outputs, probes: dict,
                  T: int, progress: bool) -> None:
        inner = [c for c in self.connections.values() if c.pre in group and c.post in group]
        keep = {n: [] for n in group if n in outputs or any(c.pre == n for c in self.connections.values()
                                                                if c.post not in group)}
        loop = self.compiled and len(group) == 1 and not torch.is_grad_enabled()
        compiled = lookup("loop", self.populations[group[0]]) if loop else None
        if compiled is not None:
            name = group[0]
            done = compiled(self.populations[name], [c.projection for c in inner], drives[name], state[name],
                            probes[name], name in keep, progress)
            if done is not None:
                state[name], seq = done
                if seq is not None:
                    seqs[name] = seq
                return
        steps = progress_bar(range(T), desc="simulating", unit="step") if progress else range(T)
        for t in steps:
            new = {}
            for name in group:
                pop = self.populations[name]
                st, _ = state[name]
                exc, inh = drives[name]
                x, xi = exc[t], None if inh is None else inh[t]
                for c in inner:
                    if c.post != name:
                        continue
                    z_pre = state[c.pre][1]
                    y = c.projection.propagate_spikes(z_pre) if self.populations[c.pre].spiking else c.projection(z_pre)
                    if c.projection.channel == "inh" and getattr(pop, "has_inh_channel", False):
                        xi = y if xi is None else xi + y
                    else:
                        x = x + y
                z, st = pop.step(x, st) if xi is None else pop.step(x, st, x_inh=xi)
                new[name] = (st, z)
                for p in probes[name]:
                    p.record(t, z, st)
                if name in keep:
                    keep[name].append(z)
            state.update(new)
        for name, zs in keep.items():
            seqs[name] = torch.stack(zs)
