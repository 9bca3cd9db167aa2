"""Sparse projection with fixed random connectivity, stored as CSR over presynaptic neurons.

Each pair (post i, pre j) is connected independently with probability ``p`` (optionally no
self-connections). Synapse k runs from ``pre[k]`` to ``post[k]`` with weight ``weight[k]``;
synapses are sorted by presynaptic neuron, and ``indptr[j]:indptr[j+1]`` are those of neuron j,
so a spike of j touches exactly that slice (event-driven propagation).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from ..errors import NeurosimError
from .base import Projection, dale_signs


def random_connectivity(n_in: int, n_out: int, p: float, rng: np.random.Generator,
                        autapses: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(pre, post) int32 index arrays of a Bernoulli(p) connectivity, sorted by pre then post.

    The pairs are numbered ``pre * n_out + post``; the gaps between successive connected pairs
    are geometric(p) and are drawn directly, in chunks, so time and memory grow with the number
    of synapses, not of pairs.
    """
    total = n_in * n_out
    pres, posts = [np.empty(0, np.int32)], [np.empty(0, np.int32)]
    last = -1
    while p > 0 and last < total:
        expected = (total - 1 - last) * p
        flat = last + np.cumsum(rng.geometric(p, int(min(expected + 6 * math.sqrt(expected) + 64, 1 << 24))))
        last = int(flat[-1])
        pre, post = np.divmod(flat[flat < total], n_out)
        if not autapses:
            pre, post = pre[pre != post], post[pre != post]
        pres.append(pre.astype(np.int32))
        posts.append(post.astype(np.int32))
    return np.concatenate(pres), np.concatenate(posts)


class Sparse(Projection):
    """``Sparse(n_in, n_out, p=0.1, weight=1.0, seed=None, pre=None, post=None, dale=None, channel="exc")``.

    Give either ``p`` (random connectivity, drawn with ``seed``) or explicit ``pre`` / ``post``
    index arrays. ``weight`` is a number (the same for all synapses), one value per synapse (in
    the order of ``pre`` / ``post`` as given), or a function ``weight(pre, post)`` of the synapses'
    index arrays (int64, sorted by ``pre`` then ``post``) returning one value per synapse, e.g.
    ``lambda pre, post: np.where(pre < 800, 0.5, 2.0)`` for different strengths of excitatory
    and inhibitory neurons.

    ``dale``: ``"exc"``, ``"inh"`` or one sign per presynaptic neuron (+1 excitatory, -1
    inhibitory; a tensor or array of ``n_in`` values). Under Dale's law the weights are magnitudes
    and a synapse's weight is ``|w| * sign[pre]``, during learning too; a negative initial weight
    from an excitatory neuron contradicts its sign and is refused.
    """

    def __init__(self, n_in: int, n_out: int, p: float | None = None, *, weight=1.0, seed: int | None = None,
                 pre=None, post=None, autapses: bool = True, dale=None, channel: str = "exc",
                 learnable: bool = False, dtype: torch.dtype = torch.float32):
        super().__init__(n_in, n_out, channel, learnable)
        order = None
        if pre is None:
            if p is None or not 0 <= p <= 1:
                raise NeurosimError(f"connection probability p must be in [0, 1], got {p!r}")
            pre, post = random_connectivity(n_in, n_out, p, np.random.default_rng(seed), autapses)
        else:
            pre, post = np.asarray(pre, dtype=np.int64), np.asarray(post, dtype=np.int64)
            if pre.shape != post.shape or pre.ndim != 1:
                raise NeurosimError("pre and post must be 1-d index arrays of equal length")
            if pre.size and (pre.min() < 0 or pre.max() >= n_in or post.min() < 0 or post.max() >= n_out):
                raise NeurosimError(f"synapse indices out of range for {n_in} -> {n_out}")
            dp, dq = np.diff(pre), np.diff(post)
            if not ((dp > 0) | ((dp == 0) & (dq >= 0))).all():  # sort only when not already by pre, then post
                order = np.lexsort((post, pre))
                pre, post = pre[order], post[order]
        nnz = pre.size
        if callable(weight):
            w = torch.as_tensor(np.asarray(weight(pre.astype(np.int64), post.astype(np.int64))), dtype=dtype)
            if w.shape != (nnz,):
                raise NeurosimError(f"the weight function returned {w.numel()} values for {nnz} synapses")
        else:
            w = torch.as_tensor(weight, dtype=dtype)
            if w.dim() == 0:
                w = w.expand(nnz).clone()
            elif w.shape != (nnz,):
                raise NeurosimError(f"weight must be a number, {nnz} values (one per synapse) or a function of "
                                    f"(pre, post), got shape {tuple(w.shape)}")
            else:
                w = w.clone() if order is None else w[torch.as_tensor(order)]
        signs = dale_signs(dale, n_in)
        if signs is not None:
            wrong = (w < 0) & (signs[torch.as_tensor(pre, dtype=torch.int64)] > 0)
            if bool(wrong.any()):
                k = int(torch.nonzero(wrong)[0])
                raise NeurosimError(f"negative weight {w[k].item():g} from excitatory presynaptic neuron {int(pre[k])} "
                                    "(dale sign +1): under Dale's law weights are magnitudes signed by their neuron")
        self.weight = nn.Parameter(w, requires_grad=learnable)
        self.register_buffer("pre", torch.as_tensor(pre, dtype=torch.int64))
        self.register_buffer("post", torch.as_tensor(post, dtype=torch.int64))
        indptr = np.zeros(n_in + 1, dtype=np.int64)
        np.cumsum(np.bincount(pre, minlength=n_in), out=indptr[1:])
        self.register_buffer("indptr", torch.as_tensor(indptr))
        self.register_buffer("signs", None if signs is None else signs.to(dtype))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """The connectivity is part of the state: a state with another number of synapses (another
        random draw of the same ``p``) replaces this projection's synapses, indices and weights."""
        pre = state_dict.get(prefix + "pre")
        if isinstance(pre, torch.Tensor) and pre.dim() == 1 and pre.shape != self.pre.shape:
            device = self.pre.device
            self.pre = torch.empty_like(pre, device=device)
            self.post = torch.empty_like(pre, device=device)
            self.weight = nn.Parameter(torch.empty(pre.shape, dtype=self.weight.dtype, device=device),
                                       requires_grad=self.weight.requires_grad)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def nnz(self) -> int:
        return int(self.pre.numel())

    def effective_weight(self) -> torch.Tensor:
        """Per-synapse weights with Dale's signs applied."""
        w = self.weight
        return w if self.signs is None else w.abs() * self.signs[self.pre]

    def to_dense(self) -> torch.Tensor:
        """The ``[n_out, n_in]`` weight matrix (for inspection and tests)."""
        d = torch.zeros(self.n_out, self.n_in, dtype=self.weight.dtype)
        d.index_put_((self.post, self.pre), self.effective_weight().detach(), accumulate=True)
        return d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.n_in).to(self.weight.dtype)
        contrib = x2[:, self.pre] * self.effective_weight()
        out = torch.zeros(x2.shape[0], self.n_out, dtype=contrib.dtype, device=x.device)
        out.index_add_(1, self.post, contrib)
        return out.reshape(*lead, self.n_out)

    def propagate_spikes(self, z: torch.Tensor) -> torch.Tensor:
        """Event-driven without gradients: only the synapses of neurons that spiked are touched."""
        if torch.is_grad_enabled():
            return self(z)
        w = self.weight
        out = torch.zeros(z.shape[0], self.n_out, dtype=w.dtype, device=z.device)
        for b in range(z.shape[0]):
            active = torch.nonzero(z[b], as_tuple=True)[0]
            if active.numel() == 0:
                continue
            starts, ends = self.indptr[active], self.indptr[active + 1]
            counts = ends - starts
            offsets = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)
            syn = torch.arange(int(counts.sum()), device=z.device) + offsets
            ws = w[syn] if self.signs is None else w[syn].abs() * self.signs[self.pre[syn]]
            out[b].index_add_(0, self.post[syn], ws)
        return out
