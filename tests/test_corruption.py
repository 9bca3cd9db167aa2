"""Damaged run files: seeded byte flips, zeroed 4 KiB blocks and truncations of a generated run file
(left by a run stopped with Ctrl-C, and by a killed one), each given to `inspect`, `replay` and
`resume` with a time limit. None hangs or crashes; each either prints what it prints for the
undamaged file or ends in one line, and a file is written only by a command that succeeded.
`repair` copies what is intact into a file that resumes to the undamaged run's result."""
import random
import re
import signal

import numpy as np
import pytest

from clirun import Child, digest, run_cli, same_run
from neurosim.continual import runner as runner_module
from neurosim.storage.store import RunStore

EXPERIMENT = """
name = "damaged"
[model]
name = "pmnist"
n_in = 64
hidden = 8
seed = 1
[scenario]
name = "permuted"
data = "digits"
tasks = 2
seed = 2
[training]
steps = 2
epochs = 1
batch_size = 128
lr = 0.1
seed = 3
checkpoint_every = 4
[record]
samples = 2
populations = ["h1"]
"""
STOP = 15  # the batch during which the run is stopped: task 1, batch 4 (checkpoints 0-4, keep 3)
COMMANDS = {"inspect": ["inspect", "{}"], "replay": ["replay", "{}", "--task", "0"], "resume": ["resume", "{}", "--quiet"]}
TIMEOUT = 120


def stopped_at(step: int, how: int):
    def setup():
        train = runner_module.Continual.train_batch

        def train_batch(self, task, idx):
            if self.step + 1 == step:
                import os

                os.kill(os.getpid(), how)
            return train(self, task, idx)

        runner_module.Continual.train_batch = train_batch

    return setup


@pytest.fixture(scope="module")
def bases(tmp_path_factory):
    """{"stopped": (bytes, reference outputs), "killed": ...} and the finished run's file."""
    folder = tmp_path_factory.mktemp("damaged")
    toml = folder / "exp.toml"
    toml.write_text(EXPERIMENT)
    done = folder / "done.h5"
    assert run_cli(["run", toml, "--store", done, "--quiet", "--keep", "3"])[0] == 0
    out = {}
    for name, how, code in (("stopped", signal.SIGINT, 130), ("killed", signal.SIGKILL, -9)):
        path = folder / f"{name}.h5"
        rc, _, err = run_cli(["run", toml, "--store", path, "--quiet", "--keep", "3"], setup=stopped_at(STOP, how))
        assert rc == code, err
        data = path.read_bytes()
        refs = {}
        for cmd, argv in COMMANDS.items():
            target = folder / "v.h5"
            target.write_bytes(data)
            rc, text, err = run_cli([a.format(target) for a in argv], timeout=TIMEOUT)
            assert rc == 0, (name, cmd, err)
            refs[cmd] = shown(text, target)
            if cmd == "resume":
                assert same_run(target, done)
        out[name] = (data, refs)
    return out, done


def shown(text: str, path) -> str:
    """What a command printed, with the path and the file's size (``inspect`` reports the size it
    measures: cutting the uncommitted tail a killed writer left changes it, not the run) masked."""
    return re.sub(r"(?m)^file +[0-9.]+ [kMG]?B,", "file SIZE,", text.replace(str(path), "RUN.h5"))


def variant(data: bytes, seed: int) -> tuple[bytes, str]:
    """Seed ``s``: a flipped bit (``s % 3 == 0``), a zeroed 4 KiB block (1) or a truncation (2).
    Flips and blocks land on bytes that hold something (most of a run file is preallocated zeros)."""
    rnd = random.Random(seed)
    a = np.frombuffer(data, np.uint8)
    used = np.flatnonzero(a)
    d = bytearray(data)
    kind = seed % 3
    if kind == 0:
        at = int(used[rnd.randrange(used.size)]) if rnd.random() < 0.85 else rnd.randrange(len(d))
        d[at] ^= 1 << rnd.randrange(8)
        return bytes(d), f"bit flip at {at}"
    if kind == 1:
        blocks = np.unique(used // 4096)
        at = int(blocks[rnd.randrange(blocks.size)]) * 4096
        d[at:at + 4096] = bytes(len(d[at:at + 4096]))
        return bytes(d), f"4 KiB zeroed at {at}"
    at = rnd.randrange(len(d))
    return bytes(d[:at]), f"truncated to {at}"


def attack(bases, tmp_path, base: str, seed: int) -> dict:
    """Every command on variant ``seed`` of ``base``: its outcome ("same" or "refused")."""
    (data, refs) = bases[0][base]
    damaged, what = variant(data, seed)
    path = tmp_path / "v.h5"
    outcomes = {}
    for cmd, argv in COMMANDS.items():
        path.write_bytes(damaged)
        before = digest(path)
        rc, out, err = run_cli([a.format(path) for a in argv], timeout=TIMEOUT)
        label = f"{base} {what}, {cmd}: exit {rc}, {err.strip()[-300:]!r}"
        assert rc is not None, f"hangs: {label}"
        assert rc >= 0, f"crashes: {label}"
        if rc == 0:
            assert shown(out, path) == refs[cmd], f"output differs from the undamaged file's: {label}"
            if cmd == "resume":
                assert same_run(path, bases[1]), label
            outcomes[cmd] = "same"
        else:
            assert rc == 2 and err.count("\n") == 1 and err.startswith("neurosim: error: "), label
            assert digest(path) == before, f"a failed command changed the file: {label}"
            outcomes[cmd] = "refused"
    return outcomes


@pytest.mark.parametrize("seed", range(21))
def test_damaged_file_fast(bases, tmp_path, seed):
    attack(bases, tmp_path, "stopped", seed)


@pytest.mark.slow
def test_damaged_files_swept(bases, tmp_path):
    tally, failures = {}, []
    for base in ("stopped", "killed"):
        for seed in range(1000, 1120):
            try:
                outcomes = attack(bases, tmp_path, base, seed)
            except AssertionError as e:
                failures.append(str(e).splitlines()[0])
                continue
            for cmd, outcome in outcomes.items():
                tally[cmd, outcome] = tally.get((cmd, outcome), 0) + 1
    print(tally, failures)
    assert not failures, failures
    assert sum(tally.values()) == 3 * 240
    assert all(tally.get((cmd, "refused"), 0) > 60 for cmd in COMMANDS)  # the damage was seen


def checkpoint_bytes(data: bytes, tmp_path, k: int) -> int:
    """The file offset of checkpoint ``k``'s blob."""
    path = tmp_path / "probe.h5"
    path.write_bytes(data)
    with RunStore.open(path) as s:
        row = s._index_rows()[k]
        info = s._data.id.get_chunk_info_by_coord((int(row["offset"]) // s._data.chunks[0] * s._data.chunks[0],))
        return info.byte_offset + int(row["offset"]) % s._data.chunks[0] + int(row["size"]) // 2


@pytest.mark.parametrize("k,kept", [(2, 4), (4, 3)])
def test_a_damaged_checkpoint_is_refused_and_repair_resumes(bases, tmp_path, k, kept):
    """Checkpoint ``k`` (2: an older retained one, 4: the latest) damaged: resume refuses, naming it,
    and leaves the file as it was; repair copies the newest intact checkpoint (``kept``) and what
    the run had written then; the repaired file resumes to the undamaged run's result."""
    data, refs = bases[0]["stopped"]
    at = checkpoint_bytes(data, tmp_path, k)
    damaged = bytearray(data)
    damaged[at] ^= 0x10
    path = tmp_path / "bad.h5"
    path.write_bytes(bytes(damaged))
    before = digest(path)
    rc, _, err = run_cli(["resume", path, "--quiet"])
    assert rc == 2 and err.strip() == f"neurosim: error: checkpoint {k} of {path} is corrupted (checksum mismatch)"
    assert digest(path) == before
    new = tmp_path / "new.h5"
    rc, out, err = run_cli(["repair", path, "--out", new])
    assert rc == 0, err
    assert out.startswith(f"repaired {path} into {new}: the experiment, checkpoint {kept}, ")
    assert ("left out: checkpoint 4" in out) == (k == 4)
    if k == 4:  # the reason, without naming the checkpoint twice
        assert out.endswith(f"; left out: checkpoint 4 of {path} is corrupted (checksum mismatch)\n")
    assert digest(path) == before and not list(tmp_path.glob("*.tmp"))
    rc, _, err = run_cli(["resume", new, "--quiet"])
    assert rc == 0, err
    assert same_run(new, bases[1])


def test_a_damaged_log_row_is_left_out_by_repair_not_copied(bases, tmp_path):
    """A flipped bit in the first logged loss: every command refuses the file, and repair leaves the
    log out (it no longer matches the checksum the checkpoint recorded) instead of copying the
    wrong loss into a file that would then pass every check."""
    data, _ = bases[0]["stopped"]
    path = tmp_path / "probe.h5"
    path.write_bytes(data)
    with RunStore.open(path) as s:
        info = s._log.id.get_chunk_info_by_coord((0,))
        at = info.byte_offset + s._log.dtype.fields["loss"][1] + 7  # the loss's sign and exponent
    damaged = bytearray(data)
    damaged[at] ^= 0x40
    path.write_bytes(bytes(damaged))
    before = digest(path)
    rc, _, err = run_cli(["resume", path, "--quiet"])
    assert rc == 2 and err.strip() == f"neurosim: error: {path} is a damaged run file: the log does not match its checksum"
    new = tmp_path / "new.h5"
    rc, out, err = run_cli(["repair", path, "--out", new])
    assert rc == 0, err
    assert "log rows" not in out and out.rstrip().endswith("left out: the log (" + f"{path} is a damaged run "
                                                          "file: the log does not match its checksum)")
    assert digest(path) == before
    with RunStore.open(new) as s:
        s.check()
        assert len(s.read_log()) == 0
    rc, _, err = run_cli(["resume", new, "--quiet"])
    assert rc == 0, err
    with RunStore.open(new) as s, RunStore.open(bases[1]) as done:
        assert np.array_equal(s.R, done.R, equal_nan=True)


def test_repair_refuses_what_it_cannot_rebuild(bases, tmp_path):
    data, _ = bases[0]["stopped"]
    path = tmp_path / "text.h5"
    path.write_text("not a run file")
    rc, _, err = run_cli(["repair", path, "--out", tmp_path / "x.h5"])
    assert rc == 2 and "cannot repair" in err and err.count("\n") == 1
    good = tmp_path / "good.h5"
    good.write_bytes(data)
    rc, _, err = run_cli(["repair", good, "--out", good])
    assert rc == 2 and "--out must differ from" in err
    rc, _, err = run_cli(["repair", good, "--out", path])
    assert rc == 2 and f"{path} already exists; repair writes a new file" in err
    assert not (tmp_path / "x.h5").exists() and path.read_text() == "not a run file"
