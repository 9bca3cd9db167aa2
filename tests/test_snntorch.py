r"""LIF against snnTorch's ``Leaky`` (0.9.4): the same spikes, membranes and surrogate gradients.

snnTorch, per step, with threshold :math:`\theta`, spikes :math:`S_t = H(U_t - \theta)` and a
reset signal :math:`R_t = H(U_{t-1} - \theta)` recomputed from the previous membrane and detached:

- ``reset_delay=True`` (its default) applies the reset of a spike one step later:
  :math:`U_t = \beta U_{t-1} + I_t - R_t \theta` (subtract) or
  :math:`U_t = \beta (1 - R_t) U_{t-1} + I_t` (zero); the membrane it returns is :math:`U_t`,
  before that reset.
- ``reset_delay=False`` resets at once: :math:`U_t` as above, then
  :math:`U_t \leftarrow U_t - (S_t - R_t)\theta` (subtract) or :math:`U_t - (S_t - R_t) U_t`
  (zero), with :math:`S_t` not detached.

neurosim's LIF (jump input, :math:`v_L = 0`) resets at once: :math:`u_t = \beta v_{t-1} + x_t`,
:math:`z_t = H(u_t - \theta)`, :math:`v_t = u_t - z_t(\theta - v_{reset})` (subtract) or
:math:`v_{reset}` (zero).

The delayed reset is the same model seen through the membrane before the reset. snnTorch's
:math:`U_t` is neurosim's :math:`u_t` when :math:`v_{reset} = 0` (zero) and
:math:`\theta - v_{reset} = \theta / \beta` (subtract, since
:math:`\beta(u_t - z_t\theta/\beta) = \beta u_t - z_t\theta`); neurosim's :math:`v_t` is then
:math:`U_t - S_t\theta/\beta`, resp. :math:`(1 - S_t) U_t`. snnTorch detaches that reset:
``detach_reset=True``.

Without the delay :math:`R_t` stays 0 as long as no membrane is above threshold after a reset
(a subtract reset from :math:`u_t > 2\theta` would raise snnTorch's threshold to :math:`2\theta`
for the next step, which the test rules out); the models then agree with :math:`v_{reset} = 0`,
the gradient flowing through the reset: ``detach_reset=False``.

Spikes are identical, membranes within 1e-6 and gradients within 1e-5 of the largest gradient,
in float64 and in float32. Membranes are bit-identical except with the delayed subtract reset,
whose reset :math:`\theta/\beta` rounds differently from snnTorch's :math:`\theta` (measured:
1e-16 in float64, 6e-7 in float32 after 50 steps, so float32 meets 1e-6 with little margin).
snnTorch's spike functions return float32 spikes whatever the input's dtype, so in float64 its
gradients through the spikes are rounded to float32: they differ from neurosim's by about 1e-8
(float32: 1e-6).
"""
import math

import pytest
import torch

snn = pytest.importorskip("snntorch")
from snntorch import surrogate as snn_surrogate  # noqa: E402
from torch import nn  # noqa: E402

from neurosim import LIF, Dense, Network  # noqa: E402
from neurosim.kernels.fused import lif_sequence  # noqa: E402
from neurosim.neurons.surrogate import surrogate  # noqa: E402

T, B, N_IN, N = 50, 8, 120, 300
DT, TAU = 1.0, 10.0
BETA = math.exp(-DT / TAU)
THETA = 1.0
V_TOL, G_TOL = 1e-6, 1e-5  # membranes; gradients relative to the largest
SNN_SURROGATES = {"fast_sigmoid": lambda: snn_surrogate.fast_sigmoid(slope=25),
                  "atan": lambda: snn_surrogate.atan(alpha=2.0)}


def data(dtype):
    """Inputs, weights, bias, and the coefficients of the loss on spikes and membranes."""
    g = torch.Generator().manual_seed(7)
    x = (torch.rand(T, B, N_IN, generator=g) < 0.2).to(dtype)
    w = (torch.randn(N, N_IN, generator=g) * 0.05).to(dtype)
    b = (torch.randn(N, generator=g) * 0.05 + 0.15).to(dtype)
    cz = torch.randn(T, B, N, generator=g).to(dtype) / (T * B)
    cv = torch.randn(T, B, N, generator=g).to(dtype) / (T * B)
    return x, w, b, cz, cv


def neurosim_params(reset: str, delay: bool) -> dict:
    if not delay:
        return dict(reset=reset, v_reset=0.0, detach_reset=False)
    v_reset = THETA * (1 - 1 / BETA) if reset == "subtract" else 0.0
    return dict(reset=reset, v_reset=v_reset, detach_reset=True)


def run_snntorch(x, w, b, reset, delay, spike_fn):
    """nn.Linear then snn.Leaky, step by step; returns spikes, the membranes compared with
    neurosim's (after the reset), the input and the layer as leaves for gradients."""
    x = x.clone().requires_grad_()
    fc = nn.Linear(N_IN, N).to(x.dtype)
    with torch.no_grad():
        fc.weight.copy_(w)
        fc.bias.copy_(b)
    lif = snn.Leaky(beta=torch.tensor(BETA, dtype=x.dtype), threshold=THETA, spike_grad=SNN_SURROGATES[spike_fn](),
                    reset_mechanism=reset, reset_delay=delay)
    mem = lif.reset_mem()
    spikes, mems = [], []
    for t in range(T):
        spk, mem = lif(fc(x[t]), mem)
        spikes.append(spk)
        mems.append(mem)
    zs, us = torch.stack(spikes), torch.stack(mems)
    if delay:
        p = neurosim_params(reset, delay)
        zd = zs.detach().to(x.dtype)
        us = us - zd * (THETA - p["v_reset"]) if reset == "subtract" else us * (1 - zd)
    return zs, us, x, fc.weight, fc.bias


def run_neurosim(x, w, b, reset, delay, spike_fn, path):
    """Dense then LIF over all steps at once; ``path`` "step" loops ``LIF.step``, "sequence" is
    the fused function ``LIF.forward`` uses."""
    x = x.clone().requires_grad_()
    dense = Dense(N_IN, N, bias=True, weight=w, dtype=x.dtype)
    with torch.no_grad():
        dense.bias.copy_(b)
    pop = LIF(N, tau_mem=TAU, v_th=THETA, dt=DT, spike_fn=spike_fn, dtype=x.dtype, **neurosim_params(reset, delay))
    cur = dense(x)
    state = pop.initial_state(B)
    if path == "sequence":
        zs, vs = lif_sequence(cur, state.v, pop.params, DT, pop.spike_fn, membranes=True)
    else:
        spikes, mems = [], []
        for t in range(T):
            z, state = pop.step(cur[t], state)
            spikes.append(z)
            mems.append(state.v)
        zs, vs = torch.stack(spikes), torch.stack(mems)
    return zs, vs, x, dense.weight, dense.bias


@pytest.mark.parametrize("path", ["step", "sequence"])
@pytest.mark.parametrize("delay", [True, False], ids=["reset_delay", "no_delay"])
@pytest.mark.parametrize("reset", ["subtract", "zero"])
@pytest.mark.parametrize("spike_fn", ["fast_sigmoid", "atan"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
def test_lif_matches_snntorch_leaky(dtype, spike_fn, reset, delay, path):
    x, w, b, cz, cv = data(dtype)
    ref = run_snntorch(x, w, b, reset, delay, spike_fn)
    out = run_neurosim(x, w, b, reset, delay, spike_fn, path)
    zs, vs = out[0].detach(), out[1].detach()
    assert 0.05 < zs.mean() < 0.4, "the inputs should make the neurons fire fairly often"
    if not delay:
        assert (vs <= THETA).all(), "snnTorch raises its threshold after a membrane above threshold"
    assert torch.equal(zs, ref[0].detach())
    assert (vs - ref[1].detach()).abs().max() <= V_TOL

    grads = []
    for zs_, vs_, *leaves in (ref, out):
        ((zs_ * cz).sum() + (vs_ * cv).sum()).backward()
        grads.append([leaf.grad for leaf in leaves])
    for name, g_ref, g in zip(("input", "weight", "bias"), *grads):
        scale = g_ref.abs().max()
        assert scale > 0
        assert (g - g_ref).abs().max() <= G_TOL * scale, name


@pytest.mark.parametrize("reset", ["subtract", "zero"])
def test_network_layer_matches_snntorch_spikes(reset):
    """The user's path: a Network (input -> Dense -> LIF) runs the layer through ``LIF.forward``."""
    x, w, b, *_ = data(torch.float64)
    net = Network(dt=DT)
    net.add_input("x", N_IN)
    net.add("h", LIF(N, tau_mem=TAU, v_th=THETA, spike_fn="atan", dtype=torch.float64,
                     **neurosim_params(reset, True)))
    dense = net.connect("x", "h", Dense(N_IN, N, bias=True, weight=w, dtype=torch.float64))
    with torch.no_grad():
        dense.bias.copy_(b)
    zs = net.run(x).outputs["h"]
    assert torch.equal(zs, run_snntorch(x, w, b, reset, True, "atan")[0].detach())
