r"""Metaplasticity (Laborieux et al. 2021): updates that shrink a hidden weight's magnitude are attenuated.

Each protected projection keeps a hidden weight :math:`W_h` per synapse, and the network uses the
bounded visible weight

.. math:: W = b \tanh(W_h / b).

The optimiser steps :math:`W` as usual (its gradient is taken with respect to :math:`W`); its step
:math:`\Delta W` is then applied to :math:`W_h` (straight-through), attenuated where it moves
:math:`W_h` toward zero (:math:`\mathrm{sign}(W_h)\,\Delta W < 0`) by

.. math:: f_{meta} = 1 - \tanh^2(m_{eff}\,|W_h|), \qquad m_{eff} = m / s,

and unchanged elsewhere (and at :math:`W_h = 0`); :math:`W` is set to :math:`b\tanh(W_h/b)` again.
For plain SGD the condition is :math:`\mathrm{sign}(W_h)\, g > 0`; for Adam it is
:math:`\mathrm{sign}(W_h)\, m_t > 0` (first moment), where Laborieux et al. scale :math:`m_t` in the
step :math:`-\eta\, m_t / (\sqrt{v_t} + \epsilon)` without storing the scaled moment. Both are the
sign of the step the optimiser takes, so the rule is applied after any optimiser's step, to the
change it made (:func:`metaplastic_update`, the pure step). Since :math:`\tanh` is 1-Lipschitz, the
visible change is never longer than the optimiser's step.

**Why a hidden weight.** Laborieux et al. act on the hidden weights of a binarised network: the
forward pass reads only :math:`\mathrm{sign}(W_h)` and batch normalisation follows every layer.
Attenuating only shrinking steps ratchets the magnitudes outward under the noise of SGD; there
this growth changes nothing the network computes and is pure consolidation (a weight far from zero
needs many steps to flip). Applied to real-valued weights directly, the same ratchet inflates the
weights, and with them the activity of a spiking network with thresholds: on the conformance
scenarios of :mod:`neurosim.runs.conformance` (three tasks) the weight RMS grew 2 to 8 times (400
times on the three-factor readout) and the networks forgot more than without protection (permuted
digits on LIF 64-128-10, ACC / BWT 74.8 / -21.8 % against 82.7 / -16.6 %, mean of seeds 0-2). The
bounded visible weight plays the part of the sign: consolidation accumulates in :math:`W_h` beyond
the bound while :math:`|W| < b` keeps the activity in range. The bound is
``b = bound * max(1/sqrt(fan_in), r0)`` per projection, ``r0`` the RMS of its weights when the
plugin attaches (``bound=3``: three times the Kaiming bound of a default initialisation, or of a
larger one; a projection initialised small, such as a readout at 0.1 of it, may still grow to it).
Weights at or beyond ``b`` when the plugin attaches are refused. ``bound=None`` keeps no hidden
weight and applies the rule to :math:`W` itself.

**Scale** :math:`s`. By default (``scale="rms"``) :math:`s` is, per projection, the root mean
square of its hidden weights (over existing synapses when masked) before each step, so ``m`` acts
on each weight's magnitude relative to its projection's: a typical weight of a uniform
initialisation (:math:`|W_h|/s` near 0.87) has its shrinking steps scaled by
:math:`f_{meta} \approx 0.32` whatever the fan-in, the factor :math:`m = 1.35` gives a binarised
network's hidden weight of magnitude 0.87, and a projection that must grow (the three-factor readout
grows 50 times without protection) is not frozen by the scale it started at. ``scale="initial"``
fixes :math:`s` at the RMS when the plugin first attaches (kept in ``state_dict``); ``scale`` may
also be one number for every projection, or one per projection name. ``scale=1.0, bound=None`` is
Laborieux et al.'s form, :math:`m` acting on the raw :math:`|W|`.

Both parts are needed, measured on the conformance scenarios (mean of seeds 0-2, ACC / BWT %):
the bound alone (``m=0``) left permuted digits at 82.3 / -17.1 and the three-factor readout at
65.8 / -37.3 (no protection: 82.7 / -16.6 and 64.8 / -35.4); the RMS scale without the bound gave
79.3 / -18.7 on permuted digits. With both (the defaults) every scenario in which no protection
forgets is protected: permuted 83.7 / -13.1, recurrent 79.3 / -11.8, E/I 73.0 / -14.3, delayed
85.0 / -29.9, three-factor 68.5 / -24.9, class-incremental 29.0 / -87.2 (no protection 82.7 /
-16.6, 77.6 / -17.6, 68.9 / -27.2, 59.0 / -56.2, 64.8 / -35.4, 20.5 / -97.2); ``m=0.9`` and
``bound=2`` protected them all as well. The ACC margins are small (1-4 points, of the order of the
spread between seeds) except on the delayed task.

``m`` is one number or one per projection name (0 = plain training; a projection missing from
the table is not attenuated). The hidden weights, bounds and scales are kept in ``state_dict``, so a
resumed run continues bit for bit; the hidden weights follow any change made to the visible ones
outside the plugin's step (another plugin, a state loaded into the network). Under data
parallelism the step comes from the all-reduced gradient, the same on every rank.
"""
from __future__ import annotations

import math

import torch

from neurosim.errors import NeurosimError, check_positive
from neurosim.continual.plugin import Plugin, learnable_projections
from neurosim.projections import Chain

SCALES = ("rms", "initial")


def f_meta(w: torch.Tensor, m) -> torch.Tensor:
    r""":math:`1 - \tanh^2(m |w|)`, elementwise (``m`` a number or a tensor broadcast against ``w``)."""
    return 1 - torch.tanh(m * w.abs()) ** 2


def metaplastic_update(w_old: torch.Tensor, w_new: torch.Tensor, m) -> torch.Tensor:
    r"""The weight after a metaplastic step: ``w_old + f * delta`` where the step ``delta = w_new -
    w_old`` moves ``w_old`` toward zero (:math:`\mathrm{sign}(w_{old})\,\delta < 0`), with
    ``f = f_meta(w_old, m)``; ``w_new`` elsewhere."""
    delta = w_new - w_old
    toward_zero = torch.sign(w_old) * delta < 0
    return torch.where(toward_zero, w_old + f_meta(w_old, m) * delta, w_new)


def visible(hidden: torch.Tensor, bound: float) -> torch.Tensor:
    r"""The weight a hidden weight gives: :math:`b \tanh(W_h / b)`."""
    return bound * torch.tanh(hidden / bound)


def hidden_of(w: torch.Tensor, bound: float) -> torch.Tensor:
    r"""The hidden weight of a visible one, :math:`b\,\mathrm{artanh}(W / b)`; a weight at the bound (to
    the dtype's resolution) maps to the largest finite hidden weight."""
    edge = 1 - torch.finfo(w.dtype).eps
    return bound * torch.atanh((w / bound).clamp(-edge, edge))


def _synapses(proj, w: torch.Tensor) -> torch.Tensor:
    """The entries of ``w`` (shaped as ``proj``'s weight) at existing synapses (a masked projection's;
    a Chain's wrapped projection's)."""
    if isinstance(proj, Chain):
        proj = proj.projection
    mask = getattr(proj, "mask", None)
    return w[mask] if isinstance(mask, torch.Tensor) else w


def _rms(w: torch.Tensor) -> float:
    return float(w.detach().double().pow(2).mean().sqrt()) if w.numel() else 0.0


def fan_in(proj) -> float:
    """Existing synapses per postsynaptic unit: ``n_in`` of a Dense projection, the mean over units of
    a masked or Sparse one, ``channels * k * k`` of a convolution."""
    w = proj.weight
    rows = w.shape[0] if w.dim() > 1 else proj.n_out
    return _synapses(proj, w).numel() / rows


class Metaplasticity(Plugin):
    """``Metaplasticity(m=1.35, projections=None, scale="rms", bound=3.0)``; see the module docstring."""

    name = "metaplasticity"

    def __init__(self, m: float | dict[str, float] = 1.35, projections: list[str] | None = None,
                 scale: str | float | dict[str, float] = "rms", bound: float | None = 3.0):
        for v in (m.values() if isinstance(m, dict) else [m]):
            check_positive("m", v, allow_zero=True)
        if isinstance(scale, str):
            if scale not in SCALES:
                raise NeurosimError(f"unknown metaplasticity scale {scale!r}; expected 'rms', 'initial', a number or "
                                    "a table of numbers per projection")
        else:
            for v in (scale.values() if isinstance(scale, dict) else [scale]):
                check_positive("scale", v)
        if bound is not None:
            check_positive("bound", bound)
        self.m, self.names, self.scale, self.bound = m, projections, scale, bound
        self.scales: dict[str, float] = {}
        self.bounds: dict[str, float] = {}
        self.hidden: dict[str, torch.Tensor] = {}
        self._before: dict[str, torch.Tensor] = {}
        self._written: dict[str, int] = {}  # the weight's version after the plugin last wrote it

    def targets(self, network) -> dict:
        found = learnable_projections(network)
        names = self.names if self.names is not None else list(found)
        for n in names:
            if n not in network.connections:
                raise NeurosimError(f"metaplasticity: the network has no projection {n!r}")
            if n not in found:
                raise NeurosimError(f"metaplasticity cannot act on projection {n!r}: its weights are not trained")
        for what, table in (("m", self.m), ("scale", self.scale)):
            if isinstance(table, dict):
                unknown = set(table) - set(names)
                if unknown:
                    raise NeurosimError(f"metaplasticity: {what} given for unknown projection {sorted(unknown)[0]!r}")
        return {n: found[n] for n in names}

    def _m(self, name: str) -> float:
        return float(self.m.get(name, 0.0)) if isinstance(self.m, dict) else float(self.m)

    def _scale(self, name: str, proj, w: torch.Tensor) -> float:
        """``s`` for projection ``name`` whose (hidden) weights are ``w``."""
        if isinstance(self.scale, dict):
            if name not in self.scale:
                raise NeurosimError(f"metaplasticity: scale table has no value for projection {name!r}")
            return float(self.scale[name])
        if not isinstance(self.scale, str):
            return float(self.scale)
        rms = _rms(_synapses(proj, w))
        if not math.isfinite(rms) or rms <= 0:
            raise NeurosimError(f"metaplasticity: projection {name!r} has all-zero weights, so it has no weight "
                                "scale; pass scale= (a number, or one per projection)")
        return rms

    def m_effective(self, name: str) -> float:
        """``m / s`` for projection ``name``, with the scale of the last step (known once the plugin has
        attached; the ``"rms"`` scale is taken again before every step)."""
        if name not in self.scales:
            raise NeurosimError(f"metaplasticity: no scale for projection {name!r} yet (it attaches in before_training)")
        return self._m(name) / self.scales[name]

    def before_training(self, runner) -> None:
        for n, proj in self.targets(runner.network).items():
            w = proj.weight.detach()
            if self.bound is not None and n not in self.bounds:  # a resumed run keeps its bounds
                unit = max(1 / math.sqrt(fan_in(proj)), _rms(_synapses(proj, w)))
                self.bounds[n] = self.bound * unit
                if float(_synapses(proj, w).abs().max()) >= self.bounds[n]:
                    raise NeurosimError(f"metaplasticity: projection {n!r} has weights of magnitude "
                                        f"{float(w.abs().max()):.4g}, at or beyond the bound {self.bounds[n]:.4g} "
                                        "of its visible weights; pass a larger bound= or bound=None")
            self._sync(n, proj)
            if n not in self.scales or self.scale == "rms":  # an initial scale is kept, from the first attachment
                self.scales[n] = self._scale(n, proj, self.hidden.get(n, w))

    def _sync(self, name: str, proj) -> None:
        """The hidden weights follow any change made to the weights outside the plugin's step (another
        plugin, a state loaded into the network)."""
        if self.bound is None or self._written.get(name) == proj.weight._version:
            return  # nothing has written to the weight since the plugin did
        w, b = proj.weight.detach(), self.bounds[name]
        h = self.hidden.get(name)
        if h is None:
            self.hidden[name] = hidden_of(w, b)
            return
        changed = visible(h, b) != w
        if bool(changed.any()):
            h[changed] = hidden_of(w[changed], b)

    def before_update(self, runner) -> None:
        self._before = {}
        for n, proj in self.targets(runner.network).items():
            self._sync(n, proj)
            self._before[n] = proj.weight.detach().clone()
            if self.scale == "rms":
                self.scales[n] = self._scale(n, proj, self.hidden.get(n, self._before[n]))

    def after_update(self, runner) -> None:
        with torch.no_grad():
            for n, proj in self.targets(runner.network).items():
                m, old = self.m_effective(n), self._before[n]
                if self.bound is None:
                    proj.weight.copy_(metaplastic_update(old, proj.weight, m))
                    continue
                h = self.hidden[n]
                self.hidden[n] = metaplastic_update(h, h + (proj.weight - old), m)
                proj.weight.copy_(visible(self.hidden[n], self.bounds[n]))
                self._written[n] = proj.weight._version

    def state_dict(self) -> dict:
        return {"scales": dict(self.scales), "bounds": dict(self.bounds),
                "hidden": {n: h.clone() for n, h in self.hidden.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.scales = {str(k): float(v) for k, v in state["scales"].items()}
        self.bounds = {str(k): float(v) for k, v in state.get("bounds", {}).items()}
        self.hidden = {str(k): v.clone() for k, v in state.get("hidden", {}).items()}
