"""E/I homeostasis: the update against its closed form, its sign, convergence on LIF and Izhikevich
reservoirs, Beta(2, 2) targets, untouched excitatory weights, bad input."""
import math

import numpy as np
import pytest
import torch
from scipy import stats

from neurosim import LIF, Dense, Network, NeurosimError, Sparse
from neurosim.learning.homeostasis import (EIHomeostasis, HomeostasisParameters, adapt, inhibitory_update, target_rates,
                                  window_rates)
from neurosim.reservoirs.builders import izhikevich_reservoir, lif_reservoir


def small_net(inh_projection) -> Network:
    net = Network(dt=0.5)
    net.add("neurons", LIF(4))
    net.connect("neurons", "neurons", inh_projection, name="inh")
    return net


def spikes_with_counts(counts, steps: int) -> torch.Tensor:
    """[steps, 1, n] spikes, neuron i firing counts[i] times."""
    z = torch.zeros(steps, 1, len(counts))
    for i, c in enumerate(counts):
        z[:c, 0, i] = 1
    return z


PRE = np.array([0, 0, 1, 2, 3, 3, 3])
POST = np.array([1, 2, 0, 3, 0, 1, 2])
W = np.array([0.5, 2.0, 0.05, 1.0, 0.3, 2.9, 0.0])


@pytest.mark.parametrize("dale", ["inh", None])
def test_update_equals_closed_form(dale):
    """Two windows with a rate trace; every synapse A <- clip(A + delta (r_post - rho_post), 0, w_max)."""
    weight = W if dale else -W
    net = small_net(Sparse(4, 4, pre=PRE, post=POST, weight=weight, dale=dale, channel="inh", dtype=torch.float64))
    params = HomeostasisParameters(delta=0.01, rate_low=5.0, rate_high=45.0, w_max=3.0, tau=50.0)
    rule = EIHomeostasis(net, params=params, seed=3)
    rho = 5.0 + 40.0 * np.random.default_rng(3).beta(2, 2, 4)
    np.testing.assert_array_equal(rule.targets.numpy(), rho)
    steps, counts = [40, 20], [[0, 3, 1, 8], [0, 1, 5, 1]]
    magnitude, r = W.copy(), None
    for t, c in zip(steps, counts):
        rate = 1000.0 * np.array(c) / (t * net.dt)
        a = math.exp(-t * net.dt / params.tau)
        r = rate if r is None else a * r + (1 - a) * rate
        magnitude = np.clip(magnitude + params.delta * (r - rho)[POST], 0.0, params.w_max)
        rule.observe(spikes_with_counts(c, t))
        rule.update()
        np.testing.assert_allclose(rule.rates.numpy(), r, rtol=1e-12)
        w = net.projections["inh"].effective_weight().detach().numpy()
        np.testing.assert_allclose(w, -magnitude, rtol=1e-12, atol=1e-15)
    assert (magnitude == 0).any() and (magnitude == params.w_max).any()  # both clips were exercised


def test_dense_projection_updates_only_inhibitory_synapses_in_the_mask():
    rng = np.random.default_rng(0)
    mask = rng.random((4, 4)) < 0.6
    signs = torch.tensor([1.0, -1.0, -1.0, 1.0])
    weight = torch.as_tensor(rng.uniform(0.5, 1.0, (4, 4)), dtype=torch.float64)
    net = small_net(Dense(4, 4, weight=weight, mask=mask, dale=signs, channel="inh", dtype=torch.float64))
    rule = EIHomeostasis(net, params=HomeostasisParameters(delta=0.02, rate_low=0.0, rate_high=10.0))
    rule.observe(spikes_with_counts([9, 0, 4, 2], 100))
    rule.update()
    expected = weight.numpy().copy()
    error = rule.error().numpy()
    changed = mask & (signs.numpy() < 0)[None, :]
    rows = np.nonzero(changed)[0]
    expected[changed] = np.clip(expected[changed] + 0.02 * error[rows], 0.0, None)
    np.testing.assert_allclose(net.projections["inh"].weight.detach().numpy(), expected, rtol=1e-12)


def test_pure_update_sign():
    """Above target: more inhibition; below: less; never below zero magnitude."""
    magnitude = torch.tensor([1.0, 1.0, 0.1])
    post = torch.tensor([0, 1, 1])
    error = torch.tensor([4.0, -3.0])
    new = inhibitory_update(magnitude, post, error, delta=0.1)
    assert new[0] > magnitude[0] and new[1] < magnitude[1] and new[2] == 0
    assert torch.allclose(new, torch.tensor([1.4, 0.7, 0.0]))


def test_sign_in_a_network():
    net = small_net(Sparse(4, 4, pre=PRE, post=POST, weight=1.0, dale="inh", channel="inh"))
    rule = EIHomeostasis(net, params=HomeostasisParameters(delta=0.01, rate_low=10.0, rate_high=10.0))
    rule.observe(spikes_with_counts([40, 0, 40, 0], 200))  # 40 Hz, 0 Hz against a 10 Hz target
    before = net.projections["inh"].effective_weight().clone()
    rule.update()
    after = net.projections["inh"].effective_weight()
    post = net.projections["inh"].post
    above = (post == 0) | (post == 2)
    assert (after[above] < before[above]).all() and (after[~above] > before[~above]).all()


def test_window_rates():
    z = torch.zeros(200, 2, 3)
    z[:10, 0, 0] = 1
    z[:30, 1, 0] = 1
    z[::2, :, 2] = 1
    np.testing.assert_allclose(window_rates(z, 0.5).numpy(), [200.0, 0.0, 1000.0])


def test_targets_are_beta_2_2():
    lo, hi, n = 3.0, 23.0, 40000
    rho = target_rates(n, lo, hi, np.random.default_rng(11)).numpy()
    assert rho.min() >= lo and rho.max() <= hi
    b = (rho - lo) / (hi - lo)
    var = 1 / 20  # Beta(2, 2): mean 1/2, variance ab / ((a + b)^2 (a + b + 1)), excess kurtosis -6/7
    assert abs(b.mean() - 0.5) < 5 * math.sqrt(var / n)
    assert abs(b.var() - var) < 5 * var * math.sqrt((3 - 6 / 7 - 1) / n)
    assert stats.kstest(b, stats.beta(2, 2).cdf).pvalue > 1e-3
    assert stats.kstest(b, stats.uniform().cdf).pvalue < 1e-6  # the test tells Beta(2, 2) from uniform


def lif_drive(n: int, steps: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 0.6 * torch.randn(steps, 1, n, generator=g)


def test_mismatch_falls_on_a_lif_reservoir_and_excitatory_weights_stay():
    net = lif_reservoir(200, p=0.1, w_exc=1.0, w_inh=-4.0, v0=(-60.0, -50.0), dt=1.0, seed=1)
    exc_before = net.projections["exc"].weight.clone()
    inh_before = net.projections["inh"].weight.clone()
    rule = EIHomeostasis(net, params=HomeostasisParameters(delta=0.01, rate_low=5.0, rate_high=30.0))
    steps = 40000
    res = adapt(net, steps, 500, inputs={"neurons": lif_drive(200, steps, 0)}, rule=rule)
    assert res.mismatch.shape == (80,)
    assert res.mismatch[-5:].mean() < 0.4 * res.mismatch[:5].mean()
    assert torch.equal(net.projections["exc"].weight, exc_before)
    assert not torch.equal(net.projections["inh"].weight, inh_before)
    assert (net.projections["inh"].effective_weight() <= 0).all()


def test_mismatch_falls_on_an_izhikevich_reservoir():
    n, steps = 200, 60000
    net = izhikevich_reservoir(n, p=1.0, seed=1)
    exc_before = net.projections["exc"].weight.clone()
    g = torch.Generator().manual_seed(0)
    x = 5.0 + 4.0 * torch.randn(steps, 1, n, generator=g)
    params = HomeostasisParameters(delta=0.05, rate_low=2.0, rate_high=20.0, w_max=10.0, tau=5000.0)
    res = adapt(net, steps, 1000, inputs={"neurons": x}, rule=EIHomeostasis(net, params=params))
    assert res.mismatch[-5:].mean() < 0.5 * res.mismatch[:5].mean()
    assert torch.equal(net.projections["exc"].weight, exc_before)
    assert net.projections["inh"].weight.max() <= 10.0


def test_adapt_continues_a_run_in_windows():
    """Windows with updates switched off reproduce one uninterrupted run."""
    net = lif_reservoir(100, p=0.1, v0=(-60.0, -50.0), dt=1.0, seed=2)
    x = lif_drive(100, 700, 1)
    whole = net.run({"neurons": x}, outputs=["neurons"]).outputs["neurons"]
    rule = EIHomeostasis(net)
    rule.update = lambda: None
    res = adapt(net, 700, 300, inputs={"neurons": x}, rule=rule)
    assert torch.equal(res.state["neurons"][1], whole[-1])
    np.testing.assert_allclose(rule.rates.numpy(), window_rates(whole[600:], net.dt).numpy())


def test_bad_input():
    net = lif_reservoir(50, p=0.1, seed=0)
    with pytest.raises(NeurosimError, match="unknown projection 'nope'"):
        EIHomeostasis(net, "nope")
    with pytest.raises(NeurosimError, match="delta"):
        HomeostasisParameters(delta=0.0)
    with pytest.raises(NeurosimError, match="rate_high must be >= rate_low"):
        HomeostasisParameters(rate_low=10.0, rate_high=5.0)
    with pytest.raises(NeurosimError, match="w_max"):
        HomeostasisParameters(w_max=-1.0)
    with pytest.raises(NeurosimError, match="params must be HomeostasisParameters"):
        EIHomeostasis(net, params={"delta": 0.1})
    positive = small_net(Sparse(4, 4, pre=PRE, post=POST, weight=0.5, channel="inh"))
    with pytest.raises(NeurosimError, match="positive weights"):
        EIHomeostasis(positive)
    excitatory = small_net(Sparse(4, 4, pre=PRE, post=POST, weight=0.5, dale="exc", channel="inh"))
    with pytest.raises(NeurosimError, match="no inhibitory synapses"):
        EIHomeostasis(excitatory)
    for bad in (torch.ones(49), torch.full((50,), -1.0), torch.full((50,), float("nan"))):
        with pytest.raises(NeurosimError, match="targets must be 50 finite rates >= 0"):
            EIHomeostasis(net, targets=bad)
    given = torch.linspace(1.0, 20.0, 50)
    assert torch.equal(EIHomeostasis(net, targets=given).targets, given.double())
    rule = EIHomeostasis(net)
    with pytest.raises(NeurosimError, match="observe a window"):
        rule.update()
    with pytest.raises(NeurosimError, match=r"spikes must be \[T, B, 50\]"):
        rule.observe(torch.zeros(10, 1, 49))
    with pytest.raises(NeurosimError, match="window must be a positive integer"):
        adapt(net, 100, 0)
    with pytest.raises(NeurosimError, match="built on this network"):
        adapt(lif_reservoir(50, p=0.1, seed=1), 100, 10, rule=rule)
    with pytest.raises(NeurosimError, match=r"input 'neurons' must be a \[steps=100"):
        adapt(net, 100, 10, inputs={"neurons": torch.zeros(99, 1, 50)})
