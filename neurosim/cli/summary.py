"""A readable summary of a run file (also of one that is being written, or was left by a killed run)."""
from __future__ import annotations

import datetime
import os

import numpy as np

from ..storage.store import RunStore


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).isoformat(sep=" ", timespec="seconds")


def _ranges(ks: list[int]) -> str:
    """``[0, 1, 2, 5]`` as ``"0-2, 5"``."""
    out, start = [], None
    for a, b in zip(ks, ks[1:] + [None]):
        start = a if start is None else start
        if b != a + 1:
            out.append(str(a) if a == start else f"{start}-{a}")
            start = None
    return ", ".join(out)


def summarise(path: str | os.PathLike) -> str:
    """Config name, format, run id, tasks and R so far, log length and last row, the latest health
    figures, recordings with their sizes, checkpoints (complete, retained, interrupted), delays at
    the latest checkpoint. The file is checked in full first (:meth:`RunStore.validate`): a damaged
    one gives a one-line error, never a summary of damaged data."""
    with RunStore.open(path, validate=True) as s:
        name = s.config.get("name", "(unnamed)") if isinstance(s.config, dict) else "(unnamed)"
        lines = [f"run          {os.fspath(path)}: {name}",
                 f"id           {s.run_id[:12]}, created {s.created}, neurosim {s.neurosim_version}, format {s.format}",
                 f"file         {_size(os.path.getsize(path))}, commit {s._seq}"]
        R = s.R
        known = [i for i in range(R.shape[0]) if np.isfinite(R[i]).any()]
        lines.append(f"tasks        {R.shape[0] if s._R.maxshape[0] is not None else f'{R.shape[0]} so far'}; "
                     f"rows of R known: {_ranges(known) or 'none'}")
        for i in known:
            lines.append("  R[%d]       " % i + " ".join("  -  " if np.isnan(x) else f"{x:.3f}" for x in R[i]))
        log = s.read_log()
        if len(log):
            last = log[-1]
            lines.append(f"log          {len(log)} rows; last: task {last['task']}, epoch {last['epoch']}, "
                         f"step {last['step']}, loss {last['loss']:.4g}")
        else:
            lines.append("log          empty")
        health = s.read_health()
        if health:
            latest = ", ".join(f"{name} {rows['value'][-1]:.4g}" for name, rows in health.items() if len(rows))
            lines.append(f"health       {sum(len(r) for r in health.values())} figures logged; latest: {latest}")
        if not s.recorders:
            lines.append("recordings   none")
        for k, (rname, rec) in enumerate(s.recorders.items()):
            spec = rec.spec
            head = "recordings   " if k == 0 else "             "
            src = f" of {spec.source}" if spec.source else ""
            if spec.kind == "spikes":
                events, steps = s.count(f"{rname}:events"), s.count(f"{rname}:steps")
                seconds = steps * spec.dt / 1000
                rate = f", {events / (spec.n * spec.batch * seconds):.2f} Hz" if seconds else ""
                what = (f"{events} events over {steps} steps ({seconds:.3g} s at dt {spec.dt} ms) from "
                        f"{spec.n} neurons{rate}")
            elif spec.kind == "state":
                rows = s.count(f"{rname}:rows")
                when = f"{rows} steps" if spec.stride == 1 else f"{rows} values over {rows * spec.stride} steps " \
                                                                 f"(one every {spec.stride} steps)"
                what = (f"{spec.variable}{' (' + spec.units + ')' if spec.units else ''}: {when} at dt {spec.dt} ms"
                        + (f", {spec.batch} samples" if spec.batch > 1 else "")
                        + f", {spec.n} {'channels' if spec.variable == 'input' else 'neurons'}")
            else:
                what = f"{s.count(f'{rname}:snapshots')} snapshots of shape {spec.shape}"
            lines.append(f"{head}{rname} ({spec.kind}{src}): {what}")
        ckpts = s.checkpoints()
        done = [c for c in ckpts if c.complete]
        if not ckpts:
            lines.append("checkpoints  none")
        else:
            kept = [c.index for c in done if c.retained]
            text = f"{len(done)} complete, retained {_ranges(kept) or 'none'}"
            if done:
                c = done[-1]
                text += f"; latest {c.index} ({_size(c.size)}, {_when(c.time)})"
            lines.append(f"checkpoints  {text}")
            for c in ckpts:
                if not c.complete:
                    lines.append(f"             {c.index} incomplete (its writer stopped before committing it)")
            latest = s.latest_checkpoint()
            state = latest[1] if latest is not None else None
            if isinstance(state, dict) and isinstance(state.get("network"), dict):  # a runner's checkpoint
                lines += _delays(state["network"])
        return "\n".join(lines)


def _delays(network_state: dict) -> list[str]:
    """One line per delayed projection of the latest checkpoint: its integer delays' range and mean."""
    from .plots import checkpoint_delays

    out = []
    for k, (name, (d, D)) in enumerate(checkpoint_delays(network_state).items()):
        head = "delays       " if k == 0 else "             "
        out.append(f"{head}{name}: {d.min()}-{d.max()} steps, mean {d.mean():.2f} (max_delay {D}, {d.size} synapses)")
    return out
