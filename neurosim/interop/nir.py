r"""Networks to and from NIR, the neuromorphic intermediate representation (the ``nir`` package).

``to_nir(network)`` returns a ``nir.NIRGraph``; ``from_nir(graph_or_path, dt=...)`` builds a
:class:`~neurosim.network.Network` (``nir.write(path, graph)`` / ``nir.read(path)`` store graphs).
The ``nir`` package is imported only when these are called.

NIR describes neurons in continuous time, with time constants in a time unit (``time_unit``:
``"s"`` by default, what snnTorch, Norse and Rockpool read and write; NIR's table of primitives
states ms, ``time_unit="ms"``), and leaves the discretisation to whoever runs the graph.
A LIF node is :math:`\tau \dot v = (v_{leak} - v) + R I`, spike :math:`v > v_{th}`, reset
:math:`v \leftarrow v_{reset}`; CubaLIF adds :math:`\tau_{syn} \dot I = -I + w_{in} S` in front
of it; LI is LIF without spikes. ``scheme`` says how a step of ``dt`` (ms, neurosim's) reads
the graph:

- ``"exact"`` (default): the equations integrated exactly over the step, with the input to a
  membrane (LIF, LI) held constant over the step and the input to a synaptic current (CubaLIF)
  arriving as an impulse at the start of the step: neurosim's ``method="exact"``.
- ``"euler"``: one forward-Euler step, :math:`y \leftarrow y + \frac{dt}{\tau}(\dots)`, the membrane
  integrating the synaptic current already updated in the same step: neurosim's LIF
  ``method="euler"``, and how snnTorch's and Norse's importers run a graph.

A population is written with the time constants that give its own step under the scheme, so
that the graph read back with that scheme runs the same. With :math:`\beta` and :math:`\alpha`
what remains of the membrane and of the synaptic current after a step, and :math:`\kappa` the
synaptic gain, each by the population's ``method`` (:mod:`neurosim.neurons.lif`; times in the
graph's unit):

- time constants: under the population's own method as they are; an exact population under
  ``"euler"`` as :math:`\tau = dt / (1 - \beta)` (the Euler step of the same decay), an Euler one
  under ``"exact"`` as :math:`\tau = -dt / \ln \beta` (refused where :math:`\beta \notin (0, 1)`);
- ``LIF``, ``input_mode="jump"``: ``LIF(tau, r=1/(1-beta))``; ``input_mode="current"``: ``r=1``;
- ``LIF`` with ``tau_syn_exc``: ``CubaLIF(tau_syn, tau_mem, r, w_in)`` with ``w_in=tau_syn`` and
  ``r`` the ratio of the population's kappa to the exact kappa of the written time constants (1
  for an exact population) under ``"exact"``; ``w_in=kappa/(1-alpha)``, ``r=1/(1-beta)`` under
  ``"euler"``;
- ``LI``: ``LI(tau, r)``, as LIF.

``v_leak``, ``v_th`` and ``v_reset`` are copied (per neuron). ``Dense`` becomes ``Linear``
(``Affine`` with a bias) of its effective weights: mask and Dale's signs applied, so the
dynamics are the same while the constraints on learning are not kept. ``Sparse`` becomes the
``Linear`` of its dense matrix. ``Conv2d`` becomes ``Conv2d`` (``input_shape`` (H, W)); a
population it feeds has the shape (C, H, W) in the graph, and a ``Flatten`` node precedes a
dense projection out of it. A recurrent projection, or any loop of populations, is a cycle of
the graph (population -> projection -> population); neurosim runs projections inside a loop with
a one-step delay, as snnTorch's ``RSynaptic`` does. Each population without outgoing projections
(the network's default outputs) feeds an ``Output`` node.

Refused with an error naming the population or projection: ``ALIF``, ``DSR`` and ``Izhikevich``
neurons (NIR has no adaptive, graded or quadratic neuron; ``nir`` 1.0 has no Izhikevich node),
``reset="subtract"`` (NIR resets to ``v_reset``), a refractory period, a separate inhibitory
synaptic current (``tau_syn_inh``), an initial membrane ``v0``, ``Delayed`` projections (NIR's
``Delay`` node delays whole signals, not single synapses) and ``Chain`` (dropout, batch norm).

Import inverts this: LIF and CubaLIF nodes become LIFs with ``method`` the scheme (per-neuron
time constants, ``reset="zero"``); an LI under ``"euler"`` becomes neurosim's exact LI with the
time constant of the same decay, :math:`-dt / \ln(1 - dt/\tau)` (refused where :math:`\tau \le dt`).
A LIF or LI node with ``r = 1`` becomes ``input_mode="current"``, one with ``r = 1/(1-beta)``
``input_mode="jump"``; any other ``r`` (and for CubaLIF any ``r * w_in`` off the mapping) is an
input gain per neuron, folded into the weights of the projections into the population, which
takes jump input. An edge from an input or population straight into a population becomes
a fixed identity projection (times the gain). ``Flatten`` and the ``Input`` and ``Output``
nodes of subgraphs pass their signal on; subgraphs are inlined. Node names become identifiers
(characters other than letters, digits and ``_`` replaced by ``_``, a leading digit prefixed
with ``n``). Other nodes (``IF`` and ``I``, which neurosim's finite ``tau_mem`` cannot express,
``CubaLI``, ``Scale``, ``Delay``, pooling, ``Threshold``, ``Conv1d``) are refused by name, as
is a projection feeding an ``Output`` or another projection.

The graph's metadata records neurosim's ``dt``, scheme and time unit, which :func:`from_nir`
takes when not given; NIR graphs from elsewhere need ``dt``.
"""
from __future__ import annotations

import os
import re

import numpy as np
import torch

from ..errors import NeurosimError, check_choice, check_positive
from ..network import Network
from ..neurons.lif import LIF, synaptic_gain
from ..neurons.readout import LI
from ..projections.conv import Conv2d
from ..projections.dense import Dense
from ..projections.sparse import Sparse

SCHEMES = ("exact", "euler")
#: Graph time units per ms.
TIME_UNITS = {"s": 1e-3, "ms": 1.0}
_PASS = "pass"  # a node that passes its input on (Flatten, a subgraph's Input or Output)
_REASONS = {"ALIF": "NIR has no adaptive neuron", "DSR": "NIR has no graded-spike neuron",
            "Izhikevich": "NIR has no Izhikevich neuron", "Delayed": "NIR's Delay node delays whole signals, "
            "not single synapses", "Chain": "NIR has no dropout or batch norm"}


def _nir():
    try:
        import nir
    except ImportError:
        raise NeurosimError("NIR export and import need the nir package: pip install nir") from None
    return nir


def _array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


# -- export -----------------------------------------------------------------------------------------
def to_nir(network: Network, *, scheme: str = "exact", time_unit: str = "s"):
    """``network`` as a ``nir.NIRGraph``: nodes named after its inputs, populations and
    projections; see the module docstring for the mapping and what is refused."""
    nir = _nir()
    if not isinstance(network, Network):
        raise NeurosimError(f"to_nir needs a neurosim Network, got {type(network).__name__}")
    check_choice("scheme", scheme, SCHEMES)
    check_choice("time_unit", time_unit, TIME_UNITS)
    if not network.inputs:
        raise NeurosimError("the network has no input: a NIR graph starts at its Input nodes")
    dt, unit = network.dt, TIME_UNITS[time_unit]
    shapes = _shapes(network)
    nodes = {name: nir.Input(input_type={"input": np.array(shapes[name])}) for name in network.inputs}
    for name, pop in network.populations.items():
        nodes[name] = _export_population(nir, name, pop, dt, scheme, unit, shapes[name])
    edges, flat = [], {}
    for cname, c in network.connections.items():
        node, flat_input = _export_projection(nir, cname, c.projection)
        if not isinstance(node, nir.Conv2d) and len(shapes[c.post]) > 1:
            raise NeurosimError(f"projection {cname!r}: feeds {c.post!r}, which a convolution gives the shape "
                                f"{shapes[c.post]}; NIR cannot reshape a flat signal to it")
        key = _unique(cname, nodes)
        nodes[key] = node
        src = c.pre
        if flat_input and len(shapes[c.pre]) > 1:
            if c.pre not in flat:
                flat[c.pre] = _unique(f"{c.pre}_flat", nodes)
                nodes[flat[c.pre]] = nir.Flatten(input_type={"input": np.array(shapes[c.pre])}, start_dim=0)
                edges.append((c.pre, flat[c.pre]))
            src = flat[c.pre]
        edges += [(src, key), (key, c.post)]
    for name in network.populations:
        if not any(c.pre == name for c in network.connections.values()):
            out = _unique(f"{name}_output", nodes)
            nodes[out] = nir.Output(output_type={"output": np.array(shapes[name])})
            edges.append((name, out))
    metadata = {"neurosim_dt": dt, "neurosim_scheme": scheme, "neurosim_time_unit": time_unit}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _unique(name: str, taken) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    return out


def _shapes(network: Network) -> dict[str, tuple[int, ...]]:
    """The shape of every input and population in the graph: (C, H, W) where a convolution reads or
    writes it, (n,) otherwise."""
    shapes: dict[str, tuple[int, ...]] = {}
    for cname, c in network.connections.items():
        if type(c.projection) is Conv2d:
            for node, shape in ((c.pre, c.projection.in_shape), (c.post, c.projection.out_shape)):
                if shapes.setdefault(node, tuple(shape)) != tuple(shape):
                    raise NeurosimError(f"projection {cname!r}: {node!r} has the shape {shapes[node]} for another "
                                        f"convolution and {tuple(shape)} for this one")
    return {n: shapes.get(n, (network.size(n),)) for n in network.names()}


def _step_constants(tau: np.ndarray, dt: float, method: str, scheme: str, what: str):
    """(the graph's time constants in ms, what remains per step) of time constants ``tau`` (ms)
    integrated by ``method``, written for ``scheme``."""
    beta = np.exp(-dt / tau) if method == "exact" else 1 - dt / tau
    if scheme == method:
        return tau, beta
    if scheme == "euler":
        return dt / (1 - beta), beta
    if not np.all((beta > 0) & (beta < 1)):
        raise NeurosimError(f"{what}: its Euler step (dt={dt:g} ms against {tau.min():g} ms) decays by a "
                            "factor outside (0, 1), which no exact step does; write it with scheme='euler'")
    return -dt / np.log(beta), beta


def _export_population(nir, name: str, pop, dt: float, scheme: str, unit: float, shape: tuple):
    kind = type(pop)
    if kind not in (LIF, LI):
        why = _REASONS.get(kind.__name__, "NIR has LIF, CubaLIF and LI")
        raise NeurosimError(f"population {name!r}: {kind.__name__} neurons have no NIR node ({why})")
    p, n, what = pop.params, pop.n, f"population {name!r}"
    method = getattr(p, "method", "exact")

    def per_neuron(x) -> np.ndarray:
        return np.broadcast_to(_array(x), (n,)).reshape(shape).copy()

    tau = per_neuron(p.tau_mem)
    tau_g, beta = _step_constants(tau, dt, method, scheme, what)
    r = np.ones_like(tau) if p.input_mode == "current" else 1 / (1 - beta)
    v_leak = per_neuron(p.v_leak)
    if kind is LI:
        return nir.LI(tau=tau_g * unit, r=r, v_leak=v_leak)
    for bad, why in ((p.reset != "zero", "reset='subtract' (NIR's LIF resets to v_reset; use reset='zero')"),
                     (np.any(_array(p.tau_ref) > 0), "a refractory period (tau_ref)"),
                     (p.tau_syn_inh is not None, "a separate inhibitory synaptic current (tau_syn_inh)"),
                     (pop.v0 is not None, "an initial membrane v0 (NIR states start at rest)")):
        if bad:
            raise NeurosimError(f"{what}: NIR cannot express {why}")
    v_th, v_reset = per_neuron(p.v_th), per_neuron(p.v_reset)
    if p.tau_syn_exc is None:
        return nir.LIF(tau=tau_g * unit, r=r, v_leak=v_leak, v_threshold=v_th, v_reset=v_reset)
    tau_s = per_neuron(p.tau_syn_exc)
    tau_s_g, alpha = _step_constants(tau_s, dt, method, scheme, what)
    kappa = per_neuron(synaptic_gain(dt, torch.as_tensor(tau.reshape(-1)), torch.as_tensor(tau_s.reshape(-1)),
                                     method))
    if scheme == "exact":
        r = np.ones_like(tau) if method == "exact" else kappa / per_neuron(synaptic_gain(
            dt, torch.as_tensor(tau_g.reshape(-1)), torch.as_tensor(tau_s_g.reshape(-1))))
        return nir.CubaLIF(tau_syn=tau_s_g * unit, tau_mem=tau_g * unit, r=r, v_leak=v_leak, v_threshold=v_th,
                           v_reset=v_reset, w_in=tau_s_g * unit)
    return nir.CubaLIF(tau_syn=tau_s_g * unit, tau_mem=tau_g * unit, r=1 / (1 - beta), v_leak=v_leak,
                       v_threshold=v_th, v_reset=v_reset, w_in=kappa / (1 - alpha))


def _export_projection(nir, name: str, proj):
    """``(node, whether it reads a flat signal)``."""
    kind = type(proj)
    if kind is Dense:
        w = _array(proj.effective_weight())
        node = nir.Linear(weight=w) if proj.bias is None else nir.Affine(weight=w, bias=_array(proj.bias))
        return node, True
    if kind is Sparse:
        return nir.Linear(weight=_array(proj.to_dense())), True
    if kind is Conv2d:
        bias = np.zeros(proj.out_shape[0]) if proj.bias is None else _array(proj.bias)
        return nir.Conv2d(input_shape=tuple(proj.in_shape[1:]), weight=_array(proj.weight), stride=proj.stride,
                          padding=proj.padding, dilation=1, groups=1, bias=bias), False
    why = _REASONS.get(kind.__name__, "NIR has Linear, Affine and Conv2d")
    raise NeurosimError(f"projection {name!r}: {kind.__name__} has no NIR node ({why})")


# -- import -----------------------------------------------------------------------------------------
def from_nir(graph, *, dt: float | None = None, scheme: str | None = None, time_unit: str | None = None,
             dtype: torch.dtype = torch.float32) -> Network:
    """A network from a ``nir.NIRGraph`` or a NIR file, stepped with ``dt`` ms under ``scheme``
    (module docstring). ``dt``, ``scheme`` and ``time_unit`` default to what the graph's metadata
    records when neurosim wrote it; otherwise to ``"exact"`` and ``"s"``, and ``dt`` must be given."""
    nir = _nir()
    if isinstance(graph, (str, os.PathLike)):
        try:
            graph = nir.read(graph)
        except (OSError, KeyError, ValueError) as e:
            raise NeurosimError(f"cannot read a NIR graph from {os.fspath(graph)}: {e}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise NeurosimError(f"from_nir needs a nir.NIRGraph or a path, got {type(graph).__name__}")
    meta = graph.metadata if isinstance(graph.metadata, dict) else {}
    dt = _meta(meta, "neurosim_dt", float) if dt is None else dt
    scheme = scheme or _meta(meta, "neurosim_scheme", str) or "exact"
    time_unit = time_unit or _meta(meta, "neurosim_time_unit", str) or "s"
    if dt is None:
        raise NeurosimError("pass dt= (ms): the graph does not record neurosim's time step")
    check_positive("dt", dt)
    check_choice("scheme", scheme, SCHEMES)
    check_choice("time_unit", time_unit, TIME_UNITS)
    nodes, edges = _inline(nir, graph, "", top=True)
    edges = _bypass(nodes, edges)
    kinds = {name: _kind(nir, name, node) for name, node in nodes.items() if node is not _PASS}
    ids = _identifiers(kinds)
    sizes = _sizes(nir, nodes, edges, kinds)
    net = Network(dt=float(dt))
    gains = {}
    for name, kind in kinds.items():
        if kind == "input":
            net.add_input(ids[name], sizes[name])
        elif kind == "neuron":
            pop, gains[name] = _import_population(nir, name, nodes[name], sizes[name], float(dt), scheme,
                                                  TIME_UNITS[time_unit], dtype)
            net.add(ids[name], pop)
    for a, b in edges:
        if kinds[b] == "output" and kinds[a] != "neuron":
            raise NeurosimError(f"NIR node {a!r} feeds the output {b!r}: neurosim's outputs are populations")
        if kinds[a] == "output" or kinds[b] == "input":
            raise NeurosimError(f"NIR edge {a!r} -> {b!r} leaves an Output or enters an Input")
        if kinds[b] == "neuron" and kinds[a] in ("input", "neuron"):
            n = sizes[b]
            if sizes[a] != n:
                raise NeurosimError(f"NIR edge {a!r} -> {b!r} joins {sizes[a]} to {n} values")
            g = np.ones(n) if gains[b] is None else gains[b]
            net.connect(ids[a], ids[b], Dense(n, n, weight=torch.as_tensor(np.diag(g), dtype=dtype),
                                              learnable=False, dtype=dtype),
                        name=_unique(f"{ids[a]}_to_{ids[b]}", net.connections))
    for w, kind in kinds.items():
        if kind != "weight":
            continue
        srcs = [a for a, b in edges if b == w]
        tgts = [b for a, b in edges if a == w]
        for s in srcs:
            if kinds[s] not in ("input", "neuron"):
                raise NeurosimError(f"NIR node {w!r}: fed by {s!r}, a {type(nodes[s]).__name__}; neurosim "
                                    "projections run from inputs or populations")
        for t in tgts:
            if kinds[t] != "neuron":
                raise NeurosimError(f"NIR node {w!r} feeds {t!r}: neurosim projections end at populations")
        if not srcs or not tgts:
            raise NeurosimError(f"NIR node {w!r} is not between an input or population and a population")
        for t in tgts:
            for k, s in enumerate(srcs):
                proj = _import_projection(nir, w, nodes[w], sizes[s], sizes[t], gains[t], k == 0, dtype)
                base = ids[w] if len(srcs) == len(tgts) == 1 else f"{ids[w]}_{ids[s]}_to_{ids[t]}"
                net.connect(ids[s], ids[t], proj, name=_unique(base, net.connections))
    return net


def _meta(meta: dict, key: str, kind):
    v = meta.get(key)
    if v is None:
        return None
    if isinstance(v, bytes):
        v = v.decode()
    return kind(np.asarray(v).item()) if kind is float else kind(v)


def _inline(nir, graph, prefix: str, top: bool):
    """Nodes and edges with subgraphs inlined (``prefix`` + name); a subgraph's Input and Output
    nodes, and Flatten nodes, become pass-through nodes."""
    nodes, edges, entry, exit_ = {}, [], {}, {}
    for name, node in graph.nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            sub_nodes, sub_edges = _inline(nir, node, full + ".", top=False)
            nodes.update(sub_nodes)
            edges += sub_edges
            entry[name] = [f"{full}.{k}" for k, v in node.nodes.items() if isinstance(v, nir.Input)]
            exit_[name] = [f"{full}.{k}" for k, v in node.nodes.items() if isinstance(v, nir.Output)]
        elif isinstance(node, nir.Flatten) or (not top and isinstance(node, (nir.Input, nir.Output))):
            nodes[full] = _PASS
        else:
            nodes[full] = node
    for a, b in graph.edges:
        for a2 in exit_.get(a, [prefix + a]):
            for b2 in entry.get(b, [prefix + b]):
                for end in (a2, b2):
                    if end not in nodes:
                        raise NeurosimError(f"NIR edge {a!r} -> {b!r}: no node {end!r}")
                edges.append((a2, b2))
    return nodes, edges


def _bypass(nodes: dict, edges: list) -> list:
    """The edges between real nodes, pass-through nodes bridged, in order, without repeats."""
    succ: dict[str, list[str]] = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)

    def ends(b, seen):
        if nodes[b] is not _PASS:
            yield b
        elif b not in seen:
            seen.add(b)
            for c in succ.get(b, []):
                yield from ends(c, seen)

    out = {}
    for a, b in edges:
        if nodes[a] is not _PASS:
            for t in ends(b, set()):
                out[(a, t)] = None
    return list(out)


def _kind(nir, name: str, node) -> str:
    if isinstance(node, nir.Input):
        return "input"
    if isinstance(node, nir.Output):
        return "output"
    if isinstance(node, (nir.LIF, nir.LI, nir.CubaLIF)):
        return "neuron"
    if isinstance(node, (nir.Affine, nir.Linear, nir.Conv2d)):
        return "weight"
    why = {"IF": " (neurosim's tau_mem is finite)", "I": " (neurosim's tau_mem is finite)"}.get(type(node).__name__, "")
    raise NeurosimError(f"NIR node {name!r}: {type(node).__name__} has no neurosim equivalent{why}")


def _identifiers(kinds: dict) -> dict[str, str]:
    ids, taken = {}, set()
    for name in kinds:
        base = re.sub(r"\W", "_", name) or "node"
        base = "n" + base if base[0].isdigit() else base
        ids[name] = _unique(base, taken)
        taken.add(ids[name])
    return ids


def _weight_sizes(nir, node) -> tuple[int, int]:
    """(inputs, outputs) of a weight node."""
    if isinstance(node, nir.Conv2d):
        t_in, t_out = node.input_type.get("input"), node.output_type.get("output")
        if t_in is None or t_out is None:
            raise NeurosimError("a NIR Conv2d needs its input_shape")
        return int(np.prod(t_in)), int(np.prod(t_out))
    w = _array(node.weight).shape
    return int(w[1]), int(w[0])


def _sizes(nir, nodes: dict, edges: list, kinds: dict) -> dict[str, int]:
    """Values per node; a neuron node with one value per parameter takes its size from what feeds it."""
    sizes = {}
    for name, kind in kinds.items():
        node = nodes[name]
        if kind in ("input", "output"):
            shape = node.input_type["input"] if kind == "input" else node.output_type["output"]
            sizes[name] = int(np.prod(shape))
        elif kind == "weight":
            if isinstance(node, (nir.Affine, nir.Linear)) and _array(node.weight).ndim != 2:
                raise NeurosimError(f"NIR node {name!r}: a {_array(node.weight).ndim}-d weight; neurosim needs 2-d")
        else:
            sizes[name] = _array(node.v_leak).size
    for name, kind in kinds.items():
        if kind == "neuron" and sizes[name] == 1:
            fed = {_weight_sizes(nir, nodes[a])[1] if kinds[a] == "weight" else sizes.get(a, 1)
                   for a, b in edges if b == name}
            sizes[name] = max(fed, default=1)
    return sizes


def _param(x: np.ndarray, dtype: torch.dtype):
    """A number when every neuron has the same value, a per-neuron tensor otherwise."""
    return float(x[0]) if np.all(x == x[0]) else torch.as_tensor(x, dtype=dtype)


def _unit_gain(g: np.ndarray):
    return None if np.allclose(g, 1.0, rtol=1e-12, atol=0.0) else g


def _import_population(nir, name: str, node, n: int, dt: float, scheme: str, unit: float, dtype):
    """(population, input gain per neuron or None). Under ``"euler"`` a LIF steps with neurosim's
    Euler method; an LI, which neurosim integrates exactly, takes the time constant of the same decay."""
    def values(x) -> np.ndarray:
        return np.broadcast_to(_array(x).reshape(-1), (n,)).copy()

    r, v_leak = values(node.r), values(node.v_leak)
    is_li = isinstance(node, nir.LI)
    tau = values(node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau) / unit
    if not np.all(tau > 0):
        raise NeurosimError(f"NIR node {name!r}: time constants must be > 0")
    beta = np.exp(-dt / tau) if scheme == "exact" else 1 - dt / tau
    if is_li and scheme == "euler":
        if not np.all((beta > 0) & (beta < 1)):
            raise NeurosimError(f"NIR node {name!r}: an LI whose Euler step (dt={dt:g} ms against {tau.min():g} ms) "
                                "decays by a factor outside (0, 1), which neurosim's exact LI cannot take")
        tau = -dt / np.log(beta)
    common = dict(tau_mem=_param(tau, dtype), v_leak=_param(v_leak, dtype), dtype=dtype)
    if isinstance(node, nir.CubaLIF):
        tau_s = values(node.tau_syn) / unit
        gain = r * values(node.w_in) / (tau_s * unit) * (1.0 if scheme == "exact" else dt * unit)
        pop = LIF(n, tau_syn_exc=_param(tau_s, dtype), v_th=_param(values(node.v_threshold), dtype),
                  v_reset=_param(values(node.v_reset), dtype), reset="zero", method=scheme, **common)
        return pop, _unit_gain(gain)
    if np.allclose(r, 1.0, rtol=1e-12, atol=0.0):
        mode, gain = "current", None
    else:
        mode, gain = "jump", _unit_gain(r * (1 - beta))
    if is_li:
        return LI(n, input_mode=mode, **common), gain
    return LIF(n, v_th=_param(values(node.v_threshold), dtype), v_reset=_param(values(node.v_reset), dtype),
               reset="zero", input_mode=mode, method=scheme, **common), gain


def _import_projection(nir, name: str, node, n_in: int, n_out: int, gain, with_bias: bool, dtype):
    """A projection of ``n_in`` -> ``n_out`` from a weight node, ``gain`` (per postsynaptic neuron)
    folded into its weights; the node's bias only ``with_bias``."""
    sizes = _weight_sizes(nir, node)
    if sizes != (n_in, n_out):
        raise NeurosimError(f"NIR node {name!r} maps {sizes[0]} -> {sizes[1]} values between nodes of "
                            f"{n_in} and {n_out}")
    bias = getattr(node, "bias", None)
    bias = _array(bias).reshape(-1) if with_bias and bias is not None and np.any(_array(bias) != 0) else None
    if isinstance(node, nir.Conv2d):
        return _import_conv(name, node, gain, bias, dtype)
    w = _array(node.weight)
    if gain is not None:
        w = w * gain[:, None]
        bias = None if bias is None else bias * gain
    proj = Dense(n_in, n_out, weight=torch.as_tensor(w, dtype=dtype), bias=bias is not None, dtype=dtype)
    if bias is not None:
        with torch.no_grad():
            proj.bias.copy_(torch.as_tensor(bias, dtype=dtype))
    return proj


def _import_conv(name: str, node, gain, bias, dtype) -> Conv2d:
    w = _array(node.weight)
    c_out, c_in, kh, kw = w.shape
    stride, dilation = np.broadcast_to(node.stride, 2), np.broadcast_to(node.dilation, 2)
    pad = node.padding
    if isinstance(pad, str):
        pad = 0 if pad == "valid" else (kh - 1) // 2 if kh % 2 and tuple(stride) == (1, 1) else None
    pad = None if pad is None else np.broadcast_to(pad, 2)
    if kh != kw or stride[0] != stride[1] or pad is None or pad[0] != pad[1] or tuple(dilation) != (1, 1) \
            or int(node.groups) != 1:
        raise NeurosimError(f"NIR node {name!r}: neurosim's Conv2d has square kernels, one stride and padding for "
                            f"both axes, no dilation and no groups; got kernel {kh}x{kw}, stride {tuple(stride)}, "
                            f"padding {node.padding}, dilation {tuple(dilation)}, groups {node.groups}")
    in_shape = tuple(int(s) for s in node.input_type["input"])
    conv = Conv2d(in_shape, c_out, kh, stride=int(stride[0]), padding=int(pad[0]), bias=bias is not None, dtype=dtype)
    if gain is not None:
        per_channel = gain.reshape(c_out, -1)
        if not np.all(per_channel == per_channel[:, :1]):
            raise NeurosimError(f"NIR node {name!r}: the input gain of the population it feeds differs within a "
                                "channel; it cannot be folded into the kernel")
        w = w * per_channel[:, 0, None, None, None]
        bias = None if bias is None else bias * per_channel[:, 0]
    with torch.no_grad():
        conv.weight.copy_(torch.as_tensor(w, dtype=dtype))
        if bias is not None:
            conv.bias.copy_(torch.as_tensor(bias, dtype=dtype))
    return conv
