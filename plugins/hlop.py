r"""HLOP: Hebbian learning based orthogonal projection (Xiao et al., ICLR 2024).

Every protected projection with weight :math:`W` gets lateral "subspace neurons" whose weights are
the rows of :math:`H` (:math:`k \times n`), learnt from the projection's presynaptic activity rows
:math:`X` (:math:`N` rows of length :math:`n`; what a row is for each kind of projection, and with
``rates=tau``, is in :mod:`neurosim.plugins.orthogonal`).

**Subspace learning** (Oja's subspace rule, Hebbian plus anti-Hebbian), on every training batch
after the forward pass, repeated ``hebb_iters`` times:

.. math::

    Y = q(X H^T), \qquad
    \Delta H_{new} = \mathrm{clip}\big(\tfrac{1}{N} Y_{new}^T (X - q(X H_{old}^T) H_{old} - Y_{new} H_{new}),\, -c,\, c\big), \qquad
    M \leftarrow \mu M + (1 - \mu) \Delta H_{new}, \qquad
    H_{new} \leftarrow H_{new} + \eta_H M

with :math:`c` = ``clamp``, :math:`\mu` = ``momentum`` and :math:`\eta_H` = ``lr_hebb`` (constant).
Under data parallelism every rank gathers the activity rows of all its projections from every rank's
shard once per batch (one collective call,
:func:`neurosim.continual.distributed.gather_shards`): :math:`X` is then the global batch's rows, in
the order one process has them, and every rank computes the second moment :math:`C` below and the
Hebbian steps on it without further communication, so each holds the subspace one process learns
(bit for bit when the activity is the same).
:math:`q` is the identity, or with ``quantise=(s, T_h)`` the spiking lateral neurons
:math:`q(y) = \mathrm{round}(\mathrm{clip}(y, -s, s) / s \cdot T_h)\, s / T_h`.
:math:`H = [H_{old}; H_{new}]`: the reconstruction uses all rows but only the rows of the current
task, :math:`H_{new}`, learn. They start as random orthonormal rows orthogonal to :math:`H_{old}`,
with zero momentum.

**Rows per task.** By default (``rows_per_task=None``) they follow the task's activity through the
energy criterion of :mod:`~neurosim.plugins.orthogonal` with threshold :math:`\varepsilon` =
``energy`` (0.95, GPM's default threshold on the same criterion): HLOP accumulates the second moment :math:`C = \sum x x^T` of the task's activity
rows (float64, :math:`n \times n`, the rows the Hebbian rule sees) and after the task's 1st, 2nd,
4th, 8th, ... batch computes the number :math:`k` of directions the criterion adds to
:math:`H_{old}`; when it exceeds the rows being learnt, the difference joins :math:`H_{new}`
(random orthonormal rows orthogonal to both blocks, zero momentum) before that batch's Hebbian
update. At the task's end :math:`k` is computed from the whole task's :math:`C`; if the learnt rows
are more, :math:`H_{new}` is replaced by the :math:`k` directions of its span holding the most
energy (top eigenvectors of :math:`U C U^T`, :math:`U` an orthonormal basis of the span). Cost: one
:math:`n \times n` product per batch and :math:`\log_2` (batches per task) eigendecompositions.
With ``rows_per_task`` the counts are fixed (the paper's schedules), drawn at the task's start.
The default was 0.97 until the conformance matrix (``benchmarks/conformance.py``, seeds 0-2) showed
it leaving later tasks too little room on a recurrent LIF network and an E/I reservoir (tasks 1-2
learnt 5 to 35 points worse than without protection, mean ACC 77.3 and 68.4 % against 77.6 and
68.9 % without protection); 0.95 gave 81.6 and 72.6 %, with BWT -1.3 and -6.9 against -17.6 and -27.2.

**Merge**, at the end of each task: :math:`H_{old} \leftarrow` :func:`~neurosim.plugins.orthogonal.extend`
:math:`(H_{old}, H_{new})`: the new rows are projected off the old ones and orthonormalised (rows
that collapsed are dropped), so :math:`H_{old}` stays orthonormal to rounding whatever the task's
length and however far the Hebbian rule converged, and :math:`I - H_{old}^T H_{old}` is a true
projection.

**Projection**, from task 1 on and with :math:`H_{old}` only (task 0 has none; rows being learnt
never project). The forward pass keeps the raw :math:`x`:

- ``form="gradient"`` (default): after the backward pass,
  :math:`G \leftarrow G - (G H_{old}^T) H_{old}` with :math:`G = \partial L / \partial W` reshaped to
  out :math:`\times` fan-in, per row within its synapses for Sparse and masked projections and on the
  effective weight under Dale's law (:mod:`~neurosim.plugins.orthogonal`). It filters whatever is in
  ``.grad``, including updates that local learning rules deposit there; linear :math:`q` only.
- ``form="input"``: a custom autograd function makes the weight gradient
  :math:`\sum_{rows} g\, \tilde x^T` with :math:`\tilde x = x - H_{old}^T q(H_{old} x)` (:math:`g` the
  gradient at the projection's output), every other gradient (input, bias) unchanged; Dense and
  Conv2d projections without mask or Dale's law only.

Without quantisation both give the same gradient, and an SGD step leaves :math:`W x` unchanged on
old activity up to the subspace's accuracy. No weight decay and no Adam; SGD momentum is safe
because the runner rebuilds the optimiser every task. Freezing after the first task and what is
protected: :mod:`~neurosim.plugins.orthogonal`.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import numpy as np
import torch

from neurosim.errors import NeurosimError, check_choice, check_positive

from .orthogonal import (DelayedRows, OrthogonalProjection, check_layer_values, constrained, energy,
                         energy_count, extend, layer_value, random_rows, seeded)

FORMS = ("input", "gradient")
#: Energy threshold of the default rows per task.
ENERGY = 0.95


class _ResidualWeightGrad(torch.autograd.Function):
    r"""Identity on the projection output ``y``; backward adds :math:`-g^T x_p` (``x_p`` the projected
    rows :math:`H^T q(H x)`) to the weight's gradient, so it becomes :math:`g^T \tilde x`."""

    @staticmethod
    def forward(ctx, y, weight, xp, layout):
        ctx.save_for_backward(xp)
        ctx.layout, ctx.weight_shape = layout, weight.shape
        return y.view_as(y)

    @staticmethod
    def backward(ctx, g):
        if not ctx.needs_input_grad[1]:
            return g, None, None, None
        (xp,) = ctx.saved_tensors
        return g, -(ctx.layout.out_rows(g).t() @ xp).reshape(ctx.weight_shape), None, None


@dataclass
class _Subspace:
    """One protected projection: merged rows ``old``, rows learnt in the current task ``new``, their
    momentum, how many rows each task added, and (default rows) the current task's second moment and
    batch count."""

    old: torch.Tensor
    new: torch.Tensor
    momentum: torch.Tensor
    counts: list[int] = field(default_factory=list)
    moment: torch.Tensor | None = None
    batches: int = 0


class HLOP(OrthogonalProjection):
    """``HLOP(rows_per_task=None, energy=None, lr_hebb=0.01, hebb_iters=5, momentum=0.9, clamp=10,
    quantise=None, form="gradient", rates=None, projections=None, freeze_after_first_task=True, seed=0,
    delay_samples=4)``; see the module docstring.

    ``energy``: the fraction of each task's activity energy that the merged rows must be able to hold
    (default rows per task; 0.95 when neither it nor ``rows_per_task`` is given), one number in
    (0, 1], a list per layer, a dict projection name -> number or ``f(task, layer)``. ``rows_per_task``: fixed rows added per task and layer instead, as one
    int, a list indexed by task whose entries are an int or a list indexed by layer, or
    ``f(task, layer) -> int``. Layers are the protected projections in the order of ``projections``
    (default: the network's connection order). ``lr_hebb``: one number or a dict projection name ->
    number. ``seed`` fixes the random rows each task starts from (drawn from ``(seed, task, layer)``).
    ``delay_samples``: how many postsynaptic neurons of a :class:`~neurosim.projections.Delayed`
    projection lend their delivered inputs to each batch's Hebbian update.
    """

    name = "hlop"
    label = "HLOP"

    def __init__(self, rows_per_task=None, energy: float | list | dict | None = None,
                 lr_hebb: float | dict[str, float] = 0.01, hebb_iters: int = 5, momentum: float = 0.9,
                 clamp: float = 10.0, quantise: tuple[float, float] | None = None, form: str = "gradient",
                 rates: float | None = None, projections: list[str] | None = None,
                 freeze_after_first_task: bool = True, seed: int = 0, delay_samples: int = 4):
        super().__init__(projections, freeze_after_first_task, rates, delay_samples)
        if rows_per_task is not None and not (callable(rows_per_task) or isinstance(rows_per_task, (int, list, tuple))):
            raise NeurosimError("rows_per_task must be an int, a list or a callable, "
                                f"got {type(rows_per_task).__name__}")
        if rows_per_task is not None and energy is not None:
            raise NeurosimError("HLOP takes rows_per_task (fixed rows) or energy (rows from the activity), not both")
        if rows_per_task is None:
            energy = ENERGY if energy is None else energy
            check_layer_values("energy", energy)
        for v in lr_hebb.values() if isinstance(lr_hebb, dict) else [lr_hebb]:
            check_positive("lr_hebb", v)
        if not isinstance(hebb_iters, int) or hebb_iters < 1:
            raise NeurosimError(f"hebb_iters must be a positive integer, got {hebb_iters!r}")
        if not 0 <= momentum < 1:
            raise NeurosimError(f"momentum must be in [0, 1), got {momentum!r}")
        check_positive("clamp", clamp)
        check_choice("form", form, FORMS)
        if quantise is not None:
            if len(quantise) != 2:
                raise NeurosimError(f"quantise must be (scale, timesteps), got {quantise!r}")
            check_positive("quantise scale", quantise[0])
            check_positive("quantise timesteps", quantise[1])
            if form == "gradient":
                raise NeurosimError("quantise needs form='input': the quantised lateral response q(H x) is "
                                    "defined on activity, and the gradient form projects G linearly")
        self.rows_per_task, self.energy, self.lr_hebb, self.hebb_iters = rows_per_task, energy, lr_hebb, hebb_iters
        self.momentum, self.clamp, self.quantise, self.form = float(momentum), float(clamp), quantise, form
        self.seed = seed
        self.subspaces: dict[str, _Subspace] = {}

    # -- what it acts on ---------------------------------------------------------------------
    def _refuse(self, proj, rows) -> str:
        if self.form == "input" and isinstance(rows, DelayedRows):
            return "a delayed projection's inputs differ per synapse, so form='input' cannot project them; " \
                   "use form='gradient'"
        if self.form == "input" and constrained(proj):
            return "its updates live on existing synapses or pass through Dale's signs, which form='input' " \
                   "cannot project; use form='gradient'"
        return ""

    def targets(self, network) -> dict:
        found = super().targets(network)
        if isinstance(self.lr_hebb, dict):
            for name in sorted(set(found) ^ set(self.lr_hebb)):
                what = "is missing for protected" if name in found else "is given for unprotected"
                raise NeurosimError(f"HLOP: lr_hebb {what} projection {name!r}")
        return found

    def rows(self, task: int, layer: int) -> int:
        """Fixed rows added to ``layer`` at the start of ``task`` (``rows_per_task``)."""
        r = self.rows_per_task
        if callable(r):
            n = r(task, layer)
        elif isinstance(r, int):
            n = r
        else:
            if task >= len(r):
                raise NeurosimError(f"HLOP: rows_per_task lists {len(r)} tasks, none for task {task}")
            n = r[task]
            if not isinstance(n, (int, np.integer)):
                if len(n) != len(self._targets):
                    raise NeurosimError(f"HLOP: rows_per_task[{task}] gives {len(n)} layers but "
                                        f"{len(self._targets)} projections are protected: {', '.join(self._targets)}")
                n = n[layer]
        try:
            n = operator.index(n)
        except TypeError:
            raise NeurosimError(f"HLOP: rows for task {task}, layer {layer} must be an integer, got {n!r}") from None
        if n < 0:
            raise NeurosimError(f"HLOP: rows for task {task}, layer {layer} must be >= 0, got {n}")
        return n

    def _eta(self, name: str) -> float:
        return float(self.lr_hebb[name]) if isinstance(self.lr_hebb, dict) else float(self.lr_hebb)

    def _threshold(self, task: int, layer: int, name: str) -> float:
        return layer_value("HLOP energy", self.energy, task, layer, name)

    def basis(self, name: str) -> torch.Tensor:
        return self.subspaces[name].old

    def _setup(self) -> None:
        if not self.subspaces:
            for name, (proj, rows) in self._targets.items():
                empty = proj.weight.new_zeros(0, rows.dim)
                self.subspaces[name] = _Subspace(empty, empty.clone(), empty.clone())
        self._check_dims({name: s.old.shape[1] for name, s in self.subspaces.items()})

    # -- activity and projection -------------------------------------------------------------
    def _q(self, y: torch.Tensor) -> torch.Tensor:
        if self.quantise is None:
            return y
        s, steps = self.quantise
        return torch.round(torch.clamp(y, -s, s) / s * steps) * s / steps

    def _output(self, name, module, rows_layout, x, out):
        old = self.subspaces[name].old
        if self.form == "input" and old.shape[0] and torch.is_grad_enabled():
            xp = self._q(x @ old.t()) @ old
            return _ResidualWeightGrad.apply(out, module.weight, xp, rows_layout)
        return None

    def _hebbian(self, sub: _Subspace, x: torch.Tensor, eta: float) -> None:
        """``hebb_iters`` momentum steps of Oja's subspace rule on the new rows (module docstring)."""
        new, m = sub.new, sub.momentum
        residual = x - self._q(x @ sub.old.t()) @ sub.old  # the old rows' part, fixed within the batch
        for _ in range(self.hebb_iters):
            y = self._q(x @ new.t())
            dh = torch.clamp(y.t() @ (residual - y @ new) / x.shape[0], -self.clamp, self.clamp)
            m = self.momentum * m + (1 - self.momentum) * dh
            new = new + eta * m
        sub.new, sub.momentum = new, m

    def _grow(self, sub: _Subspace, task: int, layer: int, name: str) -> None:
        """Default rows: add rows to the new block up to what the energy criterion asks for so far."""
        lam, _, held, total = energy(sub.old, sub.moment)
        missing = energy_count(lam, held, total, self._threshold(task, layer, name)) - sub.new.shape[0]
        if missing <= 0:
            return
        span = extend(sub.old.double(), sub.new)
        add = random_rows(span, missing, seeded(self.seed, task, layer, sub.batches)).to(sub.new)
        sub.new = torch.cat([sub.new, add])
        sub.momentum = torch.cat([sub.momentum, torch.zeros_like(add)])
        sub.counts[-1] = sub.new.shape[0]

    # -- hooks -------------------------------------------------------------------------------
    def before_training(self, runner) -> None:
        if self.form == "input" and not getattr(getattr(runner, "learning", None), "autograd", True):
            raise NeurosimError("HLOP with form='input' projects autograd's weight gradient, which a local "
                                "learning rule does not produce: use HLOP(form='gradient')")
        self._attach(runner.network)
        scenario = getattr(runner, "scenario", None)
        if scenario is not None and self.rows_per_task is not None:
            for layer, (name, (_, rows)) in enumerate(self._targets.items()):
                total = sum(self.rows(t, layer) for t in range(len(scenario)))
                if total > rows.dim:
                    raise NeurosimError(f"HLOP: rows_per_task adds {total} rows to projection {name!r} over "
                                        f"{len(scenario)} tasks, more than its activity dimension {rows.dim}")

    def before_task(self, runner, task: int) -> None:
        super().before_task(runner, task)
        if self.current == task:
            return  # resumed inside this task: its rows exist already
        for layer, (name, (_, rows)) in enumerate(self._targets.items()):
            sub = self.subspaces[name]
            n = 0
            if self.rows_per_task is not None:
                n = self.rows(task, layer)
                if sub.old.shape[0] + n > rows.dim:
                    raise NeurosimError(f"HLOP: task {task} would give projection {name!r} {sub.old.shape[0] + n} "
                                        f"rows, more than its activity dimension {rows.dim}")
            else:
                sub.moment = torch.zeros(rows.dim, rows.dim, dtype=torch.float64)
            sub.new = random_rows(sub.old, n, seeded(self.seed, task, layer)).to(sub.old)
            sub.momentum = torch.zeros_like(sub.new)
            sub.batches = 0
            sub.counts.append(n)
        self.current = task

    def after_forward(self, runner, outputs) -> None:
        self._active = False
        for layer, (name, x) in enumerate(self._captured_batch(runner).items()):
            sub = self.subspaces[name]
            with torch.no_grad():
                if sub.moment is not None:
                    sub.moment += (x.t() @ x).double()
                    sub.batches += 1
                    if sub.batches & (sub.batches - 1) == 0:  # 1, 2, 4, 8, ...
                        self._grow(sub, self.current, layer, name)
                if sub.new.shape[0]:
                    self._hebbian(sub, x, self._eta(name))

    def after_backward(self, runner) -> None:
        if self.form == "gradient":
            super().after_backward(runner)

    def after_task(self, runner, task: int) -> None:
        for layer, name in enumerate(self._targets):
            sub = self.subspaces[name]
            merged = extend(sub.old, sub.new)
            new = merged[sub.old.shape[0]:].double()
            if sub.moment is not None and new.shape[0]:
                lam, _, held, total = energy(sub.old, sub.moment)
                k = energy_count(lam, held, total, self._threshold(task, layer, name))
                if k < new.shape[0]:
                    w, v = torch.linalg.eigh(new @ sub.moment @ new.t())
                    new = v[:, torch.argsort(w, descending=True)[:k]].t() @ new
                    merged = extend(sub.old, new)
            sub.old = merged
            if sub.counts:
                sub.counts[-1] = sub.old.shape[0] - sum(sub.counts[:-1])
            sub.new = sub.old.new_zeros(0, sub.old.shape[1])
            sub.momentum = sub.new.clone()
            sub.moment, sub.batches = None, 0
        self.current = -1

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"current": self.current,
                "subspaces": {name: {"old": s.old.clone(), "new": s.new.clone(), "momentum": s.momentum.clone(),
                                     "counts": list(s.counts), "batches": s.batches,
                                     "moment": None if s.moment is None else s.moment.clone()}
                              for name, s in self.subspaces.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.subspaces = {name: _Subspace(s["old"].clone(), s["new"].clone(), s["momentum"].clone(),
                                          [int(c) for c in s["counts"]],
                                          None if s.get("moment") is None else s["moment"].clone(),
                                          int(s.get("batches", 0)))
                          for name, s in state["subspaces"].items()}
        self.current = int(state["current"])
        if self._network is not None:
            self._check_dims({name: s.old.shape[1] for name, s in self.subspaces.items()})
