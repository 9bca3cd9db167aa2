"""Reservoir builders: E/I layout, connection probability, Dale's law, heterogeneity, inputs, validation."""
import math

import numpy as np
import pytest
import torch

from neurosim import NeurosimError
from neurosim.reservoirs.builders import ei_sizes, izhikevich_reservoir, lif_reservoir, spike_events


def connection_counts_ok(count: int, trials: int, p: float) -> bool:
    """``count`` within 5 binomial standard deviations of ``trials * p``."""
    return abs(count - trials * p) <= 5 * math.sqrt(trials * p * (1 - p))


@pytest.mark.parametrize("builder", [lif_reservoir, izhikevich_reservoir])
def test_layout_probability_and_dale(builder):
    n, p = 1000, 0.05
    net = builder(n, exc_fraction=0.75, p=p, seed=1)
    assert list(net.populations) == ["neurons"] and net.populations["neurons"].n == n
    exc, inh = net.projections["exc"], net.projections["inh"]
    assert (exc.n_in, exc.n_out, inh.n_in, inh.n_out) == (n, n, n, n)
    assert (exc.channel, inh.channel) == ("exc", "inh")
    assert (exc.pre < 750).all() and (inh.pre >= 750).all()
    assert (exc.signs[:750] == 1).all() and (inh.signs[750:] == -1).all()
    assert connection_counts_ok(exc.nnz, 750 * n, p) and connection_counts_ok(inh.nnz, 250 * n, p)
    w = exc.to_dense() + inh.to_dense()
    assert (w[:, :750] >= 0).all() and (w[:, 750:] <= 0).all()
    assert (w != 0).sum() == exc.nnz + inh.nnz
    assert set(net.connections) == {"exc", "inh"} and not net.inputs


def test_lif_weights_and_defaults():
    net = lif_reservoir(500, p=0.1, w_exc=0.7, w_inh=-2.5, seed=0)
    assert torch.all(net.projections["exc"].effective_weight() == 0.7)
    assert torch.all(net.projections["inh"].effective_weight() == -2.5)
    p = net.populations["neurons"].params
    assert p.reset == "zero" and p.tau_syn_inh is not None and net.dt == 0.1
    assert net.populations["neurons"].has_inh_channel


def test_izhikevich_weights_are_uniform_scaled():
    net = izhikevich_reservoir(400, p=0.5, w_exc=0.3, w_inh=-2.0, seed=2)
    we, wi = net.projections["exc"].effective_weight(), net.projections["inh"].effective_weight()
    assert 0 < we.min() and we.max() <= 0.3 and abs(we.mean().item() - 0.15) < 0.01
    assert -2.0 <= wi.min() and wi.max() < 0 and abs(wi.mean().item() + 1.0) < 0.05


def test_seed_determines_the_network():
    a, b, c = (lif_reservoir(300, p=0.1, heterogeneity=0.2, seed=s) for s in (4, 4, 5))
    assert torch.equal(a.projections["exc"].post, b.projections["exc"].post)
    assert torch.equal(a.populations["neurons"].params.tau_mem, b.populations["neurons"].params.tau_mem)
    assert not torch.equal(a.populations["neurons"].params.tau_mem, c.populations["neurons"].params.tau_mem)


def test_no_autapses():
    for builder in (lif_reservoir, izhikevich_reservoir):
        net = builder(200, p=0.5, autapses=False, seed=0)
        for name in ("exc", "inh"):
            proj = net.projections[name]
            assert proj.nnz > 0 and not (proj.pre == proj.post).any()


def test_lif_heterogeneity():
    h, tau, v_th, v_reset = 0.3, 20.0, -50.0, -60.0
    p = lif_reservoir(4000, heterogeneity=h, tau_mem=tau, v_th=v_th, v_reset=v_reset, seed=0,
                      dtype=torch.float64).populations["neurons"].params
    for values, centre, half_width in ((p.tau_mem, tau, h * tau), (p.v_th, v_th, h * (v_th - v_reset))):
        assert values.shape == (4000,)
        assert (values - centre).abs().max() <= half_width
        assert abs(values.mean().item() - centre) < 0.05 * half_width
        assert abs(values.std().item() - half_width / math.sqrt(3)) < 0.05 * half_width
    homogeneous = lif_reservoir(100, seed=0).populations["neurons"].params
    assert homogeneous.tau_mem == 20.0 and homogeneous.v_th == -50.0


@pytest.mark.parametrize("h", [0.0, 0.5, 1.0])
def test_izhikevich_heterogeneity(h):
    net = izhikevich_reservoir(1000, p=0.01, heterogeneity=h, seed=0, dtype=torch.float64)
    p = net.populations["neurons"].params
    r_exc = torch.sqrt((p.c[:800] + 65) / 15)
    r_inh = (p.a[800:] - 0.02) / 0.08
    assert torch.allclose(p.d[:800], 8 - 6 * r_exc ** 2)
    assert torch.all(p.a[:800] == 0.02) and torch.all(p.b[:800] == 0.2)
    assert torch.allclose(p.b[800:], 0.25 - 0.05 * r_inh) and torch.all(p.c[800:] == -65) and torch.all(p.d[800:] == 2)
    for r in (r_exc, r_inh):
        assert r.min() >= 0 and r.max() <= h
        if h > 0:
            assert abs(r.mean().item() - h / 2) < 0.05 * h


def test_lif_initial_voltage_range():
    v0 = lif_reservoir(2000, v0=(-60.0, -50.0), seed=0, dtype=torch.float64).populations["neurons"].v0
    assert v0.min() >= -60 and v0.max() < -50 and abs(v0.mean().item() + 55) < 0.3


def test_input_projection_feeds_the_reservoir():
    net = lif_reservoir(200, p=0.1, n_inputs=20, p_in=0.2, w_in=30.0, seed=0)
    proj = net.projections["input"]
    assert net.inputs == {"input": 20} and (proj.n_in, proj.n_out) == (20, 200)
    assert connection_counts_ok(proj.nnz, 20 * 200, 0.2)
    silent = lif_reservoir(200, p=0.1, v_leak=-65.0, n_inputs=20, p_in=0.2, w_in=30.0, seed=0)
    x = (torch.rand(300, 1, 20, generator=torch.Generator().manual_seed(0)) < 0.05).float()
    assert spike_events(silent, 300, inputs={"input": x})[0].size > 0
    assert spike_events(silent, 300, inputs={"input": torch.zeros(300, 1, 20)})[0].size == 0


def test_spike_events_independent_of_chunking():
    net = lif_reservoir(1000, seed=3, v0=(-60.0, -50.0), dtype=torch.float64)
    whole = spike_events(net, 600, chunk=600)
    parts = spike_events(net, 600, chunk=137)
    assert whole[0].size > 100
    np.testing.assert_array_equal(whole[0], parts[0])
    np.testing.assert_array_equal(whole[1], parts[1])


def test_ei_sizes():
    assert ei_sizes(1000, 0.8) == (800, 200)
    assert ei_sizes(10, 0.85) == (8, 2)


@pytest.mark.parametrize("builder, kwargs, name", [
    (lif_reservoir, dict(n=1), "n"),
    (lif_reservoir, dict(n=100.0), "n"),
    (lif_reservoir, dict(n=100, exc_fraction=1.2), "exc_fraction"),
    (lif_reservoir, dict(n=100, exc_fraction=1.0), "exc_fraction"),
    (izhikevich_reservoir, dict(n=100, exc_fraction=0.001), "exc_fraction"),
    (lif_reservoir, dict(n=100, p=-0.1), "p"),
    (izhikevich_reservoir, dict(n=100, p=1.5), "p"),
    (lif_reservoir, dict(n=100, p=float("nan")), "p"),
    (lif_reservoir, dict(n=100, w_exc=-1.0), "w_exc"),
    (izhikevich_reservoir, dict(n=100, w_inh=1.0), "w_inh"),
    (lif_reservoir, dict(n=100, heterogeneity=1.0), "heterogeneity"),
    (izhikevich_reservoir, dict(n=100, heterogeneity=1.5), "heterogeneity"),
    (lif_reservoir, dict(n=100, heterogeneity="wide"), "heterogeneity"),
    (lif_reservoir, dict(n=100, v_th=-70.0), "v_th"),
    (lif_reservoir, dict(n=100, v0=(-50.0, -60.0)), "v0"),
    (lif_reservoir, dict(n=100, tau_mem=-1.0), "tau_mem"),
    (lif_reservoir, dict(n=100, n_inputs=-1), "n_inputs"),
    (izhikevich_reservoir, dict(n=100, n_inputs=4, p_in=2.0), "p_in"),
    (izhikevich_reservoir, dict(n=100, n_inputs=4, w_in=float("inf")), "w_in"),
    (lif_reservoir, dict(n=100, seed=-3), "seed"),
    (izhikevich_reservoir, dict(n=100, dt=0.0), "dt"),
    (lif_reservoir, dict(n=100, dtype=torch.int32), "dtype"),
])
def test_bad_arguments(builder, kwargs, name):
    with pytest.raises(NeurosimError, match=rf"^{name}\b") as info:
        builder(**kwargs)
    assert "\n" not in str(info.value)
