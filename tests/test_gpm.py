"""GPM: its basis against the SVD criterion written out with numpy, protection of an old task, and
resumed runs of GPM and HLOP (default rows) equal to uninterrupted ones."""
import numpy as np
import pytest
import torch

from neurosim import LI, LIF, Dense, Network, NeurosimError
from neurosim.continual.plugin import Plugin, create_plugin
from neurosim.continual.runner import Continual
from neurosim.continual.scenarios import Scenario
from neurosim.plugins.gpm import GPM
from neurosim.runs import experiment
from neurosim.storage import RunStore

from test_hlop import AfterTask, subspace_tasks

pytestmark = pytest.mark.usefixtures("one_thread")


def reference_basis(m: np.ndarray | None, r: np.ndarray, threshold: float) -> np.ndarray:
    """The paper's update of the basis ``m`` (columns) from the representation ``r`` (one column per
    activity vector): Eq. 5 on the first task, Eq. 8-9 after it."""
    total = (r ** 2).sum()
    if m is None:
        u, s, _ = np.linalg.svd(r, full_matrices=False)
        k = int(np.argmax(np.cumsum(s ** 2) / total >= threshold)) + 1
        return u[:, :k]
    r_hat = r - m @ (m.T @ r)
    u, s, _ = np.linalg.svd(r_hat, full_matrices=False)
    held, k = (total - (r_hat ** 2).sum()) / total, 0
    while held < threshold:
        held += s[k] ** 2 / total
        k += 1
    return np.hstack([m, u[:, :k]])


class Representation(Plugin):
    """After each task, the reference bases from the encoded inputs and the hidden spikes of every training sample."""

    def __init__(self, thresholds):
        self.thresholds, self.bases, self.history = thresholds, {"x_to_h": None, "h_to_o": None}, []

    def after_task(self, runner, task):
        x = torch.as_tensor(runner.scenario.tasks[task].train.x)
        seq = runner.encode(x)
        net = runner.network
        net.eval()
        name = net.probe("h", "spikes")
        with torch.no_grad():
            spikes = net.run({"x": seq}).probes[name]
        del net.probes[name]
        net.train()
        for (key, act), th in zip((("x_to_h", seq), ("h_to_o", spikes)), self.thresholds):
            r = act.reshape(-1, act.shape[-1]).double().numpy().T
            self.bases[key] = reference_basis(self.bases[key], r, th)
        self.history.append(dict(self.bases))


def test_basis_equals_the_svd_criterion():
    d, hidden, n_cls = 10, 12, 4
    a, b = subspace_tasks(d, n_cls, rank_a=6, seed=2)

    torch.manual_seed(1)
    net = Network(dt=1.0)
    net.add_input("x", d)
    net.add("h", LIF(hidden, tau_mem=5.0, v_th=0.5, dtype=torch.float64))
    net.add("o", LI(n_cls, tau_mem=5.0, dtype=torch.float64))
    net.connect("x", "h", Dense(d, hidden, scale=3.0, dtype=torch.float64))
    net.connect("h", "o", Dense(hidden, n_cls, dtype=torch.float64))
    thresholds = [0.9, 0.97]
    gpm = GPM(threshold=thresholds, samples=1000)
    reference = Representation(thresholds)
    Continual(net, Scenario("ab", [a, b], d, n_cls), [gpm, reference], steps=6, epochs=2, batch_size=32,
              lr=0.1, progress=False).run()
    assert sum(gpm.counts["h_to_o"]) < hidden and all(c > 0 for c in gpm.counts["x_to_h"])  # not vacuous
    for name, m in reference.bases.items():
        ours = gpm.bases[name]
        assert ours.shape[0] == m.shape[1], (name, ours.shape, m.shape)
        assert gpm.counts[name] == [reference.history[0][name].shape[1],
                                    m.shape[1] - reference.history[0][name].shape[1]]
        np.testing.assert_allclose((ours.t() @ ours).numpy(), m @ m.T, atol=1e-8)
        np.testing.assert_allclose((ours @ ours.t()).numpy(), np.eye(ours.shape[0]), atol=1e-12)


def test_training_on_b_leaves_outputs_on_a_unchanged():
    """Task A's inputs span 3 dimensions, which a threshold of 0.999 puts in the basis: training B then
    leaves the scores on A's inputs as they were."""
    d, n_cls = 20, 4
    a, b = subspace_tasks(d, n_cls)

    def make_net():
        torch.manual_seed(0)
        net = Network(dt=1.0)
        net.add_input("x", d)
        net.add("o", LI(n_cls, tau_mem=5.0))
        net.connect("x", "o", Dense(d, n_cls))
        return net

    kw = dict(steps=8, epochs=5, batch_size=16, lr=0.2, progress=False)
    x_a = torch.as_tensor(a.test.x)
    rec = AfterTask(x_a)
    gpm = GPM(threshold=0.999)
    result = Continual(make_net(), Scenario("ab", [a, b], d, n_cls), [gpm, rec], **kw).run()
    assert result.R[0, 0] > 0.6 and result.R[1, 1] > 0.6
    assert gpm.counts["x_to_o"][0] == 3

    base_net = make_net()
    base_net.load_state_dict(rec.states[0])
    base = AfterTask(x_a)
    Continual(base_net, Scenario("b", [b], d, n_cls), [base], **kw).run()
    with_gpm = (rec.scores[1] - rec.scores[0]).norm().item()
    without = (base.scores[0] - rec.scores[0]).norm().item()
    assert without > 0.1
    assert with_gpm < 1e-4 * without, (with_gpm, without)


def test_settings_are_checked_and_registered():
    assert isinstance(create_plugin("gpm"), GPM)
    with pytest.raises(NeurosimError, match="samples"):
        GPM(samples=0)
    with pytest.raises(NeurosimError, match="threshold must be"):
        GPM(threshold="high")
    a, _ = subspace_tasks(6, 2)
    net = Network(dt=1.0)
    net.add_input("x", 6)
    net.add("o", LI(2))
    net.connect("x", "o", Dense(6, 2))
    with pytest.raises(NeurosimError, match=r"GPM threshold for projection 'x_to_o' must be a number in \(0, 1\], "
                                            "got 1.5"):
        Continual(net, Scenario("a", [a], 6, 2), [GPM(threshold=[1.5])], steps=2, progress=False).run()


CONFIG = {
    "name": "resume-orthogonal",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 16, "seed": 3},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 3, "seed": 1},
    "training": {"steps": 5, "epochs": 1, "batch_size": 64, "lr": 0.1, "seed": 2, "checkpoint_every": 4},
}


class Crash(Exception):
    pass


@pytest.mark.parametrize("plugin", [{"name": "gpm", "rates": 1.0, "samples": 50}, {"name": "hlop", "rates": 1.0}])
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch, plugin):
    config = experiment.with_plugins(CONFIG, [plugin])
    whole = experiment.start(config, tmp_path / "whole.h5", progress=False)

    train_batch = Continual.train_batch
    calls = []

    def crashing(self, task, idx):
        calls.append(1)
        if len(calls) == 31:  # task 1, between checkpoints
            raise Crash
        return train_batch(self, task, idx)

    monkeypatch.setattr(Continual, "train_batch", crashing)
    with pytest.raises(Crash):
        experiment.start(config, tmp_path / "cut.h5", progress=False)
    monkeypatch.setattr(Continual, "train_batch", train_batch)
    resumed = experiment.resume(tmp_path / "cut.h5", progress=False)

    np.testing.assert_array_equal(resumed.R, whole.R)
    states = []
    for path in ("whole.h5", "cut.h5"):
        with RunStore.open(tmp_path / path) as store:
            states.append(store.latest_checkpoint()[1])
    assert_same(states[0]["network"], states[1]["network"])
    assert_same(states[0]["plugins"], states[1]["plugins"])


def assert_same(a, b):
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b
