"""Delays in the run file: saved with every checkpoint, restored on resume, plotted as a histogram."""
import numpy as np
import pytest
import torch

from neurosim import LI, LIF, Delayed, Network, NeurosimError
from neurosim.cli.main import main
from neurosim.continual.runner import Continual
from neurosim.datasets.images import digits, standardised
from neurosim.cli.plots import checkpoint_delays
from neurosim.continual.scenarios import permuted
from neurosim.storage.store import RunStore


def delay_net(max_delay=6, seed=0):
    torch.manual_seed(seed)
    net = Network(dt=1.0)
    net.add_input("x", 64)
    net.add("h", LIF(32, tau_mem=5.0))
    net.add("o", LI(10, tau_mem=5.0))
    net.connect("x", "h", Delayed(64, 32, max_delay, scale=2.0))
    net.connect("h", "o", Delayed(32, 10, max_delay, delays="random"))
    return net


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("delays") / "run.h5"
    scenario = permuted(standardised(digits()), 2, seed=0)
    kw = dict(steps=10, encoding="rate", batch_size=64, lr=0.05, optimizer="adam", progress=False)
    runner = Continual(delay_net(), scenario, **kw, checkpoint_every=5)
    with RunStore.create(path, {"name": "delays"}, n_tasks=2) as store:
        runner.store = store
        runner.run()
    return path, runner.network


def test_checkpoints_hold_the_delays_and_restore_them(run_file):
    path, net = run_file
    with RunStore.open(path) as store:
        _, state = store.latest_checkpoint()
    found = checkpoint_delays(state["network"])
    assert set(found) == {"x_to_h", "h_to_o"}
    for name, (d, D) in found.items():
        proj = net.projections[name]
        assert D == proj.max_delay
        assert np.array_equal(d, proj.rounded_delays().numpy())
    fresh = delay_net(seed=1)
    fresh.load_state_dict(state["network"])
    assert torch.equal(fresh.projections["x_to_h"].positions, net.projections["x_to_h"].positions)
    assert torch.equal(fresh.projections["h_to_o"].fixed_delays, net.projections["h_to_o"].fixed_delays)
    assert fresh.projections["x_to_h"].sigma == net.projections["x_to_h"].sigma


def test_a_checkpoint_loads_only_into_the_same_maximum_delay(run_file):
    path, _ = run_file
    with RunStore.open(path) as store:
        _, state = store.latest_checkpoint()
    with pytest.raises(NeurosimError, match="max_delay"):
        delay_net(max_delay=7).load_state_dict(state["network"])


def test_positions_outside_the_range_in_a_loaded_file_are_refused(run_file):
    path, _ = run_file
    with RunStore.open(path) as store:
        _, state = store.latest_checkpoint()
    state["network"]["projections.x_to_h.positions"][0, 0] = 9.0  # D = 6: positions lie in [-3, 2]
    with pytest.raises(NeurosimError, match=r"positions must lie in \[-3, 2\]"):
        delay_net().load_state_dict(state["network"])


def test_inspect_lists_the_delays(run_file, capsys):
    path, net = run_file
    assert main(["inspect", str(path)]) == 0
    out = capsys.readouterr().out
    d = net.projections["x_to_h"].rounded_delays()
    assert f"x_to_h: {d.min()}-{d.max()} steps, mean {d.double().mean():.2f} (max_delay 6, 2048 synapses)" in out
    assert "h_to_o:" in out


def test_plot_delays_histogram(run_file, tmp_path, capsys):
    path, _ = run_file
    out = tmp_path / "delays.png"
    assert main(["plot", str(path), "delays", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000
    assert main(["plot", str(path), "delays", "--checkpoint", "0", "--out", str(out)]) == 0
    assert main(["plot", str(path), "delays", "--checkpoint", "999", "--out", str(out)]) == 2
    assert "no checkpoint 999" in capsys.readouterr().err
