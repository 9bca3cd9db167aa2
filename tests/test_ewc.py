"""EWC: the Fisher against one computed by hand, the proximal step and the penalty against their
closed forms, online accumulation, state round trips, and the runner's sample order left alone."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.continual.runner import Continual
from neurosim.datasets.images import Dataset, Split
from neurosim.plugins.ewc import EWC
from neurosim.continual.scenarios import permuted


def linear_readout(n_in=3, n_out=2, seed=0):
    """One step of a jump-input leaky integrator from rest: the scores are exactly ``W x``."""
    g = torch.Generator().manual_seed(seed)
    net = ns.Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("o", ns.LI(n_out, tau_mem=5.0, dtype=torch.float64))
    net.connect("x", "o", ns.Dense(n_in, n_out, generator=g, dtype=torch.float64))
    return net


def tiny_scenario(n=7, n_in=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in))
    y = rng.integers(0, 2, size=n)
    d = Dataset(x.astype(np.float64), y.astype(np.int64), (n_in,))
    return permuted(Split(d, d), 2, seed=seed)


def softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def per_sample_gradients(W, task) -> np.ndarray:
    """``[n, 2, 3]``: d(-log softmax(W x)_y)/dW = (softmax(W x) - e_y) x^T for every sample."""
    return np.stack([np.outer(softmax(W @ x) - np.eye(2)[y], x) for x, y in zip(task.train.x, task.train.y)])


def test_fisher_equals_the_mean_of_per_sample_squared_log_likelihood_gradients():
    """The empirical Fisher. ``full=0``: the diagonal, the mean of the squared per-sample gradients;
    by default (6 entries, at most ``full``) the whole matrix, the mean of their outer products."""
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    W = net.connections["x_to_o"].projection.weight.detach().numpy()
    g = per_sample_gradients(W, sc.tasks[1]).reshape(-1, 6)
    name = "projections.x_to_o.weight"
    # more samples than the task has: all used
    diagonal = EWC(samples=100, full=0, fisher="empirical").fisher(runner, sc.tasks[1])
    whole = EWC(samples=100, fisher="empirical").fisher(runner, sc.tasks[1])
    assert set(diagonal) == set(whole) == {name}
    assert np.allclose(diagonal[name].numpy(), (g ** 2).mean(0).reshape(2, 3), rtol=1e-10, atol=1e-14)
    assert whole[name].shape == (6, 6)
    assert np.allclose(whole[name].numpy(), g.T @ g / len(g), rtol=1e-10, atol=1e-14)
    assert EWC(samples=100, full=5).fisher(runner, sc.tasks[1])[name].shape == (2, 3)  # 6 entries: more than 5


def test_fisher_on_a_subset_uses_its_own_generator():
    net, sc = linear_readout(), tiny_scenario(n=40)
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    state = runner.generator.get_state()
    a = EWC(samples=5, seed=1).fisher(runner, sc.tasks[0])
    assert torch.equal(runner.generator.get_state(), state)  # the runner's sample order is untouched
    b = EWC(samples=5, seed=1).fisher(runner, sc.tasks[0])
    c = EWC(samples=5, seed=2).fisher(runner, sc.tasks[0])
    name = "projections.x_to_o.weight"
    assert torch.equal(a[name], b[name]) and not torch.equal(a[name], c[name])


def fake_runner(net, lr):
    params = [p for p in net.parameters() if p.requires_grad]
    return SimpleNamespace(network=net, optimizer=torch.optim.SGD(params, lr=lr))


def test_proximal_step_is_the_closed_form_minimiser():
    net = linear_readout()
    w = net.connections["x_to_o"].projection.weight
    name = "projections.x_to_o.weight"
    g = torch.Generator().manual_seed(3)
    f1, f2 = torch.rand(2, 3, generator=g, dtype=torch.float64), torch.rand(2, 3, generator=g, dtype=torch.float64)
    a1, a2 = torch.randn(2, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    ewc = EWC(normalise=False, lam=50.0, online=False, average=False)  # separate Fishers, summed
    ewc.load_state_dict({"fishers": [{name: f1}, {name: f2}], "anchors": [{name: a1}, {name: a2}], "fisher": "true"})
    runner = fake_runner(net, lr=0.1)
    theta = w.detach().clone()  # the optimiser step's result
    ewc.after_update(runner)
    # argmin_t (t - theta)^2 / (2 lr) + lam / 2 * sum_s F_s (t - a_s)^2, solved by hand
    k = 0.1 * 50.0
    want = (theta + k * (f1 * a1 + f2 * a2)) / (1 + k * (f1 + f2))
    assert torch.allclose(w.detach(), want, rtol=1e-13)
    # the objective's derivative vanishes there
    grad = (w.detach() - theta) / 0.1 + 50.0 * (f1 * (w.detach() - a1) + f2 * (w.detach() - a2))
    assert grad.abs().max() < 1e-10


def test_penalty_form_adds_the_quadratic_and_proximal_form_leaves_the_loss():
    net = linear_readout()
    w = net.connections["x_to_o"].projection.weight
    name = "projections.x_to_o.weight"
    f, a = torch.full((2, 3), 0.5, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    state = {"fishers": [{name: f}], "anchors": [{name: a}], "fisher": "true"}
    loss = torch.tensor(1.0, dtype=torch.float64)
    runner = fake_runner(net, lr=0.1)
    pen = EWC(normalise=False, lam=4.0, form="penalty")
    pen.load_state_dict(state)
    want = 1.0 + 0.5 * 4.0 * float((0.5 * w.detach() ** 2).sum())
    assert float(pen.before_backward(runner, loss).detach()) == pytest.approx(want, rel=1e-12)
    before = w.detach().clone()
    pen.after_update(runner)
    assert torch.equal(w.detach(), before)  # the penalty form has no proximal step
    prox = EWC(normalise=False, lam=4.0)
    prox.load_state_dict(state)
    assert prox.before_backward(runner, loss) is loss


def test_online_fisher_accumulates_with_gamma_and_keeps_the_latest_anchor():
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    ewc = EWC(normalise=False, online=True, gamma=0.5, samples=100)
    name = "projections.x_to_o.weight"
    ewc.after_task(runner, 0)
    f0 = ewc.fishers[0][name].clone()
    with torch.no_grad():
        net.connections["x_to_o"].projection.weight.add_(0.3)
    ewc.after_task(runner, 1)
    f1 = ewc.fisher(runner, sc.tasks[1])[name]
    assert len(ewc.fishers) == len(ewc.anchors) == 1
    assert torch.allclose(ewc.fishers[0][name], 0.5 * f0 + f1)
    assert torch.equal(ewc.anchors[0][name], net.connections["x_to_o"].projection.weight.detach())


def test_state_round_trip_gives_the_same_proximal_step():
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    ewc = EWC(lam=200.0, samples=100)
    for t in (0, 1):
        ewc.after_task(runner, t)
        with torch.no_grad():
            net.connections["x_to_o"].projection.weight.mul_(1.5)
    fresh = EWC(lam=200.0, samples=100)
    fresh.load_state_dict(ewc.state_dict())
    w = net.connections["x_to_o"].projection.weight
    start = w.detach().clone()
    steps = []
    for plugin in (ewc, fresh):
        with torch.no_grad():
            w.copy_(start)
        plugin.after_update(fake_runner(net, lr=0.1))
        steps.append(w.detach().clone())
    assert not torch.equal(steps[0], start) and torch.equal(steps[0], steps[1])


def test_stiff_weights_converge_in_proximal_form_and_oscillate_as_a_penalty():
    """lr * lambda * F = 10: the penalty's gradient step multiplies the distance to the anchor by
    1 - 10 = -9, the proximal step by 1 / (1 + 10)."""
    name = "projections.x_to_o.weight"
    state = {"fishers": [{name: torch.ones(2, 3, dtype=torch.float64)}],
             "anchors": [{name: torch.zeros(2, 3, dtype=torch.float64)}], "fisher": "true"}
    distances = {}
    for form in ("proximal", "penalty"):
        net = linear_readout()
        w = net.connections["x_to_o"].projection.weight
        start = w.detach().clone()
        ewc = EWC(normalise=False, lam=100.0, form=form)
        ewc.load_state_dict(state)
        runner = fake_runner(net, lr=0.1)
        for _ in range(3):
            runner.optimizer.zero_grad()
            ewc.before_backward(runner, torch.zeros((), dtype=torch.float64, requires_grad=True)).backward()
            runner.optimizer.step()
            ewc.after_update(runner)
        distances[form] = w.detach() / start
    assert torch.allclose(distances["proximal"], torch.full((2, 3), 11.0 ** -3, dtype=torch.float64))
    assert torch.allclose(distances["penalty"], torch.full((2, 3), -729.0, dtype=torch.float64))


def test_true_fisher_converges_to_the_expectation_over_the_model_labels():
    """On copies of one input the network gets wrong: the true Fisher (labels drawn from the
    prediction) tends to sum_c p_c ((p - e_c) x^T)^2 = p_0 p_1 x^2, a third of the empirical one."""
    n, x = 2000, np.array([1.0, -0.5, 2.0])
    d = Dataset(np.tile(x, (n, 1)), np.ones(n, dtype=np.int64), (3,))
    sc = permuted(Split(d, d), 1)
    net = linear_readout()
    with torch.no_grad():
        net.connections["x_to_o"].projection.weight.copy_(torch.tensor([[0.2, 0.0, 0.4], [0.0, 0.6, 0.1]]))
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    W = net.connections["x_to_o"].projection.weight.detach().numpy()
    p = softmax(W @ x)
    assert 0.7 < p[0] < 0.8  # mostly wrong: the label is 1
    exact = sum(p[c] * np.outer(p - np.eye(2)[c], x) ** 2 for c in range(2))
    empirical = np.outer(p - np.eye(2)[1], x) ** 2
    name = "projections.x_to_o.weight"
    true = EWC(samples=n, fisher="true", full=0).fisher(runner, sc.tasks[0])[name].numpy()
    assert np.array_equal(EWC(samples=n, full=0).fisher(runner, sc.tasks[0])[name].numpy(), true)  # the default
    emp = EWC(samples=10, full=0, fisher="empirical").fisher(runner, sc.tasks[0])[name].numpy()
    assert np.allclose(emp, empirical, rtol=1e-9)
    # the fraction of draws of label 1 has relative standard error sqrt(p_0 / (n p_1)), 0.039 here
    assert np.allclose(true, exact, rtol=4 * np.sqrt(p[0] / (n * p[1])))
    assert (true < 0.5 * emp).all()
    with pytest.raises(ns.NeurosimError, match="unknown EWC fisher 'exact'"):
        EWC(fisher="exact")


def test_average_divides_the_penalty_and_the_proximal_step_by_the_tasks_seen():
    """Separate Fishers of three tasks, averaged: the penalty is (lambda / 2) (1 / 3) sum_s F_s (w - a_s)^2
    and the proximal step the minimiser with lambda / 3 in place of lambda."""
    net = linear_readout()
    w = net.connections["x_to_o"].projection.weight
    name = "projections.x_to_o.weight"
    g = torch.Generator().manual_seed(5)
    fs = [torch.rand(2, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    anchors = [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(3)]
    state = {"fishers": [{name: f} for f in fs], "anchors": [{name: a} for a in anchors], "tasks": 3, "fisher": "true"}
    ewc = EWC(normalise=False, lam=30.0, online=False, average=True)
    ewc.load_state_dict(state)
    theta = w.detach().clone()
    want = 0.5 * 30.0 / 3 * sum(float((f * (theta - a) ** 2).sum()) for f, a in zip(fs, anchors))
    assert float(ewc.penalty(net).detach()) == pytest.approx(want, rel=1e-12)
    ewc.after_update(fake_runner(net, lr=0.1))
    k = 0.1 * 30.0 / 3
    step = (theta + k * sum(f * a for f, a in zip(fs, anchors))) / (1 + k * sum(fs))
    assert torch.allclose(w.detach(), step, rtol=1e-13)
    assert torch.allclose(ewc.stiffness()[name], 10.0 * sum(fs), rtol=1e-13)
    plain = EWC(normalise=False, lam=30.0, online=False, average=False)
    plain.load_state_dict(state)
    assert float(plain.penalty(net).detach()) > 2.9 * float(ewc.penalty(net).detach())  # not averaged: three times as large


def test_online_average_is_the_running_mean_of_the_fishers_with_the_latest_anchor():
    """gamma = 1 and average: the penalty's Fisher after task t follows F <- (F_new + t F_old) / (t + 1)."""
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    ewc = EWC(normalise=False, online=True, average=True, lam=2.0, samples=100, full=0)
    name = "projections.x_to_o.weight"
    w = net.connections["x_to_o"].projection.weight
    mean = None
    for t, shift in enumerate((0.0, 0.3, -0.7)):
        with torch.no_grad():
            w.add_(shift)
        new = ewc.fisher(runner, sc.tasks[t % 2])
        ewc.after_task(runner, t % 2)
        mean = new[name] if mean is None else (new[name] + t * mean) / (t + 1)
    assert ewc.tasks == 3 and len(ewc.fishers) == 1
    assert torch.allclose(ewc.stiffness()[name], 2.0 * mean, rtol=1e-12)
    theta = w.detach().clone()
    with torch.no_grad():
        w.add_(0.1)
    assert float(ewc.penalty(net).detach()) == pytest.approx(0.5 * 2.0 * float((mean * 0.01).sum()), rel=1e-10)
    fresh = EWC(normalise=False, online=True, average=True, lam=2.0)
    fresh.load_state_dict(ewc.state_dict())  # the task count travels with the state
    assert fresh.tasks == 3 and torch.equal(fresh.anchors[0][name], theta)
    assert torch.allclose(fresh.stiffness()[name], ewc.stiffness()[name])
    with pytest.raises(ns.NeurosimError, match="EWC average must be true or false, got 'yes'"):
        EWC(average="yes")


def test_whole_fisher_penalty_and_proximal_step_are_the_closed_forms():
    """Two separate whole Fishers, averaged: the penalty is (lambda / 2T) sum_s d_s^T F_s d_s over the
    flattened parameter, the proximal step solves (I + eta lambda / T sum_s F_s) theta =
    theta' + eta lambda / T sum_s F_s a_s, the stiffness is the diagonal of lambda / T sum_s F_s; and
    the step survives a state round trip."""
    net = linear_readout()
    w = net.connections["x_to_o"].projection.weight
    name = "projections.x_to_o.weight"
    g = torch.Generator().manual_seed(7)
    roots = [torch.randn(6, 6, generator=g, dtype=torch.float64) for _ in range(2)]
    fs = [r @ r.T for r in roots]  # symmetric, positive definite, with off-diagonal terms
    anchors = [torch.randn(2, 3, generator=g, dtype=torch.float64) for _ in range(2)]
    state = {"fishers": [{name: f} for f in fs], "anchors": [{name: a} for a in anchors], "tasks": 2, "fisher": "true"}
    ewc = EWC(normalise=False, lam=30.0, online=False, average=True)
    ewc.load_state_dict(state)
    theta = w.detach().clone().reshape(-1).numpy()
    F = [f.numpy() for f in fs]
    A = [a.reshape(-1).numpy() for a in anchors]
    want = 0.5 * 30.0 / 2 * sum((theta - a) @ f @ (theta - a) for f, a in zip(F, A))
    assert float(ewc.penalty(net).detach()) == pytest.approx(want, rel=1e-12)
    k = 0.1 * 30.0 / 2
    step = np.linalg.solve(np.eye(6) + k * sum(F), theta + k * sum(f @ a for f, a in zip(F, A)))
    fresh = EWC(normalise=False, lam=30.0, online=False, average=True)
    fresh.load_state_dict(ewc.state_dict())
    for plugin in (ewc, fresh):
        with torch.no_grad():
            w.copy_(torch.from_numpy(theta.reshape(2, 3)))
        plugin.after_update(fake_runner(net, lr=0.1))
        assert np.allclose(w.detach().reshape(-1).numpy(), step, rtol=1e-12, atol=1e-14)
    assert np.allclose(ewc.stiffness()[name].numpy(), 15.0 * np.diag(sum(F)).reshape(2, 3), rtol=1e-13)


def test_whole_fisher_step_is_a_contraction_toward_the_anchor():
    """Online, a whole Fisher: the proximal step leaves the anchor where it is and shortens any
    distance to it (the eigenvalues of (I + eta K)^-1 lie in (0, 1])."""
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    ewc = EWC(lam=500.0, samples=100)
    ewc.after_task(runner, 0)
    w = net.connections["x_to_o"].projection.weight
    anchor = w.detach().clone()
    ewc.after_update(fake_runner(net, lr=0.1))
    assert torch.allclose(w.detach(), anchor, rtol=0, atol=1e-13)
    with torch.no_grad():
        w.add_(torch.randn(2, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    before = (w.detach() - anchor).norm()
    ewc.after_update(fake_runner(net, lr=0.1))
    assert 0 < (w.detach() - anchor).norm() < before


@pytest.mark.parametrize("full", [-1, 2.5, True, "all"])
def test_full_must_be_a_non_negative_integer(full):
    with pytest.raises(ns.NeurosimError, match="EWC full must be a non-negative integer"):
        EWC(full=full)


def growing_fishers(ewc: EWC):
    """Tasks 0 and 1 of :func:`tiny_scenario` consolidated by ``ewc``, the weights tripled after each
    (so the second Fisher is larger): the runner, the weight's name and the two raw Fishers."""
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    name = "projections.x_to_o.weight"
    w = net.connections["x_to_o"].projection.weight
    raw = []
    for t in (0, 1):
        raw.append(ewc.fisher(runner, sc.tasks[t])[name])
        ewc.after_task(runner, t)
        with torch.no_grad():
            w.mul_(3.0)
    return runner, name, raw


@pytest.mark.parametrize("full", [0, 2048])
def test_normalised_fishers_keep_the_first_tasks_mean_diagonal_entry(full):
    """Weights scaled by 3 after task 0 give a larger Fisher on task 1; normalised, it is that Fisher
    times mean(diag F_0) / mean(diag F_1), and the state carries the unit."""
    ewc = EWC(online=False, average=False, samples=100, full=full)  # normalised by default
    runner, name, raw = growing_fishers(ewc)
    diag = [f.diagonal() if full else f for f in raw]
    assert float(diag[1].mean()) != pytest.approx(float(diag[0].mean()), rel=0.1)
    assert torch.equal(ewc.fishers[0][name], raw[0])
    assert torch.allclose(ewc.fishers[1][name], raw[1] * (diag[0].mean() / diag[1].mean()), rtol=1e-12)
    fresh = EWC(online=False, average=False, full=full)
    fresh.load_state_dict(ewc.state_dict())
    assert set(fresh.units) == set(ewc.units) == {name}
    assert torch.equal(fresh.units[name], ewc.units[name]) and float(ewc.units[name]) == float(diag[0].mean())
    plain = EWC(online=False, average=False, samples=100, full=full, normalise=False)
    plain.after_task(runner, 0)
    with pytest.raises(ns.NeurosimError, match="^EWC: this run's state has no Fisher units [^\n]*normalise=True$"):
        EWC().load_state_dict({k: v for k, v in plain.state_dict().items() if k != "units"})
    with pytest.raises(ns.NeurosimError, match="EWC normalise must be true or false, got 1"):
        EWC(normalise=1)


def test_normalised_online_average_is_the_mean_of_the_rescaled_fishers_and_a_zero_fisher_sets_no_unit():
    """The defaults (online, averaged, normalised): after tasks 0 and 1 the penalty's Fisher is
    (F_0 + F_1 mean(diag F_0) / mean(diag F_1)) / 2. A parameter whose first Fisher is zero (it had no
    gradient yet) is not scaled to zero ever after: its first non-zero Fisher sets its unit."""
    ewc = EWC(samples=100, full=0)
    runner, name, raw = growing_fishers(ewc)
    expected = (raw[0] + raw[1] * (raw[0].mean() / raw[1].mean())) / 2
    assert len(ewc.fishers) == 1
    assert torch.allclose(ewc.fishers[0][name] * ewc.scale(), expected, rtol=1e-12)
    assert torch.allclose(ewc.stiffness()[name], ewc.lam * expected, rtol=1e-12)

    given = iter([torch.zeros(2, 3, dtype=torch.float64), 2 * raw[0], raw[0]])
    ewc = EWC(full=0)
    ewc.fisher = lambda runner, task: {name: next(given)}
    for t in (0, 1, 1):  # the given Fishers stand for three tasks
        ewc.after_task(runner, t)
    assert torch.equal(ewc.units[name], 2 * raw[0].mean())
    assert torch.allclose(ewc.fishers[0][name], 4 * raw[0], rtol=1e-12)  # 0 + 2 F + F rescaled to 2 F


def test_the_state_names_its_fisher_and_a_run_continues_only_with_the_same_one():
    net, sc = linear_readout(), tiny_scenario()
    runner = Continual(net, sc, steps=1, readout="last", progress=False)
    ewc = EWC(samples=100)
    ewc.after_task(runner, 0)
    state = ewc.state_dict()
    assert state["fisher"] == "true"
    fresh = EWC()
    fresh.load_state_dict(state)
    assert all(torch.equal(fresh.fishers[0][k], v) for k, v in ewc.fishers[0].items())
    with pytest.raises(ns.NeurosimError, match="^EWC: this run's state holds the true Fisher; it cannot continue "
                                               "with fisher='empirical'$"):
        EWC(fisher="empirical").load_state_dict(state)
    older = {k: v for k, v in state.items() if k != "fisher"}  # written when the empirical Fisher was the default
    with pytest.raises(ns.NeurosimError, match="^EWC: this run's state does not say which Fisher it holds .*"
                                               "resume it with fisher='empirical' given$"):
        EWC().load_state_dict(older)
    EWC(fisher="empirical").load_state_dict(older)
    EWC().load_state_dict({k: v for k, v in EWC().state_dict().items() if k != "fisher"})  # nothing taken yet
