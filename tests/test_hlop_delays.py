"""HLOP on delayed projections: it learns from the activity as delivered through each synapse's delay."""
import pytest
import torch

from neurosim import LI, LIF, Delayed, Dense, Network, NeurosimError
from neurosim.continual.runner import Continual
from neurosim.plugins.hlop import HLOP
from neurosim.plugins.orthogonal import DelayedRows, layout as rows_layout
from neurosim.continual.scenarios import Scenario

from test_hlop import AfterTask, subspace_tasks


pytestmark = pytest.mark.usefixtures("one_thread")


def test_delivered_sequence_is_each_sampled_neurons_shifted_input():
    g = torch.Generator().manual_seed(0)
    proj = Delayed(7, 5, 4, delays="random", generator=g)
    layout = rows_layout(proj, delay_samples=3)
    layout.offset = 4  # neurons 12, 13, 14 mod 5 = 2, 3, 4
    x = torch.rand(9, 2, 7, generator=g)
    seq = layout.sequence(x)
    assert seq.shape == (9, 3 * 2, 7)
    d = proj.rounded_delays()
    for r, i in enumerate([2, 3, 4]):
        for b in range(2):
            for j in range(7):
                k = int(d[i, j])
                expected = torch.cat([torch.zeros(k), x[: 9 - k, b, j]])
                assert torch.equal(seq[:, r * 2 + b, j], expected)


def score_change(delivered: bool, monkeypatch) -> tuple[float, float]:
    """Task B's training moves the scores on task A's inputs by this much, with HLOP and without."""
    d, n_cls, D = 20, 4, 3
    a, b = subspace_tasks(d, n_cls, rank_a=2, seed=1)
    delays = torch.randint(0, D, (1, d), generator=torch.Generator().manual_seed(0)).expand(n_cls, d)
    if not delivered:  # learn from the presynaptic activity as sent, ignoring the delays
        monkeypatch.setattr(DelayedRows, "sequence", lambda self, x: x)

    def make_net():
        torch.manual_seed(0)
        net = Network(dt=1.0)
        net.add_input("x", d)
        net.add("o", LI(n_cls, tau_mem=5.0))
        net.connect("x", "o", Delayed(d, n_cls, D, delays=delays))
        return net

    kw = dict(steps=8, epochs=5, batch_size=16, lr=0.2, progress=False)
    x_a = torch.as_tensor(a.test.x)
    rec = AfterTask(x_a)
    hlop = HLOP(rows_per_task=[8, 0], lr_hebb=0.2, form="gradient")
    result = Continual(make_net(), Scenario("ab", [a, b], d, n_cls), [hlop, rec], **kw).run()
    assert result.R[0, 0] > 0.5 and result.R[1, 1] > 0.6

    base_net = make_net()
    base_net.load_state_dict(rec.states[0])
    base = AfterTask(x_a)
    Continual(base_net, Scenario("b", [b], d, n_cls), [base], **kw).run()
    return (rec.scores[1] - rec.scores[0]).norm().item(), (base.scores[0] - rec.scores[0]).norm().item()


def test_training_on_b_leaves_delayed_outputs_on_a_unchanged(monkeypatch):
    """Delays 0-2 per input channel: while the inputs arrive, each step delivers a masked copy of task A's
    vector, outside A's own subspace. Learning from the delivered activity, HLOP keeps task B's effect on
    the scores of A's inputs under 3 % of what it is without HLOP; learning from the activity as sent
    leaves the masked copies unprotected and does at least 5 times worse."""
    with_hlop, without = score_change(True, monkeypatch)
    assert without > 0.1
    assert with_hlop < 0.03 * without, (with_hlop, without)
    undelayed, _ = score_change(False, monkeypatch)
    assert undelayed > 5 * with_hlop, (undelayed, with_hlop)


def test_positions_freeze_after_the_first_task_and_input_form_is_refused():
    net = Network(dt=1.0)
    net.add_input("x", 6)
    net.add("h", LIF(5))
    net.add("o", LI(3))
    net.connect("x", "h", Delayed(6, 5, 4))
    net.connect("h", "o", Dense(5, 3))
    runner = type("Runner", (), {"network": net, "step": 0})()
    hlop = HLOP(rows_per_task=1, form="gradient")
    hlop.before_training(runner)
    hlop.before_task(runner, 0)
    assert net.projections["x_to_h"].positions.requires_grad
    hlop.after_task(runner, 0)
    hlop.before_task(runner, 1)
    trained = {n for n, p in net.named_parameters() if p.requires_grad}
    assert trained == {"projections.x_to_h.weight", "projections.h_to_o.weight"}
    with pytest.raises(NeurosimError, match="form='gradient'"):
        HLOP(rows_per_task=1, form="input").before_training(runner)
    with pytest.raises(NeurosimError, match="delay_samples"):
        HLOP(rows_per_task=1, delay_samples=0)


def test_a_chain_is_protected_through_its_wrapped_projection():
    from neurosim.projections import Chain
    net = Network(dt=1.0)
    net.add_input("x", 6)
    net.add("h", LIF(5))
    net.add("o", LI(3))
    inner = Delayed(6, 5, 4)
    net.connect("x", "h", Chain(inner, dropout=0.2))
    net.connect("h", "o", Dense(5, 3))
    runner = type("Runner", (), {"network": net, "step": 0})()
    hlop = HLOP(rows_per_task=2, form="gradient")
    hlop.before_training(runner)
    assert hlop._targets["x_to_h"][0] is inner
    hlop.before_task(runner, 0)
    hlop.before_batch(runner)
    net.run(torch.rand(8, 3, 6))
    hlop.after_forward(runner, None)
    assert hlop.subspaces["x_to_h"].new.shape == (2, 6)
