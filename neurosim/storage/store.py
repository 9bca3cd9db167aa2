"""The run store: one HDF5 file per run, written while the run goes, readable at any moment.

Layout (format 1)::

    /                      attrs neurosim_format, neurosim_version, created (ISO 8601), run_id
    /config                the experiment as a JSON string
    /commit                [2, 2 + K] int64, the commit record (below); attr fields: the K counter names
    /metrics/R             accuracy matrix, NaN until known ([n, n]; growing when n_tasks is None)
    /metrics/log           table (task, epoch, step, loss, time), one row per log() call
    /metrics/health        table (task, epoch, step, name, value): health figures, one row per figure
    /metrics/health_names  the figures' names (UTF-8, at most 64 bytes), that health rows index
    /checkpoints/data      uint8: encoded checkpoints (neurosim.storage.snapshot), placed end to end
    /checkpoints/index     table (offset, size, crc32, time), one row per checkpoint
    /recordings/NAME       spike events, sampled states or weight snapshots (neurosim.storage.recording)

Every object is created at :meth:`RunStore.create`, in a temporary file renamed into place; the
file is then written in HDF5's single-writer/multiple-reader (SWMR) mode, which orders the writes
of HDF5's own metadata so that the file on disk is a readable HDF5 file at every instant, and
only ever extends datasets or writes into them.

What is *complete* is decided by the commit record: counters (rows of the log, checkpoints,
events of each recording, ...) of how much of each dataset holds finished data. A flush writes
the data, flushes the file, then writes the counters with a sequence number and a CRC-32 into
slot ``seq % 2`` of ``/commit`` and flushes that. Readers take the slot with a valid checksum and
the highest sequence number and read only what it counts, so they see consistent prefixes, and
a writer killed at any instant leaves the previous commit intact: a checkpoint is complete once
it is counted, never before.

Everything a reader relies on is checksummed. HDF5 checksums its own metadata (superblock,
object headers, chunk indexes). Each commit slot and each checkpoint carries a CRC-32. The commit
record also holds, as counters, a running CRC-32 of the committed rows of every appended dataset
(``log_crc32``, ``health_crc32``, ``health_names_crc32``, ``index_crc32``, and
``NAME:<dataset>_crc32`` for each recording's datasets), extended at each append and rewound with
the counts, so that rows rewritten in place by a writer killed mid-write, but not committed, never
fail it; ``static_crc32``, of what is fixed at creation (the root's attributes, the configuration,
the counter names, the recordings' declarations); ``R_crc32``, of the accuracy matrix (checked in
files closed cleanly: a killed writer may have written a row it did not commit); and ``keep``, the
retention setting (0: keep all), so that a resumed run keeps what the original kept.
:meth:`RunStore.check` verifies all of it, reading only; files written before these counters
existed are checked for what they hold.

A SWMR writer killed leaves the superblock marked "open for writing" and an end-of-allocation
address behind the data. Readers open such a file all the same (in SWMR read mode). To write
again, :meth:`RunStore.open` validates the whole file read-only first (in a child process with a
time limit, where the system can fork: a hang or a crash of the HDF5 library on damaged metadata
ends there), then clears the mark (see :mod:`neurosim.storage.files`). A file that fails is left
byte for byte as it was, and :func:`neurosim.storage.repair.repair` copies what is intact into a
new file. Writers hold an advisory lock on the file, so a second writer gets a clear error
instead of corrupting it.

A write that fails (disk full, file size limit, read-only or vanished file) stops the writer at
once: nothing more is written, the file is closed without writing (it then holds what was
committed before, as after a killed writer, and resumes once the cause is gone), and
:class:`StoreWriteError` says, in one line, what happened, with the free space and the space
needed where space ran out. Safe against the process dying (SIGKILL, crashes), not against losing
the operating system's cache (power loss).
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import hashlib
import json
import os
import shutil
import time as _time
import weakref
import zlib
from typing import Iterator, Mapping, NamedTuple

import h5py
import numpy as np

from . import files, snapshot
from ..errors import NeurosimError
from .recording import Recorder, Recording, open_recorder

FORMAT = 1
"""The newest store format this neurosim writes and reads."""

LOG_DTYPE = np.dtype([("task", "<i4"), ("epoch", "<i4"), ("step", "<i8"), ("loss", "<f8"), ("time", "<f8")])
HEALTH_DTYPE = np.dtype([("task", "<i4"), ("epoch", "<i4"), ("step", "<i8"), ("name", "<i4"), ("value", "<f8")])
INDEX_DTYPE = np.dtype([("offset", "<i8"), ("size", "<i8"), ("crc32", "<u4"), ("time", "<f8")])
NAME_BYTES = 64
_LIBVER = ("v110", "latest")  # SWMR needs the 1.10 formats; no newer ones, so that HDF5 1.10+ reads the files
_LOG_CHUNK = 4096
_CKPT_CHUNK = 1 << 20
_READ_RETRIES = 6
_REWOUND = ("log", "log_crc32", "health", "health_crc32", "health_names", "health_names_crc32")
"""Counters a resume rewinds to a checkpoint's (besides the recordings')."""
_NOT_REWOUND = ("R", "checkpoints", "checkpoints_first", "keep", "static_crc32", "R_crc32", "index_crc32")
_open_writers: "weakref.WeakSet[RunStore]" = weakref.WeakSet()


class StoreWriteError(NeurosimError):
    """Writing a run file failed (disk full, size limit, read-only, vanished); the message is one line."""


class CheckpointInfo(NamedTuple):
    """A checkpoint in the index: ``complete`` once committed; ``retained`` while its data is kept."""

    index: int
    size: int
    time: float
    complete: bool
    retained: bool


def _why(e: BaseException) -> str:
    text = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _commit_row(seq: int, counts: np.ndarray) -> np.ndarray:
    body = np.concatenate([np.array([seq], np.int64), counts.astype(np.int64)])
    return np.concatenate([body[:1], [zlib.crc32(body.tobytes())], body[1:]]).astype(np.int64)


def _valid_slots(rows: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(seq, counts) of the slots whose checksum holds, highest sequence number first."""
    out = []
    for row in rows:
        seq = int(row[0])
        body = np.concatenate([row[:1], row[2:]])
        if seq > 0 and int(row[1]) == zlib.crc32(body.tobytes()):
            out.append((seq, row[2:].copy()))
    return sorted(out, key=lambda s: -s[0])


def _crc(data) -> int:
    return zlib.crc32(np.ascontiguousarray(data).tobytes())


def _plain(v):
    """An attribute value as JSON-able Python."""
    if isinstance(v, np.ndarray):
        return [_plain(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _static_crc(f: h5py.File) -> int:
    """CRC-32 of what is fixed at creation: root attributes, config, counter names, recordings' attributes."""
    parts = {"root": {k: _plain(f.attrs[k]) for k in ("neurosim_format", "neurosim_version", "created", "run_id")},
             "config": f["config"].asstr()[()],
             "fields": [str(x) for x in f["commit"].attrs["fields"]],
             "recordings": {name: {k: _plain(g.attrs[k]) for k in sorted(g.attrs)}
                            for name, g in sorted(f["recordings"].items())}}
    return zlib.crc32(json.dumps(parts, sort_keys=True).encode())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def neurosim_version() -> str:
    try:
        from importlib.metadata import version

        return version("neurosim")
    except Exception:  # not installed: the source tree's version
        from ..version import __version__

        return __version__


def _chunked(parent: h5py.Group, name: str, dtype, row=(), chunk: int = 1024) -> h5py.Dataset:
    """An extendable dataset of rows ``row``, chunked along its first axis."""
    return parent.create_dataset(name, (0, *row), maxshape=(None, *row), chunks=(chunk, *row), dtype=dtype)


def check_rows(store: "RunStore", ds: h5py.Dataset, n: int, what: str, crc: int | None) -> None:
    """Raise unless the first ``n`` rows of ``ds`` are present, read, and (``crc`` given) have that
    running CRC-32; reads in blocks of at most 16 MB."""
    check_extent(store, ds, n, what)
    block = max(1, (1 << 24) // max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:]))))
    running = 0
    for a in range(0, n, block):
        rows = store.read_dataset(ds, lambda d: d[a:min(n, a + block)], what)
        running = zlib.crc32(np.ascontiguousarray(rows).tobytes(), running)
    if crc is not None and running != crc:
        raise NeurosimError(f"{store.path} is a damaged run file: {what} does not match its checksum")


def check_extent(store: "RunStore", ds: h5py.Dataset, n: int, what: str) -> None:
    """Raise unless ``ds`` holds at least ``n`` rows, all in allocated chunks (a chunk lost from a
    damaged index would read as fill values)."""
    if ds.shape[0] < n:
        raise NeurosimError(f"{store.path} is a damaged run file: {what} counts {n} rows, its dataset holds "
                            f"{ds.shape[0]}")
    if ds.chunks is None or not n:
        return
    rest = (0,) * (ds.ndim - 1)
    for start in range(0, n, ds.chunks[0]):
        if ds.id.get_chunk_info_by_coord((start, *rest)).byte_offset is None:
            raise NeurosimError(f"{store.path} is a damaged run file: {what} lost its rows from {start} on "
                                f"(a chunk missing from its index)")


# -- the store -----------------------------------------------------------------------------------
class RunStore:
    """One run's HDF5 file. Use :meth:`create` (a new run, writing) or :meth:`open` (``"r"``
    reading, ``"a"`` writing more into an existing run); close it, or use it as a context manager.

    Writers buffer log rows and recordings in bounded buffers and commit them at :meth:`flush`,
    which also runs on its own every ``flush_interval`` seconds of :meth:`log` and recorder
    calls. A reader sees one commit, consistent across its reads: the one current when it opened
    the file or last called :meth:`refresh`. A writer sees what it has written.
    """

    def __init__(self, f: h5py.File, path: str, mode: str, lock_fd: int | None = None,
                 keep: int | None = None, flush_interval: float = 2.0, clean: bool = False):
        self._f, self.path, self.mode, self._lock_fd, self._closed = f, path, mode, lock_fd, False
        self._failure: str | None = None
        self._hdf5_fd = f.id.get_vfd_handle() if mode == "a" else None
        self.flush_interval = flush_interval
        self.format = int(f.attrs["neurosim_format"])
        self.neurosim_version = str(f.attrs.get("neurosim_version", ""))
        self.created = str(f.attrs.get("created", ""))
        self.run_id = str(f.attrs.get("run_id", ""))
        self._commit_ds = f["commit"]
        self.fields = [str(x) for x in self._commit_ds.attrs["fields"]]
        if len(set(self.fields)) != len(self.fields) or self._commit_ds.shape != (2, 2 + len(self.fields)):
            raise NeurosimError(f"{path} is a damaged run file: its commit record does not match its counter names")
        self._config_json = f["config"].asstr()[()]
        self._R, self._log, self._index, self._data = (f["metrics/R"], f["metrics/log"], f["checkpoints/index"],
                                                       f["checkpoints/data"])
        self._health = f["metrics/health"] if "health" in self.fields else None
        self._health_names = f["metrics/health_names"] if "health" in self.fields else None
        self._clean = clean
        self._seq, counts = self._load_commit()
        self._counts = dict(zip(self.fields, (int(c) for c in counts)))
        self._committed = dict(self._counts)
        try:
            self.config = json.loads(self._config_json)
        except ValueError as e:
            raise NeurosimError(f"{path} is a damaged run file: its config is not JSON ({_why(e)})") from None
        stored_keep = self._counts.get("keep", 0)
        if stored_keep < 0:
            raise NeurosimError(f"{path} is a damaged run file: bad retention setting {stored_keep}")
        self.keep = keep if keep is not None else (stored_keep or None)
        if "keep" in self._counts:
            self._counts["keep"] = self.keep or 0
        self.recorders: dict[str, Recorder] = {name: open_recorder(self, name, group)
                                               for name, group in f["recordings"].items()}
        self._log_buf = np.zeros(_LOG_CHUNK, LOG_DTYPE)
        self._log_fill = 0
        self._health_buf = np.zeros(_LOG_CHUNK, HEALTH_DTYPE)
        self._health_fill = 0
        self._names: dict[str, int] | None = None
        self._last_flush = _time.monotonic()
        self._pid = os.getpid()
        if mode == "a":
            _open_writers.add(self)

    # -- creating and opening ---------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, config: Mapping, *, n_tasks: int | None = None,
               recordings: Mapping[str, Recording | Mapping] | None = None, keep: int | None = None,
               overwrite: bool = False, flush_interval: float = 2.0) -> "RunStore":
        """A new run file at ``path`` with ``config`` (JSON-serialisable), an ``n_tasks`` x ``n_tasks``
        accuracy matrix (growing with :meth:`set_R` when None) and the ``recordings`` (name ->
        :class:`~neurosim.storage.recording.Recording` or its fields as a dict), open for writing.

        ``keep``: how many of the latest checkpoints to retain (None: all); stored in the file, so a
        resumed run keeps as many. The file is built under a temporary name and renamed into place,
        so ``path`` never holds a half-built file. ``overwrite`` replaces a neurosim run file (or a
        damaged one), never a file of another kind, nor one another process writes.
        """
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise NeurosimError(f"cannot create {path}: {folder} is not a directory")
        if os.path.isdir(path):
            raise NeurosimError(f"cannot create {path}: it is a directory")
        if os.path.exists(path):
            if not overwrite:
                raise RunFileExists(path)
            cls._check_replaceable(path)
        try:
            config_json = json.dumps(config, sort_keys=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise NeurosimError(f"config must be JSON-serialisable: {e}") from None
        if n_tasks is not None and (isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 1):
            raise NeurosimError(f"n_tasks must be a positive integer or None, got {n_tasks!r}")
        _check_keep(keep)
        specs = {}
        for name, spec in (recordings or {}).items():
            if not isinstance(name, str) or not name.isidentifier():
                raise NeurosimError(f"recording names must be identifiers, got {name!r}")
            specs[name] = spec if isinstance(spec, Recording) else Recording(**dict(spec))
        created = _now()
        run_id = hashlib.sha1(f"{config_json}\0{created}\0{os.getpid()}\0{os.urandom(16).hex()}".encode()).hexdigest()
        tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
        # built in memory, then written as plain bytes: a failed write (disk full) is an ordinary
        # OSError, with no HDF5 state left behind
        with h5py.File(tmp, "w", driver="core", backing_store=False, libver=_LIBVER, locking=False) as f:
            cls._build(f, config_json, created, run_id, n_tasks, specs, keep)
            f.flush()
            image = f.id.get_file_image()
        try:
            with open(tmp, "xb") as out:
                out.write(image)
                out.flush()
                os.fsync(out.fileno())
            if os.path.exists(path):
                os.close(files.lock(path))  # not while another process writes it
            os.replace(tmp, path)
        except OSError as e:
            raise StoreWriteError(_write_failure_text(path, e.errno, e, len(image))) from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return cls._writer(path, keep, flush_interval)

    @staticmethod
    def _build(f: h5py.File, config_json: str, created: str, run_id: str, n_tasks: int | None,
               specs: Mapping[str, Recording], keep: int | None) -> None:
        f.attrs["neurosim_format"] = FORMAT
        f.attrs["neurosim_version"] = neurosim_version()
        f.attrs["created"] = created
        f.attrs["run_id"] = run_id
        f.create_dataset("config", data=config_json, dtype=h5py.string_dtype())
        m = f.create_group("metrics")
        if n_tasks is None:
            m.create_dataset("R", (0, 0), maxshape=(None, None), chunks=(16, 16), dtype="f8", fillvalue=np.nan)
        else:
            m.create_dataset("R", (n_tasks, n_tasks), dtype="f8", fillvalue=np.nan)
        _chunked(m, "log", LOG_DTYPE, chunk=_LOG_CHUNK)
        _chunked(m, "health", HEALTH_DTYPE, chunk=_LOG_CHUNK)
        _chunked(m, "health_names", f"S{NAME_BYTES}", chunk=256)
        c = f.create_group("checkpoints")
        c.create_dataset("data", (0,), maxshape=(None,), chunks=(_CKPT_CHUNK,), dtype="u1")  # CRC-32 per checkpoint
        _chunked(c, "index", INDEX_DTYPE, chunk=256)
        fields = ["log", "R", "checkpoints", "checkpoints_first", "keep", "static_crc32", "R_crc32", "health",
                  "health_names", "log_crc32", "health_crc32", "health_names_crc32", "index_crc32"]
        rec = f.create_group("recordings")
        for name, spec in specs.items():
            fields += spec.create(rec, name)
        commit = f.create_dataset("commit", data=np.zeros((2, 2 + len(fields)), np.int64))
        commit.attrs["fields"] = fields
        counts = dict.fromkeys(fields, 0)
        if n_tasks is not None:
            counts["R"] = n_tasks
            counts["R_crc32"] = _crc(np.full((n_tasks, n_tasks), np.nan))
        else:
            counts["R_crc32"] = _crc(np.zeros((0, 0)))
        counts["keep"] = keep or 0
        counts["static_crc32"] = _static_crc(f)
        commit[1] = _commit_row(1, np.array([counts[k] for k in fields], np.int64))  # slot seq % 2

    @staticmethod
    def _check_replaceable(path: str) -> None:
        """Raise unless ``path`` is a neurosim run file, or an HDF5 file too damaged to say."""
        if not files.is_hdf5(path):
            raise NeurosimError(f"{path} is not a run file (not HDF5); refusing to replace it")

        def kind() -> str:
            try:
                with h5py.File(path, "r", locking=False, swmr=True) as f:
                    return "foreign" if "neurosim_format" not in f.attrs else "run"
            except Exception:  # noqa: BLE001 - a damaged file may be replaced
                return "damaged"

        try:
            foreign = files.bounded(path, kind, "reading") == "foreign"
        except NeurosimError:  # too damaged to read in time
            foreign = False
        if foreign:
            raise NeurosimError(f"{path} is an HDF5 file but not a neurosim run file; refusing to replace it")

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, keep: int | None = None,
             flush_interval: float = 2.0, validate: bool = False) -> "RunStore":
        """Open a run file: ``"r"`` to read (also while another process writes it), ``"a"`` to write
        more into it (also after a writer was killed). ``keep`` (``"a"``): a new retention setting;
        None keeps the file's.

        ``"a"`` validates the whole file (:meth:`check`) read-only before writing anything, and so
        does ``"r"`` with ``validate``: where the system can fork, in a child process with a time
        limit. A file that fails is not touched and the error names it and what is damaged."""
        path = os.fspath(path)
        if mode not in ("r", "a"):
            raise NeurosimError(f"mode must be 'r' or 'a', got {mode!r}")
        _check_keep(keep)
        cls._check_path(path)
        if mode == "r":
            if validate:
                cls.validate(path)
            return cls._reader(path)
        for w in list(_open_writers):
            if not w._closed and w._pid == os.getpid() and files.same_file(w.path, path):
                raise NeurosimError(f"{path} is already open for writing in this process")
        return cls._writer(path, keep, flush_interval, existing=True)

    @classmethod
    def validate(cls, path: str | os.PathLike) -> None:
        """Open ``path`` for reading and :meth:`check` everything in it, read-only and bounded in time
        (see :meth:`open`); raises a one-line NeurosimError naming what is damaged."""
        path = os.fspath(path)
        cls._check_path(path)

        def check() -> None:
            with cls._reader(path) as store:
                store.check()

        files.bounded(path, check, "checking")

    @classmethod
    def read_config(cls, path: str | os.PathLike) -> dict:
        """The experiment stored in ``path``, after checking the whole file as :meth:`validate` does."""
        path = os.fspath(path)
        cls._check_path(path)

        def config() -> str:
            with cls._reader(path) as store:
                store.check()
                return store._config_json

        return json.loads(files.bounded(path, config, "checking"))

    @staticmethod
    def _check_path(path: str) -> None:
        if not os.path.exists(path):
            raise NeurosimError(f"{path} does not exist")
        if os.path.isdir(path):
            raise NeurosimError(f"{path} is a directory, not a run file")
        ours = {w._f.id.id for w in list(_open_writers) if not w._closed}
        if files.held_by_h5py(path, except_ids=ours):
            raise NeurosimError(f"{path} is already open in this process through h5py; close it first")

    @classmethod
    def _reader(cls, path: str) -> "RunStore":
        try:
            files.check_length(path)
            sb = files.superblock(path)
            fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, files.fapl())
            f = h5py.File(fid)
        except NeurosimError:
            raise
        except Exception as e:
            raise NeurosimError(f"{path} is not a readable HDF5 file: {_why(e)}") from None
        return cls._wrap(f, path, "r", clean=sb is not None and not sb[1])

    @classmethod
    def _wrap(cls, f: h5py.File, path: str, mode: str, lock_fd: int | None = None, keep: int | None = None,
              flush_interval: float = 2.0, clean: bool = False) -> "RunStore":
        try:
            try:
                if "neurosim_format" not in f.attrs:
                    raise NeurosimError(f"{path} is not a neurosim run file")
                version = f.attrs["neurosim_format"]
            except NeurosimError:
                raise
            except Exception as e:
                raise NeurosimError(f"{path} is not a readable HDF5 file: {_why(e)}") from None
            if not isinstance(version, (int, np.integer)) or version < 1:
                raise NeurosimError(f"{path} is not a neurosim run file (bad format attribute {version!r})")
            if version > FORMAT:
                raise NeurosimError(f"{path} was written by format {int(version)}, this neurosim reads up to {FORMAT}")
            try:
                return cls(f, path, mode, lock_fd, keep, flush_interval, clean)
            except NeurosimError:
                raise
            except Exception as e:
                raise NeurosimError(f"{path} is a damaged run file: {_why(e)}") from None
        except BaseException:
            f.close()
            raise

    @classmethod
    def _writer(cls, path: str, keep: int | None, flush_interval: float, existing: bool = False) -> "RunStore":
        """Lock; an existing file: validate it under the lock, then (left open by a killed writer)
        clear its mark; then open it for writing."""
        fd = files.lock(path)
        try:
            if existing:
                cls.validate(path)
                sb = files.superblock(path)
                if sb is None or sb[1]:
                    files.extend_to_allocation(path)
                    files.recover(path)
            fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, files.fapl())
            f = h5py.File(fid)
        except NeurosimError:
            os.close(fd)
            raise
        except Exception as e:
            os.close(fd)
            code, size = files.failure(e)
            raise StoreWriteError(_write_failure_text(path, code, e, size)) from None
        try:
            store = cls._wrap(f, path, "a", fd, keep, flush_interval)
        except BaseException:
            os.close(fd)
            raise
        try:
            with store.writing():
                store._trim()
                if existing:  # a commit slot torn by a killed writer is overwritten at once
                    store._commit()
            return store
        except BaseException:
            store.close()
            raise

    # -- commit record ----------------------------------------------------------------------
    def _load_commit(self) -> tuple[int, np.ndarray]:
        rows = self.read_dataset(self._commit_ds, lambda d: d[...], "the commit record")
        slots = _valid_slots(rows)
        if not slots or slots[0][1].size != len(self.fields):
            raise NeurosimError(f"{self.path} is a damaged run file: no valid commit record")
        seq = slots[0][0]
        written = sum(bool(row.any()) for row in rows)  # a slot never written is all zeros
        if self._clean and (written > len(slots) or seq > 1 and (len(slots) < 2 or slots[1][0] != seq - 1)):
            # a writer that closed cleanly leaves no torn slot: an invalid one is damage
            raise NeurosimError(f"{self.path} is a damaged run file: one slot of its commit record is damaged")
        return slots[0]

    def refresh(self) -> None:
        """Reader: move on to the writer's latest commit."""
        if self.mode == "r" and not self._closed:
            self._seq, counts = self._load_commit()
            self._counts = self._committed = dict(zip(self.fields, (int(c) for c in counts)))

    def count(self, field: str) -> int:
        """A counter of the commit record (rows of the log, events of a recording, ...)."""
        return self._counts[field]

    def set_count(self, field: str, value: int) -> None:
        """Writer: set a counter; the next commit makes it, and what it counts, visible."""
        self._counts[field] = value

    def read_dataset(self, ds: h5py.Dataset, fn, what: str):
        """``fn(ds)``, refreshing ``ds`` first when reading a file that may be written meanwhile;
        retried a few times, since a writer may be moving the chunks being read."""
        for attempt in range(_READ_RETRIES):
            try:
                if self.mode == "r":
                    ds.refresh()
                return fn(ds)
            except NeurosimError:
                raise
            except Exception as e:
                if attempt == _READ_RETRIES - 1 or self._clean:
                    if "filter returned failure" in str(e):
                        raise NeurosimError(f"{self.path} is a damaged run file: {what} fails its checksum") from None
                    raise NeurosimError(f"{self.path} is a damaged run file: cannot read {what} ({_why(e)})") from None
                _time.sleep(0.01 * 2 ** attempt)

    def _commit(self) -> None:
        self._check_still_there()
        self._f.flush()
        seq = self._seq + 1
        self._commit_ds[seq % 2] = _commit_row(seq, np.array([self._counts[k] for k in self.fields], np.int64))
        self._commit_ds.flush()
        self._seq, self._committed = seq, dict(self._counts)
        self._last_flush = _time.monotonic()

    def _trim(self) -> None:
        """Shrink datasets to what is committed (drops what a killed writer left half done)."""
        self._log.resize((self._counts["log"],))
        if self._health is not None:
            self._health.resize((self._counts["health"],))
            self._health_names.resize((self._counts["health_names"],))
        self._index.resize((self._counts["checkpoints"],))
        end = max((int(r["offset"] + r["size"]) for r in self._retained_rows()), default=0)
        if self._data.shape[0] > end:
            self._data.resize((end,))
        if self._R.maxshape[0] is None:
            n = self._counts["R"]
            self._R.resize((n, n))
        for r in self.recorders.values():
            r.trim()
        self._f.flush()

    # -- failed writes --------------------------------------------------------------------------
    @contextlib.contextmanager
    def writing(self, needed: int = 0) -> Iterator[None]:
        """Guard a write: an OSError from HDF5 (disk full, ...) stops the writer for good (see the
        module docstring) and becomes a :class:`StoreWriteError`. ``needed``: bytes the write adds."""
        if self._failure is not None:
            raise StoreWriteError(self._failure)
        try:
            with files.dealloc_errors_raised():
                yield
        except (OSError, RuntimeError) as e:
            code, size = files.failure(e)
            self._stop(_write_failure_text(self.path, code, e, max(size, needed), self._kept()))
            raise StoreWriteError(self._failure) from None

    def _kept(self) -> str:
        k = self._committed.get("checkpoints", 0)
        return f"the file keeps what was committed before (checkpoint {k - 1} the latest)" if k else \
            "the file keeps what was committed before"

    def _stop(self, message: str) -> None:
        """Write nothing more: point HDF5's descriptor at the null device and remember why. HDF5
        keeps the dirty metadata a failed write left and tries to write it again at every flush and
        at close; repeated failures there end in a crash of the process (at exit at the latest).
        With the null device the close succeeds, and the file keeps what was committed before."""
        self._failure = message
        if self._hdf5_fd is not None:
            try:
                null = os.open(os.devnull, os.O_RDWR)
                try:
                    os.dup2(null, self._hdf5_fd)
                finally:
                    os.close(null)
            except OSError:
                pass

    def _check_still_there(self) -> None:
        """Stop (one line) if the file was deleted or replaced while this writer had it open."""
        if self._lock_fd is None:
            return
        try:
            here, ours = os.stat(self.path), os.fstat(self._lock_fd)
            gone = (here.st_dev, here.st_ino) != (ours.st_dev, ours.st_ino)
        except OSError:
            gone = True
        if gone:
            self._stop(f"{self.path} vanished while it was written (deleted, moved or replaced): the run stopped; "
                       f"what it wrote went to the vanished file")
            raise StoreWriteError(self._failure)

    # -- writing ------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """A NeurosimError unless the store is open for writing."""
        if self._closed:
            raise NeurosimError(f"{self.path} is closed")
        if self.mode != "a":
            raise NeurosimError(f"{self.path} is open for reading only")
        if self._failure is not None:
            raise StoreWriteError(self._failure)

    def maybe_flush(self) -> None:
        """:meth:`flush` if ``flush_interval`` seconds passed since the last commit."""
        if _time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def _append(self, ds: h5py.Dataset, field: str, rows: np.ndarray) -> None:
        """Append ``rows`` to ``ds``, counted by ``field``, their bytes added to ``field``'s running CRC."""
        rows = np.ascontiguousarray(rows, ds.dtype)
        n = self._counts[field]
        ds.resize((n + len(rows), *ds.shape[1:]))
        ds[n:n + len(rows)] = rows
        self._counts[field] = n + len(rows)
        self.add_crc(f"{field}_crc32", rows)

    def add_crc(self, field: str, data: np.ndarray) -> None:
        """Writer: extend the running CRC-32 counter ``field`` (if the file has it) by ``data``'s bytes."""
        if field in self._counts:
            self._counts[field] = zlib.crc32(np.ascontiguousarray(data).tobytes(), self._counts[field])

    def _write_log(self) -> None:
        if self._log_fill:
            self._append(self._log, "log", self._log_buf[:self._log_fill])
            self._log_fill = 0
        if self._health_fill:
            self._append(self._health, "health", self._health_buf[:self._health_fill])
            self._health_fill = 0

    def _pending_bytes(self) -> int:
        return (self._log_fill * LOG_DTYPE.itemsize + self._health_fill * HEALTH_DTYPE.itemsize
                + sum(r.pending_bytes() for r in self.recorders.values()))

    def _write_pending(self) -> None:
        self._write_log()
        for r in self.recorders.values():
            r.write_pending()

    def flush(self) -> None:
        """Write everything buffered and commit it: readers see it, a crash keeps it."""
        self.check_writable()
        with self.writing(self._pending_bytes()):
            self._write_pending()
            if self._counts != self._committed:
                self._commit()
        self._last_flush = _time.monotonic()

    def log(self, task: int, epoch: int, step: int, loss: float, time: float | None = None) -> None:
        """Append a row to the log table (``time``: seconds since the epoch, now by default)."""
        self.check_writable()
        row = self._log_buf[self._log_fill]
        row["task"], row["epoch"], row["step"], row["loss"] = task, epoch, step, loss
        row["time"] = _time.time() if time is None else time
        self._log_fill += 1
        if self._log_fill == _LOG_CHUNK:
            with self.writing(self._pending_bytes()):
                self._write_log()
        self.maybe_flush()

    def log_health(self, task: int, epoch: int, step: int, figures: Mapping[str, float]) -> None:
        """Append health figures (name -> value, e.g. ``"hlop.orthonormality_error"``) at ``step``;
        a file without a health table (older format) ignores them."""
        self.check_writable()
        if self._health is None or not figures:
            return
        names = self._health_name_index()
        for name, value in figures.items():
            key = str(name)
            if key not in names:
                raw = key.encode()
                if len(raw) > NAME_BYTES:
                    raise NeurosimError(f"health figure names are at most {NAME_BYTES} bytes, got {key!r}")
                with self.writing(NAME_BYTES):
                    self._append(self._health_names, "health_names", np.array([raw], f"S{NAME_BYTES}"))
                names[key] = len(names)
            if self._health_fill == _LOG_CHUNK:
                with self.writing(self._pending_bytes()):
                    self._write_log()
            row = self._health_buf[self._health_fill]
            row["task"], row["epoch"], row["step"], row["name"], row["value"] = task, epoch, step, names[key], value
            self._health_fill += 1
        self.maybe_flush()

    def _health_name_index(self) -> dict[str, int]:
        if self._names is None or self.mode == "r":
            n = self._counts["health_names"]
            raw = self.read_dataset(self._health_names, lambda d: d[:n], "the health names") if n else []
            self._names = {bytes(x).decode("utf-8", "replace"): k for k, x in enumerate(raw)}
        return self._names

    def set_R(self, i: int, row) -> None:
        """Set row ``i`` of the accuracy matrix (the accuracies on tasks ``0 .. len(row) - 1`` after
        training task ``i``; NaN where unknown) and commit it."""
        self.check_writable()
        row = np.asarray(row, np.float64).reshape(-1)
        n = self._counts["R"]
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0:
            raise NeurosimError(f"R row index must be a non-negative integer, got {i!r}")
        if self._R.maxshape[0] is None:
            side = max(n, i + 1, row.size)
        elif i >= n or row.size > n:
            raise NeurosimError(f"R is {n} x {n}; cannot set row {i} with {row.size} values")
        else:
            side = n
        with self.writing(8 * side * side):
            if side > n:
                self._R.resize((side, side))
                self._counts["R"] = side
            self._R[i, :row.size] = row
            if "R_crc32" in self._counts:
                self._counts["R_crc32"] = _crc(self._R[:side, :side])
        self.flush()

    # -- checkpoints ----------------------------------------------------------------------------
    def _index_rows(self) -> np.ndarray:
        n = self._counts["checkpoints"]
        return self.read_dataset(self._index, lambda d: d[:n], "the checkpoint index") if n else np.zeros(0, INDEX_DTYPE)

    def _retained_rows(self) -> np.ndarray:
        return self._index_rows()[self._counts["checkpoints_first"]:]

    def write_checkpoint(self, state) -> int:
        """Write ``state`` (nested dicts, lists and tuples of tensors, arrays, numbers, strings; see
        :mod:`neurosim.storage.snapshot`) as the next checkpoint and commit it with everything buffered;
        returns its index. Only the latest ``keep`` checkpoints are retained."""
        self.check_writable()
        with self.writing(self._pending_bytes()):
            self._write_pending()
        blob = snapshot.encode({"state": state, "store": self._rewind_point()})
        retained = self._retained_rows()
        spans = sorted((int(r["offset"]), int(r["offset"] + r["size"])) for r in retained)
        offset = 0
        for start, stop in spans:  # first gap among the retained checkpoints that fits
            if start - offset >= len(blob):
                break
            offset = max(offset, stop)
        end = offset + len(blob)
        grow = max(0, -(-end // _CKPT_CHUNK) * _CKPT_CHUNK - self._data.shape[0]) if self._data.shape[0] < end else 0
        with self.writing(grow + len(blob)):
            if self._data.shape[0] < end:
                self._data.resize((end,))
            self._data[offset:end] = np.frombuffer(blob, np.uint8)
            k = self._counts["checkpoints"]
            row = np.array([(offset, len(blob), zlib.crc32(blob), _time.time())], INDEX_DTYPE)
            self._index.resize((k + 1,))
            self._index[k] = row[0]
            self._counts["checkpoints"] = k + 1
            self.add_crc("index_crc32", row)
            if self.keep is not None:
                self._counts["checkpoints_first"] = max(self._counts["checkpoints_first"], k + 1 - self.keep)
            self._commit()
        return k

    def _rewind_point(self) -> dict:
        n = self._counts["R"]
        return {"counts": {f: self._counts[f] for f in self.fields if f not in _NOT_REWOUND},
                "R": self._R[:n, :n] if n else np.zeros((0, 0))}

    def checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint in the index, the complete ones first, then one left half written (if any)."""
        rows = self._index_rows()
        first = self._counts["checkpoints_first"]
        out = [CheckpointInfo(k, int(r["size"]), float(r["time"]), True, k >= first) for k, r in enumerate(rows)]
        extent = self.read_dataset(self._index, lambda d: d.shape[0], "the checkpoint index")
        if extent > len(rows):
            try:
                r = self.read_dataset(self._index, lambda d: d[len(rows)], "the checkpoint index")
            except NeurosimError:  # a row being written, not committed: nothing to show
                return out
            if r["size"] > 0:
                out.append(CheckpointInfo(len(rows), int(r["size"]), float(r["time"]), False, False))
        return out

    def _blob(self, k: int) -> np.ndarray:
        rows = self._index_rows()
        if not 0 <= k < len(rows):
            raise NeurosimError(f"{self.path} has no checkpoint {k}; complete ones: 0 .. {len(rows) - 1}")
        if k < self._counts["checkpoints_first"]:
            raise NeurosimError(f"checkpoint {k} of {self.path} was dropped; retained: "
                                f"{self._counts['checkpoints_first']} .. {len(rows) - 1}")
        off, size = int(rows[k]["offset"]), int(rows[k]["size"])
        if off < 0 or size < 0:
            raise NeurosimError(f"checkpoint {k} of {self.path} is corrupted (its index points outside the data)")
        data = self.read_dataset(self._data, lambda d: d[off:off + size], f"checkpoint {k}")
        if data.size != size:
            raise NeurosimError(f"checkpoint {k} of {self.path} is corrupted (its index points outside the data)")
        if zlib.crc32(data) != int(rows[k]["crc32"]):
            raise NeurosimError(f"checkpoint {k} of {self.path} is corrupted (checksum mismatch)")
        return data

    def _load(self, k: int) -> dict:
        blob = self._blob(k)
        try:
            out = snapshot.decode(blob)
        except NeurosimError as e:
            raise NeurosimError(f"checkpoint {k} of {self.path} is corrupted ({e})") from None
        if not isinstance(out, dict) or "state" not in out or "store" not in out:
            raise NeurosimError(f"checkpoint {k} of {self.path} is corrupted (not a store checkpoint)")
        return out

    def checkpoint(self, k: int):
        """The state of retained checkpoint ``k``."""
        return self._load(k)["state"]

    def latest_checkpoint(self) -> tuple[int, object] | None:
        """``(index, state)`` of the last complete checkpoint, or None."""
        for attempt in range(3):
            k = self._counts["checkpoints"] - 1
            try:
                return None if k < 0 else (k, self._load(k)["state"])
            except NeurosimError:
                # a reader's checkpoint may have been dropped since, its space reused: move on
                if self.mode == "a" or attempt == 2:
                    raise
                self.refresh()

    def resume(self) -> tuple[int, object] | None:
        """Writer: the last complete checkpoint as :meth:`latest_checkpoint`, after rewinding the log,
        the accuracy matrix and the recordings to the moment it was written (to nothing when there
        is none), so that a resumed run appends what an uninterrupted one would have."""
        self.check_writable()
        k = self._counts["checkpoints"] - 1
        blob = self._load(k) if k >= 0 else {"state": None, "store": None}
        point = blob["store"] or {"counts": {}, "R": np.zeros((0, 0))}
        self._log_fill = self._health_fill = 0
        self._names = None
        R = np.asarray(point["R"], np.float64)
        with self.writing(R.nbytes):
            for field in _REWOUND:
                if field in self._counts:
                    self._counts[field] = point["counts"].get(field, 0)
            if self._R.maxshape[0] is None:
                self._R.resize(R.shape)
                self._counts["R"] = R.shape[0]
            else:
                self._R[...] = np.nan
            if R.size:
                self._R[:R.shape[0], :R.shape[1]] = R
            if "R_crc32" in self._counts:
                n = self._counts["R"]
                self._counts["R_crc32"] = _crc(self._R[:n, :n])
            for r in self.recorders.values():
                r.rewind(point["counts"])
            self._commit()
            self._trim()
        return None if k < 0 else (k, blob["state"])

    # -- reading --------------------------------------------------------------------------------
    @property
    def R(self) -> np.ndarray:
        """The accuracy matrix (NaN where not known yet)."""
        n = self._counts["R"]
        return self.read_dataset(self._R, lambda d: d[:n, :n], "the accuracy matrix") if n else np.zeros((0, 0))

    def read_log(self) -> np.ndarray:
        """The log table as a structured array (fields task, epoch, step, loss, time); a writer
        sees its buffered rows too."""
        n = self._counts["log"]
        rows = self.read_dataset(self._log, lambda d: d[:n], "the log") if n else np.zeros(0, LOG_DTYPE)
        return np.concatenate([rows, self._log_buf[:self._log_fill]]) if self._log_fill else rows

    def read_health(self) -> dict[str, np.ndarray]:
        """Health figures by name, each a structured array (task, epoch, step, value) in logged order;
        a writer sees its buffered rows too."""
        if self._health is None:
            return {}
        n = self._counts["health"]
        rows = self.read_dataset(self._health, lambda d: d[:n], "the health table") if n else np.zeros(0, HEALTH_DTYPE)
        if self._health_fill:
            rows = np.concatenate([rows, self._health_buf[:self._health_fill]])
        names = self._health_name_index()
        out = {}
        for name, k in names.items():
            sel = rows[rows["name"] == k]
            part = np.zeros(len(sel), [("task", "<i4"), ("epoch", "<i4"), ("step", "<i8"), ("value", "<f8")])
            for field in part.dtype.names:
                part[field] = sel[field]
            out[name] = part
        return out

    def recorder(self, name: str) -> Recorder:
        """The recorder of recording ``name`` (declared at :meth:`create`)."""
        if name not in self.recorders:
            known = ", ".join(self.recorders) or "none"
            raise NeurosimError(f"{self.path} has no recording {name!r} (recordings are declared when the store "
                                f"is created; it has: {known})")
        return self.recorders[name]

    def read_spikes(self, name: str, start: int = 0, stop: int | None = None):
        """Spike events of steps ``start <= t < stop``: ``(t, i)``, or ``(t, i, b)`` when the
        recording has a batch; t int64, i and b int32."""
        return self.recorder(name).read(start, stop)

    def read_state(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values [K, n] or [K, batch, n])`` of a state recording."""
        return self.recorder(name).read()

    def read_weights(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values [K, *shape])`` of a weight recording."""
        return self.recorder(name).read()

    def check(self) -> None:
        """Verify, reading only, everything the file holds and a resume relies on: the fixed part
        (``static_crc32``), the accuracy matrix (``R_crc32``, in a file closed cleanly: a killed
        writer may have written a row it did not commit), the counters against the datasets, every
        committed row of the log, the health table, the checkpoint index and the recordings (all
        present, their running CRC-32s), and every retained checkpoint's CRC-32 and decoding. Raises
        :class:`NeurosimError` on the first thing that fails."""
        damaged = f"{self.path} is a damaged run file"
        c = self._counts
        if "static_crc32" in c:
            try:
                crc = _static_crc(self._f)
            except Exception as e:  # noqa: BLE001
                raise NeurosimError(f"{damaged}: cannot read its fixed part ({_why(e)})") from None
            if crc != c["static_crc32"]:
                raise NeurosimError(f"{damaged}: its experiment, attributes or recordings' declarations do not "
                                    f"match their checksum")
        for field in self.fields:
            if c[field] < 0:
                raise NeurosimError(f"{damaged}: negative counter {field}")
        n = c["R"]
        if self._R.ndim != 2 or self._R.shape[0] < n or self._R.shape[1] < n:
            raise NeurosimError(f"{damaged}: R counts {n} x {n}, its dataset is {self._R.shape}")
        R = self.R
        if "R_crc32" in c and self._clean and _crc(R) != c["R_crc32"]:
            raise NeurosimError(f"{damaged}: the accuracy matrix does not match its checksum")
        for ds, field, what, dtype in ((self._log, "log", "the log", LOG_DTYPE),
                                       (self._health, "health", "the health table", HEALTH_DTYPE),
                                       (self._health_names, "health_names", "the health names", None),
                                       (self._index, "checkpoints", "the checkpoint index", INDEX_DTYPE)):
            if ds is None:
                continue
            if dtype is not None and ds.dtype != dtype:
                raise NeurosimError(f"{damaged}: {what} has the wrong row type")
            crc_field = "index_crc32" if field == "checkpoints" else f"{field}_crc32"
            check_rows(self, ds, c[field], what, c.get(crc_field))
        if self._health is not None and c["health"]:
            names = self.read_dataset(self._health, lambda d: d["name"][:c["health"]], "the health table")
            if names.min() < 0 or names.max() >= c["health_names"]:
                raise NeurosimError(f"{damaged}: the health table names figures it does not have")
        if c["checkpoints_first"] > c["checkpoints"]:
            raise NeurosimError(f"{damaged}: more checkpoints dropped than written")
        for info in self.checkpoints():
            if info.complete and info.retained:
                point = self._load(info.index)["store"]
                counts = point.get("counts") if isinstance(point, dict) else None
                if not isinstance(counts, dict) or any(not isinstance(v, int) or not 0 <= v <= c.get(f, v)
                                                       for f, v in counts.items() if f in c and
                                                       not f.endswith("crc32")):
                    raise NeurosimError(f"checkpoint {info.index} of {self.path} is corrupted (its rewind point "
                                        f"does not fit the file)")
        for r in self.recorders.values():
            r.check()

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush (a writer), then close the file; closing twice is harmless. After a failed write
        the file is closed without writing (the failure was raised already)."""
        if self._closed:
            return
        try:
            if self.mode == "a" and self._failure is None:
                self.flush()
        finally:
            self._closed = True
            _open_writers.discard(self)
            try:
                with files.dealloc_errors_raised():
                    self._f.close()
            except Exception as e:  # noqa: BLE001 - closing after a failure writes to the null device
                if self._failure is None:
                    code, size = files.failure(e)
                    self._stop(_write_failure_text(self.path, code, e, size, self._kept()))
                    try:
                        self._f.close()
                    except Exception:  # noqa: BLE001
                        pass
                    raise StoreWriteError(self._failure) from None
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is not None:  # already failing: close without a second error
            try:
                self.close()
            except NeurosimError:
                pass
        else:
            self.close()

    def __repr__(self) -> str:
        return f"RunStore({self.path!r}, mode={self.mode!r}{', closed' if self._closed else ''})"


class RunFileExists(NeurosimError):
    """:meth:`RunStore.create` refused to replace an existing file."""

    def __init__(self, path: str):
        super().__init__(f"{path} already exists; pass overwrite=True to replace it")
        self.path = path


def _check_keep(keep) -> None:
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise NeurosimError(f"keep must be a positive integer or None, got {keep!r}")


def _write_failure_text(path: str, code: int | None, e: BaseException, needed: int = 0, kept: str = "") -> str:
    """One line on a failed write of ``path`` (``code``: its errno)."""
    tail = f"; {kept}" if kept else ""
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        folder = os.path.dirname(os.path.abspath(path))
        try:
            free = files.size_text(shutil.disk_usage(folder).free)
        except OSError:
            free = "unknown"
        need = f"; at least {files.size_text(needed)} more needed" if needed else ""
        return f"cannot write {path}: no space left on device ({free} free{need}){tail}; it resumes once there is space"
    if code == errno.EFBIG:
        at = f" at {files.size_text(_size(path))}" if _size(path) else ""
        return f"cannot write {path}: the file reached the file-size limit of this process or file system{at}{tail}"
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"cannot write {path}: {os.strerror(code)}{tail}"
    if code == errno.ENOENT or not os.path.exists(path):
        return f"cannot write {path}: it vanished (deleted or moved){tail}"
    return f"cannot write {path}: {os.strerror(code) if code else _why(e)}{tail}"


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0
