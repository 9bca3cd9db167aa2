"""The compiled no-gradient loop gives the results of the torch step loop: same spikes, same states."""
import dataclasses

import numpy as np
import pytest
import torch

from neurosim import ALIF, LIF, Dense, Izhikevich, Network, Sparse


def run_both(net, inputs=None, **kwargs):
    """``net.run`` without gradients on the torch loop, then on the compiled loop."""
    results = []
    with torch.no_grad():
        for compiled in (False, True):
            net.compiled = compiled
            results.append(net.run(inputs, **kwargs))
    return results


def assert_same(torch_run, compiled_run, exact=True):
    def same(a, b):
        if exact:
            assert torch.equal(a, b)
        else:
            assert a.dtype == b.dtype and a.shape == b.shape
            assert torch.allclose(a.double(), b.double(), rtol=1e-10, atol=1e-10)

    for name, seq in torch_run.outputs.items():
        assert torch.equal(seq, compiled_run.outputs[name]), name
    for name, rec in torch_run.probes.items():
        if name.endswith("spikes"):
            assert torch.equal(rec, compiled_run.probes[name]), name
        else:
            same(rec, compiled_run.probes[name])
    for name, value in torch_run.state.items():
        if name.startswith(("plasticity:", "noise:")):
            assert all(torch.equal(a, b) for a, b in zip(value, compiled_run.state[name])) if isinstance(value, tuple) \
                else value == compiled_run.state[name], name
            continue
        st, z = value
        st2, z2 = compiled_run.state[name]
        assert type(st) is type(st2)
        for a, b in zip(st, st2):
            same(a, b)
        assert torch.equal(z, z2)


def lif_net(dtype, *, n=120, n_in=30, syn="two", refractory=True, reset="zero", heterogeneous=True,
            external_inh=True, dense=False, seed=0, **lif_kwargs):
    """An E/I LIF reservoir, driven by an input of ``n_in`` channels through Sparse projections."""
    rng = np.random.default_rng(seed)
    n_exc = int(0.8 * n)
    params = dict(tau_mem=20.0, v_leak=-49.0, v_th=-50.0, v_reset=-60.0, reset=reset,
                  tau_ref=2.0 if refractory else 0.0, v0=torch.as_tensor(rng.uniform(-60, -50, n), dtype=dtype))
    if syn in ("one", "two"):
        params["tau_syn_exc"] = 5.0
    if syn == "two":
        params["tau_syn_inh"] = 10.0
    if heterogeneous:
        params["tau_mem"] = torch.as_tensor(rng.uniform(15, 25, n), dtype=dtype)
        params["v_th"] = torch.as_tensor(rng.uniform(-51, -49, n), dtype=dtype)
    params.update(lif_kwargs)
    net = Network(dt=0.1)
    net.add("r", LIF(n, dtype=dtype, **params))
    if n_in:
        net.add_input("x", n_in)
        net.connect("x", "r", Sparse(n_in, n, p=0.2, weight=4.0, seed=seed + 1, dtype=dtype), name="in_exc")
    if n_in and external_inh:
        net.connect("x", "r", Sparse(n_in, n, p=0.1, weight=-1.0, seed=seed + 2, channel="inh", dtype=dtype),
                    name="in_inh")
    signs = torch.ones(n)
    signs[n_exc:] = -1
    if dense:
        w = torch.as_tensor(rng.uniform(0, 1, (n, n)) * (rng.random((n, n)) < 0.1), dtype=dtype)
        net.connect("r", "r", Dense(n, n, weight=3.0 * w * signs, dtype=dtype), name="rec")
    else:
        pre_e, post_e = np.nonzero(rng.random((n_exc, n)) < 0.05)
        pre_i, post_i = np.nonzero(rng.random((n - n_exc, n)) < 0.05)
        net.connect("r", "r", Sparse(n, n, pre=pre_e, post=post_e, weight=rng.uniform(1, 3, pre_e.size),
                                     dale="exc", dtype=dtype), name="exc")
        net.connect("r", "r", Sparse(n, n, pre=pre_i + n_exc, post=post_i, weight=rng.uniform(3, 9, pre_i.size),
                                     dale="inh", channel="inh", dtype=dtype), name="inh")
    return net


def poisson(steps, batch, n, rate, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, n, generator=g) < rate).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 2])
def test_lif_reservoir_with_synapses_refractory_and_probes(dtype, batch, compiled_calls):
    net = lif_net(dtype)
    net.probe("r", "v", stride=3)
    net.probe("r", "v", stride=2, name="v_every_2")
    net.probe("r", "i_exc")
    net.probe("r", "i_inh", stride=7)
    net.probe("r", "refrac", stride=2)
    net.probe("r", "spikes", stride=5)
    x = poisson(400, batch, 30, 0.05, dtype=dtype)
    ref, out = run_both(net, x, outputs=["r"])
    assert compiled_calls == [True]
    assert 0 < ref.outputs["r"].sum() < 0.5 * ref.outputs["r"].numel()
    assert (ref.state["r"][0].refrac > 0).any()
    assert_same(ref, out)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("config", [
    dict(syn="none", reset="subtract", refractory=False, heterogeneous=False),
    dict(syn="none", input_mode="current", refractory=True),
    dict(syn="one", reset="subtract", refractory=True, heterogeneous=False),
    dict(syn="two", external_inh=False),
], ids=["jump", "current", "one_synapse", "recurrent_inh_only"])
def test_lif_variants(dtype, config, compiled_calls):
    net = lif_net(dtype, **config)
    net.probe("r", "v", stride=4)
    gain = 20.0 if config.get("input_mode") == "current" else 1.0
    x = gain * poisson(300, 2, 30, 0.05, seed=1, dtype=dtype)
    ref, out = run_both(net, x, outputs=["r"])
    assert compiled_calls == [True]
    assert ref.outputs["r"].sum() > 0
    assert_same(ref, out)


@pytest.mark.parametrize("batch", [1, 2])
def test_lif_dense_recurrence_agrees_to_rounding(batch, compiled_calls):
    net = lif_net(torch.float64, dense=True)
    net.probe("r", "v")
    ref, out = run_both(net, poisson(300, batch, 30, 0.05, seed=2), outputs=["r"])
    assert compiled_calls == [True]
    assert ref.outputs["r"].sum() > 0
    assert_same(ref, out, exact=False)


def izhikevich_net(dtype, dense, n=200, seed=0):
    """The network of Izhikevich (2003), smaller, with thalamic input as a population drive."""
    rng = np.random.default_rng(seed)
    n_exc = int(0.8 * n)
    re, ri = rng.random(n_exc), rng.random(n - n_exc)
    pop = Izhikevich(n, dtype=dtype,
                     a=torch.as_tensor(np.r_[np.full(n_exc, 0.02), 0.02 + 0.08 * ri], dtype=dtype),
                     b=torch.as_tensor(np.r_[np.full(n_exc, 0.2), 0.25 - 0.05 * ri], dtype=dtype),
                     c=torch.as_tensor(np.r_[-65 + 15 * re ** 2, np.full(n - n_exc, -65.0)], dtype=dtype),
                     d=torch.as_tensor(np.r_[8 - 6 * re ** 2, np.full(n - n_exc, 2.0)], dtype=dtype))
    net = Network(dt=1.0)
    net.add("r", pop)
    w = np.c_[0.5 * rng.random((n, n_exc)), -rng.random((n, n - n_exc))]
    if dense:
        net.connect("r", "r", Dense(n, n, weight=torch.as_tensor(w, dtype=dtype), dtype=dtype))
    else:
        keep = rng.random((n, n)) < 0.3
        post, pre = np.nonzero(keep)
        net.connect("r", "r", Sparse(n, n, pre=pre[pre < n_exc], post=post[pre < n_exc],
                                     weight=2 * w[keep][pre < n_exc], dtype=dtype), name="exc")
        net.connect("r", "r", Sparse(n, n, pre=pre[pre >= n_exc], post=post[pre >= n_exc],
                                     weight=w[keep][pre >= n_exc], dtype=dtype), name="inh")
    return net


def thalamic(steps, batch, n, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    scale = torch.ones(n, dtype=torch.float64)
    scale[: int(0.8 * n)] = 5.0
    scale[int(0.8 * n):] = 2.0
    return (scale * torch.randn(steps, batch, n, generator=g, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch", [1, 2])
def test_izhikevich_sparse_network(dtype, batch, compiled_calls):
    net = izhikevich_net(dtype, dense=False)
    net.probe("r", "v", stride=2)
    net.probe("r", "u", stride=3)
    net.probe("r", "spikes")
    ref, out = run_both(net, {"r": thalamic(300, batch, 200, dtype=dtype)}, outputs=["r"])
    assert compiled_calls == [True]
    assert ref.outputs["r"].sum() > 100
    assert_same(ref, out)


@pytest.mark.parametrize("batch", [1, 2])
def test_izhikevich_dense_network_agrees_to_rounding(batch, compiled_calls):
    net = izhikevich_net(torch.float64, dense=True)
    net.probe("r", "v")
    ref, out = run_both(net, {"r": thalamic(100, batch, 200)}, outputs=["r"])
    assert compiled_calls == [True]
    assert ref.outputs["r"].sum() > 20
    assert_same(ref, out, exact=False)


def test_without_external_input_and_state_carried_over(compiled_calls):
    net = lif_net(torch.float64, n_in=0)
    with torch.no_grad():
        start = net.run(steps=1)
    st, _ = start.state["r"]
    z = (torch.rand(1, 120, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    state = {"r": (st._replace(v=st.v - 1.0), z)}
    ref, out = run_both(net, state=state, steps=300, outputs=["r"])
    assert compiled_calls == [True, True]
    assert ref.outputs["r"].sum() > 0
    assert_same(ref, out)
    with torch.no_grad():
        first = net.run(state=state, steps=120, outputs=["r"])
        second = net.run(state=first.state, steps=180, outputs=["r"])
        silent = net.run(state={"r": (state["r"][0], torch.zeros_like(z))}, steps=300, outputs=["r"])
    assert torch.equal(torch.cat([first.outputs["r"], second.outputs["r"]]), out.outputs["r"])
    assert not torch.equal(silent.outputs["r"], out.outputs["r"])


def test_event_buffer_grows_when_most_neurons_fire(compiled_calls):
    net = lif_net(torch.float32, n=60, syn="none", refractory=False, heterogeneous=False)
    net.probe("r", "spikes", stride=3)
    ref, out = run_both(net, 30.0 * torch.ones(500, 2, 30), outputs=["r"], progress=True)
    assert compiled_calls == [True]
    assert ref.outputs["r"].mean() > 0.5
    assert_same(ref, out)


def test_unsupported_configurations_run_on_torch(compiled_calls):
    net = Network(dt=1.0)
    net.add("a", ALIF(20))
    net.connect("a", "a", Sparse(20, 20, p=0.2, seed=0))
    net.add("b", LIF(20, dtype=torch.float64))
    net.connect("b", "b", Sparse(20, 20, p=0.2, seed=0, dtype=torch.float32))
    net.add("c", LIF(20))
    net.connect("c", "c", Dense(20, 20, bias=True))
    ref, out = run_both(net, {k: torch.rand(10, 1, 20) for k in "abc"}, outputs=["a", "b", "c"])
    assert compiled_calls == [False, False]  # ALIF registers no compiled loop: not even tried
    assert_same(ref, out)


@pytest.mark.parametrize("make", [
    lambda: LIF(30, method="euler", tau_mem=20.0, v_th=1.0),
    lambda: LIF(30, tau_ref=torch.linspace(0.0, 3.0, 30), v_th=1.0),
    lambda: LIF(30, tau_syn_exc=torch.full((30,), 5.0), v_th=1.0),
], ids=["lif_euler", "lif_per_neuron_refractory", "lif_per_neuron_synapse"])
def test_configurations_the_kernels_do_not_compute_run_on_torch(make, compiled_calls):
    """An integration method or per-neuron parameter outside the compiled kernel's: the kernel
    declines it (it would compute a different model) and the torch step loop runs."""
    pop = make()
    net = Network(dt=0.5)
    net.add("r", pop)
    net.connect("r", "r", Sparse(30, 30, p=0.2, weight=0.5, seed=0))
    ref, out = run_both(net, {"r": 3.0 * torch.rand(200, 1, 30, generator=torch.Generator().manual_seed(0))},
                        outputs=["r"])
    assert compiled_calls == [False]  # tried, declined
    assert ref.outputs["r"].sum() > 0
    assert_same(ref, out)


@pytest.mark.parametrize("batch", [1, 2])
def test_izhikevich_threshold_first_schedule(batch, compiled_calls):
    """net.m's schedule (threshold on the previous step's state, reset, update) in the compiled loop."""
    net = izhikevich_net(torch.float64, dense=False, n=100, seed=3)
    net.populations["r"].set_params(dataclasses.replace(net.populations["r"].params, schedule="threshold_first"))
    net.probe("r", "v", stride=2)
    net.probe("r", "u")
    ref, out = run_both(net, {"r": thalamic(300, batch, 100, seed=4)}, outputs=["r"])
    assert compiled_calls == [True]
    assert ref.outputs["r"].sum() > 50
    assert (ref.probes["r_v"] > 30).any()  # a spike step leaves v above the peak until the next step
    assert_same(ref, out)


def test_weight_changes_between_runs_are_seen(compiled_calls):
    net = lif_net(torch.float32, n_in=0)
    with torch.no_grad():
        before = net.run(steps=200, outputs=["r"]).outputs["r"]
        net.projections["exc"].weight.mul_(1.5)
        net.projections["inh"].weight[:] = 0.0
        ref, out = run_both(net, steps=200, outputs=["r"])
    assert compiled_calls == [True, True]
    assert not torch.equal(before, out.outputs["r"])
    assert_same(ref, out)


def test_a_compiled_run_leaves_torchs_thread_count_alone(compiled_calls):
    """numba's OpenMP threading layer can share torch's thread pool: setting numba's threads for the loop
    (and back) must not change how many threads torch uses afterwards."""
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            lif_net(torch.float64).run(poisson(50, 2, 30, 0.05), outputs=["r"])
        assert compiled_calls == [True]
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
