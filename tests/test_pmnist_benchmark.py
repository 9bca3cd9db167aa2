"""benchmarks/pmnist.py: one run file per method and seed, skipped when finished, resumed to the same
numbers when stopped, refused when written with other settings, summarised by --report."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosim.continual.metrics import acc, bwt
from neurosim.continual.scenarios import permuted
from neurosim.datasets.images import generated, standardised
from neurosim.storage.store import RunStore

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench(monkeypatch, one_thread):
    """The benchmark module, on generated 784-feature data (two batches of 64 per task) instead of MNIST."""
    spec = importlib.util.spec_from_file_location("pmnist_benchmark", ROOT / "benchmarks" / "pmnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = standardised(generated(n_classes=10, n_features=784, n_train=128, n_test=64))
    monkeypatch.setattr(module.pmnist, "mnist_scenario", lambda n, root=None, seed=0: permuted(data, n, seed))
    return module


def run(bench, monkeypatch, *args):
    monkeypatch.setattr(sys, "argv", ["pmnist.py", "--tasks", "2", "--root", "unused", *args])
    bench.main()


def last_state(path):
    with RunStore.open(path) as store:
        return store.latest_checkpoint()[1], store.R, store.read_log()["loss"]


@pytest.mark.slow
def test_a_stopped_run_resumes_to_the_numbers_of_an_uninterrupted_one(bench, monkeypatch, tmp_path, capsys):
    methods = ["hlop", "ewc"]
    run(bench, monkeypatch, "--methods", *methods, "--out-dir", str(tmp_path / "whole"), "--checkpoint-every", "1")
    calls = {"n": 0}
    train_batch = bench.Continual.train_batch

    def dies_at_the_third_batch(self, task, idx):  # task 1, batch 0: as a killed process, after checkpoint 2
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return train_batch(self, task, idx)

    def counted(self, task, idx):
        calls["n"] += 1
        return train_batch(self, task, idx)

    monkeypatch.setattr(bench.Continual, "train_batch", dies_at_the_third_batch)
    out = tmp_path / "stopped"
    with pytest.raises(RuntimeError, match="killed"):
        run(bench, monkeypatch, "--methods", *methods, "--out-dir", str(out), "--checkpoint-every", "1")
    assert not (out / "ewc-seed0.h5").exists()
    with RunStore.open(out / "hlop-seed0.h5") as store:
        assert np.isnan(store.R[1]).all() and store.count("checkpoints") > 0
    capsys.readouterr()
    calls["n"] = 0
    monkeypatch.setattr(bench.Continual, "train_batch", counted)
    run(bench, monkeypatch, "--methods", *methods, "--out-dir", str(out), "--checkpoint-every", "1")
    assert f"hlop seed 0: resumed from {out / 'hlop-seed0.h5'}" in capsys.readouterr().out
    assert calls["n"] == 2 + 4  # HLOP's task 1, then all of EWC
    for method in methods:
        whole, stopped = last_state(tmp_path / "whole" / f"{method}-seed0.h5"), last_state(out / f"{method}-seed0.h5")
        assert whole[0]["cursor"] == stopped[0]["cursor"] == {"task": 2, "epoch": 0, "batch": 0, "step": 4}
        for name, w in whole[0]["network"].items():
            assert torch.equal(w, stopped[0]["network"][name]), (method, name)
        assert np.array_equal(whole[1], stopped[1], equal_nan=True) and np.array_equal(whole[2], stopped[2])

    run(bench, monkeypatch, "--methods", *methods, "--out-dir", str(out))
    printed = capsys.readouterr().out
    R = whole[1]
    assert f"ewc seed 0: finished in its run file; ACC {100 * acc(R):.2f}, BWT {100 * bwt(R):.2f}" in printed
    assert "resumed" not in printed


def test_a_run_file_of_other_settings_is_refused(bench, monkeypatch, tmp_path):
    run(bench, monkeypatch, "--methods", "baseline", "--out-dir", str(tmp_path))
    with pytest.raises(SystemExit, match=r"baseline seed 0: .*baseline-seed0.h5 holds a run with other settings "
                                         r"\(freeze: True; this command asks for freeze: False\)"):
        run(bench, monkeypatch, "--methods", "baseline", "--out-dir", str(tmp_path), "--no-freeze")


def test_report_gives_mean_and_spread_over_finished_seeds(bench, monkeypatch, tmp_path, capsys):
    run(bench, monkeypatch, "--methods", "baseline", "gpm", "--seeds", "0", "1", "--out-dir", str(tmp_path))
    capsys.readouterr()
    run(bench, monkeypatch, "--report", "--out-dir", str(tmp_path))
    printed = capsys.readouterr().out
    accs, bwts = [], []
    for seed in (0, 1):
        with RunStore.open(tmp_path / f"baseline-seed{seed}.h5") as store:
            accs.append(100 * acc(store.R))
            bwts.append(100 * bwt(store.R))
    row = next(line for line in printed.splitlines() if line.startswith("baseline "))
    assert row.split()[:7] == ["baseline", "2", f"{np.mean(accs):.2f}", "±", f"{np.std(accs, ddof=1):.2f}",
                               f"{np.mean(bwts):.2f}", "±"]
    assert "70.61 / -28.88" in row and "1: " in row
    assert next(line for line in printed.splitlines() if line.startswith("gpm ")).split()[1] == "2"
    assert next(line for line in printed.splitlines() if line.startswith("hlop ")).split()[1] == "0"
