r"""Metaplasticity: a weight's plasticity falls with what learning has consolidated in it (after Laborieux et al. 2021).

Laborieux et al.'s metaplastic factor, for a consolidation variable :math:`h` of a projection with
scale :math:`s`,

.. math:: f_{meta}(h) = 1 - \tanh^2(m\,|h| / s),

is 1 at :math:`h = 0` and falls toward 0 as :math:`|h|` grows. It scales the change each optimiser step
makes to the protected weights, by one of two rules (``rule``):

- ``"consolidated"`` (the default): during task :math:`t` every change of weight :math:`i` is scaled by
  the factor of what the tasks before moved it by,

  .. math:: W_i \leftarrow W_i + f_{meta}(W^*_i - W^0_i)\,\Delta W_i,

  in both directions, where :math:`W^*` are the weights at the start of the task, :math:`W^0` their
  reference (``reference``, below) and :math:`s` the root mean square of :math:`W^* - W^0` over the
  projection's synapses then. The first task learns unattenuated. A weight moved by the RMS learns at
  1 - tanh^2(1.35) = 0.24 of the optimiser's rate, one moved by the median (about 0.67 of the RMS
  for Gaussian changes) at 0.48, one moved by twice the RMS at 0.02.
- ``"laborieux"``: Laborieux et al.'s rule. Only a change that moves a weight toward zero
  (:math:`\mathrm{sign}(W)\,\Delta W < 0`) is scaled, by the factor of the weight's current value;
  :math:`s` is the RMS before each step (``scale="rms"``) or a given number (``scale=1.0`` is their
  form, with :math:`m` on the raw :math:`|W|`). For plain SGD the condition is
  :math:`\mathrm{sign}(W)\, g > 0`; for Adam it is :math:`\mathrm{sign}(W)\, m_t > 0` (first moment),
  where they scale :math:`m_t` in the step :math:`-\eta\, m_t / (\sqrt{v_t} + \epsilon)` without
  storing the scaled moment: both are the sign of the step the optimiser takes, so the rule is
  applied after any optimiser's step, to the change it made (:func:`metaplastic_update`).

Both rules only shorten the optimiser's step, weight by weight.

**The reference** (``reference``, consolidated rule): ``"initial"`` (the default) takes :math:`W^0`
the weights when the plugin attached, so that what is consolidated is what learning changed;
``"zero"`` takes :math:`W^0 = 0`, the weight's magnitude (Laborieux et al.'s rule always does). In a
binarised network the hidden weights start small and their magnitude is what learning accumulated;
in a real-valued network the magnitude is mostly the random initialisation, which says nothing of
what a task needs. Measured on the conformance scenarios of :mod:`neurosim.runs.conformance` (seeds
0-2, mean ACC / BWT %, no protection / the magnitude / the change since the initial weights):
permuted digits 82.7 / -16.6, 85.1 / -10.5, 88.0 / -7.3; five permuted tasks of 2,900 steps each
(``permuted-long``) 62.5 / -38.2, 62.3 / -38.0, 64.8 / -35.2 (with the magnitude, even ``m = 5``
ends at 60.6 / -31.7: weights the initialisation made large are not those the tasks need); the
recurrent network 77.6 / -17.6, 79.1 / -9.6, 81.9 / -7.1; the E/I reservoir 68.9 / -27.2,
70.1 / -18.6, 75.0 / -14.8.

**Why both directions are scaled.** Laborieux et al. build their rule for binarised networks,
whose forward pass reads only :math:`\mathrm{sign}(W)` with batch normalisation after every layer.
Attenuating only the steps toward zero turns the zero-mean noise of stochastic gradients into an
outward drift: a step of length :math:`a` toward zero is shortened to :math:`f a` while one away
from zero is taken whole, so each noisy step moves a weight outward by :math:`(1 - f) a / 2` on
average, and over :math:`N` steps the magnitudes grow in proportion to :math:`N a` rather than
:math:`\sqrt{N} a`. In a binarised network that growth changes nothing computed and is the
consolidation itself (a weight far from zero needs many steps to flip). In a real-valued network it
changes what every layer computes, more the longer a task trains. Measured (5 permuted
Fashion-MNIST tasks of 3,000 images, 2 epochs each, batches of 32, SGD lr 0.1, the DSR network
784-128-10 of :mod:`neurosim.models.pmnist`, seeds 0-1, mean ACC / BWT %): no protection 73.6 /
-3.0; the rule on hidden weights behind visible weights bounded at :math:`3/\sqrt{\text{fan-in}}`,
with the RMS scale, 68.3 / -10.0 (the input layer's weight RMS grew from 0.022 to 0.049 within the
first task, against 0.022 without protection, and ended at 0.082); the consolidated rule on the
magnitude 74.3 / -2.1, on the change since the initial weights (the default) 75.1 / -1.3. Scaling both directions by the same factor keeps the expected change of a
weight under zero-mean noise at zero, so the weights move only where the gradient drives them.

``m`` is one number or one per projection name (0 = plain training; a projection missing from the
table is not attenuated); ``scale`` is ``"rms"``, one number for every projection, or one per
projection name. The factors of the current task (consolidated), the scales and the initial weights
are kept in ``state_dict``, so a resumed run continues bit for bit. Under data parallelism the step comes from
the all-reduced gradient, the same on every rank.
"""
from __future__ import annotations

import math

import torch

from neurosim.errors import NeurosimError, check_choice, check_positive
from neurosim.continual.plugin import Plugin, learnable_projections
from neurosim.projections import Chain

RULES = ("consolidated", "laborieux")
REFERENCES = ("initial", "zero")


def f_meta(w: torch.Tensor, m) -> torch.Tensor:
    r""":math:`1 - \tanh^2(m |w|)`, elementwise (``m`` a number or a tensor broadcast against ``w``)."""
    return 1 - torch.tanh(m * w.abs()) ** 2


def metaplastic_update(w_old: torch.Tensor, w_new: torch.Tensor, m) -> torch.Tensor:
    r"""Laborieux et al.'s step: ``w_old + f * delta`` where the step ``delta = w_new - w_old`` moves
    ``w_old`` toward zero (:math:`\mathrm{sign}(w_{old})\,\delta < 0`), with ``f = f_meta(w_old, m)``;
    ``w_new`` elsewhere."""
    delta = w_new - w_old
    toward_zero = torch.sign(w_old) * delta < 0
    return torch.where(toward_zero, w_old + f_meta(w_old, m) * delta, w_new)


def consolidated_update(w_old: torch.Tensor, w_new: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    r"""The consolidated step: ``w_old + factor * (w_new - w_old)``, in both directions."""
    return w_old + factor * (w_new - w_old)


def _synapses(proj, w: torch.Tensor) -> torch.Tensor:
    """The entries of ``w`` (shaped as ``proj``'s weight) at existing synapses (a masked projection's;
    a Chain's wrapped projection's)."""
    if isinstance(proj, Chain):
        proj = proj.projection
    mask = getattr(proj, "mask", None)
    return w[mask] if isinstance(mask, torch.Tensor) else w


def _rms(w: torch.Tensor) -> float:
    return float(w.detach().double().pow(2).mean().sqrt()) if w.numel() else 0.0


class Metaplasticity(Plugin):
    """``Metaplasticity(m=1.35, projections=None, rule="consolidated", scale="rms", reference=None)``;
    see the module docstring."""

    name = "metaplasticity"

    def __init__(self, m: float | dict[str, float] = 1.35, projections: list[str] | None = None,
                 rule: str = "consolidated", scale: str | float | dict[str, float] = "rms",
                 reference: str | None = None):
        for v in (m.values() if isinstance(m, dict) else [m]):
            check_positive("m", v, allow_zero=True)
        check_choice("metaplasticity rule", rule, RULES)
        reference = {"consolidated": "initial", "laborieux": "zero"}[rule] if reference is None else reference
        check_choice("metaplasticity reference", reference, REFERENCES)
        if rule == "laborieux" and reference != "zero":
            raise NeurosimError("metaplasticity: Laborieux et al.'s rule acts on the weights themselves "
                                "(reference 'zero'), not on their change since a reference")
        if isinstance(scale, str):
            if scale != "rms":
                raise NeurosimError(f"unknown metaplasticity scale {scale!r}; expected 'rms', a number or a table "
                                    "of numbers per projection")
        else:
            for v in (scale.values() if isinstance(scale, dict) else [scale]):
                check_positive("scale", v)
        self.m, self.names, self.rule, self.scale, self.reference = m, projections, rule, scale, reference
        self.scales: dict[str, float] = {}
        self.initial: dict[str, torch.Tensor] = {}  # reference "initial": the weights when the plugin attached
        self.factors: dict[str, torch.Tensor] = {}  # consolidated: f_meta of W* - reference at the task's start
        self._projections: dict = {}  # the protected projections, found when the plugin attaches
        self._before: dict[str, torch.Tensor] = {}

    def targets(self, network) -> dict:
        found = learnable_projections(network)
        names = self.names if self.names is not None else list(found)
        for n in names:
            if n not in network.connections:
                raise NeurosimError(f"metaplasticity: the network has no projection {n!r}; "
                                    f"known: {', '.join(network.connections)}")
            if n not in found:
                raise NeurosimError(f"metaplasticity cannot act on projection {n!r}: its weights are not trained")
        for what, table in (("m", self.m), ("scale", self.scale)):
            if isinstance(table, dict):
                unknown = set(table) - set(names)
                if unknown:
                    raise NeurosimError(f"metaplasticity: {what} given for unknown projection {sorted(unknown)[0]!r}; "
                                        f"protected: {', '.join(names)}")
        return {n: found[n] for n in names}

    def _m(self, name: str) -> float:
        return float(self.m.get(name, 0.0)) if isinstance(self.m, dict) else float(self.m)

    def _consolidated(self, name: str, proj) -> torch.Tensor:
        """The variable the factors are taken of: the weights, less their reference."""
        w = proj.weight.detach()
        return w - self.initial[name] if self.reference == "initial" else w

    def _scale(self, name: str, proj) -> float:
        """``s`` for projection ``name`` now: a given number, or the RMS over its synapses of the weights
        less their reference (0 when they have not moved from it)."""
        if isinstance(self.scale, dict):
            if name not in self.scale:
                raise NeurosimError(f"metaplasticity: scale table has no value for projection {name!r}")
            return float(self.scale[name])
        if not isinstance(self.scale, str):
            return float(self.scale)
        if self.reference == "initial" and name in self.initial:
            return _rms(_synapses(proj, self._consolidated(name, proj)))
        rms = _rms(_synapses(proj, proj.weight))
        if not math.isfinite(rms) or rms <= 0:
            raise NeurosimError(f"metaplasticity: projection {name!r} has all-zero weights, so it has no weight "
                                "scale; pass scale= (a number, or one per projection)")
        return rms

    def m_effective(self, name: str) -> float:
        """``m / s`` for projection ``name``, with the scale last taken (at the task's start for the
        consolidated rule, before the last step for Laborieux et al.'s with ``scale="rms"``); infinite
        while the weights have not moved from their reference."""
        if name not in self.scales:
            raise NeurosimError(f"metaplasticity: no scale for projection {name!r} yet")
        return self._m(name) / self.scales[name] if self.scales[name] > 0 else math.inf

    def before_training(self, runner) -> None:
        self._projections = self.targets(runner.network)
        if self.reference == "initial" and not self.initial:  # a resumed run keeps the first run's
            self.initial = {n: proj.weight.detach().clone() for n, proj in self._projections.items()}
        for n, proj in self._projections.items():  # checks the scales when it attaches
            self._scale(n, proj)

    def before_task(self, runner, task: int) -> None:
        if self.rule != "consolidated":
            return
        self.factors = {}
        if task == 0:
            return  # nothing consolidated yet
        with torch.no_grad():
            for n, proj in self._projections.items():
                self.scales[n] = s = self._scale(n, proj)
                d = self._consolidated(n, proj)
                self.factors[n] = f_meta(d, self._m(n) / s) if s > 0 else torch.ones_like(d)

    def before_update(self, runner) -> None:
        self._before = {}
        for n, proj in self._projections.items():
            if self.rule == "consolidated" and n not in self.factors:
                continue
            self._before[n] = proj.weight.detach().clone()
            if self.rule == "laborieux":
                self.scales[n] = self._scale(n, proj)

    def after_update(self, runner) -> None:
        with torch.no_grad():
            for n, old in self._before.items():
                weight = self._projections[n].weight
                if self.rule == "consolidated":
                    weight.copy_(consolidated_update(old, weight, self.factors[n]))
                else:
                    weight.copy_(metaplastic_update(old, weight, self.m_effective(n)))

    def state_dict(self) -> dict:
        return {"scales": dict(self.scales), "factors": {n: f.clone() for n, f in self.factors.items()},
                "initial": {n: w.clone() for n, w in self.initial.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state.get("hidden"):
            raise NeurosimError("metaplasticity: this run was written with hidden weights behind bounded visible "
                                "ones, a form this version no longer has; start the run again")
        self.scales = {str(k): float(v) for k, v in state["scales"].items()}
        self.factors = {str(k): v.clone() for k, v in state.get("factors", {}).items()}
        self.initial = {str(k): v.clone() for k, v in state.get("initial", {}).items()}
        if self.reference == "initial" and self.factors and not self.initial:
            raise NeurosimError("metaplasticity: this run was written before the initial weights were kept, so "
                                "the consolidation cannot go on from them; start the run again, or pass "
                                "reference='zero' (the weights' magnitude)")
