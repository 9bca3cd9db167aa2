"""PNG figures of a run file: spike raster, firing rates, accuracy matrix, forgetting curves, and the
synaptic delays of a checkpoint."""
from __future__ import annotations

import os

import numpy as np

from ..continual.metrics import acc, bwt
from ..errors import NeurosimError, check_choice, check_known, optional_import
from ..storage.store import RunStore

PLOTS = ("raster", "rates", "accuracy", "forgetting", "delays")
OPTIONS = {"raster": ("recording", "start", "stop", "sample"), "rates": ("recording", "bin_ms"), "accuracy": (),
           "forgetting": (), "delays": ("checkpoint",)}
MAX_RASTER_EVENTS = 200_000
RATE_BINS = 50  # bins of the default rate plot: at least one step each, at most 10 ms


def _spike_recording(store: RunStore, name: str | None) -> str:
    names = [n for n, r in store.recorders.items() if r.spec.kind == "spikes"]
    if name is None:
        if not names:
            raise NeurosimError(f"{store.path} has no spike recording")
        if len(names) > 1:
            raise NeurosimError(f"{store.path} has {len(names)} spike recordings: {', '.join(names)}; "
                                "choose one with --recording")
        return names[0]
    if name not in names:
        raise NeurosimError(f"{store.path} has no spike recording {name!r}; it has: {', '.join(names) or 'none'}")
    return name


def _run_name(store: RunStore) -> str:
    config = store.config
    return config.get("name", os.path.basename(store.path)) if isinstance(config, dict) else os.path.basename(store.path)


def _raster(store, ax, recording: str | None = None, start: int = 0, stop: int | None = None, sample: int = 0):
    name = _spike_recording(store, recording)
    spec = store.recorder(name).spec
    if not isinstance(sample, int) or not 0 <= sample < spec.batch:
        raise NeurosimError(f"sample {sample!r} is not in recording {name!r}, which has samples 0-{spec.batch - 1}")
    events = store.read_spikes(name, start, stop)
    t, i = events[0], events[1]
    title = f"{name}: {t.size} spikes"
    if spec.batch > 1:
        keep = events[2] == sample
        t, i = t[keep], i[keep]
        title = f"{name}, sample {sample} of {spec.batch}: {t.size} spikes"
    if t.size > MAX_RASTER_EVENTS:
        t, i = t[:MAX_RASTER_EVENTS], i[:MAX_RASTER_EVENTS]
        title += f" (first {MAX_RASTER_EVENTS} shown)"
    if t.size > 2000:
        ax.scatter(t * spec.dt, i, s=0.5, c="k", marker=".", linewidths=0)
    else:
        ax.scatter(t * spec.dt, i, s=30, c="k", marker="|", linewidths=1)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    ax.set_title(title)


def population_rates(store: RunStore, name: str, bin_ms: float | None = None):
    """``(bin edges in ms, population rate per bin in Hz, rate per neuron in Hz)`` of spike
    recording ``name``, over its samples. Bins are whole steps, ``bin_ms`` long (default: about
    1/50 of the recording, at most 10 ms); the last one may be shorter, and each rate is over the
    bin's own length."""
    rec = store.recorder(name)
    spec = rec.spec
    steps = store.count(f"{name}:steps")
    if not steps:
        raise NeurosimError(f"recording {name!r} of {store.path} covers no steps yet")
    if bin_ms is None:
        bin_ms = min(10.0, steps * spec.dt / RATE_BINS)
    elif not bin_ms > 0:
        raise NeurosimError(f"bin_ms must be > 0, got {bin_ms}")
    bin_steps = min(steps, max(1, int(round(bin_ms / spec.dt))))
    edges = np.append(np.arange(0, steps, bin_steps), steps)
    per_bin = np.zeros(edges.size - 1, np.int64)
    per_neuron = np.zeros(spec.n, np.int64)
    for block in rec.blocks():  # bounded memory, whatever the length of the recording
        per_bin += np.bincount(block[0] // bin_steps, minlength=per_bin.size)[:per_bin.size]
        per_neuron += np.bincount(block[1], minlength=spec.n)
    seconds = np.diff(edges) * spec.dt / 1000
    return (edges * spec.dt, per_bin / (spec.n * spec.batch * seconds),
            per_neuron / (spec.batch * steps * spec.dt / 1000))


def _rates(store, fig, recording: str | None = None, bin_ms: float | None = None):
    name = _spike_recording(store, recording)
    edges, hz, per_neuron = population_rates(store, name, bin_ms)
    ax1, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [2, 1]})
    ax1.stairs(hz, edges, color="k", lw=0.8, baseline=None)
    ax1.set_xlim(edges[0], edges[-1])
    ax1.set_ylim(0, max(1.0, 1.1 * hz.max()))
    ax1.set_xlabel("time (ms)")
    ax1.set_ylabel(f"population rate (Hz, {edges[1] - edges[0]:g} ms bins)")
    batch = store.recorder(name).spec.batch
    ax1.set_title(f"{name}: {int(round(per_neuron.sum() * batch * edges[-1] / 1000))} spikes"
                  + (f", mean over {batch} samples" if batch > 1 else ""))
    ax2.hist(per_neuron, bins=50, color="0.4")
    ax2.set_xlabel("rate per neuron (Hz)")
    ax2.set_ylabel("neurons")


def _known_R(store) -> np.ndarray:
    R = store.R
    if not np.isfinite(R).any():
        raise NeurosimError(f"{store.path} has no accuracy yet")
    return R


def _metrics(R: np.ndarray) -> str:
    """``ACC x %, BWT y %`` over the tasks trained so far."""
    a, b = acc(R), bwt(R)
    return f"ACC {100 * a:.2f} %" + ("" if np.isnan(b) else f", BWT {100 * b:.2f} %")


def _accuracy(store, ax):
    R = _known_R(store)
    future = np.triu(np.ones(R.shape, bool), 1)  # tasks not yet trained at that row
    from matplotlib import colormaps

    cmap = colormaps["viridis"].copy()
    cmap.set_bad("0.92")
    im = ax.imshow(np.ma.masked_where(future | ~np.isfinite(R), R), vmin=0, vmax=1, cmap=cmap)
    for (i, j), x in np.ndenumerate(R):
        if np.isfinite(x):
            if future[i, j]:
                ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=8, color="0.45", style="italic")
            else:
                ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=8, color="w" if x < 0.6 else "k")
    ax.set_xlabel("evaluated on task (grey: not trained yet)")
    ax.set_ylabel("after training task")
    ax.set_xticks(range(R.shape[1]))
    ax.set_yticks(range(R.shape[0]))
    ax.set_title(f"{_run_name(store)}: accuracy matrix R ({_metrics(R)})")
    ax.figure.colorbar(im, ax=ax)


def _forgetting(store, ax):
    R = _known_R(store)
    after = np.arange(R.shape[0])
    for j in range(R.shape[1]):
        ax.plot(after[j:], R[j:, j], marker="o", label=f"task {j}")
    ax.set_xticks(after)
    ax.set_xlabel("after training task")
    ax.set_ylabel("accuracy on the task")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{_run_name(store)}: forgetting, each task's accuracy after training it and later tasks "
                 f"({_metrics(R)})", fontsize=10)
    ax.legend(fontsize=8)


def checkpoint_delays(network_state: dict) -> dict[str, tuple[np.ndarray, int]]:
    """``{projection: (integer delays, max_delay)}`` of every delayed projection in a network state
    dict (a checkpoint's ``"network"``): rounded learnt positions, or the fixed delays."""
    from ..projections.delayed import delays_from_state

    found = {}
    for key, extra in network_state.items():
        if key.endswith("._extra_state") and isinstance(extra, dict) and "max_delay" in extra:
            prefix = key[: -len("_extra_state")]
            connection = prefix.removeprefix("projections.").split(".")[0]  # also inside a Chain
            found[connection] = delays_from_state(network_state, prefix)
    return found


def _delays(store, ax, checkpoint: int | None = None):
    if checkpoint is None:
        latest = store.latest_checkpoint()
        if latest is None:
            raise NeurosimError(f"{store.path} has no checkpoint")
        checkpoint, state = latest
    else:
        state = store.checkpoint(checkpoint)
    found = checkpoint_delays(state["network"])
    if not found:
        raise NeurosimError(f"checkpoint {checkpoint} of {store.path} has no delayed projection")
    top = max(D for _, D in found.values())
    for name, (d, D) in found.items():
        ax.hist(d.ravel(), bins=np.arange(top + 1) - 0.5, histtype="step", lw=1.5, label=f"{name} (max {D - 1})")
    ax.set_xlabel("delay (steps)")
    ax.set_ylabel("synapses")
    ax.set_title(f"synaptic delays at checkpoint {checkpoint}")
    ax.legend(fontsize=8)


def plot(path: str | os.PathLike, what: str, out_png: str | os.PathLike, **opts) -> None:
    """Write figure ``what`` of run file ``path`` to ``out_png``: ``raster`` (options recording,
    start, stop in steps, sample of a batch, default 0), ``rates`` (recording, bin_ms; see
    :func:`population_rates`), ``accuracy``, ``forgetting`` or ``delays`` (histogram per delayed
    projection at ``checkpoint``, default the latest). ``recording`` may be left out only when the
    file has one spike recording."""
    check_choice("plot", what, PLOTS)
    check_known(f"{what} plot", opts, OPTIONS[what])
    out_png = os.fspath(out_png)
    folder = os.path.dirname(os.path.abspath(out_png))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise NeurosimError(f"cannot write {out_png}: {folder} is not a writable directory")
    optional_import("matplotlib", "plots", "plotting").use("Agg")
    import matplotlib.pyplot as plt

    with RunStore.open(path, validate=True) as store:
        fig = plt.figure(figsize=(9, 6))
        try:
            if what == "rates":
                _rates(store, fig, **opts)
            else:
                fn = {"raster": _raster, "accuracy": _accuracy, "forgetting": _forgetting, "delays": _delays}[what]
                fn(store, fig.add_subplot(), **opts)
            fig.tight_layout()
            fig.savefig(out_png, dpi=120)
        finally:
            plt.close(fig)
