"""The ``neurosim`` command.

``neurosim run`` runs the default experiment: five permuted digit tasks, learnt without
protection and with HLOP, printing each accuracy matrix and ACC / BWT / FWT.
``neurosim run EXPERIMENT.toml`` runs an experiment written as TOML (:func:`neurosim.runs.experiment.load`)
into a run file (``--store``, default ``EXPERIMENT.h5``); ``neurosim resume RUN.h5`` continues it
from its last complete checkpoint; ``neurosim replay RUN.h5 --task T [--after-task U]`` feeds the
input recorded after task T back into the network of the end of task U; ``neurosim inspect RUN.h5``
summarises a run file (also while it is written) and ``neurosim plot RUN.h5 WHAT --out FILE.png``
draws a raster, population rates, the accuracy matrix, forgetting curves or a histogram of the
synaptic delays of a checkpoint. ``--nproc N`` trains an experiment file data-parallel in N local
processes (under ``torchrun`` the processes it starts are used instead).
``neurosim sweep SWEEP.toml [--address ADDR] [--resume]`` runs a sweep on Ray Tune
(:mod:`neurosim.runs.sweep`) and ``neurosim sweep-report DIR`` tabulates it (:mod:`neurosim.cli.sweeps`).
``neurosim run cuba`` or ``neurosim run izhikevich2003`` simulates a built-in network and prints
its rates (``--raster FILE`` writes a raster PNG). ``neurosim repair RUN.h5 --out NEW.h5`` copies
what is intact in a damaged run file into a new one that resumes.

Every fault ends in one line on stderr (``neurosim: ...``) and an exit status: 2 for bad input
(arguments, experiment, a damaged or foreign file), 1 when writing failed (disk full, read-only,
vanished file: the run resumes once the cause is gone), 3 when the divergence guard stopped the
run, 130 / 143 when SIGINT / SIGTERM stopped it (after a checkpoint: the line says how to resume).
An unexpected error is also one line (``NEUROSIM_TRACEBACK=1`` shows the traceback).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

import numpy as np

from ..continual import distributed
from ..continual.runner import Diverged, Interrupted
from ..errors import NeurosimError
from ..runs import experiment
from ..runs.experiment import HLOP_DIGITS, PERMUTED_DIGITS, build, with_plugins
from ..runs.simulation import SIMULATIONS, raster, simulate, summary
from ..storage.store import RunFileExists, StoreWriteError

EXIT_INPUT, EXIT_WRITE, EXIT_DIVERGED = 2, 1, 3

DEFAULT = PERMUTED_DIGITS["name"]
#: Methods of the default experiment: their plugin lists.
METHODS = {"baseline": [], "hlop": [HLOP_DIGITS]}


def format_matrix(R: np.ndarray) -> str:
    """The accuracy matrix in %, rows after each task, ``-`` for entries not yet known."""
    n = R.shape[1]
    lines = ["after    " + " ".join(f"task {j:<2d}" for j in range(n))]
    for i, row in enumerate(R):
        cells = " ".join("   -   " if np.isnan(v) else f"{100 * v:6.1f} " for v in row)
        lines.append(f"task {i:<3d} {cells}")
    return "\n".join(lines)


def _continual(args) -> None:
    methods = args.methods.split(",")
    for m in methods:
        if m not in METHODS:
            raise NeurosimError(f"unknown method {m!r}; expected one of: {', '.join(METHODS)}")
    base = with_plugins(PERMUTED_DIGITS, [])
    for section in ("model", "scenario", "training"):
        base[section]["seed"] = args.seed
    rows = []
    for m in methods:
        runner = build(with_plugins(base, METHODS[m]), progress=not args.quiet)
        start = time.perf_counter()
        r = runner.run()
        wall = time.perf_counter() - start
        print(f"{base['name']}, {m}: accuracy (%) on each task (columns) after training each task (rows)")
        print(format_matrix(r.R))
        print(f"ACC {100 * r.acc:.2f} %   BWT {100 * r.bwt:.2f} %   FWT {100 * r.fwt:.2f} %   {wall:.0f} s\n",
              flush=True)
        rows.append((m, r, wall))
    print(f"{'method':10s} {'ACC %':>7s} {'BWT %':>7s} {'time s':>7s}")
    for m, r, wall in rows:
        print(f"{m:10s} {100 * r.acc:7.2f} {100 * r.bwt:7.2f} {wall:7.0f}")


def _report(name: str, r) -> None:
    print(f"{name}: accuracy (%) on each task (columns) after training each task (rows)")
    print(format_matrix(r.R))
    print(f"ACC {100 * r.acc:.2f} %   BWT {100 * r.bwt:.2f} %   FWT {100 * r.fwt:.2f} %")


def _nproc(args) -> int:
    """Processes to launch: ``--nproc``, or 1 under torchrun (which started them; join its group)."""
    if distributed.from_torchrun():
        if args.nproc not in (None, 1):
            raise NeurosimError("--nproc and torchrun both start processes: use one of them")
        distributed.init_from_env()
        return 1
    return 1 if args.nproc is None else args.nproc


def _experiment_file(args) -> None:
    config = experiment.load(args.experiment)
    store = args.store or os.path.splitext(args.experiment)[0] + ".h5"
    nproc = _nproc(args)
    if os.path.exists(store) and not args.overwrite and distributed.rank() == 0:
        raise NeurosimError(f"{store} already exists: continue it with neurosim resume {store}, or pass --overwrite")
    try:
        r = experiment.start(config, store, overwrite=args.overwrite, keep=args.keep, progress=not args.quiet,
                             nproc=nproc)
    except RunFileExists:
        raise NeurosimError(f"{store} already exists: continue it with neurosim resume {store}, or pass "
                            f"--overwrite") from None
    if distributed.rank() == 0:
        _report(config["name"], r)
        print(f"run file        {store}")


def _cmd_resume(args) -> int:
    r = experiment.resume(args.run, progress=not args.quiet, nproc=_nproc(args))
    if distributed.rank() == 0:
        _report(args.run, r)
    return 0


def _cmd_sweep(args) -> int:
    from ..runs import sweep

    s = sweep.load(args.sweep)
    r = sweep.run(s, address=args.address, resume=args.resume, num_cpus=args.num_cpus, temp_dir=args.ray_temp)
    print(f"sweep           {s.name}: {r.trials} trials, {r.errors} failed")
    if r.best is not None:
        print(f"best            {s.metric} {r.best[s.metric]:.4f} with {r.best['params']}")
    print(f"directory       {r.directory}")
    print(f"report          neurosim sweep-report {r.directory}")
    return 0 if r.errors == 0 else 1


def _cmd_sweep_report(args) -> int:
    from .sweeps import report

    print(report(args.directory, csv_path=args.csv, trials_csv=args.trials_csv, plot_dir=args.plots,
                 metric=args.metric, mode=args.mode))
    return 0


def _cmd_repair(args) -> int:
    from ..storage.repair import repair

    print(repair(args.run, args.out))
    return 0


def _cmd_replay(args) -> int:
    from ..runs.replay import replay

    r = replay(args.run, args.task, args.after_task)
    print(f"task {args.task}: recorded input replayed at checkpoint {r.checkpoint}"
          + ("" if args.after_task is None else f" (end of task {args.after_task})"))
    for pop in r.recorded:
        n_rec, n_rep = len(r.recorded[pop][0]), len(r.replayed[pop][0])
        same = "identical" if r.differing[pop] == 0 else f"{r.differing[pop]} events differ"
        print(f"{pop:15s} {n_rec} spikes recorded, {n_rep} replayed: {same}")
    predicted = r.scores.argmax(1).numpy()
    print(f"labels          {r.labels.tolist()}")
    print(f"predicted       {predicted.tolist()}")
    print(f"correct         {int((predicted == r.labels).sum())} of {len(r.labels)}")
    return 0


def _cmd_inspect(args) -> int:
    from .summary import summarise

    print(summarise(args.run))
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot

    folder = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(folder):
        raise NeurosimError(f"cannot write {args.out}: {folder} is not a directory")
    opts = {k: v for k, v in (("recording", args.recording), ("bin_ms", args.bin_ms), ("sample", args.sample),
                              ("checkpoint", args.checkpoint)) if v is not None}
    plot(args.run, args.what, args.out, **opts)
    print(args.out)
    return 0


def _simulation(args) -> None:
    if args.raster:
        folder = os.path.dirname(os.path.abspath(args.raster))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
            raise NeurosimError(f"cannot write the raster to {args.raster}: {folder} is not a writable directory")
    r = simulate(args.experiment, args.duration, args.seed, progress=not args.quiet)
    print(summary(r))
    if args.raster:
        raster(r, args.raster)
        print(f"raster          {args.raster}")


def _cmd_run(args) -> int:
    if args.experiment == DEFAULT:
        _continual(args)
    elif args.experiment.endswith(".toml"):
        _experiment_file(args)
    elif args.experiment in SIMULATIONS:
        _simulation(args)
    else:
        raise NeurosimError(f"unknown experiment {args.experiment!r}; built-in: {DEFAULT}, {', '.join(SIMULATIONS)}")
    return 0


def _keep(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer or all, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (no usage block)."""

    def error(self, message: str):
        self.exit(EXIT_INPUT, f"neurosim: error: {' '.join(message.split())} (see {self.prog} --help)\n")


def parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="neurosim", description="Spiking network simulator.")
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run an experiment")
    run.add_argument("experiment", nargs="?", default=DEFAULT,
                     help=f"EXPERIMENT.toml, or a built-in: {DEFAULT} (default, continual learning), "
                          f"{', '.join(SIMULATIONS)}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--methods", default=",".join(METHODS),
                     help=f"{DEFAULT}: comma-separated methods among {', '.join(METHODS)}")
    run.add_argument("--duration", type=float, default=1000.0, help="simulations: simulated time in ms")
    run.add_argument("--raster", metavar="FILE.png", help="simulations: write a raster plot")
    run.add_argument("--store", metavar="RUN.h5", help="EXPERIMENT.toml: the run file (default EXPERIMENT.h5)")
    run.add_argument("--overwrite", action="store_true", help="EXPERIMENT.toml: replace an existing run file")
    run.add_argument("--keep", type=_keep, metavar="N|all",
                     help="EXPERIMENT.toml: keep the latest N checkpoints, or all (default: training.keep of the "
                          "experiment, else 2, or all when it records for replay)")
    run.add_argument("--nproc", type=int, help="EXPERIMENT.toml: data-parallel training in N local processes")
    run.set_defaults(fn=_cmd_run)
    resume = sub.add_parser("resume", help="continue a run from its last complete checkpoint")
    resume.add_argument("run", metavar="RUN.h5")
    resume.add_argument("--quiet", action="store_true", help="no progress bars")
    resume.add_argument("--nproc", type=int, help="data-parallel: as many processes as the run was written with")
    resume.set_defaults(fn=_cmd_resume)
    rp = sub.add_parser("repair", help="copy what is intact in a damaged run file into a new one that resumes")
    rp.add_argument("run", metavar="RUN.h5")
    rp.add_argument("--out", required=True, metavar="NEW.h5", help="the new run file (must not exist)")
    rp.set_defaults(fn=_cmd_repair)
    rep = sub.add_parser("replay", help="feed a run's recorded input back into its network at a checkpoint")
    rep.add_argument("run", metavar="RUN.h5")
    rep.add_argument("--task", type=int, default=0, help="the task whose recording to replay (default 0)")
    rep.add_argument("--after-task", type=int, help="use the network of the end of this task (default: --task)")
    rep.set_defaults(fn=_cmd_replay)
    ins = sub.add_parser("inspect", help="summarise what a run file holds")
    ins.add_argument("run", metavar="RUN.h5")
    ins.set_defaults(fn=_cmd_inspect)
    pl = sub.add_parser("plot", help="plot from a run file to a PNG")
    pl.add_argument("run", metavar="RUN.h5")
    pl.add_argument("what", help="raster, rates, accuracy, forgetting or delays")
    pl.add_argument("--out", default="plot.png", metavar="FILE.png", help="the PNG to write (default plot.png)")
    pl.add_argument("--recording", help="raster, rates: the spike recording (needed when the file has several)")
    pl.add_argument("--sample", type=int, help="raster: which sample of a recording of several (default 0)")
    pl.add_argument("--bin-ms", type=float, help="rates: bin width in ms (default: 1/50 of the recording, <= 10 ms)")
    pl.add_argument("--checkpoint", type=int, help="delays: the checkpoint (default: the latest)")
    pl.set_defaults(fn=_cmd_plot)
    sw = sub.add_parser("sweep", help="run a hyperparameter sweep on Ray Tune")
    sw.add_argument("sweep", metavar="SWEEP.toml")
    sw.add_argument("--address", help="an existing Ray cluster (auto, ray://host:port); default: a local Ray")
    sw.add_argument("--resume", action="store_true", help="continue the sweep after its driver was stopped")
    sw.add_argument("--num-cpus", type=int, help="local Ray: CPUs to use (default: all)")
    sw.add_argument("--ray-temp", metavar="DIR", help="local Ray: its session folder (default: Ray's)")
    sw.set_defaults(fn=_cmd_sweep)
    sr = sub.add_parser("sweep-report", help="table, CSV and plots of a sweep's trials")
    sr.add_argument("directory", metavar="DIR", help="the sweep's directory (STORAGE/NAME)")
    sr.add_argument("--csv", metavar="FILE.csv", help="write the grouped table")
    sr.add_argument("--trials-csv", metavar="FILE.csv", help="write one row per trial")
    sr.add_argument("--plots", metavar="DIR", help="write ACC against each swept value and the accuracy matrices")
    sr.add_argument("--metric", default="acc", choices=("acc", "bwt", "fwt"), help="what 'best' means (default acc)")
    sr.add_argument("--mode", default="max", choices=("max", "min"))
    sr.set_defaults(fn=_cmd_sweep_report)
    return ap


class _Terminated(BaseException):
    """SIGTERM outside a run's training loop (which handles it itself)."""


def _terminate(signum, frame):
    raise _Terminated()


def _say(text: str) -> None:
    print(f"neurosim: {' '.join(str(text).split())}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return args.fn(args)
    except Interrupted as e:
        _say(e)
        return e.exit_code
    except Diverged as e:
        _say(f"error: {e}")
        return EXIT_DIVERGED
    except StoreWriteError as e:
        _say(f"error: {e}")
        return EXIT_WRITE
    except NeurosimError as e:
        _say(f"error: {e}")
        return EXIT_INPUT
    except KeyboardInterrupt:
        _say("interrupted")
        return 128 + signal.SIGINT
    except _Terminated:
        _say("terminated")
        return 128 + signal.SIGTERM
    except MemoryError:
        _say("error: out of memory")
        return EXIT_WRITE
    except Exception as e:  # noqa: BLE001 - one line; the traceback on request
        if os.environ.get("NEUROSIM_TRACEBACK"):
            raise
        _say(f"internal error: {type(e).__name__}: {e} (NEUROSIM_TRACEBACK=1 shows the traceback)")
        return EXIT_WRITE if isinstance(e, OSError) else 70
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

