r"""Metaplasticity (Laborieux et al. 2021): updates that shrink a weight's magnitude are attenuated.

For every weight :math:`W` of a protected projection, an optimiser update :math:`\Delta W` that
moves it toward zero (:math:`\mathrm{sign}(W)\,\Delta W < 0`) is scaled by

.. math:: f_{meta} = 1 - \tanh^2(m\,|W|)

and updates away from zero are applied unchanged. For plain SGD the condition is
:math:`\mathrm{sign}(W)\, g > 0`; for Adam it is :math:`\mathrm{sign}(W)\, m_t > 0` (first
moment); both are the sign of the step the optimiser takes, which is what is tested here, so one
rule serves any optimiser. ``m`` is one number or one per projection name (0 = plain training).
Under data parallelism the step comes from the all-reduced gradient, the same on every rank.
"""
from __future__ import annotations

import torch

from neurosim.errors import NeurosimError, check_positive
from neurosim.continual.plugin import Plugin, learnable_projections


class Metaplasticity(Plugin):
    name = "metaplasticity"

    def __init__(self, m: float | dict[str, float] = 1.35, projections: list[str] | None = None):
        values = m.values() if isinstance(m, dict) else [m]
        for v in values:
            check_positive("m", v, allow_zero=True)
        self.m, self.names = m, projections
        self._before: dict[str, torch.Tensor] = {}

    def targets(self, network) -> dict:
        found = learnable_projections(network)
        names = self.names if self.names is not None else list(found)
        for n in names:
            if n not in network.connections:
                raise NeurosimError(f"metaplasticity: the network has no projection {n!r}")
            if n not in found:
                raise NeurosimError(f"metaplasticity cannot act on projection {n!r}: its weights are not trained")
        if isinstance(self.m, dict):
            unknown = set(self.m) - set(names)
            if unknown:
                raise NeurosimError(f"metaplasticity: m given for unknown projection {sorted(unknown)[0]!r}")
        return {n: found[n] for n in names}

    def _m(self, name: str) -> float:
        return float(self.m.get(name, 0.0)) if isinstance(self.m, dict) else float(self.m)

    def before_training(self, runner) -> None:
        self.targets(runner.network)

    def before_update(self, runner) -> None:
        self._before = {n: p.weight.detach().clone() for n, p in self.targets(runner.network).items()}

    def after_update(self, runner) -> None:
        with torch.no_grad():
            for n, proj in self.targets(runner.network).items():
                w_old = self._before[n]
                delta = proj.weight - w_old
                toward_zero = torch.sign(w_old) * delta < 0
                f = 1 - torch.tanh(self._m(n) * w_old.abs()) ** 2
                proj.weight.copy_(w_old + torch.where(toward_zero, f * delta, delta))
