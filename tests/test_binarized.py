"""The binarised network of Laborieux et al.: sign forward, straight-through backward, batch norm
with batch statistics and task-specific parameters."""
import pytest
import torch
from torch.nn import functional as F

from neurosim.errors import NeurosimError
from neurosim.models.binarized import BinarizedMLP, BinaryLinear, binary_weight, sign_activation


def test_sign_activation_forward_and_clipped_straight_through_gradient():
    x = torch.tensor([-2.0, -1.0, -0.3, 0.0, 0.4, 1.0, 1.5], requires_grad=True)
    y = sign_activation(x)
    assert y.tolist() == [-1.0, -1.0, -1.0, 0.0, 1.0, 1.0, 1.0]
    upstream = torch.arange(1.0, 8.0)
    (y * upstream).sum().backward()
    assert x.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 5.0, 6.0, 0.0]  # zero where |x| > 1


def test_binary_layer_uses_signs_and_passes_the_gradient_to_hidden_weights_unchanged():
    g = torch.Generator().manual_seed(0)
    layer = BinaryLinear(6, 4, width=0.1, generator=g)
    assert layer.weight.abs().max() <= 0.05
    x = torch.randn(5, 6, generator=g)
    c = torch.randn(5, 4, generator=g)
    out = layer(x)
    assert torch.allclose(out, x @ torch.sign(layer.weight.detach()).t())
    (out * c).sum().backward()
    assert torch.allclose(layer.weight.grad, c.t() @ x)  # d/dW_b of sum(c * x W_b^T), W_b = sign(W_h)
    w = torch.tensor([-0.2, 0.0, 3.0], requires_grad=True)
    assert binary_weight(w).tolist() == [-1.0, 0.0, 1.0]


def test_network_output_depends_only_on_the_signs_of_hidden_weights():
    net = BinarizedMLP((20, 16, 16, 3), seed=1)
    x = torch.rand(32, 20)
    before = net(x)
    with torch.no_grad():
        for w in net.hidden_weights():
            w.mul_(torch.rand(w.shape) * 5 + 0.1)  # magnitudes change, signs do not
    assert torch.allclose(net(x), before, atol=1e-6)
    with torch.no_grad():
        net.hidden_weights()[0][0, :].neg_()
    assert not torch.allclose(net(x), before, atol=1e-3)


def test_batch_norm_uses_the_batch_in_evaluation_and_its_parameters_are_swappable():
    net = BinarizedMLP((20, 16, 3), seed=2)
    x = torch.rand(50, 20)
    train_out = net(x)
    net.eval()
    assert torch.equal(net(x), train_out)  # no running statistics: the batch's own, in both modes
    z = net.layers[-1](torch.sign(net.norms[0](net.layers[0](x))))
    assert torch.allclose(net(x), (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5), atol=1e-5)
    saved = net.norm_state()
    with torch.no_grad():
        net.norms[-1].weight.fill_(3.0)
        net.norms[-1].bias.fill_(-1.0)
    changed = net(x)
    assert not torch.allclose(changed, train_out)
    net.load_norm_state(saved)
    assert torch.equal(net(x), train_out)


def test_trains_and_refuses_bad_input():
    torch.manual_seed(0)
    net = BinarizedMLP((10, 32, 32, 2), seed=0)
    x = torch.randn(200, 10)
    y = (x[:, 0] > 0).long()
    opt = torch.optim.Adam(net.parameters(), lr=0.005)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    assert (net(x).argmax(1) == y).float().mean() > 0.8  # chance 0.5; measured 0.88-0.93 from step 50 on
    with pytest.raises(NeurosimError, match=r"input must be \[batch, 10\], got shape \(4, 9\)"):
        net(torch.zeros(4, 9))
    with pytest.raises(NeurosimError, match="sizes must be at least two positive integers"):
        BinarizedMLP((10,))
