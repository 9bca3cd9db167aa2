"""What the ``neurosim`` commands do, once :mod:`neurosim.cli.main` has parsed and checked their arguments."""
from __future__ import annotations

import os
import time

import numpy as np

from ..continual import distributed
from ..errors import NeurosimError
from ..runs import experiment
from ..runs.builtin import DEFAULT_EXPERIMENT
from ..runs.experiment import HLOP_DIGITS, PERMUTED_DIGITS, build, with_plugins
from ..runs.simulation import raster, simulate, summary
from ..storage.store import RunFileExists

#: Methods of the default experiment (:data:`~neurosim.runs.builtin.METHODS`): their plugin lists.
PLUGINS = {"baseline": [], "hlop": [HLOP_DIGITS]}


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
    base = with_plugins(PERMUTED_DIGITS, [])
    for section in ("model", "scenario", "training"):
        base[section]["seed"] = args.seed
    rows = []
    for m in methods:
        runner = build(with_plugins(base, PLUGINS[m]), progress=not args.quiet)
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
        if r.finished_before:
            print(f"run file        {args.run} was finished already: nothing trained, nothing written")
    return 0


def _cmd_sweep(args) -> int:
    from ..runs import sweep
    from .sweeps import RANKED, report

    s = sweep.load(args.sweep)
    r = sweep.run(s, address=args.address, resume=args.resume, num_cpus=args.num_cpus, temp_dir=args.ray_temp)
    print(report(r.directory, **({"metric": s.metric, "mode": s.mode} if s.metric in RANKED else {})))
    print(f"\nsweep           {s.name}: {r.trials} trials, {r.errors} failed")
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

    opts = {k: v for k, v in (("recording", args.recording), ("bin_ms", args.bin_ms), ("sample", args.sample),
                              ("checkpoint", args.checkpoint)) if v is not None}
    plot(args.run, args.what, args.out, **opts)
    print(args.out)
    return 0


def _simulation(args) -> None:
    r = simulate(args.experiment, args.duration, args.seed, progress=not args.quiet)
    print(summary(r))
    if args.raster:
        raster(r, args.raster)
        print(f"raster          {args.raster}")


def _cmd_run(args) -> int:
    if args.experiment == DEFAULT_EXPERIMENT:
        _continual(args)
    elif args.experiment.endswith(".toml"):
        _experiment_file(args)
    else:
        _simulation(args)
    return 0


COMMANDS = {"run": _cmd_run, "resume": _cmd_resume, "repair": _cmd_repair, "replay": _cmd_replay,
            "inspect": _cmd_inspect, "plot": _cmd_plot, "sweep": _cmd_sweep, "sweep-report": _cmd_sweep_report}
