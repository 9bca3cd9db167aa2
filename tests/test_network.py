"""Network semantics: execution plans agree with a hand-written step loop; projections agree with dense maths."""
import torch

from neurosim import LI, LIF, Conv2d, Dense, Network, Sparse
from neurosim.neurons import lif_step
from neurosim.neurons.surrogate import surrogate


def test_plan_orders_components_topologically():
    net = Network(dt=1.0)
    net.add_input("x", 3)
    for name in ("a", "b", "c", "d"):
        net.add(name, LIF(4))
    net.connect("x", "a", Dense(3, 4))
    net.connect("a", "b", Dense(4, 4))
    net.connect("b", "c", Dense(4, 4))
    net.connect("c", "b", Dense(4, 4))
    net.connect("c", "d", Dense(4, 4))
    assert net.plan() == [["a"], ["b", "c"], ["d"]]


def test_layer_mode_equals_manual_loop():
    torch.manual_seed(0)
    net = Network(dt=1.0)
    net.add_input("x", 10)
    net.add("h", LIF(20, tau_mem=5.0, dtype=torch.float64))
    net.add("o", LI(3, tau_mem=8.0, dtype=torch.float64))
    w1 = net.connect("x", "h", Dense(10, 20, scale=4.0, dtype=torch.float64))
    w2 = net.connect("h", "o", Dense(20, 3, dtype=torch.float64))
    x = torch.rand(30, 2, 10, dtype=torch.float64)
    out = net.run(x).outputs["o"]
    p = net.populations["h"].params
    state = net.populations["h"].initial_state(2)
    v_o = torch.zeros(2, 3, dtype=torch.float64)
    beta_o = torch.exp(torch.tensor(-1.0 / 8.0, dtype=torch.float64))
    expected = []
    for t in range(30):
        z, state = lif_step(x[t] @ w1.weight.t(), state, p, 1.0, surrogate("fast_sigmoid"))
        v_o = v_o * beta_o + z @ w2.weight.t()
        expected.append(v_o)
    assert torch.allclose(out, torch.stack(expected), atol=1e-12)
    assert 0 < net.run(x, outputs=["h"]).outputs["h"].mean() < 1


def test_recurrent_projection_delivers_previous_step():
    net = Network(dt=1.0)
    net.add_input("x", 2)
    net.add("r", LIF(2, tau_mem=1e9, v_th=0.5, reset="zero"))
    net.connect("x", "r", Dense(2, 2, weight=torch.eye(2)))
    net.connect("r", "r", Dense(2, 2, weight=torch.tensor([[0.0, 0.0], [1.0, 0.0]])))
    x = torch.zeros(5, 1, 2)
    x[1, 0, 0] = 1.0
    z = net.run(x, outputs=["r"]).outputs["r"][:, 0]
    assert z[:, 0].tolist() == [0, 1, 0, 0, 0]
    assert z[:, 1].tolist() == [0, 0, 1, 0, 0]


def test_state_continues_across_runs():
    torch.manual_seed(1)
    net = Network(dt=0.5)
    net.add_input("x", 5)
    net.add("r", LIF(12, tau_mem=10.0, dtype=torch.float64))
    net.connect("x", "r", Dense(5, 12, scale=3.0, dtype=torch.float64))
    net.connect("r", "r", Sparse(12, 12, p=0.3, weight=0.2, seed=3, dtype=torch.float64))
    x = torch.rand(40, 1, 5, dtype=torch.float64)
    whole = net.run(x, outputs=["r"]).outputs["r"]
    first = net.run(x[:17], outputs=["r"])
    second = net.run(x[17:], outputs=["r"], state=first.state)
    assert whole.sum() > 0
    assert torch.equal(whole, torch.cat([first.outputs["r"], second.outputs["r"]]))


def test_probes_record_with_stride():
    net = Network(dt=1.0)
    net.add_input("x", 4)
    net.add("h", LIF(6))
    net.connect("x", "h", Dense(4, 6, scale=5.0))
    net.probe("h", "v", stride=3)
    net.probe("h", "spikes", stride=2)
    x = torch.rand(10, 2, 4)
    res = net.run(x, outputs=["h"])
    assert res.probes["h_v"].shape == (4, 2, 6)
    assert torch.equal(res.probes["h_spikes"], res.outputs["h"][::2])


def test_sparse_matches_its_dense_matrix_with_and_without_gradients():
    s = Sparse(60, 50, p=0.1, weight=torch.randn(1).item(), seed=0)
    s2 = Sparse(60, 50, pre=s.pre.numpy(), post=s.post.numpy(), weight=torch.randn(s.nnz), learnable=True)
    z = (torch.rand(4, 60) < 0.2).float()
    for proj in (s, s2):
        dense = z @ proj.to_dense().t()
        assert torch.allclose(proj(z), dense, atol=1e-5)
        with torch.no_grad():
            assert torch.allclose(proj.propagate_spikes(z), dense, atol=1e-5)
    assert abs(s.nnz / (60 * 50) - 0.1) < 0.03
    s2(z).sum().backward()
    assert s2.weight.grad is not None and s2.weight.grad.abs().sum() > 0


def test_dale_and_mask():
    signs = torch.tensor([1.0, -1.0, 1.0])
    mask = torch.tensor([[True, True, False], [False, True, True]])
    d = Dense(3, 2, weight=torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, -6.0]]), dale=signs, mask=mask)
    assert d.effective_weight().tolist() == [[1.0, -2.0, 0.0], [0.0, -5.0, 6.0]]


def test_conv_projection_equals_conv2d():
    c = Conv2d((2, 6, 6), 4, 3, padding=1)
    x = torch.rand(5, 3, 72)
    y = torch.nn.functional.conv2d(x.reshape(15, 2, 6, 6), c.weight, padding=1).reshape(5, 3, -1)
    assert torch.allclose(c(x), y)
    assert c.out_shape == (4, 6, 6)


def test_training_through_network_reduces_loss():
    torch.manual_seed(0)
    net = Network(dt=1.0)
    net.add_input("x", 8)
    net.add("h", LIF(32, tau_mem=10.0, spike_fn="atan"))
    net.add("o", LI(2, tau_mem=10.0))
    net.connect("x", "h", Dense(8, 32, scale=3.0))
    net.connect("h", "o", Dense(32, 2))
    x = torch.rand(20, 16, 8)
    y = (x[:, :, :4].mean((0, 2)) > x[:, :, 4:].mean((0, 2))).long()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    losses = []
    for _ in range(40):
        loss = torch.nn.functional.cross_entropy(net.run(x).outputs["o"].mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_sparse_sorts_unordered_synapses_with_their_weights():
    pre, post, w = [2, 0, 2, 1], [1, 3, 0, 2], [1.0, 2.0, 3.0, 4.0]
    s = Sparse(3, 4, pre=pre, post=post, weight=torch.tensor(w))
    dense = torch.zeros(4, 3)
    dense[post, pre] = torch.tensor(w)
    assert torch.equal(s.to_dense(), dense)
    assert s.pre.tolist() == [0, 1, 2, 2] and s.post.tolist() == [3, 2, 0, 1]
