"""The run store: one HDF5 file per run, written while the run goes, readable at any moment.

Layout (format 1)::

    /                     attrs neurosim_format, neurosim_version, created (ISO 8601), run_id
    /config               the experiment as a JSON string
    /commit               [2, 2 + K] int64, the commit record (below); attr fields: the K counter names
    /metrics/R            accuracy matrix, NaN until known ([n, n]; growing when n_tasks is None)
    /metrics/log          table (task, epoch, step, loss, time), one row per log() call
    /checkpoints/data     uint8: encoded checkpoints (neurosim.storage.snapshot), placed end to end
    /checkpoints/index    table (offset, size, crc32, time), one row per checkpoint
    /recordings/NAME      spike events, sampled states or weight snapshots (neurosim.storage.recording)

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

A SWMR writer killed leaves the superblock marked "open for writing" and an end-of-allocation
address behind the data. Readers open such a file all the same (in SWMR read mode). To write
again, :meth:`RunStore.open` validates the file read-only first, then clears the mark and sets the
end of allocation to the end of the file, as ``h5clear -s --increment=0`` does, through HDF5
functions that h5py does not wrap. Writers hold an advisory lock on the file, so a second writer
gets a clear error instead of corrupting it. Safe against the process dying (SIGKILL, crashes),
not against losing the operating system's cache (power loss).
"""
from __future__ import annotations

import ctypes
import datetime
import errno
import fcntl
import hashlib
import json
import os
import struct
import time as _time
import zlib
from typing import Mapping, NamedTuple

import h5py
import numpy as np

from . import snapshot
from ..errors import NeurosimError
from .recording import Recorder, Recording, open_recorder

FORMAT = 1
"""The newest store format this neurosim writes and reads."""

LOG_DTYPE = np.dtype([("task", "<i4"), ("epoch", "<i4"), ("step", "<i8"), ("loss", "<f8"), ("time", "<f8")])
INDEX_DTYPE = np.dtype([("offset", "<i8"), ("size", "<i8"), ("crc32", "<u4"), ("time", "<f8")])
_LIBVER = ("v110", "latest")  # SWMR needs the 1.10 formats; no newer ones, so that HDF5 1.10+ reads the files
_LOG_CHUNK = 4096
_CKPT_CHUNK = 1 << 20
_READ_RETRIES = 6
_METADATA_READ_ATTEMPTS = 24  # pauses double from 1 ns: <= 17 ms a block; the default (100) hangs


class CheckpointInfo(NamedTuple):
    """A checkpoint in the index: ``complete`` once committed; ``retained`` while its data is kept."""

    index: int
    size: int
    time: float
    complete: bool
    retained: bool


# -- HDF5 plumbing -------------------------------------------------------------------------------
_lib = None


def _hdf5():
    """The HDF5 library h5py is linked to, for the calls h5py does not wrap."""
    global _lib
    if _lib is None:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libhdf5" in line and "_hl" not in line}
        found = [p for p in paths if os.path.basename(p).startswith("libhdf5")]
        lib = ctypes.CDLL(found[0] if found else "libhdf5.so")
        lib.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
        lib.H5Pset.restype = ctypes.c_int
        lib.H5Fincrement_filesize.argtypes = [ctypes.c_int64, ctypes.c_uint64]
        lib.H5Fincrement_filesize.restype = ctypes.c_int
        lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
        lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
        _lib = lib
    return _lib


def _fapl(recover: bool = False) -> h5py.h5p.PropFAID:
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
    fapl.set_file_locking(False, True)
    if recover:
        yes = ctypes.c_bool(True)
        lib = _hdf5()
        for prop in (b"clear_status_flags", b"skip_eof_check"):
            if lib.H5Pset(fapl.id, prop, ctypes.byref(yes)) < 0:
                raise NeurosimError(f"this HDF5 build cannot reopen interrupted files (no {prop.decode()} property)")
    return fapl


def _recover(path: str) -> None:
    """Clear the "open for writing" mark and set the end of allocation to the end of the file."""
    with h5py._objects.phil:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, _fapl(recover=True))
        try:
            if _hdf5().H5Fincrement_filesize(fid.id, 0) < 0:
                raise NeurosimError(f"cannot reset the end of allocation of {path}")
        finally:
            fid.close()


def _open_reader(path: str) -> h5py.File:
    fapl = _fapl()
    with h5py._objects.phil:
        _hdf5().H5Pset_metadata_read_attempts(fapl.id, _METADATA_READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl)
    return h5py.File(fid)


def _open_writer(path: str) -> h5py.File:
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR | h5py.h5f.ACC_SWMR_WRITE, _fapl())
    return h5py.File(fid)


def _lock(path: str) -> int:
    """An exclusive advisory lock on ``path`` (open-file-description lock where the system has one,
    so that it neither conflicts with HDF5's own locks nor drops when another descriptor closes)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except OSError as e:
        raise NeurosimError(f"cannot open {path} for writing: {e.strerror}") from None
    try:
        if hasattr(fcntl, "F_OFD_SETLK"):
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
            raise NeurosimError(f"{path} is being written by another process") from None
        raise NeurosimError(f"cannot lock {path}: {e.strerror}") from None
    return fd


def _check_length(path: str) -> None:
    """Raise if a cleanly closed file is shorter than its superblock says.

    HDF5 makes this check itself, except when opening for SWMR reading (how run files are read);
    a superblock of version 2 or 3 at offset 0 has the status flags in byte 11 and the end-of-file
    address in bytes 28-36. While a file is written, or after its writer was killed, the flags are
    set and the address lags behind, so there is nothing to check then.
    """
    with open(path, "rb") as f:
        head = f.read(48)
    if len(head) == 48 and head[:8] == b"\x89HDF\r\n\x1a\n" and head[8] in (2, 3) and head[9] == 8 and not head[11]:
        stored = int.from_bytes(head[28:36], "little")
        size = os.path.getsize(path)
        if size < stored:
            raise NeurosimError(f"{path} is not a readable HDF5 file: truncated file ({size} bytes, "
                                f"its superblock says {stored})")


def _why(e: BaseException) -> str:
    text = str(e.args[0] if isinstance(e, KeyError) and e.args else e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def _commit_row(seq: int, counts: np.ndarray) -> np.ndarray:
    body = np.concatenate([np.array([seq], np.int64), counts.astype(np.int64)])
    return np.concatenate([body[:1], [zlib.crc32(body.tobytes())], body[1:]]).astype(np.int64)


def _best_commit(rows: np.ndarray) -> tuple[int, np.ndarray] | None:
    """(seq, counts) of the valid slot with the highest sequence number, or None."""
    best = None
    for row in rows:
        seq = int(row[0])
        body = np.concatenate([row[:1], row[2:]])
        if seq > 0 and int(row[1]) == zlib.crc32(body.tobytes()) and (best is None or seq > best[0]):
            best = (seq, row[2:].copy())
    return best


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).astimezone().isoformat(timespec="seconds")


def neurosim_version() -> str:
    try:
        from importlib.metadata import version

        return version("neurosim")
    except Exception:  # not installed: the source tree's version
        from ..version import __version__

        return __version__


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
                 keep: int | None = None, flush_interval: float = 2.0):
        self._f, self.path, self.mode, self._lock_fd, self._closed = f, path, mode, lock_fd, False
        self.keep, self.flush_interval = keep, flush_interval
        self.format = int(f.attrs["neurosim_format"])
        self.neurosim_version = str(f.attrs.get("neurosim_version", ""))
        self.created = str(f.attrs.get("created", ""))
        self.run_id = str(f.attrs.get("run_id", ""))
        self._commit_ds = f["commit"]
        self.fields = [str(x) for x in self._commit_ds.attrs["fields"]]
        self.config = json.loads(f["config"].asstr()[()])
        self._R, self._log, self._index, self._data = (f["metrics/R"], f["metrics/log"], f["checkpoints/index"],
                                                       f["checkpoints/data"])
        self._seq, counts = self._load_commit()
        self._counts = dict(zip(self.fields, (int(c) for c in counts)))
        self._committed = dict(self._counts)
        self.recorders: dict[str, Recorder] = {name: open_recorder(self, name, group)
                                               for name, group in f["recordings"].items()}
        self._log_buf = np.zeros(_LOG_CHUNK, LOG_DTYPE)
        self._log_fill = 0
        self._last_flush = _time.monotonic()

    # -- creating and opening ---------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike, config: Mapping, *, n_tasks: int | None = None,
               recordings: Mapping[str, Recording | Mapping] | None = None, keep: int | None = None,
               overwrite: bool = False, flush_interval: float = 2.0) -> "RunStore":
        """A new run file at ``path`` with ``config`` (JSON-serialisable), an ``n_tasks`` x ``n_tasks``
        accuracy matrix (growing with :meth:`set_R` when None) and the ``recordings`` (name ->
        :class:`~neurosim.storage.recording.Recording` or its fields as a dict), open for writing.

        ``keep``: how many of the latest checkpoints to retain (None: all). The file is built under
        a temporary name and renamed into place, so ``path`` never holds a half-built file.
        """
        path = os.fspath(path)
        if os.path.exists(path):
            if not overwrite:
                raise NeurosimError(f"{path} already exists; pass overwrite=True to replace it")
            os.close(_lock(path))  # not while another process writes it
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            raise NeurosimError(f"cannot create {path}: {folder} is not a directory")
        try:
            config_json = json.dumps(config, sort_keys=False)
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
        try:
            with h5py.File(tmp, "w", libver=_LIBVER, locking=False) as f:
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
                m.create_dataset("log", (0,), maxshape=(None,), chunks=(_LOG_CHUNK,), dtype=LOG_DTYPE)
                c = f.create_group("checkpoints")
                c.create_dataset("data", (0,), maxshape=(None,), chunks=(_CKPT_CHUNK,), dtype="u1")
                c.create_dataset("index", (0,), maxshape=(None,), chunks=(256,), dtype=INDEX_DTYPE)
                fields = ["log", "R", "checkpoints", "checkpoints_first"]
                rec = f.create_group("recordings")
                for name, spec in specs.items():
                    fields += spec.create(rec, name)
                commit = f.create_dataset("commit", data=np.zeros((2, 2 + len(fields)), np.int64))
                commit.attrs["fields"] = fields
                counts = np.zeros(len(fields), np.int64)
                if n_tasks is not None:
                    counts[fields.index("R")] = n_tasks
                commit[1] = _commit_row(1, counts)  # slot seq % 2
            os.replace(tmp, path)
        except OSError as e:
            raise NeurosimError(f"cannot create {path}: {_why(e)}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return cls._writer(path, keep, flush_interval)

    @classmethod
    def open(cls, path: str | os.PathLike, mode: str = "r", *, keep: int | None = None,
             flush_interval: float = 2.0) -> "RunStore":
        """Open a run file: ``"r"`` to read (also while another process writes it), ``"a"`` to write
        more into it (also after a writer was killed). The file is validated read-only first;
        nothing is written into a file that does not validate."""
        path = os.fspath(path)
        if mode not in ("r", "a"):
            raise NeurosimError(f"mode must be 'r' or 'a', got {mode!r}")
        _check_keep(keep)
        store = cls._reader(path)
        if mode == "r":
            return store
        store.close()
        return cls._writer(path, keep, flush_interval, existing=True)

    @classmethod
    def _reader(cls, path: str) -> "RunStore":
        if not os.path.exists(path):
            raise NeurosimError(f"{path} does not exist")
        if os.path.isdir(path):
            raise NeurosimError(f"{path} is a directory, not a run file")
        try:
            _check_length(path)
            f = _open_reader(path)
        except NeurosimError:
            raise
        except Exception as e:
            raise NeurosimError(f"{path} is not a readable HDF5 file: {_why(e)}") from None
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
                return cls(f, path, "r")
            except NeurosimError:
                raise
            except Exception as e:
                raise NeurosimError(f"{path} is a damaged run file: {_why(e)}") from None
        except BaseException:
            f.close()
            raise

    @classmethod
    def _writer(cls, path: str, keep: int | None, flush_interval: float, existing: bool = False) -> "RunStore":
        """Lock, then (an existing file) validate again under the lock and recover, then open."""
        fd = _lock(path)
        try:
            if existing:
                cls._reader(path).close()
                _recover(path)
            f = _open_writer(path)
        except NeurosimError:
            os.close(fd)
            raise
        except Exception as e:
            os.close(fd)
            raise NeurosimError(f"cannot open {path} for writing: {_why(e)}") from None
        try:
            store = cls(f, path, "a", fd, keep, flush_interval)
            store._trim()
            return store
        except BaseException:
            f.close()
            os.close(fd)
            raise

    # -- commit record ----------------------------------------------------------------------
    def _load_commit(self) -> tuple[int, np.ndarray]:
        best = _best_commit(self.read_dataset(self._commit_ds, lambda d: d[...], "the commit record"))
        if best is None or best[1].size != len(self.fields):
            raise NeurosimError(f"{self.path} is a damaged run file: no valid commit record")
        return best

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
            except Exception as e:
                if attempt == _READ_RETRIES - 1:
                    raise NeurosimError(f"{self.path}: cannot read {what}: {_why(e)}") from None
                _time.sleep(0.01 * 2 ** attempt)

    def _commit(self) -> None:
        self._f.flush()
        seq = self._seq + 1
        self._commit_ds[seq % 2] = _commit_row(seq, np.array([self._counts[k] for k in self.fields], np.int64))
        self._commit_ds.flush()
        self._seq, self._committed = seq, dict(self._counts)
        self._last_flush = _time.monotonic()

    def _trim(self) -> None:
        """Shrink datasets to what is committed (drops what a killed writer left half done)."""
        self._log.resize((self._counts["log"],))
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

    # -- writing ------------------------------------------------------------------------------
    def check_writable(self) -> None:
        """A NeurosimError unless the store is open for writing."""
        if self._closed:
            raise NeurosimError(f"{self.path} is closed")
        if self.mode != "a":
            raise NeurosimError(f"{self.path} is open for reading only")

    def maybe_flush(self) -> None:
        """:meth:`flush` if ``flush_interval`` seconds passed since the last commit."""
        if _time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def _write_log(self) -> None:
        k = self._log_fill
        if k:
            n = self._counts["log"]
            self._log.resize((n + k,))
            self._log[n:n + k] = self._log_buf[:k]
            self._counts["log"] = n + k
            self._log_fill = 0

    def _write_pending(self) -> None:
        self._write_log()
        for r in self.recorders.values():
            r.write_pending()

    def flush(self) -> None:
        """Write everything buffered and commit it: readers see it, a crash keeps it."""
        self.check_writable()
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
            self._write_log()
        self.maybe_flush()

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
            if side > n:
                self._R.resize((side, side))
                self._counts["R"] = side
        elif i >= n or row.size > n:
            raise NeurosimError(f"R is {n} x {n}; cannot set row {i} with {row.size} values")
        self._R[i, :row.size] = row
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
        if self._data.shape[0] < end:
            self._data.resize((end,))
        self._data[offset:end] = np.frombuffer(blob, np.uint8)
        k = self._counts["checkpoints"]
        self._index.resize((k + 1,))
        self._index[k] = np.array((offset, len(blob), zlib.crc32(blob), _time.time()), INDEX_DTYPE)
        self._counts["checkpoints"] = k + 1
        if self.keep is not None:
            self._counts["checkpoints_first"] = max(self._counts["checkpoints_first"], k + 1 - self.keep)
        self._commit()
        return k

    def _rewind_point(self) -> dict:
        n = self._counts["R"]
        return {"counts": {f: self._counts[f] for f in self.fields if not f.startswith("checkpoints")},
                "R": self._R[:n, :n] if n else np.zeros((0, 0))}

    def checkpoints(self) -> list[CheckpointInfo]:
        """Every checkpoint in the index, the complete ones first, then one left half written (if any)."""
        rows = self._index_rows()
        first = self._counts["checkpoints_first"]
        out = [CheckpointInfo(k, int(r["size"]), float(r["time"]), True, k >= first) for k, r in enumerate(rows)]
        extent = self.read_dataset(self._index, lambda d: d.shape[0], "the checkpoint index")
        if extent > len(rows):
            r = self.read_dataset(self._index, lambda d: d[len(rows)], "the checkpoint index")
            if r["size"] > 0:
                out.append(CheckpointInfo(len(rows), int(r["size"]), float(r["time"]), False, False))
        return out

    def _load(self, k: int) -> dict:
        rows = self._index_rows()
        if not 0 <= k < len(rows):
            raise NeurosimError(f"{self.path} has no checkpoint {k}; complete ones: 0 .. {len(rows) - 1}")
        if k < self._counts["checkpoints_first"]:
            raise NeurosimError(f"checkpoint {k} of {self.path} was dropped; retained: "
                                f"{self._counts['checkpoints_first']} .. {len(rows) - 1}")
        off, size = int(rows[k]["offset"]), int(rows[k]["size"])
        data = self.read_dataset(self._data, lambda d: d[off:off + size], f"checkpoint {k}")
        if data.size != size or zlib.crc32(data) != int(rows[k]["crc32"]):
            raise NeurosimError(f"checkpoint {k} of {self.path} is corrupted (checksum mismatch)")
        return snapshot.decode(data)

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
        self._log_fill = 0
        self._counts["log"] = point["counts"].get("log", 0)
        R = np.asarray(point["R"], np.float64)
        if self._R.maxshape[0] is None:
            self._R.resize(R.shape)
            self._counts["R"] = R.shape[0]
        else:
            self._R[...] = np.nan
        if R.size:
            self._R[:R.shape[0], :R.shape[1]] = R
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
        """Read everything committed and verify every retained checkpoint's checksum; raises
        :class:`NeurosimError` on the first thing that cannot be read."""
        _ = self.R
        self.read_log()
        for c in self.checkpoints():
            if c.complete and c.retained:
                self._load(c.index)
        for r in self.recorders.values():
            r.read()

    # -- closing ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Flush (a writer), then close the file; closing twice is harmless."""
        if self._closed:
            return
        try:
            if self.mode == "a":
                self.flush()
        finally:
            self._closed = True
            try:
                self._f.close()
            finally:
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunStore({self.path!r}, mode={self.mode!r}{', closed' if self._closed else ''})"


def _check_keep(keep) -> None:
    if keep is not None and (isinstance(keep, bool) or not isinstance(keep, int) or keep < 1):
        raise NeurosimError(f"keep must be a positive integer or None, got {keep!r}")
