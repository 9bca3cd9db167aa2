"""Every workload of the performance table in one run, each beside its anchor measured in the same run.

The rows, each on one thread (medians; the functions of the benchmark scripts named, which say
more):

- CUBA, 4000 neurons, 1 s (``cuba.py``): neurosim's compiled loop (``Network.run``, float64)
  against a hand-written numba loop of the same arithmetic and Brian2 C++ standalone;
- Izhikevich 2003, 1000 neurons, 1 s (``izhikevich.py``): neurosim with its thalamic input drawn
  beforehand, and drawn inside the run when this version can (like for like), against Brian2 C++
  standalone, which draws it inside its loop;
- the training step 700-256-256-20, T 100, batch 32 (``train_step.py``): neurosim against
  snnTorch and a plain torch loop, each framework in processes of its own taking turns; and the
  peak resident memory of those processes, neurosim's against snnTorch's;
- ``neurosim --help`` against ``python -c "import torch"``, whole processes;
- a training epoch of the learnable-delay network 64-128-128-10 on FSDD (``delays_epoch.py``;
  the generated lag task when FSDD is not found) against the same model on ``dcls``;
- the E/I LIF reservoir of 64k neurons at p 0.02 per simulated step (``scaling.py``): the
  compiled loop against the torch event-driven loop.

The machine this runs on may be shared: simulation and training times are process CPU seconds
(Brian2 times its standalone run that way too), which other work on the machine disturbs far less
than wall-clock time; start-up is wall-clock time (what a user waits) with its CPU time beside it.
The load average before and after is printed with the table; on a machine loaded well beyond its
cores, read the ratios rather than the absolute times. The table is printed as Markdown, to paste
into the README.

    python benchmarks/table.py [--quick] [--skip ROW ...] [--reservoir 64000] [--root FSDD_FOLDER]
"""
from __future__ import annotations

import argparse
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

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import cuba  # noqa: E402
import delays_epoch  # noqa: E402
import izhikevich  # noqa: E402
import scaling  # noqa: E402
import train_step  # noqa: E402

ROWS = ("cuba", "izhikevich", "train", "help", "delays", "reservoir")
CPU = time.process_time


def _brian2() -> bool:
    try:
        import brian2  # noqa: F401
    except ImportError:
        return False
    return True


def cuba_rows(reps: int, brian2: bool) -> list:
    net = cuba.build_cuba(cuba.N, dt=cuba.DT)
    conn, v0 = cuba.connectivity(net), cuba.initial_voltage(net)
    with torch.no_grad():
        net.run(steps=cuba.STEPS)  # compiles or loads the kernel
        ours = cuba.median_time(lambda: net.run(steps=cuba.STEPS), reps, CPU)
    loop, _, _ = cuba.numba_loop(conn, v0, reps, CPU)
    anchors = [("hand-written numba loop", loop)]
    if brian2:
        from brian2 import second

        standalone = cuba.brian2_standalone(lambda b2: (*cuba.brian2_network(b2, conn, v0), 1 * second), reps)
        anchors.append(("Brian2 C++ standalone", standalone["simulation"]))
    return [("CUBA 4000, 1 s, simulation", ours, anchors, "s", "")]


def izhikevich_rows(reps: int, brian2: bool) -> list:
    ours = izhikevich.neurosim_times(reps, clock=CPU)
    anchors = []
    if brian2:
        anchors = [("Brian2 C++ standalone (input drawn in its loop)", izhikevich.brian2_time(reps)["simulation"])]
    rows = [("Izhikevich 2003, 1000 n, 1 s, input pre-drawn", ours["pre-drawn"][0], anchors, "s", "")]
    inside = ours["inside"]
    rows.append(("the same, like for like (input drawn in the run)", None if inside is None else inside[0], anchors,
                 "s", "<= 1.0"))
    return rows


def train_rows(rounds: int, steps: int, warmup: int) -> list:
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
    return [("training step 700-256-256-20, T 100, B 32", step["neurosim"],
             [("snnTorch", step["snntorch"]), ("plain torch", step["torch"])], "ms", ""),
            ("peak memory of that training process", peak["neurosim"], [("snnTorch", peak["snntorch"])], "MiB",
             "<= 1.0")]


def _process(cmd: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def help_rows(reps: int) -> list:
    script = shutil.which("neurosim", path=os.path.dirname(sys.executable))
    ours_cmd = [script, "--help"] if script else [sys.executable, "-m", "neurosim", "--help"]
    torch_cmd = [sys.executable, "-c", "import torch"]
    ours, theirs = [], []
    for _ in range(reps):  # taking turns
        ours.append(_process(ours_cmd))
        theirs.append(_process(torch_cmd))
    wall = [statistics.median(w for w, _ in t) for t in (ours, theirs)]
    cpu = [statistics.median(c for _, c in t) for t in (ours, theirs)]
    return [("`neurosim --help`, whole process (wall)", wall[0], [("`import torch`", wall[1])], "s", "< 0.3 s"),
            ("the same, CPU time", cpu[0], [("`import torch`", cpu[1])], "s", "")]


def delay_rows(quick: bool, root: str | None) -> tuple[list, str]:
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
    return [(f"delay network training epoch ({what.split(',')[0]}, 64-128-128-10)", ours,
             [("same model on dcls", theirs)], "s", "<= 0.7")], what


def reservoir_rows(n: int, quick: bool) -> list:
    r = scaling.measure(n, steps=500 if quick else 2000, torch_steps=50 if quick else 200,
                        warmup=200 if quick else 1000, reps=3 if quick else 5, clock=CPU)
    return [(f"E/I reservoir {n / 1000:g}k neurons, p 0.02 ({r['synapses'] / 1e6:.3g} M synapses), per step",
             r["compiled"], [("torch event path", r["torch"])], "us", "")]


def _value(x, unit: str) -> str:
    if x is None:
        return "not available"
    if unit == "us":
        return f"{x * 1e6:.0f} us"
    if unit == "ms":
        return f"{x * 1e3:.1f} ms"
    if unit == "MiB":
        return f"{x:.0f} MiB"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def markdown(rows: list) -> str:
    lines = ["| workload | neurosim | anchor | ratio | goal |", "|---|---|---|---|---|"]
    for label, ours, anchors, unit, goal in rows:
        anchor = "; ".join(f"{name} {_value(v, unit)}" for name, v in anchors) or "-"
        ratio = " / ".join(f"{ours / v:.2f}" for _, v in anchors if ours is not None and v) or "-"
        lines.append(f"| {label} | {_value(ours, unit)} | {anchor} | {ratio} | {goal} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, smaller delay epochs and reservoir runs")
    ap.add_argument("--skip", nargs="+", choices=ROWS, default=[], help="rows to leave out")
    ap.add_argument("--reservoir", type=int, default=64000, help="neurons of the reservoir row")
    ap.add_argument("--root", default=None, help="FSDD folder (default $NEUROSIM_DATA/fsdd)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    reps = 3 if args.quick else 7
    brian2 = _brian2()
    load, start = os.getloadavg(), time.time()
    rows, notes = [], []
    for name in ROWS:
        if name in args.skip:
            continue
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
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
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"one thread each; load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
          f"({(time.time() - start) / 60:.0f} min); simulation and training times in CPU seconds, medians"
          + "".join(f"; {n}" for n in notes))
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
