"""Per-neuron parameters for every neuron model, and their checks when a population is built.

A population with one value per neuron must compute, neuron for neuron, what populations with
those values as numbers compute; a tensor of the wrong length or shape, a NaN, or a tensor where
a field takes one value, is refused at construction with a NeurosimError naming the field.
"""
import pytest
import torch

from neurosim import NeurosimError
from neurosim.neurons import DSR, LI, LIF, ALIF, AdaptiveThresholdLIF, Izhikevich

N = 4

#: model, per-neuron values (one list per field), fixed keyword arguments, input scale
CASES = {
    "lif": (LIF, dict(tau_mem=[5.0, 10.0, 20.0, 40.0], v_leak=[0.0, 0.1, -0.1, 0.2], v_th=[0.8, 1.0, 1.2, 0.9],
                      v_reset=[0.0, -0.2, 0.1, 0.0], tau_ref=[0.0, 2.0, 3.0, 5.0], tau_syn_exc=[2.0, 5.0, 5.0, 8.0],
                      tau_syn_inh=[4.0, 10.0, 6.0, 12.0]), dict(reset="zero"), 1.0),
    "lif_euler": (LIF, dict(tau_mem=[5.0, 10.0, 20.0, 40.0], v_th=[0.8, 1.0, 1.2, 0.9], tau_ref=[0.0, 2.0, 3.0, 5.0]),
                  dict(method="euler", input_mode="current"), 3.0),
    "alif": (ALIF, dict(tau_mem=[10.0, 15.0, 20.0, 25.0], tau_adapt=[50.0, 100.0, 150.0, 300.0], a=[0.0, 0.2, 0.5, -0.3],
                        b=[0.1, 0.2, 0.3, 0.4], v_th=[0.8, 1.0, 1.2, 0.9], tau_ref=[0.0, 1.0, 2.0, 4.0]), {}, 3.0),
    "alif_euler": (ALIF, dict(tau_mem=[10.0, 15.0, 20.0, 25.0], tau_adapt=[50.0, 100.0, 150.0, 300.0],
                              a=[0.0, 0.2, 0.5, -0.3]), dict(method="euler", input_mode="jump"), 0.5),
    "adaptive_threshold": (AdaptiveThresholdLIF, dict(tau_mem=[10.0, 15.0, 20.0, 25.0], tau_adapt=[50.0, 100.0, 200.0, 400.0],
                                                      b=[0.0, 0.1, 0.3, 1.0], v_th=[0.8, 1.0, 1.2, 0.9],
                                                      v_reset=[0.0, -0.5, 0.0, 0.2], tau_ref=[0.0, 1.0, 2.0, 4.0]),
                           dict(input_mode="current"), 3.0),
    "izhikevich": (Izhikevich, dict(a=[0.02, 0.1, 0.02, 0.05], b=[0.2, 0.2, 0.25, 0.26], c=[-65.0, -55.0, -50.0, -65.0],
                                    d=[8.0, 4.0, 2.0, 2.0], v_peak=[30.0, 25.0, 30.0, 35.0]), {}, 20.0),
    "izhikevich_threshold_first": (Izhikevich, dict(a=[0.02, 0.1, 0.02, 0.05], d=[8.0, 4.0, 2.0, 2.0]),
                                   dict(schedule="threshold_first"), 20.0),
    "li": (LI, dict(tau_mem=[5.0, 10.0, 20.0, 40.0], v_leak=[0.0, 0.1, -0.1, 0.2]), {}, 1.0),
    "dsr": (DSR, dict(tau_mem=[0.5, 1.0, 2.0, 4.0], v_th=[0.2, 0.3, 0.4, 0.5], v_th_floor=[0.01, 0.0, 0.05, 0.1],
                      alpha=[0.2, 0.3, 0.5, 1.0]), {}, 20.0),
}


def inputs(steps, scale, seed=0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.rand(steps, 3, N, generator=g, dtype=torch.float64)


def run_steps(pop, xs):
    """Outputs and state fields after every step of ``pop.step`` over ``xs`` ``[T, B, n]``."""
    state, zs, states = None, [], []
    for x in xs:
        z, state = pop.step(x, state)
        zs.append(z)
        states.append(state)
    return torch.stack(zs), {f: torch.stack([getattr(s, f) for s in states]) for f in state._fields}


@pytest.mark.parametrize("name", list(CASES))
def test_per_neuron_population_equals_scalar_populations(name):
    """Every step's output and state of a population with per-neuron values equal (to 1e-12) those of
    one-neuron populations built with each neuron's values as numbers."""
    cls, values, fixed, scale = CASES[name]
    xs = inputs(300, scale)
    pop = cls(N, dt=0.5, dtype=torch.float64, **fixed,
              **{k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()})
    zs, states = run_steps(pop, xs)
    assert zs.abs().sum() > 0
    for i in range(N):
        single = cls(1, dt=0.5, dtype=torch.float64, **fixed, **{k: v[i] for k, v in values.items()})
        z1, s1 = run_steps(single, xs[:, :, i:i + 1])
        torch.testing.assert_close(zs[..., i:i + 1], z1, rtol=0, atol=1e-12)
        for field, trace in s1.items():
            torch.testing.assert_close(states[field][..., i:i + 1].double(), trace.double(), rtol=0, atol=1e-12)


def test_dsr_per_neuron_gradient_equals_scalar_populations():
    """DSR's spike-representation gradient with per-neuron tau, alpha and threshold: the input and
    threshold gradients of each neuron equal those of a one-neuron population with its values."""
    _, values, _, scale = CASES["dsr"]
    xs = inputs(40, scale, seed=1).requires_grad_()
    g = torch.randn(40, 3, N, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    pop = DSR(N, dt=0.05, dtype=torch.float64, **{k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()})
    out, _ = pop(xs)
    (out * g).sum().backward()
    assert pop.threshold.shape == (N,) and (pop.threshold.grad != 0).any()
    for i in range(N):
        x1 = xs.detach()[:, :, i:i + 1].clone().requires_grad_()
        single = DSR(1, dt=0.05, dtype=torch.float64, **{k: v[i] for k, v in values.items()})
        o1, _ = single(x1)
        (o1 * g[:, :, i:i + 1]).sum().backward()
        torch.testing.assert_close(out[..., i:i + 1], o1, rtol=0, atol=0)
        torch.testing.assert_close(xs.grad[..., i:i + 1], x1.grad, rtol=1e-12, atol=1e-15)
        torch.testing.assert_close(pop.threshold.grad[i], single.threshold.grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("cls, field", [(LIF, "tau_mem"), (LIF, "tau_ref"), (LIF, "tau_syn_inh"), (ALIF, "tau_adapt"),
                                        (ALIF, "a"), (AdaptiveThresholdLIF, "b"), (Izhikevich, "v_peak"),
                                        (LI, "v_leak"), (DSR, "alpha")])
def test_wrong_lengths_and_shapes_are_refused_at_construction(cls, field):
    kwargs = dict(tau_syn_exc=5.0) if field == "tau_syn_inh" else {}
    good = {"a": 0.1, "alpha": 0.5, "tau_ref": 1.0}.get(field, 2.0)
    with pytest.raises(NeurosimError, match=f"parameter {field} has 3 values for a population of 4 neurons"):
        cls(N, **kwargs, **{field: torch.full((3,), good)})
    with pytest.raises(NeurosimError, match=rf"{field} must be a number or a 1-d tensor .* shape \(2, 4\)"):
        cls(N, **kwargs, **{field: torch.full((2, N), good)})
    with pytest.raises(NeurosimError, match=f"{field} contains NaN"):
        cls(N, **kwargs, **{field: torch.tensor([good, good, float("nan"), good])})
    cls(N, **kwargs, **{field: [good] * N})  # a list of one value per neuron is taken


@pytest.mark.parametrize("make, match", [
    (lambda: LIF(N, method="rk4"), "unknown method 'rk4'"),
    (lambda: ALIF(N, method="midpoint"), "unknown method 'midpoint'"),
    (lambda: Izhikevich(N, schedule="net.m"), "unknown schedule 'net.m'"),
    (lambda: LIF(N, detach_reset=torch.tensor([True, False, True, True])),
     "detach_reset must be a single value for the whole population"),
    (lambda: LIF(N, tau_mem=torch.tensor([10.0, -1.0, 10.0, 10.0])), "tau_mem must be > 0"),
    (lambda: ALIF(N, tau_mem=[10.0, 10.0, 10.0, 10.0], a=[0.0, -1.0, 0.0, 0.0]), "a must be > -1"),
    (lambda: AdaptiveThresholdLIF(N, b=-0.5), "b must be >= 0"),
    (lambda: AdaptiveThresholdLIF(N, tau_adapt=float("inf")), "tau_adapt must be finite"),
    (lambda: DSR(N, alpha=torch.tensor([0.5, 0.5, 1.5, 0.5])), r"alpha must be in \(0, 1\]"),
    (lambda: LIF(N, v0=torch.zeros(5)), "parameter v0 has 5 values for a population of 4 neurons"),
    (lambda: Izhikevich(N, v0="rest"), "v0 must be a number or one value per neuron"),
    (lambda: LIF(N, tau_syn_inh=5.0), "tau_syn_inh needs tau_syn_exc"),
])
def test_bad_parameters_are_refused_at_construction(make, match):
    with pytest.raises(NeurosimError, match=match):
        make()


def test_set_params_checks_lengths_before_replacing():
    pop = ALIF(N, tau_mem=torch.full((N,), 15.0))
    params = pop.params
    with pytest.raises(NeurosimError, match="parameter tau_adapt has 2 values"):
        pop.set_params(type(params)(tau_adapt=torch.tensor([1.0, 2.0])))
    assert torch.equal(pop.params.tau_mem, params.tau_mem)  # the old record stays
