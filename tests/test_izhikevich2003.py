"""The Izhikevich (2003) network: activity figures over five seeds, and the original code's loop.

Izhikevich's (2003) network, run as its original code runs it, gives about 7,450-7,840 spikes in 1000 ms and 7-8 Hz in both populations
(float64, five seeds). Over seeds 0-4, the spike count of every seed and the five-seed means of the
count and of the E and I rates must lie within 10 % of the midpoints. (Across 40 seeds the I rate is
7.27 +- 0.31 Hz, so a single seed's I rate can fall just outside 10 %; the mean of five cannot.)
"""
import numpy as np
import pytest
import torch

from neurosim.models.izhikevich2003 import build_izhikevich2003, run_izhikevich2003, thalamic_input
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


def original_loop(s, a, b, c, d, current, steps):
    """The published loop: threshold, record, reset, add S[:, fired], two v half steps, one u step."""
    v = np.full(a.size, -65.0)
    u = b * v
    raster = np.zeros((steps, a.size), dtype=bool)
    for t in range(steps):
        fired = v > 30
        raster[t] = fired
        v[fired] = c[fired]
        u[fired] += d[fired]
        i = current[t] + s[:, fired].sum(axis=1)
        v = v + 0.5 * (0.04 * v * v + 5.0 * v + 140.0 - u + i)
        v = v + 0.5 * (0.04 * v * v + 5.0 * v + 140.0 - u + i)
        u = u + a * (b * v - u)
    return raster


def test_same_spikes_as_original_loop_one_step_earlier():
    steps = 300
    net = build_izhikevich2003(seed=1)
    drive = thalamic_input(steps, 800, 200, torch.Generator().manual_seed(1))
    t_ns, i_ns = spike_events(net, steps, inputs={"neurons": drive})
    s = (net.projections["exc"].to_dense() + net.projections["inh"].to_dense()).numpy()
    p = net.populations["neurons"].params
    ref = original_loop(s, *(getattr(p, k).numpy() for k in "abcd"), drive[:, 0].numpy(), steps)
    raster = np.zeros((steps, 1000), dtype=bool)
    raster[t_ns, i_ns] = True
    assert raster.sum() > 1000
    np.testing.assert_array_equal(raster[:-1], ref[1:])
