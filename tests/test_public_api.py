"""The public API: ``python -m neurosim``, the names importable from ``neurosim`` itself, ``Network`` as an
``nn.Module`` (``net(x)`` is ``net.run(x)``) and state dicts that round trip through a file."""
import subprocess
import sys

import pytest
import torch

import neurosim as ns


def test_python_m_neurosim_is_the_command(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "neurosim", "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0
    assert "usage: neurosim" in ok.stdout and "resume" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "neurosim", "inspect", str(tmp_path / "missing.h5")],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "missing.h5" in bad.stderr


def test_every_public_name_is_there():
    missing = [name for name in ns.__all__ if not hasattr(ns, name)]
    assert not missing
    for name in ("Continual", "permuted", "split", "digits", "standardised", "create_plugin", "BPTT",
                 "ThreeFactorLearner", "EPropLearner", "Plugin", "RunStore", "STDP"):
        assert name in ns.__all__
    # subpackages and the modules a user reaches through them
    assert callable(ns.models.pmnist.build_pmnist) and callable(ns.models.delays.build_delay_net)
    assert callable(ns.runs.experiment.start) and callable(ns.runs.replay.replay)
    assert callable(ns.datasets.fsdd) and callable(ns.reservoirs.lif_reservoir)
    # a plugin made by name is the class the package exports
    assert type(ns.create_plugin("ewc")) is ns.plugins.EWC
    assert set(ns.available_plugins()) >= {"hlop", "ewc", "si", "metaplasticity", "replay"}


def test_the_continual_example_needs_one_import():
    data = ns.standardised(ns.digits())
    scenario = ns.permuted(data, n_tasks=2)
    assert len(scenario.tasks) == 2 and scenario.tasks[0].train.x.shape[1] == 64


def readme_network() -> ns.Network:
    net = ns.Network(dt=1.0)
    net.add_input("x", 30)
    net.add("h", ns.LIF(40, tau_mem=10.0, v_th=1.0, spike_fn="atan"))
    net.add("a", ns.ALIF(20, tau_adapt=100.0, v_th=0.5 + torch.rand(20), b=0.5))
    net.add("out", ns.LI(5, tau_mem=10.0))
    net.connect("x", "h", ns.Dense(30, 40, scale=3.0))
    net.connect("h", "h", ns.Sparse(40, 40, p=0.2, weight=torch.randn(1).item(), learnable=True))
    net.connect("x", "a", ns.Delayed(30, 20, max_delay=5))
    net.connect("h", "out", ns.Dense(40, 5))
    net.connect("a", "out", ns.Dense(20, 5))
    return net


def test_network_call_is_run_and_fires_forward_hooks():
    torch.manual_seed(0)
    net = readme_network()
    x = torch.rand(12, 3, 30)
    seen = []
    net.register_forward_hook(lambda module, args, result: seen.append(result))
    by_call = net(x)
    by_run = net.run(x)
    assert isinstance(by_call, ns.RunResult) and len(seen) == 2 and seen[1] is by_run
    assert torch.equal(by_call.outputs["out"], by_run.outputs["out"])
    assert by_call.outputs["out"].shape == (12, 3, 5)
    assert isinstance(net, torch.nn.Module)


@pytest.mark.parametrize("grad", [True, False], ids=["bptt", "no-grad"])
def test_state_dict_round_trips_into_a_new_network(tmp_path, grad):
    """Save, build the same structure anew (other random weights, connectivity and per-neuron
    parameters), load: the same outputs, with and without gradients (compiled loop)."""
    torch.manual_seed(1)
    first = readme_network()
    torch.manual_seed(2)
    second = readme_network()
    x = (torch.rand(15, 4, 30) < 0.3).float()
    with torch.set_grad_enabled(grad):
        expected = first(x).outputs["out"].detach()
        assert not torch.equal(second(x).outputs["out"].detach(), expected)
        torch.save(first.state_dict(), tmp_path / "net.pt")
        second.load_state_dict(torch.load(tmp_path / "net.pt", weights_only=True))
        assert torch.equal(second(x).outputs["out"].detach(), expected)
    assert second.projections["h_to_h"].nnz == first.projections["h_to_h"].nnz


def test_a_state_of_another_structure_is_refused():
    net = readme_network()
    other = ns.Network(dt=1.0)
    other.add_input("x", 30)
    other.add("h", ns.LIF(41))
    other.connect("x", "h", ns.Dense(30, 41))
    with pytest.raises(RuntimeError, match="size mismatch|Missing key"):
        net.load_state_dict(other.state_dict())


@pytest.mark.parametrize("module, extra", [("sklearn", "data"), ("matplotlib", "plots")])
def test_a_missing_extra_is_named(monkeypatch, tmp_path, module, extra):
    """scikit-learn (the digits set) and matplotlib (plots) are extras: without them, one line says which."""
    for name in [m for m in sys.modules if m == module or m.startswith(module + ".")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    from neurosim.cli.plots import plot

    with pytest.raises(ns.NeurosimError, match=rf"pip install 'neurosim\[{extra}\]'"):
        if extra == "data":
            ns.digits()
        else:
            plot(tmp_path / "run.h5", "accuracy", tmp_path / "a.png")
