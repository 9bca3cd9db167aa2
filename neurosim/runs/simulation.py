"""Built-in simulations without learning: the CUBA network and Izhikevich's 2003 network.

:func:`simulate` runs one in chunks of simulated time with a progress bar and returns its spike
events; :func:`summary` and :func:`raster` report them.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..errors import NeurosimError, optional_import
from ..progress import progress_bar
from ..network import Probe
from .builtin import SIMULATIONS

CHUNK_MS = 50.0


def _build(name: str, seed: int):
    """(network, E count) of a built-in experiment; Izhikevich's network draws its thalamic input
    inside the run."""
    if name == "cuba":
        from ..models.cuba import build_cuba

        net = build_cuba(seed=seed)
        return net, int(net.populations["neurons"].n * 0.8)
    from ..models.izhikevich2003 import build_izhikevich2003

    return build_izhikevich2003(seed=seed), 800


def simulate(name: str, duration_ms: float, seed: int, progress: bool = True) -> dict:
    """Run a built-in experiment in chunks (a progress bar over simulated time); returns spike events."""
    if name not in SIMULATIONS:
        raise NeurosimError(f"unknown simulation {name!r}; built-in: {', '.join(SIMULATIONS)}")
    if not duration_ms > 0:
        raise NeurosimError(f"the duration must be > 0 ms, got {duration_ms}")
    torch.manual_seed(seed)
    net, n_exc = _build(name, seed)
    spikes = {"spikes": Probe("neurons", "spikes", events=True)}
    steps = int(round(duration_ms / net.dt))
    chunk = max(1, int(round(CHUNK_MS / net.dt)))
    state, times, idx = None, [], []
    start = time.perf_counter()
    with torch.no_grad(), progress_bar(total=steps, desc=name, unit="step", enabled=progress) as bar:
        for t0 in range(0, steps, chunk):
            n = min(chunk, steps - t0)
            res = net.run(state=state, steps=n, batch=1, outputs=[], probes=spikes)
            state = res.state
            t, _, i = res.probes["spikes"]
            times.append((t + t0).numpy())
            idx.append(i.numpy())
            bar.update(n)
    wall = time.perf_counter() - start
    n_total = net.populations["neurons"].n
    return {"name": name, "dt": net.dt, "steps": steps, "duration_ms": steps * net.dt, "n": n_total,
            "n_exc": n_exc, "t": np.concatenate(times), "i": np.concatenate(idx), "wall_s": wall}


def summary(r: dict) -> str:
    sec = r["duration_ms"] / 1000.0
    exc = r["i"] < r["n_exc"]
    rate_e = exc.sum() / (r["n_exc"] * sec)
    rate_i = (~exc).sum() / ((r["n"] - r["n_exc"]) * sec)
    return "\n".join([
        f"experiment      {r['name']}: {r['n']} neurons, {r['duration_ms']:.0f} ms at dt {r['dt']} ms",
        f"spikes          {r['t'].size}",
        f"mean rate       {r['t'].size / (r['n'] * sec):.2f} Hz (excitatory {rate_e:.2f} Hz, inhibitory {rate_i:.2f} Hz)",
        f"wall time       {r['wall_s']:.2f} s ({r['wall_s'] / sec:.2f} s per simulated second)",
    ])


def raster(r: dict, path: str) -> None:
    optional_import("matplotlib", "plots", "plotting").use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(9, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    t_ms = r["t"] * r["dt"]
    exc = r["i"] < r["n_exc"]
    ax.scatter(t_ms[exc], r["i"][exc], s=0.5, c="tab:blue", label="excitatory")
    ax.scatter(t_ms[~exc], r["i"][~exc], s=0.5, c="tab:red", label="inhibitory")
    ax.set_ylabel("neuron")
    ax.set_title(f"{r['name']}: {r['t'].size} spikes")
    bins = np.arange(0, r["duration_ms"] + 1, 1.0)
    counts, _ = np.histogram(t_ms, bins=bins)
    ax2.plot(bins[:-1], counts / r["n"] * 1000.0, lw=0.8, c="k")
    ax2.set_xlabel("time (ms)")
    ax2.set_ylabel("rate (Hz)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
