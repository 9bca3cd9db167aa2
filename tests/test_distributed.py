"""Data-parallel continual training on 2 gloo processes equals the single-process run.

Every built-in plugin that trains (the loggers only write what rank 0 reports), with BPTT and with the three-factor learner (and e-prop on a recurrent
LIF layer): the accuracy matrix is equal and the parameters within 1e-12 relative (1e-5 with e-prop),
in float64 on a tiny network and scenario, and HLOP's subspaces are equal bit for bit (every rank learns them from
the global batch's activity rows, gathered in one-process order). Global batches of 25 split 12 / 13 (and the last, 21, as 10 / 11), so
the weighting of unequal shards is exercised; replay adds 8 drawn samples to each global batch (also on a
task-incremental split, where each replayed sample's task shards with it and masks its scores); one
case encodes with random rate spikes, drawn for the global batch on every rank. A data-parallel
run interrupted two steps after a checkpoint resumes, on 2 processes, to the uninterrupted data-parallel run
bit for bit, from a checkpoint that holds both ranks' RNG states. Tensors gathered from uneven
shards, and the activity rows of convolutional, delayed and dense projections, equal one process's.
"""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import neurosim as ns
from neurosim.continual import distributed
from neurosim.continual.learners import EPropLearner, ThreeFactorLearner
from neurosim.continual.plugin import create_plugin
from neurosim.continual.runner import Continual
from neurosim.continual.scenarios import permuted, split
from neurosim.datasets.images import generated
from neurosim.errors import NeurosimError
from neurosim.models import pmnist
from neurosim.plugins.hlop import HLOP
from neurosim.storage.store import RunStore

N_IN, N_OUT = 12, 4

PLUGINS = {
    "none": [],
    "hlop_gradient": [{"name": "hlop", "rows_per_task": 3, "rates": 1.0, "form": "gradient"}],
    "hlop_input": [{"name": "hlop", "rows_per_task": 3, "form": "input"}],
    "hlop_energy": [{"name": "hlop", "energy": 0.9, "rates": 1.0}],
    "gpm": [{"name": "gpm", "threshold": 0.9, "samples": 30, "rates": 1.0}],
    "ewc": [{"name": "ewc", "lam": 50.0, "samples": 15}],
    "ewc_online": [{"name": "ewc", "lam": 50.0, "samples": 15, "online": True, "gamma": 0.9}],
    "si": [{"name": "si", "c": 1.0, "xi": 0.1}],
    "metaplasticity": [{"name": "metaplasticity", "m": 1.0}],
    "replay": [{"name": "replay", "memory_size": 30, "batch_size": 8, "seed": 1}],
}
CASES = [(p, "bptt", "current") for p in PLUGINS] \
    + [(p, "three_factor", "current") for p in PLUGINS if p != "hlop_input"] \
    + [("ewc", "bptt", "rate"), ("none", "eprop", "current"), ("hlop_gradient", "eprop", "current")] \
    + [("replay", learning, "current", "task") for learning in ("bptt", "three_factor")]


def recurrent_net():
    g = torch.Generator().manual_seed(0)
    net = ns.Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("h", ns.LIF(16, tau_mem=5.0, dtype=torch.float64))
    net.add("o", ns.LI(N_OUT, tau_mem=5.0, dtype=torch.float64))
    net.connect("x", "h", ns.Dense(N_IN, 16, scale=3.0, generator=g, dtype=torch.float64))
    net.connect("h", "h", ns.Dense(16, 16, scale=0.3, generator=g, dtype=torch.float64))
    net.connect("h", "o", ns.Dense(16, N_OUT, scale=0.3, generator=g, dtype=torch.float64))
    return net


def runner(plugins: str, learning: str, encoding: str, split_mode: str | None = None, store=None) -> Continual:
    """Two permuted tasks, or (``split_mode``) two split tasks of two classes each."""
    data = generated(n_classes=N_OUT, n_features=N_IN, n_train=96, n_test=40, seed=2)
    scenario = permuted(data, 2, seed=1) if split_mode is None else split(data, 2, mode=split_mode)
    if learning == "eprop":
        net, readout, learner = recurrent_net(), "mean", EPropLearner()
    else:
        net, readout = pmnist.build_pmnist(n_in=N_IN, hidden=16, n_out=N_OUT, dtype=torch.float64), pmnist.readout
        learner = ThreeFactorLearner() if learning == "three_factor" else None
    made = [create_plugin(s["name"], **{k: v for k, v in s.items() if k != "name"}) for s in PLUGINS[plugins]]
    return Continual(net, scenario, made, steps=10, encoding=encoding, readout=readout, epochs=2,
                     batch_size=25, lr=1.0, seed=3, progress=False, learning=learner, store=store,
                     checkpoint_every=3)


def train(cases) -> list:
    """Each case's accuracy matrix, final parameters and plugins' states."""
    out = []
    for case in cases:
        r = runner(*case)
        out.append((r.run().R, {k: v.detach().clone() for k, v in r.network.state_dict().items()},
                    [p.state_dict() for p in r.plugins]))
    return out


def test_two_processes_equal_one_for_every_plugin_and_learner():
    single = train(CASES)
    parallel = distributed.launch(train, 2, CASES)
    for case, (R1, p1, s1), (R2, p2, s2) in zip(CASES, single, parallel):
        assert np.array_equal(R1, R2), case
        # the gradient average sums each rank's weighted mean, not one mean: float64 sums in another order
        # (measured at most 1.5e-15 relative; 6.5e-8 for e-prop, whose recurrent layer amplifies them)
        tol = 1e-5 if case[1] == "eprop" else 1e-12
        for k in p1:
            scale = max(float(p1[k].abs().max()), 1e-12)
            assert float((p1[k] - p2[k]).abs().max()) <= tol * scale, (case, k)
        if case[0].startswith("hlop"):  # every rank learns from the gathered global batch: the same subspace
            for name, sub in s1[0]["subspaces"].items():
                assert sub["old"].shape[0] > 0 and sub["counts"] == s2[0]["subspaces"][name]["counts"], (case, name)
                for key in ("old", "new", "momentum"):
                    assert torch.equal(sub[key], s2[0]["subspaces"][name][key]), (case, name, key)
    # training moved the readout weights, and every plugin changed what each learner learnt (but online
    # EWC, which equals EWC while one task is consolidated)
    for (R, p, _), case in zip(single, CASES):
        start = runner(*case).network.state_dict()
        assert max(float((p[k] - start[k]).abs().max()) for k in p if k.endswith("out.weight")
                   or k.endswith("h_to_o.weight")) > 0.05, case
    for learner, name in (("bptt", "x_to_h1"), ("three_factor", "h2_to_out")):
        found = [p[f"projections.{name}.weight"] for (R, p, _), case in zip(single, CASES)
                 if case[1:] == (learner, "current") and case[0] != "ewc_online"]
        assert len({round(float((w ** 2).sum()), 12) for w in found}) == len(found), learner


class Stop(Exception):
    pass


def stopping(r: Continual, after: int) -> Continual:
    """``r``, raising :class:`Stop` once ``after`` optimiser steps are done."""
    step = r.train_batch

    def train_batch(task, idx):
        if r.step == after:
            raise Stop
        return step(task, idx)

    r.train_batch = train_batch
    return r


def interrupted_then_resumed(folder: str):
    case = ("hlop_gradient", "bptt", "rate")
    whole = f"{folder}/whole.h5"
    part = f"{folder}/part.h5"

    def store(path):
        if distributed.rank() > 0:
            return None
        return RunStore.create(path, {"case": list(case)}, n_tasks=2)

    s = store(whole)
    R = runner(*case, store=s).run().R
    if s:
        s.close()
    s = store(part)
    try:
        stopping(runner(*case, store=s), 8).run()
    except Stop:
        pass
    if s:
        s.close()
    torch.manual_seed(1234)  # the resumed run must take every random state from the checkpoint
    s = RunStore.open(part, "a") if distributed.rank() == 0 else None
    R2 = runner(*case, store=s).run(resume=True).R
    if s:
        s.close()
    return R, R2


def test_resume_on_two_processes_is_bit_identical(tmp_path):
    R, R2 = distributed.launch(interrupted_then_resumed, 2, str(tmp_path))
    assert np.array_equal(R, R2)
    with RunStore.open(tmp_path / "whole.h5") as a, RunStore.open(tmp_path / "part.h5") as b:
        assert np.array_equal(a.read_log()["loss"], b.read_log()["loss"])
        _, sa = a.latest_checkpoint()
        _, sb = b.latest_checkpoint()
        assert len(sb["rng"]["ranks"]) == 2
        for k in sa["network"]:
            assert torch.equal(sa["network"][k], sb["network"][k]), k
        first = b.checkpoint(0)
        assert first["cursor"]["step"] == 3
    with RunStore.open(tmp_path / "part.h5", "a") as s:
        with pytest.raises(NeurosimError, match="written by 2 process"):
            runner("hlop_gradient", "bptt", "rate", store=s).run(resume=True)


def check_small_batch():
    r = runner("none", "bptt", "current")
    r.batch_size = 95  # the last batch of 96 samples has one sample for two processes
    r.run()


def test_refusals():
    with pytest.raises(NeurosimError, match="fewer than the 2 processes"):
        distributed.launch(check_small_batch, 2)
    with pytest.raises(NeurosimError, match="nproc must be a positive integer"):
        distributed.launch(check_small_batch, 0)


def global_batch() -> dict:
    """On a global batch of 5 samples (each rank holding its shard): tensors of three dtypes gathered
    by gather_shards, and the activity rows HLOP learns from (gathered from every rank) of a
    convolution, a delayed and a dense projection, per step and as rates."""
    g = torch.Generator().manual_seed(0)
    ints = torch.arange(5 * 2 * 3).reshape(5, 2, 3)
    floats = torch.rand(5, 4, generator=g, dtype=torch.float64)
    mine = distributed.shard(5)
    out = {"gathered": distributed.gather_shards([ints[mine], floats[mine], floats[mine, 0] > 0.5], 5)}
    x = 3 * torch.rand(6, 5, 36, generator=g, dtype=torch.float64)
    for rates in (None, 2.0):
        torch.manual_seed(3)
        net = ns.Network(dt=1.0)
        net.add_input("x", 36)
        net.add("h", ns.LIF(4 * 36, tau_mem=5.0, v_th=0.3, dtype=torch.float64))
        net.add("d", ns.LIF(5, tau_mem=5.0, v_th=0.3, dtype=torch.float64))
        net.add("o", ns.LI(3, dtype=torch.float64))
        net.connect("x", "h", ns.Conv2d((1, 6, 6), 4, 3, padding=1, dtype=torch.float64))
        net.connect("h", "d", ns.Delayed(4 * 36, 5, 3, delays="random", scale=3.0, dtype=torch.float64))
        net.connect("d", "o", ns.Dense(5, 3, dtype=torch.float64))
        hlop = HLOP(rows_per_task=1, rates=rates, delay_samples=2)
        runner = SimpleNamespace(network=net, step=3, global_batch=5)
        hlop.before_training(runner)
        hlop.before_batch(runner)
        net.run(x[:, mine])
        out[rates] = hlop._captured_batch(runner)
    return out


def test_gathered_shards_and_activity_rows_equal_one_process():
    one, two = global_batch(), distributed.launch(global_batch, 2)
    for a, b in zip(one["gathered"], two["gathered"]):
        assert a.dtype == b.dtype and torch.equal(a, b)
    # rows per sample: (time steps or sampled neurons of the delayed projection) x (convolution's locations)
    for rates, steps in ((None, 6), (2.0, 1)):
        for name, per_step, locations in (("x_to_h", 1, 36), ("h_to_d", 2, 1), ("d_to_o", 1, 1)):
            x, blocks = one[rates][name], steps * per_step
            assert x.shape[0] == blocks * 5 * locations and x.abs().sum() > 0, (rates, name)
            assert torch.equal(x, two[rates][name]), (rates, name)
            if blocks > 1:  # each rank's rows one after the other would be in another order
                v = x.reshape(blocks, 5, locations, x.shape[1])
                assert not torch.equal(x, torch.cat([v[:, :2].reshape(x.shape[0] * 2 // 5, -1),
                                                     v[:, 2:].reshape(x.shape[0] * 3 // 5, -1)])), (rates, name)


def test_single_process_helpers_are_identities():
    t = torch.arange(3.0)
    assert distributed.all_reduce(t) is t and torch.equal(t, torch.arange(3.0))
    assert distributed.gather_shards([t], 3)[0] is t
    assert (distributed.rank(), distributed.world_size(), distributed.shard(7)) == (0, 1, slice(0, 7))
    assert distributed.broadcast_object({"a": 1}) == {"a": 1} and distributed.all_gather_object(5) == [5]


def test_command_line_process_count_is_checked(tmp_path, capsys, monkeypatch):
    from neurosim.cli.main import main

    exp = tmp_path / "exp.toml"
    exp.write_text('[model]\nname = "pmnist"\nn_in = 64\nhidden = 8\n[scenario]\ntasks = 1\n[training]\nsteps = 2\n')
    assert main(["run", str(exp), "--nproc", "0", "--quiet"]) == 2
    assert "nproc must be a positive integer, got 0" in capsys.readouterr().err
    assert main(["run", "--nproc", "2", "--quiet"]) == 2  # the built-in experiment is not an experiment file
    assert "--nproc trains an experiment file" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "1")
    assert main(["run", str(exp), "--nproc", "2", "--quiet"]) == 2
    assert "--nproc and torchrun both start processes" in capsys.readouterr().err
    assert not (tmp_path / "exp.h5").exists()
