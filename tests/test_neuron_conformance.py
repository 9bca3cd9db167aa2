"""What every neuron model must pass, built-in or written outside neurosim (examples/adex.py):
shapes and dtypes, float32 / float64 agreement, state round trips through checkpoints, gradients
against finite differences, batch independence, determinism, refusal of bad parameters.

A model enters :data:`MODELS` with a factory of a small population with per-neuron parameters,
an input scale at which it fires now and then, a state at rest and one near its threshold (for
the gradient checks), and constructor arguments it must refuse. The gradient checks replace the
surrogate by a smooth spike function (a sigmoid, forward and backward) and compare the step
function's autograd gradients with finite differences in float64: of the spikes near the
threshold (the reset comes after them), and of the spikes and the whole new state at rest (where
the reset, detached from the graph, has no effect).
"""
import dataclasses
import sys
from pathlib import Path
from typing import Callable, NamedTuple

import pytest
import torch

import neurosim as ns
from neurosim.errors import NeurosimError
from neurosim.storage.snapshot import decode, encode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from adex import AdEx  # noqa: E402

N, BATCH, STEPS = 6, 3, 40


def per_neuron(low, high, n=N):
    return torch.linspace(low, high, n, dtype=torch.float64)


class Model(NamedTuple):
    make: Callable  # (dtype) -> population of N neurons
    scale: float  # input amplitude at which neurons fire now and then
    slope: float  # of the smooth spike function, per unit of the membrane
    rest: Callable  # (population, batch) -> a state far below threshold
    bad: tuple  # (constructor keyword arguments, message) the factory must refuse
    near: Callable | None = None  # a state near threshold (None: reached through the input)
    gradient: str | None = None  # why the step has no gradient to check, if it has none


def lif_like(field="v", low=0.0, high=0.6):
    """A state with ``field`` spread over ``[low, high)`` and every other float field small."""
    def state(pop, batch):
        st = pop.initial_state(batch)
        g = torch.Generator().manual_seed(batch)
        values = {}
        for name, value in st._asdict().items():
            if not value.is_floating_point():
                values[name] = value
            elif name == field:
                values[name] = low + (high - low) * torch.rand(value.shape, generator=g, dtype=value.dtype)
            else:
                values[name] = 0.1 * torch.rand(value.shape, generator=g, dtype=value.dtype)
        return type(st)(**values)
    return state


MODELS = {
    "lif": Model(lambda dtype: ns.LIF(N, tau_mem=per_neuron(5.0, 15.0), v_th=per_neuron(0.8, 1.2), tau_syn_exc=4.0,
                                      tau_syn_inh=8.0, tau_ref=2.0, dt=1.0, dtype=dtype),
                 0.6, 30.0, lif_like(low=-0.5, high=0.0),
                 (({"tau_mem": -1.0}, "tau_mem"), ({"reset": "bogus"}, "reset"),
                  ({"tau_syn_exc": None}, "tau_syn_inh needs tau_syn_exc"))),
    "lif_euler": Model(lambda dtype: ns.LIF(N, tau_mem=per_neuron(5.0, 15.0), v_th=1.0, method="euler",
                                            input_mode="current", dt=0.5, dtype=dtype),
                       3.0, 30.0, lif_like(low=-0.5, high=0.0),
                       (({"method": "rk4"}, "method"),
                        ({"input_mode": "current", "tau_syn_exc": 5.0}, "cannot be combined"))),
    "alif": Model(lambda dtype: ns.ALIF(N, tau_mem=per_neuron(10.0, 20.0), tau_adapt=per_neuron(50.0, 150.0), a=0.3,
                                        b=0.2, v_th=1.0, dt=1.0, dtype=dtype),
                  3.0, 30.0, lif_like(low=-0.5, high=0.0),
                  (({"a": -2.0}, "a must be > -1"), ({"tau_adapt": 0.0}, "tau_adapt"))),
    "adaptive_threshold": Model(lambda dtype: ns.AdaptiveThresholdLIF(N, tau_mem=per_neuron(10.0, 20.0), b=0.5,
                                                                      tau_adapt=per_neuron(50.0, 200.0), tau_ref=2.0,
                                                                      v_th=1.0, dt=1.0, dtype=dtype),
                                0.6, 30.0, lif_like(low=-0.5, high=0.0),
                                (({"b": -1.0}, "b must be >= 0"), ({"tau_adapt": -5.0}, "tau_adapt"))),
    "izhikevich": Model(lambda dtype: ns.Izhikevich(N, a=per_neuron(0.02, 0.1), b=0.2, c=per_neuron(-65.0, -50.0),
                                                    d=per_neuron(2.0, 8.0), dt=0.5, dtype=dtype),
                        12.0, 2.0, lif_like(low=-70.0, high=-60.0),
                        (({"schedule": "later"}, "schedule"), ({"a": float("nan")}, "finite"))),
    "izhikevich_netm": Model(lambda dtype: ns.Izhikevich(N, cell_type="FS", schedule="threshold_first", dt=1.0,
                                                         dtype=dtype),
                             12.0, 2.0, lif_like(low=-70.0, high=-60.0), (({"cell_type": "XY"}, "unknown Izhikevich type"),),
                             near=lif_like(low=29.0, high=31.0)),
    "dsr": Model(lambda dtype: ns.DSR(N, tau_mem=per_neuron(0.5, 1.5), v_th=0.3, alpha=0.3, dt=0.05, dtype=dtype),
                 0.5, 1.0, lif_like(high=0.02), (({"alpha": 1.5}, "alpha"), ({"v_th": 0.0}, "v_th")),
                 gradient="its gradient is defined on whole sequences through the spike representation, not as the "
                          "derivative of its step (checked in test_dsr.py)"),
    "li": Model(lambda dtype: ns.LI(N, tau_mem=per_neuron(5.0, 15.0), v_leak=per_neuron(-0.1, 0.1), dt=1.0,
                                    dtype=dtype),
                1.0, 1.0, lif_like(high=0.2),
                (({"input_mode": "voltage"}, "input_mode"), ({"tau_mem": torch.zeros(N)}, "tau_mem"))),
    "adex (examples/adex.py)": Model(lambda dtype: AdEx(N, a=per_neuron(2.0, 4.0), tau_w=per_neuron(30.0, 150.0),
                                                        b=per_neuron(0.0, 80.0), dt=0.5, dtype=dtype),
                                     900.0, 2.0, lif_like(low=-72.0, high=-66.0),
                                     (({"c_m": -281.0}, "c_m"), ({"v_peak": -80.0}, "v_peak must be above v_reset"))),
}
NAMES = list(MODELS)


def smooth(slope: float):
    """A smooth spike function: a sigmoid, forward and backward."""
    return lambda x: torch.sigmoid(slope * x)


def inputs(model: Model, steps=STEPS, batch=BATCH, seed=0):
    g = torch.Generator().manual_seed(seed)
    return model.scale * (0.5 + torch.rand(steps, batch, N, generator=g, dtype=torch.float64))


def run(pop, xs, state=None):
    """The population's step loop (``Population.steps``)."""
    with torch.no_grad():
        return pop.steps(xs.to(pop.dtype), state)


def same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shapes_and_dtypes(name, dtype):
    model = MODELS[name]
    pop = model.make(dtype)
    state = pop.initial_state(BATCH)
    assert isinstance(state, pop.State) and pop.observables[-len(state):] == state._fields
    for value in state:
        assert value.shape == (BATCH, N)
        assert value.dtype == dtype if value.is_floating_point() else value.dtype == torch.int32
    zs, final = run(pop, inputs(model))
    assert zs.shape == (STEPS, BATCH, N) and zs.dtype == dtype
    assert type(final) is pop.State and all(a.dtype == b.dtype and a.shape == b.shape for a, b in zip(final, state))
    if pop.spiking:
        assert ((zs == 0) | (zs == 1)).all() and 0 < zs.mean() < 0.5, "fires now and then, with binary spikes"
    with torch.no_grad():
        z, one = pop.step(inputs(model, 1)[0].to(dtype))
        forward, _ = pop(inputs(model).to(dtype))
    assert z.shape == (BATCH, N) and type(one) is pop.State
    assert torch.equal(forward, zs), "forward (a registered sequence kernel, if any) equals the step loop"


@pytest.mark.parametrize("name", NAMES)
def test_float32_agrees_with_float64(name):
    model = MODELS[name]
    xs = inputs(model, steps=15)
    pop = model.make(torch.float64)
    z64, s64 = run(pop, xs)
    z32, s32 = run(model.make(torch.float32), xs)
    if pop.spiking:
        assert torch.equal(z32.double(), z64)
    for a, b in zip((z32,) + tuple(s32), (z64,) + tuple(s64)):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-4, atol=1e-4 * (1 + b.abs().max().item()))


@pytest.mark.parametrize("name", NAMES)
def test_state_round_trips_through_a_checkpoint(name):
    """The run state and the module's state dict through the snapshot format: a fresh population
    loaded from them continues exactly as the original."""
    model = MODELS[name]
    pop = model.make(torch.float64)
    xs = inputs(model)
    whole, end = run(pop, xs)
    first, middle = run(pop, xs[:17])
    saved = decode(encode({"state": middle, "module": pop.state_dict()}))
    other = model.make(torch.float64)
    with torch.no_grad():
        for value in other.state_dict().values():
            if value.is_floating_point():
                value.add_(1.0)  # the checkpoint must restore what differs
    other.load_state_dict(saved["module"])
    rest, final = run(other, xs[17:], other.State(*saved["state"]))
    assert torch.equal(torch.cat([first, rest]), whole)
    assert same(final, end)


def step_function(pop, state, slope, spikes_only=False):
    """``(x, float state fields) -> outputs`` of one step with a smooth spike function."""
    fields = [k for k, v in state._asdict().items() if v.is_floating_point()]

    def f(x, *values):
        st = state._replace(**dict(zip(fields, values)))
        z, new = type(pop).step_fn(x, st, pop.params, pop.dt, smooth(slope))
        if spikes_only:
            return z
        return (z,) + tuple(getattr(new, k) for k in fields)
    return f, [getattr(state, k) for k in fields]


def threshold_inputs(f, values, scale, targets):
    """Inputs that bring each neuron's smooth spike output to ``targets`` (bisection: the output
    grows with the input)."""
    low, high = torch.full_like(targets, -1000.0 * scale), torch.full_like(targets, 1000.0 * scale)
    for _ in range(80):
        mid = (low + high) / 2
        above = f(mid, *values) >= targets
        low, high = torch.where(above, low, mid), torch.where(above, mid, high)
    return (low + high) / 2


@pytest.mark.parametrize("name", NAMES)
def test_gradients_against_finite_differences(name):
    """Of the spikes near threshold, and of the spikes and the new state at rest, with respect to
    the input and every float state field."""
    model = MODELS[name]
    if model.gradient is not None:
        pytest.skip(model.gradient)
    pop = model.make(torch.float64)
    x = 0.2 * inputs(model, steps=1, batch=2, seed=3)[0]
    checks = [(model.rest(pop, 2), x, False)]
    if pop.spiking:
        state = model.rest(pop, 2) if model.near is None else model.near(pop, 2)
        if model.near is None:
            f, values = step_function(pop, state, model.slope, spikes_only=True)
            targets = torch.linspace(0.1, 0.9, 2 * N, dtype=torch.float64).reshape(2, N)
            with torch.no_grad():
                x = threshold_inputs(f, values, model.scale, targets)
        checks.append((state, x, True))
    for state, x, spikes_only in checks:
        f, values = step_function(pop, state, model.slope, spikes_only)
        args = [x.clone().requires_grad_()] + [v.clone().requires_grad_() for v in values]
        if pop.spiking:
            with torch.no_grad():
                z = f(*args) if spikes_only else f(*args)[0]
            if spikes_only:
                assert ((z > 0.05) & (z < 0.95)).float().mean() > 0.5, "neurons near threshold"
            else:
                assert (z < 1e-9).all(), "every neuron far below threshold"
        assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_samples_of_a_batch_are_independent(name):
    model = MODELS[name]
    pop = model.make(torch.float64)
    xs = inputs(model)
    zs, final = run(pop, xs)
    for b in range(BATCH):
        z1, s1 = run(pop, xs[:, b:b + 1])
        assert torch.equal(z1[:, 0], zs[:, b])
        assert all(torch.equal(a[0], c[b]) for a, c in zip(s1, final))


@pytest.mark.parametrize("name", NAMES)
def test_runs_are_deterministic(name):
    model = MODELS[name]
    results = [run(model.make(torch.float64), inputs(model)) for _ in range(2)]
    assert torch.equal(results[0][0], results[1][0]) and same(results[0][1], results[1][1])


@pytest.mark.parametrize("name", NAMES)
def test_bad_parameters_are_refused_when_built(name):
    model = MODELS[name]
    pop = model.make(torch.float64)
    params = pop.params
    cls = type(params)
    for kwargs, message in model.bad:
        with pytest.raises(NeurosimError, match=message):
            make_with(model, kwargs)
    field = cls.per_neuron[0]
    with pytest.raises(NeurosimError, match=f"parameter {field} has {N + 1} values"):
        type(pop)(N, dataclasses.replace(params, **{field: torch.ones(N + 1)}), dt=pop.dt)
    with pytest.raises(NeurosimError, match="finite"):
        cls(**{field: torch.tensor([1.0, float("inf")])})
    with pytest.raises(NeurosimError, match="unknown"):
        type(pop)(N, no_such_parameter=1.0)
    with pytest.raises(NeurosimError):
        type(pop)(0)


def make_with(model: Model, kwargs: dict):
    """The model's population with ``kwargs`` overriding its parameters."""
    pop = model.make(torch.float64)
    if "cell_type" in kwargs:
        return type(pop)(N, **kwargs)
    fields = {f.name for f in dataclasses.fields(pop.params)}
    return type(pop)(N, dataclasses.replace(pop.params, **{k: v for k, v in kwargs.items() if k in fields}), dt=pop.dt)


def subclasses(cls) -> set:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def test_every_built_in_model_is_in_the_suite():
    """Every population class of neurosim (the models of neurosim.neurons and any subclass of
    Population defined in neurosim's modules) has an entry in MODELS."""
    import neurosim.neurons

    exported = {obj for obj in vars(neurosim.neurons).values()
                if isinstance(obj, type) and issubclass(obj, ns.Population) and obj is not ns.Population}
    defined = {cls for cls in subclasses(ns.Population) if cls.__module__.split(".")[0] == "neurosim"}
    covered = {type(model.make(torch.float64)) for model in MODELS.values()}
    assert len(exported) >= 6
    assert not (exported | defined) - covered, sorted(c.__name__ for c in (exported | defined) - covered)
