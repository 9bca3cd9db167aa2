"""PNG figures of a run file: spike raster, firing rates, accuracy matrix, forgetting curves, and the
synaptic delays of a checkpoint."""
from __future__ import annotations

import os

import numpy as np

from ..errors import NeurosimError, check_choice, check_known, optional_import
from ..storage.store import RunStore

PLOTS = ("raster", "rates", "accuracy", "forgetting", "delays")
OPTIONS = {"raster": ("recording", "start", "stop"), "rates": ("recording", "bin_ms"), "accuracy": (), "forgetting": (),
           "delays": ("checkpoint",)}
MAX_RASTER_EVENTS = 200_000


def _spike_recording(store: RunStore, name: str | None) -> str:
    names = [n for n, r in store.recorders.items() if r.spec.kind == "spikes"]
    if name is None:
        if not names:
            raise NeurosimError(f"{store.path} has no spike recording")
        return names[0]
    if name not in names:
        raise NeurosimError(f"{store.path} has no spike recording {name!r}; it has: {', '.join(names) or 'none'}")
    return name


def _raster(store, ax, recording: str | None = None, start: int = 0, stop: int | None = None):
    name = _spike_recording(store, recording)
    spec = store.recorder(name).spec
    events = store.read_spikes(name, start, stop)
    t, i = events[0], events[1]
    title = f"{name}: {t.size} spikes"
    if t.size > MAX_RASTER_EVENTS:
        t, i = t[:MAX_RASTER_EVENTS], i[:MAX_RASTER_EVENTS]
        title += f" (first {MAX_RASTER_EVENTS} shown)"
    ax.scatter(t * spec.dt, i, s=0.5, c="k", marker=".", linewidths=0)
    ax.set_xlabel("time (ms)")
    ax.set_ylabel("neuron")
    ax.set_title(title)


def _rates(store, fig, recording: str | None = None, bin_ms: float = 10.0):
    name = _spike_recording(store, recording)
    rec = store.recorder(name)
    spec = rec.spec
    steps = store.count(f"{name}:steps")
    if not steps:
        raise NeurosimError(f"recording {name!r} of {store.path} covers no steps yet")
    bin_steps = max(1, int(round(bin_ms / spec.dt)))
    per_bin = np.zeros(-(-steps // bin_steps), np.int64)
    per_neuron = np.zeros(spec.n, np.int64)
    for block in rec.blocks():  # bounded memory, whatever the length of the recording
        per_bin += np.bincount(block[0] // bin_steps, minlength=per_bin.size)[:per_bin.size]
        per_neuron += np.bincount(block[1], minlength=spec.n)
    ax1, ax2 = fig.subplots(2, 1, gridspec_kw={"height_ratios": [2, 1]})
    hz = per_bin / (spec.n * spec.batch * bin_steps * spec.dt / 1000)
    ax1.plot(np.arange(per_bin.size) * bin_steps * spec.dt, hz, lw=0.8, c="k")
    ax1.set_xlabel("time (ms)")
    ax1.set_ylabel(f"population rate (Hz, {bin_steps * spec.dt:g} ms bins)")
    ax1.set_title(f"{name}: {int(per_neuron.sum())} spikes")
    ax2.hist(per_neuron / (spec.batch * steps * spec.dt / 1000), bins=50, color="0.4")
    ax2.set_xlabel("rate per neuron (Hz)")
    ax2.set_ylabel("neurons")


def _known_R(store) -> np.ndarray:
    R = store.R
    if not np.isfinite(R).any():
        raise NeurosimError(f"{store.path} has no accuracy yet")
    return R


def _accuracy(store, ax):
    R = _known_R(store)
    im = ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
    for (i, j), x in np.ndenumerate(R):
        if np.isfinite(x):
            ax.text(j, i, f"{x:.2f}", ha="center", va="center", fontsize=8, color="w" if x < 0.6 else "k")
    ax.set_xlabel("evaluated on task")
    ax.set_ylabel("after training task")
    ax.set_title("accuracy matrix R")
    ax.figure.colorbar(im, ax=ax)


def _forgetting(store, ax):
    R = _known_R(store)
    after = np.arange(R.shape[0])
    for j in range(R.shape[1]):
        ax.plot(after[j:], R[j:, j], marker="o", label=f"task {j}")
    ax.set_xticks(after)
    ax.set_xlabel("after training task")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.set_title("accuracy of each task as training goes on")
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
    start, stop in steps), ``rates`` (recording, bin_ms), ``accuracy``, ``forgetting`` or ``delays``
    (histogram per delayed projection at ``checkpoint``, default the latest)."""
    check_choice("plot", what, PLOTS)
    check_known(f"{what} plot", opts, OPTIONS[what])
    out_png = os.fspath(out_png)
    folder = os.path.dirname(os.path.abspath(out_png))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise NeurosimError(f"cannot write {out_png}: {folder} is not a writable directory")
    optional_import("matplotlib", "plots", "plotting").use("Agg")
    import matplotlib.pyplot as plt

    with RunStore.open(path) as store:
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
