"""Sweeps on Ray Tune: the sweep file, trial experiments, fault tolerance on a real local Ray, the report.

The fault-tolerance test runs ``neurosim sweep`` (6 trials: 3 seeds x 2 methods, 2 at a time) as a separate
process on a local Ray, SIGKILLs the worker process of one running trial (found by the run file it
holds open), then SIGKILLs the driver's whole process group mid-sweep and restarts it with
``--resume``. The killed trial's run file ends bit-identical to the same
experiment run uninterrupted in this process; trials that had finished before the driver died keep
their run files untouched and report each task once; the report equals what each run file holds.
"""
import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from neurosim.cli.main import main
from neurosim.cli.sweeps import table, write_trials_csv
from neurosim.continual.metrics import acc, bwt, fwt
from neurosim.errors import NeurosimError
from neurosim.runs import experiment, sweep
from neurosim.storage.store import RunStore

BASE = {"name": "sweep-test", "model": {"name": "pmnist", "n_in": 64, "hidden": 16, "seed": 0},
        "scenario": {"name": "permuted", "data": "digits", "tasks": 3, "seed": 0},
        "training": {"steps": 4, "epochs": 1, "batch_size": 64, "lr": 0.1, "seed": 0, "checkpoint_every": 4},
        "plugins": []}

SWEEP = """
name = "faults"
storage = "out"
experiment = "base.toml"
[search]
concurrency = 2
max_failures = 3
[resources]
cpu = 1
[space]
"training.seed" = [0, 1, 2]
method = ["baseline", "ewc"]
"plugins.ewc.samples" = [12]
[methods]
baseline = []
ewc = [{ name = "ewc", lam = 20.0, samples = 40 }]
"""


def toml(config: dict) -> str:
    lines = [f'name = "{config["name"]}"']
    for section in ("model", "scenario", "training"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in config[section].items()]
    return "\n".join(lines) + "\n"


def write_sweep(folder: Path, text: str = SWEEP) -> Path:
    (folder / "base.toml").write_text(toml(BASE))
    (folder / "sweep.toml").write_text(text)
    return folder / "sweep.toml"


# -- the sweep file ----------------------------------------------------------------------------
def test_load_and_trial_experiments(tmp_path):
    s = sweep.load(write_sweep(tmp_path))
    assert s.name == "faults" and s.storage == str(tmp_path / "out") and s.directory() == str(tmp_path / "out/faults")
    assert s.experiment["training"]["checkpoint_every"] == 4 and s.concurrency == 2 and s.max_failures == 3
    exp = sweep.trial_experiment(s.experiment, {"training.seed": 2, "method": "ewc", "plugins.ewc.samples": 12},
                                 s.methods)
    assert exp["training"]["seed"] == 2 and exp["plugins"] == [{"name": "ewc", "lam": 20.0, "samples": 12}]
    assert s.experiment["training"]["seed"] == 0 and s.methods["ewc"][0]["samples"] == 40  # not changed
    base = sweep.trial_experiment(s.experiment, {"method": "baseline", "plugins.ewc.samples": 12}, s.methods)
    assert base["plugins"] == []
    nested = sweep.trial_experiment(BASE, {"scenario.options.n_train": 5, "model.hidden": 8}, {})
    assert nested["scenario"]["options"] == {"n_train": 5} and nested["model"]["hidden"] == 8
    assert sweep.method_of({}, {"plugins": [{"name": "ewc"}, {"name": "si"}]}) == "ewc+si"
    assert sweep.method_of({}, {"plugins": []}) == "baseline"


def test_a_trials_folder_is_named_by_its_values(tmp_path):
    a = sweep.trial_folder("d", {"method": "ewc", "training.seed": 1})
    assert a == sweep.trial_folder("d", {"training.seed": 1, "method": "ewc"})  # a restored trial finds it
    assert a != sweep.trial_folder("d", {"method": "ewc", "training.seed": 2}) and a.startswith("d/ewc-")


@pytest.mark.parametrize("change, message", [
    ('[space]\n"training.lr" = { normal = [0, 1] }', "must be a list or one of"),
    ('[space]\nmethod = ["ewc", "hlop"]\n[methods]\newc = []', "method 'hlop' is not in"),
    ('[space]\n"plugins.si.c" = [1.0]', "no plugin 'si'"),
    ('[space]\n"optimiser.lr" = [1.0]', "is not a dotted path"),
    ('[space]\n"training.lr" = { uniform = [1.0] }', "uniform needs"),
    ('[search]\nalgorithm = "bayes"\n[space]\n"training.lr" = [1.0]', "unknown search algorithm"),
    ('[search]\nconcurency = 2\n[space]\n"training.lr" = [1.0]', "unknown [search] key"),
    ('[space]', "is empty"),
    ('[search]\nsamples = 3\n[space]\n"training.lr" = [0.1, 0.2]', "sweep training.seed instead"),
    ('[space]\n"training.sede" = [0, 1]', "space key 'training.sede' = 0: unknown training key 'sede'; known: "),
    ('[space]\n"plugins.ewc.lam" = [100.0, -10.0]\nmethod = ["baseline", "ewc"]\n[methods]\nbaseline = []\n'
     'ewc = [{ name = "ewc" }]', "space key 'plugins.ewc.lam' = -10.0 (method ewc): lam must be >= 0 and finite"),
    ('[space]\n"training.lr" = { loguniform = [1e-3, 2000.0] }',
     "space key 'training.lr' = 2000.0: training.lr must be in (0, 1000], got 2000.0"),
])
def test_bad_sweeps_are_refused(tmp_path, change, message):
    path = write_sweep(tmp_path, 'name = "x"\nexperiment = "base.toml"\n' + change + "\n")
    with pytest.raises(NeurosimError, match=re.escape(message)):
        sweep.load(path)


def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # what an environment without the extra imports
    with pytest.raises(NeurosimError, match=r"pip install 'neurosim\[sweep\]'"):
        sweep.ray_modules()


def test_a_grid_runs_a_method_once_for_values_of_plugins_it_does_not_run(tmp_path):
    _, tune = sweep.ray_modules()
    text = SWEEP.replace('"plugins.ewc.samples" = [12]', '"plugins.ewc.lam" = [10.0, 100.0, 1000.0]')
    s = sweep.load(write_sweep(tmp_path, text))
    points = sweep._space(s, tune)["params"]["grid_search"]
    baseline = [p for p in points if p["method"] == "baseline"]
    ewc = [p for p in points if p["method"] == "ewc"]
    assert len(points) == 12 and len(baseline) == 3 and len(ewc) == 9
    assert sorted(p["training.seed"] for p in baseline) == [0, 1, 2]
    assert {(p["training.seed"], p["plugins.ewc.lam"]) for p in ewc} == \
        {(seed, lam) for seed in (0, 1, 2) for lam in (10.0, 100.0, 1000.0)}
    random = sweep.load(write_sweep(tmp_path, text.replace("[10.0, 100.0, 1000.0]", "{ loguniform = [1.0, 1e4] }")))
    assert "grid_search" not in sweep._space(random, tune)["params"]


def test_a_sweep_directory_is_checked_before_ray_starts(tmp_path, monkeypatch):
    monkeypatch.setattr(sweep, "start_ray", lambda *a, **k: pytest.fail("Ray started before the refusal"))
    s = sweep.load(write_sweep(tmp_path))
    with pytest.raises(NeurosimError, match="no sweep to resume in .*out/faults$"):
        sweep.run(s, resume=True)
    os.makedirs(s.directory())
    with pytest.raises(NeurosimError, match="out/faults exists: continue that sweep with --resume, or rename$"):
        sweep.run(s)
    os.rmdir(s.directory())
    s.cpu = 3.0
    with pytest.raises(NeurosimError, match=r"^a trial needs 3 CPUs \(\[resources\] cpu\) and the local Ray has 2: "
                                            "lower cpu or raise --num-cpus$"):
        sweep.run(s, num_cpus=2)
    os.makedirs(s.directory())
    assert os.listdir(s.directory()) == []


# -- the report ----------------------------------------------------------------------------------
def expected(run: Path) -> tuple[np.ndarray, float, float, float]:
    with RunStore.open(run) as s:
        R = s.R
        b = np.asarray(s.latest_checkpoint()[1]["b"])
    return R, acc(R), bwt(R), fwt(R, b)


def check_report(directory: Path, tmp_path: Path) -> None:
    """The report's per-trial and grouped numbers against each trial's run file."""
    groups_csv, trials_csv = tmp_path / "groups.csv", tmp_path / "trials.csv"
    assert main(["sweep-report", str(directory), "--csv", str(groups_csv), "--trials-csv", str(trials_csv),
                 "--plots", str(tmp_path / "plots")]) == 0
    header = next(csv.reader(open(trials_csv)))
    assert len(header) == len(set(header)), header
    rows = list(csv.DictReader(open(trials_csv)))
    runs = sorted(directory.glob("*/run.h5"))
    assert len(rows) == len(runs)
    by_group = {}
    for row in rows:
        R, a, bw, fw = expected(Path(row["run"]))
        assert (float(row["acc"]), float(row["bwt"]), float(row["fwt"])) == (a, bw, fw)
        params = json.loads((Path(row["run"]).parent / "params.json").read_text())["params"]
        key = (params.get("method"), params.get("training.lr"))
        by_group.setdefault(key, []).append((a, bw))
    groups = list(csv.DictReader(open(groups_csv)))
    assert len(groups) == len(by_group)
    for g in groups:
        values = by_group[(g["method"], float(g["training.lr"]) if g.get("training.lr") else None)]
        assert int(g["n"]) == len(values)
        assert float(g["acc_mean"]) == pytest.approx(np.mean([v[0] for v in values]), rel=1e-12)
        assert float(g["bwt_mean"]) == pytest.approx(np.mean([v[1] for v in values]), rel=1e-12)
        if len(values) > 1:
            assert float(g["acc_sd"]) == pytest.approx(np.std([v[0] for v in values], ddof=1), rel=1e-12)
    assert (tmp_path / "plots" / "matrices.png").stat().st_size > 0


def test_report_of_trial_folders(tmp_path, capsys):
    """Trial folders as Tune lays them out (params.json beside the run file), made here directly."""
    small = dict(BASE, scenario=dict(BASE["scenario"], tasks=2), training=dict(BASE["training"], steps=2))
    directory = tmp_path / "sweep"
    for i, (method, lr, seed) in enumerate([("baseline", 0.1, 0), ("baseline", 0.1, 1), ("ewc", 0.1, 0),
                                            ("ewc", 0.2, 0), ("ewc", 0.2, 1)]):
        params = {"method": method, "training.lr": lr, "training.seed": seed}
        folder = directory / f"trial_{i}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"params": params}))
        exp = sweep.trial_experiment(small, params, {"baseline": [], "ewc": [{"name": "ewc", "lam": 1.0, "samples": 8}]})
        experiment.start(exp, folder / "run.h5", progress=False)
    check_report(directory, tmp_path)
    out = capsys.readouterr().out
    assert "5 trials, 5 complete" in out and "best (acc, max):" in out
    assert (tmp_path / "plots" / "acc_vs_training_lr.png").exists()


def test_a_value_for_a_plugin_the_method_lacks_neither_splits_nor_repeats_its_group(tmp_path):
    """Baseline trials carry the swept EWC lambda they never used: they form one group over the
    seeds, each seed counted once; EWC's trials group by lambda."""
    small = dict(BASE, scenario=dict(BASE["scenario"], tasks=2), training=dict(BASE["training"], steps=2))
    directory = tmp_path / "sweep"
    methods = {"baseline": [], "ewc": [{"name": "ewc", "samples": 8}]}
    settings = [(m, lam, seed) for m in methods for lam in (1.0, 10.0) for seed in (0, 1)]
    for i, (method, lam, seed) in enumerate(settings):
        params = {"method": method, "plugins.ewc.lam": lam, "training.seed": seed}
        folder = directory / f"trial_{i}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"params": params}))
        experiment.start(sweep.trial_experiment(small, params, methods), folder / "run.h5", progress=False)
    trials = sweep.collect(directory)
    assert [t.plugins for t in trials] == [()] * 4 + [("ewc",)] * 4
    gs = sweep.groups(trials)
    assert [(g.method, g.setting, [t.params["training.seed"] for t in g.trials]) for g in gs] == [
        ("baseline", {}, [0, 1]), ("ewc", {"plugins.ewc.lam": 1.0}, [0, 1]),
        ("ewc", {"plugins.ewc.lam": 10.0}, [0, 1])]
    assert gs[0].trials[0].acc == trials[2].acc  # the repeated baseline run gave the same result
    write_trials_csv(trials, tmp_path / "trials.csv")
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert [r["plugins.ewc.lam"] for r in rows] == [""] * 4 + ["1.0", "1.0", "10.0", "10.0"]  # baseline: no lam
    backwards = sweep.Group(gs[1].method, gs[1].setting, gs[1].trials[::-1])
    assert re.search(r"\newc +ewc\.lam=1 +2 \(0 1\) ", table(trials, [backwards]))  # seeds listed in order


# -- a real sweep on a local Ray -------------------------------------------------------------------
def holders(path: Path) -> list[int]:
    """Processes that hold ``path`` open."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == str(path) for fd in os.listdir(f"/proc/{pid}/fd")):
                found.append(int(pid))
        except OSError:
            continue
    return found


def state(run: Path) -> tuple[int, bool]:
    """Checkpoints written and whether every task is done (a run file being written is readable)."""
    try:
        with RunStore.open(run) as s:
            return len(s.checkpoints()), not np.isnan(s.R).any()
    except (NeurosimError, OSError):
        return 0, False


def reports(directory: Path, trial: Path) -> int:
    """Results that Tune received for the trial of the run folder ``trial``, over Tune's trial
    folders of the same values (``result.json``, one line per report)."""
    params = json.loads((trial / "params.json").read_text())["params"]
    return sum((d / "result.json").read_text().count("\n") for d in directory.iterdir()
               if (d / "result.json").exists() and json.loads((d / "params.json").read_text())["params"] == params)


def wait_for(what, timeout: float, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = what()
        if found:
            return found
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the sweep ended early with status {proc.returncode}")
        time.sleep(0.5)
    raise AssertionError("timed out")


def ray_processes(temp: str) -> list[int]:
    """Processes of the local Ray started with session folder ``temp``."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if temp in open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace"):
                pids.append(int(pid))
        except OSError:
            continue
    return pids


def test_sweep_survives_a_killed_worker_and_a_killed_driver(tmp_path):
    path = write_sweep(tmp_path)
    directory = tmp_path / "out" / "faults"
    temp = tempfile.mkdtemp(prefix="nsray", dir="/tmp")
    env = dict(os.environ, OMP_NUM_THREADS="1", RAY_USAGE_STATS_ENABLED="0")
    cmd = [sys.executable, "-m", "neurosim", "sweep", str(path), "--num-cpus", "2", "--ray-temp", temp]
    log = open(tmp_path / "driver.log", "w")
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        # 1. SIGKILL the worker of a trial that has written a checkpoint but not finished
        def running_trial():
            for run in sorted(directory.glob("*/run.h5")):
                n, done = state(run)
                pids = holders(run)
                if n >= 1 and not done and pids:
                    return run, pids
        killed, pids = wait_for(running_trial, 600, driver)
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        # 2. SIGKILL the driver's process group once at least 2 trials are done and others are not
        def midway():
            runs = sorted(directory.glob("*/run.h5"))
            done = [r for r in runs if state(r)[1] and not holders(r)]  # complete and closed by its writer
            return done if len(done) >= 2 and len(done) < 6 else None
        done = wait_for(midway, 900, driver)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        before = {r: (r.stat().st_mtime_ns, RunStore.open(r).run_id) for r in done}
        for pid in ray_processes(temp):  # what the killed driver's local Ray left behind
            os.kill(pid, signal.SIGKILL)
        # 3. restart with --resume: the killed trial resumes its run file, wherever Tune had got to
        resumed = subprocess.run(cmd + ["--resume"], cwd=tmp_path, env=env, capture_output=True, text=True,
                                 timeout=1800)
        assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait()
        for pid in ray_processes(temp):
            os.kill(pid, signal.SIGKILL)
        log.close()
    runs = sorted(directory.glob("*/run.h5"))
    assert len(runs) == 6 and all(state(r)[1] for r in runs)
    assert "6 trials, 0 failed" in resumed.stdout and "6 trials, 6 complete" in resumed.stdout
    assert "best (acc, max): " in resumed.stdout
    # the trials whose run files were complete when the driver died were not run again (their files
    # untouched), and each reported every task once
    assert len(before) >= 2
    for r, (mtime, run_id) in before.items():
        assert (r.stat().st_mtime_ns, RunStore.open(r).run_id) == (mtime, run_id)
        assert reports(directory, r.parent) == BASE["scenario"]["tasks"]
    # the killed trial equals its experiment run uninterrupted, bit for bit
    params = json.loads((killed.parent / "params.json").read_text())["params"]
    s = sweep.load(path)
    torch.set_num_threads(1)
    reference = tmp_path / "reference.h5"
    experiment.start(sweep.trial_experiment(s.experiment, params, s.methods), reference, progress=False)
    with RunStore.open(killed) as a, RunStore.open(reference) as b:
        assert np.array_equal(a.R, b.R)
        assert np.array_equal(a.read_log()["loss"], b.read_log()["loss"])
        sa, sb = a.latest_checkpoint()[1], b.latest_checkpoint()[1]
        assert all(torch.equal(sa["network"][k], sb["network"][k]) for k in sb["network"])
        assert len(a.read_log()) == len(b.read_log())
    check_report(directory, tmp_path)
