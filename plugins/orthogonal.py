r"""Orthogonal projection of weight updates, shared by :mod:`~neurosim.plugins.hlop` (a basis learnt
by Hebbian lateral neurons) and :mod:`~neurosim.plugins.gpm` (a basis computed by SVD).

**Activity rows.** A protected projection of fan-in :math:`n` sees its presynaptic activity as rows
:math:`x` of length :math:`n`: the input itself for Dense and Sparse (one row per time step and
sample, :math:`N = T B` rows); one row per im2col patch (``F.unfold``) for a convolution,
:math:`n = C_{in} k_h k_w`, one basis per layer; for a Delayed projection the delivered activity
:math:`x_j[t - d_{ij}]` of a few sampled postsynaptic neurons :math:`i` per batch (rounded delays).
With ``rates=tau`` (ms) the rows are instead each sample's weighted firing rate
:math:`\hat x = \sum_t w_t x_t / \sum_t w_t`, :math:`w_t = e^{-(T - t)\,dt/\tau}` (the representation
DSR training uses).

**Basis.** Each protected projection keeps :math:`B` (:math:`k \times n`) whose rows are orthonormal
and span its old tasks' activity. Directions enter only through :func:`extend`: candidate rows are
scaled to unit length, projected off :math:`B` twice (:math:`R \leftarrow R - (R B^T) B`) and
replaced by the right singular vectors of the remainder whose singular value is at least
:data:`COLLAPSE` (rows that collapsed into the old span or onto each other are dropped). :math:`B`
thus stays orthonormal to rounding, :math:`I - B^T B` is an orthogonal projection (norm at most 1),
and a projected gradient is never longer than the raw one.

**Energy criterion** (Saha et al., ICLR 2021, Eq. 5 and 9). With :math:`C = \sum_{rows} x x^T` the
second moment of a task's activity, the old basis holds :math:`E_{old} = \mathrm{tr}(B C B^T)` of its
energy :math:`E = \mathrm{tr}(C)`. The residual :math:`C_r = (I - B^T B) C (I - B^T B)` has eigenpairs
:math:`(\lambda_i, u_i)`, :math:`\lambda` decreasing; the new directions are :math:`u_1 \dots u_k`
for the smallest :math:`k` with :math:`E_{old} + \sum_{i \le k} \lambda_i \ge \varepsilon E` (none if
:math:`E_{old} \ge \varepsilon E`). This is GPM's criterion on the representation matrix
:math:`R` (:math:`C = R R^T`; :math:`C_r = \hat R \hat R^T` with :math:`\hat R = R - B^T B R`).

**Projection of the update**, after the backward pass, on :math:`G = \partial L / \partial W`
reshaped to out :math:`\times n`:

- every weight learns (Dense, Conv2d, Delayed without mask or Dale's law):
  :math:`G \leftarrow G - (G B^T) B` (as :math:`G P`, :math:`P = I - B^T B` formed once per basis,
  when :math:`B` has more rows than :math:`n/2`), so :math:`\Delta W x = 0` for :math:`x` in the span;
- updates only on existing synapses (Sparse; Dense and Delayed with a ``mask``): row :math:`i` with
  synapse set :math:`S_i` changes its output by :math:`\Delta w_i[S_i] \cdot x[S_i]`, and old
  activity seen through :math:`S_i` spans the row space of :math:`B[:, S_i]`. With :math:`Q_i` an
  orthonormal basis of that space (right singular vectors of :math:`B[:, S_i]` with singular value
  above :data:`RANK_TOL`), :math:`g_i[S_i] \leftarrow g_i[S_i] - (g_i[S_i] Q_i^T) Q_i`: the row's
  output on old activity does not move. The :math:`Q_i` are computed once per basis by batched
  SVDs (about :math:`k |S_i|^2` operations per distinct synapse set), shared by rows with the same
  synapse set; where :math:`\mathrm{rank}_i > |S_i| / 2` the row keeps an orthonormal basis
  :math:`Q_i^\perp` of the complement within its synapses instead and
  :math:`g_i[S_i] \leftarrow (g_i[S_i] Q_i^{\perp T}) Q_i^\perp`, so they hold
  :math:`\sum_i \min(\mathrm{rank}_i, |S_i| - \mathrm{rank}_i) |S_i|` numbers. A row whose synapses
  see nothing but old activity (:math:`\mathrm{rank}_i = |S_i|`, typically once the basis has as many
  rows as the row has synapses) stops learning;
- Dale's law (:math:`W_{eff} = |W| s_j`, masked or Sparse too): an SGD step moves :math:`W_{eff}`
  by :math:`\mathrm{sign}(W) s_j \Delta W`, so the gradient of the effective weight,
  :math:`G_{eff} = G\, \mathrm{sign}(W) s_j`, is projected as above on the synapses with
  :math:`W \ne 0` (the only ones that move) and mapped back, :math:`G \leftarrow G_{eff}'\,
  \mathrm{sign}(W) s_j`. The effective update is orthogonal to old activity exactly while no weight
  crosses zero within a step (:math:`|W|` reflects there).

Without weight decay or Adam (per-coordinate scaling breaks the guarantee) an SGD step then leaves
old outputs unchanged, as far as the basis holds the old activity.

**Task-incremental heads.** In a task-incremental scenario (each task scored on its own classes,
the others masked) the output population's neurons of classes that no earlier task had are never
read on an old task, so the rows of the Dense, Sparse or Delayed projections into the output that
feed them are free: their updates are not projected (as GPM's and HLOP's authors keep one
unprojected head per task; HLOP's input form projects them all the same). Rows of classes an
earlier task had are projected as every other weight.

**Freezing** (``freeze_after_first_task``), from task 1 on: modules with running statistics (batch
normalisation) stay in eval mode and, like neuron populations (thresholds, time constants), stop
learning, as do the positions of delayed projections (a moved delay changes old outputs and cannot
be projected); every other 1-D parameter (biases, norm affines; not projection weights, which are
1-D in Sparse) leaves the optimiser. All of it is ``requires_grad = False`` in ``before_task``,
which runs before the runner builds the optimiser; a hand-written loop must build its optimiser
after ``before_task`` too.

**What is protected**: by default every projection of the network whose weight is trained (frozen
ones have nothing to forget): Dense, Sparse, Conv2d and Delayed, masked or under Dale's law, also
inside a :class:`~neurosim.projections.Chain`. Others are skipped with a warning when found by
default and refused when named in ``projections``; a named projection whose weight is frozen is
refused too.
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch.nn import functional as F

from neurosim.continual import distributed
from neurosim.errors import NeurosimError, check_positive
from neurosim.neurons import Population, weighted_rate
from neurosim.continual.plugin import Plugin
from neurosim.projections import Chain, Conv2d, Delayed, Dense, Sparse

#: Singular value below which a merged candidate direction counts as collapsed (rows have unit length).
COLLAPSE = 1e-2
#: Singular value of a row's restricted basis below which the direction is numerically absent.
RANK_TOL = 1e-9
#: Largest number of elements of one batched block (SVD inputs, gathered row bases).
BLOCK = 1 << 22


# -- activity rows -----------------------------------------------------------------------------
class DenseRows:
    """Dense, Sparse: activity rows are the inputs themselves, ``[..., n_in] -> [N, n_in]``."""

    def __init__(self, proj):
        self.dim, self.n_out = proj.n_in, proj.n_out

    def rows(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, self.dim)

    def out_rows(self, g: torch.Tensor) -> torch.Tensor:
        return g.reshape(-1, self.n_out)


class ConvRows:
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


class DelayedRows(DenseRows):
    r"""Delayed: the activity that reaches the synapses. Postsynaptic neuron :math:`i` sees
    :math:`\tilde x_i[t]_j = x_j[t - d_{ij}]` (rounded delays), its own shifted copy of the input, and
    its weight gradient is :math:`\sum_t \delta_i[t] \tilde x_i[t]`. Each batch takes ``samples``
    postsynaptic neurons in turn (from ``offset``, the runner's step), so the basis grows to span
    what every neuron receives."""

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


def layout(proj, delay_samples: int = 4):
    """Row layout of a supported projection, or the reason it cannot be protected."""
    if isinstance(proj, Delayed):
        return DelayedRows(proj, delay_samples)
    if isinstance(proj, (Dense, Sparse)):
        return DenseRows(proj)
    if isinstance(proj, Conv2d):
        return ConvRows(proj)
    return f"only Dense, Sparse, Conv2d and Delayed projections are supported, not {type(proj).__name__}"


def constrained(proj) -> bool:
    """Whether updates of ``proj`` live on existing synapses or pass through Dale's signs."""
    return isinstance(proj, Sparse) or getattr(proj, "mask", None) is not None \
        or getattr(proj, "signs", None) is not None


def frozen(proj) -> str:
    """Why ``proj``'s weight does not learn, or ``""`` if it does."""
    weight = getattr(proj, "weight", None)
    if weight is None:
        return "it has no weight"
    if not getattr(proj, "learnable", True):
        return "its weight is frozen (learnable=False)"
    if not weight.requires_grad:
        return "its weight is frozen (requires_grad=False)"
    return ""


def rates_or_rows(layout_, chunks: list[torch.Tensor], rates: float | None, dt: float) -> torch.Tensor:
    """The activity rows of one forward pass from the captured chunks: per step, or, with ``rates``,
    each sample's weighted firing rate (chunks are then whole sequences ``[T, B, n]`` or steps ``[B, n]``)."""
    if not rates:
        return torch.cat(chunks)
    seq = torch.cat(chunks) if chunks[0].dim() == 3 else torch.stack(chunks)
    return layout_.rows(weighted_rate(seq, rates, dt))


# -- bases ---------------------------------------------------------------------------------------
def extend(basis: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``basis`` (orthonormal rows) followed by an orthonormal basis of what ``rows`` add to its span
    (module docstring); computed in float64, returned in ``basis``'s dtype."""
    b = basis.double()
    r = rows.double()
    norms = r.norm(dim=1, keepdim=True)
    r = r[norms[:, 0] > 0] / norms[norms[:, 0] > 0]
    if r.shape[0] == 0:
        return basis.clone()
    for _ in range(2):  # twice is enough for orthogonality to rounding
        r = r - (r @ b.t()) @ b
    _, s, vh = torch.linalg.svd(r, full_matrices=False)
    new = vh[s >= COLLAPSE]
    for _ in range(2):
        new = new - (new @ b.t()) @ b
    new = torch.linalg.qr(new.t())[0].t() if new.shape[0] else new
    return torch.cat([b, new]).to(basis.dtype)


def energy(basis: torch.Tensor, moment: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    """Eigenvalues (decreasing) and eigenvectors (rows) of the residual second moment, the energy
    the basis holds and the total energy (module docstring)."""
    c = moment.double()
    total = float(torch.trace(c))
    b = basis.double()
    held = float(((b @ c) * b).sum())
    r = torch.eye(c.shape[0], dtype=c.dtype) - b.t() @ b
    cr = r @ c @ r
    lam, u = torch.linalg.eigh((cr + cr.t()) / 2)
    return lam.flip(0).clamp(min=0), u.flip(1).t(), held, total


def energy_count(lam: torch.Tensor, held: float, total: float, threshold: float) -> int:
    """The smallest ``k`` with ``held + lam[:k].sum() >= threshold * total`` (at most the number of
    positive eigenvalues)."""
    if total <= 0 or held >= threshold * total:
        return 0
    cum = held + torch.cumsum(lam, 0)
    reached = torch.nonzero(cum >= threshold * total)
    k = int(reached[0]) + 1 if reached.numel() else lam.shape[0]
    return min(k, int((lam > 0).sum()))


def energy_directions(basis: torch.Tensor, moment: torch.Tensor, threshold: float) -> torch.Tensor:
    """The new directions (rows, float64) the energy criterion adds to ``basis`` for activity of
    second moment ``moment``."""
    lam, u, held, total = energy(basis, moment)
    return u[:energy_count(lam, held, total, threshold)]


def layer_value(what: str, value, task: int, layer: int, name: str, low: float = 0.0, high: float = 1.0) -> float:
    """A per-layer setting: one number, a list indexed by layer, a dict by projection name or
    ``f(task, layer)``; checked to lie in ``(low, high]``."""
    if callable(value):
        v = value(task, layer)
    elif isinstance(value, dict):
        if name not in value:
            raise NeurosimError(f"{what} gives no value for projection {name!r}")
        v = value[name]
    elif isinstance(value, (list, tuple)):
        if layer >= len(value):
            raise NeurosimError(f"{what} lists {len(value)} layers, none for layer {layer} ({name!r})")
        v = value[layer]
    else:
        v = value
    if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not low < v <= high:
        raise NeurosimError(f"{what} for projection {name!r} must be a number in ({low:g}, {high:g}], got {v!r}")
    return float(v)


def check_layer_values(what: str, value) -> None:
    """Reject a per-layer setting of the wrong type at construction (values are checked when used)."""
    if not (callable(value) or isinstance(value, (int, float, list, tuple, dict))) or isinstance(value, bool):
        raise NeurosimError(f"{what} must be a number, a list per layer, a dict per projection or "
                            f"f(task, layer), got {type(value).__name__}")


# -- projection of the update -------------------------------------------------------------------
class _RowBases:
    """Orthonormal bases :math:`Q_i` of a basis restricted to each row's synapses (module docstring).
    Synapses are given as ``post``, ``pre`` index arrays; :meth:`project` takes and returns values
    per synapse in that order. A synapse set whose restricted basis has rank above half its size
    keeps the complement's basis instead, and its rows are projected onto the complement."""

    def __init__(self, basis: torch.Tensor, post: torch.Tensor, pre: torch.Tensor, n_out: int, dtype):
        k, n = basis.shape
        order = torch.argsort(post * n + pre)
        post_s, pre_s = post[order], pre[order]
        counts = torch.bincount(post_s, minlength=n_out)
        width = int(counts.max()) if post_s.numel() else 0
        self.order, self.rows, self.n_out, self.width = order, post_s, n_out, width
        self.slots = torch.arange(post_s.numel()) - (torch.cumsum(counts, 0) - counts)[post_s]
        if width == 0:  # no synapse moves: nothing to project
            return
        cols = torch.full((n_out, width), n, dtype=torch.long)  # column n: zero (padding)
        cols[post_s, self.slots] = pre_s
        patterns, self.inverse = torch.unique(cols, dim=0, return_inverse=True)
        ext = torch.cat([basis.double(), basis.new_zeros(k, 1, dtype=torch.float64)], 1)
        chunk = max(1, BLOCK // max(1, max(k, width) * width))
        parts, complement = [], []
        for i in range(0, patterns.shape[0], chunk):
            real = patterns[i:i + chunk] < n  # [u, width]
            a = ext[:, patterns[i:i + chunk]].permute(1, 0, 2)  # [u, k, width], zero on padding
            _, s, vh = torch.linalg.svd(a, full_matrices=False)
            keep = s > RANK_TOL
            q = vh * keep.unsqueeze(-1)  # the range's basis (rows), zero on padding
            comp = 2 * keep.sum(1) > real.sum(1)
            if comp.any():  # the complement within the synapses: eigenvalue 1 of diag(real) - Q^T Q
                some = comp & (keep.sum(1) < real.sum(1))  # (an empty one needs no eigenvectors)
                q = F.pad(q, (0, 0, 0, max(0, width - q.shape[1])))
                q[comp & ~some] = 0
                if some.any():
                    lam, vec = torch.linalg.eigh(torch.diag_embed(real[some].double()) - q[some].mT @ q[some])
                    q[some] = vec.mT * (lam > 0.5).unsqueeze(-1)
            used = q.abs().sum(-1) > 0
            first = torch.sort(used.to(torch.int8), dim=1, descending=True, stable=True).indices
            q = torch.take_along_dim(q, first.unsqueeze(-1), 1)  # used rows first
            parts.append(q[:, :max(1, int(used.sum(1).max()))])
            complement.append(comp)
        rank = max(p.shape[1] for p in parts)
        self.q = torch.cat([F.pad(p, (0, 0, 0, rank - p.shape[1])) for p in parts]).to(dtype)
        self.complement = torch.cat(complement)

    def project(self, values: torch.Tensor) -> torch.Tensor:
        if self.width == 0:
            return values.clone()
        v = values.new_zeros(self.n_out, self.width)
        v[self.rows, self.slots] = values[self.order]
        chunk = max(1, BLOCK // (self.q.shape[1] * self.width))
        for i in range(0, self.n_out, chunk):
            idx = self.inverse[i:i + chunk]
            q = self.q[idx]  # [rows, r, width]
            part = torch.einsum("rk,rkc->rc", torch.einsum("rc,rkc->rk", v[i:i + chunk], q), q)
            v[i:i + chunk] = torch.where(self.complement[idx].unsqueeze(1), part, v[i:i + chunk] - part)
        out = torch.empty_like(values)
        out[self.order] = v[self.rows, self.slots]
        return out


class Projector:
    """Projects one projection's weight gradient off a basis, in place (module docstring); keeps what
    depends only on the basis and the synapses until either changes."""

    def __init__(self, proj):
        self.proj = proj
        self.sparse = isinstance(proj, Sparse)
        self._basis = None
        self._support = None
        self._cache = None

    def _support_of(self) -> torch.Tensor | None:
        """Synapses that move: the mask (all synapses of a Sparse projection), without zero weights under
        Dale's law; None when every entry of a matrix moves."""
        p = self.proj
        w = p.weight.detach()
        if self.sparse:
            return (w != 0) if p.signs is not None else torch.ones_like(w, dtype=torch.bool)
        s = getattr(p, "mask", None)
        if p.signs is not None:
            s = (w != 0) if s is None else s & (w != 0)
        return None if s is None or bool(s.all()) else s

    def __call__(self, basis: torch.Tensor) -> None:
        p = self.proj
        g = p.weight.grad
        if g is None or basis.shape[0] == 0:
            return
        signs = getattr(p, "signs", None)
        sign = None
        if signs is not None:
            sign = torch.sign(p.weight.detach()) * (signs[p.pre] if self.sparse else signs)
            g.mul_(sign)
        support = self._support_of() if constrained(p) else None
        if self._basis is not basis or not _same(self._support, support):
            self._basis, self._support = basis, support
            self._cache = self._build(basis, support)
        if support is None:
            g2 = g.view(g.shape[0], -1)
            if isinstance(self._cache, torch.Tensor):
                g2.copy_(g2 @ self._cache)
            else:
                b = basis.to(g.dtype)
                g2 -= (g2 @ b.t()) @ b
        elif self.sparse:
            g.copy_(self._cache.project(g))
        else:
            post, pre = self._cache[0]
            g[post, pre] = self._cache[1].project(g[post, pre])
        if sign is not None:
            g.mul_(sign)

    def _build(self, basis: torch.Tensor, support):
        p = self.proj
        dtype = p.weight.dtype
        if support is None:
            if 2 * basis.shape[0] > basis.shape[1]:  # G P is cheaper than G - (G B^T) B
                b = basis.double()
                return (torch.eye(b.shape[1], dtype=b.dtype) - b.t() @ b).to(dtype)
            return None
        if self.sparse:
            return _RowBases(basis, p.post[support], p.pre[support], p.n_out, dtype)
        post, pre = torch.nonzero(support, as_tuple=True)
        return (post, pre), _RowBases(basis, post, pre, p.n_out, dtype)


def _same(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.shape == b.shape and torch.equal(a, b)


# -- the plugin base ----------------------------------------------------------------------------
class OrthogonalProjection(Plugin):
    """Base of HLOP and GPM: finds the protected projections, captures their presynaptic activity
    with forward hooks (while ``_active``), freezes what would change old outputs, and projects the
    weight gradients off each projection's basis after the backward pass (module docstring).

    Subclasses keep the bases (:meth:`basis`), set up their own state for the targets
    (:meth:`_setup`) and may return a replacement output from :meth:`_output`."""

    label = "orthogonal projection"
    #: Capture activity on training batches (for a basis learnt during the task).
    capture_training = True

    def __init__(self, projections: list[str] | None, freeze_after_first_task: bool, rates: float | None,
                 delay_samples: int):
        if rates is not None:
            check_positive("rates", rates)
        if isinstance(delay_samples, bool) or not isinstance(delay_samples, int) or delay_samples < 1:
            raise NeurosimError(f"delay_samples must be a positive integer, got {delay_samples!r}")
        self.names, self.freeze_after_first_task = projections, freeze_after_first_task
        self.rates, self.delay_samples = rates, delay_samples
        self._network = None
        self._targets: dict = {}
        self._projectors: dict[str, Projector] = {}
        self._hooks: list = []
        self._active = False
        self._chunks: dict[str, list[torch.Tensor]] = {}
        self.current = -1  # the task being trained, -1 between tasks

    # -- what it acts on ---------------------------------------------------------------------
    def targets(self, network) -> dict:
        """Protected projections by name, with their row layouts (module docstring)."""
        found = {}
        names = self.names if self.names is not None else list(network.connections)
        for name in names:
            if name not in network.connections:
                raise NeurosimError(f"{self.label}: the network has no projection {name!r}; "
                                    f"known: {', '.join(network.connections)}")
            proj = network.connections[name].projection
            reason = frozen(proj)
            if reason:
                if self.names is not None:
                    raise NeurosimError(f"{self.label} cannot act on projection {name!r}: {reason}, so it has no "
                                        "weight update to project")
                continue
            if isinstance(proj, Chain):  # protect the wrapped projection; it sees the input after dropout
                proj = proj.projection
            found_layout = layout(proj, self.delay_samples)
            if not isinstance(found_layout, str) and self._refuse(proj, found_layout):
                raise NeurosimError(f"{self.label} cannot act on projection {name!r}: "
                                    f"{self._refuse(proj, found_layout)}")
            if isinstance(found_layout, str):
                if self.names is not None:
                    raise NeurosimError(f"{self.label} cannot act on projection {name!r}: {found_layout}")
                warnings.warn(f"{self.label} leaves projection {name!r} unprotected: {found_layout}", stacklevel=3)
                continue
            found[name] = (proj, found_layout)
        return found

    def _refuse(self, proj, rows) -> str:
        """Why this plugin's settings cannot protect a supported projection (``""``: they can); such a
        projection is refused even when found by default."""
        return ""

    def basis(self, name: str) -> torch.Tensor:
        """The orthonormal basis (rows) the updates of projection ``name`` are projected off."""
        raise NotImplementedError

    def _setup(self) -> None:
        """Create or check the per-projection state for ``self._targets``."""

    def _attach(self, network) -> None:
        if self._network is network:
            return
        self._detach()
        self._targets = self.targets(network)
        if not self._targets:
            raise NeurosimError(f"{self.label} found no projection to protect: no projection's weight is trained")
        self._setup()
        for name, (proj, rows) in self._targets.items():
            self._hooks.append(proj.register_forward_hook(self._hook(name, rows)))
        self._projectors = {name: Projector(proj) for name, (proj, _) in self._targets.items()}
        self._network = network

    def _detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._network, self._active = [], None, False

    def _check_dims(self, dims: dict[str, int]) -> None:
        """The stored state matches the protected projections (names and activity dimensions)."""
        if set(dims) != set(self._targets):
            raise NeurosimError(f"{self.label} holds bases for {sorted(dims)} but the network's protected "
                                f"projections are {sorted(self._targets)}")
        for name, dim in dims.items():
            if dim != self._targets[name][1].dim:
                raise NeurosimError(f"{self.label}'s basis for projection {name!r} has dimension {dim}, but its "
                                    f"activity has {self._targets[name][1].dim}")

    # -- activity ----------------------------------------------------------------------------
    def _hook(self, name: str, rows_layout):
        def hook(module, args, out):
            if not self._active or self._targets[name][0] is not module:  # e.g. a copy of the network
                return None
            raw = args[0].detach().to(module.weight.dtype)
            if isinstance(rows_layout, DelayedRows):
                raw = rows_layout.sequence(raw)
            x = rows_layout.rows(raw)
            self._chunks[name].append(raw if self.rates else x)
            return self._output(name, module, rows_layout, x, out)
        return hook

    def _output(self, name: str, module, rows_layout, x: torch.Tensor, out: torch.Tensor):
        """A replacement for the projection's output ``out`` (None: keep it)."""
        return None

    def _start_capture(self, step: int) -> None:
        for _, rows_layout in self._targets.values():
            if isinstance(rows_layout, DelayedRows):
                rows_layout.offset = step
        self._chunks = {name: [] for name in self._targets}
        self._active = True

    def _captured(self, name: str, dt: float) -> torch.Tensor:
        """The activity rows of projection ``name`` since :meth:`_start_capture`."""
        chunks = self._chunks.pop(name, [])
        if not chunks:
            raise NeurosimError(f"{self.label} saw no presynaptic activity of projection {name!r}: the forward ran "
                                "without calling it (event-driven or compiled run without gradients); enable "
                                "gradients or set network.compiled = False")
        return rates_or_rows(self._targets[name][1], chunks, self.rates, dt)

    def _captured_batch(self, runner) -> dict[str, torch.Tensor]:
        """Every protected projection's activity rows since :meth:`_start_capture`, of the global batch.
        Under data parallelism a rank captured its shard's rows; all projections' rows are gathered in
        one collective call (:func:`~neurosim.continual.distributed.gather_shards`) into the rows one
        process has for the whole batch, in its order: by time step (and sampled neuron of a Delayed
        projection), then sample, then a convolution's location."""
        rows = {name: self._captured(name, runner.network.dt) for name in self._targets}
        if not distributed.active():
            return rows
        total = runner.global_batch
        local = len(range(total)[distributed.shard(total)])
        by_sample = []  # [samples, rows per sample and time step..., n]
        for name, x in rows.items():
            locations = getattr(self._targets[name][1], "locations", 1)
            if x.shape[0] % (local * locations):
                raise NeurosimError(f"{self.label}: projection {name!r} saw {x.shape[0]} activity rows, not a "
                                    f"multiple of this rank's {local} samples")
            by_sample.append(x.reshape(-1, local, locations, x.shape[1]).transpose(0, 1))
        gathered = distributed.gather_shards(by_sample, total)
        return {name: g.transpose(0, 1).reshape(-1, g.shape[-1]) for name, g in zip(rows, gathered)}

    # -- hooks -------------------------------------------------------------------------------
    def before_task(self, runner, task: int) -> None:
        self._attach(runner.network)
        if task > 0 and self.freeze_after_first_task:
            freeze(runner.network)

    def before_batch(self, runner) -> None:
        self._attach(runner.network)
        if self.freeze_after_first_task and self.current > 0:
            freeze(runner.network)  # also if the model was put back in training mode
        if self.capture_training:
            self._start_capture(getattr(runner, "step", 0))

    def after_backward(self, runner) -> None:
        free = self._free_rows(runner)
        with torch.no_grad():
            for name, project in self._projectors.items():
                grad = project.proj.weight.grad
                keep = free.get(name)
                raw = grad[keep].clone() if keep is not None and grad is not None else None
                project(self.basis(name))
                if raw is not None:
                    grad[keep] = raw

    def _free_rows(self, runner) -> dict[str, torch.Tensor]:
        """In a task-incremental scenario, per protected projection into the output population, which
        entries of its weight belong to outputs (classes) of no earlier task: old tasks' scores never
        read them, so their updates are left unprojected (module docstring)."""
        scenario, output = getattr(runner, "scenario", None), getattr(runner, "output", None)
        task = getattr(runner, "task", 0)
        if scenario is None or not scenario.task_incremental or task <= 0:
            return {}
        seen = {c for t in scenario.tasks[:task] for c in t.classes}
        free = {}
        for name, (proj, _) in self._targets.items():
            if runner.network.connections[name].post != output or isinstance(proj, Conv2d):
                continue
            rows = torch.tensor([i not in seen for i in range(proj.n_out)])
            if rows.any():
                free[name] = rows[proj.post] if isinstance(proj, Sparse) else rows
        return free

    def after_training(self, runner) -> None:
        self._detach()

    def health(self, runner) -> dict[str, float]:
        """Per protected projection, from the singular values s of its basis H: the orthonormality
        error ``max |s^2 - 1|`` (0 for orthonormal rows) and the norm of the update filter
        ``I - H^T H`` (at most 1 for a true projection; above 1 it amplifies)."""
        out = {}
        for name in self._targets:
            basis = self.basis(name).detach()
            if basis.shape[0]:
                gap = (1 - torch.linalg.svdvals(basis.double()) ** 2).abs().max().item()
                out[f"{name}.orthonormality_error"] = gap
                out[f"{name}.projection_norm"] = max(gap, 1.0 if basis.shape[0] < basis.shape[1] else 0.0)
        return out


def freeze(network) -> None:
    """Freeze what an orthogonal projection cannot protect (module docstring)."""
    weights = {id(c.projection.weight) for c in network.connections.values()
               if getattr(c.projection, "weight", None) is not None}
    for module in network.modules():
        if isinstance(module, Delayed) and module.positions is not None:
            module.positions.requires_grad_(False)
        stats = getattr(module, "running_mean", None) is not None
        if stats:
            module.eval()
        if stats or isinstance(module, Population):
            module.requires_grad_(False)
    for p in network.parameters():
        if p.dim() <= 1 and id(p) not in weights:
            p.requires_grad_(False)


def seeded(*key: int) -> torch.Generator:
    """A generator seeded from ``key`` (e.g. seed, task, layer)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([int(k) for k in key]).generate_state(1)[0]))


def random_rows(basis: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` orthonormal rows (float64) orthogonal to ``basis``'s rows (fewer if its complement is smaller)."""
    n = basis.shape[1]
    count = min(count, n - basis.shape[0])
    if count <= 0:
        return basis.new_zeros(0, n, dtype=torch.float64)
    b = basis.double()
    r = torch.randn(count, n, generator=generator, dtype=torch.float64)
    for _ in range(2):
        r = r - (r @ b.t()) @ b
    return torch.linalg.qr(r.t())[0].t()

