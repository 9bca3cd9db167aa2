"""Progress: bars on a terminal, one line per bar (per epoch of training) in a log file."""
import ast
import io
import re
from pathlib import Path

import pytest
import torch

import neurosim as ns
from neurosim.progress import LineProgress, progress_bar

ROOT = Path(__file__).resolve().parents[1]


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_log_file_gets_one_line_per_bar(capsys):
    with progress_bar(total=5000, desc="simulating", unit="step") as bar:
        for _ in range(5000):
            bar.update()
    bar = progress_bar(total=3, desc="task 1 epoch 2", unit="batch", initial=1)
    for _ in range(2):
        bar.update()
        bar.set_postfix(loss="0.250")
    bar.close()
    bar.close()  # closing twice writes nothing more
    assert list(progress_bar(range(4), desc="adapting", unit="window")) == [0, 1, 2, 3]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3
    assert re.fullmatch(r"simulating: 5000/5000 step in \d+\.\d s \(\d+\.\d step/s\)", lines[0])
    assert lines[1].startswith("task 1 epoch 2: 3/3 batch in ") and lines[1].endswith(", loss=0.250")
    assert lines[2].startswith("adapting: 4/4 window in ")


def test_a_disabled_bar_writes_nothing(capsys):
    assert list(progress_bar(range(3), desc="x", enabled=False)) == [0, 1, 2]
    with progress_bar(total=10, desc="x", enabled=False) as bar:
        bar.update(10)
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_tqdm_bar(monkeypatch):
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    bar = progress_bar(total=3, desc="simulating", unit="step")
    assert not isinstance(bar, LineProgress)
    for _ in range(3):
        bar.update()
    bar.close()
    assert "simulating" in term.getvalue() and "\r" in term.getvalue()


def test_training_into_a_log_writes_one_line_per_epoch(capsys):
    torch.manual_seed(0)
    net = ns.Network(dt=1.0)
    net.add_input("x", 10)
    net.add("h", ns.LIF(16, tau_mem=5.0))
    net.add("o", ns.LI(3, tau_mem=5.0))
    net.connect("x", "h", ns.Dense(10, 16, scale=3.0))
    net.connect("h", "o", ns.Dense(16, 3))
    scenario = ns.permuted(ns.generated(n_classes=3, n_features=10, n_train=96, n_test=30), 2, seed=0)
    ns.Continual(net, scenario, steps=4, epochs=3, batch_size=8, progress=True).run()
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == [f"task {t} epoch {e}" for t in range(2) for e in range(3)]
    assert all(" 12/12 batch in " in line and "loss=" in line for line in lines)


def test_every_progress_bar_goes_through_neurosim_progress():
    users = []
    for path in [p for top in ("neurosim", "plugins", "models") for p in (ROOT / top).rglob("*.py")]:
        if path.name == "progress.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            users += [str(path.relative_to(ROOT)) for n in names if n.split(".")[0] == "tqdm"]
    assert not users, f"tqdm used directly in: {', '.join(users)}"
