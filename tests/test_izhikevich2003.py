"""The Izhikevich (2003) network: activity figures over five seeds, and the published code's loop.

Izhikevich's (2003) network, run as its original code runs it, gives about 7,450-7,840 spikes in 1000 ms and 7-8 Hz in both populations
(float64, five seeds). Over seeds 0-4, the spike count of every seed and the five-seed means of the
count and of the E and I rates must lie within 10 % of the midpoints. (Across 40 seeds the I rate is
7.27 +- 0.31 Hz, so a single seed's I rate can fall just outside 10 %; the mean of five cannot.)
"""
import numpy as np
import pytest
import torch

from neurosim.errors import NeurosimError
from neurosim.models.izhikevich2003 import build_izhikevich2003, run_izhikevich2003
from neurosim.reservoirs.builders import spike_events

SPIKES_ANCHOR = (7450 + 7840) / 2
RATE_ANCHOR = (7.0 + 8.0) / 2  # Hz
TOL = 0.10


SEEDS = range(5)


@pytest.fixture(scope="module")
def activity():
    return [run_izhikevich2003(1000, seed=seed) for seed in SEEDS]


def test_spike_count_of_every_seed_matches_reference(activity):
    for res in activity:
        assert abs(res.spike_count - SPIKES_ANCHOR) <= TOL * SPIKES_ANCHOR, res


def test_mean_activity_matches_reference(activity):
    count, rate_exc, rate_inh = np.mean([tuple(res) for res in activity], axis=0)
    assert abs(count - SPIKES_ANCHOR) <= TOL * SPIKES_ANCHOR, activity
    assert abs(rate_exc - RATE_ANCHOR) <= TOL * RATE_ANCHOR, activity
    assert abs(rate_inh - RATE_ANCHOR) <= TOL * RATE_ANCHOR, activity


def test_network_structure():
    net = build_izhikevich2003(seed=3)
    s = (net.projections["exc"].to_dense() + net.projections["inh"].to_dense()).numpy()
    assert s.shape == (1000, 1000)
    assert (s[:, :800] > 0).all() and (s[:, :800] <= 0.5).all()
    assert (s[:, 800:] < 0).all() and (s[:, 800:] >= -1).all()
    p = net.populations["neurons"].params
    c, d, a, b = (getattr(p, k).numpy() for k in "cdab")
    r_exc = np.sqrt((c[:800] + 65) / 15)
    np.testing.assert_allclose(d[:800], 8 - 6 * r_exc ** 2)
    r_inh = (a[800:] - 0.02) / 0.08
    np.testing.assert_allclose(b[800:], 0.25 - 0.05 * r_inh)
    assert 0 <= r_exc.min() and r_exc.max() < 1 and 0 <= r_inh.min() and r_inh.max() < 1
    state = net.populations["neurons"].initial_state(1)
    assert (state.v == -65).all() and torch.equal(state.u[0], -65 * p.b)


def published_loop(n_exc, n_inh, steps, rng):
    """The published code transcribed (its draws from ``rng``, weights scaled by 1000 / N, threshold
    ``v >= 30``, ``0.04 v^2`` with ``v^2`` first); returns the instance
    ``(r, S, noise)`` and the ``firings`` raster ``[steps, N]`` (step ``t`` tests the state after ``t - 1``)."""
    n = n_exc + n_inh
    r = np.r_[rng.random(n_exc), rng.random(n_inh)]
    re, ri = r[:n_exc], r[n_exc:]
    a = np.r_[np.full(n_exc, 0.02), 0.02 + 0.08 * ri]
    b = np.r_[np.full(n_exc, 0.2), 0.25 - 0.05 * ri]
    c = np.r_[-65 + 15 * re ** 2, np.full(n_inh, -65.0)]
    d = np.r_[8 - 6 * re ** 2, np.full(n_inh, 2.0)]
    s = np.c_[0.5 * rng.random((n, n_exc)), -rng.random((n, n_inh))]
    noise = np.c_[5 * rng.standard_normal((steps, n_exc)), 2 * rng.standard_normal((steps, n_inh))]
    scaled = s * (1000 / n)
    v = np.full(n, -65.0)
    u = b * v
    firings = np.zeros((steps, n), dtype=bool)
    for t in range(steps):
        fired = v >= 30
        firings[t] = fired
        v[fired] = c[fired]
        u[fired] += d[fired]
        i = noise[t] + scaled[:, fired].sum(axis=1)
        v = v + 0.5 * (0.04 * v ** 2 + 5.0 * v + 140.0 - u + i)
        v = v + 0.5 * (0.04 * v ** 2 + 5.0 * v + 140.0 - u + i)
        u = u + a * (b * v - u)
    return r, s, noise, firings


@pytest.mark.parametrize("n_exc, n_inh", [(800, 200), (160, 40)])
def test_given_instance_spikes_as_the_published_loop_one_step_earlier(n_exc, n_inh):
    """The network built from the published loop's own draws (weights S, r, thalamic noise), with
    the 1000 / N weight scaling at N = 200: every spike of 1000 steps in the step before the loop
    records it; the spikes of the last step are the loop's firings of the step after its end."""
    steps = 1000
    r, s, noise, firings = published_loop(n_exc, n_inh, steps, np.random.default_rng(5))
    net = build_izhikevich2003(n_exc, n_inh, weights=s, r=r, thalamic=False)
    t_ns, i_ns = spike_events(net, steps, inputs={"neurons": torch.as_tensor(noise).unsqueeze(1)})
    raster = np.zeros((steps, n_exc + n_inh), dtype=bool)
    raster[t_ns, i_ns] = True
    assert firings.sum() > 2.5 * (n_exc + n_inh)
    assert not firings[0].any()
    np.testing.assert_array_equal(raster[:-1], firings[1:])
    count = run_izhikevich2003(steps, n_exc=n_exc, n_inh=n_inh, weights=s, r=r, noise=noise).spike_count
    assert count == raster.sum()


def test_weight_scaling_and_given_instance_checks():
    small = build_izhikevich2003(80, 20, seed=0)
    s = small.projections["exc"].to_dense() + small.projections["inh"].to_dense()
    assert s[:, :80].max() > 4.0 and s[:, :80].max() <= 5.0 and s[:, 80:].min() < -9.0  # 1000 / 100 = 10 times
    unscaled = build_izhikevich2003(80, 20, seed=0, scale_weights=False).projections["exc"].to_dense()
    torch.testing.assert_close(small.projections["exc"].to_dense(), 10 * unscaled, rtol=1e-15, atol=0)
    with pytest.raises(NeurosimError, match="weights must be a finite \\[100, 100\\]"):
        build_izhikevich2003(80, 20, weights=np.zeros((100, 90)))
    bad = np.zeros((100, 100))
    bad[3, 90] = 0.5
    with pytest.raises(NeurosimError, match="from inhibitory ones <= 0"):
        build_izhikevich2003(80, 20, weights=bad)
    with pytest.raises(NeurosimError, match="r must be 100 numbers"):
        build_izhikevich2003(80, 20, r=np.full(100, 1.5))
    with pytest.raises(NeurosimError, match="noise must be \\[10, 100\\]"):
        run_izhikevich2003(10, n_exc=80, n_inh=20, noise=np.zeros((10, 99)))
