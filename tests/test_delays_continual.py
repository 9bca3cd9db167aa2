"""Event data in continual experiments: sequences fed as they are, the delay network in run files."""
import numpy as np
import pytest
import torch

from neurosim import NeurosimError
from neurosim.cli.main import main
from neurosim.continual.runner import Continual, evaluation_mode
from neurosim.datasets.event_sets import EventSet, as_dataset, as_split
from neurosim.runs.experiment import build, resume, start
from neurosim.cli.plots import checkpoint_delays
from neurosim.continual.scenarios import permuted
from neurosim.storage.store import RunStore
from neurosim.datasets.temporal_tasks import lag_task

pytestmark = pytest.mark.usefixtures("one_thread")

CONFIG = {
    "name": "lags-delays",
    "model": {"name": "delays", "n_in": 8, "n_out": 4, "hidden": [16], "max_delay": 13, "dropout": 0.1, "seed": 0},
    "scenario": {"name": "permuted", "data": "lags", "tasks": 2, "seed": 0,
                 "options": {"n_train": 128, "n_test": 64}},
    "training": {"steps": 13, "epochs": 2, "batch_size": 32, "lr": 0.5, "checkpoint_every": 3, "seed": 0},
    "plugins": [{"name": "hlop", "rows_per_task": [[4, 8], [0, 0]], "form": "gradient", "lr_hebb": 0.05}],
}


def test_as_dataset_holds_each_samples_binned_counts():
    events = EventSet.from_lists([np.array([0.0, 0.012, 0.012]), np.array([0.031])],
                                 [np.array([0, 2, 2]), np.array([1])], [1, 0], channels=3, dt=0.01)
    data = as_dataset(events, steps=6)
    assert data.x.shape == (2, 6, 3) and data.shape == (6, 3) and list(data.y) == [1, 0]
    for i in range(2):
        counts = events.binned(i)
        assert np.array_equal(data.x[i, :counts.shape[0]], counts.numpy())
        assert not data.x[i, counts.shape[0]:].any()
    with pytest.raises(NeurosimError, match="at least 4"):
        as_dataset(events, steps=3)


def test_sequences_are_fed_cut_after_the_last_event_and_padded_to_steps():
    train, test, _ = lag_task(n_train=16, n_test=8, steps=40, seed=1)
    scenario = permuted(as_split(train, test), 2, seed=0)
    x0, x1 = scenario.tasks[0].train.x, scenario.tasks[1].train.x
    assert x1.shape == x0.shape and not np.array_equal(x0, x1)
    assert sorted(map(tuple, x1.sum(1).T)) == sorted(map(tuple, x0.sum(1).T))  # the same channels, reordered
    runner = Continual(build(CONFIG, progress=False).network, scenario, steps=13, progress=False)
    x = torch.as_tensor(x0[:4])
    last = int(np.nonzero(x0[:4].sum((0, 2)))[0].max())
    seq = runner.encode(x)
    assert seq.shape == (max(last + 1, 13), 4, 8)
    assert torch.equal(seq, x[:, :seq.shape[0]].transpose(0, 1))
    net = build(CONFIG, progress=False).network
    runner = Continual(net, scenario, steps=60, progress=False)
    assert runner.encode(x).shape[0] == 60 and runner.encode(x)[last + 1:].abs().sum() == 0
    short = Continual(net, scenario, steps=1, progress=False)  # the delays need 13 steps
    assert short.encode(torch.zeros(2, 40, 8)).shape == (13, 2, 8)


def test_features_encoded_shorter_than_the_longest_delay_are_refused():
    from neurosim.datasets.images import digits, standardised
    from neurosim.models.delays import build_delay_net
    net = build_delay_net(64, 10, hidden=[16], max_delay=13)
    with pytest.raises(NeurosimError, match="steps=5 is shorter than the network accepts \\(13"):
        Continual(net, permuted(standardised(digits()), 2), steps=5, progress=False)


def test_delay_experiment_writes_resumes_and_plots(tmp_path, monkeypatch):
    whole = start(CONFIG, tmp_path / "whole.h5", progress=False)
    assert np.isfinite(whole.R).all() and whole.R[0, 0] > 0.4  # chance 0.25

    calls = {"n": 0}
    original = Continual.train_batch

    def dies_at_the_seventh_batch(self, task, idx):
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt
        return original(self, task, idx)

    monkeypatch.setattr(Continual, "train_batch", dies_at_the_seventh_batch)
    with pytest.raises(KeyboardInterrupt):
        start(CONFIG, tmp_path / "cut.h5", progress=False)
    monkeypatch.setattr(Continual, "train_batch", original)
    resumed = resume(tmp_path / "cut.h5", progress=False)
    assert np.array_equal(resumed.R, whole.R)

    states = []
    for name in ("whole.h5", "cut.h5"):
        with RunStore.open(tmp_path / name) as store:
            states.append(store.latest_checkpoint()[1]["network"])
    for key, value in states[0].items():
        if torch.is_tensor(value):
            assert torch.equal(value, states[1][key]), key
    delays = checkpoint_delays(states[0])
    assert set(delays) == {"x_to_h1", "h1_to_out"} and all(D == 13 for _, D in delays.values())
    assert main(["plot", str(tmp_path / "cut.h5"), "delays", "--out", str(tmp_path / "d.png")]) == 0


@pytest.mark.parametrize("options, data, message", [
    ({"width": 3}, "lags", "unknown scenario.options parameter 'width'"),
    ({"size": 10}, "digits", r"unknown scenario.options \(digits\) key 'size'; known: n_train, n_test"),
])
def test_bad_scenario_options(options, data, message):
    config = dict(CONFIG, scenario=dict(CONFIG["scenario"], data=data, options=options))
    with pytest.raises(NeurosimError, match=message):
        build(config, progress=False)


def _scenario_and_net(dropout: float):
    train, test, _ = lag_task(n_train=32, n_test=48, steps=40, seed=2)
    config = dict(CONFIG, model=dict(CONFIG["model"], dropout=dropout))
    return permuted(as_split(train, test), 2, seed=0), build(config, progress=False).network


def test_evaluation_turns_dropout_off_and_leaves_batch_norm_statistics_and_modes_alone():
    scenario, net = _scenario_and_net(dropout=0.5)
    runner = Continual(net, scenario, steps=13, progress=False)
    buffers = {k: v.clone() for k, v in net.named_buffers()}
    modes = [m.training for m in net.modules()]
    first = [runner.evaluate(t) for t in scenario.tasks]
    assert [runner.evaluate(t) for t in scenario.tasks] == first  # no random dropout masks
    assert buffers and all(torch.equal(buffers[k], v) for k, v in net.named_buffers())  # running estimates untouched
    assert [m.training for m in net.modules()] == modes
    # the same scores as the network without dropout, its batch norms normalising with the test batch
    _, plain = _scenario_and_net(dropout=0.0)
    plain.load_state_dict(net.state_dict())
    x = runner.encode(torch.as_tensor(scenario.tasks[0].test.x))
    with torch.no_grad():
        with evaluation_mode(net):
            got = runner.sequence_scores(x)
        want = Continual(plain, scenario, steps=13, progress=False).sequence_scores(x)
    assert torch.equal(got, want)


def test_evaluation_uses_the_running_estimates_of_a_frozen_batch_norm():
    scenario, net = _scenario_and_net(dropout=0.0)
    runner = Continual(net, scenario, steps=13, progress=False)
    norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert norms
    x = runner.encode(torch.as_tensor(scenario.tasks[0].test.x))
    with torch.no_grad():
        with evaluation_mode(net):
            batch_stats = runner.sequence_scores(x)
        for m in norms:
            m.running_mean.add_(0.5)
            m.eval()  # frozen, as HLOP, GPM and freeze leave it
        with evaluation_mode(net):
            frozen = runner.sequence_scores(x)
        net.eval()
        want = runner.sequence_scores(x)
    assert torch.equal(frozen, want) and not torch.equal(frozen, batch_stats)
