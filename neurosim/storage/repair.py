"""Copy what is intact in a damaged run file into a new one that resumes.

:func:`repair` reads the damaged file only, and writes a new file: the experiment (which must be
intact: without it nothing can be rebuilt), the newest retained checkpoint whose checksum holds
and that decodes, and what the run had written when that checkpoint was taken (log rows and health
figures that match the checksums the checkpoint recorded, the accuracy matrix, each recording that
still reads; a part that does not is left out, and named). The new file resumes from that
checkpoint as the original would have. Without any intact checkpoint the new file holds the
experiment alone, and resuming it starts the run over.
"""
from __future__ import annotations

import os

import numpy as np

from . import files
from ..errors import NeurosimError
from .store import RunStore, _static_crc, check_rows


def repair(src: str | os.PathLike, dst: str | os.PathLike) -> str:
    """Write what is intact in ``src`` into the new file ``dst`` (which must not exist); returns one
    line saying what was copied and what was left out. ``src`` is never written. Bounded in time
    like :meth:`RunStore.open`."""
    src, dst = os.fspath(src), os.fspath(dst)
    RunStore._check_path(src)
    if os.path.exists(dst):
        if files.same_file(src, dst):
            raise NeurosimError(f"repair writes a new file: --out must differ from {src}")
        raise NeurosimError(f"{dst} already exists; repair writes a new file")
    folder = os.path.dirname(os.path.abspath(dst))
    if not os.path.isdir(folder):
        raise NeurosimError(f"cannot create {dst}: {folder} is not a directory")
    tmp = os.path.join(folder, f".{os.path.basename(dst)}.repair.tmp")
    try:
        report = files.bounded(src, lambda: _copy(src, tmp), "repairing")
        os.replace(tmp, dst)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return report.replace(tmp, dst)


def _try(fn, left_out: list[str], what: str):
    try:
        return fn()
    except (NeurosimError, OSError, RuntimeError, ValueError, KeyError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        left_out.append(reason if reason.startswith(what) else f"{what} ({reason})")
        return None


def _copy(src: str, dst: str) -> str:
    try:
        s = RunStore._reader(src)
    except NeurosimError as e:
        raise NeurosimError(f"cannot repair {src}: {e}") from None
    with s:
        if "static_crc32" in s._counts and _try(lambda: _static_crc(s._f), [], "") != s._counts["static_crc32"]:
            raise NeurosimError(f"cannot repair {src}: its experiment (or the declarations stored with it) is damaged, "
                                f"and the run cannot be rebuilt without it")
        left_out: list[str] = []
        chosen = None
        for info in reversed(s.checkpoints()):
            if info.complete and info.retained:
                blob = _try(lambda: s._load(info.index), left_out, f"checkpoint {info.index}")
                if blob is not None:
                    chosen = (info.index, blob)
                    break
        counts = chosen[1]["store"]["counts"] if chosen else {}
        n_log, n_health = counts.get("log", 0), counts.get("health", 0)
        log = _try(lambda: _log_rows(s, n_log, counts.get("log_crc32")), left_out, "the log") if chosen else None
        health = None
        if chosen and n_health and s._health is not None:
            health = _try(lambda: _health_rows(s, n_health, counts), left_out, "the health table")
        recordings = {}
        for name, rec in s.recorders.items():
            if chosen:
                recordings[name] = _try(lambda: _recording(s, name, rec, counts), left_out, f"recording {name!r}")
        n_tasks = s._R.shape[0] if s._R.maxshape[0] is not None else None
        specs = {name: rec.spec for name, rec in s.recorders.items()}
        with RunStore.create(dst, s.config, n_tasks=n_tasks, recordings=specs, keep=s.keep) as out:
            if log is not None:
                for row in log:
                    out.log(int(row["task"]), int(row["epoch"]), int(row["step"]), float(row["loss"]),
                            float(row["time"]))
            if health is not None:
                for task, epoch, step, name, value in health:
                    out.log_health(task, epoch, step, {name: value})
            for name, data in recordings.items():
                if data is not None:
                    _append(out.recorder(name), data)
            if chosen:
                R = np.asarray(chosen[1]["store"]["R"], np.float64)
                for i in range(R.shape[0]):
                    if np.isfinite(R[i]).any():
                        out.set_R(i, R[i])
                out.write_checkpoint(chosen[1]["state"])
    copied = ["the experiment"]
    if chosen:
        copied.append(f"checkpoint {chosen[0]}")
        if log is not None:
            copied.append(f"{len(log)} log rows")
        kept = [n for n, d in recordings.items() if d is not None]
        if kept:
            copied.append(f"{len(kept)} recording{'s' * (len(kept) != 1)}")
    else:
        copied.append("no checkpoint (resuming starts the run over)")
    tail = f"; left out: {', '.join(left_out)}" if left_out else ""
    return f"repaired {src} into {dst}: {', '.join(copied)}{tail}"


def _log_rows(s: RunStore, n: int, crc: int | None) -> np.ndarray:
    """The log's first ``n`` rows, checked against the running CRC-32 the checkpoint recorded."""
    if n > s.count("log"):
        raise NeurosimError("the log holds fewer rows than the checkpoint counts")
    check_rows(s, s._log, n, "the log", crc)
    return s.read_log()[:n]


def _health_rows(s: RunStore, n: int, counts: dict) -> list:
    n_names = counts.get("health_names", 0)
    check_rows(s, s._health, n, "the health table", counts.get("health_crc32"))
    check_rows(s, s._health_names, n_names, "the health names", counts.get("health_names_crc32"))
    rows = s.read_dataset(s._health, lambda d: d[:n], "the health table")
    names = s.read_dataset(s._health_names, lambda d: d[:n_names], "the health names")
    labels = [bytes(x).decode("utf-8", "replace") for x in names]
    return [(int(r["task"]), int(r["epoch"]), int(r["step"]), labels[int(r["name"])], float(r["value"]))
            for r in rows]


def _recording(s: RunStore, name: str, rec, counts: dict):
    """The recording's data up to the checkpoint's counters."""
    rec.check()
    kind = rec.spec.kind
    if kind == "spikes":
        n = counts.get(f"{name}:events", 0)
        cols = [s.read_dataset(ds, lambda d: d[:n], f"recording {name!r}") for ds, _ in rec.datasets().values()]
        return kind, cols, counts.get(f"{name}:steps", 0)
    if kind == "state":
        n = counts.get(f"{name}:rows", 0)
        return kind, s.read_dataset(rec.datasets()["data"][0], lambda d: d[:n], f"recording {name!r}")
    n = counts.get(f"{name}:snapshots", 0)
    steps, values = rec.read()
    return kind, steps[:n], values[:n]


def _append(rec, data) -> None:
    kind = data[0]
    if kind == "spikes":
        cols, steps = data[1], data[2]
        rec.append(cols[0], cols[1], cols[2] if len(cols) > 2 else None, until=steps)
    elif kind == "state":
        if len(data[1]):
            rec.append(data[1])
    else:
        for step, w in zip(data[1], data[2]):
            rec.append(w, int(step))
