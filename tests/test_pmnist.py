"""The HLOP paper's PMNIST network, HLOP on weighted firing rates, and experiments as data."""
import math

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.cli.commands import format_matrix
from neurosim.cli.main import main
from neurosim.continual.runner import Continual
from neurosim.datasets.images import generated, standardised
from neurosim.runs.experiment import HLOP_DIGITS, PERMUTED_DIGITS, build, with_plugins
from neurosim.models import pmnist
from neurosim.neurons import weighted_rate
from neurosim.plugins.hlop import HLOP
from neurosim.continual.scenarios import permuted


def test_network_shape_and_settings():
    net = pmnist.build_pmnist()
    sizes = [(c.projection.n_in, c.projection.n_out) for c in net.connections.values()]
    assert list(net.connections) == list(pmnist.LAYERS) and sizes == [(784, 800), (800, 800), (800, 10)]
    assert all(c.projection.bias is None for c in net.connections.values())
    assert isinstance(net.populations["h1"], ns.DSR) and net.dt == pmnist.DT


def test_readout_is_the_weighted_rate_of_its_input():
    net = pmnist.build_pmnist(n_in=12, hidden=16, n_out=3, dtype=torch.float64)
    net.probe("h2", "spikes", name="h2")
    res = net.run(torch.randn(pmnist.STEPS, 5, 12, dtype=torch.float64) * 3)
    drive = net.connections["h2_to_out"].projection(res.probes["h2"])
    expect = weighted_rate(drive, pmnist.TAU, pmnist.DT)
    assert torch.allclose(pmnist.readout(res.outputs["out"]), expect, rtol=1e-12, atol=1e-12)


def test_hlop_row_schedule_matches_the_paper():
    totals = [sum(pmnist.hlop_rows(t, layer) for t in range(10)) for layer in range(3)]
    assert totals == [470, 590, 490]
    assert [pmnist.hlop_rows(t, 0) for t in range(10)] == [80, 70, 70, 50, 50, 50, 30, 30, 30, 10]


def test_hlop_learns_from_weighted_firing_rates(monkeypatch):
    seen = {}

    def capture(self, sub, x, eta):
        seen.setdefault(id(sub), x.clone())

    monkeypatch.setattr(HLOP, "_hebbian", capture)
    data = standardised(generated(n_features=12, n_train=8, n_test=4))
    net = pmnist.build_pmnist(n_in=12, hidden=16, n_out=4, dtype=torch.float64)
    net.probe("h1", "spikes", name="h1")
    plugin = pmnist.hlop(rows=lambda task, layer: 2)
    spikes = []
    net.connections["h1_to_h2"].projection.register_forward_hook(
        lambda module, args, out: spikes.append(args[0].detach().clone()))
    runner = Continual(net, permuted(data, 1), [plugin], steps=pmnist.STEPS, readout=pmnist.readout,
                       batch_size=8, progress=False)
    runner.run()
    first, second = (seen[id(plugin.subspaces[name])] for name in pmnist.LAYERS[:2])
    # one row per sample: the constant input itself, then the weighted rate of h1's spikes
    assert first.shape == (8, 12) and torch.allclose(first, runner.inputs.double())
    train = next(z for z in spikes if z.shape[1] == 8)  # the first training batch (evaluation comes first)
    assert train.shape == (pmnist.STEPS, 8, 16) and train.abs().sum() > 0
    assert torch.equal(second, weighted_rate(train, pmnist.TAU, pmnist.DT))


def test_experiment_config_builds_and_runs():
    config = with_plugins(PERMUTED_DIGITS, [dict(HLOP_DIGITS, rows_per_task=[[4, 8, 8]] * 2)])
    config["model"]["hidden"] = 24
    config["scenario"]["tasks"] = 2
    config["training"]["epochs"] = 1
    runner = build(config, progress=False)
    assert [type(p).__name__ for p in runner.plugins] == ["HLOP"]
    r = runner.run()
    assert r.R.shape == (2, 2) and np.isfinite(r.R).all() and r.R[0, 0] > 0.3  # chance 0.1
    assert PERMUTED_DIGITS["plugins"] == []  # with_plugins copies


def test_experiment_config_selects_the_learner():
    config = with_plugins(PERMUTED_DIGITS, [dict(HLOP_DIGITS, rows_per_task=[[4, 8, 8]] * 2)])
    config["training"]["learning"] = "three_factor"
    runner = build(config, progress=False)
    assert type(runner.learning).__name__ == "ThreeFactorLearner"
    assert type(build(PERMUTED_DIGITS, progress=False).learning).__name__ == "BPTT"


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(extra=1), "unknown experiment key 'extra'"),
    (lambda c: c["model"].update(name="nope"), "model.name must be one of: .*; got 'nope'"),
    (lambda c: c["model"].update(width=3), "unknown model parameter 'width'"),
    (lambda c: c["scenario"].update(data="cifar"), "scenario.data must be one of: .*; got 'cifar'"),
    (lambda c: c["training"].update(lr_decay=1), "unknown training key 'lr_decay'"),
    (lambda c: c.update(plugins=[{"name": "nope"}]), "unknown plugin 'nope'"),
    (lambda c: c.update(plugins=[{"name": "ewc", "lambda": 1}]), r"plugins\[0\] \(ewc\) parameter 'lambda'"),
    (lambda c: c["training"].update(learning="stdp"), "training.learning must be one of: .*; got 'stdp'"),
])
def test_bad_experiment_configs(change, message):
    config = with_plugins(PERMUTED_DIGITS, [])
    change(config)
    with pytest.raises(ns.NeurosimError, match=message):
        build(config, progress=False)


def test_cli_matrix_format_and_methods(capsys):
    R = np.array([[0.5, np.nan], [0.25, 1.0]])
    lines = format_matrix(R).splitlines()
    assert lines[1].split() == ["task", "0", "50.0", "-"] and lines[2].split() == ["task", "1", "25.0", "100.0"]
    assert main(["run", "--methods", "baseline,magic", "--quiet"]) == 2
    assert "unknown method 'magic'" in capsys.readouterr().err
