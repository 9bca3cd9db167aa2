r"""HLOP: Hebbian learning based orthogonal projection (Xiao et al., ICLR 2024).

Every protected projection with weight :math:`W` gets lateral "subspace neurons" whose weights are
the rows of :math:`H` (:math:`k \times n`). Its presynaptic activity :math:`X` has one row per
time step and sample (:math:`N = T B` rows of length :math:`n = n_{in}`); for a convolution one
row per im2col patch (``F.unfold``), :math:`n = C_{in} k_h k_w`, one subspace per layer. For a
delayed projection the rows are the delivered activity :math:`x_j[t - d_{ij}]` of a few sampled
postsynaptic neurons :math:`i` per batch (rounded delays; gradient form only).

**Subspace learning** (Oja's subspace rule, Hebbian plus anti-Hebbian), on every training batch
after the forward pass, repeated ``hebb_iters`` times:

.. math::

    Y = q(X H^T), \qquad
    \Delta H = \mathrm{clip}\big(\tfrac{1}{N} Y^T (X - Y H),\, -c,\, c\big), \qquad
    M \leftarrow \mu M + (1 - \mu) \Delta H, \qquad
    H \leftarrow H + \eta_H M

with :math:`c` = ``clamp``, :math:`\mu` = ``momentum`` and :math:`\eta_H` = ``lr_hebb`` (constant).
With ``rates=tau`` (ms), :math:`X` is instead the weighted firing rate of each sample's activity,
:math:`\hat x = \sum_t w_t x_t / \sum_t w_t` with :math:`w_t = e^{-(T - t)\,dt/\tau}` (one row per
sample; the representation DSR training uses), while the projection below still acts per step.
:math:`q` is the identity, or with ``quantise=(s, T_h)`` the spiking lateral neurons
:math:`q(y) = \mathrm{round}(\mathrm{clip}(y, -s, s) / s \cdot T_h)\, s / T_h`.
:math:`H = [H_{old}; H_{new}]`: at the start of task :math:`t`, ``rows_per_task`` new rows are
drawn orthonormal (with zero momentum); :math:`Y` and the reconstruction :math:`Y H` use all rows
but only :math:`H_{new}` learns; at the end of the task :math:`H_{new}` is appended to
:math:`H_{old}` (no re-orthonormalisation).

**Projection**, from task 1 on and with :math:`H_{old}` only (task 0 has none; rows being learnt
never project). The forward pass keeps the raw :math:`x`; the weight learns from the residual
:math:`\tilde x = x - H_{old}^T q(H_{old} x)`:

- ``form="input"``: a custom autograd function makes the weight gradient
  :math:`\sum_{rows} g\, \tilde x^T` (:math:`g` the gradient at the projection's output), every
  other gradient (input, bias) unchanged;
- ``form="gradient"``: after the backward pass,
  :math:`G \leftarrow G - (G H_{old}^T) H_{old}` with :math:`G = \partial L / \partial W`
  reshaped to out :math:`\times` fan-in (cheaper for convolutions; linear :math:`q` only;
  computed as :math:`G P` with :math:`P = I - H_{old}^T H_{old}` formed once per task when the
  old block has more rows than half the fan-in). It
  filters whatever is in ``.grad``, including updates that local learning rules deposit there.

Without quantisation both give the same gradient, and an SGD step leaves :math:`W x` unchanged on
old activity up to the subspace's accuracy. No weight decay and no Adam (per-coordinate scaling
breaks the guarantee); SGD momentum is safe because the runner rebuilds the optimiser every task.

**Freezing** (``freeze_after_first_task``), from task 1 on: modules with running statistics
(batch normalisation) stay in eval mode and, like neuron populations (thresholds, time constants),
stop learning, as do the positions of delayed projections (a moved delay changes old outputs and
cannot be projected); every other 1-D parameter (biases, norm affines; not projection weights, which are
1-D in Sparse) leaves the optimiser. All of this
is done by ``requires_grad = False`` in ``before_task``, which runs before the runner builds the
optimiser from the parameters that require gradients; a hand-written loop must build its
optimiser after ``before_task`` too.

**What it acts on**: by default every projection of the network whose weight is trained (frozen
ones have nothing to forget). Dense
and Delayed (without mask or Dale's law) and Conv2d are supported, also inside a
:class:`~neurosim.projections.Chain` (whose batch norm then freezes like any other). Sparse projections and masked or
sign-constrained Dense ones are refused: a projected update restricted to existing synapses, or
passed through ``|W|``, is no longer orthogonal to the protected subspace. Refused projections are
skipped with a warning when found by default and raise when named in ``projections``; a named
projection whose weight is frozen raises too.
"""
from __future__ import annotations

import operator
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.nn import functional as F

from neurosim.errors import NeurosimError, check_choice, check_positive
from neurosim.neurons import weighted_rate
from neurosim.plugin import Plugin, freeze_all_but_weights
from neurosim.projections import Chain, Conv2d, Delayed, Dense, Sparse

FORMS = ("input", "gradient")


class _DenseRows:
    """Dense: activity rows are the inputs themselves, ``[..., n_in] -> [N, n_in]``."""

    def __init__(self, proj: Dense):
        self.dim, self.n_out = proj.n_in, proj.n_out

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.dim)

    def out_rows(self, g: torch.Tensor) -> torch.Tensor:
        return g.reshape(-1, self.n_out)


class _ConvRows:
    """Conv2d: one row per im2col patch, ``[..., C*H*W] -> [N * L, C*kh*kw]``, and output gradients
    ``[..., O*Ho*Wo] -> [N * L, O]`` in the same (sample, location) order."""

    def __init__(self, proj: Conv2d):
        self.in_shape, self.channels = proj.in_shape, proj.out_shape[0]
        self.locations = proj.out_shape[1] * proj.out_shape[2]
        self.kernel, self.stride, self.padding = tuple(proj.weight.shape[2:]), proj.stride, proj.padding
        self.dim = proj.weight[0].numel()

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        patches = F.unfold(x.reshape(-1, *self.in_shape), self.kernel, padding=self.padding, stride=self.stride)
        return patches.transpose(1, 2).reshape(-1, self.dim)

    def out_rows(self, g: torch.Tensor) -> torch.Tensor:
        return g.reshape(-1, self.channels, self.locations).transpose(1, 2).reshape(-1, self.channels)


class _DelayedRows(_DenseRows):
    r"""Delayed: the activity that reaches the synapses. Postsynaptic neuron :math:`i` sees
    :math:`\tilde x_i[t]_j = x_j[t - d_{ij}]` (rounded delays), its own shifted copy of the input, and
    its weight gradient is :math:`\sum_t \delta_i[t] \tilde x_i[t]`. Each batch takes ``samples``
    postsynaptic neurons in turn (from ``offset``, the runner's step) and learns from all their
    delivered sequences, so the subspace grows to span what every neuron receives."""

    def __init__(self, proj: Delayed, samples: int):
        super().__init__(proj)
        self.proj, self.samples, self.offset = proj, min(samples, proj.n_out), 0

    def sequence(self, x: torch.Tensor) -> torch.Tensor:
        """``[T, B, n_in]`` -> ``[T, samples * B, n_in]``, the sampled neurons' delivered inputs."""
        T, B, n = x.shape
        D = self.proj.max_delay
        neurons = (self.offset * self.samples + torch.arange(self.samples)) % self.n_out
        d = self.proj.rounded_delays()[neurons].to(x.device)
        t = torch.arange(T, device=x.device).view(T, 1, 1) + D - d  # [T, samples, n_in] into x padded by D
        seq = F.pad(x, (0, 0, 0, 0, D, 0))[t, :, torch.arange(n, device=x.device)]  # [T, samples, n_in, B]
        return seq.permute(0, 1, 3, 2).reshape(T, self.samples * B, n)


def _layout(proj, delay_samples: int = 4):
    """Row layout of a supported projection, or the reason HLOP cannot act on it."""
    if isinstance(proj, Delayed):
        if proj.mask is not None or proj.signs is not None:
            return "its mask or Dale's law constrains the update, so a projected update is no longer " \
                   "orthogonal to the protected subspace"
        return _DelayedRows(proj, delay_samples)
    if isinstance(proj, Dense):
        if proj.mask is not None:
            return "its connectivity mask restricts updates to existing synapses, so a projected update is no " \
                   "longer orthogonal to the protected subspace"
        if proj.signs is not None:
            return "under Dale's law its effective weight is |W| times signs, so a projected update of W does " \
                   "not leave W_eff x unchanged"
        return _DenseRows(proj)
    if isinstance(proj, Conv2d):
        return _ConvRows(proj)
    if isinstance(proj, Sparse):
        return "it is Sparse: restricting the projected dense update to existing synapses breaks its " \
               "orthogonality to the protected subspace"
    return f"HLOP supports Dense, Conv2d and Delayed projections, not {type(proj).__name__}"


def _frozen(proj) -> str:
    """Why ``proj``'s weight does not learn, or ``""`` if it does."""
    weight = getattr(proj, "weight", None)
    if weight is None:
        return "it has no weight"
    if not getattr(proj, "learnable", True):
        return "its weight is frozen (learnable=False)"
    if not weight.requires_grad:
        return "its weight is frozen (requires_grad=False)"
    return ""


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
    """One protected projection: merged rows ``old``, rows learnt in the current task ``new``,
    their momentum, and how many rows each task added."""

    old: torch.Tensor
    new: torch.Tensor
    momentum: torch.Tensor
    counts: list[int] = field(default_factory=list)
    projector: torch.Tensor | None = None  # I - old^T old, built on first use after each merge


class HLOP(Plugin):
    """``HLOP(rows_per_task, lr_hebb=0.01, hebb_iters=5, momentum=0.9, clamp=10, quantise=None,
    form="input", rates=None, projections=None, freeze_after_first_task=True, seed=0, delay_samples=4)``;
    see the module docstring.

    ``rows_per_task``: rows added per task and layer, as one int, a list indexed by task whose
    entries are an int or a list indexed by layer, or ``f(task, layer) -> int``. Layers are the
    protected projections in the order of ``projections`` (default: the network's connection order).
    ``lr_hebb``: one number or a dict projection name -> number. ``seed`` fixes the orthogonal
    initialisation of each new block (drawn from ``(seed, task, layer)``). ``delay_samples``: how many
    postsynaptic neurons of a :class:`~neurosim.projections.Delayed` projection lend their delivered
    inputs to each batch's Hebbian update.
    """

    name = "hlop"

    def __init__(self, rows_per_task, lr_hebb: float | dict[str, float] = 0.01, hebb_iters: int = 5,
                 momentum: float = 0.9, clamp: float = 10.0, quantise: tuple[float, float] | None = None,
                 form: str = "input", rates: float | None = None, projections: list[str] | None = None,
                 freeze_after_first_task: bool = True, seed: int = 0, delay_samples: int = 4):
        if not (callable(rows_per_task) or isinstance(rows_per_task, (int, list, tuple))):
            raise NeurosimError("rows_per_task must be an int, a list or a callable, "
                                f"got {type(rows_per_task).__name__}")
        for v in lr_hebb.values() if isinstance(lr_hebb, dict) else [lr_hebb]:
            check_positive("lr_hebb", v)
        if not isinstance(hebb_iters, int) or hebb_iters < 1:
            raise NeurosimError(f"hebb_iters must be a positive integer, got {hebb_iters!r}")
        if not 0 <= momentum < 1:
            raise NeurosimError(f"momentum must be in [0, 1), got {momentum!r}")
        check_positive("clamp", clamp)
        check_choice("form", form, FORMS)
        if rates is not None:
            check_positive("rates", rates)
        if quantise is not None:
            if len(quantise) != 2:
                raise NeurosimError(f"quantise must be (scale, timesteps), got {quantise!r}")
            check_positive("quantise scale", quantise[0])
            check_positive("quantise timesteps", quantise[1])
            if form == "gradient":
                raise NeurosimError("quantise needs form='input': the quantised lateral response q(H x) is "
                                    "defined on activity, and the gradient form projects G linearly")
        self.rows_per_task, self.lr_hebb, self.hebb_iters = rows_per_task, lr_hebb, hebb_iters
        self.momentum, self.clamp, self.quantise, self.form = float(momentum), float(clamp), quantise, form
        self.rates = rates
        if not isinstance(delay_samples, int) or delay_samples < 1:
            raise NeurosimError(f"delay_samples must be a positive integer, got {delay_samples!r}")
        self.delay_samples = delay_samples
        self.names, self.freeze_after_first_task, self.seed = projections, freeze_after_first_task, seed
        self.subspaces: dict[str, _Subspace] = {}
        self.current = -1  # the task whose rows are in the new blocks, -1 between tasks
        self._network = None
        self._targets: dict = {}
        self._hooks: list = []
        self._active = False
        self._rows: dict[str, list[torch.Tensor]] = {}

    # -- what it acts on ---------------------------------------------------------------------
    def targets(self, network) -> dict:
        """Protected projections by name, with their row layouts (see the module docstring)."""
        found = {}
        names = self.names if self.names is not None else list(network.connections)
        for name in names:
            if name not in network.connections:
                raise NeurosimError(f"HLOP: the network has no projection {name!r}; "
                                    f"known: {', '.join(network.connections)}")
            proj = network.connections[name].projection
            frozen = _frozen(proj)
            if frozen:
                if self.names is not None:
                    raise NeurosimError(f"HLOP cannot act on projection {name!r}: {frozen}, so it has no "
                                        "weight update to project")
                continue
            if isinstance(proj, Chain):  # protect the wrapped projection; it sees the input after dropout
                proj = proj.projection
            layout = _layout(proj, self.delay_samples)
            if isinstance(layout, _DelayedRows) and self.form == "input":
                raise NeurosimError(f"HLOP cannot act on projection {name!r} with form='input': a delayed "
                                    "projection's inputs differ per synapse; use form='gradient'")
            if isinstance(layout, str):
                if self.names is not None:
                    raise NeurosimError(f"HLOP cannot act on projection {name!r}: {layout}")
                warnings.warn(f"HLOP leaves projection {name!r} unprotected: {layout}", stacklevel=2)
                continue
            found[name] = (proj, layout)
        if isinstance(self.lr_hebb, dict):
            for name in sorted(set(found) ^ set(self.lr_hebb)):
                what = "is missing for protected" if name in found else "is given for unprotected"
                raise NeurosimError(f"HLOP: lr_hebb {what} projection {name!r}")
        return found

    def rows(self, task: int, layer: int) -> int:
        """Rows added to ``layer`` at the start of ``task``."""
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

    def _attach(self, network) -> None:
        if self._network is network:
            return
        self._detach()
        self._targets = self.targets(network)
        if not self._targets:
            raise NeurosimError("HLOP found no projection to protect: no Dense or Conv2d projection is trained")
        if not self.subspaces:
            for name, (proj, layout) in self._targets.items():
                empty = proj.weight.new_zeros(0, layout.dim)
                self.subspaces[name] = _Subspace(empty, empty.clone(), empty.clone())
        self._check()
        for name, (proj, layout) in self._targets.items():
            self._hooks.append(proj.register_forward_hook(self._hook(name, layout)))
        self._network = network

    def _check(self) -> None:
        """The subspaces match the protected projections (names and activity dimensions)."""
        if set(self.subspaces) != set(self._targets):
            raise NeurosimError(f"HLOP holds subspaces for {sorted(self.subspaces)} but the network's protected "
                                f"projections are {sorted(self._targets)}")
        for name, sub in self.subspaces.items():
            dim = self._targets[name][1].dim
            if sub.old.shape[1] != dim:
                raise NeurosimError(f"HLOP's subspace for projection {name!r} has dimension {sub.old.shape[1]}, "
                                    f"but its activity has {dim}")

    def _detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._network, self._active = [], None, False

    # -- activity and projection -------------------------------------------------------------
    def _q(self, y: torch.Tensor) -> torch.Tensor:
        if self.quantise is None:
            return y
        s, steps = self.quantise
        return torch.round(torch.clamp(y, -s, s) / s * steps) * s / steps

    def _hook(self, name: str, layout):
        def hook(module, args, out):
            if not self._active or self._targets[name][0] is not module:  # e.g. a copy of the network
                return None
            raw = args[0].detach().to(module.weight.dtype)
            if isinstance(layout, _DelayedRows):
                raw = layout.sequence(raw)
            x = layout.rows(raw)
            self._rows[name].append(raw if self.rates else x)
            old = self.subspaces[name].old
            if self.form == "input" and old.shape[0] and torch.is_grad_enabled():
                xp = self._q(x @ old.t()) @ old
                return _ResidualWeightGrad.apply(out, module.weight, xp, layout)
            return None
        return hook

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

    # -- hooks -------------------------------------------------------------------------------
    def before_training(self, runner) -> None:
        if self.form == "input" and not getattr(getattr(runner, "learning", None), "autograd", True):
            raise NeurosimError("HLOP with form='input' projects autograd's weight gradient, which a local "
                                "learning rule does not produce: use HLOP(form='gradient')")
        self._attach(runner.network)
        scenario = getattr(runner, "scenario", None)
        if scenario is not None:
            for layer, (name, (_, layout)) in enumerate(self._targets.items()):
                total = sum(self.rows(t, layer) for t in range(len(scenario)))
                if total > layout.dim:
                    raise NeurosimError(f"HLOP: rows_per_task adds {total} rows to projection {name!r} over "
                                        f"{len(scenario)} tasks, more than its activity dimension {layout.dim}")

    def before_task(self, runner, task: int) -> None:
        self._attach(runner.network)
        if task > 0 and self.freeze_after_first_task:
            self._freeze(runner.network)
        if self.current == task:
            return  # resumed inside this task: its rows exist already
        for layer, (name, (_, layout)) in enumerate(self._targets.items()):
            sub = self.subspaces[name]
            n = self.rows(task, layer)
            if sub.old.shape[0] + n > layout.dim:
                raise NeurosimError(f"HLOP: task {task} would give projection {name!r} {sub.old.shape[0] + n} "
                                    f"rows, more than its activity dimension {layout.dim}")
            seed = int(np.random.SeedSequence([self.seed, task, layer]).generate_state(1)[0])
            new = torch.empty(n, layout.dim, dtype=torch.float64)
            sub.new = torch.nn.init.orthogonal_(new, generator=torch.Generator().manual_seed(seed)).to(sub.old)
            sub.momentum = torch.zeros_like(sub.new)
            sub.counts.append(n)
        self.current = task

    def before_batch(self, runner) -> None:
        self._attach(runner.network)
        for _, layout in self._targets.values():
            if isinstance(layout, _DelayedRows):
                layout.offset = getattr(runner, "step", 0)
        if self.freeze_after_first_task and self.current > 0:
            self._freeze(runner.network)
        self._rows = {name: [] for name in self._targets}
        self._active = True

    def after_forward(self, runner, outputs) -> None:
        self._active = False
        for name in self._targets:
            chunks = self._rows.pop(name, [])
            if not chunks:
                raise NeurosimError(f"HLOP saw no presynaptic activity of projection {name!r} in this batch: the "
                                    "forward ran without calling it (event-driven or compiled run without "
                                    "gradients); enable gradients or set network.compiled = False")
            sub = self.subspaces[name]
            if sub.new.shape[0]:
                with torch.no_grad():
                    self._hebbian(sub, self._activity(name, chunks, runner.network.dt), self._eta(name))

    def _activity(self, name: str, chunks: list[torch.Tensor], dt: float) -> torch.Tensor:
        """The rows :math:`X` of one batch: per step, or weighted firing rates with ``rates``."""
        layout = self._targets[name][1]
        if not self.rates:
            return torch.cat(chunks)
        seq = torch.cat(chunks) if chunks[0].dim() == 3 else torch.stack(chunks)  # [T, B, n] or T of [B, n]
        return layout.rows(weighted_rate(seq, self.rates, dt))

    def after_backward(self, runner) -> None:
        if self.form != "gradient":
            return
        with torch.no_grad():
            for name, (proj, _) in self._targets.items():
                sub = self.subspaces[name]
                if sub.old.shape[0] and proj.weight.grad is not None:
                    g = proj.weight.grad.view(proj.weight.shape[0], -1)
                    if 2 * sub.old.shape[0] > sub.old.shape[1]:  # G P is cheaper than G - (G H^T) H
                        if sub.projector is None:
                            sub.projector = torch.eye(sub.old.shape[1], dtype=sub.old.dtype) - sub.old.t() @ sub.old
                        g.copy_(g @ sub.projector)
                    else:
                        g -= (g @ sub.old.t()) @ sub.old

    def after_task(self, runner, task: int) -> None:
        for sub in self.subspaces.values():
            sub.old = torch.cat([sub.old, sub.new])
            sub.projector = None
            sub.new = sub.old.new_zeros(0, sub.old.shape[1])
            sub.momentum = sub.new.clone()
        self.current = -1

    def after_training(self, runner) -> None:
        self._detach()

    def _freeze(self, network) -> None:
        freeze_all_but_weights(network)

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"current": self.current,
                "subspaces": {name: {"old": s.old.clone(), "new": s.new.clone(), "momentum": s.momentum.clone(),
                                     "counts": list(s.counts)} for name, s in self.subspaces.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.subspaces = {name: _Subspace(s["old"].clone(), s["new"].clone(), s["momentum"].clone(),
                                          [int(c) for c in s["counts"]]) for name, s in state["subspaces"].items()}
        self.current = int(state["current"])
        if self._network is not None:
            self._check()
