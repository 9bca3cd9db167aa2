"""The run store: recordings read back as recorded, checkpoints bit for bit, files left by killed
writers open and resume, readers see consistent prefixes while a writer runs, bad files give one
clear error and are never written into."""
import hashlib
import multiprocessing
import os
import random
import signal
import time
import tracemalloc

import h5py
import numpy as np
import pytest
import torch

from neurosim import NeurosimError
from neurosim.events import SpikeEvents
from neurosim.cli.summary import summarise
from neurosim.cli.plots import plot
from neurosim.storage.recording import Recording, record_run
from neurosim.reservoirs.builders import lif_reservoir
from neurosim.storage.snapshot import decode, encode, same
from neurosim.storage.store import FORMAT, RunStore

FORK = multiprocessing.get_context("fork")


def digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def reservoir(n=400, n_inputs=0):
    return lif_reservoir(n, p=0.05, v0=(-60.0, -50.0), seed=3, n_inputs=n_inputs, w_in=3.0)


# -- events out of the simulation loop ---------------------------------------------------------------
@pytest.mark.parametrize("compiled", [True, False])
@pytest.mark.parametrize("batch,stride", [(1, 1), (3, 2)])
def test_event_probe_matches_dense(compiled, batch, stride):
    net = reservoir(n_inputs=20)
    net.compiled = compiled
    net.probe("neurons", "spikes", stride=stride, name="dense")
    net.probe("neurons", "spikes", stride=stride, name="events", events=True)
    with torch.no_grad():
        res = net.run(torch.rand(300, batch, 20, generator=torch.Generator().manual_seed(0)), outputs=[])
    ev, ref = res.probes["events"], SpikeEvents.from_dense(res.probes["dense"], stride)
    assert len(ev.t) > 100
    assert [x.dtype for x in ev] == [torch.int64, torch.int32, torch.int32]
    assert all(torch.equal(a, b) for a, b in zip(ev, ref))


def test_events_only_for_spikes():
    with pytest.raises(NeurosimError, match="only spikes"):
        reservoir().probe("neurons", "v", events=True)


# -- recordings ------------------------------------------------------------------------------------
def test_recording_reads_back_what_the_probe_saw(tmp_path):
    steps, n = 3000, 400
    probed = reservoir()
    probed.probe("neurons", "spikes", name="z")
    probed.probe("neurons", "v", stride=5, name="v")
    with torch.no_grad():
        res = probed.run(steps=steps, outputs=[])
    net = reservoir()
    w_shape = tuple(net.projections["exc"].weight.shape)
    recordings = {"spikes": Recording("spikes", n=n, dt=0.1, source="neurons", units="spike"),
                  "v": Recording("state", n=n, dt=0.1, stride=5, source="neurons", variable="v", units="mV"),
                  "w": Recording("weights", shape=w_shape, source="exc", stride=1000)}
    path = tmp_path / "run.h5"
    with RunStore.create(path, {"name": "rec"}, recordings=recordings) as store:
        record_run(net, store, steps, chunk=500)
    with RunStore.open(path) as store:
        t, i = store.read_spikes("spikes")
        ref = SpikeEvents.from_dense(res.probes["z"])
        assert t.size > 500
        assert t.dtype == np.int64 and i.dtype == np.int32
        np.testing.assert_array_equal(t, ref.t.numpy())
        np.testing.assert_array_equal(i, ref.i.numpy())
        window = store.read_spikes("spikes", 1000, 2000)
        keep = (t >= 1000) & (t < 2000)
        np.testing.assert_array_equal(window[0], t[keep])
        np.testing.assert_array_equal(window[1], i[keep])
        sampled, v = store.read_state("v")
        np.testing.assert_array_equal(sampled, np.arange(0, steps, 5))
        np.testing.assert_array_equal(v, res.probes["v"][:, 0].numpy())
        wsteps, w = store.read_weights("w")
        np.testing.assert_array_equal(wsteps, [0, 1000, 2000, 3000])
        assert w.shape == (4, *w_shape)
        assert store.count("spikes:steps") == steps
        g = store._f["recordings/spikes"]
        assert g.attrs["dt"] == 0.1 and g.attrs["source"] == "neurons" and g.attrs["units"] == "spike"


def test_batched_spikes_with_inputs(tmp_path):
    x = torch.rand(1000, 2, 20, generator=torch.Generator().manual_seed(1))
    probed = reservoir(n_inputs=20)
    probed.probe("neurons", "spikes", name="z")
    with torch.no_grad():
        ref = SpikeEvents.from_dense(probed.run(x, outputs=[]).probes["z"])
    path = tmp_path / "run.h5"
    with RunStore.create(path, {}, recordings={"s": dict(kind="spikes", n=400, batch=2, source="neurons")}) as store:
        record_run(reservoir(n_inputs=20), store, 1000, inputs={"input": x}, chunk=300, batch=2)  # 300 ∤ 1000
    with RunStore.open(path) as store:
        t, i, b = store.read_spikes("s")
    for got, want in zip((t, b, i), ref):
        np.testing.assert_array_equal(got, want.numpy())


def test_recording_memory_does_not_grow_with_length(tmp_path):
    net = lif_reservoir(2000, p=0.02, v0=(-60.0, -50.0), seed=0)
    peaks = []
    for k, steps in enumerate((10_000, 60_000)):
        with RunStore.create(tmp_path / f"m{k}.h5", {}, recordings={"s": dict(kind="spikes", n=2000,
                                                                              source="neurons")}) as store:
            tracemalloc.start()
            record_run(net, store, steps, chunk=5000)
            peaks.append(tracemalloc.get_traced_memory()[1])
            tracemalloc.stop()
            assert store.count("s:events") > steps  # a few spikes a step
    assert peaks[1] < 1.3 * peaks[0] + 1e6


def test_recorder_checks_its_input(tmp_path):
    with RunStore.create(tmp_path / "r.h5", {}, recordings={"s": dict(kind="spikes", n=10)}) as store:
        rec = store.recorder("s")
        rec.append([0, 1, 1], [3, 4, 5], until=5)
        with pytest.raises(NeurosimError, match="non-decreasing"):
            rec.append([2], [1])
        with pytest.raises(NeurosimError, match=r"in \[0, 10\)"):
            rec.append([7], [10])
        with pytest.raises(NeurosimError, match="has no recording 'x'"):
            store.recorder("x")
    with pytest.raises(NeurosimError, match="kind"):
        Recording("voltage", n=3)


# -- checkpoints -------------------------------------------------------------------------------------
def rich_state(seed: int = 0) -> dict:
    torch.manual_seed(seed)
    lin = torch.nn.Linear(6, 3)
    opt = torch.optim.Adam(lin.parameters())
    lin(torch.randn(4, 6)).sum().backward()
    opt.step()
    return {
        "params": lin.state_dict(), "optimizer": opt.state_dict(),
        "tensors": [torch.randn(3, 4, dtype=torch.float64), torch.arange(5, dtype=torch.int16),
                    torch.tensor([True, False]), torch.randn(2, dtype=torch.bfloat16),
                    torch.zeros(0, 7, dtype=torch.uint8), torch.tensor(2.5), torch.arange(12.0).reshape(3, 4).t()],
        "rng": {"torch": torch.get_rng_state(), "generator": torch.Generator().manual_seed(seed).get_state(),
                "numpy": np.random.default_rng(seed).bit_generator.state,
                "legacy": np.random.RandomState(seed).get_state(), "python": random.Random(seed).getstate()},
        "cursor": {"task": 2, "epoch": 1, "batch": 17, 3: "int key", None: (1.5, -0.0, float("nan"), float("inf"))},
        "misc": [np.float32(0.25), np.int64(-7), 2 ** 80, b"\x00raw", "text", torch.float16, None],
    }


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    state = rich_state()
    path = tmp_path / "ck.h5"
    with RunStore.create(path, {}) as store:
        assert store.latest_checkpoint() is None
        assert store.write_checkpoint(state) == 0
    with RunStore.open(path) as store:
        k, back = store.latest_checkpoint()
    assert k == 0 and same(state, back)
    assert not same(state, rich_state(1))
    np.random.RandomState().set_state(back["rng"]["legacy"])
    random.Random().setstate(back["rng"]["python"])
    torch.Generator().set_state(back["rng"]["generator"])


def test_snapshot_refuses_what_it_cannot_store_safely():
    with pytest.raises(NeurosimError, match="object"):
        encode({"x": object()})
    with pytest.raises(NeurosimError, match="Python objects"):
        encode(np.array([1, "a"], dtype=object))
    data = bytearray(encode({"a": torch.ones(3)}))
    with pytest.raises(NeurosimError, match="magic"):
        decode(b"\x80\x04pickle")
    data[20:30] = b"#" * 10
    with pytest.raises(NeurosimError, match="malformed"):
        decode(bytes(data))


def test_keep_retains_the_latest_checkpoints_and_reuses_their_space(tmp_path):
    with RunStore.create(tmp_path / "k.h5", {}, keep=2) as store:
        for k in range(8):
            store.write_checkpoint({"k": k, "w": torch.full((10_000,), float(k))})
        infos = store.checkpoints()
        assert [c.retained for c in infos] == [False] * 6 + [True] * 2
        assert store.checkpoint(7)["k"] == 7 and store.checkpoint(6)["k"] == 6
        with pytest.raises(NeurosimError, match="dropped"):
            store.checkpoint(3)
        size = infos[-1].size
        assert store._data.shape[0] <= 3 * size


def test_resume_rewinds_log_R_and_recordings_to_the_checkpoint(tmp_path):
    path = tmp_path / "r.h5"
    with RunStore.create(path, {}, n_tasks=3, recordings={"s": dict(kind="spikes", n=5)}) as store:
        for j in range(10):
            store.log(0, 0, j, 1.0 / (j + 1))
        store.recorder("s").append([0, 1, 3], [0, 1, 2], until=4)
        store.set_R(0, [0.9, 0.1, 0.1])
        store.write_checkpoint({"step": 10})
        for j in range(10, 15):
            store.log(1, 0, j, 0.0)
        store.recorder("s").append([4, 6], [4, 4], until=8)
        store.set_R(1, [0.8, 0.9, 0.2])
    with RunStore.open(path, "a") as store:
        k, state = store.resume()
        assert (k, state) == (0, {"step": 10})
        assert len(store.read_log()) == 10
        assert store.count("s:steps") == 4 and store.recorder("s").steps == 4
        np.testing.assert_array_equal(store.R[1], [np.nan] * 3)
        store.recorder("s").append([5], [3], until=6)
        store.log(1, 0, 10, 0.5)
    with RunStore.open(path) as store:
        np.testing.assert_array_equal(store.read_spikes("s")[0], [0, 1, 3, 5])
        np.testing.assert_array_equal(store.read_log()["step"], np.arange(11))
        np.testing.assert_array_equal(store.R[0], [0.9, 0.1, 0.1])


# -- killed writers and concurrent readers --------------------------------------------------------
def expected_spikes(s0: int, s1: int) -> tuple[np.ndarray, np.ndarray]:
    steps = np.arange(s0, s1)
    counts = (steps * 7919) % 13
    t = np.repeat(steps, counts)
    within = np.arange(t.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return t, ((within * 31 + t) % 1000).astype(np.int32)


def payload(k: int) -> np.ndarray:
    return np.random.default_rng(k).standard_normal(20_000 + (k * 7919) % 400_000).astype(np.float32)


def writer(path: str, iterations: int | None = None, kill: str | None = None, ready=None,
           interval: float = 0.01, pause: float = 0.0) -> None:
    """Writes deterministic rows, spikes and checkpoints, resuming from the file's last checkpoint;
    ``kill`` ("after blob" or "before commit") kills the process inside its second checkpoint write."""
    torch.set_num_threads(1)
    if os.path.exists(path):
        store = RunStore.open(path, "a", keep=2, flush_interval=interval)
    else:
        store = RunStore.create(path, {"name": "killed"}, recordings={"s": dict(kind="spikes", n=1000)}, keep=2,
                                flush_interval=interval)
    found = store.resume()
    rows, step, k = (0, 0, 0) if found is None else (found[1]["rows"], found[1]["step"], found[0] + 1)
    if found is not None:
        assert np.array_equal(found[1]["payload"].numpy(), payload(found[0]))

    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    if kill is not None:
        at = store.count("checkpoints") + 1
        if kill == "after blob":  # blob written, index row not yet

            class Index:
                def __getattr__(self, name):
                    return getattr(ds, name)

                def __getitem__(self, key):
                    return ds[key]

                def __setitem__(self, key, value):
                    ds[key] = value

                def resize(self, shape):
                    if store.count("checkpoints") == at:
                        die()
                    ds.resize(shape)

            ds, store._index = store._index, Index()
        else:  # blob and index row written and flushed, the commit record not yet

            class Commit:
                def __getattr__(self, name):
                    return getattr(cds, name)

                def __setitem__(self, key, value):
                    if store._committed["checkpoints"] == at < store.count("checkpoints"):
                        die()
                    cds[key] = value

            cds, store._commit_ds = store._commit_ds, Commit()
    if ready is not None:
        ready.set()
    it = 0
    while iterations is None or it < iterations:
        for j in range(rows, rows + 40):
            store.log(j // 400, 0, j, j / 2, float(j))
        rows += 40
        store.recorder("s").append(*expected_spikes(step, step + 100), until=step + 100)
        step += 100
        it += 1
        time.sleep(pause)
        if it % 4 == 0:
            store.write_checkpoint({"rows": rows, "step": step, "payload": torch.from_numpy(payload(k)),
                                    "rng": torch.get_rng_state()})
            store.set_R(k % 5, np.full(k % 5 + 1, k / 100))
            k += 1
    store.close()


def verify(path: str) -> tuple[int, int]:
    """Everything committed is what the writer wrote; returns (log rows, latest checkpoint or -1)."""
    with RunStore.open(path) as store:
        log = store.read_log()
        np.testing.assert_array_equal(log["step"], np.arange(len(log)))
        np.testing.assert_array_equal(log["loss"], np.arange(len(log)) / 2)
        steps = store.count("s:steps")
        t, i = store.read_spikes("s")
        want_t, want_i = expected_spikes(0, steps)
        np.testing.assert_array_equal(t, want_t)
        np.testing.assert_array_equal(i, want_i)
        latest = store.latest_checkpoint()
        if latest is None:
            return len(log), -1
        k, state = latest
        np.testing.assert_array_equal(state["payload"].numpy(), payload(k))
        assert state["rows"] <= len(log) and state["step"] <= steps
        return len(log), k


def test_sigkill_at_any_moment_leaves_a_file_that_opens_and_resumes(tmp_path):
    path = str(tmp_path / "killed.h5")
    rnd = random.Random(1)
    kills = [None] * 5 + ["after blob", "before commit"] + [None] * 6
    progress = []
    for r, kill in enumerate(kills):
        ready = FORK.Event()
        p = FORK.Process(target=writer, args=(path,), kwargs={"kill": kill, "ready": ready})
        p.start()
        if kill is None:
            if r % 3 == 2:  # while it opens, recovers and rewinds
                time.sleep(rnd.uniform(0.0, 0.03))
            else:
                ready.wait(10)
                time.sleep(rnd.uniform(0.02, 0.4))
            os.kill(p.pid, signal.SIGKILL)
        p.join(20)
        assert p.exitcode == -signal.SIGKILL, f"round {r}: the writer ended with {p.exitcode}"
        if not os.path.exists(path):  # killed before the file was first renamed into place
            continue
        progress.append(verify(path))
        if kill is not None:  # the interrupted checkpoint is not complete; one left with its index row shows
            assert progress[-1][1] == progress[-2][1] + 1
            with RunStore.open(path) as store:
                assert store.checkpoints()[-1].complete == (kill == "after blob")
    assert len(progress) >= 10
    p = FORK.Process(target=writer, args=(path,), kwargs={"iterations": 12})
    p.start()
    p.join(30)
    assert p.exitcode == 0
    rows, k = verify(path)
    assert k > max(c for _, c in progress) and rows > max(r for r, _ in progress)
    with RunStore.open(path) as store:
        store.check()
    with h5py.File(path, "r") as f:  # closed cleanly: plain HDF5 readers open it too
        assert f.attrs["neurosim_format"] == FORMAT


def reader(path: str, seconds: float, results) -> None:
    torch.set_num_threads(1)
    end, last, checks = time.monotonic() + seconds, (0, -1), 0
    try:
        while time.monotonic() < end:
            now = verify(path)
            assert now[0] >= last[0] and now[1] >= last[1], f"went back from {last} to {now}"
            last, checks = now, checks + 1
        results.put(("ok", checks, last))
    except BaseException as e:  # noqa: BLE001 - reported to the test
        results.put(("error", checks, f"{type(e).__name__}: {e}"))


def test_two_readers_see_consistent_prefixes_while_a_writer_runs(tmp_path):
    path = str(tmp_path / "live.h5")
    writer(path, iterations=4)
    results = FORK.Queue()
    w = FORK.Process(target=writer, args=(path,), kwargs={"iterations": 120, "pause": 0.01})
    readers = [FORK.Process(target=reader, args=(path, 2.0, results)) for _ in range(2)]
    w.start()
    for p in readers:
        p.start()
    outcomes = [results.get(timeout=60) for _ in readers]
    for p in readers:
        p.join(10)
    w.join(60)
    assert w.exitcode == 0
    for status, checks, detail in outcomes:
        assert status == "ok", detail
        assert checks >= 3
    assert verify(path) == (124 * 40, 30)


def _open_for_writing(path, results) -> None:
    try:
        RunStore.open(path, "a").close()
        results.put("opened")
    except NeurosimError as e:
        results.put(str(e))


def test_a_second_writer_is_refused(tmp_path):
    path = tmp_path / "w.h5"
    with RunStore.create(path, {}) as store:
        with pytest.raises(NeurosimError, match="already open for writing in this process"):
            RunStore.open(path, "a")
        results = FORK.Queue()
        p = FORK.Process(target=_open_for_writing, args=(str(path), results))
        p.start()
        assert results.get(timeout=60) == f"{path} is being written by another process"
        p.join(10)
        with RunStore.open(path) as reading:  # readers are welcome
            assert reading.run_id == store.run_id
            with pytest.raises(NeurosimError, match="open for reading only"):
                reading.log(0, 0, 0, 0.0)
    before = digest(path)
    with h5py.File(path, "r") as f:  # h5py holds it: refused with the reason, not "not readable"
        for mode in ("r", "a"):
            with pytest.raises(NeurosimError, match="already open in this process through h5py; close it first"):
                RunStore.open(path, mode)
        assert f.attrs["neurosim_format"] == FORMAT
    assert digest(path) == before


# -- bad files ---------------------------------------------------------------------------------------
@pytest.fixture
def good_file(tmp_path):
    path = tmp_path / "good.h5"
    with RunStore.create(path, {"name": "good"}, n_tasks=2, recordings={"s": dict(kind="spikes", n=4)}) as store:
        store.log(0, 0, 0, 1.0)
        store.recorder("s").append([0, 2], [1, 3])
        store.set_R(0, [0.5, 0.25])
        store.write_checkpoint({"w": torch.ones(100)})
    return path


def damage(path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def superblock_root(path) -> int:
    with open(path, "rb") as f:
        head = f.read(48)
    assert head[8] in (2, 3) and head[9] == 8  # superblock v2/v3 with 8-byte addresses
    return int.from_bytes(head[36:44], "little")


def test_bad_files_give_one_clear_error_and_stay_untouched(good_file, tmp_path):
    size = os.path.getsize(good_file)
    with h5py.File(good_file, "r") as f:
        commit_at, commit_size = f["commit"].id.get_offset(), f["commit"].id.get_storage_size()
    cases = {}

    def case(name, fn, message):
        path = tmp_path / f"{name}.h5"
        path.write_bytes(good_file.read_bytes())
        fn(path)
        cases[name] = (path, message)

    case("truncated", lambda p: os.truncate(p, size // 2), "is not a readable HDF5 file: .*truncated")
    case("no signature", lambda p: damage(p, 0, b"\0" * 8), "is not a readable HDF5 file")
    case("root header", lambda p: damage(p, superblock_root(p) + 6, b"\xff" * 24), "is not a readable HDF5 file")
    case("commit record", lambda p: damage(p, commit_at, os.urandom(commit_size)), "damaged run file: no valid commit")

    def foreign(p):
        p.unlink()
        with h5py.File(p, "w") as f:
            f["x"] = np.arange(3)

    case("foreign", foreign, "is not a neurosim run file")

    def newer(p):
        with h5py.File(p, "r+") as f:
            f.attrs["neurosim_format"] = FORMAT + 1

    case("newer", newer, f"was written by format {FORMAT + 1}, this neurosim reads up to {FORMAT}")
    case("text", lambda p: p.write_text("not hdf5 at all\n"), "is not a readable HDF5 file")
    for name, (path, message) in cases.items():
        before = digest(path)
        for mode in ("r", "a"):
            with pytest.raises(NeurosimError, match=message) as err:
                RunStore.open(path, mode).close()
            assert "\n" not in str(err.value) and str(path) in str(err.value), name
            assert digest(path) == before, f"{name}: opening with mode {mode!r} changed the file"
    with pytest.raises(NeurosimError, match="does not exist"):
        RunStore.open(tmp_path / "missing.h5")


def _killed_writer(path) -> None:
    store = RunStore.create(path, {"name": "killed"}, n_tasks=2)
    store.log(0, 0, 0, 1.0)
    store.write_checkpoint({"w": torch.ones(100)})
    store.write_checkpoint({"w": torch.zeros(100)})
    os.kill(os.getpid(), signal.SIGKILL)


def tear_newest_slot(path) -> int:
    with RunStore.open(path) as store:
        seq = store._seq
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        at = f["commit"].id.get_offset() + (seq % 2) * f["commit"].shape[1] * 8
    damage(path, at + 16, b"\x07" * 8)  # the newest slot's first counter, its checksum now wrong
    return seq


def test_a_torn_commit_falls_back_to_the_previous_one(tmp_path, good_file):
    path = tmp_path / "killed.h5"
    p = FORK.Process(target=_killed_writer, args=(str(path),))
    p.start()
    p.join(60)
    assert p.exitcode == -signal.SIGKILL
    seq = tear_newest_slot(path)  # as a kill in the middle of writing the commit would
    with RunStore.open(path) as store:
        assert store._seq == seq - 1 and store.count("checkpoints") == 1
        assert store.checkpoint(0)["w"].sum() == 100
    with RunStore.open(path, "a") as store:  # the torn slot is overwritten at once
        assert store._seq == seq
    tear_newest_slot(good_file)  # in a file closed cleanly, a torn slot can only be damage
    before = digest(good_file)
    for mode in ("r", "a"):
        with pytest.raises(NeurosimError, match="damaged run file: one slot of its commit record is damaged"):
            RunStore.open(good_file, mode)
    assert digest(good_file) == before


def test_damage_only_checksums_reveal_is_refused(good_file, tmp_path):
    """A zeroed log chunk, a changed experiment, a changed accuracy matrix or index row: each is found
    (reading, with validation, and before writing) and named; the file stays as it was."""
    with h5py.File(good_file, "r") as f:
        log_at = f["metrics/log"].id.get_chunk_info(0).byte_offset
        R_at = f["metrics/R"].id.get_offset()
        index_at = f["checkpoints/index"].id.get_chunk_info(0).byte_offset
    data = good_file.read_bytes()
    config_at = data.index(b'"name": "good"') + len('"name": "goo')
    cases = {"log": (log_at, b"\0" * 36, "the log does not match its checksum"),
             "config": (config_at, b"f", "its experiment, attributes or recordings' declarations do not match"),
             "R": (R_at + 3, b"\x01", "the accuracy matrix does not match its checksum"),
             "index": (index_at + 20, b"\x00\x00\x00\x01", "the checkpoint index does not match its checksum")}
    for name, (at, raw, message) in cases.items():
        path = tmp_path / f"{name}.h5"
        path.write_bytes(data)
        damage(path, at, raw)
        before = digest(path)
        with RunStore.open(path) as store:  # a plain reader reads what it is asked for
            assert store.format == FORMAT
        for mode, validate in (("r", True), ("a", False)):
            with pytest.raises(NeurosimError, match=message) as err:
                RunStore.open(path, mode, validate=validate)
            assert "\n" not in str(err.value) and str(path) in str(err.value)
        with pytest.raises(NeurosimError, match=message):
            summarise(path)
        assert digest(path) == before, name


def test_a_corrupted_checkpoint_is_reported(good_file):
    with RunStore.open(good_file) as store:
        offset = store._data.id.get_chunk_info(0).byte_offset
    damage(good_file, offset + 100, b"\xff" * 8)
    with RunStore.open(good_file) as store:
        with pytest.raises(NeurosimError, match="checkpoint 0 .* corrupted"):
            store.latest_checkpoint()
        with pytest.raises(NeurosimError, match="corrupted"):
            store.check()


def test_create_refuses_to_clobber(good_file, tmp_path):
    with pytest.raises(NeurosimError, match="already exists"):
        RunStore.create(good_file, {})
    foreign, text, damaged = tmp_path / "data.h5", tmp_path / "exp.toml", tmp_path / "damaged.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    text.write_text("[model]\n")
    for path, message in ((foreign, "is an HDF5 file but not a neurosim run file; refusing to replace it"),
                          (text, "is not a run file \\(not HDF5\\); refusing to replace it")):
        before = digest(path)
        with pytest.raises(NeurosimError, match=message):
            RunStore.create(path, {}, overwrite=True)
        assert digest(path) == before
    damaged.write_bytes(good_file.read_bytes()[:4096])  # a run file too damaged to open may be replaced
    RunStore.create(damaged, {"name": "new"}, overwrite=True).close()
    RunStore.create(good_file, {"name": "new"}, overwrite=True).close()
    for path in (damaged, good_file):
        with RunStore.open(path, validate=True) as store:
            assert store.config == {"name": "new"}


# -- summary and plots ---------------------------------------------------------------------------------
@pytest.fixture
def finished_run(tmp_path):
    path = tmp_path / "done.h5"
    net = reservoir()
    with RunStore.create(path, {"name": "demo"}, n_tasks=3,
                         recordings={"spikes": dict(kind="spikes", n=400, dt=0.1, source="neurons")}) as store:
        record_run(net, store, 2000, chunk=1000)
        for j in range(30):
            store.log(j // 10, 0, j, 1 / (j + 1))
        store.set_R(0, [0.9, 0.1, 0.12])
        store.set_R(1, [0.7, 0.92, 0.1])
        store.write_checkpoint({"x": torch.zeros(3)})
    return path


def test_summarise(finished_run):
    text = summarise(finished_run)
    for part in ("demo", f"format {FORMAT}", "rows of R known: 0-1", "30 rows", "spikes (spikes of neurons)",
                 "over 2000 steps", "1 complete, retained 0"):
        assert part in text, part


@pytest.mark.parametrize("what", ["raster", "rates", "accuracy", "forgetting"])
def test_plots_write_pngs(finished_run, tmp_path, what):
    out = tmp_path / f"{what}.png"
    plot(finished_run, what, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 5000


def test_plot_errors(finished_run, tmp_path):
    with pytest.raises(NeurosimError, match="unknown plot 'histogram'; expected one of: raster"):
        plot(finished_run, "histogram", tmp_path / "x.png")
    with pytest.raises(NeurosimError, match="unknown raster plot parameter 'bins'"):
        plot(finished_run, "raster", tmp_path / "x.png", bins=10)
    with pytest.raises(NeurosimError, match="no spike recording 'nope'"):
        plot(finished_run, "raster", tmp_path / "x.png", recording="nope")
    with pytest.raises(NeurosimError, match="not a writable directory"):
        plot(finished_run, "raster", tmp_path / "missing" / "x.png")


# -- other systems ------------------------------------------------------------------------------------
def test_nothing_linux_only_on_the_paths_macos_and_windows_take(monkeypatch, good_file, tmp_path):
    """The HDF5 library is found through h5py's own extension (no /proc), fcntl is imported only where
    it exists, and without fork the checks run in the process with the same one-line errors."""
    import builtins
    from pathlib import Path

    from neurosim.storage import files

    for source in Path(files.__file__).parent.parent.rglob("*.py"):
        text = source.read_text()
        assert "/proc/self" not in text, source
        assert all(line.startswith("    ") for line in text.splitlines() if line.strip() == "import fcntl"), source
    real_open = builtins.open

    def no_proc(path, *args, **kwargs):
        assert not str(path).startswith("/proc"), path
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(files, "_lib", None)
    assert files.hdf5_library() is not None
    monkeypatch.setattr(files, "FORK", False)
    RunStore.validate(good_file)
    bad = tmp_path / "bad.h5"
    bad.write_bytes(good_file.read_bytes())
    with RunStore.open(good_file) as store:
        offset = store._data.id.get_chunk_info(0).byte_offset
    damage(bad, offset + 100, b"\xff" * 8)
    with pytest.raises(NeurosimError, match="checkpoint 0 .* is corrupted"):
        RunStore.open(bad, "a")
    with RunStore.open(good_file, "a") as store:
        store.log(0, 0, 1, 0.5)
