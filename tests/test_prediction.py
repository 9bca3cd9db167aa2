"""The cue-event prediction model: task timing, the readout's eligibility against autograd, and
learning when and how likely an event comes, then re-learning after its latency changes."""
import copy

import numpy as np
import pytest
import torch

from neurosim import NeurosimError
from neurosim.models.prediction import (Contingency, CueReservoir, PredictionTask, ReservoirParameters,
                                        ThreeFactorReadout, draw_trials, evaluate)

BIN_MS = 20


pytestmark = pytest.mark.usefixtures("one_thread")


def test_task_target_gate_and_expectation():
    task = PredictionTask((Contingency(0, 120, 0.25, readout=1), Contingency(3, 200, 1.0)), trial_ms=400,
                          cue_onset=50, attention_delay=40)
    f = task.target(0, True, 2)
    assert int(f[:, 1].argmax()) == 170 and f[:, 0].abs().max() == 0 and f[170, 1] == 1
    assert task.target(0, False, 2).abs().max() == 0
    torch.testing.assert_close(task.expected(0, 2), 0.25 * f)
    g = task.gate()
    assert g[:90].sum() == 0 and bool((g[90:] == 1).all())
    assert task.replace(3, latency=250).contingency(3).latency == 250
    cues = [c for c, _ in draw_trials(task, 400, np.random.default_rng(0))]
    assert set(cues) == {0, 3}


@pytest.mark.parametrize("make", [
    lambda: Contingency(0, 100, 1.5),
    lambda: PredictionTask((Contingency(0, 100, 0.5), Contingency(0, 200, 0.5))),
    lambda: PredictionTask((Contingency(0, 600, 0.5),), trial_ms=600),
    lambda: PredictionTask((Contingency(0, 30, 0.5),), attention_delay=50),
    lambda: PredictionTask((Contingency(0, 100, 0.5, readout=2),)).target(0, True, 2),
    lambda: ReservoirParameters(n=100, noise=-1.0),
    lambda: CueReservoir(ReservoirParameters(n=20, n_cues=2)).trial(2, PredictionTask((Contingency(2, 100, 1.0),))),
])
def test_bad_input_raises_one_clear_error(make):
    with pytest.raises(NeurosimError):
        make()


def test_online_update_is_the_gradient_of_the_gated_error():
    """With attention on a single step, one trial changes W by lr (f - z) dz/dW at that step."""
    g = torch.Generator().manual_seed(0)
    n, T, t0, lr = 12, 60, 47, 0.1
    readout = ThreeFactorReadout(n, 2, lr=lr, baseline=torch.full((n,), 0.05))
    readout.projection.weight.data.normal_(generator=g)
    spikes = (torch.rand(T, 1, n, generator=g) < 0.2).float()
    target = torch.rand(T, 2, generator=g)
    gate = torch.zeros(T)
    gate[t0] = 1.0
    w0 = readout.projection.weight.detach().clone()
    readout.learn(spikes, target, gate)

    w = w0.double().requires_grad_(True)
    lam_pre, lam_z = np.exp(-1 / 20.0), np.exp(-1 / 20.0)
    x = torch.zeros(n, dtype=torch.float64)
    z = torch.zeros(2, dtype=torch.float64)
    for t in range(t0 + 1):
        x = lam_pre * x + (spikes[t, 0].double() - 0.05)
        z = lam_z * z + (1 - lam_z) * (w @ x)
    (0.5 * (target[t0].double() - z).pow(2).sum()).backward()
    torch.testing.assert_close(readout.projection.weight.detach().double(), w0.double() - lr * w.grad,
                               rtol=1e-4, atol=1e-6)


def train(reservoir, readout, task, n_trials, seed):
    gate = task.gate()
    for cue, event in draw_trials(task, n_trials, np.random.default_rng(seed)):
        readout.learn(reservoir.trial(cue, task), task.target(cue, event, readout.n_readouts), gate)


@pytest.fixture(scope="module")
def trained():
    task = PredictionTask((Contingency(0, 120, 0.9, readout=0), Contingency(1, 220, 0.4, readout=1)), trial_ms=360,
                          cue_onset=60)
    reservoir = CueReservoir(ReservoirParameters(n=200, n_cues=2, cue_rate=0.05, seed=1))
    readout = ThreeFactorReadout(200, 2, lr=5e-4, baseline=reservoir.baseline(1000))
    held = {c: reservoir.trials(c, task, 8) for c in (0, 1)}
    train(reservoir, readout, task, 200, seed=0)
    return task, reservoir, readout, held


def test_readouts_peak_at_the_latency_with_amplitudes_ordered_by_probability(trained):
    task, _, readout, held = trained
    responses = evaluate(readout, task, held)
    for c, r in zip(task.contingencies, responses):
        assert abs(r.peak_ms - c.latency) <= BIN_MS, (c, r)
    assert responses[0].amplitude > responses[1].amplitude > 0, responses


def test_readapts_after_a_latency_switch(trained):
    task, reservoir, readout, held = trained
    readout = copy.deepcopy(readout)
    switched = task.replace(0, latency=200)
    assert abs(evaluate(readout, switched, held)[0].peak_ms - 200) > BIN_MS  # still at the old latency
    train(reservoir, readout, switched, 150, seed=1)
    r = evaluate(readout, switched, held)[0]
    assert abs(r.peak_ms - 200) <= BIN_MS, r
