"""STDP, the three-factor rule and noise inside Network.run: the compiled loop against the torch
step loop (bit for bit), any number of threads against one, runs in chunks and through checkpoints
against one run, the three-factor rule against its step function on the run's spikes, and a
plastic network against Brian2 running the same network."""
import numba
import numpy as np
import pytest
import torch

import neurosim as ns
import neurosim.kernels.compiled
from neurosim.errors import NeurosimError
from neurosim.kernels.noise import GAUSSIAN, POISSON, fill_noise, stream_key
from neurosim.projections.eligibility import ThreeFactorParameters, three_factor_initial_state, three_factor_step
from neurosim.projections.plasticity import stdp_bounds
from neurosim.reservoirs.builders import izhikevich_reservoir, lif_reservoir
from neurosim.storage.snapshot import decode, encode

EXC_RULE = ns.STDPParameters(tau_pre=10.0, tau_post=15.0, a_plus=0.2, a_minus=0.25, w_max=4.0)
INH_RULE = ns.STDPParameters(tau_pre=20.0, tau_post=20.0, a_plus=0.1, a_minus=0.05, w_min=1.0, w_max=8.0)
THREE_FACTOR = ThreeFactorParameters(tau_pre=10.0, tau_post=15.0, tau_e=50.0, a_plus=0.5, a_minus=0.4)
PRE_ONLY = ThreeFactorParameters(tau_pre=8.0, tau_e=30.0, a_plus=0.2, hebbian="pre")


def plastic_lif(dtype=torch.float64, n=200, noise=False, inh_rule=INH_RULE):
    """A LIF E/I reservoir (Dale's law) with STDP on both recurrent projections (or ``inh_rule`` on
    the inhibitory one) and a spike input."""
    net = lif_reservoir(n, p=0.1, w_exc=2.0, w_inh=-6.0, v0=(-60.0, -50.0), seed=1, dtype=dtype,
                        n_inputs=20, p_in=0.3, w_in=3.0)
    net.plasticity("exc", EXC_RULE)
    net.plasticity("inh", inh_rule)
    if noise:
        net.add_noise("background", "neurons", ns.GaussianNoise(std=0.5, seed=3))
    return net


def spikes_in(steps, batch=1, seed=0, dtype=torch.float64):
    return (torch.rand(steps, batch, 20, generator=torch.Generator().manual_seed(seed)) < 0.05).to(dtype)


def run(net, inputs=None, compiled=True, **kwargs):
    net.compiled = compiled
    with torch.no_grad():
        return net.run(inputs, outputs=["neurons"], **kwargs)


def assert_same_run(a, b, net_a, net_b, names=("exc", "inh"), exact=True):
    """Spikes, weights, changes and plasticity states equal; neuron states equal (``exact``) or
    to rounding (Dense rows summed in another order)."""
    assert torch.equal(a.outputs["neurons"], b.outputs["neurons"])
    for name in names:
        assert torch.equal(net_a.projections[name].weight, net_b.projections[name].weight), name
        grads = net_a.projections[name].weight.grad, net_b.projections[name].weight.grad
        assert (grads[0] is None and grads[1] is None) or torch.equal(*grads), name
        for ta, tb in zip(a.state["plasticity:" + name], b.state["plasticity:" + name]):
            assert torch.equal(ta, tb), name
    for fa, fb in zip(a.state["neurons"][0], b.state["neurons"][0]):
        if exact:
            assert torch.equal(fa, fb)
        else:
            torch.testing.assert_close(fa, fb, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, pytest.param(torch.float32, marks=pytest.mark.slow)])
def test_stdp_compiled_equals_torch_and_chunks_equal_one_run(dtype, compiled_calls):
    x = spikes_in(1500, dtype=dtype)
    nets = [plastic_lif(dtype) for _ in range(3)]
    initial = nets[0].projections["exc"].weight.clone()
    ref = run(nets[0], x, compiled=False)
    out = run(nets[1], x)
    assert compiled_calls == [True]
    assert 0 < ref.outputs["neurons"].mean() < 0.2
    w = nets[0].projections["exc"].weight
    assert (w != initial).float().mean() > 0.2
    assert (w == 0).any() and (w > initial).any()  # depression down to the magnitude's bound, potentiation
    assert_same_run(ref, out, nets[0], nets[1])
    first = run(nets[2], x[:700])
    second = run(nets[2], x[700:], state=decode(encode(first.state)))  # through a checkpoint
    joined = ref._replace(outputs={"neurons": torch.cat([first.outputs["neurons"], second.outputs["neurons"]])})
    assert_same_run(ref, joined._replace(state=second.state), nets[0], nets[2])


def test_stdp_izhikevich_reservoir_compiled_equals_torch(compiled_calls):
    nets = []
    for _ in range(2):
        net = izhikevich_reservoir(150, p=0.3, seed=4, dtype=torch.float64)
        net.plasticity("exc", ns.STDPParameters(tau_pre=20.0, tau_post=20.0, a_plus=0.05, a_minus=0.06, w_max=1.0))
        net.add_noise("thalamic", "neurons", ns.GaussianNoise(std=5.0, seed=1))
        nets.append(net)
    initial = nets[0].projections["exc"].weight.clone()
    ref, out = run(nets[0], steps=400, compiled=False), run(nets[1], steps=400)
    assert compiled_calls == [True]
    assert ref.outputs["neurons"].sum() > 200
    assert not torch.equal(nets[0].projections["exc"].weight, initial)
    assert_same_run(ref, out, nets[0], nets[1], names=("exc",))


def test_stdp_dense_within_mask(compiled_calls):
    """A Dense recurrent projection with a mask (no Dale's law): weights change within the mask only;
    the compiled loop sums Dense rows in another order than torch, so they agree to rounding."""
    n = 60
    g = torch.Generator().manual_seed(5)
    mask = torch.rand(n, n, generator=g) < 0.3
    w0 = torch.rand(n, n, generator=g, dtype=torch.float64) * 0.6
    results, nets = [], []
    for compiled in (False, True):
        net = ns.Network(dt=1.0)
        net.add("r", ns.LIF(n, tau_mem=10.0, v_th=1.0, dtype=torch.float64))
        net.connect("r", "r", ns.Dense(n, n, weight=w0, mask=mask, dtype=torch.float64), name="rec",
                    plasticity=ns.STDPParameters(a_plus=0.02, a_minus=0.02, w_min=0.0, w_max=0.5))
        net.compiled = compiled
        with torch.no_grad():
            results.append(net.run({"r": 0.3 * torch.rand(300, 1, n, generator=torch.Generator().manual_seed(6),
                                                           dtype=torch.float64)}, outputs=["r"]))
        nets.append(net)
    assert compiled_calls == [True]
    w_torch, w_compiled = (net.projections["rec"].weight for net in nets)
    assert torch.equal(w_torch[~mask], w0[~mask]) and torch.equal(w_compiled[~mask], w0[~mask])
    assert (w_torch[mask] != w0[mask]).float().mean() > 0.3
    assert torch.equal(results[0].outputs["r"], results[1].outputs["r"])
    torch.testing.assert_close(w_compiled, w_torch, rtol=0, atol=1e-12)


def test_stdp_batch_of_two_runs_the_step_loop(compiled_calls):
    """The compiled loop runs plasticity for one sample; two samples (weights changed by the batch
    mean) take the torch step loop."""
    net = plastic_lif()
    res = run(net, spikes_in(30, batch=2))
    assert compiled_calls == [False]
    assert res.state["plasticity:exc"].x.shape == (2, 200)


def test_threads_give_the_spikes_of_one_thread(compiled_calls):
    """The neurons cut into ranges, one per thread, with STDP, the three-factor rule and noise:
    identical spikes, weights, changes and states for 1, 2 and 3 ranges; and a network above the
    size threshold runs on several threads by itself."""
    x = spikes_in(600)
    m = torch.randn(600, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    previous = numba.get_num_threads()
    numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
    try:
        results = []
        for threads in (1, 2, 3):
            net = plastic_lif(n=400, noise=True, inh_rule=THREE_FACTOR)
            net.threads = threads
            results.append((run(net, x, modulators={"inh": m}), net))
        assert compiled_calls == [True] * 3
        for res, net in results[1:]:
            assert_same_run(results[0][0], res, results[0][1], net)
        assert neurosim.kernels.compiled.threads_for(400, 1, None) == 1
        assert neurosim.kernels.compiled.threads_for(100_000, 1, 2) == 2
        assert neurosim.kernels.compiled.ranges(400, 3).tolist() == [0, 192, 384, 400]
    finally:
        numba.set_num_threads(previous)


def three_factor_by_hand(raster, proj, rule, modulator, dt):
    """The three-factor rule's step function (:func:`three_factor_step`, on every pair of neurons)
    over the spike raster ``[T, n]`` of a recurrent projection with per-step ``modulator``
    ``[T, 1 or n_out]``; returns the eligibility ``[n_out, n_in]`` and the summed change, both
    where the projection has synapses."""
    n = raster.shape[1]
    state = three_factor_initial_state(1, n, n, torch.float64)
    total = torch.zeros(n, n, dtype=torch.float64)
    for t in range(raster.shape[0]):
        m = modulator[t, 0] if modulator.shape[1] == 1 else modulator[t][None]
        state, dw = three_factor_step(raster[t][None], raster[t][None], m, state, rule, dt)
        total += dw
    exists = proj.to_dense() != 0 if isinstance(proj, ns.Sparse) else proj.mask
    return state.e[0] * exists, total * exists


def three_factor_lif(kind):
    """A LIF network of 120 neurons (no Dale's law), a Sparse or a Dense (masked) recurrent
    projection with the three-factor rule, another one with its presynaptic form (``hebbian="pre"``)."""
    n = 120
    g = torch.Generator().manual_seed(8)
    net = ns.Network(dt=0.5)
    net.add("neurons", ns.LIF(n, tau_mem=10.0, v_th=1.0, tau_ref=1.0, dtype=torch.float64))
    for name, rule, scale in (("a", THREE_FACTOR, 0.08), ("b", PRE_ONLY, -0.05)):
        mask = torch.rand(n, n, generator=g) < 0.15
        w = scale * torch.rand(n, n, generator=g, dtype=torch.float64) * mask
        if kind == "sparse":
            post, pre = torch.nonzero(mask.t(), as_tuple=True)[::-1]
            proj = ns.Sparse(n, n, pre=pre.numpy(), post=post.numpy(), weight=w[post, pre].numpy(),
                             learnable=True, dtype=torch.float64)
        else:
            proj = ns.Dense(n, n, weight=w, mask=mask, dtype=torch.float64)
        net.connect("neurons", "neurons", proj, name=name, plasticity=rule)
    return net


@pytest.mark.parametrize("kind", ["sparse", "dense"])
def test_three_factor_compiled_equals_torch_and_its_step_function(kind, compiled_calls):
    """The three-factor rule inside a run (a global modulator on one projection, one per neuron on
    the other): the compiled loop equals the torch step loop bit for bit (spikes, eligibility,
    traces, the change in ``.grad``); both equal the rule's step function over the run's spikes;
    the weights do not change during the run; two runs in chunks (through a checkpoint) equal one;
    a run without modulators updates the traces alone. (The compiled loop sums Dense rows in
    another order than torch: the membranes agree to rounding there.)"""
    T, n = 800, 120
    g = torch.Generator().manual_seed(9)
    drive = 0.2 * torch.rand(T, 1, n, generator=g, dtype=torch.float64)
    modulators = {"a": torch.randn(T, generator=g, dtype=torch.float64),
                  "b": torch.randn(T, 1, n, generator=g, dtype=torch.float64)}
    nets = [three_factor_lif(kind) for _ in range(4)]
    initial = {k: nets[0].projections[k].weight.detach().clone() for k in "ab"}
    ref = run(nets[0], {"neurons": drive}, compiled=False, modulators=modulators)
    out = run(nets[1], {"neurons": drive}, modulators=modulators)
    assert compiled_calls == [True]
    assert_same_run(ref, out, nets[0], nets[1], names="ab", exact=kind == "sparse")
    raster = out.outputs["neurons"][:, 0]
    assert 0.02 < raster.mean() < 0.3
    for k, rule in (("a", THREE_FACTOR), ("b", PRE_ONLY)):
        proj = nets[1].projections[k]
        assert torch.equal(proj.weight.detach(), initial[k])
        e, change = three_factor_by_hand(raster, proj, rule, modulators[k].reshape(T, -1), 0.5)
        got_e, got_grad = out.state["plasticity:" + k].e[0], proj.weight.grad
        if kind == "sparse":
            e, change = e[proj.post, proj.pre], change[proj.post, proj.pre]
        assert change.abs().max() > 1.0, k
        torch.testing.assert_close(got_e, e, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_grad, -change, rtol=1e-12, atol=1e-11)
    first = run(nets[2], {"neurons": drive[:300]}, modulators={k: m[:300] for k, m in modulators.items()})
    second = run(nets[2], {"neurons": drive[300:]}, state=decode(encode(first.state)),
                 modulators={k: m[300:] for k, m in modulators.items()})
    joined = ref._replace(outputs={"neurons": torch.cat([first.outputs["neurons"], second.outputs["neurons"]])})
    assert_same_run(out, joined._replace(state=second.state), nets[1], nets[2], names="ab")
    silent = run(nets[3], {"neurons": drive})
    assert all(nets[3].projections[k].weight.grad is None for k in "ab")
    for k in "ab":
        assert all(torch.equal(a, b) for a, b in zip(silent.state["plasticity:" + k], out.state["plasticity:" + k]))


def test_three_factor_batch_of_two_is_the_mean_of_its_samples(compiled_calls):
    """Two samples take the torch step loop: the change is the mean of each sample's alone."""
    x = spikes_in(300, batch=2)
    m = torch.randn(300, 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    pair = plastic_lif(inh_rule=THREE_FACTOR)
    pair.plasticity("exc", None)
    res = run(pair, x, modulators={"inh": m})
    assert compiled_calls == [False]
    assert res.state["plasticity:inh"].e.shape == (2, pair.projections["inh"].weight.numel())
    grads = []
    for b in range(2):
        one = plastic_lif(inh_rule=THREE_FACTOR)
        one.plasticity("exc", None)
        run(one, x[:, b:b + 1], modulators={"inh": m[:, b]})
        grads.append(one.projections["inh"].weight.grad)
    torch.testing.assert_close(pair.projections["inh"].weight.grad, (grads[0] + grads[1]) / 2, rtol=1e-12, atol=1e-12)


def izhikevich_with_noise(dtype=torch.float64):
    net = izhikevich_reservoir(200, p=0.5, seed=2, dtype=dtype)
    std = torch.cat([torch.full((160,), 5.0), torch.full((40,), 2.0)])
    net.add_noise("thalamic", "neurons", ns.GaussianNoise(std=std, seed=7))
    return net


def test_noise_drawn_in_the_loop_equals_torch_and_resumes_bit_identically(compiled_calls):
    net = izhikevich_with_noise()
    ref, out = run(net, steps=300, compiled=False), run(net, steps=300)
    assert compiled_calls == [True]
    assert ref.outputs["neurons"].sum() > 100
    assert torch.equal(ref.outputs["neurons"], out.outputs["neurons"])
    assert out.state["noise:thalamic"] == 300
    first = run(net, steps=120)
    resumed = run(net, steps=180, state=decode(encode(first.state)))
    assert torch.equal(torch.cat([first.outputs["neurons"], resumed.outputs["neurons"]]), out.outputs["neurons"])
    assert not torch.equal(run(net, steps=180).outputs["neurons"], resumed.outputs["neurons"])
    # each sample draws its own stream, whatever the batch
    pair = run(net, steps=300, batch=2)
    assert torch.equal(pair.outputs["neurons"][:, :1], out.outputs["neurons"])
    assert not torch.equal(pair.outputs["neurons"][:, 1], pair.outputs["neurons"][:, 0])


def test_noise_outside_loops_is_the_same_draw():
    """A population without recurrence gets the same noise, drawn for the whole sequence at once."""
    results = []
    for recurrent in (False, True):
        net = ns.Network(dt=1.0)
        net.add("r", ns.LIF(50, tau_mem=10.0, v_th=1.0, dtype=torch.float64))
        if recurrent:
            net.connect("r", "r", ns.Sparse(50, 50, pre=[0], post=[1], weight=0.0, dtype=torch.float64))
        net.add_noise("n", "r", ns.PoissonNoise(rate=torch.linspace(100.0, 900.0, 50), weight=0.4, count=3, seed=2))
        net.probe("r", "v")
        with torch.no_grad():
            results.append(net.run(steps=200, outputs=["r"]))
    assert results[0].outputs["r"].sum() > 50
    assert torch.equal(results[0].outputs["r"], results[1].outputs["r"])
    assert torch.equal(results[0].probes["r_v"], results[1].probes["r_v"])


def test_noise_streams_have_the_stated_distributions():
    keys = np.array([stream_key(11, b) for b in range(4)], dtype=np.uint64)
    out = np.empty((4, 5000))
    normal = []
    for step in range(60):
        fill_noise(GAUSSIAN, keys, step, 2.0, 1.0, out)
        normal.append(out.copy())
    normal = (np.concatenate(normal).ravel() - 1.0) / 2.0
    scipy_stats = pytest.importorskip("scipy.stats")
    assert abs(normal.mean()) < 4 / np.sqrt(normal.size) and abs(normal.std() - 1) < 0.005
    assert scipy_stats.kstest(normal, "norm").pvalue > 1e-3
    tail = np.abs(normal) > 3.5  # the ziggurat's tail beyond its base layer
    assert abs(tail.mean() - 2 * scipy_stats.norm.sf(3.5)) < 5 * np.sqrt(2 * scipy_stats.norm.sf(3.5) / normal.size)
    counts = []
    for step in range(20):
        fill_noise(POISSON, keys, step, 3.5, 1.0, out)
        counts.append(out.copy())
    counts = np.concatenate(counts).ravel()
    assert (counts == np.round(counts)).all()
    assert abs(counts.mean() - 3.5) < 0.03 and abs(counts.var() - 3.5) < 0.1
    one = np.empty((1, 5000))
    fill_noise(GAUSSIAN, keys[2:3], 7, 1.0, 0.0, one)
    fill_noise(GAUSSIAN, keys, 7, 1.0, 0.0, out)
    assert np.array_equal(one[0], out[2]) and not np.array_equal(out[1], out[2])
    assert stream_key(11, 0) != stream_key(12, 0)


def test_plasticity_and_noise_refuse_what_they_cannot_do():
    net = lif_reservoir(100, p=0.1, seed=0, n_inputs=5, dtype=torch.float64)
    with pytest.raises(NeurosimError, match="spiking presynaptic population"):
        net.plasticity("input", EXC_RULE)
    with pytest.raises(NeurosimError, match="unknown projection"):
        net.plasticity("nope", EXC_RULE)
    with pytest.raises(NeurosimError, match="w_min must be >= 0"):
        net.plasticity("exc", ns.STDPParameters(w_min=-1.0))
    with pytest.raises(NeurosimError, match="must be STDPParameters or ThreeFactorParameters"):
        net.plasticity("exc", {"a_plus": 0.1})
    net.plasticity("exc", EXC_RULE)
    net.plasticity("inh", THREE_FACTOR)
    with torch.no_grad():
        x = torch.zeros(3, 1, 5, dtype=torch.float64)
        with pytest.raises(NeurosimError, match="no projection of that name has the three-factor rule"):
            net.run(x, modulators={"exc": torch.zeros(3)})
        with pytest.raises(NeurosimError, match=r"modulator 'inh' must have shape \[T\] = \[3\]"):
            net.run(x, modulators={"inh": torch.zeros(4)})
        with pytest.raises(NeurosimError, match="modulator 'inh' contains NaN"):
            net.run(x, modulators={"inh": torch.full((3,), float("nan"))})
    with pytest.raises(NeurosimError, match="torch.no_grad"):
        net.run(torch.zeros(3, 1, 5, dtype=torch.float64))
    chain = ns.Network(dt=1.0)
    chain.add("a", ns.LIF(4))
    chain.add("b", ns.LIF(3))
    chain.connect("a", "b", ns.Dense(4, 3), name="ab", plasticity=EXC_RULE)
    with pytest.raises(NeurosimError, match="inside a recurrent loop"), torch.no_grad():
        chain.run(steps=3)
    with pytest.raises(NeurosimError, match="noise std has 3 values"):
        net.add_noise("c", "neurons", ns.GaussianNoise(std=torch.ones(3)))
    with pytest.raises(NeurosimError, match="events per step"):
        net.add_noise("d", "neurons", ns.PoissonNoise(rate=1e5, weight=1.0, count=20))
    with pytest.raises(NeurosimError, match="no such population"):
        net.add_noise("e", "input", ns.GaussianNoise())
    net.add_noise("a", "neurons", ns.GaussianNoise())
    with pytest.raises(NeurosimError, match="already has a noise source"):
        net.add_noise("b", "neurons", ns.GaussianNoise())
    with pytest.raises(NeurosimError, match="std must be >= 0"):
        ns.GaussianNoise(std=-1.0)
    with pytest.raises(NeurosimError, match="seed"):
        ns.GaussianNoise(seed=-1)


# -- against Brian2 -----------------------------------------------------------------------------

BRIAN2_STEPS = 2000
N_B2, N_EXC_B2, N_VOLLEY = 100, 80, 10
#: Two parameter sets, each a rule for the excitatory and one for the inhibitory projection; the
#: bounds are magnitudes (Dale's law), and the initial weights spread over both sets' bounds. The
#: excitatory weights end on both bounds, the inhibitory ones on the lower (A) or the upper (B).
RULE_SETS = {
    "A": (EXC_RULE, ns.STDPParameters(tau_pre=20.0, tau_post=20.0, a_plus=0.05, a_minus=0.3, w_min=1.0, w_max=8.0)),
    "B": (ns.STDPParameters(tau_pre=5.0, tau_post=30.0, a_plus=0.3, a_minus=0.1, w_min=0.5, w_max=2.0),
          ns.STDPParameters(tau_pre=30.0, tau_post=8.0, a_plus=0.3, a_minus=0.3, w_min=2.0, w_max=5.5)),
}


def plastic_network_instance(seed=3):
    """CUBA's neurons (100, 80 % E) on drawn E and I synapses (p = 0.1, weights 2 and 6 mV), initial
    voltages, and volleys: ten input channels, each onto half of the neurons, fire together every
    47 steps (and at random otherwise), so that many connected neurons fire in the same step."""
    rng = np.random.default_rng(seed)
    conn = {}
    for name, sources in (("exc", np.arange(N_EXC_B2)), ("inh", np.arange(N_EXC_B2, N_B2))):
        keep = rng.random((sources.size, N_B2)) < 0.1
        pre, post = np.nonzero(keep)
        conn[name] = (sources[pre], post)
    weights = {"exc": rng.uniform(0.05, 4.0, conn["exc"][0].size), "inh": rng.uniform(1.05, 8.0, conn["inh"][0].size)}
    v0 = rng.uniform(-60.0, -50.0, N_B2)
    volley_pre, volley_post = np.nonzero(rng.random((N_VOLLEY, N_B2)) < 0.5)
    volleys = rng.random((BRIAN2_STEPS, N_VOLLEY)) < 0.002
    volleys[47::47] = True
    return conn, weights, v0, (volley_pre, volley_post), volleys


def neurosim_plastic_network(kind, rules, instance, dtype=torch.float64):
    """The instance as a neurosim network with ``kind`` ("sparse" or "dense", under Dale's law) E and I
    projections, STDP on both, the volleys through a fixed Sparse projection from input ``"x"``."""
    from neurosim.models.cuba import TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK, V_RESET, V_TH

    conn, weights, v0, (volley_pre, volley_post), _ = instance
    net = ns.Network(dt=0.1)
    net.add_input("x", N_VOLLEY)
    net.add("neurons", ns.LIF(N_B2, tau_mem=TAU_MEM, v_leak=V_LEAK, v_th=V_TH, v_reset=V_RESET, tau_ref=TAU_REF,
                              reset="zero", tau_syn_exc=TAU_EXC, tau_syn_inh=TAU_INH, v0=torch.tensor(v0, dtype=dtype),
                              dtype=dtype))
    net.connect("x", "neurons", ns.Sparse(N_VOLLEY, N_B2, pre=volley_pre, post=volley_post, weight=8.0, dtype=dtype))
    for (name, (pre, post)), rule, sign in zip(conn.items(), rules, ("exc", "inh")):
        if kind == "sparse":
            proj = ns.Sparse(N_B2, N_B2, pre=pre, post=post, weight=weights[name], dale=sign, channel=sign,
                             dtype=dtype)
            assert (proj.pre.numpy() == pre).all() and (proj.post.numpy() == post).all()
        else:
            w, mask = torch.zeros(N_B2, N_B2, dtype=dtype), torch.zeros(N_B2, N_B2, dtype=torch.bool)
            w[post, pre], mask[post, pre] = torch.tensor(weights[name], dtype=dtype), True
            proj = ns.Dense(N_B2, N_B2, weight=w, mask=mask, dale=sign, channel=sign, dtype=dtype)
        net.connect("neurons", "neurons", proj, name=name, plasticity=rule)
    return net


def synapse_weights(proj):
    """A projection's weight per synapse, in the order (pre, then post) of the instance's index arrays."""
    if isinstance(proj, ns.Sparse):
        return proj.weight.detach().numpy()
    post, pre = torch.nonzero(proj.mask.t(), as_tuple=True)[::-1]
    return proj.weight.detach()[post, pre].numpy()


def brian2_plastic_network(rules, instance):
    """Brian2 (numpy target, float64) running CUBA's equations on the instance with the standard STDP
    synapse on both projections: weights in mV, magnitudes, ``ge += w`` / ``gi -= w`` delivered before
    the pathways change ``w``; the volleys from a SpikeGeneratorGroup (``ge += 8 mV``). Returns the
    spike events and the final weights."""
    b2 = pytest.importorskip("brian2")
    from brian2 import mV, ms

    from neurosim.models.cuba import TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK, V_RESET, V_TH

    conn, weights, v0, (volley_pre, volley_post), volleys = instance
    b2.prefs.codegen.target = "numpy"
    b2.start_scope()
    clock = b2.Clock(0.1 * ms)
    group = b2.NeuronGroup(N_B2, """dv/dt = (ge + gi - (v - El)) / taum : volt (unless refractory)
                                    dge/dt = -ge / taue : volt
                                    dgi/dt = -gi / taui : volt""",
                           threshold="v > Vt", reset="v = Vr", refractory=TAU_REF * ms, method="exact", clock=clock)
    group.v = v0 * mV
    t_in, i_in = np.nonzero(volleys)
    source = b2.SpikeGeneratorGroup(N_VOLLEY, i_in, t_in * clock.dt, clock=clock)
    drive = b2.Synapses(source, group, on_pre="ge += 8 * mV", clock=clock)
    drive.connect(i=volley_pre, j=volley_post)
    synapses = {}
    for (name, (pre, post)), rule in zip(conn.items(), rules):
        target, sign = ("ge", "+") if name == "exc" else ("gi", "-")
        low, high = stdp_bounds(rule, magnitude=True)
        s = b2.Synapses(group, group, """w : volt
                                         dapre/dt = -apre / taupre : volt (event-driven)
                                         dapost/dt = -apost / taupost : volt (event-driven)""",
                        on_pre=f"{target} {sign}= w\napre += Apre\nw = clip(w + apost, wmin, wmax)",
                        on_post="apost += Apost\nw = clip(w + apre, wmin, wmax)", clock=clock,
                        namespace=dict(taupre=rule.tau_pre * ms, taupost=rule.tau_post * ms, Apre=rule.a_plus * mV,
                                       Apost=-rule.a_minus * mV, wmin=low * mV, wmax=high * mV))
        s.connect(i=pre, j=post)
        assert (s.i[:] == pre).all() and (s.j[:] == post).all()
        s.w = weights[name] * mV
        synapses[name] = s
    spikes = b2.SpikeMonitor(group)
    namespace = dict(taum=TAU_MEM * ms, taue=TAU_EXC * ms, taui=TAU_INH * ms, Vt=V_TH * mV, Vr=V_RESET * mV,
                     El=V_LEAK * mV)
    b2.Network(group, source, drive, *synapses.values(), spikes).run(BRIAN2_STEPS * clock.dt, namespace=namespace)
    events = (np.round(spikes.t / clock.dt).astype(np.int64), np.asarray(spikes.i[:], dtype=np.int64))
    return events, {name: np.asarray(s.w[:] / mV) for name, s in synapses.items()}


_BRIAN2_RUNS = {}


def brian2_plastic_run(rule_set):
    """:func:`brian2_plastic_network` on the instance, once per parameter set (Dense and Sparse share it)."""
    if rule_set not in _BRIAN2_RUNS:
        _BRIAN2_RUNS[rule_set] = brian2_plastic_network(RULE_SETS[rule_set], plastic_network_instance())
    return _BRIAN2_RUNS[rule_set]


@pytest.mark.parametrize("compiled", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["compiled", "torch"])
@pytest.mark.parametrize("kind", ["sparse", "dense"])
@pytest.mark.parametrize("rule_set", list(RULE_SETS))
def test_plastic_network_matches_brian2(rule_set, kind, compiled, compiled_calls):
    """A plastic E/I network inside ``Network.run`` against Brian2 running the same network with the
    standard STDP synapse on both projections: two parameter sets, Sparse and Dense projections,
    200 ms with volleys that make connected neurons fire in the same step (same-step pairs) and
    weights that end on their bounds: every spike in the same step, final weights within 1e-9 mV.
    neurosim changes the weights for a step's spikes at the start of the next step, so its weights
    after step T + 1 are Brian2's after step T; the volleys reach Brian2's neurons one step after
    the generator fires (through its synapses), so neurosim's input is the volleys one step later."""
    instance = plastic_network_instance()
    conn, weights, _, _, volleys = instance
    (t_b2, i_b2), w_b2 = brian2_plastic_run(rule_set)
    net = neurosim_plastic_network(kind, RULE_SETS[rule_set], instance)
    net.compiled = compiled
    x = torch.zeros(BRIAN2_STEPS + 1, 1, N_VOLLEY, dtype=torch.float64)
    x[1:, 0] = torch.from_numpy(volleys.astype(np.float64))
    with torch.no_grad():
        res = net.run({"x": x}, outputs=["neurons"])
    assert compiled_calls == ([True] if compiled else [])
    raster = np.zeros((BRIAN2_STEPS, N_B2), dtype=bool)
    raster[t_b2, i_b2] = True
    same_step = sum(int((raster[:, pre] & raster[:, post]).sum()) for pre, post in conn.values())
    assert t_b2.size > 500 and same_step > 100  # pairs of connected neurons firing in the same step
    np.testing.assert_array_equal(res.outputs["neurons"][:BRIAN2_STEPS, 0].numpy() > 0, raster)
    for name, rule in zip(conn, RULE_SETS[rule_set]):
        w = synapse_weights(net.projections[name])
        assert np.abs(w - weights[name]).max() > 0.5, name
        hits = [(w == bound).sum() for bound in stdp_bounds(rule, magnitude=True)]
        assert min(hits) > 0 if name == "exc" else max(hits) > 50, (name, hits)
        np.testing.assert_allclose(w, w_b2[name], rtol=0, atol=1e-9)


def test_state_probes_are_those_of_the_torch_loop_whatever_the_threads(compiled_calls):
    """Probes of v every step and every third step, on three samples above the size threshold:
    the compiled loop on one and on two threads records what the torch loop records."""
    n, batch = 7000, 3
    g = torch.Generator().manual_seed(8)
    net = ns.Network(dt=0.5)
    net.add("neurons", ns.LIF(n, tau_mem=10.0, v_th=1.0, dtype=torch.float64))
    net.connect("neurons", "neurons", ns.Sparse(n, n, p=0.01, weight=0.3, seed=8, dtype=torch.float64))
    drive = 0.25 * torch.rand(40, batch, n, generator=g, dtype=torch.float64)
    probes = {"v": ns.Probe("neurons", "v"), "v3": ns.Probe("neurons", "v", stride=3)}
    results = []
    for compiled, threads in ((False, 1), (True, 1), (True, 2)):
        net.threads = threads
        results.append(run(net, {"neurons": drive}, compiled=compiled, probes=probes).probes)
    assert compiled_calls == [True, True]
    assert results[0]["v"].abs().max() > 0.5
    for probed in results[1:]:
        for name in probes:
            assert torch.equal(probed[name], results[0][name]), name
