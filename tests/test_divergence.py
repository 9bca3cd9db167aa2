"""The divergence guard stops a run on a non-finite loss, a runaway loss or a non-finite parameter, in
one line that says where; the run file keeps its last checkpoint and resumes. Plugins' health
figures go into the run file."""
import copy
import math

import numpy as np
import pytest
import torch

from neurosim.cli.main import EXIT_DIVERGED, main
from neurosim.continual.plugin import Plugin
from neurosim.continual.runner import DIVERGENCE, Continual, Diverged
from neurosim.errors import NeurosimError
from neurosim.runs.experiment import build, start
from neurosim.storage.store import RunStore

CONFIG = {"name": "guard", "model": {"name": "pmnist", "n_in": 64, "hidden": 8, "seed": 1},
          "scenario": {"name": "permuted", "data": "digits", "tasks": 2, "seed": 2},
          "training": {"steps": 2, "epochs": 1, "batch_size": 128, "lr": 0.1, "seed": 3, "checkpoint_every": 4},
          "plugins": []}


class Poison(Plugin):
    """At batch ``step`` (counted from 1): scale the loss (``loss_factor``) or set a weight (``weight``)."""

    name = "poison"

    def __init__(self, step: int, loss_factor: float | None = None, weight: float | None = None,
                 parameter: str = "projections.h1_to_h2.weight"):
        self.at, self.loss_factor, self.weight, self.parameter = step, loss_factor, weight, parameter

    def before_backward(self, runner, loss):
        if self.loss_factor is not None and runner.step + 1 == self.at:
            return loss * self.loss_factor
        return loss

    def after_update(self, runner):
        if self.weight is not None and runner.step + 1 == self.at:
            with torch.no_grad():
                runner.network.get_parameter(self.parameter).view(-1)[0] = self.weight


def runner_with(poison: Plugin | None, store=None, **training) -> Continual:
    config = copy.deepcopy(CONFIG)
    config["training"].update(training)
    runner = build(config, progress=False, store=store)
    if poison is not None:
        runner.plugins.append(poison)
    return runner


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_a_runaway_loss_stops_before_the_update_and_the_file_resumes(tmp_path):
    path = tmp_path / "run.h5"
    store = RunStore.create(path, CONFIG, n_tasks=2)
    runner = runner_with(Poison(17, loss_factor=1e4), store, divergence={"warmup": 3})
    with pytest.raises(Diverged) as stop:
        with store:
            runner.run()
    line = str(stop.value)
    assert "\n" not in line
    assert line.startswith("the run diverged at task 1, batch 6 (step 17): the loss ")
    assert f"times its running median" in line and "(limit 100 times, and at least 100 log 10 = 230.3)" in line
    assert line.endswith(f"; plugins acting on the update: poison; {path} keeps checkpoint 4")
    weights = {k: v.clone() for k, v in runner.network.state_dict().items()}
    with RunStore.open(path) as s:
        s.check()
        assert len(s.read_log()) == 16  # nothing of the diverged batch
        assert s.count("checkpoints") == 5
    with RunStore.open(path, "a") as store:  # resumes from checkpoint 4 and diverges at the same batch
        again = runner_with(Poison(17, loss_factor=1e4), store, divergence={"warmup": 3})
        with pytest.raises(Diverged, match=r"at task 1, batch 6 \(step 17\)"):
            again.run(resume=True)
    assert all(torch.equal(weights[k], v) for k, v in again.network.state_dict().items())


def test_the_rise_rule_waits_for_its_warm_up_and_can_be_switched_off():
    with pytest.raises(Diverged, match=r"batch 3 \(step 3\)"):
        runner_with(Poison(3, loss_factor=1e4), divergence={"warmup": 2}).run()
    runner_with(Poison(3, loss_factor=1e4)).run()  # within the default warm-up of 10 batches
    runner_with(Poison(17, loss_factor=1e4), divergence=False).run()
    runner_with(Poison(17, loss_factor=50.0), divergence={"warmup": 3}).run()  # below the limit
    with pytest.raises(Diverged, match=r"limit 20 times"):
        runner_with(Poison(17, loss_factor=50.0), divergence={"factor": 20, "warmup": 3}).run()


class Quiet(Plugin):
    """Scales the loss by ``scale`` on every batch but ``at`` (counted from 1), where it scales it by ``then``:
    a task whose loss has fallen near zero, then one batch that a plain relative rule would call a runaway."""

    name = "quiet"

    def __init__(self, at: int, scale: float, then: float):
        self.at, self.scale, self.then = at, scale, then

    def before_backward(self, runner, loss):
        return loss * (self.then if runner.step + 1 == self.at else self.scale)


def test_a_rise_below_factor_times_a_uniform_guess_is_not_a_runaway():
    """Ten classes: the floor is 100 log 10 = 230. Losses near 0.002, then one batch near 2.3 (a thousand
    times the median) trains on; one near 460 stops the run."""
    runner = runner_with(Quiet(11, scale=1e-3, then=1.0))
    runner.run()
    assert runner.step == 2 * math.ceil(len(runner.scenario.tasks[0].train.y) / 128)
    with pytest.raises(Diverged, match=r"batch 11 \(step 11\): the loss 4\d\d is .* times its running median .* at least 100 log 10 = 230.3\)"):
        runner_with(Quiet(11, scale=1e-3, then=200.0)).run()


def test_a_non_finite_loss_always_stops():
    with pytest.raises(Diverged, match=r"^the run diverged at task 0, batch 2 \(step 2\): the loss became nan"):
        runner_with(Poison(2, loss_factor=float("nan")), divergence=False).run()


@pytest.mark.parametrize("value,kind", [(float("inf"), "infinite"), (float("nan"), "NaN")])
@pytest.mark.parametrize("parameter,owner", [("projections.h1_to_h2.weight", "the weight of projection h1_to_h2"),
                                             ("populations.h2.threshold", "the threshold of population h2")])
def test_a_non_finite_parameter_names_its_projection_or_population(value, kind, parameter, owner):
    with pytest.raises(Diverged) as stop:
        runner_with(Poison(6, weight=value, parameter=parameter)).run()
    assert str(stop.value) == (f"the run diverged at task 0, batch 6 (step 6): the update made {owner} "
                               f"{kind}; plugins acting on the update: poison")


def test_a_failed_start_before_any_checkpoint_leaves_no_file(tmp_path):
    config = copy.deepcopy(CONFIG)
    config["plugins"] = []
    path = tmp_path / "run.h5"
    original = Continual.train_batch

    def nan_loss(self, task, idx):
        if self.step == 1:
            raise Diverged("the run diverged at task 0, batch 1 (step 2): the loss became nan")
        return original(self, task, idx)

    Continual.train_batch = nan_loss
    try:
        with pytest.raises(Diverged):
            start(config, path, progress=False)
    finally:
        Continual.train_batch = original
    assert not path.exists()


def test_divergence_settings_are_checked():
    for bad, message in (({"factor": 1}, "factor must be a number > 1"), ({"window": 0}, "window must be an integer"),
                         ({"warmup": -1}, "warmup must be an integer >= 0"), ("on", "must be a table")):
        with pytest.raises(NeurosimError, match=message):
            Continual._check_divergence(bad)
    assert Continual._check_divergence(None) == DIVERGENCE and Continual._check_divergence(False) is None


def test_health_figures_are_logged_and_match_the_checkpoint(tmp_path):
    config = copy.deepcopy(CONFIG)
    config["plugins"] = [{"name": "hlop", "rows_per_task": [[4, 4, 4]] * 2, "rates": 1.0},
                         {"name": "ewc", "lam": 10.0, "samples": 16}]
    config["training"]["health_every"] = 5
    path = tmp_path / "health.h5"
    start(config, path, progress=False)
    with RunStore.open(path) as s:
        health = s.read_health()
        state = s.latest_checkpoint()[1]
        step = s.read_log()["step"][-1]
    layers = ("x_to_h1", "h1_to_h2", "h2_to_out")
    assert set(health) == {f"hlop.{p}.{f}" for p in layers for f in ("orthonormality_error", "projection_norm")} \
        | {"ewc.penalty_share"}
    for name, rows in health.items():
        assert np.all(np.isfinite(rows["value"])), name
        assert list(rows["step"]) == sorted(rows["step"]) and rows["step"][-1] == step
    assert len(health["ewc.penalty_share"]) == 22 // 5 + 2  # every 5 batches and at each task's end
    share = health["ewc.penalty_share"]["value"]
    assert share[0] == 0 and 0 < share.max() < 1  # none before the first Fisher; during task 1 part of the loss
    for p in layers:  # the last figures against the merged block stored in the final checkpoint
        old = state["plugins"][0]["subspaces"][p]["old"].double()
        s2 = torch.linalg.svdvals(old) ** 2
        assert math.isclose(health[f"hlop.{p}.orthonormality_error"]["value"][-1], (1 - s2).abs().max().item(),
                            rel_tol=1e-9, abs_tol=1e-12)
        filter_norm = torch.linalg.matrix_norm(torch.eye(old.shape[1], dtype=old.dtype) - old.t() @ old, ord=2)
        assert math.isclose(health[f"hlop.{p}.projection_norm"]["value"][-1], filter_norm.item(), rel_tol=1e-6, abs_tol=1e-12)
        assert health[f"hlop.{p}.projection_norm"]["value"][-1] <= 1 + 1e-5


POISON_FILE = """
from neurosim import Plugin


class NanLoss(Plugin):
    name = "nan_loss"

    def __init__(self, step):
        self.at = step

    def before_backward(self, runner, loss):
        return loss * float("nan") if runner.step + 1 == self.at else loss
"""


def test_the_command_line_exits_3_keeps_the_file_and_resumes_to_the_same_stop(tmp_path, capsys):
    """A NaN loss in task 1 under `neurosim run`: one line naming where and which plugins act on the
    update, exit status 3, a file that checks and shows its health in `inspect`, and `neurosim resume`
    from its last checkpoint stops at the same batch."""
    (tmp_path / "poison.py").write_text(POISON_FILE)
    (tmp_path / "exp.toml").write_text(
        '[model]\nname = "pmnist"\nn_in = 64\nhidden = 8\nseed = 1\n'
        '[scenario]\nname = "permuted"\ndata = "digits"\ntasks = 2\nseed = 2\n'
        '[training]\nsteps = 2\nepochs = 1\nbatch_size = 128\nlr = 0.1\nseed = 3\ncheckpoint_every = 4\n'
        'health_every = 2\n'
        '[[plugins]]\nname = "ewc"\nlam = 10.0\nsamples = 16\n'
        '[[plugins]]\nname = "poison.py:NanLoss"\nstep = 17\n')
    out = tmp_path / "run.h5"
    first = "the run diverged at task 1, batch 6 (step 17): the loss became nan; plugins acting on the update: " \
            f"ewc, nan_loss; {out} keeps checkpoint 4"
    assert main(["run", str(tmp_path / "exp.toml"), "--store", str(out), "--quiet"]) == EXIT_DIVERGED
    assert capsys.readouterr().err == f"neurosim: error: {first}\n"
    with RunStore.open(out) as s:
        s.check()
        assert len(s.read_log()) == 16 and s.count("checkpoints") == 5
        log = s.read_log()
    assert main(["inspect", str(out)]) == 0
    assert "latest: ewc.penalty_share " in capsys.readouterr().out
    assert main(["resume", str(out), "--quiet"]) == EXIT_DIVERGED
    assert capsys.readouterr().err == f"neurosim: error: {first}\n"
    with RunStore.open(out) as s:
        s.check()
        again = s.read_log()
    assert all(np.array_equal(log[k], again[k]) for k in log.dtype.names)  # the batches since checkpoint 4 agree
