"""Killed runs resume to the result of an uninterrupted one, bit for bit."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from neurosim.runs import experiment
from neurosim.storage.store import RunStore

CONFIG = {
    "name": "resume-test",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 32, "seed": 3},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 3, "seed": 1},
    "training": {"steps": 10, "epochs": 2, "batch_size": 64, "lr": 0.1, "seed": 2, "checkpoint_every": 5},
    "plugins": [{"name": "hlop", "rows_per_task": [[4, 8, 8]] * 3, "rates": 1.0},
                {"name": "si", "c": 0.1, "xi": 0.1}, {"name": "ewc", "lam": 10.0, "samples": 16}],
}
TOTAL_BATCHES = 3 * 2 * 22  # tasks x epochs x batches of the digits training part

# A child process: start or resume the run; with a checkpoint number, die by SIGKILL in the middle
# of writing that checkpoint (its bytes and index row written, not yet committed).
CHILD = textwrap.dedent("""
    import json, os, signal, sys
    import torch
    torch.set_num_threads(1)
    from neurosim.runs import experiment
    from neurosim.storage.store import RunStore
    mode, path, die_in = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if die_in >= 0:
        commit = RunStore._commit
        def dying_commit(self):
            if self._counts["checkpoints"] == die_in + 1 > self._committed["checkpoints"]:
                os.kill(os.getpid(), signal.SIGKILL)
            commit(self)
        RunStore._commit = dying_commit
    if mode == "start":
        experiment.start(json.loads(sys.argv[4]), path, progress=False)
    else:
        experiment.resume(path, progress=False)
""")


def child(tmp_path, mode, path, die_in=-1):
    import json

    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = [sys.executable, str(script), mode, str(path), str(die_in)] + ([json.dumps(CONFIG)] if mode == "start" else [])
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def log_rows(path):
    try:
        with RunStore.open(path) as s:
            return len(s.read_log())
    except Exception:
        return -1


def final(path):
    with RunStore.open(path) as s:
        k, state = s.latest_checkpoint()
        return s.R, s.read_log(), state


def test_sigkill_at_many_moments_then_resume_is_bit_identical(tmp_path):
    ref = tmp_path / "ref.h5"
    p = child(tmp_path, "start", ref)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()

    run = tmp_path / "run.h5"
    # kill when the log reaches a number of rows (a reader polls the file meanwhile), or in the
    # middle of writing a given checkpoint (5 = inside task 0, 10 = the end of task 0, 20)
    plan = [("log", 8), ("ckpt", 5), ("log", 30), ("log", 41), ("ckpt", 10), ("log", 55), ("log", 70),
            ("log", 84), ("ckpt", 20), ("log", 100), ("log", 115), ("log", 125)]
    kills = 0
    for n, (how, when) in enumerate(plan):
        mode = "start" if n == 0 else "resume"
        p = child(tmp_path, mode, run, when if how == "ckpt" else -1)
        if how == "log":
            while p.poll() is None and log_rows(run) < when:
                time.sleep(0.02)
            p.send_signal(signal.SIGKILL)
        rc = p.wait(timeout=300)
        kills += rc == -signal.SIGKILL
        with RunStore.open(run) as s:  # the file opens after every kill
            assert len(s.read_log()) >= 0
    assert kills >= 10
    p = child(tmp_path, "resume", run)
    assert p.wait(timeout=300) == 0, p.stderr.read().decode()

    (R_ref, log_ref, s_ref), (R, log, s) = final(ref), final(run)
    assert np.array_equal(R, R_ref, equal_nan=True)
    assert len(log) == len(log_ref) == TOTAL_BATCHES
    for field in ("task", "epoch", "step", "loss"):
        assert np.array_equal(log[field], log_ref[field])
    assert s["network"].keys() == s_ref["network"].keys()
    for name, value in s_ref["network"].items():
        assert torch.equal(s["network"][name], value), name
    for a, b in zip(s["plugins"][0]["subspaces"].values(), s_ref["plugins"][0]["subspaces"].values()):
        assert torch.equal(a["old"], b["old"])


def test_resume_without_checkpoint_starts_over_and_bad_files_are_refused(tmp_path):
    config = dict(CONFIG, plugins=[], training=dict(CONFIG["training"], epochs=1))
    config["scenario"] = dict(CONFIG["scenario"], tasks=1)
    path = tmp_path / "r.h5"
    RunStore.create(path, config, n_tasks=1).close()
    torch.set_num_threads(1)
    r = experiment.resume(path, progress=False)
    with RunStore.open(path) as s:
        assert np.array_equal(s.R, r.R) and len(s.read_log()) == 22
    foreign = tmp_path / "foreign.h5"
    import h5py
    with h5py.File(foreign, "w") as f:
        f["x"] = 1
    before = foreign.read_bytes()
    with pytest.raises(Exception, match="not a neurosim run file"):
        experiment.resume(foreign, progress=False)
    assert foreign.read_bytes() == before


def test_a_checkpoint_the_run_cannot_load_is_refused_before_the_file_is_written(tmp_path, monkeypatch):
    """A plugin that refuses its stored state ends the resume in its one line, with the run file
    byte for byte as it was (its commit record not rewritten)."""
    from neurosim.errors import NeurosimError
    from neurosim.plugins.ewc import EWC

    config = dict(CONFIG, plugins=[{"name": "ewc", "lam": 10.0, "samples": 16}],
                  training=dict(CONFIG["training"], epochs=1))
    config["scenario"] = dict(CONFIG["scenario"], tasks=2)
    path = tmp_path / "r.h5"
    torch.set_num_threads(1)
    experiment.start(config, path, progress=False)
    before = path.read_bytes()

    def refuse(self, state):
        raise NeurosimError("ewc: this state cannot be loaded")

    monkeypatch.setattr(EWC, "load_state_dict", refuse)
    with pytest.raises(NeurosimError, match="^ewc: this state cannot be loaded$"):
        experiment.resume(path, progress=False)
    assert path.read_bytes() == before


def test_resume_of_a_finished_run_prints_its_results_and_writes_nothing(tmp_path):
    from clirun import digest, run_cli

    config = dict(CONFIG, plugins=[{"name": "ewc", "lam": 10.0, "samples": 16}],
                  training=dict(CONFIG["training"], epochs=1))
    path = tmp_path / "done.h5"
    torch.set_num_threads(1)
    done = experiment.start(config, path, progress=False)
    before, mtime = digest(path), os.stat(path).st_mtime_ns
    r = experiment.resume(path, progress=False)
    assert r.finished_before and np.array_equal(r.R, done.R) and (r.acc, r.bwt) == (done.acc, done.bwt)
    rc, out, err = run_cli(["resume", path, "--quiet"])
    assert rc == 0, err
    assert f"ACC {100 * done.acc:.2f} %   BWT {100 * done.bwt:.2f} %" in out
    assert f"{path} was finished already: nothing trained, nothing written" in out
    assert digest(path) == before and os.stat(path).st_mtime_ns == mtime
    assert not done.finished_before
