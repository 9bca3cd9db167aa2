"""HLOP: subspace learning, protection of old tasks, both projection forms, refusals and resumable state."""
import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from neurosim import LI, LIF, Conv2d, Dense, Network, NeurosimError, Sparse
from neurosim.continual.runner import Continual
from neurosim.datasets.images import Dataset
from neurosim.continual.plugin import Plugin, create_plugin
from neurosim.plugins.hlop import HLOP
from neurosim.continual.scenarios import Scenario, Task


pytestmark = pytest.mark.usefixtures("one_thread")


def largest_angle(rows: torch.Tensor, basis: torch.Tensor) -> float:
    """Largest principal angle (degrees) between the row space of ``rows`` and the columns of ``basis``."""
    q = torch.linalg.qr(rows.t().double())[0]
    cos = torch.linalg.svdvals(q.t() @ torch.linalg.qr(basis.double())[0]).min().clamp(max=1.0)
    return math.degrees(math.acos(cos.item()))


def orthonormality_error(rows: torch.Tensor) -> float:
    return (rows @ rows.t() - torch.eye(rows.shape[0], dtype=rows.dtype)).abs().max().item()


def train_batches(hlop, runner, batches, optimizer=None) -> None:
    """The runner's per-batch hook sequence on a hand loop; with an optimizer, also a loss on the output."""
    for x in batches:
        hlop.before_batch(runner)
        out = runner.network.run(x).outputs["o"]
        hlop.after_forward(runner, out)
        if optimizer is not None:
            optimizer.zero_grad()
            out.pow(2).mean().backward()
            hlop.after_backward(runner)
            optimizer.step()


def readout_net(d: int, dtype=torch.float32) -> Network:
    net = Network(dt=1.0)
    net.add_input("x", d)
    net.add("o", LI(3, dtype=dtype))
    net.connect("x", "o", Dense(d, 3, dtype=dtype))
    return net


def test_rows_converge_to_principal_subspace():
    d, k = 20, 4
    g = torch.Generator().manual_seed(1)
    q = torch.linalg.qr(torch.randn(d, d, generator=g))[0]
    spectrum = torch.tensor([3.0, 2.5, 2.0, 1.5] + [0.2] * (d - k))
    data = (torch.randn(160 * 320, d, generator=g) * spectrum) @ q.t()
    top = torch.linalg.svd(data, full_matrices=False)[2][:k].t()
    batches = data.reshape(160, 5, 64, d)

    net = readout_net(d)
    hlop = HLOP(rows_per_task=[2, 2], lr_hebb=0.01)
    runner = SimpleNamespace(network=net)
    hlop.before_training(runner)
    hlop.before_task(runner, 0)
    train_batches(hlop, runner, batches[:80])
    hlop.after_task(runner, 0)
    first = hlop.subspaces["x_to_o"].old.clone()
    assert largest_angle(first, top[:, :2]) < 5

    hlop.before_task(runner, 1)
    train_batches(hlop, runner, batches[80:])
    hlop.after_task(runner, 1)
    rows = hlop.subspaces["x_to_o"].old
    assert torch.equal(rows[:2], first)  # old rows never learn
    assert hlop.subspaces["x_to_o"].counts == [2, 2]
    angle = largest_angle(rows, top)
    assert angle < 5, angle
    assert orthonormality_error(rows) < 1e-3


class AfterTask(Plugin):
    """Records the network's scores on ``x`` and its parameters at the end of each task."""

    def __init__(self, x):
        self.x, self.scores, self.states = x, [], []

    def after_task(self, runner, task):
        with torch.no_grad():
            self.scores.append(runner.scores(self.x))
        self.states.append(copy.deepcopy(runner.network.state_dict()))


def subspace_tasks(d: int = 20, n_cls: int = 4, rank_a: int = 3, seed: int = 0):
    """Task A's inputs lie in a ``rank_a``-dimensional subspace, task B's anywhere; Gaussian classes."""
    rng = np.random.default_rng(seed)

    def task(index, basis, centres):
        def draw(n):
            y = rng.integers(0, n_cls, n)
            z = centres[y] + 0.3 * rng.standard_normal((n, basis.shape[1]))
            return Dataset((z @ basis.T).astype(np.float32), y.astype(np.int64), (d,))
        return Task(index, draw(256), draw(128), tuple(range(n_cls)))

    a = task(0, np.linalg.qr(rng.standard_normal((d, rank_a)))[0], rng.standard_normal((n_cls, rank_a)))
    b = task(1, np.linalg.qr(rng.standard_normal((d, d)))[0], rng.standard_normal((n_cls, d)))
    return a, b


@pytest.mark.parametrize("form", ["input", "gradient"])
@pytest.mark.parametrize("hidden", [0, 32])
def test_training_on_b_leaves_outputs_on_a_unchanged(hidden, form):
    """A Dense readout (hidden=0), or Dense -> LIF -> frozen Dense readout: HLOP learns task A's input
    subspace, then task B's training moves the scores on A's inputs < 1 % of what it does without HLOP."""
    d, n_cls = 20, 4
    a, b = subspace_tasks(d, n_cls)

    def make_net():
        torch.manual_seed(0)
        net = Network(dt=1.0)
        net.add_input("x", d)
        net.add("o", LI(n_cls, tau_mem=5.0))
        if hidden:
            net.add("h", LIF(hidden, tau_mem=5.0))
            net.connect("x", "h", Dense(d, hidden, scale=3.0))
            net.connect("h", "o", Dense(hidden, n_cls, learnable=False))
        else:
            net.connect("x", "o", Dense(d, n_cls))
        return net

    kw = dict(steps=8, epochs=5, batch_size=16, lr=0.2, progress=False)
    x_a = torch.as_tensor(a.test.x)
    rec = AfterTask(x_a)
    hlop = HLOP(rows_per_task=[3, 0], lr_hebb=0.2, form=form)
    result = Continual(make_net(), Scenario("ab", [a, b], d, n_cls), [hlop, rec], **kw).run()
    assert result.R[0, 0] > 0.6 and result.R[1, 1] > 0.6
    assert list(hlop.subspaces) == ["x_to_h" if hidden else "x_to_o"]  # the frozen readout is not protected

    base_net = make_net()
    base_net.load_state_dict(rec.states[0])
    base = AfterTask(x_a)
    Continual(base_net, Scenario("b", [b], d, n_cls), [base], **kw).run()
    with_hlop = (rec.scores[1] - rec.scores[0]).norm().item()
    without = (base.scores[0] - rec.scores[0]).norm().item()
    assert without > 0.1
    assert with_hlop < 0.01 * without, (with_hlop, without)


def conv_net(dtype=torch.float64) -> Network:
    torch.manual_seed(3)
    net = Network(dt=1.0)
    net.add_input("x", 36)
    net.add("h", LIF(4 * 36, tau_mem=5.0, v_th=0.3, dtype=dtype))
    net.add("o", LI(3, dtype=dtype))
    net.connect("x", "h", Conv2d((1, 6, 6), 4, 3, padding=1, dtype=dtype))
    net.connect("h", "o", Dense(4 * 36, 3, bias=True, dtype=dtype))
    return net


def random_rows(k: int, n: int, seed: int) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(n, k, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))[0].t()


def protected_state(old: dict, new: dict | None = None, current: int = -1) -> dict:
    new = new or {}
    return {"current": current, "subspaces": {
        name: {"old": h, "new": new.get(name, h[:0]), "momentum": torch.zeros_like(new.get(name, h[:0])),
               "counts": [h.shape[0]]} for name, h in old.items()}}


def gradients(form: str, state: dict, x: torch.Tensor) -> dict:
    net = conv_net()
    hlop = HLOP(rows_per_task=2, form=form)
    hlop.load_state_dict(state)
    runner = SimpleNamespace(network=net)
    hlop.before_training(runner)
    hlop.before_batch(runner)
    out = net.run(x).outputs["o"]
    hlop.after_forward(runner, out)
    out.pow(2).mean().backward()
    hlop.after_backward(runner)
    return {n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None}


def test_input_form_equals_gradient_form():
    state = protected_state({"x_to_h": random_rows(4, 9, 0), "h_to_o": random_rows(40, 144, 1)})
    x = torch.rand(6, 5, 36, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    by_input, by_gradient = gradients("input", state, x), gradients("gradient", state, x)
    raw = gradients("input", protected_state({"x_to_h": random_rows(4, 9, 0)[:0],
                                              "h_to_o": random_rows(40, 144, 1)[:0]}), x)
    for name in raw:
        torch.testing.assert_close(by_input[name], by_gradient[name], rtol=1e-10, atol=1e-12)
    for name, key in (("projections.x_to_h.weight", "x_to_h"), ("projections.h_to_o.weight", "h_to_o")):
        h = state["subspaces"][key]["old"]
        g = raw[name].reshape(raw[name].shape[0], -1)
        assert (g @ h.t()).abs().max() > 1e-3  # the test is not vacuous
        torch.testing.assert_close(by_input[name].reshape(g.shape), g - g @ h.t() @ h)
        assert (by_input[name].reshape(g.shape) @ h.t()).abs().max() < 1e-10
    torch.testing.assert_close(by_input["projections.h_to_o.bias"], raw["projections.h_to_o.bias"])


@pytest.mark.parametrize("form", ["input", "gradient"])
def test_only_the_merged_block_projects(form):
    old, new = random_rows(3, 144, 4), random_rows(5, 144, 5)
    state = protected_state({"x_to_h": random_rows(2, 9, 6)[:0], "h_to_o": old}, {"h_to_o": new}, current=1)
    x = torch.rand(6, 5, 36, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    g = gradients(form, state, x)["projections.h_to_o.weight"]
    assert (g @ old.t()).abs().max() < 1e-10
    assert (g @ new.t()).abs().max() > 1e-3


def test_quantised_lateral_neurons():
    hlop = HLOP(rows_per_task=2, quantise=(20.0, 40), form="input")
    y = torch.tensor([-30.0, 0.2, 0.3, 7.6, 25.0])
    assert torch.equal(hlop._q(y), torch.tensor([-20.0, 0.0, 0.5, 7.5, 20.0]))
    with pytest.raises(NeurosimError, match="form='input'"):
        HLOP(rows_per_task=2, quantise=(20.0, 40), form="gradient")


def test_state_dict_round_trip_and_identical_continuation():
    d = 12
    g = torch.Generator().manual_seed(7)
    batches = torch.rand(12, 4, 8, d, generator=g, dtype=torch.float64)
    net = readout_net(d, torch.float64)
    hlop = HLOP(rows_per_task=[3, 2, 2], lr_hebb=0.05, form="gradient")
    runner = SimpleNamespace(network=net)
    hlop.before_training(runner)
    hlop.before_task(runner, 0)
    train_batches(hlop, runner, batches[:4])
    hlop.after_task(runner, 0)
    hlop.before_task(runner, 1)
    train_batches(hlop, runner, batches[4:6])  # mid-task: new rows and momentum are live

    state = hlop.state_dict()
    net2 = readout_net(d, torch.float64)
    net2.load_state_dict(net.state_dict())
    resumed = HLOP(rows_per_task=[3, 2, 2], lr_hebb=0.05, form="gradient")
    resumed.load_state_dict(state)
    runner2 = SimpleNamespace(network=net2)
    resumed.before_training(runner2)
    resumed.before_task(runner2, 1)  # a resumed run re-enters the task: no rows are added twice
    again = resumed.state_dict()
    assert again["current"] == state["current"] == 1
    for name, s in state["subspaces"].items():
        assert s["counts"] == again["subspaces"][name]["counts"] == [3, 2]
        for key in ("old", "new", "momentum"):
            assert torch.equal(s[key], again["subspaces"][name][key])
        assert s["momentum"].abs().max() > 0

    for h, r, n in ((hlop, runner, net), (resumed, runner2, net2)):
        train_batches(h, r, batches[6:9], torch.optim.SGD(n.parameters(), lr=0.1))
        h.after_task(r, 1)
        h.before_task(r, 2)
        train_batches(h, r, batches[9:], torch.optim.SGD(n.parameters(), lr=0.1))
    for name, s in hlop.subspaces.items():
        t = resumed.subspaces[name]
        assert torch.equal(s.old, t.old) and torch.equal(s.new, t.new) and torch.equal(s.momentum, t.momentum)
    for p, q in zip(net.parameters(), net2.parameters()):
        assert torch.equal(p, q)


def two_layer(first, second=None) -> Network:
    net = Network(dt=1.0)
    net.add_input("x", 6)
    net.add("h", LIF(5))
    net.add("o", LI(3))
    net.connect("x", "h", first)
    net.connect("h", "o", second or Dense(5, 3))
    return net


def test_refuses_frozen_and_unsupported_projections():
    runner = SimpleNamespace(network=two_layer(Dense(6, 5, learnable=False)))
    with pytest.raises(NeurosimError, match=r"projection 'x_to_h': its weight is frozen \(learnable=False\)"):
        HLOP(rows_per_task=2, projections=["x_to_h"]).before_training(runner)
    net = two_layer(Dense(6, 5))
    net.connections["x_to_h"].projection.weight.requires_grad_(False)
    with pytest.raises(NeurosimError, match=r"projection 'x_to_h': its weight is frozen \(requires_grad=False\)"):
        HLOP(rows_per_task=2, projections=["x_to_h"]).before_training(SimpleNamespace(network=net))
    sparse = two_layer(Sparse(6, 5, p=0.5, seed=0, learnable=True))
    with pytest.raises(NeurosimError, match="projection 'x_to_h': its updates live on existing synapses .* "
                                            "use form='gradient'"):
        HLOP(rows_per_task=2, form="input").before_training(SimpleNamespace(network=sparse))
    dale = two_layer(Dense(6, 5, dale="exc"))
    with pytest.raises(NeurosimError, match="projection 'x_to_h': .* Dale's signs"):
        HLOP(rows_per_task=2, form="input", projections=["x_to_h"]).before_training(SimpleNamespace(network=dale))
    for net in (sparse, dale):  # the gradient form protects them
        hlop = HLOP(rows_per_task=2)
        hlop.before_training(SimpleNamespace(network=net))
        assert list(hlop.subspaces) == ["x_to_h", "h_to_o"]
    with pytest.raises(NeurosimError, match="no projection 'nope'"):
        HLOP(rows_per_task=2, projections=["nope"]).before_training(SimpleNamespace(network=dale))


def test_rows_are_checked_against_the_activity_dimension():
    runner = SimpleNamespace(network=two_layer(Dense(6, 5)), scenario=[None] * 3)
    with pytest.raises(NeurosimError, match="adds 9 rows to projection 'x_to_h' over 3 tasks"):
        HLOP(rows_per_task=lambda task, layer: 3 if layer == 0 else 1).before_training(runner)
    with pytest.raises(NeurosimError, match=r"rows_per_task\[0\] gives 1 layers but 2 projections"):
        HLOP(rows_per_task=[[1], [1], [1]]).before_training(runner)
    with pytest.raises(NeurosimError, match="lists 2 tasks, none for task 2"):
        HLOP(rows_per_task=[1, 1]).before_training(runner)


def test_freezes_statistics_thresholds_and_1d_parameters_after_the_first_task():
    net = two_layer(Dense(6, 5, bias=True), Dense(5, 3, bias=True))
    net.add_module("norm", nn.BatchNorm1d(5))
    net.populations["h"].register_parameter("threshold", nn.Parameter(torch.ones(1, 5)))
    runner = SimpleNamespace(network=net)
    hlop = HLOP(rows_per_task=1)
    hlop.before_training(runner)
    hlop.before_task(runner, 0)
    assert all(p.requires_grad for p in net.parameters()) and net.norm.training
    hlop.after_task(runner, 0)
    hlop.before_task(runner, 1)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained == {"projections.x_to_h.weight", "projections.h_to_o.weight"}
    assert not net.norm.training
    net.train()
    hlop.before_batch(runner)
    assert not net.norm.training  # statistics stay frozen even if the model is put back in training mode


def test_registered_entry_point():
    assert isinstance(create_plugin("hlop", rows_per_task=2), HLOP)


@pytest.mark.parametrize("batches", [1, 10, 1000])
@pytest.mark.parametrize("rows", [None, [3, 2, 2]])
def test_merged_block_is_orthonormal_whatever_the_task_length(batches, rows):
    """Default rows (energy) and fixed rows, with a Hebbian rate large enough for rows to overshoot."""
    d = 8
    g = torch.Generator().manual_seed(batches)
    net = readout_net(d)
    hlop = HLOP(rows_per_task=rows, lr_hebb=0.5)
    runner = SimpleNamespace(network=net, step=0)
    hlop.before_training(runner)
    for task in range(3):
        mix = torch.randn(d, d, generator=g)
        hlop.before_task(runner, task)
        train_batches(hlop, runner, 2 * torch.randn(batches, 2, 4, d, generator=g) @ mix)
        hlop.after_task(runner, task)
        h = hlop.subspaces["x_to_o"].old
        assert h.shape[0] == sum(hlop.subspaces["x_to_o"].counts) > 0
        assert orthonormality_error(h) < 1e-5, (task, orthonormality_error(h))
        assert torch.linalg.svdvals(torch.eye(d) - h.t() @ h).max() < 1 + 1e-5  # a projection never amplifies


def test_default_energy_is_gpms_default_threshold():
    """Both plugins pick directions by the same energy criterion, with the same default."""
    from neurosim.plugins.gpm import GPM
    assert HLOP().energy == GPM().threshold == 0.95


def test_default_rows_hold_the_energy_fraction_of_the_activity():
    """Task 0's activity has energy fractions 9/14, 4/14, 1/14 on three directions: energy 0.9 keeps two
    rows, along the first two. Task 1 adds a fourth direction with 4/14 of its energy beside the first
    direction's 10/14: the old rows hold 10/14 < 0.9, so one row is added."""
    d = 12
    g = torch.Generator().manual_seed(0)
    q = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))[0]

    def batches(scales, axes, n=200):
        z = torch.randn(n, 64, len(axes), generator=g, dtype=torch.float64) * torch.tensor(scales)
        return (z @ q[:, axes].t()).reshape(n, 4, 16, d)

    net = readout_net(d, torch.float64)
    hlop = HLOP(energy=0.9, lr_hebb=0.02)
    runner = SimpleNamespace(network=net, step=0)
    hlop.before_training(runner)
    hlop.before_task(runner, 0)
    train_batches(hlop, runner, batches([3.0, 2.0, 1.0], [0, 1, 2]))
    hlop.after_task(runner, 0)
    sub = hlop.subspaces["x_to_o"]
    assert sub.counts == [2]
    assert largest_angle(sub.old, q[:, :2]) < 5
    hlop.before_task(runner, 1)
    train_batches(hlop, runner, batches([10 ** 0.5, 2.0], [0, 3]))
    hlop.after_task(runner, 1)
    assert sub.counts == [2, 1]
    assert largest_angle(sub.old, q[:, [0, 1, 3]]) < 5
    with pytest.raises(NeurosimError, match="rows_per_task .* or energy"):
        HLOP(rows_per_task=2, energy=0.9)
    with pytest.raises(NeurosimError, match="energy must be"):
        HLOP(energy="all")
