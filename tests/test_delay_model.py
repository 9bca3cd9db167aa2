"""The learnable-delay network (Hammouamri et al. 2024): its block, loss, training, and the lag task."""
import math

import numpy as np
import pytest
import torch

from neurosim import Chain, Delayed, Dense, NeurosimError
from neurosim.models.delays import (DelayTrainer, build_delay_net, delay_loss, evaluate, lif_parameters,
                                    padded_batches, predict)
from neurosim.continual.plugin import learnable_projections
from neurosim.projections import integer_delays, sigma_schedule
from neurosim.datasets.temporal_tasks import lag_patterns, lag_task

TAU = 1.005


# -- the block ---------------------------------------------------------------------------------

def test_batch_norm_statistics_over_time_and_batch_including_padding():
    torch.manual_seed(0)
    chain = Chain(Dense(5, 3, dtype=torch.float64), dropout=0.0)
    x = torch.rand(7, 4, 5, dtype=torch.float64)
    x[5:] = 0  # zero-padded steps count in the statistics
    y = chain(x)
    raw = chain.projection(x).reshape(-1, 3)  # all T * B rows
    mean, var = raw.mean(0), raw.var(0, unbiased=False)
    assert torch.allclose(y, ((raw - mean) / torch.sqrt(var + 1e-5)).view(7, 4, 3), atol=1e-12)
    # the running estimates start from the first batch's statistics, then move by momentum 0.1
    assert torch.allclose(chain.norm.running_mean, mean.detach(), atol=1e-15)
    assert torch.allclose(chain.norm.running_var, raw.var(0, unbiased=True).detach(), atol=1e-15)
    x2 = torch.rand(7, 4, 5, dtype=torch.float64)
    chain(x2)
    raw2 = chain.projection(x2).reshape(-1, 3).detach()
    assert torch.allclose(chain.norm.running_mean, 0.9 * mean.detach() + 0.1 * raw2.mean(0), atol=1e-15)
    assert chain.norm.momentum == 0.1
    chain.eval()
    rm, rv = chain.norm.running_mean, chain.norm.running_var
    assert torch.allclose(chain(x), ((chain.projection(x) - rm) / torch.sqrt(rv + 1e-5)), atol=1e-12)


def test_dropout_one_mask_per_sequence_and_none_in_eval():
    torch.manual_seed(1)
    n, p = 200, 0.4
    chain = Chain(Dense(n, n, weight=torch.eye(n)), dropout=p, batch_norm=False)
    x = torch.ones(6, 3, n)
    y = chain(x)
    assert torch.equal(y, y[:1].expand_as(y))  # constant over time
    assert torch.unique(y).tolist() == [0.0, pytest.approx(1 / (1 - p))]
    assert not torch.equal(y[0, 0], y[0, 1])  # a mask per sample
    assert abs((y == 0).float().mean().item() - p) < 0.06
    chain.eval()
    assert torch.equal(chain(x), x)


def test_chain_errors_and_what_plugins_see():
    with pytest.raises(NeurosimError, match="dropout"):
        Chain(Dense(2, 2), dropout=1.0)
    with pytest.raises(NeurosimError, match="Projection"):
        Chain(torch.nn.Linear(2, 2))
    chain = Chain(Delayed(3, 2, 4))
    with pytest.raises(NeurosimError, match="whole sequence"):
        chain(torch.zeros(5, 3))
    with pytest.raises(NeurosimError, match="last dimension 3"):
        chain(torch.zeros(5, 2, 4))
    net = build_delay_net(3, 2, (4,), max_delay=5)
    found = learnable_projections(net)
    assert set(found) == {"x_to_h1", "h1_to_out"} and found["x_to_h1"].weight is net.projections["x_to_h1"].projection.weight
    with integer_delays(net):
        assert all(m.rounded for m in net.modules() if isinstance(m, Delayed))


def paper_lif(I, tau=TAU, alpha=5.0):
    """SpikingJelly's LIF (decay_input=False, hard reset to 0, detached) with its ATan surrogate, per step."""

    class ATan(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return (x >= 0).to(x.dtype)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * alpha / 2 / (1 + (math.pi / 2 * alpha * x) ** 2)

    V, zs = torch.zeros_like(I[0]), []
    for t in range(I.shape[0]):
        V = V - V / tau + I[t]
        z = ATan.apply(V - 1.0)
        V = V * (1 - z.detach())
        zs.append(z)
    return torch.stack(zs)


@pytest.mark.parametrize("dt", [1.0, 10.0])
def test_lif_and_readout_follow_the_paper_update(dt):
    net = build_delay_net(4, 3, (6,), max_delay=3, dt=dt, dtype=torch.float64)
    assert math.exp(-dt / lif_parameters(dt).tau_mem) == pytest.approx(1 - 1 / TAU, rel=1e-14)
    g = torch.Generator().manual_seed(2)
    I = (torch.randn(30, 5, 6, generator=g, dtype=torch.float64) * 0.8 + 0.4).requires_grad_()
    z, _ = net.populations["h1"](I)  # the fused path
    I2 = I.detach().clone().requires_grad_()
    z_ref = paper_lif(I2)
    assert 0 < z.sum() < z.numel() and torch.equal(z, z_ref)
    w = torch.randn(z.shape, generator=g, dtype=torch.float64)
    (z * w).sum().backward()
    (z_ref * w).sum().backward()
    assert torch.allclose(I.grad, I2.grad, atol=1e-12)
    v, _ = net.populations["out"](I[..., :3].detach())
    V, ref = torch.zeros(5, 3, dtype=torch.float64), []
    for t in range(30):
        V = V - V / TAU + I[t, :, :3].detach()
        ref.append(V)
    assert torch.allclose(v, torch.stack(ref), atol=1e-12)


def test_loss_is_cross_entropy_of_summed_softmax():
    g = torch.Generator().manual_seed(3)
    v = torch.randn(9, 4, 5, generator=g, dtype=torch.float64) * 3
    y = torch.tensor([0, 4, 2, 2])
    e = np.exp(v.numpy() - v.numpy().max(-1, keepdims=True))
    logits = (e / e.sum(-1, keepdims=True)).sum(0)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    assert float(delay_loss(v, y)) == pytest.approx(-logp[np.arange(4), y.numpy()].mean(), rel=1e-12)
    assert torch.equal(predict(v), torch.from_numpy(logits.argmax(-1)))


def test_builder_modes_and_errors():
    for mode, kind in (("learnable", Delayed), ("random", Delayed), ("none", Dense)):
        net = build_delay_net(5, 2, (4, 3), max_delay=6, delays=mode, dropout=0.3)
        chains = [net.projections[n] for n in ("x_to_h1", "h1_to_h2", "h2_to_out")]
        assert all(isinstance(c.projection, kind) for c in chains)
        assert [c.dropout for c in chains] == [0.0, 0.3, 0.3]
        assert [c.norm is not None for c in chains] == [True, True, False]
        out = net.run(torch.rand(8, 2, 5)).outputs["out"]
        assert out.shape == (8, 2, 2)
    with pytest.raises(NeurosimError, match="delays"):
        build_delay_net(5, 2, delays="fixed")
    with pytest.raises(NeurosimError, match="tau"):
        lif_parameters(1.0, tau=1.0)


def test_trainer_schedules_and_parameter_groups():
    train, test, _ = lag_task(2, 3, 4, n_train=8, n_test=4, steps=10, seed=1)
    net = build_delay_net(3, 2, (4,), max_delay=7)
    trainer = DelayTrainer(net, 8, batch_size=4)
    weights = {id(c.projection.weight) for c in net.connections.values()}
    decayed, plain = trainer.opt.param_groups
    assert {id(p) for p in decayed["params"]} == weights and decayed["weight_decay"] == 1e-5
    assert plain["weight_decay"] == 0 and len(plain["params"]) == 2  # the batch-norm affine
    assert trainer.opt_pos.param_groups[0]["lr"] == 0.1
    assert trainer.opt.param_groups[0]["lr"] == pytest.approx(5e-3 / 25)
    logs = trainer.fit(train, test, epochs=3)
    assert [log.sigma for log in logs] == pytest.approx(sigma_schedule(3.0, 8)[:3])
    assert net.projections["x_to_h1"].projection.sigma == pytest.approx(sigma_schedule(3.0, 8)[3])
    assert trainer.opt_pos.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi * 3 / 8)))
    x, y = next(padded_batches(train, 4, 7, trainer.tail))
    assert x.shape[0] == 10 + 2 * 3 and trainer.tail == 6
    with pytest.raises(NeurosimError, match="channels"):
        trainer.evaluate(lag_task(2, 4, 4, n_train=2, n_test=2, steps=10)[1])


# -- the lag task ------------------------------------------------------------------------------

def test_lag_task_carries_class_only_in_timing():
    train, _, lags = lag_task(3, 5, 12, n_train=60, n_test=3, steps=20, jitter=1, seed=4)
    assert lags.shape == (3, 5) and all(len(set(r)) == 5 and (r % 3 == 0).all() for r in lags)
    x, y, _ = train.batch(np.arange(60))
    assert torch.equal(x.sum(0), torch.ones(60, 5))  # every channel once, whatever the class
    first = x.argmax(0).numpy()  # spike step per sample and channel
    rel = first - first.min(1, keepdims=True)
    ref = lags[y.numpy()] - lags[y.numpy()].min(1, keepdims=True)
    assert np.abs(rel - ref).max() <= 2  # jitter of +-1 on each
    noisy, _, _ = lag_task(3, 5, 12, n_train=60, n_test=3, steps=20, noise_rate=0.05, seed=4)
    assert noisy.counts().mean() == pytest.approx(5 + 0.05 * 5 * 20, rel=0.2)
    with pytest.raises(NeurosimError, match="max_lag"):
        lag_patterns(2, 8, 5)
    with pytest.raises(NeurosimError, match="steps"):
        lag_task(2, 3, 9, steps=9)


# -- training on the lag task --------------------------------------------------------------------

TASK = dict(n_classes=4, n_channels=8, max_lag=12, n_train=256, n_test=256, steps=32, seed=0)


def train_on_lags(delays: str, batch_norm: bool = True, hidden: int = 16, epochs: int = 30):
    torch.manual_seed(0)
    train, test, lags = lag_task(**TASK)
    net = build_delay_net(8, 4, (hidden,), max_delay=16, delays=delays, dropout=0.0, batch_norm=batch_norm)
    logs = DelayTrainer(net, epochs, batch_size=32).fit(train, test)
    return net, logs[-1].test_acc, test, lags


def test_learned_delays_solve_the_lag_task_and_dense_synapses_do_not(one_thread):
    _, learned, _, _ = train_on_lags("learnable")
    _, dense, _, _ = train_on_lags("none")
    assert learned >= 0.95
    assert dense <= 0.4 and learned - dense >= 0.3


def aligned(values: np.ndarray) -> int:
    """The most values within one step of a common value."""
    return max(int((np.abs(values - c) <= 1).sum()) for c in values)


def test_learned_integer_delays_recover_the_planted_lags(one_thread):
    """Without batch norm (which lets single input spikes through), hidden units become coincidence
    detectors. Hidden unit i *detects class k* when at least 90 % of its test spikes (rounded delays)
    come from class-k samples and it fires in at least 90 % of them. Its strong synapses (weight at
    least half its largest) should then satisfy d_ic + lag_kc = const within one step: the largest
    such group holds at least 2 of them and at least 60 % of them. Control: with the lags of the
    other classes in place of class k's, the groups are smaller."""
    net, _, test, lags = train_on_lags("learnable", batch_norm=False, hidden=32)
    proj = net.projections["x_to_h1"].projection
    d, w = proj.rounded_delays().numpy(), proj.weight.detach().numpy()
    net.eval()
    with torch.no_grad(), integer_delays(net):
        x, y = next(padded_batches(test, len(test), 16, 7))
        fired = net.run({"x": x}, outputs=["h1"]).outputs["h1"].sum(0).numpy()  # [B, hidden]
    y = y.numpy()
    detected, true_frac, other_frac = set(), [], []
    for i in range(fired.shape[1]):
        per_class = np.array([fired[y == k, i].sum() for k in range(4)])
        k = int(per_class.argmax())
        if per_class.sum() == 0 or per_class[k] < 0.9 * per_class.sum() or (fired[y == k, i] > 0).mean() < 0.9:
            continue
        strong = w[i] >= 0.5 * w[i].max()
        group = aligned(d[i, strong] + lags[k, strong])
        assert group >= 2 and group >= 0.6 * strong.sum(), (i, k, d[i, strong] + lags[k, strong])
        detected.add(k)
        true_frac.append(group / strong.sum())
        other_frac += [aligned(d[i, strong] + lags[j, strong]) / strong.sum() for j in range(4) if j != k]
    assert len(detected) >= 3
    assert np.mean(true_frac) >= 0.8 and np.mean(other_frac) <= np.mean(true_frac) - 0.3


def test_evaluate_uses_rounded_delays_and_restores_training_mode():
    train, test, _ = lag_task(2, 3, 4, n_train=8, n_test=8, steps=10, seed=2)
    net = build_delay_net(3, 2, (4,), max_delay=5, dropout=0.5)
    net.train()
    seen = []
    hook = net.projections["x_to_h1"].projection.register_forward_hook(lambda m, a, o: seen.append((m.rounded, m.training)))
    loss, acc = evaluate(net, test, 4)
    hook.remove()
    assert seen == [(True, False)] * 2 and net.training and 0 <= acc <= 1 and loss > 0
    assert not net.projections["x_to_h1"].projection.rounded
