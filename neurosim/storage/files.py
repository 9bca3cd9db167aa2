"""File-level plumbing of the run file: HDF5 calls h5py does not wrap, the writers' lock, the
superblock, reading in a child process with a time limit, and stopping cleanly after a failed write.

Portable: on Linux, macOS and Windows this module imports and run files open for reading.
Clearing the "open for writing" mark of a file left by a killed writer calls two HDF5 functions
h5py does not wrap; they are looked up through h5py's own extension module (POSIX: the dynamic
linker searches the libraries it depends on) or, on Windows, in the HDF5 DLL shipped beside
h5py. Where neither works, reopening such a file for writing is refused with a line that names
``neurosim repair``, which needs reading only.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import re
import select
import signal
import sys
import time
from typing import Callable

import h5py

from ..errors import NeurosimError

_METADATA_READ_ATTEMPTS = 24  # pauses double from 1 ns: <= 17 ms a block; HDF5's default (100) can stall
_WINDOWS_LOCK_OFFSET = 1 << 62  # a byte far beyond any file's end: locking it never blocks HDF5's reads
SUPERBLOCK_SIGNATURE = b"\x89HDF\r\n\x1a\n"
FORK = sys.platform.startswith("linux")
"""Whether reading can be done in a forked child (a time limit, and a crash of the HDF5 library on
damaged metadata stays in the child). Elsewhere reading runs in the process, bounded by the
metadata read attempts only."""

if os.name == "nt":
    import msvcrt
else:
    import fcntl


# -- the HDF5 library ----------------------------------------------------------------------------
_lib: ctypes.CDLL | None | bool = None


def hdf5_library() -> ctypes.CDLL | None:
    """The HDF5 library h5py uses, for the calls h5py does not wrap (None where it cannot be found)."""
    global _lib
    if _lib is None:
        _lib = False
        for candidate in _library_candidates():
            try:
                lib = ctypes.CDLL(candidate)
                lib.H5Pset.argtypes = [ctypes.c_int64, ctypes.c_char_p, ctypes.c_void_p]
                lib.H5Pset.restype = ctypes.c_int
                lib.H5Fincrement_filesize.argtypes = [ctypes.c_int64, ctypes.c_uint64]
                lib.H5Fincrement_filesize.restype = ctypes.c_int
                lib.H5Pset_metadata_read_attempts.argtypes = [ctypes.c_int64, ctypes.c_uint]
                lib.H5Pset_metadata_read_attempts.restype = ctypes.c_int
            except (OSError, AttributeError):
                continue
            _lib = lib
            break
    return _lib or None


def _library_candidates() -> list[str]:
    from h5py import h5f

    if os.name != "nt":  # dlsym on an extension module also searches the libraries it links
        return [h5f.__file__]
    here = os.path.dirname(h5py.__file__)
    found = []
    for folder in (here, here + ".libs", os.path.join(os.path.dirname(here), "h5py.libs")):
        found += [p for p in glob.glob(os.path.join(folder, "*hdf5*.dll")) if "_hl" not in os.path.basename(p)]
    return found


def fapl(recover: bool = False) -> h5py.h5p.PropFAID:
    """File access properties: 1.10 formats, HDF5's own file locks off (writers take :func:`lock`),
    few metadata read attempts; ``recover``: clear the status flags and skip the end-of-file check."""
    props = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    props.set_libver_bounds(h5py.h5f.LIBVER_V110, h5py.h5f.LIBVER_LATEST)
    props.set_file_locking(False, True)
    lib = hdf5_library()
    if lib is not None:
        with h5py._objects.phil:
            lib.H5Pset_metadata_read_attempts(props.id, _METADATA_READ_ATTEMPTS)
    if recover:
        if lib is None:
            raise NeurosimError("this system's HDF5 library cannot be located to clear the mark")
        yes = ctypes.c_bool(True)
        for prop in (b"clear_status_flags", b"skip_eof_check"):
            if lib.H5Pset(props.id, prop, ctypes.byref(yes)) < 0:
                raise NeurosimError(f"this HDF5 build cannot clear the mark (no {prop.decode()} property)")
    return props


def recover(path: str) -> None:
    """Clear the "open for writing" mark and set the end of allocation to the end of the file, as
    ``h5clear -s --increment=0`` does."""
    try:
        props = fapl(recover=True)
    except NeurosimError as e:
        raise NeurosimError(f"{path} was left open by a writer that stopped, and {e}; copy what it holds "
                            f"with: neurosim repair {path} --out NEW.h5") from None
    with h5py._objects.phil:
        fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDWR, props)
        try:
            if hdf5_library().H5Fincrement_filesize(fid.id, 0) < 0:
                raise NeurosimError(f"cannot reset the end of allocation of {path}")
        finally:
            fid.close()


# -- the superblock ------------------------------------------------------------------------------
def superblock(path: str) -> tuple[int, int, int] | None:
    """``(version, status flags, end-of-file address)`` of a version 2 or 3 superblock at offset 0
    with 8-byte addresses, or None. The flags are set while a writer has the file open (and after
    it was killed); they are 0 once it closed cleanly."""
    with open(path, "rb") as f:
        head = f.read(48)
    if len(head) == 48 and head[:8] == SUPERBLOCK_SIGNATURE and head[8] in (2, 3) and head[9] == 8:
        return head[8], head[11], int.from_bytes(head[28:36], "little")
    return None


def check_length(path: str) -> None:
    """Raise if a cleanly closed file is shorter than its superblock says (HDF5 checks this itself
    except when opening for SWMR reading, how run files are read; while a writer has the file open
    the address lags behind, so there is nothing to check then)."""
    sb = superblock(path)
    if sb is not None and not sb[1]:
        size = os.path.getsize(path)
        if size < sb[2]:
            raise NeurosimError(f"{path} is not a readable HDF5 file: truncated file ({size} bytes, "
                                f"its superblock says {sb[2]})")


def is_hdf5(path: str) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == SUPERBLOCK_SIGNATURE


# -- the writers' lock ---------------------------------------------------------------------------
def lock(path: str) -> int:
    """An exclusive advisory lock on ``path``, held by the returned descriptor (an open-file-description
    lock where the system has one, so that it neither conflicts with HDF5's own locks nor drops when
    another descriptor closes; on Windows, a byte beyond the end of any file)."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise NeurosimError(f"cannot open {path} for writing: {e.strerror}") from None
    try:
        if os.name == "nt":
            os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        elif hasattr(fcntl, "F_OFD_SETLK"):
            import struct

            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0))
        else:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK, getattr(errno, "EDEADLOCK", -1)):
            raise NeurosimError(f"{path} is being written by another process") from None
        raise NeurosimError(f"cannot lock {path}: {e.strerror}") from None
    return fd


# -- open in this process ------------------------------------------------------------------------
def same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def held_by_h5py(path: str, except_ids=()) -> bool:
    """Whether this process has ``path`` open through h5py (other than the file ids ``except_ids``)."""
    skip = {int(i) for i in except_ids}
    with h5py._objects.phil:
        for fid in h5py.h5f.get_obj_ids(h5py.h5f.OBJ_ALL, h5py.h5f.OBJ_FILE):
            try:
                if fid.id not in skip and same_file(os.fsdecode(h5py.h5f.get_name(fid)), path):
                    return True
            except Exception:  # an id closed meanwhile
                continue
    return False


# -- reading with a time limit -------------------------------------------------------------------
def read_timeout(path: str) -> float:
    """Seconds allowed to read and check ``path``: 60 plus one per 20 MB (``NEUROSIM_READ_TIMEOUT``
    overrides)."""
    given = os.environ.get("NEUROSIM_READ_TIMEOUT")
    if given:
        try:
            return max(1.0, float(given))
        except ValueError:
            raise NeurosimError(f"NEUROSIM_READ_TIMEOUT must be a number of seconds, got {given!r}") from None
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    return 60.0 + size / 20e6


def bounded(path: str, fn: Callable[[], str | None], what: str = "reading") -> str | None:
    """``fn()`` (which raises NeurosimError or returns a short text) in a forked child where there is
    one, so that a hang or a crash of the HDF5 library on damaged metadata ends in a one-line error
    instead; returns what ``fn`` returned. Without fork, calls ``fn`` here."""
    if not FORK:
        return fn()
    timeout = read_timeout(path)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns, never runs atexit handlers or flushes the parent's buffers
        code = 0
        try:
            os.close(r)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides
            try:
                out = "+" + (fn() or "")
            except NeurosimError as e:
                out = "-" + str(e)
            except MemoryError:
                out = f"-{path}: {what} it ran out of memory (damaged sizes?)"
            except BaseException as e:  # noqa: BLE001 - reported as one line by the parent
                out = f"-{path} is a damaged run file: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            data = out.encode("utf-8", "replace")
            view = memoryview(data)
            while view:
                view = view[os.write(w, view):]
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline, status = [], time.monotonic() + timeout, None
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([r], [], [], min(left, 0.5))
            if ready:
                data = os.read(r, 1 << 16)
                if data:
                    chunks.append(data)
                    continue
                _, status = os.waitpid(pid, 0)
                break
    except BaseException:
        _kill(pid)
        raise
    finally:
        os.close(r)
    if status is None:
        _kill(pid)
        raise NeurosimError(f"{path}: {what} it did not finish within {timeout:.0f} s: its HDF5 metadata is "
                            f"damaged (on a slow disk, NEUROSIM_READ_TIMEOUT=SECONDS allows longer)")
    text = b"".join(chunks).decode("utf-8", "replace")
    if os.WIFSIGNALED(status):
        raise NeurosimError(f"{path} is a damaged run file: {what} it crashed the HDF5 library "
                            f"({signal.Signals(os.WTERMSIG(status)).name})")
    if not text:
        raise NeurosimError(f"{path}: {what} it failed without a message (exit status {os.waitstatus_to_exitcode(status)})")
    if text[0] == "-":
        raise NeurosimError(text[1:])
    return text[1:]


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


# -- failed writes -------------------------------------------------------------------------------
@contextlib.contextmanager
def dealloc_errors_raised():
    """Raise, at the end of the block, the first error HDF5 reported while h5py released an object
    in it (closing a new dataset writes its header; h5py can only print such a failure, as an
    "Exception ignored" traceback)."""
    caught: list[BaseException] = []
    previous = sys.unraisablehook

    def hook(unraisable):
        if "h5py" in str(unraisable.object) and isinstance(unraisable.exc_value, (OSError, RuntimeError)):
            caught.append(unraisable.exc_value)
        else:
            previous(unraisable)

    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
    if caught:
        raise caught[0]


def extend_to_allocation(path: str) -> None:
    """Extend (with zeros, sparse where the system can) a file left by a writer that stopped
    after HDF5 allocated space it never wrote, to the end its superblock records, so that clearing
    the writer's mark does not leave a file shorter than its superblock says. Raises OSError."""
    sb = superblock(path)
    if sb is not None and sb[1] and os.path.getsize(path) < sb[2]:
        os.truncate(path, sb[2])


_ERRNO_IN_TEXT = re.compile(r"errno = (\d+)")
_WRITE_SIZE_IN_TEXT = re.compile(r"total write size = (\d+)")


def failure(e: BaseException) -> tuple[int | None, int]:
    """``(errno, bytes of the failed write)`` read from an exception raised by h5py (0 when not said)."""
    code = getattr(e, "errno", None)
    text = str(e)
    if not code:
        m = _ERRNO_IN_TEXT.search(text)
        code = int(m.group(1)) if m else None
    m = _WRITE_SIZE_IN_TEXT.search(text)
    return code, int(m.group(1)) if m else 0


def size_text(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError
