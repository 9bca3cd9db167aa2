"""``neurosim sweep-report``: the table of a sweep, grouped by method and setting, as text, CSV and plots.

Each group is one method at one setting of the swept values that are not seeds; its columns are
the mean and sample standard deviation over the group's trials (its seeds) of ACC, BWT and FWT
(from each trial's accuracy matrix) and of the training wall time (first to last logged batch of
the run file). Trials that did not finish every task (stopped by a scheduler, or still running)
are counted but not grouped.
"""
from __future__ import annotations

import csv
import math
import os

import numpy as np

from ..errors import NeurosimError, optional_import
from ..runs.sweep import Group, Trial, best, collect, groups, is_seed

COLUMNS = ("acc", "bwt", "fwt", "wall")
#: What the report can rank groups by: metrics of the accuracy matrix.
RANKED = COLUMNS[:3]


def _setting(g: Group) -> str:
    return ", ".join(f"{k.split('.', 1)[-1] if k.startswith('plugins.') else k}={_fmt(v)}"
                     for k, v in g.setting.items()) or "-"


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _seeds(g: Group) -> str:
    keys = sorted({k for t in g.trials for k in t.params if is_seed(k)})
    if not keys:
        return str(len(g.trials))
    seeds = sorted((tuple(t.params.get(k) for k in keys) for t in g.trials), key=lambda v: [str(x) for x in v])
    return f"{len(g.trials)} ({' '.join(','.join(map(str, v)) for v in seeds)})"


def _cell(g: Group, what: str) -> str:
    scale = 1 if what == "wall" else 100
    m, s = g.mean(what) * scale, g.spread(what) * scale
    if math.isnan(m):
        return "-"
    return f"{m:.2f}" if math.isnan(s) else f"{m:.2f} ± {s:.2f}"


def table(trials: list[Trial], gs: list[Group], metric: str = "acc", mode: str = "max") -> str:
    head = ("method", "setting", "seeds", "ACC %", "BWT %", "FWT %", "wall s")
    rows = [(g.method, _setting(g), _seeds(g)) + tuple(_cell(g, w) for w in COLUMNS) for g in gs]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in [head] + rows]
    top = best(gs, metric, mode)
    done = sum(t.complete for t in trials)
    lines.append(f"\n{len(trials)} trials, {done} complete, {len(trials) - done} stopped or unfinished")
    if top is not None:
        lines.append(f"best ({metric}, {mode}): {top.method} {_setting(top)}: {_cell(top, metric)}")
    return "\n".join(lines)


def write_csv(gs: list[Group], path: str) -> None:
    keys = sorted({k for g in gs for k in g.setting})
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method"] + keys + ["n"] + [f"{c}_{s}" for c in COLUMNS for s in ("mean", "sd")])
        for g in gs:
            w.writerow([g.method] + [g.setting.get(k, "") for k in keys] + [len(g.trials)]
                       + [repr(x) for c in COLUMNS for x in (g.mean(c), g.spread(c))])


def write_trials_csv(trials: list[Trial], path: str) -> None:
    keys = sorted({k for t in trials for k in t.params} - {"method"})  # the method has its own column
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["trial", "method"] + keys + ["complete", "acc", "bwt", "fwt", "wall", "run"])
        for t in trials:
            done = t.complete
            w.writerow([t.name, t.method] + [t.params.get(k, "") if t.applies(k) else "" for k in keys] + [done]
                       + [repr(getattr(t, c)) if done else "" for c in COLUMNS] + [t.run])


def plots(trials: list[Trial], gs: list[Group], folder: str) -> list[str]:
    """``acc_vs_KEY.png`` for every swept value (trials as points, one colour per method, group means
    joined) and ``matrices.png``, each group's mean accuracy matrix. Returns the files written."""
    optional_import("matplotlib", "plots", "plotting").use("Agg")
    import matplotlib.pyplot as plt

    written = []
    done = [t for t in trials if t.complete]
    methods = sorted({t.method for t in done})
    for key in sorted({k for t in done for k in t.params if k != "method"}):
        fig, ax = plt.subplots(figsize=(6, 4))
        numeric = all(isinstance(t.params.get(key), (int, float)) for t in done if key in t.params)
        for m in methods:
            pts = [(t.params[key], t.acc) for t in done if t.method == m and key in t.params]
            if not pts:
                continue
            xs = [p[0] if numeric else str(p[0]) for p in pts]
            ax.scatter(xs, [100 * p[1] for p in pts], label=m, alpha=0.7)
            if numeric:
                values = sorted(set(xs))
                ax.plot(values, [100 * np.mean([a for x, a in pts if x == v]) for v in values], lw=1)
        if numeric and all(x > 0 for t in done if key in t.params for x in [t.params[key]]):
            spread = [t.params[key] for t in done if key in t.params]
            if max(spread) / min(spread) > 20:
                ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel("ACC (%)")
        ax.set_title(f"ACC against {key}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        path = os.path.join(folder, f"acc_vs_{key.replace('.', '_')}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if gs:
        cols = min(4, len(gs))
        rows = -(-len(gs) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
        for ax in axes.ravel()[len(gs):]:
            ax.axis("off")
        for ax, g in zip(axes.ravel(), gs):
            R = np.mean([t.R for t in g.trials], axis=0)
            ax.imshow(R, vmin=0, vmax=1, cmap="viridis")
            for (i, j), x in np.ndenumerate(R):
                if R.shape[0] <= 10:
                    ax.text(j, i, f"{100 * x:.0f}", ha="center", va="center", fontsize=7,
                            color="w" if x < 0.6 else "k")
            ax.set_title(f"{g.method}\n{_setting(g)}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle("mean accuracy matrix per setting (rows: after task, columns: task)", fontsize=9)
        fig.tight_layout()
        path = os.path.join(folder, "matrices.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(directory: str, *, csv_path: str | None = None, trials_csv: str | None = None,
           plot_dir: str | None = None, metric: str = "acc", mode: str = "max") -> str:
    """The report of the sweep in ``directory`` as text; writes the CSVs and plots asked for."""
    trials = collect(directory)
    gs = groups(trials)
    text = table(trials, gs, metric, mode)
    for path in (csv_path, trials_csv):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise NeurosimError(f"cannot write {path}: its folder does not exist")
    if csv_path:
        write_csv(gs, csv_path)
    if trials_csv:
        write_trials_csv(trials, trials_csv)
    if plot_dir:
        os.makedirs(plot_dir, exist_ok=True)
        text += "\n" + "\n".join(f"plot            {p}" for p in plots(trials, gs, plot_dir))
    return text
