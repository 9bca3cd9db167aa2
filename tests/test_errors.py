"""Bad input gives one clear NeurosimError (a ValueError) naming the problem; the CLI exits non-zero."""
import pytest
import torch

from neurosim import LIF, Dense, Izhikevich, Network, NeurosimError, Sparse, create_plugin
from neurosim.cli.main import main


def small_net():
    net = Network(dt=1.0)
    net.add_input("x", 3)
    net.add("h", LIF(4))
    net.connect("x", "h", Dense(3, 4))
    return net


@pytest.mark.parametrize("make, match", [
    (lambda: LIF(4, tau=3.0), "unknown LIF parameter 'tau'"),
    (lambda: Izhikevich(4, e=1.0), "unknown Izhikevich parameter 'e'"),
    (lambda: Izhikevich(4, cell_type="XX"), "unknown Izhikevich type 'XX'"),
    (lambda: LIF(4, tau_mem=-1.0), "tau_mem must be > 0"),
    (lambda: LIF(4, tau_mem=0.0), "tau_mem must be > 0"),
    (lambda: LIF(4, tau_ref=-2.0), "tau_ref must be >= 0"),
    (lambda: LIF(4, reset="hard"), "unknown reset 'hard'"),
    (lambda: LIF(4, dt=-0.1), "dt must be > 0"),
    (lambda: Network(dt=-1.0), "dt must be > 0"),
    (lambda: LIF(4, tau_mem=torch.tensor([1.0, 2.0, 3.0])), "3 values for a population of 4"),
    (lambda: LIF(0), "population size"),
    (lambda: Dense(3, 4, weight=torch.zeros(3, 3)), r"weight must have shape \(4, 3\)"),
    (lambda: Sparse(3, 4, p=1.5), "probability p"),
    (lambda: LIF(4, spike_fn="relu"), "unknown surrogate 'relu'"),
    (lambda: create_plugin("si", c="1"), "c must be a number, got '1'"),
    (lambda: create_plugin("si", c=True), "c must be a number, got True"),
    (lambda: create_plugin("ewc", lam=True), "lam must be a number, got True"),
    (lambda: create_plugin("ewc", lamda=1.0), "unknown plugin 'ewc' parameter 'lamda'; known: lam, online, "),
])
def test_bad_parameters(make, match):
    with pytest.raises(NeurosimError, match=match):
        make()


def test_bad_network_inputs():
    net = small_net()
    with pytest.raises(NeurosimError, match=r"input 'x' must have shape \[T, B, 3\], got \(5, 2, 4\)"):
        net.run(torch.zeros(5, 2, 4))
    with pytest.raises(NeurosimError, match=r"shape \[T, B, 3\]"):
        net.run(torch.zeros(5, 3))
    x = torch.zeros(5, 2, 3)
    x[2, 1, 0] = float("nan")
    with pytest.raises(NeurosimError, match="input 'x' contains NaN"):
        net.run(x)
    with pytest.raises(NeurosimError, match="unknown input 'y'"):
        net.run({"x": torch.zeros(5, 2, 3), "y": torch.zeros(5, 2, 3)})
    with pytest.raises(NeurosimError, match="maps 3->4 but the populations have 4 and 4"):
        net.connect("h", "h", Dense(3, 4))
    with pytest.raises(NeurosimError, match="unknown population or input 'z'"):
        net.connect("z", "h", Dense(3, 4))
    with pytest.raises(NeurosimError, match="has no variable 'w'"):
        net.probe("h", "w")
    with pytest.raises(NeurosimError, match="already has a population or input named 'h'"):
        net.add("h", LIF(2))


def test_bad_population_input():
    with pytest.raises(NeurosimError, match=r"last dimension 4, got shape \(10, 2, 5\)"):
        LIF(4, dt=1.0)(torch.zeros(10, 2, 5))
    with pytest.raises(NeurosimError, match="contains infinite values"):
        LIF(4, dt=1.0)(torch.full((10, 2, 4), float("inf")))


def test_finite_check_takes_values_whose_sum_overflows_and_names_nan_and_infinity():
    from neurosim.errors import check_finite

    big = torch.full((4, 3), 3e38)  # finite, but their float32 sum is not
    assert not torch.isfinite(big.sum())
    check_finite("x", big)
    check_finite("x", torch.tensor([[1.0, -2.0]], requires_grad=True))
    check_finite("x", torch.tensor([1, 2]))
    for bad, kind in ((float("nan"), "NaN"), (float("inf"), "infinite values"), (-float("inf"), "infinite values")):
        x = big.clone()
        x[2, 1] = bad
        with pytest.raises(NeurosimError, match=f"x contains {kind}"):
            check_finite("x", x)
    x = torch.zeros(3)
    x[0], x[1] = float("inf"), -float("inf")  # a NaN sum from infinities alone
    with pytest.raises(NeurosimError, match="x contains infinite values"):
        check_finite("x", x)


def test_cli_rejects_bad_arguments(capsys):
    assert main(["run", "nosuchnet", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown experiment 'nosuchnet'" in err[0]
    assert main(["run", "cuba", "--duration", "-5", "--quiet"]) == 2
    assert "duration must be > 0 ms" in capsys.readouterr().err


def test_cli_checks_the_raster_path_before_simulating(capsys, tmp_path):
    assert main(["run", "cuba", "--quiet", "--raster", str(tmp_path / "missing" / "x.png")]) == 2
    err = capsys.readouterr()
    assert "is not a writable directory" in err.err and "spikes" not in err.out
