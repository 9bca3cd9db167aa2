"""The ``neurosim`` command.

``neurosim run`` runs the default experiment: five permuted digit tasks, learnt without
protection and with HLOP, printing each accuracy matrix and ACC / BWT / FWT.
``neurosim run EXPERIMENT.toml`` runs an experiment written as TOML (:func:`neurosim.runs.experiment.load`)
into a run file (``--store``, default ``EXPERIMENT.h5``); ``neurosim resume RUN.h5`` continues it
from its last complete checkpoint (of a finished run it prints the results and writes nothing);
``neurosim replay RUN.h5 --task T [--after-task U]`` feeds the
input recorded after task T back into the network of the end of task U; ``neurosim inspect RUN.h5``
summarises a run file (also while it is written) and ``neurosim plot RUN.h5 WHAT --out FILE.png``
draws a raster, population rates, the accuracy matrix, forgetting curves or a histogram of the
synaptic delays of a checkpoint. ``--nproc N`` trains an experiment file data-parallel in N local
processes (under ``torchrun`` the processes it starts are used instead).
``neurosim sweep SWEEP.toml [--address ADDR] [--resume]`` runs a sweep on Ray Tune
(:mod:`neurosim.runs.sweep`) and ends with its table, which ``neurosim sweep-report DIR`` prints,
writes as CSV and plots (:mod:`neurosim.cli.sweeps`).
``neurosim run cuba`` or ``neurosim run izhikevich2003`` simulates a built-in network and prints
its rates (``--raster FILE`` writes a raster PNG). ``neurosim repair RUN.h5 --out NEW.h5`` copies
what is intact in a damaged run file into a new one that resumes.

Every fault ends in one line on stderr (``neurosim: ...``) and an exit status: 2 for bad input
(arguments, experiment, a damaged or foreign file), 1 when writing failed (disk full, read-only,
vanished file: the run resumes once the cause is gone), 3 when the divergence guard stopped the
run, 130 / 143 when SIGINT / SIGTERM stopped it (after a checkpoint: the line says how to resume).
An unexpected error is also one line (``NEUROSIM_TRACEBACK=1`` shows the traceback).

The arguments are parsed and checked here without importing torch, so ``--help`` and argument
errors answer at once; :mod:`neurosim.cli.commands` does the work.
"""
from __future__ import annotations

import argparse
import errno
import os
import signal
import sys

from ..runs.builtin import DEFAULT_EXPERIMENT, METHODS, SIMULATIONS

EXIT_INPUT, EXIT_WRITE, EXIT_DIVERGED = 2, 1, 3


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
    run.add_argument("experiment", nargs="?", default=DEFAULT_EXPERIMENT,
                     help=f"EXPERIMENT.toml, or a built-in: {DEFAULT_EXPERIMENT} (default, continual learning), "
                          f"{', '.join(SIMULATIONS)}")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--methods", default=",".join(METHODS),
                     help=f"{DEFAULT_EXPERIMENT}: comma-separated methods among {', '.join(METHODS)}")
    run.add_argument("--duration", type=float, default=1000.0, help="simulations: simulated time in ms")
    run.add_argument("--raster", metavar="FILE.png", help="simulations: write a raster plot")
    run.add_argument("--store", metavar="RUN.h5", help="EXPERIMENT.toml: the run file (default EXPERIMENT.h5)")
    run.add_argument("--overwrite", action="store_true", help="EXPERIMENT.toml: replace an existing run file")
    run.add_argument("--keep", type=_keep, metavar="N|all",
                     help="EXPERIMENT.toml: keep the latest N checkpoints, or all (default: training.keep of the "
                          "experiment, else 2, or all when it records for replay)")
    run.add_argument("--nproc", type=int, help="EXPERIMENT.toml: data-parallel training in N local processes")
    resume = sub.add_parser("resume", help="continue a run from its last complete checkpoint")
    resume.add_argument("run", metavar="RUN.h5")
    resume.add_argument("--quiet", action="store_true", help="no progress bars")
    resume.add_argument("--nproc", type=int, help="data-parallel: as many processes as the run was written with")
    rp = sub.add_parser("repair", help="copy what is intact in a damaged run file into a new one that resumes")
    rp.add_argument("run", metavar="RUN.h5")
    rp.add_argument("--out", required=True, metavar="NEW.h5", help="the new run file (must not exist)")
    rep = sub.add_parser("replay", help="feed a run's recorded input back into its network at a checkpoint")
    rep.add_argument("run", metavar="RUN.h5")
    rep.add_argument("--task", type=int, default=0, help="the task whose recording to replay (default 0)")
    rep.add_argument("--after-task", type=int, help="use the network of the end of this task (default: --task)")
    ins = sub.add_parser("inspect", help="summarise what a run file holds")
    ins.add_argument("run", metavar="RUN.h5")
    pl = sub.add_parser("plot", help="plot from a run file to a PNG")
    pl.add_argument("run", metavar="RUN.h5")
    pl.add_argument("what", help="raster, rates, accuracy, forgetting or delays")
    pl.add_argument("--out", default="plot.png", metavar="FILE.png", help="the PNG to write (default plot.png)")
    pl.add_argument("--recording", help="raster, rates: the spike recording (needed when the file has several)")
    pl.add_argument("--sample", type=int, help="raster: which sample of a recording of several (default 0)")
    pl.add_argument("--bin-ms", type=float, help="rates: bin width in ms (default: 1/50 of the recording, <= 10 ms)")
    pl.add_argument("--checkpoint", type=int, help="delays: the checkpoint (default: the latest)")
    sw = sub.add_parser("sweep", help="run a hyperparameter sweep on Ray Tune")
    sw.add_argument("sweep", metavar="SWEEP.toml")
    sw.add_argument("--address", help="an existing Ray cluster (auto, ray://host:port); default: a local Ray")
    sw.add_argument("--resume", action="store_true", help="continue the sweep after its driver was stopped")
    sw.add_argument("--num-cpus", type=int, help="local Ray: CPUs to use (default: all)")
    sw.add_argument("--ray-temp", metavar="DIR", help="local Ray: its session folder (default: Ray's)")
    sr = sub.add_parser("sweep-report", help="table, CSV and plots of a sweep's trials")
    sr.add_argument("directory", metavar="DIR", help="the sweep's directory (STORAGE/NAME)")
    sr.add_argument("--csv", metavar="FILE.csv", help="write the grouped table")
    sr.add_argument("--trials-csv", metavar="FILE.csv", help="write one row per trial")
    sr.add_argument("--plots", metavar="DIR", help="write ACC against each swept value and the accuracy matrices")
    sr.add_argument("--metric", default="acc", choices=("acc", "bwt", "fwt"), help="what 'best' means (default acc)")
    sr.add_argument("--mode", default="max", choices=("max", "min"))
    return ap


class _Terminated(BaseException):
    """SIGTERM outside a run's training loop (which handles it itself)."""


def _terminate(signum, frame):
    raise _Terminated()


def _say(text: str) -> None:
    print(f"neurosim: {' '.join(str(text).split())}", file=sys.stderr, flush=True)


def argument_error(args: argparse.Namespace) -> str | None:
    """What is wrong with parsed arguments that the parser cannot tell, or None: unknown names, a
    file to read that is missing, a file to write whose folder is missing (the messages the
    commands would give, without loading what the commands need)."""
    if args.command == "run":
        name = args.experiment
        if name != DEFAULT_EXPERIMENT and name not in SIMULATIONS and not name.endswith(".toml"):
            return f"unknown experiment {name!r}; built-in: {DEFAULT_EXPERIMENT}, {', '.join(SIMULATIONS)}"
        if args.nproc is not None and not name.endswith(".toml"):
            return f"--nproc trains an experiment file (EXPERIMENT.toml) data-parallel, not {name!r}"
        if name.endswith(".toml") and not os.path.isfile(name):
            return f"cannot read {name}: {os.strerror(errno.EISDIR if os.path.isdir(name) else errno.ENOENT)}"
        for m in args.methods.split(","):
            if m not in METHODS:
                return f"unknown method {m!r}; expected one of: {', '.join(METHODS)}"
        if args.raster:
            folder = os.path.dirname(os.path.abspath(args.raster))
            if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
                return f"cannot write the raster to {args.raster}: {folder} is not a writable directory"
        return None
    run = getattr(args, "run", None)  # the run file of resume, repair, replay, inspect and plot
    if run is not None:
        if not os.path.exists(run):
            return f"{run} does not exist"
        if os.path.isdir(run):
            return f"{run} is a directory, not a run file"
    if args.command == "plot":
        folder = os.path.dirname(os.path.abspath(args.out))
        if not os.path.isdir(folder):
            return f"cannot write {args.out}: {folder} is not a directory"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    error = argument_error(args)
    if error is not None:
        _say(f"error: {error}")
        return EXIT_INPUT
    previous = signal.signal(signal.SIGTERM, _terminate) if _main_thread() else None
    try:
        return _run(args)
    except KeyboardInterrupt:  # also while the command's modules are imported
        _say("interrupted")
        return 128 + signal.SIGINT
    except _Terminated:
        _say("terminated")
        return 128 + signal.SIGTERM
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    """The command ``args`` names, its errors turned into one line and an exit status."""
    from ..continual.runner import Diverged, Interrupted
    from ..errors import NeurosimError
    from ..storage.store import StoreWriteError
    from .commands import COMMANDS

    try:
        return COMMANDS[args.command](args)
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
    except MemoryError:
        _say("error: out of memory")
        return EXIT_WRITE
    except Exception as e:  # noqa: BLE001 - one line; the traceback on request
        if os.environ.get("NEUROSIM_TRACEBACK"):
            raise
        _say(f"internal error: {type(e).__name__}: {e} (NEUROSIM_TRACEBACK=1 shows the traceback)")
        return EXIT_WRITE if isinstance(e, OSError) else 70


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

