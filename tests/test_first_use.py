"""What a first user ran into: plots of short or several recordings, the accuracy figures, replay in a
task-incremental run, inspect's wording, subsets of image data, plugins from the user's own file,
``Sparse`` with Dale's law, and how many checkpoints a run file keeps."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

import neurosim as ns  # noqa: E402
from neurosim.cli.main import main  # noqa: E402
from neurosim.cli.plots import plot  # noqa: E402
from neurosim.cli.summary import summarise  # noqa: E402
from neurosim.runs import experiment  # noqa: E402
from neurosim.runs.replay import replay  # noqa: E402
from neurosim.storage.store import RunStore  # noqa: E402

DT, STEPS, BATCH, N = 0.05, 20, 8, 48  # a 1 ms recording of 8 samples


@pytest.fixture
def figures(monkeypatch):
    """The figures ``plot`` saves."""
    saved, save = [], Figure.savefig

    def keep(fig, *args, **kwargs):
        saved.append(fig)
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", keep)
    return saved


@pytest.fixture
def short_recordings(tmp_path):
    """Two spike recordings of 20 steps at dt 0.05 ms (1 ms) of 8 samples, and an input recording."""
    rng = np.random.default_rng(0)
    path = tmp_path / "short.h5"
    specs = {name: dict(kind="spikes", n=N, dt=DT, batch=BATCH, source=name) for name in ("h1", "h2")}
    specs["input"] = dict(kind="state", n=64, dt=DT, batch=BATCH, source="x", variable="input")
    events = {}
    with RunStore.create(path, {"name": "short-run"}, n_tasks=3, recordings=specs) as store:
        for name in ("h1", "h2"):
            z = rng.random((STEPS, BATCH, N)) < 0.07
            t, b, i = np.nonzero(z)
            store.recorder(name).append(t, i, b, until=STEPS)
            events[name] = (t, i, b)
        store.recorder("input").append(rng.random((STEPS, BATCH, 64)))
        store.set_R(0, [0.9, 0.2, 0.1])
        store.set_R(1, [0.6, 0.95, 0.3])
    return path, events


def plotted_rates(ax):
    """(bin edges in ms, rates in Hz) of the population-rate panel, drawn as stairs or as a line."""
    for p in ax.patches:
        if hasattr(p, "get_data"):
            values, edges = p.get_data()[:2]
            return np.asarray(edges), np.asarray(values)
    x, y = ax.lines[0].get_data()
    step = x[1] - x[0] if len(x) > 1 else 10.0
    return np.append(x, x[-1] + step), np.asarray(y)


def test_rates_of_a_short_recording(short_recordings, figures, tmp_path):
    path, events = short_recordings
    plot(path, "rates", tmp_path / "r.png", recording="h1")
    edges, hz = plotted_rates(figures[-1].axes[0])
    true_rate = len(events["h1"][0]) / (N * BATCH * STEPS * DT / 1000)
    assert len(hz) >= 10, "a 1 ms recording needs bins shorter than 1 ms"
    assert edges[-1] == pytest.approx(STEPS * DT)
    assert np.sum(hz * np.diff(edges)) / (STEPS * DT) == pytest.approx(true_rate)
    plot(path, "rates", tmp_path / "r.png", recording="h1", bin_ms=10.0)  # a bin longer than the recording
    edges, hz = plotted_rates(figures[-1].axes[0])
    assert hz[0] == pytest.approx(true_rate)


def test_raster_names_the_recording_and_one_sample(short_recordings, figures, tmp_path):
    path, events = short_recordings
    with pytest.raises(ns.NeurosimError, match="2 spike recordings: h1, h2; choose one"):
        plot(path, "raster", tmp_path / "r.png")
    assert main(["plot", str(path), "raster", "--out", str(tmp_path / "r.png")]) == 2
    assert main(["plot", str(path), "raster", "--recording", "h2", "--sample", "3",
                 "--out", str(tmp_path / "r.png")]) == 0
    ax = figures[-1].axes[0]
    t, i, b = events["h2"]
    shown = ax.collections[0].get_offsets()
    assert len(shown) == (b == 3).sum()
    assert np.allclose(shown[:, 0], t[b == 3] * DT) and np.array_equal(shown[:, 1], i[b == 3])
    assert "sample 3 of 8" in ax.get_title()
    with pytest.raises(ns.NeurosimError, match="sample 8 .* 0-7"):
        plot(path, "raster", tmp_path / "r.png", recording="h2", sample=8)


def test_accuracy_figures_say_what_they_show(short_recordings, figures, tmp_path):
    path, _ = short_recordings
    plot(path, "forgetting", tmp_path / "f.png")
    title = figures[-1].axes[0].get_title()
    assert "forgetting" in title.lower() and "short-run" in title
    plot(path, "accuracy", tmp_path / "a.png")
    ax = figures[-1].axes[0]
    title = ax.get_title()
    assert "short-run" in title and "ACC 77.50 %" in title and "BWT -30.00 %" in title
    shown = ax.images[0].get_array()
    future = np.triu(np.ones((3, 3), bool), 1)
    assert np.array_equal(np.ma.getmaskarray(shown)[:2], future[:2]), "cells of tasks not yet trained stand apart"
    labels = {t.get_text() for t in ax.texts}
    assert {"0.90", "0.95", "0.60"} <= labels and "0.20" in labels


def test_inspect_describes_an_input_recording(short_recordings):
    path, _ = short_recordings
    text = summarise(path)
    line = next(x for x in text.splitlines() if "input (state of x)" in x)
    assert "20 steps" in line and "8 samples" in line and "20 samples" not in line


# -- replay of a task-incremental run ----------------------------------------------------------------
SPLIT = {
    "name": "split-replay",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 32, "seed": 0},
    "scenario": {"name": "split", "data": "digits", "tasks": 5, "mode": "task", "seed": 0},
    "training": {"steps": 8, "epochs": 1, "batch_size": 32, "lr": 0.1, "seed": 0},
    "plugins": [],
    "record": {"samples": 6, "populations": ["h1"]},
}


@pytest.fixture(scope="module")
def split_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("split") / "run.h5"
    experiment.start(SPLIT, path, progress=False)
    return path


def test_replay_is_masked_to_the_task_and_shows_labels(split_run, capsys):
    r = replay(split_run, 2)
    classes = [4, 5]
    assert torch.isinf(r.scores[:, [c for c in range(10) if c not in classes]]).all()
    assert set(r.scores.argmax(1).tolist()) <= set(classes)
    test = experiment.scenario_from(SPLIT["scenario"]).tasks[2].test
    assert r.labels.tolist() == test.y[:6].tolist()
    assert main(["replay", str(split_run), "--task", "2"]) == 0
    out = capsys.readouterr().out
    assert f"labels          {test.y[:6].tolist()}" in out and "predicted" in out and "correct" in out


def test_replay_of_a_task_the_run_does_not_have(split_run, capsys):
    assert main(["replay", str(split_run), "--task", "7"]) == 2
    err = capsys.readouterr().err
    assert "task 7" in err and "5 tasks (0-4)" in err and "record" not in err
    assert main(["replay", str(split_run), "--task", "1", "--after-task", "5"]) == 2
    assert "5 tasks (0-4)" in capsys.readouterr().err


# -- experiment files --------------------------------------------------------------------------------
def test_image_data_take_a_subset():
    spec = {"name": "permuted", "data": "digits", "tasks": 2, "options": {"n_train": 300, "n_test": 120}}
    scenario = experiment.scenario_from(spec)
    assert [len(t.train.y) for t in scenario.tasks] == [300, 300] and len(scenario.tasks[0].test.y) == 120
    with pytest.raises(ns.NeurosimError, match="unknown digits option 'size'"):
        experiment.scenario_from(dict(spec, options={"size": 3}))
    with pytest.raises(ns.NeurosimError, match="n_train=5000 .* 1348"):
        experiment.scenario_from(dict(spec, options={"n_train": 5000}))


PLUGIN_FILE = '''
import neurosim as ns


class Counter(ns.Plugin):
    name = "counter"

    def __init__(self, start=0):
        self.batches = start

    def after_batch(self, runner):
        self.batches += 1

    def state_dict(self):
        return {"batches": self.batches}

    def load_state_dict(self, state):
        self.batches = state["batches"]
'''


def test_a_plugin_from_the_users_own_file(tmp_path, monkeypatch):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "my_plugins.py").write_text(PLUGIN_FILE)
    (folder / "exp.toml").write_text(
        '[model]\nname = "pmnist"\nn_in = 64\nhidden = 16\n'
        '[scenario]\nname = "permuted"\ndata = "digits"\ntasks = 2\noptions = { n_train = 64, n_test = 32 }\n'
        '[training]\nsteps = 4\nepochs = 1\nbatch_size = 32\n'
        '[[plugins]]\nname = "my_plugins.py:Counter"\nstart = 100\n')
    monkeypatch.chdir(tmp_path)  # the file is found next to the experiment, not in the working directory
    config = experiment.load(folder / "exp.toml")
    runner = experiment.build(config, progress=False)
    assert type(runner.plugins[0]).__name__ == "Counter"
    runner.run()
    assert runner.plugins[0].batches == 104
    plugin = ns.create_plugin("neurosim.plugins.replay:Replay", memory_size=10)
    assert type(plugin).__name__ == "Replay" and plugin.memory_size == 10
    for name, message in [("no_such_module:X", "cannot import no_such_module"),
                          ("neurosim.plugins.replay:Nope", "has no Nope"),
                          ("neurosim.errors:NeurosimError", "not a neurosim.Plugin subclass"),
                          (str(folder / "missing.py") + ":X", "no such file")]:
        with pytest.raises(ns.NeurosimError, match=message):
            ns.create_plugin(name)


# -- Sparse with Dale's law ----------------------------------------------------------------------------
def test_sparse_dale_refuses_what_it_would_silently_change():
    with pytest.raises(ns.NeurosimError, match="dale takes signs"):
        ns.Sparse(4, 3, p=1.0, dale=torch.tensor([True, False, True, True]))
    with pytest.raises(ns.NeurosimError, match="negative weight -0.5 from excitatory presynaptic neuron 1"):
        ns.Sparse(4, 3, pre=[0, 1], post=[0, 2], weight=[0.5, -0.5], dale=torch.tensor([1.0, 1.0, -1.0, 1.0]))
    s = ns.Sparse(4, 3, pre=[0, 2], post=[0, 2], weight=[0.5, -0.5], dale=torch.tensor([1.0, 1.0, -1.0, 1.0]))
    assert s.to_dense()[2, 2] == -0.5


def test_sparse_weights_from_a_function_of_the_synapses():
    signs = torch.tensor([1.0] * 8 + [-1.0] * 2)
    s = ns.Sparse(10, 6, p=0.5, seed=3, dale=signs,
                  weight=lambda pre, post: np.where(pre < 8, 0.1, 0.4) + 0.01 * post)
    pre, post = s.pre.numpy(), s.post.numpy()
    expected = np.where(pre < 8, 0.1, -0.4) + np.where(pre < 8, 0.01, -0.01) * post
    assert np.allclose(s.effective_weight().detach().numpy(), expected)
    with pytest.raises(ns.NeurosimError, match="the weight function returned 3 values for .* synapses"):
        ns.Sparse(10, 6, p=0.5, seed=3, weight=lambda pre, post: np.ones(3))


# -- checkpoint retention ------------------------------------------------------------------------------
RETAIN = {
    "name": "retain",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 16, "seed": 0},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 2, "options": {"n_train": 128, "n_test": 32}},
    "training": {"steps": 4, "epochs": 1, "batch_size": 16, "checkpoint_every": 2},
    "plugins": [],
}


def retained(path):
    with RunStore.open(path) as store:
        return [c.index for c in store.checkpoints() if c.retained], store.config


def test_checkpoints_are_bounded_unless_asked(tmp_path):
    experiment.start(RETAIN, tmp_path / "default.h5", progress=False)
    kept, config = retained(tmp_path / "default.h5")
    assert kept == [8, 9] and config["training"]["keep"] == 2  # 10 written: 4 + 1 per task
    experiment.start(dict(RETAIN, training=dict(RETAIN["training"], keep="all")), tmp_path / "all.h5", progress=False)
    assert retained(tmp_path / "all.h5")[0] == list(range(10))
    experiment.start(RETAIN, tmp_path / "five.h5", keep=5, progress=False)
    kept, config = retained(tmp_path / "five.h5")
    assert kept == [5, 6, 7, 8, 9] and config["training"]["keep"] == 5
    recorded = dict(RETAIN, record={"samples": 2, "populations": ["h1"]})
    experiment.start(recorded, tmp_path / "recorded.h5", progress=False)  # replay needs every task's end
    assert retained(tmp_path / "recorded.h5")[0] == list(range(10))
    with pytest.raises(ns.NeurosimError, match="keep must be a positive integer or 'all'"):
        experiment.build(dict(RETAIN, training=dict(RETAIN["training"], keep=0)), progress=False)
