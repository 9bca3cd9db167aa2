"""Reservoir measures: trace features, ridge readout, memory capacity, the Mackey-Glass series, prediction error."""
import math

import numpy as np
import pytest
import torch

from neurosim import NeurosimError
from neurosim.reservoirs.builders import lif_reservoir
from neurosim.reservoirs.tasks import (fit_ridge, input_weights, mackey_glass, memory_capacity, nrmse, predict,
                                      prediction_nrmse, reservoir_states, select_alpha)


def delay_features(u: np.ndarray, k: int) -> np.ndarray:
    """Row t holds u[t], u[t-1], ..., u[t-k] (wrapping at the start)."""
    return np.stack([np.roll(u, d) for d in range(k + 1)], 1)


def spurious_bound(n_delays: int, n_test: int) -> float:
    """Upper bound on the summed r^2 of delays a readout knows nothing of: each is a squared correlation
    of independent series, mean 1 / n_test and standard deviation about sqrt(2) / n_test."""
    return (n_delays + 5 * math.sqrt(2 * n_delays)) / n_test


def test_memory_capacity_of_a_delay_line_is_its_length():
    u = np.random.default_rng(0).uniform(-1, 1, 5000)
    k, max_delay, washout, train = 12, 30, 20, 0.6
    mc, r2 = memory_capacity(delay_features(u, k), u, max_delay, alpha=1e-9, washout=washout, train=train)
    n_test = 5000 - washout - max_delay - round((5000 - washout - max_delay) * train)
    np.testing.assert_allclose(r2[:k], 1.0, atol=1e-9)
    assert k - 1e-6 < mc <= k + spurious_bound(max_delay - k, n_test)


def test_memory_capacity_is_at_most_the_number_of_features():
    """A linear echo-state network with N units (orthogonal recurrence, radius 0.95) comes close to
    N, never above it."""
    n, steps = 15, 6000
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    w, w_in = 0.95 * q, rng.normal(size=n)
    u = rng.uniform(-1, 1, steps)
    x = np.zeros((steps, n))
    for t in range(1, steps):
        x[t] = w @ x[t - 1] + w_in * u[t]
    max_delay, washout, train = 4 * n, 200, 0.6
    mc, _ = memory_capacity(x, u, max_delay, alpha=1e-10, washout=washout, train=train)
    n_test = steps - washout - max_delay - round((steps - washout - max_delay) * train)
    assert 0.8 * n < mc <= n + spurious_bound(max_delay, n_test)


def test_ridge_equals_lstsq_on_the_augmented_system():
    """Ridge with an unpenalised intercept solves [X 1; sqrt(alpha) I 0] [W; b] = [Y; 0] in least squares."""
    rng = np.random.default_rng(2)
    x, y, alpha = rng.normal(size=(40, 6)), rng.normal(size=(40, 3)), 0.7
    readout = fit_ridge(x, y, alpha)
    a = torch.zeros(46, 7, dtype=torch.float64)
    a[:40, :6], a[:40, 6] = torch.as_tensor(x), 1.0
    a[40:, :6] = math.sqrt(alpha) * torch.eye(6, dtype=torch.float64)
    b = torch.cat([torch.as_tensor(y), torch.zeros(6, 3, dtype=torch.float64)])
    sol = torch.linalg.lstsq(a, b).solution.numpy()
    np.testing.assert_allclose(readout.weight, sol[:6], atol=1e-12)
    np.testing.assert_allclose(readout.bias, sol[6], atol=1e-12)
    np.testing.assert_allclose(predict(readout, x), np.hstack([x, np.ones((40, 1))]) @ sol, atol=1e-12)


def test_ridge_without_penalty_is_least_squares():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(30, 4)), rng.normal(size=30)
    readout = fit_ridge(x, y, 0.0)
    sol = torch.linalg.lstsq(torch.as_tensor(np.hstack([x, np.ones((30, 1))])), torch.as_tensor(y)[:, None]).solution
    np.testing.assert_allclose(np.append(readout.weight[:, 0], readout.bias), sol[:, 0].numpy(), atol=1e-12)


def test_mackey_glass_is_bounded_chaotic_and_aperiodic():
    x = mackey_glass(3000, transient=1000)
    assert 0.2 < x.min() and x.max() < 1.4
    assert x.max() - x.min() > 0.8  # not near a fixed point

    # nearby histories separate by many orders of magnitude, to the size of the attractor
    y = mackey_glass(3000, transient=1000, x0=1.2 + 1e-9)
    assert abs(x[0] - y[0]) < 1e-6 and np.abs(x[-500:] - y[-500:]).max() > 0.1

    def closest_return(s):
        """Smallest RMS difference between the series and itself shifted, over shifts 5..1000, in units of its std."""
        return min(np.sqrt(np.mean((s[lag:] - s[:-lag]) ** 2)) for lag in range(5, 1000)) / s.std()

    assert closest_return(x) > 0.3
    assert closest_return(mackey_glass(3000, tau=10.0, transient=1000)) < 0.01  # the statistic finds a period


def test_mackey_glass_fixed_point_for_a_short_delay():
    """For tau below the first bifurcation x tends to x* = (beta / gamma - 1)^(1 / n)."""
    x = mackey_glass(100, tau=2.0, beta=0.3, transient=500)
    np.testing.assert_allclose(x, 2.0 ** 0.1, rtol=1e-9)


def test_mackey_glass_satisfies_its_equation():
    """Central differences of a fine series match the right-hand side with the delayed value."""
    h, tau = 0.01, 17.0
    x = mackey_glass(30000, h=h, sample=h, transient=100.0)
    lag = round(tau / h)
    dx = (x[lag + 2:] - x[lag:-2]) / (2 * h)
    xd = x[1:-lag - 1]
    rhs = 0.2 * xd / (1 + xd ** 10) - 0.1 * x[lag + 1:-1]
    assert np.abs(dx - rhs).max() < 1e-4 and np.abs(rhs).max() > 0.05


def test_reservoir_states_are_the_sampled_spike_traces():
    n, hold, tau, bias = 80, 4, 7.0, 1.5
    u = np.random.default_rng(4).uniform(-1, 1, 50)
    w = input_weights(n, 3.0, seed=5)
    net = lif_reservoir(n, p=0.1, v0=(-60.0, -50.0), dt=1.0, seed=6)
    features, _ = reservoir_states(net, u, w, hold, bias=bias, tau=tau, chunk=7)
    net = lif_reservoir(n, p=0.1, v0=(-60.0, -50.0), dt=1.0, seed=6)
    drive = torch.as_tensor(np.repeat(bias + u[:, None] * w[None, :], hold, 0), dtype=torch.float32)[:, None]
    with torch.no_grad():
        z = net.run({"neurons": drive}, outputs=["neurons"]).outputs["neurons"][:, 0].double().numpy()
    trace, expected = np.zeros(n), []
    for t in range(z.shape[0]):
        trace = math.exp(-net.dt / tau) * trace + z[t]
        if t % hold == hold - 1:
            expected.append(trace)
    assert z.sum() > 0
    np.testing.assert_allclose(features, np.array(expected), rtol=1e-12, atol=1e-12)


def test_reservoir_states_with_several_time_constants_are_side_by_side_traces():
    n, hold, taus = 60, 3, (2.0, 9.0, 40.0)
    u = np.random.default_rng(7).uniform(-1, 1, 40)
    w = input_weights(n, 3.0, seed=8)
    net = lif_reservoir(n, p=0.1, v0=(-60.0, -50.0), dt=1.0, seed=9)
    features, _ = reservoir_states(net, u, w, hold, bias=1.5, tau=taus, chunk=6)
    net = lif_reservoir(n, p=0.1, v0=(-60.0, -50.0), dt=1.0, seed=9)
    drive = torch.as_tensor(np.repeat(1.5 + u[:, None] * w[None, :], hold, 0), dtype=torch.float32)[:, None]
    with torch.no_grad():
        z = net.run({"neurons": drive}, outputs=["neurons"]).outputs["neurons"][:, 0].double().numpy()
    assert features.shape == (40, 3 * n) and z.sum() > 0
    for j, tau in enumerate(taus):
        trace, expected = np.zeros(n), []
        for t in range(z.shape[0]):
            trace = math.exp(-1.0 / tau) * trace + z[t]
            if t % hold == hold - 1:
                expected.append(trace)
        np.testing.assert_allclose(features[:, j * n:(j + 1) * n], np.array(expected), rtol=1e-12, atol=1e-12)


def test_ridge_with_one_penalty_per_output_fits_each_output_alone():
    rng = np.random.default_rng(10)
    x, y = rng.normal(size=(50, 5)), rng.normal(size=(50, 3))
    alphas = np.array([0.1, 10.0, 0.1])
    readout = fit_ridge(x, y, alphas)
    for o in range(3):
        alone = fit_ridge(x, y[:, o], alphas[o])
        np.testing.assert_allclose(readout.weight[:, o], alone.weight[:, 0], atol=1e-12)
        np.testing.assert_allclose(readout.bias[o], alone.bias[0], atol=1e-12)


def test_select_alpha_minimises_the_validation_error_of_direct_fits():
    """Against fit_ridge on the first part and the error on the rest, alpha by alpha and output by output."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(80, 30))
    y = np.stack([x[:, 0] + 0.1 * rng.normal(size=80), rng.normal(size=80)], 1)  # learnable, pure noise
    alphas, validation = [1e-3, 1e-1, 10.0, 1e3], 0.25
    chosen = select_alpha(x, y, alphas, validation)
    err = np.array([((predict(fit_ridge(x[:60], y[:60], a), x[60:]) - y[60:]) ** 2).mean(0) for a in alphas])
    np.testing.assert_array_equal(chosen, np.array(alphas)[err.argmin(0)])
    assert chosen[1] > chosen[0]  # noise is best left alone


def test_chosen_penalty_is_near_the_bayes_optimal_one():
    """Weights drawn N(0, tau^2) per output, unit noise: the posterior mean is ridge with alpha = 1 / tau^2
    (here 100); the validation choice lands within a decade of it for most outputs."""
    rng = np.random.default_rng(13)
    x = rng.normal(size=(400, 60))
    y = x @ (0.1 * rng.normal(size=(60, 20))) + rng.normal(size=(400, 20))
    chosen = select_alpha(x, y, [1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4])
    assert np.median(chosen) == 100.0
    assert (np.abs(np.log10(chosen) - 2) <= 1).mean() >= 0.8


def test_prediction_error_extremes():
    t = np.arange(3000)
    s = np.sin(0.05 * t)
    exact = np.stack([s, np.roll(s, 1)], 1)  # a sinusoid is a linear function of its last two values
    assert prediction_nrmse(exact, s, 3, alpha=0.0, washout=5) < 1e-8
    noise = np.random.default_rng(6).normal(size=(3000, 3))
    assert 0.95 < prediction_nrmse(noise, s, 1) < 1.1
    assert nrmse(s, np.zeros_like(s)) == pytest.approx(np.sqrt(np.mean(s ** 2)) / s.std())


def test_bad_input():
    u = np.zeros(100)
    with pytest.raises(NeurosimError, match="features have 99 samples but the signal has 100"):
        memory_capacity(np.zeros((99, 3)), u, 5)
    with pytest.raises(NeurosimError, match="max_delay must be an integer >= 1"):
        memory_capacity(np.zeros((100, 3)), u, 0)
    with pytest.raises(NeurosimError, match="too few samples"):
        memory_capacity(np.zeros((100, 3)), u, 97)
    with pytest.raises(NeurosimError, match="alpha"):
        fit_ridge(np.zeros((10, 2)), np.zeros(10), -1.0)
    with pytest.raises(NeurosimError, match="alpha must be >= 0"):
        memory_capacity(np.zeros((100, 3)), u, 5, alpha=[1.0, -1.0])
    with pytest.raises(NeurosimError, match=r"one per output \(2\), got 3"):
        fit_ridge(np.zeros((10, 2)), np.zeros((10, 2)), [1.0, 2.0, 3.0])
    with pytest.raises(NeurosimError, match="alphas to select from must be > 0"):
        select_alpha(np.zeros((10, 2)), np.zeros(10), [0.0, 1.0])
    with pytest.raises(NeurosimError, match="validation must be a fraction"):
        select_alpha(np.zeros((10, 2)), np.zeros(10), [1.0], validation=1.0)
    with pytest.raises(NeurosimError, match="x contains NaN"):
        fit_ridge(np.full((10, 2), np.nan), np.zeros(10), 1.0)
    with pytest.raises(NeurosimError, match="tau=17.05 must be a whole number of steps"):
        mackey_glass(10, tau=17.05)
    with pytest.raises(NeurosimError, match="h must be > 0"):
        mackey_glass(10, h=0.0)
    net = lif_reservoir(20, p=0.1, seed=0)
    with pytest.raises(NeurosimError, match=r"weights must have one value per neuron \(20\)"):
        reservoir_states(net, u, np.zeros(19), 2)
    with pytest.raises(NeurosimError, match="hold must be an integer >= 1"):
        reservoir_states(net, u, np.zeros(20), 0)
    with pytest.raises(NeurosimError, match="tau must be a time constant or a non-empty sequence"):
        reservoir_states(net, u, np.zeros(20), 2, tau=[])
    with pytest.raises(NeurosimError, match="tau must be > 0"):
        reservoir_states(net, u, np.zeros(20), 2, tau=[5.0, 0.0])
    with pytest.raises(NeurosimError, match="signal must be 1-d"):
        reservoir_states(net, np.zeros((3, 3)), np.zeros(20), 2)
    with pytest.raises(NeurosimError, match="has inputs"):
        reservoir_states(lif_reservoir(20, p=0.1, n_inputs=2, seed=0), u, np.zeros(20), 2)
