"""Replay of recorded inputs at the checkpoint that recorded them, and at later ones."""
import pytest
import torch

from neurosim import NeurosimError
from neurosim.runs import experiment
from neurosim.cli.main import main
from neurosim.runs.replay import replay

CONFIG = {
    "name": "replay-test",
    "model": {"name": "pmnist", "n_in": 64, "hidden": 48, "seed": 0},
    "scenario": {"name": "permuted", "data": "digits", "tasks": 3, "seed": 0},
    "training": {"steps": 12, "epochs": 1, "batch_size": 32, "lr": 0.1, "seed": 0},
    "plugins": [],
    "record": {"samples": 4, "populations": ["h1", "h2"]},
}


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "run.h5"
    experiment.start(CONFIG, path, progress=False)
    return path


def test_replay_at_the_recording_checkpoint_is_exact(run_file):
    for task in range(3):
        r = replay(run_file, task)
        assert all(len(r.recorded[p][0]) > 20 for p in ("h1", "h2"))
        assert r.differing == {"h1": 0, "h2": 0}
        for p in ("h1", "h2"):
            assert [list(a) for a in r.recorded[p]] == [list(a) for a in r.replayed[p]]


def test_replay_at_a_later_checkpoint_shows_the_change(run_file, capsys):
    early, late = replay(run_file, 0), replay(run_file, 0, after_task=2)
    assert late.checkpoint > early.checkpoint
    assert late.differing["h2"] > 0 and not torch.equal(late.scores, early.scores)
    assert main(["replay", str(run_file), "--task", "0"]) == 0
    out = capsys.readouterr().out
    assert "h1" in out and "identical" in out
    assert main(["replay", str(run_file), "--task", "7"]) == 2
    assert "run of 3 tasks (0-2); it has no task 7" in capsys.readouterr().err


def test_recording_needs_spiking_populations():
    config = dict(CONFIG, record={"samples": 2, "populations": ["out"]})
    with pytest.raises(NeurosimError, match="cannot record spikes of 'out'"):
        experiment.build(config, progress=False)
