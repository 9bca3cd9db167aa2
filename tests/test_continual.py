"""The continual runner and the plugins that attach to any network."""
import math

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.continual.runner import Continual
from neurosim.datasets.images import generated
from neurosim.continual.plugin import create_plugin
from neurosim.plugins.ewc import EWC
from neurosim.plugins.metaplasticity import Metaplasticity
from neurosim.plugins.replay import Replay
from neurosim.plugins.si import SI
from neurosim.continual.learners import EPropLearner, ThreeFactorLearner
from neurosim.continual.scenarios import Scenario, Task, permuted, split
from neurosim.datasets.images import Dataset
from neurosim.storage.store import RunStore

N_IN, N_HID, N_OUT = 30, 80, 4


def feedforward_lif(seed=0, n_out=N_OUT):
    torch.manual_seed(seed)
    net = ns.Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("h", ns.LIF(N_HID, tau_mem=5.0))
    net.add("o", ns.LI(n_out, tau_mem=5.0))
    net.connect("x", "h", ns.Dense(N_IN, N_HID, scale=3.0))
    net.connect("h", "o", ns.Dense(N_HID, n_out))
    return net


def recurrent_lif(seed=0):
    net = feedforward_lif(seed)
    net.connect("h", "h", ns.Dense(N_HID, N_HID, scale=0.3))
    return net


def izhikevich_readout(seed=0):
    torch.manual_seed(seed)
    net = ns.Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("res", ns.Izhikevich(N_HID, cell_type="RS"))
    net.add("o", ns.LI(N_OUT, tau_mem=5.0))
    net.connect("x", "res", ns.Dense(N_IN, N_HID, scale=60.0, learnable=False))
    net.connect("res", "res", ns.Sparse(N_HID, N_HID, p=0.1, weight=2.0, seed=seed))
    net.connect("res", "o", ns.Dense(N_HID, N_OUT))
    return net


def two_tasks():
    return permuted(generated(n_classes=N_OUT, n_features=N_IN, n_train=300, n_test=200, spread=0.2), 2, seed=1)


def run(net, plugins, steps=6):
    return Continual(net, two_tasks(), plugins, steps=steps, epochs=6, lr=0.2, progress=False, seed=0).run()


class Spy(ns.Plugin):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith(("before_", "after_")) and name != "before_backward":
            calls = object.__getattribute__(self, "calls")
            return lambda runner, *a: calls.append(name)
        return object.__getattribute__(self, name)


def test_hooks_are_called_in_lifecycle_order():
    spy = Spy()
    sc = permuted(generated(n_classes=2, n_features=N_IN, n_train=20, n_test=10), 2)
    Continual(feedforward_lif(), sc, [spy], steps=2, batch_size=10, progress=False).run()
    c = spy.calls
    assert c[0] == "before_eval" and "before_training" in c and c[-1] == "after_training"
    first = c.index("before_task")
    assert c[first:first + 9] == ["before_task", "before_epoch", "before_batch", "after_forward", "after_backward",
                                  "before_update", "after_update", "after_batch", "before_batch"]
    assert c.count("before_task") == 2 and c.count("after_task") == 2
    assert c.count("after_forward") == 4


def test_accuracy_matrix_is_filled_row_by_row():
    res = run(feedforward_lif(), [])
    assert res.R.shape == (2, 2) and not np.isnan(res.R).any()
    assert res.R[0, 0] > 0.9 and res.R[1, 1] > 0.9
    assert res.acc == pytest.approx(res.R[1].mean())
    assert res.bwt == pytest.approx(res.R[1, 0] - res.R[0, 0])
    assert res.fwt == pytest.approx(res.R[0, 1] - res.b[1])


@pytest.mark.parametrize("build, lam", [(feedforward_lif, 200.0), (recurrent_lif, 200.0), (izhikevich_readout, 60.0)])
def test_plugins_attach_unchanged_and_reduce_forgetting(build, lam):
    """The same plugin classes find their targets through the network; lam suits the Fisher's scale."""
    base = run(build(), []).bwt
    assert base < -0.04, "the two tasks must interfere for the test to mean anything"
    for plugin in (EWC(lam=lam, samples=50), Metaplasticity(m=15.0, rule="laborieux", scale=1.0)):
        assert run(build(), [plugin]).bwt > base + 0.02, type(plugin).__name__


def test_si_and_replay_reduce_forgetting():
    base = run(feedforward_lif(), []).bwt
    assert run(feedforward_lif(), [SI(c=0.5, xi=0.1)]).bwt > base + 0.02
    assert run(feedforward_lif(), [Replay(100, 32)]).bwt > base + 0.02


def interfering_split(k=4, n_tasks=3, spread=0.4):
    """Task-incremental tasks of ``k`` classes each that share one hidden layer and interfere: the same
    clusters under a different feature permutation per task, task ``t`` labelled ``t k .. t k + k - 1``."""
    d = generated(n_classes=k, n_features=N_IN, n_train=300, n_test=200, spread=spread)
    tasks = []
    for t in range(n_tasks):
        perm = np.arange(N_IN) if t == 0 else np.random.default_rng(t).permutation(N_IN)
        tasks.append(Task(t, *(Dataset(s.x[:, perm], s.y + k * t, s.shape) for s in (d.train, d.test)),
                          tuple(range(k * t, k * t + k))))
    return Scenario("split-task", tasks, N_IN, k * n_tasks, task_incremental=True)


class MixedBatch(ns.Plugin):
    """After replay: the first batch of the last task, its unmasked scores and the runner's loss."""

    def before_backward(self, runner, loss):
        if runner.task == len(runner.scenario) - 1 and not hasattr(self, "loss"):
            with torch.no_grad():
                self.scores = runner.sequence_scores(runner.batch_sequence()).double()
            self.loss, self.targets, self.tasks = float(loss.detach()), runner.targets.clone(), runner.sample_tasks.clone()
        return loss


@pytest.mark.parametrize("learning", [None, ThreeFactorLearner(), EPropLearner()], ids=["bptt", "three-factor", "eprop"])
def test_a_mixed_batch_is_masked_per_sample(learning):
    """Replayed samples keep their task: the loss is the mean over the batch of each sample's
    cross-entropy over its own task's classes, computed here by hand."""
    sc, seen = interfering_split(k=2), MixedBatch()
    Continual(feedforward_lif(n_out=6), sc, [Replay(40, 10), seen], steps=4, epochs=1, batch_size=30, progress=False,
              learning=learning).run()
    assert len(seen.targets) == 40 and seen.tasks[:30].eq(2).all() and set(seen.tasks[30:].tolist()) == {0, 1}
    total = 0.0
    for s, y, t in zip(seen.scores.tolist(), seen.targets.tolist(), seen.tasks.tolist()):
        assert y in sc.tasks[t].classes
        total += math.log(sum(math.exp(s[c]) for c in sc.tasks[t].classes)) - s[y]
    assert seen.loss == pytest.approx(total / len(seen.targets), rel=1e-5)


def test_replay_on_task_incremental_splits_reduces_forgetting():
    runs = [Continual(feedforward_lif(n_out=12), interfering_split(), plugins, steps=6, epochs=6, lr=1.0, progress=False).run()
            for plugins in ([], [Replay(100, 32)])]
    (none, replay) = runs
    assert none.bwt < -0.03, "the tasks must interfere for the test to mean anything"
    assert replay.bwt > none.bwt + 0.02 and replay.acc >= none.acc


class Stop(Exception):
    pass


def test_replay_on_task_incremental_splits_resumes_bit_for_bit(tmp_path):
    """Stopped inside task 2 (replayed samples of tasks 0 and 1 in every batch), the run resumes from
    its checkpoint to the uninterrupted run's accuracy matrix and parameters."""
    def runner(path):
        store = RunStore.create(path, {"case": "replay split-task"}, n_tasks=3)
        return Continual(feedforward_lif(n_out=6), interfering_split(k=2), [Replay(40, 10)], steps=4, epochs=1, batch_size=30,
                         progress=False, store=store, checkpoint_every=3), store

    whole, store = runner(tmp_path / "whole.h5")
    R = whole.run().R
    store.close()
    part, store = runner(tmp_path / "part.h5")
    step = part.train_batch

    def stopping(task, idx):
        if part.step == 23:  # 10 batches a task: inside task 2, two batches after a checkpoint
            raise Stop
        return step(task, idx)

    part.train_batch = stopping
    with pytest.raises(Stop):
        part.run()
    store.close()
    resumed = Continual(feedforward_lif(9, n_out=6), interfering_split(k=2), [Replay(40, 10, seed=9)], steps=4, epochs=1,
                        batch_size=30, progress=False, store=RunStore.open(tmp_path / "part.h5", "a"),
                        checkpoint_every=3)
    assert np.array_equal(resumed.run(resume=True).R, R)
    for k, v in whole.network.state_dict().items():
        assert torch.equal(resumed.network.state_dict()[k], v), k
    assert resumed.plugins[0].tasks == [0, 1, 2]


def test_plugin_state_survives_round_trip():
    for plugin, fresh in ((EWC(lam=10.0, samples=10), EWC()), (SI(c=0.05), SI()), (Replay(50, 8), Replay(50, 8, seed=5))):
        run(feedforward_lif(), [plugin], steps=2)
        fresh.load_state_dict(plugin.state_dict())
        a, b = plugin.state_dict(), fresh.state_dict()
        assert a.keys() == b.keys()
        for k in a:
            va, vb = a[k], b[k]
            if isinstance(va, dict) and "state" in va:
                assert va == vb
            elif isinstance(va, list):
                for x, y in zip(va, vb):
                    if isinstance(x, dict):
                        assert all(torch.equal(x[n], y[n]) for n in x)
                    else:
                        assert np.array_equal(x, y)
            elif isinstance(va, dict):
                assert all(torch.equal(va[n], vb[n]) for n in va)
            else:  # a count
                assert va == vb


def test_registry_and_refusals():
    assert isinstance(create_plugin("ewc", lam=1.0), EWC)
    with pytest.raises(ns.NeurosimError, match="unknown plugin 'nope'"):
        create_plugin("nope")
    net = izhikevich_readout()
    with pytest.raises(ns.NeurosimError, match="cannot act on projection 'x_to_res': its weights are not trained"):
        Metaplasticity(projections=["x_to_res"]).before_training(type("R", (), {"network": net})())


def test_bad_runner_configuration():
    with pytest.raises(ns.NeurosimError, match="has 30 channels but the scenario's samples have 64"):
        Continual(feedforward_lif(), permuted(generated(n_features=64), 2), progress=False)
    with pytest.raises(ns.NeurosimError, match="unknown optimizer 'rmsprop'"):
        Continual(feedforward_lif(), two_tasks(), optimizer="rmsprop", progress=False)


def test_freeze_lets_only_weights_learn_after_the_first_task():
    from neurosim.plugins.freeze import Freeze

    torch.manual_seed(0)
    net = ns.Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("h", ns.LIF(N_HID, tau_mem=5.0))
    net.add("o", ns.LI(N_OUT, tau_mem=5.0))
    net.connect("x", "h", ns.Dense(N_IN, N_HID, scale=3.0, bias=True))
    net.connect("h", "o", ns.Dense(N_HID, N_OUT))
    weights = {n for n, p in net.named_parameters() if n.endswith(".weight")}
    others = {n for n, p in net.named_parameters() if n not in weights}
    assert others == {"projections.x_to_h.bias"}

    class Snapshot(ns.Plugin):
        def __init__(self):
            self.after = []

        def after_task(self, runner, task):
            self.after.append({n: p.detach().clone() for n, p in runner.network.named_parameters()})

    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    snap = Snapshot()
    Continual(net, two_tasks(), [Freeze(), snap], steps=4, epochs=2, lr=0.2, progress=False).run()
    bias = "projections.x_to_h.bias"
    assert not torch.equal(snap.after[0][bias], start[bias])  # it learns in task 0
    assert torch.equal(snap.after[1][bias], snap.after[0][bias])  # and not after it
    assert all(not torch.equal(snap.after[1][n], snap.after[0][n]) for n in weights)
    assert {n for n, p in net.named_parameters() if p.requires_grad} == weights
    assert isinstance(create_plugin("freeze", after=1), Freeze)
    with pytest.raises(ns.NeurosimError, match="after must be an integer >= 0"):
        Freeze(after=-1)
