"""Synaptic intelligence: the path integral and the importance against their definitions, the proximal
step against its closed form, and a stiff importance that converges in the proximal form where the
penalty form diverges."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.errors import NeurosimError
from neurosim.plugins.si import SI

NAME = "projections.x_to_o.weight"


def readout(seed=0):
    g = torch.Generator().manual_seed(seed)
    net = ns.Network(dt=1.0)
    net.add_input("x", 3)
    net.add("o", ns.LI(2, tau_mem=5.0, dtype=torch.float64))
    net.connect("x", "o", ns.Dense(3, 2, generator=g, dtype=torch.float64))
    return net


def runner_for(net, lr):
    return SimpleNamespace(network=net, optimizer=torch.optim.SGD([p for p in net.parameters()], lr=lr))


def sgd_step(si, runner, grad):
    """One step as the runner takes it: the gradient, then before_update, the optimiser, after_update."""
    w = runner.network.connections["x_to_o"].projection.weight
    w.grad = grad.clone()
    si.before_update(runner)
    runner.optimizer.step()
    si.after_update(runner)


def test_path_integral_and_importance_follow_their_definitions():
    """``full=0``: omega = -sum_t g_t dtheta_t over the task; Omega = max(0, omega) / (Delta^2 + xi)."""
    net = readout()
    runner = runner_for(net, lr=0.1)
    w = net.connections["x_to_o"].projection.weight
    si = SI(c=1.0, xi=0.01, full=0)
    si.before_task(runner, 0)
    start = w.detach().clone()
    gen = torch.Generator().manual_seed(1)
    want = torch.zeros_like(start)
    for _ in range(4):
        g = torch.randn(2, 3, generator=gen, dtype=torch.float64)
        before = w.detach().clone()
        sgd_step(si, runner, g)
        want -= g * (w.detach() - before)
    assert torch.allclose(si.omega[NAME], want, rtol=1e-12)
    si.omega[NAME][0, 0] = -1.0  # a parameter whose steps raised the loss
    si.after_task(runner, 0)
    delta = w.detach() - start
    expected = want.clone()
    expected[0, 0] = 0.0
    assert torch.allclose(si.big_omega[NAME], expected.clamp(min=0) / (delta ** 2 + 0.01), rtol=1e-12)
    assert si.big_omega[NAME][0, 0] == 0 and (si.big_omega[NAME] >= 0).all()


def test_proximal_step_is_the_closed_form_minimiser():
    net = readout()
    runner = runner_for(net, lr=0.1)
    w = net.connections["x_to_o"].projection.weight
    g = torch.Generator().manual_seed(2)
    omega = torch.rand(2, 3, generator=g, dtype=torch.float64) * 50
    anchor = torch.randn(2, 3, generator=g, dtype=torch.float64)
    si = SI(c=0.7)
    si.load_state_dict({"omega": {NAME: torch.zeros(2, 3, dtype=torch.float64)}, "big_omega": {NAME: omega},
                        "start": {NAME: anchor}})
    grad = torch.randn(2, 3, generator=g, dtype=torch.float64)
    theta = w.detach() - 0.1 * grad  # the optimiser's step
    sgd_step(si, runner, grad)
    # argmin_t (t - theta)^2 / (2 lr) + c Omega (t - anchor)^2
    k = 2 * 0.1 * 0.7 * omega
    assert torch.allclose(w.detach(), (theta + k * anchor) / (1 + k), rtol=1e-13)
    derivative = (w.detach() - theta) / 0.1 + 2 * 0.7 * omega * (w.detach() - anchor)
    assert derivative.abs().max() < 1e-10
    # the path integral counts the change the step made, the proximal part included
    assert torch.allclose(si.omega[NAME], -grad * (w.detach() - (theta + 0.1 * grad)), rtol=1e-12)


def test_stiff_importance_converges_in_proximal_form_and_diverges_as_a_penalty():
    """2 lr c Omega = 10 (Omega = omega / xi for a parameter that did not move): the penalty's gradient
    step multiplies the distance to the anchor by 1 - 10 = -9, the proximal step by 1 / 11."""
    state = {"omega": {NAME: torch.zeros(2, 3, dtype=torch.float64)},
             "big_omega": {NAME: torch.full((2, 3), 50.0, dtype=torch.float64)},
             "start": {NAME: torch.zeros(2, 3, dtype=torch.float64)}}
    ratio = {}
    for form in ("proximal", "penalty"):
        net = readout()
        w = net.connections["x_to_o"].projection.weight
        start = w.detach().clone()
        si = SI(c=1.0, form=form)
        si.load_state_dict(state)
        runner = runner_for(net, lr=0.1)
        for _ in range(3):
            runner.optimizer.zero_grad()
            si.before_backward(runner, torch.zeros((), dtype=torch.float64, requires_grad=True)).backward()
            sgd_step(si, runner, torch.zeros_like(start) if w.grad is None else w.grad)
        ratio[form] = w.detach() / start
    assert torch.allclose(ratio["proximal"], torch.full((2, 3), 11.0 ** -3, dtype=torch.float64))
    assert torch.allclose(ratio["penalty"], torch.full((2, 3), -729.0, dtype=torch.float64))


def test_penalty_only_in_the_penalty_form_and_settings_checked():
    net = readout()
    runner = runner_for(net, lr=0.1)
    state = {"omega": {}, "big_omega": {NAME: torch.ones(2, 3, dtype=torch.float64)},
             "start": {NAME: torch.zeros(2, 3, dtype=torch.float64)}}
    loss = torch.tensor(1.0, dtype=torch.float64)
    prox, pen = SI(c=2.0), SI(c=2.0, form="penalty")
    for si in (prox, pen):
        si.load_state_dict(state)
    assert prox.before_backward(runner, loss) is loss
    w = net.connections["x_to_o"].projection.weight.detach()
    assert float(pen.before_backward(runner, loss).detach()) == pytest.approx(1.0 + 2.0 * float((w ** 2).sum()), rel=1e-12)
    with pytest.raises(NeurosimError, match="SI form"):
        SI(form="hard")


def test_parameters_frozen_after_the_first_task_are_left_alone():
    """Thresholds learn in task 0 and freeze from task 1 on (``freeze``): SI's importance of them stays
    unused, and the run trains through."""
    from neurosim.runs.experiment import build
    config = {"name": "si-freeze", "model": {"name": "pmnist", "n_in": 64, "hidden": 8, "seed": 1},
              "scenario": {"name": "permuted", "data": "digits", "tasks": 2, "seed": 2,
                           "options": {"n_train": 256, "n_test": 64}},
              "training": {"steps": 2, "epochs": 1, "batch_size": 64, "lr": 0.1, "seed": 3},
              "plugins": [{"name": "freeze"}, {"name": "si"}]}
    runner = build(config, progress=False)
    result = runner.run()
    si = runner.plugins[1]
    frozen = [n for n, p in runner.network.named_parameters() if not p.requires_grad]
    assert frozen and all(n in si.big_omega and n not in si.start for n in frozen)
    assert np.isfinite(result.R).all()


def test_whole_importance_penalty_and_proximal_step_are_the_closed_forms():
    """A parameter of at most ``full`` entries: omega = -sum_t g_t dtheta_t^T (6 x 6); Omega = D^-1/2 P
    D^-1/2 with P the positive part of omega's symmetric part and D = Delta^2 + xi; the penalty is
    c d^T Omega d and the proximal step (I + 2 lr c Omega)^-1 (theta' + 2 lr c Omega anchor)."""
    net = readout()
    runner = runner_for(net, lr=0.1)
    w = net.connections["x_to_o"].projection.weight
    si = SI(c=0.7, xi=0.01)
    si.before_task(runner, 0)
    start = w.detach().numpy().reshape(-1).copy()
    gen = torch.Generator().manual_seed(3)
    want = np.zeros((6, 6))
    for _ in range(5):
        g = torch.randn(2, 3, generator=gen, dtype=torch.float64)
        before = w.detach().numpy().reshape(-1).copy()
        sgd_step(si, runner, g)
        want -= np.outer(g.numpy().reshape(-1), w.detach().numpy().reshape(-1) - before)
    assert si.omega[NAME].shape == (6, 6) and np.allclose(si.omega[NAME].numpy(), want, rtol=1e-12, atol=1e-15)
    want[0, 1] -= 3.0  # an asymmetric part, and a negative eigenvalue
    si.omega[NAME][0, 1] -= 3.0
    si.after_task(runner, 0)
    values, vectors = np.linalg.eigh((want + want.T) / 2)
    assert values.min() < 0
    positive = vectors @ np.diag(np.maximum(values, 0)) @ vectors.T
    d = 1 / np.sqrt((w.detach().numpy().reshape(-1) - start) ** 2 + 0.01)
    omega = d[:, None] * positive * d[None, :]
    assert np.allclose(si.big_omega[NAME].numpy(), omega, rtol=1e-10, atol=1e-12)
    assert np.linalg.eigvalsh(si.big_omega[NAME].numpy()).min() > -1e-10
    anchor = w.detach().numpy().reshape(-1).copy()
    grad = torch.randn(2, 3, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        w.add_(torch.randn(2, 3, generator=gen, dtype=torch.float64))
    theta = w.detach().numpy().reshape(-1) - 0.1 * grad.numpy().reshape(-1)
    dist = w.detach().numpy().reshape(-1) - anchor
    assert float(si.penalty(net).detach()) == pytest.approx(0.7 * dist @ omega @ dist, rel=1e-10)
    sgd_step(si, runner, grad)
    k = 2 * 0.1 * 0.7 * omega
    assert np.allclose(w.detach().numpy().reshape(-1), np.linalg.solve(np.eye(6) + k, theta + k @ anchor),
                       rtol=1e-10, atol=1e-12)
    fresh = SI(c=0.7, xi=0.01)
    fresh.load_state_dict(si.state_dict())
    before = w.detach().clone()
    results = []
    for plugin in (si, fresh):
        with torch.no_grad():
            w.copy_(before)
        sgd_step(plugin, runner, grad)
        results.append(w.detach().clone())
    assert torch.equal(results[0], results[1])


@pytest.mark.parametrize("full,whole", [(6, True), (5, False), (0, False)])
def test_a_parameter_of_more_than_full_entries_keeps_the_diagonal(full, whole):
    """The 6-entry weight keeps the whole path integral up to ``full=6``; above it the diagonal's
    Omega = max(0, omega) / (Delta^2 + xi), as with ``full=0``."""
    net = readout()
    runner = runner_for(net, lr=0.1)
    w = net.connections["x_to_o"].projection.weight
    si = SI(full=full)
    si.before_task(runner, 0)
    start = w.detach().clone()
    gen = torch.Generator().manual_seed(4)
    for _ in range(3):
        sgd_step(si, runner, torch.randn(2, 3, generator=gen, dtype=torch.float64))
    assert si.omega[NAME].shape == ((6, 6) if whole else (2, 3))
    omega = si.omega[NAME].clone()
    si.after_task(runner, 0)
    assert si.big_omega[NAME].shape == ((6, 6) if whole else (2, 3))
    if not whole:
        assert torch.allclose(si.big_omega[NAME], omega.clamp(min=0) / ((w.detach() - start) ** 2 + 0.1),
                              rtol=1e-12)


@pytest.mark.parametrize("full", [-1, 2.5, True, "all"])
def test_full_must_be_a_non_negative_integer(full):
    with pytest.raises(NeurosimError, match="SI full must be a non-negative integer"):
        SI(full=full)
