"""A delayed projection drives every neuron model: the network equals the population fed the delayed drive."""
import pytest
import torch

from neurosim import ALIF, DSR, LI, LIF, Delayed, Izhikevich, Network

POPULATIONS = {
    "lif": lambda: LIF(6, tau_mem=5.0, v_th=0.5, dtype=torch.float64),
    "alif": lambda: ALIF(6, dtype=torch.float64),
    "izhikevich": lambda: Izhikevich(6, cell_type="RS", dtype=torch.float64),
    "dsr": lambda: DSR(6, dtype=torch.float64),
    "li": lambda: LI(6, tau_mem=5.0, dtype=torch.float64),
}


@pytest.mark.parametrize("kind", list(POPULATIONS))
@pytest.mark.parametrize("rounded", [False, True])
def test_each_neuron_model_behind_a_delayed_projection(kind, rounded):
    torch.manual_seed(0)
    gain = {"alif": 30.0, "izhikevich": 20.0}.get(kind, 3.0)
    proj = Delayed(4, 6, 5, scale=gain, sigma=1.0, dtype=torch.float64)
    proj.rounded = rounded
    pop = POPULATIONS[kind]()
    net = Network(dt=1.0)
    net.add_input("x", 4)
    net.add("p", pop)
    net.connect("x", "p", proj)
    x = (torch.rand(30, 2, 4, generator=torch.Generator().manual_seed(1)) < 0.4).double()
    out = net.run(x, outputs=["p"]).outputs["p"]
    direct = pop(proj(x))[0]
    assert torch.allclose(out, direct, rtol=0, atol=1e-12)
    assert out.abs().sum() > 0
    out.sum().backward()
    assert torch.isfinite(proj.weight.grad).all() and proj.weight.grad.abs().sum() > 0
    if not rounded:
        assert torch.isfinite(proj.positions.grad).all()
