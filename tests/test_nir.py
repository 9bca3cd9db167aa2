r"""NIR export and import (:mod:`neurosim.interop.nir`): round trips, the continuous model behind the
``"exact"`` scheme, and networks run in snnTorch 0.9.4 and Norse 1.1.0 through NIR.

Where the models match, spikes are identical:

- snnTorch runs a graph with forward Euler at a fixed step of 0.1 ms (1e-4 s): neurosim networks
  at ``dt=0.1`` ms written with ``scheme="euler"`` run in snnTorch with neurosim's spikes (LIF with
  jump or current input as ``Leaky``, LIF with a synaptic current as ``Synaptic``), and snnTorch's
  ``Leaky`` and ``Synaptic`` networks (zero reset; snnTorch writes no reset mechanism, so its
  default subtract reset is read as NIR's reset to ``v_reset`` by everyone; ``Synaptic`` with
  ``reset_delay=False``, as its default delayed zero reset also discards the input of the step after
  a spike) run in neurosim with snnTorch's spikes.
- Norse reads a graph with forward Euler at its ``dt``: recurrent LIF (current input: Norse's LIF
  ignores ``r``) and LIF with a synaptic current run in Norse with neurosim's spikes (Norse 1.1.0
  has no LI node: it drops LI readouts). Norse 1.1.0 writes its time constants multiplied by its
  ``dt`` argument (``tau = dt / tau_mem_inv``); with ``dt=1`` they are right, and its ``LIFBox``
  networks run in neurosim with Norse's spikes.

Where they do not: a recurrent graph runs in snnTorch 0.9.4 only as ``RSynaptic``, whose
``reset_delay=False`` path writes the immediate reset into a local variable; the reset then acts a
step late and also discards that step's input, so its spikes leave neurosim's (and Norse's) after
the first spike in the loop. A graph written with ``scheme="exact"`` holds neurosim's time constants,
which snnTorch and Norse step with Euler's decay ``1 - dt/tau`` instead of ``exp(-dt/tau)``.
"""
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

import neurosim as ns  # noqa: E402
from neurosim.interop import from_nir, to_nir  # noqa: E402

F64 = torch.float64


def spikes_of(net, x, names):
    with torch.no_grad():
        res = net.run(x, probes={n: ns.Probe(n, "spikes") for n in names})
    return res


def mixed_network(dtype=F64, method="exact") -> ns.Network:
    """Every kind of node the exporter writes: LIF with jump and current input and per-neuron
    time constants, LIF with per-neuron synaptic currents, LI, a recurrent Dense with a bias, a
    Sparse with Dale's signs, a convolution and the Flatten after it; LIFs integrated by ``method``."""
    g = torch.Generator().manual_seed(3)
    net = ns.Network(dt=1.0)
    net.add_input("img", 2 * 6 * 6)
    net.add_input("x", 20)
    lif = dict(reset="zero", method=method, dtype=dtype)
    net.add("conv", ns.LIF(4 * 4 * 4, tau_mem=6.0, **lif))
    net.add("h", ns.LIF(30, tau_mem=torch.linspace(5, 20, 30), v_leak=0.05, **lif))
    net.add("s", ns.LIF(25, tau_mem=10.0, tau_syn_exc=torch.linspace(3, 6, 25), v_leak=0.1, v_reset=-0.2, **lif))
    net.add("c", ns.LIF(15, tau_mem=8.0, input_mode="current", v_th=0.8, **lif))
    net.add("out", ns.LI(5, tau_mem=10.0, dtype=dtype))
    conv = net.connect("img", "conv", ns.Conv2d((2, 6, 6), 4, 3, bias=True, dtype=dtype))
    with torch.no_grad():
        conv.weight.mul_(4.0)
        conv.bias.uniform_(-0.1, 0.3, generator=g)
    net.connect("conv", "h", ns.Dense(64, 30, scale=2.0, generator=g, dtype=dtype))
    net.connect("x", "h", ns.Dense(20, 30, scale=3.0, generator=g, dtype=dtype))
    rec = net.connect("h", "h", ns.Dense(30, 30, scale=0.5, bias=True, generator=g, dtype=dtype))
    with torch.no_grad():
        rec.bias.fill_(0.02)
    dale = torch.tensor([1.0] * 24 + [-1.0] * 6)
    net.connect("h", "s", ns.Sparse(30, 25, p=0.3, weight=0.6, seed=1, dale=dale,
                                    dtype=dtype))
    net.connect("s", "c", ns.Dense(25, 15, scale=30.0, generator=g, dtype=dtype))
    net.connect("c", "out", ns.Dense(15, 5, generator=g, dtype=dtype))
    return net


def inputs(T=120, B=4, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"img": (torch.rand(T, B, 72, generator=g) < 0.3).to(dtype),
            "x": (torch.rand(T, B, 20, generator=g) < 0.3).to(dtype)}


@pytest.mark.parametrize("method", ["exact", "euler"])
@pytest.mark.parametrize("scheme", ["exact", "euler"])
def test_export_then_import_gives_identical_spikes(scheme, method, tmp_path):
    net = mixed_network(method=method)
    graph = to_nir(net, scheme=scheme)
    assert ("h", "h_to_h") in graph.edges and ("h_to_h", "h") in graph.edges  # recurrence: a cycle
    assert isinstance(graph.nodes["conv_flat"], nir.Flatten) and tuple(graph.nodes["conv"].tau.shape) == (4, 4, 4)
    assert isinstance(graph.nodes["s"], nir.CubaLIF) and isinstance(graph.nodes["out"], nir.LI)
    nir.write(tmp_path / "net.nir", graph)
    x = inputs()
    pops = ["conv", "h", "s", "c"]
    ref = spikes_of(net, x, pops)
    for back in (from_nir(graph, dtype=F64), from_nir(tmp_path / "net.nir", dtype=F64)):
        assert set(back.populations) == set(net.populations) and set(back.connections) == set(net.connections)
        out = spikes_of(back, x, pops)
        assert all(back.populations[p].params.method == scheme for p in pops)
        for p in pops:
            assert ref.probes[p].sum() > 50, p
            assert torch.equal(out.probes[p], ref.probes[p]), p
        assert torch.allclose(out.outputs["out"], ref.outputs["out"], rtol=0, atol=1e-12)


def test_graph_values_follow_the_mapping():
    net = mixed_network()
    dt = net.dt
    exact, euler = to_nir(net), to_nir(net, scheme="euler")
    beta = math.exp(-dt / 8.0)
    assert np.allclose(exact.nodes["c"].tau, 8e-3) and np.allclose(exact.nodes["c"].r, 1.0)
    assert np.allclose(euler.nodes["c"].tau, dt * 1e-3 / (1 - beta))
    tau_h = np.linspace(5, 20, 30)
    assert np.allclose(exact.nodes["h"].r, 1 / (1 - np.exp(-dt / tau_h)), rtol=1e-6)
    s = exact.nodes["s"]
    tau_s = np.linspace(3, 6, 25) * 1e-3
    assert np.allclose(s.tau_syn, tau_s) and np.allclose(s.w_in, tau_s) and np.allclose(s.r, 1.0)
    euler_method = to_nir(mixed_network(method="euler"), scheme="euler")
    assert np.allclose(euler_method.nodes["c"].tau, 8e-3) and np.allclose(euler_method.nodes["s"].tau_syn, tau_s)
    assert np.allclose(s.v_reset, -0.2) and np.allclose(s.v_leak, 0.1)
    dense = net.projections["h_to_s"].to_dense().numpy()
    assert (dense[:, 24:] <= 0).all() and np.array_equal(exact.nodes["h_to_s"].weight, dense)
    assert isinstance(exact.nodes["h_to_h"], nir.Affine)


def test_exact_scheme_is_the_continuous_model():
    """The nodes of an exported graph integrated by scipy (membrane input held over each step,
    synaptic input an impulse at its start) give neurosim's membranes."""
    from scipy.integrate import solve_ivp

    net = ns.Network(dt=0.5)
    net.add_input("x", 3)
    net.add("jump", ns.LIF(2, tau_mem=torch.tensor([4.0, 9.0]), v_leak=0.3, v_th=1e9, reset="zero", dtype=F64))
    net.add("cur", ns.LIF(2, tau_mem=7.0, v_leak=-0.2, v_th=1e9, reset="zero", input_mode="current", dtype=F64))
    net.add("syn", ns.LIF(2, tau_mem=6.0, tau_syn_exc=2.5, v_leak=0.1, v_th=1e9, reset="zero", dtype=F64))
    for pop in ("jump", "cur", "syn"):
        net.connect("x", pop, ns.Dense(3, 2, scale=2.0, dtype=F64))
    graph = to_nir(net, time_unit="ms")
    T = 40
    x = torch.rand(T, 1, 3, generator=torch.Generator().manual_seed(1), dtype=F64)
    with torch.no_grad():
        res = net.run(x, probes={p: ns.Probe(p, "v") for p in ("jump", "cur", "syn")})
    for pop in ("jump", "cur", "syn"):
        node = graph.nodes[pop]
        drive = x[:, 0].numpy() @ graph.nodes[f"x_to_{pop}"].weight.T
        cuba = isinstance(node, nir.CubaLIF)
        tau = node.tau_mem if cuba else node.tau
        v, i = node.v_leak.copy(), np.zeros(2)
        for t in range(T):
            if cuba:
                i = i + node.w_in * drive[t] / node.tau_syn

                def rhs(_, y):
                    return np.concatenate([(node.v_leak - y[:2] + node.r * y[2:]) / tau, -y[2:] / node.tau_syn])
            else:
                def rhs(_, y):
                    return (node.v_leak - y + node.r * drive[t]) / tau
            y0 = np.concatenate([v, i]) if cuba else v
            y = solve_ivp(rhs, (0, net.dt), y0, rtol=1e-11, atol=1e-13).y[:, -1]
            v, i = (y[:2], y[2:]) if cuba else (y, i)
            assert np.allclose(v, res.probes[pop][t, 0].numpy(), rtol=0, atol=1e-8), (pop, t)


def test_refused_by_name():
    def net_with(pop=None, proj=None):
        net = ns.Network()
        net.add_input("x", 4)
        net.add("p", pop or ns.LIF(4, reset="zero"))
        net.connect("x", "p", proj or ns.Dense(4, 4))
        return net

    cases = [(net_with(ns.ALIF(4)), "population 'p'.*ALIF"),
             (net_with(ns.Izhikevich(4)), "population 'p'.*Izhikevich"),
             (net_with(ns.DSR(4)), "population 'p'.*DSR"),
             (net_with(ns.LIF(4)), "population 'p'.*subtract"),
             (net_with(ns.LIF(4, reset="zero", tau_ref=2.0)), "population 'p'.*refractory"),
             (net_with(ns.LIF(4, reset="zero", tau_syn_exc=2.0, tau_syn_inh=3.0)), "population 'p'.*tau_syn_inh"),
             (net_with(ns.LIF(4, reset="zero", v0=0.5)), "population 'p'.*v0"),
             (net_with(proj=ns.Delayed(4, 4, 5)), "projection 'x_to_p'.*Delayed")]
    for net, message in cases:
        with pytest.raises(ns.NeurosimError, match=message):
            to_nir(net)
    bad = {"if": nir.NIRGraph.from_list(nir.Linear(weight=np.eye(3)), nir.IF(r=np.ones(3), v_threshold=np.ones(3))),
           "cubali": nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)), nir.CubaLI(
               tau_syn=np.array([1e-3, 2e-3]), tau_mem=np.full(2, 1e-2), r=np.ones(2), v_leak=np.zeros(2))),
           "output": nir.NIRGraph.from_list(nir.Linear(weight=np.eye(2)))}
    for what, message in [("if", "NIR node 'if'.*IF"), ("cubali", "NIR node 'cubali': CubaLI has no neurosim equivalent"),
                          ("output", "NIR node 'linear' feeds the output")]:
        with pytest.raises(ns.NeurosimError, match=message):
            from_nir(bad[what], dt=1.0)
    with pytest.raises(ns.NeurosimError, match="pass dt="):
        from_nir(bad["output"])


def test_neurosim_imports_without_nir():
    code = "import sys, neurosim, neurosim.interop; assert 'nir' not in sys.modules, 'nir imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# -- snnTorch --------------------------------------------------------------------------------------
def run_torch_graph(module, x, names, state=None):
    """A nirtorch GraphExecutor step by step over ``x [T, B, n]``: the outputs of ``names`` per step."""
    out = {n: [] for n in names}
    with torch.no_grad():
        for t in range(x.shape[0]):
            _, state = module(x[t], state)
            for n in names:
                out[n].append(state.cache[n])
    return {n: torch.stack(v) for n, v in out.items()}


def feedforward(mode: str, synapses: bool) -> ns.Network:
    g = torch.Generator().manual_seed(5)
    net = ns.Network(dt=0.1)
    net.add_input("x", 20)
    syn = {"tau_syn_exc": 0.5} if synapses else {"input_mode": mode}
    net.add("h", ns.LIF(30, tau_mem=2.0, reset="zero", **syn))
    net.add("o", ns.LIF(10, tau_mem=1.5, reset="zero", v_th=0.7, **syn))
    scale = 30.0 if mode == "current" else 8.0 if synapses else 3.0
    net.connect("x", "h", ns.Dense(20, 30, scale=scale, generator=g))
    net.connect("h", "o", ns.Dense(30, 10, scale=2 * scale, generator=g))
    return net


@pytest.mark.parametrize("mode,synapses", [("jump", False), ("current", False), ("jump", True)],
                         ids=["jump", "current", "synaptic"])
def test_neurosim_network_runs_in_snntorch(mode, synapses):
    pytest.importorskip("nirtorch")
    from snntorch.import_nir import import_from_nir

    net = feedforward(mode, synapses)
    module = import_from_nir(to_nir(net, scheme="euler"))
    x = (torch.rand(300, 4, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    ref = spikes_of(net, x, ["h"])
    got = run_torch_graph(module, x, ["h", "o"])
    assert ref.probes["h"].sum() > 500 and ref.outputs["o"].sum() > 100
    assert torch.equal(got["h"], ref.probes["h"]) and torch.equal(got["o"], ref.outputs["o"])


@pytest.mark.parametrize("synapses", [False, True], ids=["leaky", "synaptic"])
def test_snntorch_network_runs_in_neurosim(synapses):
    pytest.importorskip("nirtorch")
    import snntorch as snn
    from snntorch import utils
    from snntorch.export_nir import export_to_nir

    torch.manual_seed(0)
    neuron = (lambda: snn.Synaptic(alpha=0.8, beta=0.9, reset_mechanism="zero", reset_delay=False,
                                          init_hidden=True)) if synapses \
        else (lambda: snn.Leaky(beta=0.9, reset_mechanism="zero", init_hidden=True))
    fc1, fc2 = torch.nn.Linear(20, 30), torch.nn.Linear(30, 10)
    with torch.no_grad():
        fc1.weight.mul_(3.0)
        fc2.weight.mul_(4.0)
    model = torch.nn.Sequential(fc1, neuron(), fc2, neuron())
    graph = export_to_nir(model, torch.zeros(1, 20))
    net = from_nir(graph, dt=0.1, scheme="euler")  # snnTorch writes graphs for a step of 1e-4 s
    x = (torch.rand(200, 4, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    utils.reset(model)
    with torch.no_grad():
        hidden, out = [], []
        for t in range(x.shape[0]):
            z1 = model[1](model[0](x[t]))
            hidden.append(z1)
            out.append(model[3](model[2](z1)))
    first, last = list(net.populations)
    res = spikes_of(net, x, [first])
    assert torch.stack(hidden).sum() > 500 and torch.stack(out).sum() > 100
    assert torch.equal(res.probes[first], torch.stack(hidden))
    assert torch.equal(res.outputs[last], torch.stack(out))


# -- Norse ------------------------------------------------------------------------------------------
def test_neurosim_network_runs_in_norse():
    norse = pytest.importorskip("norse.torch")
    g = torch.Generator().manual_seed(4)
    net = ns.Network(dt=1.0)
    net.add_input("x", 20)
    net.add("h", ns.LIF(30, tau_mem=10.0, reset="zero", input_mode="current"))
    net.add("s", ns.LIF(25, tau_mem=8.0, tau_syn_exc=4.0, reset="zero"))
    net.connect("x", "h", ns.Dense(20, 30, scale=30.0, generator=g))
    net.connect("h", "h", ns.Dense(30, 30, scale=10.0, generator=g))
    net.connect("h", "s", ns.Dense(30, 25, scale=20.0, generator=g))
    module = norse.from_nir(to_nir(net, scheme="euler"), dt=1e-3)
    x = (torch.rand(300, 4, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    ref = spikes_of(net, x, ["h", "s"])
    got = run_torch_graph(module, x, ["h", "s"])
    for p in ("h", "s"):
        assert ref.probes[p].sum() > 1000
        assert torch.equal(got[p], ref.probes[p]), p


def test_norse_network_runs_in_neurosim():
    norse = pytest.importorskip("norse.torch")
    from norse.torch.functional.lif_box import LIFBoxParameters
    from norse.torch.module.lif_box import LIFBoxCell

    torch.manual_seed(1)

    def lif(n, tau_ms):
        return LIFBoxCell(LIFBoxParameters(tau_mem_inv=torch.full((n,), 1000.0 / tau_ms), v_leak=torch.zeros(n),
                                           v_th=torch.ones(n), v_reset=torch.zeros(n)), dt=1e-3)

    fc1, fc2 = torch.nn.Linear(20, 30), torch.nn.Linear(30, 10)
    with torch.no_grad():
        fc1.weight.mul_(30.0)
        fc2.weight.mul_(40.0)
    model = norse.SequentialState(fc1, lif(30, 10.0), fc2, lif(10, 5.0))
    graph = norse.to_nir(model, torch.zeros(1, 20), dt=1.0)  # dt=1: Norse writes tau = dt / tau_mem_inv
    net = from_nir(graph, dt=1.0, scheme="euler")
    x = (torch.rand(200, 4, 20, generator=torch.Generator().manual_seed(2)) < 0.3).float()
    with torch.no_grad():
        state, out = None, []
        for t in range(x.shape[0]):
            z2, state = model(x[t], state)
            out.append(z2)
    pops = list(net.populations)
    res = spikes_of(net, x, pops)
    assert torch.stack(out).sum() > 100
    assert torch.equal(res.outputs[pops[-1]], torch.stack(out))
