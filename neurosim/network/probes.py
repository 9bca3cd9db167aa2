"""Probes: what a run records of a population, every ``stride`` steps."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..events import SpikeEvents


@dataclass
class Probe:
    """Records ``variable`` of ``target`` every ``stride`` steps (the value after steps 0, stride, ...);
    spikes as :class:`~neurosim.events.SpikeEvents` with ``events``. ``chunks`` holds what one run
    recorded so far: every run works on fresh copies (:meth:`fresh`), so a network's probes carry
    nothing from one run to the next."""

    target: str
    variable: str
    stride: int = 1
    events: bool = False
    chunks: list = field(default_factory=list, repr=False, compare=False)

    def fresh(self) -> "Probe":
        return Probe(self.target, self.variable, self.stride, self.events)

    def record(self, t: int, z: torch.Tensor, state) -> None:
        """Keep the value at step ``t`` (spikes ``z`` or a field of ``state``) if ``t`` is on the stride."""
        if t % self.stride == 0:
            v = z if self.variable == "spikes" else getattr(state, self.variable)
            self.chunks.append(v.unsqueeze(0).clone())

    def collect(self):
        """What was recorded: ``[ceil(T / stride), B, n]``, or events."""
        if self.events:
            if len(self.chunks) == 1 and isinstance(self.chunks[0], SpikeEvents):
                return self.chunks[0]
            return SpikeEvents.from_dense(torch.cat(self.chunks), self.stride)
        return torch.cat(self.chunks) if self.chunks else torch.empty(0)
