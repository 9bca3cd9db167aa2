"""Orthogonal projection shared by HLOP and GPM: updates restricted to synapses or signed by Dale's law
leave the output on old activity unchanged, and a projected gradient is never longer than the raw one."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neurosim import LI, Dense, Network, Sparse
from neurosim.plugins.gpm import GPM
from neurosim.plugins.hlop import HLOP

pytestmark = pytest.mark.usefixtures("one_thread")

N_IN, N_OUT, K = 12, 6, 4


def orthonormal_rows(k: int, n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))[0].t().contiguous()


def make_projection(kind: str):
    """A float64 projection of ``kind``; under Dale's law no weight lies within 0.2 of zero."""
    g = torch.Generator().manual_seed(5)
    signs = torch.tensor([1.0, -1.0] * (N_IN // 2))
    dale = signs if "dale" in kind else None
    if kind.startswith("sparse"):
        proj = Sparse(N_IN, N_OUT, p=0.5, seed=2, learnable=True, dale=dale, dtype=torch.float64)
        proj.weight.data = torch.randn(proj.nnz, generator=g, dtype=torch.float64)
        return away_from_zero(proj) if dale is not None else proj
    mask = None
    if kind.startswith("masked"):
        mask = torch.rand(N_OUT, N_IN, generator=g) < 0.7
        mask[1] = mask[0]  # rows with the same synapses share their restricted basis
        mask[2, :3] = True  # one row with fewer synapses than the basis has rows: it must stop learning
        mask[2, 3:] = False
    proj = Dense(N_IN, N_OUT, mask=mask, dale=dale, scale=3.0, generator=g, dtype=torch.float64)
    return away_from_zero(proj) if dale is not None else proj


def away_from_zero(proj):
    """Dale's law reflects a weight that crosses zero: keep the test's small step away from that."""
    w = proj.weight.data
    proj.weight.data = torch.where(w >= 0, 1.0, -1.0).to(w) * (0.2 + w.abs())
    return proj


def plugin_with_basis(kind: str, basis: torch.Tensor):
    if kind == "hlop":
        plugin = HLOP(rows_per_task=1)
        plugin.load_state_dict({"current": -1, "subspaces": {"x_to_o": {
            "old": basis, "new": basis[:0], "momentum": basis[:0], "counts": [basis.shape[0]]}}})
    else:
        plugin = GPM()
        plugin.load_state_dict({"current": -1, "bases": {"x_to_o": basis}, "counts": {"x_to_o": [basis.shape[0]]}})
    return plugin


def synapses(proj) -> tuple[np.ndarray, np.ndarray]:
    """(post, pre) of every entry of the weight (Sparse), or of the weight matrix's entries in row-major order."""
    if isinstance(proj, Sparse):
        return proj.post.numpy(), proj.pre.numpy()
    post, pre = np.divmod(np.arange(N_OUT * N_IN), N_IN)
    return post, pre


def reference_projection(proj, raw: torch.Tensor, basis: torch.Tensor) -> np.ndarray:
    """Per postsynaptic row, the gradient of the effective weight on the synapses that move, minus its
    orthogonal projection onto the row space of the basis restricted to those synapses (numpy pinv)."""
    w = proj.weight.detach().numpy().reshape(-1)
    post, pre = synapses(proj)
    factor = np.ones_like(w)
    if proj.signs is not None:
        factor = np.sign(w) * proj.signs.numpy()[pre]
    moves = factor != 0
    if getattr(proj, "mask", None) is not None:
        moves &= proj.mask.numpy().reshape(-1)
    g = raw.numpy().reshape(-1) * factor
    out = np.zeros_like(g)
    b = basis.numpy()
    for i in range(N_OUT):
        idx = np.nonzero((post == i) & moves)[0]
        if idx.size == 0:
            continue
        a = b[:, pre[idx]]
        out[idx] = g[idx] - g[idx] @ (np.linalg.pinv(a) @ a)
    return out * factor


def one_step(net, proj, plugin, lr: float):
    """A training step on random activity through the plugin's hooks; returns the raw and projected gradients."""
    runner = SimpleNamespace(network=net, step=0)
    plugin.before_training(runner)
    plugin.before_batch(runner)
    x = torch.rand(3, 8, N_IN, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    out = net.run(x).outputs["o"]
    plugin.after_forward(runner, out)
    (out - 1.0).pow(2).sum().backward()
    raw = proj.weight.grad.clone()
    plugin.after_backward(runner)
    projected = proj.weight.grad.clone()
    with torch.no_grad():
        proj.weight -= lr * projected
    return raw, projected


KINDS = ["sparse", "masked", "dale", "sparse_dale", "masked_dale"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("plugin", ["hlop", "gpm"])
def test_a_step_leaves_the_output_on_old_activity_unchanged(kind, plugin):
    basis = orthonormal_rows(K, N_IN, 0)
    old = torch.randn(40, K, generator=torch.Generator().manual_seed(1), dtype=torch.float64) @ basis
    results = {}
    for protect in (True, False):
        proj = make_projection(kind)
        net = Network(dt=1.0)
        net.add_input("x", N_IN)
        net.add("o", LI(N_OUT, dtype=torch.float64))
        net.connect("x", "o", proj)
        w0 = proj.weight.detach().clone()
        before = proj(old).detach()
        p = plugin_with_basis(plugin, basis if protect else basis[:0])
        raw, projected = one_step(net, proj, p, lr=1e-3)
        if proj.signs is not None:
            assert torch.equal(torch.sign(proj.weight.detach()), torch.sign(w0))  # no weight crossed zero
        results[protect] = (proj(old).detach() - before).abs().max().item()
        if protect:
            np.testing.assert_allclose(projected.numpy().reshape(-1), reference_projection(proj, raw, basis),
                                       rtol=0, atol=1e-12)
            assert projected.norm() > 0.05 * raw.norm()  # the update is not simply switched off
    assert results[False] > 1e-3  # without protection the step moves the old outputs
    assert results[True] < 1e-12, results


def test_a_row_whose_synapses_see_only_old_activity_stops_learning():
    basis = orthonormal_rows(K, N_IN, 0)
    proj = make_projection("masked")
    net = Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("o", LI(N_OUT, dtype=torch.float64))
    net.connect("x", "o", proj)
    raw, projected = one_step(net, proj, plugin_with_basis("gpm", basis), lr=0.01)
    assert raw[2].abs().max() > 1e-3
    assert projected[2].abs().max() < 1e-12  # 3 synapses, a 4-row basis spans all they see
    wide = proj.mask.sum(1) > K
    assert wide.sum() >= 3 and (projected[wide].abs().sum(1) > 1e-3).all()  # rows with room left still learn


def test_the_merged_block_never_lengthens_a_gradient():
    """Rows learnt with a Hebbian rate far too large for a one-batch task overshoot (the rows alone would
    make I - H^T H amplify); the merge keeps the block orthonormal and the projection contracting."""
    d = 10
    g = torch.Generator().manual_seed(3)
    net = Network(dt=1.0)
    net.add_input("x", d)
    net.add("o", LI(3, dtype=torch.float64))
    net.connect("x", "o", Dense(d, 3, dtype=torch.float64))
    hlop = HLOP(rows_per_task=[4, 4], lr_hebb=2.0)
    runner = SimpleNamespace(network=net, step=0)
    hlop.before_training(runner)
    worst = 0.0
    for task in range(2):
        hlop.before_task(runner, task)
        hlop.before_batch(runner)
        hlop.after_forward(runner, net.run(3 * torch.rand(4, 16, d, generator=g, dtype=torch.float64)).outputs["o"])
        sub = hlop.subspaces["x_to_o"]
        worst = max(worst, torch.linalg.svdvals(torch.cat([sub.old, sub.new])).max().item())
        hlop.after_task(runner, task)
    assert worst > 2 ** 0.5  # merged as learnt, some gradient would grow
    h = hlop.subspaces["x_to_o"].old
    assert h.shape[0] == 8
    assert (h @ h.t() - torch.eye(8, dtype=h.dtype)).abs().max() < 1e-12
    w = net.connections["x_to_o"].projection.weight
    for seed in range(50):
        grad = torch.randn(3, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        w.grad = grad.clone()
        hlop.after_backward(runner)
        assert w.grad.norm() <= grad.norm() * (1 + 1e-12)
        assert (w.grad @ h.t()).abs().max() < 1e-12


@pytest.mark.parametrize("kind", ["dense", "sparse"])
@pytest.mark.parametrize("task_incremental", [True, False])
def test_output_rows_of_new_classes_are_free_in_task_incremental_scenarios(kind, task_incremental):
    """Outputs 0-1 belong to task 0, 2-3 to task 1 (being trained), 4-5 to no task yet: in a
    task-incremental scenario only the rows of outputs 0-1 are projected; otherwise all are."""
    basis = orthonormal_rows(K, N_IN, 0)
    proj = make_projection(kind) if kind == "sparse" else Dense(N_IN, N_OUT, dtype=torch.float64)
    net = Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("o", LI(N_OUT, dtype=torch.float64))
    net.connect("x", "o", proj)
    tasks = [SimpleNamespace(classes=(0, 1)), SimpleNamespace(classes=(2, 3)), SimpleNamespace(classes=(4, 5))]
    runner = SimpleNamespace(network=net, step=0, task=1, output="o",
                             scenario=SimpleNamespace(task_incremental=task_incremental, tasks=tasks))
    plugin = plugin_with_basis("gpm", basis)
    plugin.before_training(runner)
    g = torch.randn(proj.weight.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    proj.weight.grad = g.clone()
    plugin.after_backward(runner)
    post = proj.post if kind == "sparse" else torch.arange(N_OUT)
    old_rows = (post == 0) | (post == 1)
    free = ~old_rows if task_incremental else torch.zeros_like(old_rows)
    reference = torch.as_tensor(reference_projection(proj, g, basis)).reshape(g.shape)
    assert torch.equal(proj.weight.grad[free], g[free])
    assert torch.allclose(proj.weight.grad[~free], reference[~free], rtol=0, atol=1e-12)
    assert (proj.weight.grad[~free] - g[~free]).abs().max() > 1e-3  # projected rows changed
