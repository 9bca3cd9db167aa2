"""An operator's bad day: the disk fills, the directory is read-only, the file vanishes, Ctrl-C and
SIGTERM arrive at any moment. Each ends in one line, the right exit status and no crash, and the
run file resumes to the same result, bit for bit, as a run never disturbed."""
import errno
import os
import random
import signal

import numpy as np
import pytest

from clirun import Child, run_cli, same_run
from neurosim.continual import runner as runner_module
from neurosim.storage.store import RunStore, StoreWriteError, _write_failure_text

EXPERIMENT = """
name = "faults"
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
epochs = 3
batch_size = 128
lr = 0.1
seed = 3
checkpoint_every = 4
[[plugins]]
name = "si"
"""
BATCHES = 66  # 2 tasks x 3 epochs x 11 batches of 128 of the 1348 training digits (training about
# twice as long as the set-up before it, so that most random instants fall inside it)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    folder = tmp_path_factory.mktemp("faults")
    toml = folder / "exp.toml"
    toml.write_text(EXPERIMENT)
    ref = folder / "ref.h5"
    child = Child(["run", toml, "--store", ref, "--quiet"])
    rc, out, err = child.wait()
    assert rc == 0, err
    seconds = max(0.5, __import__("time").monotonic() - child.started)
    return toml, ref, seconds, out


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and err.startswith("neurosim: "), err
    return err.strip()


def leftovers(folder) -> list[str]:
    return [n for n in os.listdir(folder) if n.endswith(".tmp")]


# -- disk full ---------------------------------------------------------------------------------------
def disk_full_at(reference, tmp_path, limit: int) -> str:
    """Run under a file-size limit of ``limit`` bytes (writes past it fail with EFBIG, as on a full
    disk), resume while the limit holds, then resume without it: the result matches the reference."""
    toml, ref, _, _ = reference
    path = tmp_path / f"full{limit}.h5"
    rc, out, err = run_cli(["run", toml, "--store", path, "--quiet"], fsize=limit)
    assert not leftovers(tmp_path)
    if rc == 0:
        assert same_run(path, ref)
        return "fits"
    line = one_line(err)
    assert rc == 1 and f"cannot write {path}: the file reached the file-size limit" in line, err
    if not path.exists():  # the new file could not even be written: nothing left behind
        return "not created"
    rc, out, err = run_cli(["resume", path, "--quiet"], fsize=limit)  # the disk is still full
    if rc != 0:
        assert rc == 1 and "cannot write" in one_line(err), err
    rc, out, err = run_cli(["resume", path, "--quiet"])  # space again
    assert rc == 0, err
    assert same_run(path, ref)
    return "resumed"


FAST_LIMITS = [3_000, 60_000, 700_000]


@pytest.mark.parametrize("limit", FAST_LIMITS)
def test_disk_full_ends_in_one_line_and_the_file_resumes(reference, tmp_path, limit):
    assert disk_full_at(reference, tmp_path, limit) in ("not created", "resumed")


@pytest.mark.slow
def test_disk_full_swept(reference, tmp_path):
    size = os.path.getsize(reference[1])
    limits = sorted({int(x) for x in np.geomspace(1_000, size * 1.05, 24)})
    outcomes = [disk_full_at(reference, tmp_path, n) for n in limits]
    print(dict(zip(limits, outcomes)))
    assert outcomes.count("resumed") >= 10 and outcomes[-1] == "fits"


def test_no_space_message_names_path_free_and_needed_space(tmp_path):
    line = _write_failure_text(str(tmp_path / "run.h5"), errno.ENOSPC, OSError(errno.ENOSPC, "full"), 3_500_000)
    assert line.startswith(f"cannot write {tmp_path / 'run.h5'}: no space left on device (")
    assert " free; at least 3.5 MB more needed)" in line and "\n" not in line


def test_a_failed_write_stops_the_writer_and_leaves_a_consistent_file(tmp_path):
    path = tmp_path / "w.h5"
    with RunStore.create(path, {"name": "w"}, recordings={"s": dict(kind="spikes", n=4)}) as store:
        for j in range(5):
            store.log(0, 0, j, 1.0)
        store.write_checkpoint({"j": 5})
        store.log(0, 0, 5, 1.0)
        with pytest.raises(StoreWriteError, match=r"no space left on device .*checkpoint 0 the latest"):
            with store.writing(10_000):
                store._log.resize((100,))
                raise OSError(errno.ENOSPC, "No space left on device")
        with pytest.raises(StoreWriteError, match="no space left"):  # nothing more is written
            store.log(0, 0, 6, 1.0)
            store.flush()
    with RunStore.open(path, "a") as store:  # as after a killed writer: validated, recovered
        k, state = store.resume()
        assert (k, state) == (0, {"j": 5}) and len(store.read_log()) == 5


# -- read-only, vanished ---------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="permissions do not bind root")
def test_read_only_directory_and_file(reference, tmp_path):
    toml = reference[0]
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        rc, out, err = run_cli(["run", toml, "--store", folder / "run.h5", "--quiet"])
        assert rc == 1 and "Permission denied" in one_line(err) and os.listdir(folder) == []
    finally:
        folder.chmod(0o755)
    path = tmp_path / "done.h5"
    path.write_bytes(reference[1].read_bytes())
    path.chmod(0o444)
    rc, out, err = run_cli(["resume", path, "--quiet"])
    assert rc == 2 and f"cannot open {path} for writing: Permission denied" in one_line(err)


def test_a_file_deleted_while_written_stops_the_run_in_one_line(reference, tmp_path):
    toml = reference[0]
    path = tmp_path / "gone.h5"

    def delete_at_step_6():
        train = runner_module.Continual.train_batch

        def train_batch(self, task, idx):
            if self.step == 6:
                os.unlink(path)
            return train(self, task, idx)

        runner_module.Continual.train_batch = train_batch

    rc, out, err = run_cli(["run", toml, "--store", path, "--quiet"], setup=delete_at_step_6)
    assert rc == 1 and f"{path} vanished while it was written" in one_line(err), err
    assert not path.exists()


# -- signals -----------------------------------------------------------------------------------------
def interrupt(reference, tmp_path, k: int, rnd: random.Random, signals: tuple, resume: bool) -> str:
    """Start (or resume) the run, send ``signals`` at a random instant, check the line and the exit
    status, then resume (undisturbed) to the end and compare with the reference."""
    toml, ref, seconds, _ = reference
    path = tmp_path / f"sig{k}.h5"
    if resume:  # a file to resume: the run stopped by a signal at a random batch
        rc, _, err = run_cli(["run", toml, "--store", path, "--quiet"], setup=stop_at(rnd.randrange(1, BATCHES)))
        assert rc == 130, err
        argv = ["resume", path, "--quiet"]
    else:
        argv = ["run", toml, "--store", path, "--quiet"]
    child = Child(argv)
    # the first instants anywhere from the start, the others within the training's share of the run
    __import__("time").sleep(rnd.uniform(0.05, 1.2 * seconds) if k < 8 else rnd.uniform(0.35, 1.1) * seconds)
    for n, sig in enumerate(signals):
        try:
            os.kill(child.pid, sig)
        except ProcessLookupError:
            break
        __import__("time").sleep(0.002 * n)
    rc, out, err = child.wait()
    code = 128 + signals[0]
    if rc == 0:  # finished before the signal
        outcome = "finished"
    else:
        line = one_line(err)
        assert rc == code, err
        if line.startswith("neurosim: interrupted at "):
            assert line.endswith(f"; resume with: neurosim resume {path}"), line
            outcome = "checkpointed"
        elif line.startswith("neurosim: stopped at once"):
            outcome = "at once"
        else:
            assert line in ("neurosim: interrupted", "neurosim: terminated"), line  # before the run began
            outcome = "before"
    assert not leftovers(tmp_path)
    if path.exists():
        rc, out, err = run_cli(["resume", path, "--quiet"])
        assert rc == 0, err
    else:
        rc, out, err = run_cli(argv)
        assert rc == 0, err
    assert same_run(path, ref), outcome
    return outcome


def stop_at(step: int):
    """A setup that makes the run send itself SIGINT during batch ``step``."""
    def setup():
        train = runner_module.Continual.train_batch

        def train_batch(self, task, idx):
            if self.step + 1 == step:
                os.kill(os.getpid(), signal.SIGINT)
            return train(self, task, idx)

        runner_module.Continual.train_batch = train_batch

    return setup


def test_sigint_at_a_batch_checkpoints_and_names_where(reference, tmp_path):
    toml, ref, _, _ = reference
    path = tmp_path / "stop.h5"
    rc, out, err = run_cli(["run", toml, "--store", path, "--quiet"], setup=stop_at(48))
    assert rc == 130 and one_line(err) == (f"neurosim: interrupted at task 1, epoch 1, batch 4; resume with: "
                                           f"neurosim resume {path}")
    with RunStore.open(path) as s:
        assert s.checkpoint(s.count("checkpoints") - 1)["cursor"] == {"task": 1, "epoch": 1, "batch": 4, "step": 48}
        assert len(s.read_log()) == 48
    rc, out, err = run_cli(["resume", path, "--quiet"])
    assert rc == 0 and same_run(path, ref)


@pytest.mark.parametrize("k,sig,resume", [(0, signal.SIGINT, False), (1, signal.SIGTERM, False),
                                          (2, signal.SIGTERM, True), (3, signal.SIGINT, True)])
def test_a_signal_at_a_random_instant(reference, tmp_path, k, sig, resume):
    interrupt(reference, tmp_path, k, random.Random(k), (sig,), resume)


def test_a_second_ctrl_c_ends_at_once_and_the_file_still_resumes(reference, tmp_path):
    outcomes = {interrupt(reference, tmp_path, k, random.Random(100 + k), (signal.SIGINT,) * 2, False)
                for k in range(2)}
    assert outcomes <= {"checkpointed", "at once", "before", "finished"}


@pytest.mark.slow
def test_signals_at_twenty_random_instants_for_run_and_resume(reference, tmp_path):
    rnd = random.Random(7)
    outcomes = []
    for k in range(44):
        sig = (signal.SIGINT, signal.SIGTERM)[k % 2]
        signals = (sig, sig) if k % 11 == 10 else (sig,)
        outcomes.append(interrupt(reference, tmp_path, k, rnd, signals, resume=k >= 22))
    print({o: outcomes.count(o) for o in set(outcomes)})
    assert outcomes.count("checkpointed") >= 20, outcomes


# -- retention -----------------------------------------------------------------------------------------
def test_keep_is_remembered_on_resume(reference, tmp_path):
    toml, ref, _, _ = reference
    path = tmp_path / "keep.h5"
    rc, _, err = run_cli(["run", toml, "--store", path, "--quiet", "--keep", "3"], setup=stop_at(9))
    assert rc == 130, err
    rc, _, err = run_cli(["resume", path, "--quiet"])
    assert rc == 0, err
    with RunStore.open(path) as s:
        n = s.count("checkpoints")
        assert [c.index for c in s.checkpoints() if c.retained] == [n - 3, n - 2, n - 1] and n > 5
        assert s.keep == 3 and s.count("keep") == 3
    assert same_run(path, ref)
