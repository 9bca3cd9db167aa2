"""Delayed projection (DCLS): kernel as in the dcls package, exact integer delays, gradients, errors, networks."""
import pytest
import torch
from torch.func import functional_call

from neurosim import LI, LIF, Delayed, Dense, Network, NeurosimError
from neurosim.projections import delay_kernels, delayed, integer_delays, sigma_schedule
from neurosim.projections.delay_kernels import event_sum, nonzero_count
from neurosim.projections.delayed import (FFT_MIN_TAPS, causal_conv, direct_conv, fft_length, gaussian_kernel,
                                          spectral_conv)


def spikes(T, B, n, p=0.3, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(T, B, n, generator=g) < p).to(dtype)


def dyadic(n_out, n_in, seed=0):
    """Weights k/16: every partial sum of a few of them is exact, so shifted sums compare with ==."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-16, 17, (n_out, n_in), generator=g).double() / 16


def shift_reference(x, w, d):
    """Each input spike train shifted by its synapse's integer delay, times the weight, summed."""
    T, B, _ = x.shape
    out = torch.zeros(T, B, w.shape[0], dtype=x.dtype)
    for i in range(w.shape[0]):
        for j in range(w.shape[1]):
            k = int(d[i, j])
            out[k:, :, i] += w[i, j] * x[: T - k, :, j]
    return out


@pytest.mark.parametrize("D", [1, 6, 7, 25])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_kernel_and_layer_equal_dcls(D, dtype):
    modules = pytest.importorskip("DCLS.construct.modules")
    torch.manual_seed(D)
    n_in, n_out, T, sigma = 5, 4, 30, 0.1 * D
    proj = Delayed(n_in, n_out, D, sigma=sigma, dtype=dtype)
    W, P = proj.weight.detach()[..., None], proj.positions.detach()[None, ..., None]
    SIG = torch.full_like(P, sigma)
    ref = modules.ConstructKernel1d(n_out, n_in, 1, 1, (D,), "gauss")(W, P, SIG)
    assert ref.shape == (n_out, n_in, D)
    assert (proj.kernel() - ref).abs().max() < 1e-6
    # the paper's layer: Dcls1d on the input padded by D-1 left and (D-1)//2 right; ours drops the tail
    layer = modules.Dcls1d(n_in, n_out, 1, dilated_kernel_size=D, bias=False, version="gauss").to(dtype)
    with torch.no_grad():
        layer.weight.copy_(W), layer.P.copy_(P), layer.SIG.copy_(SIG)
    x = spikes(T, 3, n_in, dtype=dtype)
    full = layer(torch.nn.functional.pad(x.permute(1, 2, 0), (D - 1, (D - 1) // 2))).permute(2, 0, 1)
    assert full.shape[0] == T + (D - 1) // 2
    assert (proj(x) - full[:T]).abs().max() < 1e-6


def test_kernel_taps_sum_to_the_weight_and_centre_on_the_position():
    proj = Delayed(3, 2, 9, sigma=0.0, dtype=torch.float64)
    with torch.no_grad():
        proj.positions.copy_(torch.tensor([[-4.0, 0.0, 4.0], [1.0, -2.0, 3.0]]))
    K = proj.kernel()
    assert torch.allclose(K.sum(-1), proj.weight, atol=1e-6)
    assert K.abs().argmax(-1).tolist() == [[0, 4, 8], [5, 2, 7]]  # tap p + floor(D/2)
    assert proj.rounded_delays().tolist() == [[8, 4, 0], [3, 6, 1]]  # delay D-1-tap


@pytest.mark.parametrize("D", [1, 4, 5, 12])
def test_rounded_positions_shift_each_spike_train_exactly(D):
    torch.manual_seed(D)
    T, n_in, n_out = 3 * D + 4, 6, 5
    proj = Delayed(n_in, n_out, D, weight=dyadic(n_out, n_in), dtype=torch.float64)
    with torch.no_grad():
        proj.positions.uniform_(-D, D)  # out of range on purpose: forward clamps
    x = spikes(T, 3, n_in)
    with integer_delays(proj):
        assert proj.rounded
        y = proj(x)
    assert not proj.rounded
    lo, hi = proj.position_range
    d = hi - proj.positions.detach().round()
    assert torch.equal(proj.rounded_delays(), d.long())
    assert d.min() >= 0 and d.max() <= D - 1
    assert torch.equal(y, shift_reference(x, proj.weight.detach(), d))


def test_integer_mode_leaves_the_continuous_state_untouched():
    proj = Delayed(4, 3, 7, sigma=1.5, dtype=torch.float64)
    x = spikes(20, 2, 4)
    before, state = proj(x), {k: v.clone() for k, v in proj.state_dict().items() if torch.is_tensor(v)}
    with integer_delays(proj):
        proj(x)
    after = proj.state_dict()
    assert all(torch.equal(state[k], after[k]) for k in state)
    assert torch.equal(proj(x), before)


def test_fixed_delays_random_and_given():
    d = torch.tensor([[0, 3, 5], [2, 2, 1]])
    given = Delayed(3, 2, 6, delays=d, weight=dyadic(2, 3, 1), dtype=torch.float64)
    drawn = Delayed(3, 2, 6, delays="random", weight=dyadic(2, 3, 2), generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    x = spikes(15, 2, 3)
    for proj in (given, drawn):
        assert proj.positions is None and not proj.learnable_delays
        assert proj.rounded_delays().min() >= 0 and proj.rounded_delays().max() <= 5
        assert torch.equal(proj(x), shift_reference(x, proj.weight.detach(), proj.rounded_delays()))
        assert [n for n, _ in proj.named_parameters()] == ["weight"]
    assert torch.equal(given.rounded_delays(), d)


def test_mask_and_dale_act_on_both_paths():
    mask = torch.tensor([[True, False, True], [True, True, False]])
    proj = Delayed(3, 2, 4, weight=dyadic(2, 3, 5), mask=mask, dale=torch.tensor([1.0, -1.0, 1.0]),
                   dtype=torch.float64)
    w = proj.effective_weight().detach()
    assert torch.equal(w, proj.weight.detach().abs() * torch.tensor([1.0, -1.0, 1.0]) * mask)
    assert torch.allclose(proj.kernel().sum(-1), w, atol=1e-6)
    x = spikes(12, 2, 3)
    with integer_delays(proj):
        assert torch.equal(proj(x), shift_reference(x, w, proj.rounded_delays()))


def test_small_sigma_approaches_integer_delays():
    torch.manual_seed(3)
    proj = Delayed(6, 4, 9, dtype=torch.float64)
    with torch.no_grad():
        proj.positions.copy_(torch.randint(-4, 5, (4, 6)).double())  # whole positions: rounding is exact
    x = spikes(30, 2, 6)
    with integer_delays(proj):
        exact = proj(x)
    bound = (proj.weight.abs().sum(1) * x.max()).max().item()
    gaps = []
    for sigma in (2.0, 0.5, 0.0):
        proj.sigma = sigma
        gaps.append((proj(x) - exact).abs().max().item())
    assert gaps[0] > gaps[1] > gaps[2]
    # with sigma 0 the Gaussian still has std 0.27: each neighbour tap keeps exp(-0.5 / 0.27^2) ~ 1e-3
    assert gaps[2] < 2.2e-3 * bound


def test_gradients_reach_weights_and_positions_finite_differences():
    torch.manual_seed(0)
    proj = Delayed(3, 2, 5, sigma=0.8, dtype=torch.float64)
    x = torch.rand(9, 2, 3, dtype=torch.float64) * 2  # event counts, not just 0/1
    w = proj.weight.detach().clone().requires_grad_()
    p = (torch.rand(2, 3, dtype=torch.float64) * 3 - 1.5).requires_grad_()  # inside the clamp range

    def run(w, p):
        return functional_call(proj, {"weight": w, "positions": p}, (x,))

    assert torch.autograd.gradcheck(run, (w, p), eps=1e-6, atol=1e-7)
    run(w, p).square().sum().backward()
    assert w.grad.abs().min() > 0 and p.grad.abs().min() > 0
    with integer_delays(proj):  # rounded: weights still learn, positions are piecewise constant
        assert torch.autograd.gradcheck(lambda w: functional_call(proj, {"weight": w}, (x,)), (w,))


def test_sigma_schedule_and_setter():
    s = sigma_schedule(12.0, 100)
    assert len(s) == 100 and s[0] == 12.0
    assert all(a > b for a, b in zip(s[:25], s[1:26]))
    assert s[25] == pytest.approx(0.23) and set(s[25:]) == {0.23}
    assert sigma_schedule(3.0, 2) == [3.0, 0.23]
    proj = Delayed(2, 2, 25)
    assert proj.sigma == 12.0  # D // 2
    proj.sigma = s[30]
    fresh = Delayed(2, 2, 25)
    fresh.load_state_dict(proj.state_dict())
    assert fresh.sigma == pytest.approx(0.23)  # kept in the buffer "width": checkpoints resume it
    for bad in (-1.0, float("nan"), "big"):
        with pytest.raises(NeurosimError, match="sigma"):
            proj.sigma = bad
    with pytest.raises(NeurosimError, match="epochs"):
        sigma_schedule(12.0, 0)


def test_bad_input():
    for D in (0, -3, 2.5, True):
        with pytest.raises(NeurosimError, match="max_delay must be an integer >= 1"):
            Delayed(3, 2, D)
    with pytest.raises(NeurosimError, match="delays must be 'learnable', 'random' or a \\(2, 3\\) tensor"):
        Delayed(3, 2, 5, delays="sometimes")
    with pytest.raises(NeurosimError, match=r"delays must be integers in \[0, 4\]"):
        Delayed(3, 2, 5, delays=torch.full((2, 3), 5))
    with pytest.raises(NeurosimError, match="whole numbers"):
        Delayed(3, 2, 5, delays=torch.full((2, 3), 1.5))
    with pytest.raises(NeurosimError, match=r"delays must have shape \(2, 3\)"):
        Delayed(3, 2, 5, delays=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(NeurosimError, match=r"weight must have shape \(2, 3\)"):
        Delayed(3, 2, 5, weight=torch.zeros(3, 2))
    proj = Delayed(3, 2, 5)
    with pytest.raises(NeurosimError, match="has 4 steps, fewer than max_delay=5"):
        proj(torch.zeros(4, 1, 3))
    with pytest.raises(NeurosimError, match="needs the whole sequence"):
        proj(torch.zeros(1, 3))
    with pytest.raises(NeurosimError, match="last dimension 3"):
        proj(torch.zeros(8, 1, 4))
    with pytest.raises(NeurosimError, match="must be 3-d with last dimension 3"):
        proj(torch.zeros(3))
    with pytest.raises(NeurosimError, match="NaN"):
        proj(torch.full((8, 1, 3), float("nan")))


def test_load_state_dict_refuses_positions_out_of_range():
    net = Network()
    net.add_input("x", 3)
    net.add("h", LIF(2))
    net.connect("x", "h", Delayed(3, 2, 5))
    state = net.state_dict()
    state["projections.x_to_h.positions"] = state["projections.x_to_h.positions"].clone()
    state["projections.x_to_h.positions"][0, 0] = 2.5
    with pytest.raises(NeurosimError, match=r"projection 'projections.x_to_h': positions must lie in \[-2, 2\]"):
        net.load_state_dict(state)
    even = Delayed(3, 2, 4)  # even D: [-2, 1], so every centre is on a tap
    assert even.position_range == (-2, 1)
    with pytest.raises(NeurosimError, match=r"Delayed\(3 -> 2\): positions must lie in \[-2, 1\]"):
        even.load_state_dict({**even.state_dict(), "positions": torch.full((2, 3), 2.0)})
    fixed = Delayed(3, 2, 5, delays="random")
    with pytest.raises(NeurosimError, match="delays must be integers"):
        fixed.load_state_dict({**fixed.state_dict(), "fixed_delays": torch.full((2, 3), 7)})


def test_initial_positions_are_in_range_and_weights_kaiming():
    proj = Delayed(64, 32, 25, generator=torch.Generator().manual_seed(0))
    p = proj.positions.detach()
    assert p.min() >= -12 and p.max() <= 12 and p.std() > 5  # uniform on [-13, 12), clamped
    assert proj.weight.abs().max() <= 1 / 8 and [n for n, _ in proj.named_parameters()] == ["weight", "positions"]


def delayed_net(proj, n_in, recurrent):
    net = Network(dt=1.0)
    net.add_input("x", n_in)
    net.add("h", LIF(8, tau_mem=5.0, v_th=0.5, dtype=torch.float64))
    net.add("o", LI(2, tau_mem=8.0, dtype=torch.float64))
    net.connect("x", "h", proj)
    if recurrent:
        net.connect("h", "h", Dense(8, 8, scale=0.5, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    net.connect("h", "o", Dense(8, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64))
    return net


def fed_directly(net, drive, x):
    """The same network with the delayed projection replaced by its drive fed to ``h`` directly."""
    twin = Network(dt=1.0)
    twin.add_input("x", x.shape[-1])
    for name, pop in net.populations.items():
        twin.add(name, pop)
    for name, c in net.connections.items():
        if c.pre != "x":
            twin.connect(c.pre, c.post, c.projection, name)
    return twin.run({"x": x, "h": drive}, outputs=["h", "o"]).outputs


@pytest.mark.parametrize("recurrent", [False, True])
def test_network_integer_path_equals_dense_kernel_path(recurrent):
    torch.manual_seed(4)
    proj = Delayed(5, 8, 7, scale=4.0, sigma=1.0, dtype=torch.float64)
    net = delayed_net(proj, 5, recurrent)
    x = spikes(40, 3, 5, p=0.4)
    for rounded in (False, True):
        proj.rounded = rounded
        for grad in (True, False):  # without gradients a recurrent LIF runs in the compiled loop
            with torch.set_grad_enabled(grad):
                out = net.run(x, outputs=["h", "o"]).outputs
                ref = fed_directly(net, causal_conv(x, proj.kernel()), x)  # the dense [8, 5, 7] kernel
            assert out["h"].sum() > 0
            assert torch.equal(out["h"], ref["h"])
            assert (out["o"] - ref["o"]).abs().max() < 1e-12
    drive = proj(x)
    proj.rounded = False
    assert (drive - causal_conv(x, proj.kernel())).abs().max() > 1e-3  # the two modes really differ


def test_training_through_a_recurrent_network_moves_positions():
    torch.manual_seed(5)
    proj = Delayed(5, 8, 7, scale=4.0, sigma=2.0, dtype=torch.float64)
    net = delayed_net(proj, 5, recurrent=True)
    out = net.run(spikes(30, 4, 5, p=0.4)).outputs["o"]
    out.sum().backward()
    assert proj.weight.grad.abs().sum() > 0 and proj.positions.grad.abs().sum() > 0


def test_delayed_projection_inside_a_loop_is_refused():
    net = Network()
    net.add_input("x", 3)
    net.add("r", LIF(3))
    net.connect("x", "r", Dense(3, 3))
    net.connect("r", "r", Delayed(3, 3, 4))
    with pytest.raises(NeurosimError, match="cannot sit inside a recurrent loop"):
        net.run(torch.ones(10, 1, 3))


def test_gaussian_kernel_is_a_pure_function_of_its_arguments():
    w, p = torch.randn(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    K = gaussian_kernel(w, p, 0.0, 5)
    assert K.shape == (2, 3, 5) and torch.allclose(K.sum(-1), w)
    assert torch.equal(gaussian_kernel(w, p, -1.0, 5), gaussian_kernel(w, p, 1.0, 5))  # |sigma|


def conv_and_gradients(conv, x, w, p, sigma, D, cotangent):
    """``conv`` of ``x`` with the Gaussian kernel of ``w``, ``p``; its output and the gradients of
    ``<output, cotangent>`` with respect to ``x``, ``w`` and ``p``."""
    x, w, p = (t.detach().clone().requires_grad_() for t in (x, w, p))
    y = conv(x, gaussian_kernel(w, p, sigma, D))
    (y * cotangent).sum().backward()
    return y.detach(), x.grad, w.grad, p.grad


@pytest.mark.parametrize("T_extra", [0, 1, 37])
@pytest.mark.parametrize("D, sigma", [(8, 0.0), (25, 12.0), (25, 0.23), (40, 3.0)])
@pytest.mark.parametrize("dtype, tol", [(torch.float64, 2e-14), (torch.float32, 1e-6)])
def test_spectral_conv_equals_the_direct_convolution(D, sigma, T_extra, dtype, tol):
    """The FFT path against the convolution over time: output and gradients (input, weights,
    positions) within a few units in the last place of the largest value, for event counts."""
    g = torch.Generator().manual_seed(D + T_extra)
    T, B, n_in, n_out = D + T_extra, 3, 7, 5
    x = torch.poisson(torch.full((T, B, n_in), 0.3), generator=g).to(dtype)
    w = (torch.rand(n_out, n_in, generator=g, dtype=dtype) - 0.5) * 2
    p = torch.rand(n_out, n_in, generator=g, dtype=dtype) * (D - 1) - D // 2
    cotangent = torch.randn(T, B, n_out, generator=g, dtype=dtype)
    ours = conv_and_gradients(spectral_conv, x, w, p, sigma, D, cotangent)
    ref = conv_and_gradients(direct_conv, x, w, p, sigma, D, cotangent)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape and a.dtype == dtype
        assert (a - b).abs().max() <= tol * b.abs().max()
    assert ref[0].abs().max() > 0.5 and ref[3].abs().max() > 0


def test_causal_conv_takes_the_spectral_path_from_fft_min_taps(monkeypatch):
    x, w = spikes(20, 2, 3), torch.randn(4, 3, dtype=torch.float64)
    taken = []
    monkeypatch.setattr(delayed, "spectral_conv", lambda x, k: taken.append(k.shape[-1]) or direct_conv(x, k))
    for D in (FFT_MIN_TAPS - 1, FFT_MIN_TAPS):
        K = gaussian_kernel(w, torch.zeros(4, 3, dtype=torch.float64), 1.0, D)
        assert torch.equal(causal_conv(x, K), direct_conv(x, K))
    assert taken == [FFT_MIN_TAPS]


def test_spectral_gradients_finite_differences():
    torch.manual_seed(1)
    proj = Delayed(3, 2, 11, sigma=1.5, dtype=torch.float64)
    x = torch.rand(13, 2, 3, dtype=torch.float64) * 2
    w = proj.weight.detach().clone().requires_grad_()
    p = (torch.rand(2, 3, dtype=torch.float64) * 8 - 4).requires_grad_()
    assert torch.autograd.gradcheck(lambda w, p: functional_call(proj, {"weight": w, "positions": p}, (x,)),
                                    (w, p), eps=1e-6, atol=1e-7)


def test_fft_length_is_the_next_5_smooth_number():
    def smooth(m):
        for q in (2, 3, 5):
            while m % q == 0:
                m //= q
        return m == 1

    for n in range(1, 600):
        m = fft_length(n)
        assert m >= n and smooth(m) and not any(smooth(k) for k in range(n, m))


# -- event-driven integer path (inference without gradients) -----------------------------------

def counts(T, B, n, p=0.2, top=3, seed=0, dtype=torch.float64):
    """Sparse event counts 0 .. top: entries are nonzero with probability p."""
    g = torch.Generator().manual_seed(seed)
    on = torch.rand(T, B, n, generator=g) < p
    return (on * torch.randint(1, top + 1, (T, B, n), generator=g)).to(dtype)


def edge_delays(n_out, n_in, D, seed=0):
    """Random integer delays with a whole row at 0 and one at D-1 (the extremes)."""
    d = torch.randint(0, D, (n_out, n_in), generator=torch.Generator().manual_seed(seed))
    d[0], d[-1] = 0, D - 1
    return d


def refuse(*args, **kwargs):
    raise AssertionError("this path must not run here")


def inference(proj, x, monkeypatch):
    """``proj(x)`` without gradients, checked to take the event path."""
    with monkeypatch.context() as m, torch.no_grad():
        m.setattr(delayed, "shifted_sum", refuse)
        return proj(x)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("T_extra", [0, 1, 9])
def test_event_path_shifts_each_input_exactly(dtype, T_extra, monkeypatch):
    D, n_in, n_out, B = 7, 9, 6, 4
    mask = torch.rand(n_out, n_in, generator=torch.Generator().manual_seed(1)) < 0.7
    dale = torch.tensor([1.0, -1.0] * 4 + [1.0])
    proj = Delayed(n_in, n_out, D, delays=edge_delays(n_out, n_in, D), weight=dyadic(n_out, n_in, 3), mask=mask,
                   dale=dale, dtype=dtype)
    x = counts(D + T_extra, B, n_in, p=0.08, dtype=dtype)
    x[0, 0] = 2  # every input of sample 0 at t = 0: the longest delay lands on T-1 when T = D
    w, d = proj.effective_weight().detach(), proj.rounded_delays()
    assert bool((w == 0).any()) and bool((w < 0).any())
    ref = shift_reference(x.double(), w.double(), d).to(dtype)
    assert torch.equal(event_sum(x, w, d), ref)
    assert torch.equal(event_sum(x.transpose(0, 1).contiguous().transpose(0, 1), w, d), ref)  # non-contiguous
    y = inference(proj, x, monkeypatch)
    assert y.dtype == dtype and torch.equal(y, ref)


def test_event_path_with_rounded_positions_equals_the_gradient_path(monkeypatch):
    torch.manual_seed(6)
    D, n_in, n_out = 12, 10, 7
    proj = Delayed(n_in, n_out, D, weight=dyadic(n_out, n_in, 4), dtype=torch.float64)
    with torch.no_grad():
        proj.positions.uniform_(-D, D)  # out of range on purpose: forward clamps, so delays 0 and D-1 occur
    x = counts(D + 5, 3, n_in, p=0.1)
    with integer_delays(proj):
        events = inference(proj, x, monkeypatch)
        training = proj(x)
    assert proj.rounded_delays().min() == 0 and proj.rounded_delays().max() == D - 1
    assert training.requires_grad and not events.requires_grad
    assert torch.equal(events, training.detach())
    assert torch.equal(events, shift_reference(x, proj.weight.detach(), proj.rounded_delays()))
    # non-dyadic weights: the two paths add in different orders, so they agree to rounding
    with torch.no_grad():
        proj.weight.normal_()
    with integer_delays(proj):
        events = inference(proj, x, monkeypatch)
        training = proj(x).detach()
    bound = (proj.weight.abs().sum(1) * x.max()).max().item()
    assert (events - training).abs().max() <= 1e-14 * bound


def test_gradients_flow_through_integer_delays_in_training_mode(monkeypatch):
    monkeypatch.setattr(delay_kernels, "event_sum", refuse)
    D, n_in, n_out = 5, 4, 3
    d = edge_delays(n_out, n_in, D, seed=2)
    x = counts(8, 2, n_in, p=0.5)
    g = torch.randn(8, 2, n_out, dtype=torch.float64)
    proj = Delayed(n_in, n_out, D, delays=d, weight=dyadic(n_out, n_in, 5), dtype=torch.float64)
    (proj(x) * g).sum().backward()
    w = proj.weight.detach().clone().requires_grad_()
    (shift_reference(x, w, d) * g).sum().backward()  # autograd through the reference loop
    assert proj.weight.grad.abs().sum() > 0 and torch.allclose(proj.weight.grad, w.grad, rtol=1e-12, atol=0)
    # frozen weights but an input that needs a gradient (a hidden layer's spikes): still the gradient path
    frozen = Delayed(n_in, n_out, D, delays=d, weight=dyadic(n_out, n_in, 5), learnable=False, dtype=torch.float64)
    xs, xr = x.clone().requires_grad_(), x.clone().requires_grad_()
    (frozen(xs) * g).sum().backward()
    (shift_reference(xr, frozen.weight.detach(), d) * g).sum().backward()
    assert torch.allclose(xs.grad, xr.grad, rtol=1e-12, atol=0)


@pytest.mark.parametrize("k", [1, 4])
def test_dense_inputs_fall_back_to_shifted_matmuls(k, monkeypatch):
    n_in, n_out, T, B = 50, 6, 20, 10
    d = torch.arange(n_out * n_in).reshape(n_out, n_in) % k  # k distinct delays
    proj = Delayed(n_in, n_out, 8, delays=d, weight=dyadic(n_out, n_in, 6), dtype=torch.float64)
    limit = delayed.EVENT_DENSITY_PER_DELAY * k * T * B * n_in  # nonzero entries the event path takes
    x = torch.zeros(T * B * n_in, dtype=torch.float64)
    x[torch.randperm(x.numel(), generator=torch.Generator().manual_seed(k))[: int(limit) + 1]] = 1
    x = x.view(T, B, n_in)
    ref = shift_reference(x, proj.weight.detach(), d)
    with monkeypatch.context() as m, torch.no_grad():
        m.setattr(delay_kernels, "event_sum", refuse)
        assert torch.equal(proj(x), ref)  # one entry over the threshold
        x.view(-1)[x.view(-1).nonzero()[0]] = 0
        m.undo()
        m.setattr(delayed, "shifted_sum", refuse)
        assert torch.equal(proj(x), shift_reference(x, proj.weight.detach(), d))  # at the threshold
        assert torch.equal(proj(torch.zeros(T, 1, n_in, dtype=torch.float64)), torch.zeros(T, 1, n_out,
                                                                                            dtype=torch.float64))


def test_nonzero_count_equals_torch():
    x = counts(13, 5, 7, p=0.3)
    x[3, 2, :4] = -0.0
    x[4, 1, 1] = -2.5
    for dtype in (torch.float32, torch.float64):
        assert nonzero_count(x.to(dtype)) == int(torch.count_nonzero(x)) > 0
    assert nonzero_count(x.transpose(0, 1)) == int(torch.count_nonzero(x))


def test_event_sum_bad_input():
    x, w, d = torch.zeros(6, 2, 3), torch.zeros(4, 3), torch.zeros(4, 3, dtype=torch.long)
    with pytest.raises(NeurosimError, match="float32 or float64 CPU tensor"):
        event_sum(x.half(), w.half(), d)
    with pytest.raises(NeurosimError, match=r"\[T, B, n_in\]"):
        event_sum(x[0], w, d)
    with pytest.raises(NeurosimError, match="weight of the input's dtype"):
        event_sum(x, w.double(), d)
    with pytest.raises(NeurosimError, match=r"weight and delays \[n_out, n_in\] with n_in = 3"):
        event_sum(x, w[:, :2], d)
    with pytest.raises(NeurosimError, match="integer delays >= 0"):
        event_sum(x, w, d - 1)
    with pytest.raises(NeurosimError, match="integer delays >= 0"):
        event_sum(x, w, d.float())
