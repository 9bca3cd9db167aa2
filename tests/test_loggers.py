"""Logger plugins (TensorBoard, CSV, W&B offline) hold what the run file holds."""
import csv
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest

from neurosim.continual.metrics import bwt
from neurosim.runs import experiment
from neurosim.storage.store import RunStore

HAVE_WANDB = importlib.util.find_spec("wandb") is not None
EXPERIMENT = """
name = "logged"
[model]
name = "pmnist"
n_in = 64
hidden = 32
[scenario]
name = "permuted"
data = "digits"
tasks = 2
[training]
steps = 6
epochs = 1
batch_size = 64
[[plugins]]
name = "tensorboard"
[[plugins]]
name = "csv"
dir = "{csv_dir}"
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run with the TensorBoard logger in its default folder, CSV in a given one and W&B offline."""
    folder = tmp_path_factory.mktemp("logged")
    toml = folder / "logged.toml"
    toml.write_text(EXPERIMENT.format(csv_dir=folder / "tables"))
    config = experiment.load(toml)
    if HAVE_WANDB:
        config["plugins"].append({"name": "wandb", "dir": str(folder / "wb")})
    result = experiment.start(config, folder / "logged.h5", progress=False)
    with RunStore.open(folder / "logged.h5") as store:
        R, log = store.R, store.read_log()
    assert np.isfinite(R).all() and len(log) > 20
    return folder, result, R, log


def test_tensorboard_holds_the_run_files_accuracies_and_losses(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    folder, result, R, log = run
    files = list((folder / "logged_tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    events = EventAccumulator(str(files[0]), size_guidance={"scalars": 0})
    events.Reload()
    for j in range(2):
        got = events.Scalars(f"accuracy/task_{j}")
        assert [e.step for e in got] == [0, 1]
        assert [e.value for e in got] == [np.float32(x) for x in R[:, j]]  # event files hold float32
    loss = events.Scalars("loss")
    assert [e.step for e in loss] == log["step"].tolist()
    assert [e.value for e in loss] == [np.float32(x) for x in log["loss"]]
    assert [e.value for e in events.Scalars("ACC")] == [np.float32(R[i, :i + 1].mean()) for i in range(2)]
    assert events.Scalars("BWT")[-1].value == np.float32(bwt(R)) == np.float32(result.bwt)
    assert events.Scalars("FWT")[-1].value == np.float32(result.fwt)


def test_csv_holds_the_run_files_accuracies_and_losses(run):
    folder, result, R, log = run
    with open(folder / "tables" / "tasks.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["task"]) for r in rows] == [0, 1]
    assert np.array_equal([[float(r[f"task_{j}"]) for j in range(2)] for r in rows], R)
    assert float(rows[-1]["ACC"]) == result.acc and float(rows[-1]["BWT"]) == result.bwt
    assert float(rows[-1]["FWT"]) == result.fwt and rows[0]["BWT"] == "nan"
    with open(folder / "tables" / "batches.csv") as f:
        batches = list(csv.DictReader(f))
    assert [int(b["step"]) for b in batches] == log["step"].tolist()
    assert [float(b["loss"]) for b in batches] == log["loss"].tolist()
    assert [int(b["task"]) for b in batches] == log["task"].tolist()


def wandb_records(path: Path):
    """The protobuf records of a W&B offline run file: a 7-byte header, then LevelDB-style log
    records (crc32c, length, type; type 1 a whole record, 2/3/4 first/middle/last pieces) in
    blocks of 32 KiB."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, pieces = 7, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # block trailer
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:
            break
        pieces += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(pieces)
            pieces = b""
            yield rec


@pytest.mark.skipif(not HAVE_WANDB, reason="wandb is not installed")
def test_wandb_offline_holds_the_run_files_accuracies(run):
    import json

    folder, result, R, log = run
    files = list((folder / "wb").glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 1
    rows = [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in rec.history.item}
            for rec in wandb_records(files[0]) if rec.WhichOneof("record_type") == "history"]
    tasks = [r for r in rows if "after_task" in r]
    assert [r["after_task"] for r in tasks] == [0, 1]
    assert np.array_equal([[r[f"accuracy/task_{j}"] for j in range(2)] for r in tasks], R)
    assert tasks[-1]["ACC"] == result.acc and tasks[-1]["BWT"] == result.bwt
    assert [r["loss"] for r in rows if "loss" in r] == log["loss"].tolist()
