"""Every workload of the performance table in one run, each beside its anchor measured in the same run.

The rows (medians; the benchmark scripts named hold the measurements and say more):

- CUBA, 4000 neurons, 1 s (``cuba.py``), one thread: neurosim's compiled loop (``Network.run``,
  float64) against a hand-written numba loop of the same arithmetic and Brian2 C++ standalone;
- Izhikevich 2003, 1000 neurons, 1 s (``izhikevich.py``), one thread: neurosim drawing the
  thalamic noise inside its loop against Brian2 C++ standalone doing the same (like for like), and
  neurosim fed the same draws as an input;
- the training step 700-256-256-20, T 100, batch 32 (``train_step.py``), one thread: neurosim
  against snnTorch and a plain torch loop, each framework in processes of its own taking turns;
  and the peak resident memory of those processes, neurosim's against snnTorch's;
- ``neurosim --help`` and an argument error (a run file that does not exist) against
  ``python -c "import torch"``, whole processes;
- a training epoch of the learnable-delay network 64-128-128-10 on FSDD (``delays_epoch.py``;
  the generated lag task when FSDD is not found), one thread, against the same model on ``dcls``;
- the E/I LIF reservoir of 64k neurons at p 0.02 per simulated step (``scaling.py``), one
  thread: the compiled loop against the torch event-driven loop;
- two threads against one (``threads.py``, ``Network.threads``) on that reservoir, in three fresh
  processes one after another (the median of theirs: the speed-up varies more between processes
  than within one), and on CUBA, with its automatic choice too, which is met when it is not slower
  than one thread beyond the spread of the one-thread repetitions; the spikes are compared with
  one thread's.

Clocks: one-thread simulation and training times are process CPU seconds (Brian2 times its
standalone run that way), which other work on a shared machine disturbs far less than wall-clock
time; start-up and the two-thread rows are wall-clock time (what a user waits; CPU time cannot
show two threads working at once). Each row gives the 1-minute load average when its measurement
started: two threads can only show their speed-up on two otherwise idle cores, so on a machine
loaded beyond about 1.5 (two cores) the two-thread rows say little. The table is printed as
Markdown, with the line saying when and how it was measured, to paste into the README.

    python benchmarks/table.py [--quick] [--skip ROW ...] [--reservoir 64000] [--root FSDD_FOLDER]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cuba  # noqa: E402
import delays_epoch  # noqa: E402
import izhikevich  # noqa: E402
import scaling  # noqa: E402
import threads  # noqa: E402
import train_step  # noqa: E402
from common import brian2_available, median_time  # noqa: E402

ROWS = ("cuba", "izhikevich", "train", "help", "delays", "reservoir")
CPU = time.process_time


class Row(NamedTuple):
    """One line of the table: neurosim's figure, the anchors' ``(name, figure)`` measured in the
    same run, the unit, the goal as ``(text, test of neurosim / first anchor)`` or None, and the
    load average when the measurement started."""

    label: str
    ours: float | None
    anchors: list
    unit: str
    goal: tuple | None
    load: float


def _load() -> float:
    return os.getloadavg()[0]


def _at_most(limit: float, text: str | None = None) -> tuple:
    return text or f"<= {limit:g}", lambda ratio: ratio <= limit


def _thread_rows(workload: str, results: list[dict], load: float, goals: dict) -> list[Row]:
    """Rows of :func:`threads.compare` results, each setting after the first against the first, with
    the goal ``goals`` gives for its label (None: no goal)."""
    one = results[0]
    rows = []
    for r in results[1:]:
        same = "same spikes" if r["identical"] else "spikes DIFFER from one thread's"
        setting = r["label"] + ("" if r["label"].startswith(f"{r['threads']} thread") else f" ({r['threads']} used)")
        rows.append(Row(f"{workload}, {setting} against 1, wall clock ({same})", r["per_step"],
                        [("1 thread", one["per_step"])], "us",
                        goals.get(r["label"]) if r["identical"] else ("same spikes", lambda ratio: False),
                        load))
    return rows


def _within_spread(results: list[dict]) -> tuple:
    """The goal "not slower than one thread", where slower means beyond the spread of the one-thread
    repetitions themselves (largest over smallest time)."""
    times = results[0]["times"]
    spread = max(times) / min(times) - 1
    return f"<= 1 within the 1-thread spread ({100 * spread:.0f} %)", lambda ratio: ratio <= 1 + spread


def _in_processes(n: int, steps: int, warmup: int, reps: int, processes: int) -> list[dict]:
    """:func:`threads.reservoir_threads` in ``processes`` fresh processes, one after another: per
    setting the median over the processes of their medians (the speed-up of two threads varies more
    between processes than within one)."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "threads.py")
    runs = []
    for _ in range(processes):
        out = subprocess.run([sys.executable, script, "--n", str(n), "--steps", str(steps), "--warmup", str(warmup),
                              "--reps", str(reps), "--workloads", "reservoir", "--json"],
                             capture_output=True, text=True, check=True).stdout
        runs.append(next(iter(json.loads(out.strip().splitlines()[-1]).values())))
    return [{**first, "per_step": statistics.median(run[i]["per_step"] for run in runs),
             "identical": all(run[i]["identical"] for run in runs)} for i, first in enumerate(runs[0])]


def cuba_rows(reps: int, brian2: bool) -> list[Row]:
    load = _load()
    net = cuba.build_cuba(cuba.N, dt=cuba.DT)
    conn, v0 = cuba.connectivity(net), cuba.initial_voltage(net)
    net.threads = 1
    with torch.no_grad():
        net.run(steps=cuba.STEPS)  # compiles or loads the kernel
        ours = median_time(lambda: net.run(steps=cuba.STEPS), reps, CPU)
    loop, _, _ = cuba.numba_loop(conn, v0, reps, CPU)
    anchors = [("hand-written numba loop", loop)]
    if brian2:
        from brian2 import second

        standalone = cuba.brian2_standalone(lambda b2: (*cuba.brian2_network(b2, conn, v0), 1 * second), reps)
        anchors.append(("Brian2 C++ standalone", standalone["simulation"]))
    rows = [Row("CUBA 4000, 1 s, simulation, 1 thread", ours, anchors, "s", None, load)]
    if numba.config.NUMBA_NUM_THREADS >= 2:
        load = _load()
        results = threads.cuba_threads(reps, net)
        rows += _thread_rows("CUBA 4000 per step", results, load,
                             {"automatic, 2 torch threads": _within_spread(results)})
    return rows


def izhikevich_rows(reps: int, brian2: bool) -> list[Row]:
    load = _load()
    ours = izhikevich.neurosim_times(reps, clock=CPU)
    anchors = [("Brian2 C++ standalone, noise drawn in its loop", izhikevich.brian2_times(reps)["simulation"])] \
        if brian2 else []
    same = "same spikes" if ours["identical"] else "spikes DIFFER"
    return [Row("Izhikevich 2003, 1000 n, 1 s, thalamic noise drawn in the loop (like for like)", ours["inside"][0],
                anchors, "s", _at_most(1.0), load),
            Row(f"the same noise given as an input tensor ({same})", ours["pre-drawn"][0], anchors, "s", None, load)]


def train_rows(rounds: int, steps: int, warmup: int) -> list[Row]:
    load = _load()
    names = ("neurosim", "snntorch", "torch")
    options = SimpleNamespace(threads=1)
    for name in names:  # fills on-disk caches before anything is measured
        train_step.run_child(name, options, 1, 0)
    runs = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            r = train_step.run_child(name, options, steps, warmup)
            if r is not None:
                runs[name].append(r)
    step = {n: statistics.median(t for r in rs for t in r["cpu_times"]) if rs else None for n, rs in runs.items()}
    peak = {n: max(r["peak_mib"] for r in rs) if rs else None for n, rs in runs.items()}
    return [Row("training step 700-256-256-20, T 100, B 32, 1 thread", step["neurosim"],
                [("snnTorch", step["snntorch"]), ("plain torch", step["torch"])], "ms", None, load),
            Row("peak memory of that training process", peak["neurosim"], [("snnTorch", peak["snntorch"])], "MiB",
                _at_most(1.0), load)]


def _process(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def help_rows(reps: int) -> list[Row]:
    load = _load()
    script = shutil.which("neurosim", path=os.path.dirname(sys.executable))
    command = [script] if script else [sys.executable, "-m", "neurosim"]
    cmds = {"help": command + ["--help"], "error": command + ["inspect", "/nonexistent/run.h5"],
            "torch": [sys.executable, "-c", "import torch"]}
    times = {k: [] for k in cmds}
    for _ in range(reps):  # taking turns
        for k, cmd in cmds.items():
            times[k].append(_process(cmd))
    wall = {k: statistics.median(w for w, _ in t) for k, t in times.items()}
    cpu = {k: statistics.median(c for _, c in t) for k, t in times.items()}
    torch_wall, torch_cpu = [("`import torch`", wall["torch"])], [("`import torch`", cpu["torch"])]
    return [Row("`neurosim --help`, whole process, wall clock", wall["help"], torch_wall, "s",
                ("< 0.3 s", lambda ratio: wall["help"] < 0.3), load),
            Row("the same, CPU time", cpu["help"], torch_cpu, "s", None, load),
            Row("an argument error (`neurosim inspect` of a missing file), wall clock", wall["error"], torch_wall, "s",
                ("< 0.3 s", lambda ratio: wall["error"] < 0.3), load)]


def delay_rows(quick: bool, root: str | None) -> tuple[list[Row], str]:
    load = _load()
    args = delays_epoch.parser().parse_args(["--quick"] if quick else [])
    if quick:
        args.samples, args.rounds = 192, 3
    args.root = root
    try:
        data = delays_epoch.load(args)
        what = f"FSDD, {len(data)} samples"
    except Exception as e:  # noqa: BLE001  (no FSDD here: the generated task shows the same ratio)
        args.data = "lag"
        data = delays_epoch.load(args)
        what = f"lag task, {len(data)} samples (FSDD not loaded: {e})"
    times = delays_epoch.compare(args, data)
    ours, theirs = (statistics.median(c for _, c in times[k]) for k in ("neurosim", "dcls"))
    return [Row(f"delay network training epoch ({what.split(',')[0]}, 64-128-128-10), 1 thread", ours,
                [("same model on dcls", theirs)], "s", _at_most(0.7), load)], what


def reservoir_rows(n: int, quick: bool) -> list[Row]:
    load = _load()
    steps, warmup, reps = (500, 200, 3) if quick else (2000, 1000, 5)
    net = scaling.reservoir(n)
    r = scaling.measure(net, steps=steps, torch_steps=50 if quick else 200, warmup=warmup, reps=reps, clock=CPU)
    label = f"E/I reservoir {n / 1000:g}k neurons, p 0.02 ({scaling.synapses(net) / 1e6:.3g} M synapses)"
    rows = [Row(f"{label}, per step, 1 thread", r["compiled"], [("torch event path", r["torch"])], "us", None, load)]
    if numba.config.NUMBA_NUM_THREADS >= 2:
        load = _load()
        processes = 1 if quick else 3
        results = _in_processes(n, steps, warmup, reps, processes)
        rows += _thread_rows(f"{label} per step, median of {processes} processes", results, load,
                             {"2 threads": _at_most(1 / 1.6, "<= 0.625 (1.6x faster)")})
    return rows


def _value(x, unit: str) -> str:
    if x is None:
        return "not available"
    if unit == "us":
        return f"{x * 1e6:.0f} us" if x >= 1e-5 else f"{x * 1e6:.2f} us"
    if unit == "ms":
        return f"{x * 1e3:.1f} ms"
    if unit == "MiB":
        return f"{x:.0f} MiB"
    return f"{x:.4f} s" if x < 0.1 else f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.2g}"


def markdown(rows: list[Row]) -> str:
    lines = ["| workload | neurosim | anchor | ratio | goal | load |", "|---|---|---|---|---|---|"]
    for row in rows:
        anchor = "; ".join(f"{name} {_value(v, row.unit)}" for name, v in row.anchors) or "-"
        ratios = [row.ours / v for _, v in row.anchors if row.ours is not None and v]
        goal = "-"
        if row.goal is not None:
            text, test = row.goal
            goal = text if test is None or not ratios else f"{text}: {'met' if test(ratios[0]) else 'not met'}"
        lines.append(f"| {row.label} | {_value(row.ours, row.unit)} | {anchor} | "
                     f"{' / '.join(_ratio(r) for r in ratios) or '-'} | {goal} | {row.load:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, smaller delay epochs and reservoir runs")
    ap.add_argument("--skip", nargs="+", choices=ROWS, default=[], help="rows to leave out")
    ap.add_argument("--reservoir", type=int, default=64000, help="neurons of the reservoir rows")
    ap.add_argument("--root", default=None, help="FSDD folder (default $NEUROSIM_DATA/fsdd)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reps = 3 if args.quick else 7
    brian2 = brian2_available()
    load, start = os.getloadavg(), time.time()
    rows, notes = [], []
    for name in ROWS:
        if name in args.skip:
            continue
        print(f"measuring {name} ... (load average {_load():.1f})", file=sys.stderr, flush=True)
        if name == "cuba":
            rows += cuba_rows(reps, brian2)
        elif name == "izhikevich":
            rows += izhikevich_rows(reps, brian2)
        elif name == "train":
            rows += train_rows(2 if args.quick else 3, 10 if args.quick else 20, 3 if args.quick else 5)
        elif name == "help":
            rows += help_rows(5 if args.quick else 11)
        elif name == "delays":
            delay, what = delay_rows(args.quick, args.root)
            rows += delay
            notes.append(f"delay epoch on {what}")
        else:
            rows += reservoir_rows(args.reservoir, args.quick)
    if not brian2:
        notes.append("Brian2 not installed: no Brian2 anchors")
    if numba.config.NUMBA_NUM_THREADS < 2:
        notes.append("numba has one thread: no two-thread rows")
    print(f"Measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(start))} by `benchmarks/table.py"
          f"{' --quick' if args.quick else ''}` in {(time.time() - start) / 60:.0f} min on "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"numba {numba.__version__}; load average {load[0]:.1f} at the start, {_load():.1f} at the end (the "
          f"load column: when each row's measurement started). One-thread rows in CPU time, start-up and "
          f"two-thread rows in wall-clock time; medians" + "".join(f"; {n}" for n in notes) + ".")
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
