"""e-prop against the truncated gradient computed independently by autograd."""
import pytest
import torch
from torch.nn import functional as F

import neurosim as ns
from neurosim.errors import NeurosimError
from neurosim.learning import EProp, EPropParameters
from neurosim.neurons import LIState, li_step

N_IN, N_HID, N_OUT, T, B = 5, 8, 3, 30, 4

NEURONS = {
    "lif_subtract": lambda: ns.LIF(N_HID, tau_mem=8.0, v_th=1.0, spike_fn="fast_sigmoid", dtype=torch.float64),
    "lif_zero_current_per_neuron_tau": lambda: ns.LIF(
        N_HID, tau_mem=torch.linspace(5.0, 15.0, N_HID), v_th=1.0, reset="zero", input_mode="current",
        spike_fn=ns.surrogate("triangle", 1.0), dtype=torch.float64),
    "alif_zero_current": lambda: ns.ALIF(N_HID, tau_mem=10.0, tau_adapt=60.0, a=0.5, b=0.4, v_th=1.0,
                                         dtype=torch.float64),
    "alif_subtract_jump": lambda: ns.ALIF(N_HID, tau_mem=10.0, tau_adapt=40.0, a=0.2, b=0.3, v_th=1.0,
                                          reset="subtract", input_mode="jump", dtype=torch.float64),
}


def network(neuron, recurrent=True, readout_mode="jump", seed=0):
    torch.manual_seed(seed)
    pop = NEURONS[neuron]()
    scale = 8.0 if getattr(pop.params, "input_mode", "jump") == "current" else 1.5
    net = ns.Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("h", pop)
    net.add("o", ns.LI(N_OUT, tau_mem=6.0, input_mode=readout_mode, dtype=torch.float64))
    net.connect("x", "h", ns.Dense(N_IN, N_HID, scale=scale, dtype=torch.float64))
    if recurrent:
        net.connect("h", "h", ns.Dense(N_HID, N_HID, scale=1.0, dtype=torch.float64))
    net.connect("h", "o", ns.Dense(N_HID, N_OUT, dtype=torch.float64))
    return net


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    xs = torch.rand(T, B, N_IN, generator=g, dtype=torch.float64)
    target = torch.randn(T, B, N_OUT, generator=g, dtype=torch.float64)
    labels = torch.randint(0, N_OUT, (B,), generator=g)
    return xs, target, labels


def losses(target, labels):
    return {
        "mse": lambda ys: 0.5 * ((ys - target) ** 2).sum() / B,
        "ce_mean": lambda ys: F.cross_entropy(ys.mean(0), labels),
    }


def truncated_autograd(net, xs, loss_fn, B_feedback=None, cut=True):
    """Gradients of loss_fn(readout sequence) by autograd through the step functions, with the
    hidden state's dependence on other neurons' past cut: the recurrent input sees z[t-1] detached
    (the reset is detached by the neuron itself); v's and w's own dynamics are differentiated. With
    B_feedback the readout passes its gradient to z through B instead of W_out (same forward value)."""
    pop, out = net.populations["h"], net.populations["o"]
    w_in, w_out = net.connections["x_to_h"].projection, net.connections["h_to_o"].projection
    w_rec = net.connections.get("h_to_h")
    for p in net.parameters():
        p.grad = None
    st, z = pop.initial_state(xs.shape[1]), torch.zeros(xs.shape[1], N_HID, dtype=torch.float64)
    y = torch.zeros(xs.shape[1], N_OUT, dtype=torch.float64)
    ys = []
    for t in range(xs.shape[0]):
        drive = w_in(xs[t])
        if w_rec is not None:
            drive = drive + w_rec.projection(z.detach() if cut else z)
        z, st = pop.step(drive, st)
        u = w_out(z)
        if B_feedback is not None:
            u = w_out(z.detach()) + (z @ B_feedback - (z @ B_feedback).detach())
        y, _ = li_step(u, LIState(y), out.params, net.dt)
        ys.append(y)
    loss_fn(torch.stack(ys)).backward()
    return {name: c.projection.weight.grad.clone() for name, c in net.connections.items()}


def eprop_grads(net, xs, loss_fn, params=None):
    for p in net.parameters():
        p.grad = None
    rule = EProp(net, params)
    rule.sequence(xs, loss_fn)
    return rule, {name: c.projection.weight.grad.clone() for name, c in net.connections.items()}


@pytest.mark.parametrize("neuron", list(NEURONS))
@pytest.mark.parametrize("loss", ["mse", "ce_mean"])
def test_symmetric_eprop_is_the_truncated_gradient(neuron, loss):
    net = network(neuron, readout_mode="current" if loss == "ce_mean" else "jump")
    xs, target, labels = data()
    loss_fn = losses(target, labels)[loss]
    _, got = eprop_grads(net, xs, loss_fn)
    expected = truncated_autograd(net, xs, loss_fn)
    for name in expected:
        assert expected[name].abs().max() > 1e-4, name  # spikes and surrogate derivatives were present
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5 * expected[name].abs().max().item())


def test_recurrent_cut_matters():
    """The full BPTT gradient (recurrence not cut) is not what e-prop computes: the test above can fail."""
    net = network("lif_subtract")
    xs, target, labels = data()
    loss_fn = losses(target, labels)["mse"]
    _, got = eprop_grads(net, xs, loss_fn)
    full = truncated_autograd(net, xs, loss_fn, cut=False)
    assert (got["h_to_h"] - full["h_to_h"]).abs().max() > 1e-3 * full["h_to_h"].abs().max()


def test_random_feedback_replaces_the_readout_weights_in_the_learning_signal():
    net = network("alif_zero_current")
    xs, target, labels = data()
    loss_fn = losses(target, labels)["mse"]
    rule, got = eprop_grads(net, xs, loss_fn, EPropParameters(feedback="random", seed=3))
    _, sym = eprop_grads(net, xs, loss_fn)
    expected = truncated_autograd(net, xs, loss_fn, B_feedback=rule.feedback())
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5 * expected[name].abs().max().item())
    torch.testing.assert_close(got["h_to_o"], sym["h_to_o"], rtol=1e-12, atol=0)  # readout: no feedback involved
    assert (got["x_to_h"] - sym["x_to_h"]).abs().max() > 0.1 * sym["x_to_h"].abs().max()


@pytest.mark.parametrize("neuron", ["lif_subtract", "alif_zero_current"])
def test_online_steps_equal_the_whole_sequence(neuron):
    net = network(neuron)
    xs, target, labels = data()
    loss_fn = losses(target, labels)["mse"]
    _, seq = eprop_grads(net, xs, loss_fn)
    for p in net.parameters():
        p.grad = None
    rule = EProp(net)
    state = rule.initial_state(B)
    seen = []
    for t in range(T):
        y, state = rule.step(xs[t], state, on_step=lambda t, s: seen.append(t), t=t)
        rule.learn((y - target[t]) / B, state)
    assert seen == list(range(T))
    for name, c in net.connections.items():
        torch.testing.assert_close(c.projection.weight.grad, seq[name], rtol=1e-9, atol=1e-12)


def test_eprop_update_goes_through_sgd_as_a_gradient():
    net = network("lif_subtract")
    xs, _, labels = data()
    target = torch.full((T, B, N_OUT), 0.5, dtype=torch.float64)  # reachable
    loss_fn = losses(target, labels)["mse"]
    before = loss_fn(net.run({"x": xs}).outputs["o"]).item()
    opt = torch.optim.SGD(net.parameters(), lr=0.001)
    for _ in range(20):
        opt.zero_grad()
        EProp(net).sequence(xs, loss_fn)
        opt.step()
    with torch.no_grad():
        after = loss_fn(net.run({"x": xs}).outputs["o"]).item()
    assert after < 0.2 * before


def test_eprop_rejects_networks_it_cannot_handle():
    net = network("lif_subtract")
    net.add("extra", ns.LIF(2, dtype=torch.float64))
    with pytest.raises(NeurosimError, match="one input, one hidden"):
        EProp(net, hidden="h", readout="o")
    net = ns.Network(dt=1.0)
    net.add_input("x", 2)
    net.add("h", ns.LIF(3, tau_ref=2.0))
    net.add("o", ns.LI(2))
    net.connect("x", "h", ns.Dense(2, 3))
    net.connect("h", "o", ns.Dense(3, 2))
    with pytest.raises(NeurosimError, match="refractory"):
        EProp(net)
    with pytest.raises(NeurosimError, match="feedback"):
        EPropParameters(feedback="broadcast")
    rule = EProp(network("lif_subtract"))
    with pytest.raises(NeurosimError, match="batch 1 but the state has batch 4"):
        rule.step(torch.zeros(1, N_IN, dtype=torch.float64), rule.initial_state(B))
    with pytest.raises(NeurosimError, match="batch must be an integer >= 1"):
        rule.initial_state(0)
