"""Sweep overhead: 8 short trials through ``neurosim sweep`` on a local Ray, 2 at a time, against
running the same 8 experiments one after another by hand in one process.

The trials are the permuted-digits experiment at a small size (``--hidden``, ``--tasks``,
``--epochs``): 2 methods (baseline, EWC) x 4 seeds. *Sequential*: ``experiment.start`` for each,
in this process (its imports paid once, before the clock starts); *by hand*: ``neurosim run`` on
each trial's experiment file, one command after another, as a user without a sweep would. *Sweep*: :func:`neurosim.runs.sweep.run`
with concurrency 2 and one CPU per trial, its wall time from the Tuner's start to its end; Ray's
start-up (``ray.init`` of a local instance) and shut-down are timed separately. Goal: sweep wall time at most 0.6x
the sequential time on 2 cores. As an anchor for what the machine allows at the moment, a fixed
CPU-bound workload is timed alone and as two copies at once. The machine's load (``uptime``) is printed with each timing: with
other work on the cores, two trials at a time cannot halve the time.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import torch

from neurosim.runs import experiment, sweep

METHODS = {"baseline": [], "ewc": [{"name": "ewc", "lam": 10.0, "samples": 50}]}


def base(hidden: int, tasks: int, epochs: int) -> dict:
    return {"name": "overhead", "model": {"name": "pmnist", "n_in": 64, "hidden": hidden, "seed": 0},
            "scenario": {"name": "permuted", "data": "digits", "tasks": tasks, "seed": 0},
            "training": {"steps": 20, "epochs": epochs, "batch_size": 32, "lr": 0.1, "seed": 0},
            "plugins": []}


def toml(table: dict, prefix: str = "") -> str:
    """``table`` (an experiment: strings, numbers, lists of those, tables, lists of tables) as TOML."""
    value = lambda v: json.dumps(v) if not isinstance(v, bool) else str(v).lower()  # noqa: E731
    lines = [f"{k} = {value(v)}" for k, v in table.items()
             if not isinstance(v, dict) and not (isinstance(v, list) and v and isinstance(v[0], dict))]
    for k, v in table.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            lines += ["", f"[{name}]", toml(v, name + ".")]
        elif isinstance(v, list) and v and isinstance(v[0], dict):
            for item in v:
                lines += ["", f"[[{name}]]", toml(item, name + ".")]
    return "\n".join(lines)


def burn(seconds_hint: int = 40) -> float:
    """A fixed CPU-bound workload (float64 matrix products, one thread); its wall time."""
    torch.set_num_threads(1)
    a = torch.rand(256, 256, dtype=torch.float64)
    start = time.perf_counter()
    for _ in range(seconds_hint * 40):
        a = torch.tanh(a @ a)
    return time.perf_counter() - start


def capacity() -> float:
    """Wall time of two copies of :func:`burn` at once over one alone: 1.0 on two free cores, 2.0
    when the cores are saturated by other work (then no two processes can halve a wall time)."""
    import multiprocessing as mp

    alone = burn()
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(burn, [0, 0])  # the workers' start-up and imports, not timed
        start = time.perf_counter()
        pool.map(burn, [40, 40])
        both = time.perf_counter() - start
    return both / alone


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--tasks", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=24)
    args = ap.parse_args()
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    torch.set_num_threads(1)
    config = base(args.hidden, args.tasks, args.epochs)
    seeds = [0, 1, 2, 3]
    folder = tempfile.mkdtemp(prefix="nssweep")
    print(f"8 trials: permuted digits, {args.tasks} tasks x {args.epochs} epochs, hidden {args.hidden}, "
          f"methods {', '.join(METHODS)} x seeds {seeds}")

    print(f"load before: {uptime()}")
    cap = capacity()
    print(f"two CPU-bound processes at once / one alone: {cap:.2f}   (1.00 on two free cores; the best "
          f"sweep / sequential ratio this machine allows now is about {cap / 2:.2f})")
    start = time.perf_counter()
    for m in METHODS:
        for seed in seeds:
            exp = sweep.trial_experiment(config, {"method": m, "training.seed": seed}, METHODS)
            experiment.start(exp, os.path.join(folder, f"{m}-{seed}.h5"), progress=False)
    sequential = time.perf_counter() - start
    print(f"sequential, one process:   {sequential:7.1f} s   ({sequential / 8:.1f} s per trial)   [{uptime()}]")
    start = time.perf_counter()
    for m in METHODS:
        for seed in seeds:
            exp = sweep.trial_experiment(config, {"method": m, "training.seed": seed}, METHODS)
            path = os.path.join(folder, f"hand-{m}-{seed}.toml")
            with open(path, "w") as f:
                f.write(toml(exp) + "\n")
            subprocess.run([sys.executable, "-m", "neurosim", "run", path, "--quiet"], check=True,
                           stdout=subprocess.DEVNULL, env=dict(os.environ, OMP_NUM_THREADS="1"))
    by_hand = time.perf_counter() - start
    print(f"by hand, neurosim run x 8: {by_hand:7.1f} s   [{uptime()}]")

    s = sweep.Sweep(name="overhead", experiment=config, space={"method": list(METHODS), "training.seed": seeds},
                    storage=os.path.join(folder, "sweeps"), methods=METHODS, concurrency=2, cpu=1.0)
    start = time.perf_counter()
    ray = sweep.start_ray(num_cpus=2, temp_dir=tempfile.mkdtemp(prefix="nsr", dir="/tmp"))
    ray_start = time.perf_counter() - start
    start = time.perf_counter()
    result = sweep.run(s, address="auto")  # the instance just started, left running
    wall = time.perf_counter() - start
    start = time.perf_counter()
    ray.shutdown()
    ray_stop = time.perf_counter() - start
    print(f"Ray start-up / shut-down:  {ray_start:7.1f} s / {ray_stop:.1f} s (local)")
    print(f"sweep, 2 concurrent:       {wall:7.1f} s   [{uptime()}]   ({result.trials} trials, {result.errors} failed)")
    print(f"sweep / sequential:        {wall / sequential:7.2f}   (goal <= 0.60; with Ray's start-up and shut-down "
          f"{(wall + ray_start + ray_stop) / sequential:.2f})")
    print(f"sweep / by hand:           {wall / by_hand:7.2f}   (with Ray's start-up and shut-down "
          f"{(wall + ray_start + ray_stop) / by_hand:.2f})")


if __name__ == "__main__":
    main()
