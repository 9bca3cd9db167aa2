r"""Reservoir computing measures: a reservoir driven by a scalar signal, its state features, a
ridge-regression readout, memory capacity and Mackey-Glass prediction.

Driving: sample :math:`u_k` of the signal is held for ``hold`` steps, during which neuron
:math:`i` receives the input :math:`x_i = b + w_i u_k` every step (``w`` from :func:`input_weights`,
fed to the population directly, on its excitatory channel).

Features: the exponential trace of each neuron's spikes,
:math:`s_i(t) = e^{-dt/\tau} s_i(t - 1) + z_i(t)`, read at the last step of each sample; with
several time constants :math:`\tau_1 .. \tau_m` the traces of all of them, side by side
(memory of past samples lives in the slow ones).

Readout: ridge regression with an unpenalised intercept,
:math:`W = (\tilde X^\top \tilde X + \alpha I)^{-1} \tilde X^\top \tilde Y` on the centred
features :math:`\tilde X` and targets :math:`\tilde Y`, :math:`b = \bar y - \bar x W`.
Given candidate penalties instead of one, each output takes the :math:`\alpha` with the lowest
mean squared error on the last ``validation`` fraction of the training samples when fitted on the
rest (:func:`select_alpha`), then is refitted on all training samples.

Memory capacity (Jaeger 2001): for i.i.d. input, a readout per delay :math:`k = 1 .. K` is trained
to output :math:`u_{t-k}`; :math:`MC = \sum_k r^2(u_{t-k}, y_k(t))` with :math:`r` the correlation on
held-out samples.

Mackey-Glass: :math:`\dot x = \beta x_\tau / (1 + x_\tau^{n}) - \gamma x` with
:math:`x_\tau = x(t - \tau)`, the standard :math:`\tau = 17, \beta = 0.2, \gamma = 0.1, n = 10`,
integrated by RK4 with step ``h`` (:math:`\tau / h` an integer; the delayed value at a half step is
the mean of its two neighbours on the grid), constant history ``x0``. Prediction error
:math:`NRMSE = \sqrt{\langle (y - \hat y)^2 \rangle} / \sigma_y` on held-out samples.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import numpy as np
import torch

from ..errors import NeurosimError, check_int, check_positive
from ..network import Network


def _as_array(name: str, x, ndim: int) -> np.ndarray:
    a = np.asarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if a.ndim != ndim:
        raise NeurosimError(f"{name} must be {ndim}-d, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise NeurosimError(f"{name} contains NaN or infinite values")
    return a


# -- driving and features ---------------------------------------------------------------------
def input_weights(n: int, scale: float = 1.0, seed: int | None = 0) -> np.ndarray:
    """Input weights ``w_i ~ U(-scale, scale)`` of ``n`` neurons, from ``numpy.random.default_rng(seed)``."""
    check_int("n", n, 1)
    check_positive("scale", scale, allow_zero=True)
    return np.random.default_rng(seed).uniform(-scale, scale, n)


def reservoir_states(net: Network, signal, weights, hold: int, *, bias: float = 0.0,
                     tau: float | Sequence[float] = 20.0, population: str = "neurons", state: dict | None = None,
                     chunk: int = 1000) -> tuple[np.ndarray, dict]:
    """Drive ``population`` of ``net`` with ``signal`` (``[K]``) and return its trace features
    ``[K, m n]`` (float64) for ``m`` time constants ``tau`` (block ``j`` holds the traces of
    ``tau[j]``), one row per sample, and the network state after the run.

    Runs without gradients, ``chunk`` samples at a time (memory ``O(chunk * hold * n)``);
    ``state`` continues an earlier run (the traces start at zero).
    """
    u = _as_array("signal", signal, 1)
    if population not in net.populations:
        raise NeurosimError(f"unknown population {population!r}; known: {', '.join(net.populations)}")
    pop = net.populations[population]
    w = _as_array("weights", weights, 1)
    if w.size != pop.n:
        raise NeurosimError(f"weights must have one value per neuron ({pop.n}), got {w.size}")
    check_int("hold", hold, 1)
    check_int("chunk", chunk, 1)
    taus = [tau] if np.ndim(tau) == 0 else list(tau)
    if not taus:
        raise NeurosimError("tau must be a time constant or a non-empty sequence of them")
    for value in taus:
        check_positive("tau", value)
    if not math.isfinite(float(bias)):
        raise NeurosimError(f"bias must be a finite number, got {bias!r}")
    if net.inputs:
        raise NeurosimError(f"the network has inputs {list(net.inputs)}; the signal drives {population!r} directly")
    decay = np.exp(-net.dt / np.asarray(taus, dtype=np.float64))  # [m]
    # weight of each step of a sample in the trace at its end, per time constant: [hold, m]
    within = torch.as_tensor(decay[None, :] ** np.arange(hold - 1, -1, -1)[:, None], dtype=torch.float64)
    across = np.repeat(decay ** hold, pop.n)
    w_t = torch.as_tensor(w, dtype=pop.dtype)
    trace = np.zeros(len(taus) * pop.n)
    features = np.empty((u.size, len(taus) * pop.n))
    with torch.no_grad():
        for start in range(0, u.size, chunk):
            part = torch.as_tensor(u[start:start + chunk], dtype=pop.dtype)
            k = part.numel()
            x = (bias + part[:, None] * w_t).repeat_interleave(hold, 0).unsqueeze(1)
            res = net.run({population: x}, state=state, outputs=[population])
            state = res.state
            z = res.outputs[population][:, 0].to(torch.float64).reshape(k, hold, pop.n)
            sums = torch.einsum("khn,hm->kmn", z, within).reshape(k, -1).numpy()
            for j in range(k):
                trace = across * trace + sums[j]
                features[start + j] = trace
    return features, state


# -- readout ----------------------------------------------------------------------------------
class Ridge(NamedTuple):
    """A linear readout ``y = x @ weight + bias``: ``weight [F, O]``, ``bias [O]``."""

    weight: np.ndarray
    bias: np.ndarray


def fit_ridge(x, y, alpha) -> Ridge:
    """Ridge regression of ``y`` (``[S]`` or ``[S, O]``) on ``x`` (``[S, F]``) with penalty ``alpha`` >= 0
    on the weights, not on the intercept (closed form, float64); ``alpha`` may hold one value per output."""
    x = _as_array("x", x, 2)
    y = np.asarray(y, dtype=np.float64)
    y2 = _as_array("y", y.reshape(len(y), -1) if y.ndim == 1 else y, 2)
    if y2.shape[0] != x.shape[0]:
        raise NeurosimError(f"x and y must have the same number of samples, got {x.shape[0]} and {y2.shape[0]}")
    alphas = np.broadcast_to(_penalties(alpha), (y2.shape[1],)) if np.ndim(alpha) == 0 else _penalties(alpha)
    if alphas.size != y2.shape[1]:
        raise NeurosimError(f"alpha must be a number or one per output ({y2.shape[1]}), got {alphas.size}")
    mx, my = x.mean(0), y2.mean(0)
    xc, yc = x - mx, y2 - my
    xty = xc.T @ yc
    weight = np.empty((x.shape[1], y2.shape[1]))
    for a in np.unique(alphas):
        cols = alphas == a
        gram = xc.T @ xc + a * np.eye(x.shape[1])
        weight[:, cols] = (np.linalg.lstsq(gram, xty[:, cols], rcond=None)[0] if a == 0
                           else np.linalg.solve(gram, xty[:, cols]))
    return Ridge(weight, my - mx @ weight)


def _penalties(alpha) -> np.ndarray:
    a = np.atleast_1d(np.asarray(alpha, dtype=np.float64))
    if a.ndim != 1 or a.size == 0 or not (np.isfinite(a) & (a >= 0)).all():
        raise NeurosimError(f"alpha must be >= 0 (a number or a 1-d sequence), got {alpha!r}")
    return a


def select_alpha(x, y, alphas: Sequence[float], validation: float = 0.25) -> np.ndarray:
    """Per output of ``y`` (``[S]`` or ``[S, O]``), the penalty among ``alphas`` (all > 0) whose ridge
    fit on the first ``1 - validation`` of the samples of ``x`` (``[S, F]``) has the lowest mean
    squared error on the rest; ``[O]``."""
    x = _as_array("x", x, 2)
    y = np.asarray(y, dtype=np.float64)
    y2 = _as_array("y", y.reshape(len(y), -1) if y.ndim == 1 else y, 2)
    a = _penalties(alphas)
    if not (a > 0).all():
        raise NeurosimError(f"alphas to select from must be > 0, got {alphas!r}")
    if y2.shape[0] != x.shape[0]:
        raise NeurosimError(f"x and y must have the same number of samples, got {x.shape[0]} and {y2.shape[0]}")
    if not 0 < validation < 1:
        raise NeurosimError(f"validation must be a fraction in (0, 1), got {validation!r}")
    n_fit = int(round(x.shape[0] * (1 - validation)))
    if n_fit < 2 or x.shape[0] - n_fit < 1:
        raise NeurosimError(f"too few samples ({x.shape[0]}) to select alpha on a validation part")
    mx, my = x[:n_fit].mean(0), y2[:n_fit].mean(0)
    xc = x[:n_fit] - mx
    eig, vec = np.linalg.eigh(xc.T @ xc)  # ridge weights V diag(1 / (e + alpha)) V^T X^T y for every alpha
    proj = vec.T @ (xc.T @ (y2[:n_fit] - my))
    xv = (x[n_fit:] - mx) @ vec
    err = np.stack([(((xv / (np.clip(eig, 0, None) + v)) @ proj + my - y2[n_fit:]) ** 2).mean(0) for v in a])
    return a[err.argmin(0)]


def predict(readout: Ridge, x) -> np.ndarray:
    """``x @ weight + bias``, ``[S, O]``."""
    return _as_array("x", x, 2) @ readout.weight + readout.bias


def nrmse(y, y_hat) -> float:
    r""":math:`\sqrt{\langle (y - \hat y)^2 \rangle} / \sigma_y`."""
    y, y_hat = np.asarray(y, dtype=np.float64), np.asarray(y_hat, dtype=np.float64)
    if y.shape != y_hat.shape:
        raise NeurosimError(f"y and y_hat must have the same shape, got {y.shape} and {y_hat.shape}")
    return float(np.sqrt(np.mean((y - y_hat) ** 2)) / np.std(y))


def _split(n: int, start: int, train: float) -> tuple[slice, slice]:
    if not 0 < train < 1:
        raise NeurosimError(f"train must be a fraction in (0, 1), got {train!r}")
    n_train = int(round((n - start) * train))
    if n_train < 2 or n - start - n_train < 2:
        raise NeurosimError(f"too few samples ({n}) after the washout ({start}) to train and test")
    return slice(start, start + n_train), slice(start + n_train, n)


def _penalty(x: np.ndarray, y: np.ndarray, alpha, validation: float):
    """``alpha`` itself, or the candidates' choice per output on the training samples."""
    return alpha if np.ndim(alpha) == 0 else select_alpha(x, y, alpha, validation)


# -- memory capacity --------------------------------------------------------------------------
def memory_capacity(features, signal, max_delay: int, *, alpha: float | Sequence[float] = 1e-6, washout: int = 0,
                    train: float = 0.7, validation: float = 0.25) -> tuple[float, np.ndarray]:
    """``(MC, r^2 per delay 1..max_delay)`` of ``features [K, F]`` driven by ``signal [K]``.

    Samples ``washout + max_delay`` onward are used, the first ``train`` fraction to fit, the rest to test.
    ``alpha``: the ridge penalty, or candidates chosen per delay on the last ``validation`` fraction
    of the training samples (:func:`select_alpha`).
    """
    x = _as_array("features", features, 2)
    u = _as_array("signal", signal, 1)
    if u.size != x.shape[0]:
        raise NeurosimError(f"features have {x.shape[0]} samples but the signal has {u.size}")
    check_int("max_delay", max_delay, 1)
    check_int("washout", washout, 0)
    fit, test = _split(u.size, washout + max_delay, train)
    targets = np.stack([np.roll(u, k) for k in range(1, max_delay + 1)], 1)  # targets[t, k-1] = u[t - k]
    readout = fit_ridge(x[fit], targets[fit], _penalty(x[fit], targets[fit], alpha, validation))
    y = predict(readout, x[test])
    tc, yc = targets[test] - targets[test].mean(0), y - y.mean(0)
    denom = (tc ** 2).sum(0) * (yc ** 2).sum(0)
    r2 = np.divide((tc * yc).sum(0) ** 2, denom, out=np.zeros(max_delay), where=denom > 0)  # constant: no memory
    return float(r2.sum()), r2


# -- Mackey-Glass -----------------------------------------------------------------------------
def mackey_glass(n: int, *, tau: float = 17.0, beta: float = 0.2, gamma: float = 0.1, exponent: float = 10.0,
                 h: float = 0.1, sample: float = 1.0, x0: float = 1.2, transient: float = 0.0) -> np.ndarray:
    """``n`` samples of the Mackey-Glass series every ``sample`` time units, after ``transient``
    time units from the constant history ``x(t <= 0) = x0`` (deterministic)."""
    check_int("n", n, 1)
    for name, value in (("tau", tau), ("h", h), ("sample", sample)):
        check_positive(name, value)
    for name, value in (("beta", beta), ("gamma", gamma), ("exponent", exponent), ("x0", x0),
                        ("transient", transient)):
        check_positive(name, value, allow_zero=True)
    lag, every, skip = (round(v / h) for v in (tau, sample, transient))
    for name, value, steps in (("tau", tau, lag), ("sample", sample, every), ("transient", transient, skip)):
        if not math.isclose(steps * h, value, rel_tol=1e-9, abs_tol=1e-12):
            raise NeurosimError(f"{name}={value!r} must be a whole number of steps h={h!r}")
    if lag < 1 or every < 1:
        raise NeurosimError(f"tau and sample must be at least one step h={h!r}")
    total = skip + (n - 1) * every + 1
    x = np.empty(lag + total)
    x[:lag + 1] = x0  # x[lag + s] = x(s h); history for s <= 0

    def f(xt, xd):
        return beta * xd / (1.0 + xd ** exponent) - gamma * xt

    for i in range(lag, lag + total - 1):
        d0, d1 = x[i - lag], x[i - lag + 1]
        dm = 0.5 * (d0 + d1)
        xi = x[i]
        k1 = f(xi, d0)
        k2 = f(xi + 0.5 * h * k1, dm)
        k3 = f(xi + 0.5 * h * k2, dm)
        k4 = f(xi + h * k3, d1)
        x[i + 1] = xi + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)
    return x[lag + skip::every][:n].copy()


def prediction_nrmse(features, series, horizon: int = 1, *, alpha: float | Sequence[float] = 1e-6, washout: int = 0,
                     train: float = 0.7, validation: float = 0.25) -> float:
    """NRMSE of predicting ``series[t + horizon]`` from ``features[t]`` (features driven by ``series`` up to ``t``);
    ``alpha`` as in :func:`memory_capacity`."""
    x = _as_array("features", features, 2)
    s = _as_array("series", series, 1)
    if s.size != x.shape[0]:
        raise NeurosimError(f"features have {x.shape[0]} samples but the series has {s.size}")
    check_int("horizon", horizon, 1)
    check_int("washout", washout, 0)
    x, target = x[:-horizon], s[horizon:]
    fit, test = _split(target.size, washout, train)
    readout = fit_ridge(x[fit], target[fit], _penalty(x[fit], target[fit], alpha, validation))
    return nrmse(target[test], predict(readout, x[test])[:, 0])
