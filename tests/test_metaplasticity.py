"""Metaplasticity: f_meta and the attenuation rule against closed forms (SGD and Adam, written here
in float64 numpy), on the hidden weights behind the bounded visible ones (the default) and on the
weights themselves (``bound=None``); the default per-layer scale; the state across a resumed run."""
import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.continual.runner import Continual
from neurosim.datasets.images import generated
from neurosim.runs.experiment import resume, start
from neurosim.plugins.metaplasticity import Metaplasticity, f_meta, fan_in, metaplastic_update
from neurosim.continual.scenarios import permuted
from neurosim.storage.store import RunStore


def reference_f(w, m):
    """1 - tanh^2 written as sech^2."""
    return 1.0 / np.cosh(m * np.abs(w)) ** 2


class Runner:
    def __init__(self, net):
        self.network = net


def one_layer(n_in=40, n_out=30, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    net = ns.Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("o", ns.LI(n_out, tau_mem=5.0, dtype=dtype))
    net.connect("x", "o", ns.Dense(n_in, n_out, generator=g, dtype=dtype))
    return net


def plugin_step(meta, runner, proj, opt, gen) -> np.ndarray:
    """One optimiser step on a random gradient drawn from ``gen``, with the plugin's hooks around it;
    returns the gradient."""
    g = torch.randn(proj.weight.shape, generator=gen, dtype=torch.float64)
    proj.weight.grad = g.clone()
    meta.before_update(runner)
    opt.step()
    meta.after_update(runner)
    return g.numpy()

def test_f_meta_is_sech_squared():
    w = torch.linspace(-3, 3, 101, dtype=torch.float64)
    for m in (0.0, 0.5, 1.35, 4.0):
        assert np.allclose(f_meta(w, m).numpy(), reference_f(w.numpy(), m), rtol=0, atol=1e-14)
    assert float(f_meta(torch.zeros(1), 2.0)) == 1.0


def test_update_rule_attenuates_only_steps_toward_zero():
    w_old = torch.tensor([0.5, 0.5, -0.5, -0.5, 0.0, 0.0], dtype=torch.float64)
    step = torch.tensor([-0.1, 0.1, 0.1, -0.1, 0.1, -0.1], dtype=torch.float64)
    got = metaplastic_update(w_old, w_old + step, 2.0).numpy()
    f = reference_f(0.5, 2.0)
    want = [0.5 - 0.1 * f, 0.6, -0.5 + 0.1 * f, -0.6, 0.1, -0.1]
    assert np.allclose(got, want, rtol=0, atol=1e-15)


def test_sgd_step_on_the_weights_matches_closed_form():
    """bound=None, scale="initial": the rule on W itself with m over the initial RMS."""
    net = one_layer()
    proj = net.connections["x_to_o"].projection
    meta = Metaplasticity(m=1.35, scale="initial", bound=None)
    runner = Runner(net)
    meta.before_training(runner)
    w0 = proj.weight.detach().numpy().copy()
    s = np.sqrt(np.mean(w0 ** 2))
    assert meta.scales["x_to_o"] == pytest.approx(s, rel=1e-12) and meta.hidden == {}
    opt = torch.optim.SGD([proj.weight], lr=0.05)
    g = plugin_step(meta, runner, proj, opt, torch.Generator().manual_seed(1))
    # SGD: a step -lr g moves W toward zero where sign(W) g > 0
    factor = np.where(np.sign(w0) * g > 0, reference_f(w0, 1.35 / s), 1.0)
    assert np.allclose(proj.weight.detach().numpy(), w0 - 0.05 * g * factor, rtol=0, atol=1e-14)
    assert (np.sign(w0) * g > 0).mean() > 0.3 and (factor < 0.9).any()  # both branches exercised


def test_sgd_steps_on_hidden_weights_match_closed_form():
    """The defaults: W = b tanh(W_h / b), b = 3 / sqrt(fan-in); the SGD step goes to W_h, attenuated
    where it moves W_h toward zero, with m over the RMS of W_h before each step."""
    net = one_layer()
    proj = net.connections["x_to_o"].projection
    meta = Metaplasticity()
    runner = Runner(net)
    meta.before_training(runner)
    w = proj.weight.detach().numpy().copy()
    b = 3 / np.sqrt(40)
    assert meta.bounds["x_to_o"] == pytest.approx(b, rel=1e-12)
    h = b * np.arctanh(w / b)
    opt = torch.optim.SGD([proj.weight], lr=0.3)  # large steps: some hidden weights pass the bound
    gen = torch.Generator().manual_seed(1)
    for t in range(8):
        g = plugin_step(meta, runner, proj, opt, gen)
        m_eff = 1.35 / np.sqrt(np.mean(h ** 2))
        assert meta.m_effective("x_to_o") == pytest.approx(m_eff, rel=1e-12)
        h = h - 0.3 * g * np.where(np.sign(h) * g > 0, reference_f(h, m_eff), 1.0)
        assert np.allclose(meta.hidden["x_to_o"].numpy(), h, rtol=0, atol=1e-12), t
        assert np.allclose(proj.weight.detach().numpy(), b * np.tanh(h / b), rtol=0, atol=1e-12), t
    assert np.abs(h).max() > 1.5 * b and np.abs(proj.weight.detach().numpy()).max() < b


def test_visible_change_is_never_longer_than_the_step_and_the_bound_holds():
    net = one_layer()
    proj = net.connections["x_to_o"].projection
    meta = Metaplasticity(m=0.5)
    runner = Runner(net)
    meta.before_training(runner)
    gen = torch.Generator().manual_seed(3)
    for _ in range(20):
        before = proj.weight.detach().clone()
        step = torch.randn(proj.weight.shape, generator=gen, dtype=torch.float64) * 0.3
        meta.before_update(runner)
        with torch.no_grad():
            proj.weight += step
        meta.after_update(runner)
        change = (proj.weight.detach() - before).abs()
        assert bool((change <= step.abs() + 1e-15).all())
    assert float(proj.weight.detach().abs().max()) < meta.bounds["x_to_o"]


def test_hidden_weights_follow_changes_made_elsewhere():
    net = one_layer()
    proj = net.connections["x_to_o"].projection
    meta = Metaplasticity()
    runner = Runner(net)
    meta.before_training(runner)
    kept = meta.hidden["x_to_o"].clone()
    b = meta.bounds["x_to_o"]
    with torch.no_grad():
        proj.weight[0, 0] = 0.5 * b  # as another plugin would
    meta.before_update(runner)
    h = meta.hidden["x_to_o"]
    assert float(h[0, 0]) == pytest.approx(b * np.arctanh(0.5), rel=1e-12)
    assert torch.equal(h.flatten()[1:], kept.flatten()[1:])
    meta.after_update(runner)  # no step: nothing changes
    assert float(proj.weight.detach()[0, 0]) == pytest.approx(0.5 * b, rel=1e-12)


@pytest.mark.parametrize("bound", [None, 3.0])
def test_adam_steps_match_laborieux_form(bound):
    """Adam with the step scaled where sign(W_h) * m_t > 0; the stored moments stay unscaled. On the
    weights themselves (bound=None) and on the hidden weights (the default)."""
    net = one_layer()
    proj = net.connections["x_to_o"].projection
    meta = Metaplasticity(m=1.35, bound=bound)
    runner = Runner(net)
    meta.before_training(runner)
    w = proj.weight.detach().numpy().copy()
    b = 3 / np.sqrt(40)
    h = w if bound is None else b * np.arctanh(w / b)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-8
    opt = torch.optim.Adam([proj.weight], lr=lr, betas=(b1, b2), eps=eps)
    mom, vel = np.zeros_like(w), np.zeros_like(w)
    gen = torch.Generator().manual_seed(2)
    disagree = 0
    for t in range(1, 7):
        g = plugin_step(meta, runner, proj, opt, gen)
        m_eff = 1.35 / np.sqrt(np.mean(h ** 2))
        mom = b1 * mom + (1 - b1) * g
        vel = b2 * vel + (1 - b2) * g * g
        step = lr * (mom / (1 - b1 ** t)) / (np.sqrt(vel / (1 - b2 ** t)) + eps)
        decayed = np.where(np.sign(h) * mom > 0, reference_f(h, m_eff), 1.0)
        h = h - decayed * step
        disagree += int(((np.sign(h) * g > 0) != (np.sign(h) * mom > 0)).sum())
        want = h if bound is None else b * np.tanh(h / b)
        assert np.allclose(proj.weight.detach().numpy(), want, rtol=0, atol=1e-12), t
    assert disagree > 0  # the condition follows the first moment, not the gradient


@pytest.mark.parametrize("fan_in", [64, 784, 4096])
def test_default_attenuation_of_a_typical_weight_at_initialisation(fan_in):
    """Dense's initial weights are uniform on +-b, b = 1/sqrt(fan-in): RMS b/sqrt(3), median |w| b/2. The
    default scales m by the RMS of the hidden weights (here within 1 % of the weights), so the median weight's shrinking updates are scaled by
    1 - tanh^2(1.35 sqrt(3) / 2) = 0.318 whatever the fan-in; m = 1.35 on the raw weights leaves them
    within 1 % of unchanged."""
    net = one_layer(n_in=fan_in, n_out=50, seed=fan_in)
    meta = Metaplasticity()
    meta.before_training(Runner(net))
    w = net.connections["x_to_o"].projection.weight.detach()
    typical = w.abs().median()
    f = float(f_meta(typical, meta.m_effective("x_to_o")))
    assert 0.1 < f < 0.9
    assert f == pytest.approx(reference_f(1.35 * np.sqrt(3) / 2, 1.0), abs=0.02)
    assert float(f_meta(typical, 1.35)) > 0.99


def test_default_scale_attenuates_typical_updates_of_trained_real_valued_weights():
    """Weights of scale 1/sqrt(fan-in), after training: the typical shrinking update is scaled by
    a factor between 0.1 and 0.9 (m = 1.35 on the raw weights leaves it within 5 % of 1)."""
    n_in, n_hid, n_out = 200, 100, 4
    torch.manual_seed(0)
    net = ns.Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("h", ns.LIF(n_hid, tau_mem=5.0))
    net.add("o", ns.LI(n_out, tau_mem=5.0))
    net.connect("x", "h", ns.Dense(n_in, n_hid, scale=3.0))
    net.connect("h", "o", ns.Dense(n_hid, n_out))
    initial = {n: c.projection.weight.detach().pow(2).mean().sqrt().item() for n, c in net.connections.items()}

    class Ratios(ns.Plugin):
        """The factor each toward-zero update was scaled by in the last batch, per projection."""

        def before_update(self, runner):
            self.before = {n: c.projection.weight.detach().clone() for n, c in runner.network.connections.items()}

        def after_update(self, runner):
            self.after = {n: c.projection.weight.detach().clone() for n, c in runner.network.connections.items()}

    meta, ratios = Metaplasticity(), Ratios()
    sc = permuted(generated(n_classes=n_out, n_features=n_in, n_train=400, n_test=100, spread=0.2), 1)
    Continual(net, sc, [meta, ratios], steps=6, epochs=2, lr=0.05, progress=False).run()
    for name, c in net.connections.items():
        w = c.projection.weight.detach()
        rms = w.pow(2).mean().sqrt().item()
        assert 0.5 < rms / initial[name] < 2.0, (name, rms / initial[name])  # still of the initial scale (measured 1.0, 1.3)
        raw = c.projection.weight.grad * -0.05  # the SGD step of the last batch
        applied = ratios.after[name] - ratios.before[name]
        shrinking = (torch.sign(ratios.before[name]) * raw < 0) & (raw.abs() > 1e-12)
        typical = (applied[shrinking] / raw[shrinking]).median().item()
        assert 0.1 < typical < 0.9, (name, typical)  # measured 0.32 and 0.37
        raw_form = f_meta(w, 1.35).median().item()  # Laborieux et al.'s m on the raw |W|
        assert raw_form > 0.95, (name, raw_form)


def test_scale_options_and_refusals():
    net = one_layer()
    runner = Runner(net)
    fixed = Metaplasticity(m=2.0, scale=0.5)
    fixed.before_training(runner)
    assert fixed.m_effective("x_to_o") == pytest.approx(4.0)
    table = Metaplasticity(m={"x_to_o": 1.0}, scale={"x_to_o": 0.25})
    table.before_training(runner)
    assert table.m_effective("x_to_o") == pytest.approx(4.0)
    with pytest.raises(ns.NeurosimError, match="unknown metaplasticity scale 'fan_in'"):
        Metaplasticity(scale="fan_in")
    with pytest.raises(ns.NeurosimError, match="scale must be > 0"):
        Metaplasticity(scale=0.0)
    with pytest.raises(ns.NeurosimError, match="scale given for unknown projection 'nope'"):
        Metaplasticity(scale={"nope": 1.0}).before_training(runner)
    with pytest.raises(ns.NeurosimError, match="bound must be > 0"):
        Metaplasticity(bound=0.0)
    with torch.no_grad():
        net.connections["x_to_o"].projection.weight[0, 0] = 0.5  # above 3 / sqrt(40)
    with pytest.raises(ns.NeurosimError, match="'x_to_o' has weights of magnitude 0.5, at or beyond the bound "
                                               "0.4[0-9]+ of its visible weights; pass a larger bound= or bound=None"):
        Metaplasticity().before_training(runner)
    Metaplasticity(bound=4.0).before_training(runner)
    net.connections["x_to_o"].projection.weight.data.zero_()
    with pytest.raises(ns.NeurosimError, match="'x_to_o' has all-zero weights.*pass scale="):
        Metaplasticity().before_training(runner)


def test_scale_and_bound_of_wrapped_and_masked_projections():
    """A Chain's weights are its wrapped projection's; a masked projection's fan-in and RMS are over its
    synapses. The bound is 3 max(1/sqrt(fan-in), initial RMS), the scale the RMS of the hidden weights."""
    g = torch.Generator().manual_seed(4)
    mask = torch.rand(30, 40, generator=g) < 0.3
    net = ns.Network(dt=1.0)
    net.add_input("x", 40)
    net.add("h", ns.LIF(30, dtype=torch.float64))
    net.add("o", ns.LI(5, dtype=torch.float64))
    net.connect("x", "h", ns.Dense(40, 30, mask=mask, generator=g, dtype=torch.float64, scale=4.0))
    net.connect("h", "o", ns.Chain(ns.Dense(30, 5, generator=g, dtype=torch.float64), batch_norm=False))
    meta = Metaplasticity()
    meta.before_training(Runner(net))
    masked = net.connections["x_to_h"].projection.weight.detach()[mask].numpy()
    wrapped = net.connections["h_to_o"].projection.projection.weight.detach().numpy()
    assert fan_in(net.connections["x_to_h"].projection) == pytest.approx(mask.sum().item() / 30)
    for name, w, fan in (("x_to_h", masked, mask.sum().item() / 30), ("h_to_o", wrapped, 30)):
        b = 3 * max(1 / np.sqrt(fan), np.sqrt(np.mean(w ** 2)))
        assert meta.bounds[name] == pytest.approx(b, rel=1e-12)
        assert meta.scales[name] == pytest.approx(np.sqrt(np.mean((b * np.arctanh(w / b)) ** 2)), rel=1e-12)
    # scale 4 on a mask of 30 %: the initial RMS (4 / sqrt(3 * 40)) is above 1 / sqrt(fan-in) (about 1 / sqrt(12))
    assert meta.bounds["x_to_h"] > 3 / np.sqrt(mask.sum().item() / 30)


def test_initial_scale_and_bounds_are_kept_in_state_and_not_recomputed_after_loading():
    net = one_layer()
    meta = Metaplasticity(scale="initial")
    meta.before_training(Runner(net))
    state = meta.state_dict()
    with torch.no_grad():
        net.connections["x_to_o"].projection.weight.mul_(0.5)  # as if trained since
    fresh = Metaplasticity(scale="initial")
    fresh.load_state_dict(state)
    fresh.before_training(Runner(net))
    assert fresh.scales == meta.scales == state["scales"] and fresh.bounds == meta.bounds == state["bounds"]
    b = state["bounds"]["x_to_o"]
    assert torch.allclose(fresh.hidden["x_to_o"], b * torch.atanh(net.connections["x_to_o"].projection.weight / b),
                          rtol=0, atol=1e-12)  # the hidden weights followed the change


CONFIG = {
    "name": "meta-resume",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 32, "seed": 3},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 2, "seed": 1},
    "training": {"steps": 6, "epochs": 2, "batch_size": 64, "lr": 0.1, "seed": 2, "checkpoint_every": 5},
    "plugins": [{"name": "metaplasticity"}],
}


def test_interrupted_run_resumes_with_the_same_hidden_weights(tmp_path, monkeypatch):
    whole = start(CONFIG, tmp_path / "whole.h5", progress=False)
    calls = {"n": 0}
    original = Continual.train_batch

    def dies(self, task, idx):
        calls["n"] += 1
        if calls["n"] == 52:  # inside task 1 (22 batches per epoch), after the checkpoint at batch 50
            raise KeyboardInterrupt
        return original(self, task, idx)

    monkeypatch.setattr(Continual, "train_batch", dies)
    with pytest.raises(KeyboardInterrupt):
        start(CONFIG, tmp_path / "cut.h5", progress=False)
    monkeypatch.setattr(Continual, "train_batch", original)
    resumed = resume(tmp_path / "cut.h5", progress=False)
    assert np.array_equal(resumed.R, whole.R)
    states = []
    for name in ("whole.h5", "cut.h5"):
        with RunStore.open(tmp_path / name) as store:
            states.append(store.latest_checkpoint()[1])
    assert states[0]["plugins"][0]["scales"] == states[1]["plugins"][0]["scales"]
    for name, hidden in states[0]["plugins"][0]["hidden"].items():
        assert torch.equal(hidden, states[1]["plugins"][0]["hidden"][name]), name
    for key, value in states[0]["network"].items():
        assert torch.equal(value, states[1]["network"][key]), key
