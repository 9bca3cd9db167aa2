r"""Event data sets: per sample, spike events (time, channel) and a label, binned into counts on demand.

- :func:`fsdd`: the Free Spoken Digit Dataset (WAV files at 8 kHz in ``root``, default
  ``$NEUROSIM_DATA/fsdd``) through the gammatone cochlea and integrate-and-fire encoder of
  :mod:`neurosim.datasets.audio`, on the official split (repetitions 0-4 of every digit and speaker are the
  test set: 300 files; 5-49 train: 2,700), optionally cached in a folder outside the repository.
- :func:`read_heidelberg`, :func:`shd`, :func:`ssc`: the Heidelberg spike data sets (SHD, SSC)
  from their HDF5 files: ``spikes/times`` (variable-length float seconds per sample),
  ``spikes/units`` (variable-length integer channels, 0-699), ``labels``; optional
  ``extra/speaker``.

**Layout.** An :class:`EventSet` keeps the events, not binned tensors: the events of all samples
concatenated (``times`` in seconds, float16 as stored by SHD or float32; ``units``, uint16 or
int32) with ``offsets`` (``[N + 1]``), so that sample ``i`` is ``times[offsets[i]:offsets[i+1]]``.
Events take 4-6 bytes each, whatever ``dt``, and samples keep their own lengths; counts are
made per batch. Channel grouping (:meth:`EventSet.grouped`: 700 -> 140 in groups of 5, as in the
delay paper on SHD) maps channel ``u`` to ``u // group``, i.e. sums the counts of each group.

**Binning** (:func:`bin_events`, :meth:`EventSet.batch`): an event at time ``t`` goes to step
``floor(t / dt)``, with ``t`` and ``dt`` first rounded to whole microseconds (so that ``t = 0.03``
lands in step 3 at ``dt = 0.01`` despite floating point). Values are event counts per step and
channel (not 0/1). Sample ``i`` spans ``ceil(duration_i / dt)`` steps (its audio length for FSDD,
its last event for SHD; always at least one step past its last event).

**Batches** are time-major like :meth:`Network.run` inputs: ``x`` ``[T, B, C]`` float32, ``T`` the
longest sample of the batch (or ``min_steps`` if more, e.g. to reach the kernel of a delayed
projection), zeros after each sample's end; ``y`` ``[B]`` int64; ``lengths`` ``[B]`` int64 steps.
``EventSet`` is also a map-style data set for ``torch.utils.data.DataLoader``
(``set[i] = (counts [T_i, C], label)``, with ``collate_fn=collate``).

**Continual learning**: :func:`as_split` turns a train/test pair into dense
:class:`~neurosim.datasets.images.Dataset` counts ``[N, T, C]`` (padded to the longest sample), which
the scenarios split or permute (channels) and the continual runner feeds as they are.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from .audio import Cochlea, audio_events, read_wav
from .images import Dataset, Split, data_root
from ..errors import NeurosimError, check_positive

FSDD_RATE = 8000
FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
FSDD_TEST_INDICES = range(5)
"""Official split (FSDD README): repetitions 0-4 of each digit and speaker are the test set."""
CACHE_VERSION = 1


def _micros(name: str, dt: float) -> int:
    check_positive(name, dt)
    us = round(float(dt) * 1e6)
    if us < 1 or abs(float(dt) * 1e6 - us) > 1e-6 * max(1.0, us):
        raise NeurosimError(f"{name} must be a whole number of microseconds, got {dt!r}")
    return us


def _steps_of(times: np.ndarray, dt_us: int) -> np.ndarray:
    return np.rint(np.asarray(times, dtype=np.float64) * 1e6).astype(np.int64) // dt_us


def bin_events(times, units, channels: int, dt: float = 0.01, steps: int | None = None) -> np.ndarray:
    """Counts ``[T, channels]`` (float32) of events ``(times, units)``; ``T`` = one past the last
    event's step, or ``steps`` (which must cover every event)."""
    dt_us = _micros("dt", dt)
    times, units = np.asarray(times), np.asarray(units)
    if times.shape != units.shape or times.ndim != 1:
        raise NeurosimError(f"times and units must be 1-d and of one length, got {times.shape} and {units.shape}")
    k = _steps_of(times, dt_us)
    if k.size and (k.min() < 0 or units.min() < 0 or units.max() >= channels):
        raise NeurosimError(f"events must have times >= 0 and units in [0, {channels})")
    need = int(k.max()) + 1 if k.size else 0
    if steps is None:
        steps = need
    elif steps < need:
        raise NeurosimError(f"steps={steps} does not cover the events, which need {need} steps of dt={dt}")
    flat = k * channels + units.astype(np.int64)
    return np.bincount(flat, minlength=steps * channels).astype(np.float32).reshape(steps, channels)


class EventSet:
    """Variable-length event samples with labels (module doc). ``dt`` (seconds) is the default step
    of :meth:`batch`, :meth:`batches` and indexing; ``classes`` the number of classes."""

    def __init__(self, times: np.ndarray, units: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
                 channels: int, *, durations: np.ndarray | None = None, dt: float = 0.01,
                 classes: int | None = None, speakers: np.ndarray | None = None, names: np.ndarray | None = None):
        self.times, self.units = np.asarray(times), np.asarray(units)
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        n = self.labels.shape[0]
        if (self.labels.ndim != 1 or self.offsets.shape != (n + 1,) or self.offsets[0] != 0
                or self.offsets[-1] != self.times.size or (np.diff(self.offsets) < 0).any()):
            raise NeurosimError(f"event set: offsets must run from 0 to {self.times.size} over {n} samples")
        if self.times.shape != self.units.shape or self.times.ndim != 1:
            raise NeurosimError(f"event set: times {self.times.shape} and units {self.units.shape} differ")
        self.channels = int(channels)
        self.dt, self._dt_us = float(dt), _micros("dt", dt)
        self.classes = int(classes) if classes is not None else (int(self.labels.max()) + 1 if n else 0)
        last = np.full(n, -1.0)
        full = np.diff(self.offsets) > 0
        if full.any():
            last[full] = np.maximum.reduceat(self.times.astype(np.float64), self.offsets[:-1][full])
        self.last = last
        """Time of each sample's last event (s), -1 if it has none."""
        self.durations = np.maximum(last, 0.0) if durations is None else np.asarray(durations, dtype=np.float64)
        if self.durations.shape != (n,):
            raise NeurosimError(f"event set: {self.durations.shape[0]} durations for {n} samples")
        self.speakers, self.names = speakers, names
        self._steps: tuple[int, np.ndarray | None] = (0, None)

    @classmethod
    def from_lists(cls, times: Sequence, units: Sequence, labels, channels: int, **kw) -> "EventSet":
        """From one ``(times, units)`` pair of arrays per sample."""
        if len(times) != len(units):
            raise NeurosimError(f"{len(times)} time arrays but {len(units)} unit arrays")
        lens = [len(t) for t in times]
        for i, (t, u) in enumerate(zip(times, units)):
            if len(t) != len(u):
                raise NeurosimError(f"sample {i}: {len(t)} times but {len(u)} units")
        offsets = np.concatenate([[0], np.cumsum(lens, dtype=np.int64)])
        t = np.concatenate([np.asarray(x) for x in times]) if times else np.zeros(0, np.float32)
        u = np.concatenate([np.asarray(x) for x in units]) if units else np.zeros(0, np.int32)
        return cls(t, u, offsets, labels, channels, **kw)

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __repr__(self) -> str:
        return (f"EventSet({len(self)} samples, {self.channels} channels, {self.classes} classes, "
                f"{self.times.size} events, dt={self.dt:g})")

    def events(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Times (s) and units of sample ``i``."""
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.times[a:b], self.units[a:b]

    def counts(self) -> np.ndarray:
        """Number of events of each sample."""
        return np.diff(self.offsets)

    def steps(self, dt: float | None = None) -> np.ndarray:
        """Length of each sample in steps of ``dt``: ``ceil(duration / dt)``, at least one past its last event."""
        dt_us = self._dt_us if dt is None else _micros("dt", dt)
        if self._steps[0] != dt_us:
            dur = -(-np.rint(self.durations * 1e6).astype(np.int64) // dt_us)
            last = np.where(self.last >= 0, _steps_of(np.maximum(self.last, 0), dt_us) + 1, 1)
            steps = np.maximum(dur, last)
            steps.flags.writeable = False
            self._steps = (dt_us, steps)
        return self._steps[1]

    def subset(self, indices) -> "EventSet":
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise NeurosimError(f"subset index out of range for {len(self)} samples")
        idx = idx % max(len(self), 1)
        sel = _ranges(self.offsets, idx)
        offsets = np.concatenate([[0], np.cumsum(self.counts()[idx])])
        pick = (lambda a: None if a is None else np.asarray(a)[idx])
        return EventSet(self.times[sel], self.units[sel], offsets, self.labels[idx], self.channels,
                        durations=self.durations[idx], dt=self.dt, classes=self.classes,
                        speakers=pick(self.speakers), names=pick(self.names))

    def grouped(self, group: int) -> "EventSet":
        """Channels summed in consecutive groups of ``group`` (channel ``u`` -> ``u // group``)."""
        if not isinstance(group, int) or isinstance(group, bool) or group < 1:
            raise NeurosimError(f"group must be a positive integer, got {group!r}")
        if self.channels % group:
            raise NeurosimError(f"group={group} does not divide the {self.channels} channels")
        if group == 1:
            return self
        return EventSet(self.times, self.units // group, self.offsets, self.labels, self.channels // group,
                        durations=self.durations, dt=self.dt, classes=self.classes,
                        speakers=self.speakers, names=self.names)

    def binned(self, i: int, dt: float | None = None) -> torch.Tensor:
        """Counts ``[T_i, channels]`` (float32) of sample ``i``."""
        dt = self.dt if dt is None else dt
        t, u = self.events(i)
        return torch.from_numpy(bin_events(t, u, self.channels, dt, int(self.steps(dt)[i])))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} out of range for {len(self)} samples")
        i = i % len(self)
        return self.binned(i), int(self.labels[i])

    def batch(self, indices, dt: float | None = None, min_steps: int = 1
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Samples ``indices`` as ``(x [T, B, C] float32 counts, y [B] int64, lengths [B] int64)``,
        zero padded to the longest (at least ``min_steps`` steps)."""
        dt_us = self._dt_us if dt is None else _micros("dt", dt)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        lengths = self.steps(dt_us / 1e6)[idx]
        steps = max(int(lengths.max()) if idx.size else 0, int(min_steps))
        sel = _ranges(self.offsets, idx)
        b = np.repeat(np.arange(idx.size, dtype=np.int64), self.counts()[idx])
        k = _steps_of(self.times[sel], dt_us)
        c, B = self.channels, idx.size
        flat = (k * B + b) * c + self.units[sel].astype(np.int64)
        x = np.bincount(flat, minlength=steps * B * c).astype(np.float32).reshape(steps, B, c)
        return torch.from_numpy(x), torch.from_numpy(self.labels[idx].copy()), torch.from_numpy(lengths)

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None, dt: float | None = None,
                drop_last: bool = False, min_steps: int = 1
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """All samples in batches of :meth:`batch` (in order, or shuffled with ``seed``)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise NeurosimError(f"batch_size must be a positive integer, got {batch_size!r}")
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = len(self) - len(self) % batch_size if drop_last else len(self)
        for s in range(0, stop, batch_size):
            yield self.batch(order[s:s + batch_size], dt, min_steps)

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Write to an ``.npz`` file (atomically), with ``meta`` (JSON-able) kept alongside."""
        path = Path(path)
        tmp = path.with_name(path.name + ".part")
        extra = {k: np.asarray(v) for k, v in (("speakers", self.speakers), ("names", self.names)) if v is not None}
        header = {"channels": self.channels, "dt": self.dt, "classes": self.classes, "meta": meta or {}}
        with open(tmp, "wb") as f:
            np.savez(f, times=self.times, units=self.units, offsets=self.offsets, labels=self.labels,
                     durations=self.durations, header=np.array(json.dumps(header)), **extra)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: str | Path) -> tuple["EventSet", dict]:
        """Read a file written by :meth:`save`: the set and its ``meta``."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                opt = {k: z[k] for k in ("speakers", "names") if k in z.files}
                s = cls(z["times"], z["units"], z["offsets"], z["labels"], header["channels"],
                        durations=z["durations"], dt=header["dt"], classes=header["classes"], **opt)
        except (OSError, ValueError, KeyError) as e:
            raise NeurosimError(f"{path} is not a readable event set ({e})") from None
        return s, header["meta"]


def _ranges(offsets: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Indices of the events of samples ``idx``, sample after sample."""
    starts, lens = offsets[idx], offsets[idx + 1] - offsets[idx]
    if lens.sum() == 0:
        return np.zeros(0, np.int64)
    base = np.repeat(starts - np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    return base + np.arange(lens.sum(), dtype=np.int64)


def collate(items: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``collate_fn`` for a ``DataLoader`` over an :class:`EventSet`: ``(x [T, B, C], y [B], lengths [B])``."""
    lengths = torch.tensor([x.shape[0] for x, _ in items], dtype=torch.int64)
    x = torch.nn.utils.rnn.pad_sequence([x for x, _ in items])
    return x, torch.tensor([y for _, y in items], dtype=torch.int64), lengths


def as_dataset(events: EventSet, dt: float | None = None, steps: int | None = None) -> Dataset:
    """All samples of ``events`` as counts ``x`` ``[N, T, C]`` float32 (zero-padded to the longest
    sample, or to ``steps``) with labels ``y``."""
    longest = int(events.steps(dt).max()) if len(events) else 0
    steps = longest if steps is None else steps
    if not isinstance(steps, int) or steps < max(longest, 1):
        raise NeurosimError(f"steps must be an integer of at least {max(longest, 1)} (the longest sample), "
                            f"got {steps!r}")
    x, y, _ = events.batch(np.arange(len(events)), dt, steps)
    return Dataset(np.ascontiguousarray(x.numpy().transpose(1, 0, 2)), y.numpy(), (steps, events.channels))


def as_split(train: EventSet, test: EventSet, dt: float | None = None) -> Split:
    """Train and test event sets as one :class:`~neurosim.datasets.images.Split` of equal-length counts."""
    if train.channels != test.channels:
        raise NeurosimError(f"train has {train.channels} channels but test has {test.channels}")
    steps = max(int(e.steps(dt).max()) if len(e) else 1 for e in (train, test))
    return Split(as_dataset(train, dt, steps), as_dataset(test, dt, steps))


class EventSplit(NamedTuple):
    train: EventSet
    test: EventSet
    valid: EventSet | None = None


# --- Free Spoken Digit Dataset -------------------------------------------------------------------

def _fsdd_files(root: Path) -> list[tuple[Path, int, str, int]]:
    if not root.is_dir():
        raise NeurosimError(f"FSDD folder not found: {root}")
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    files = []
    for p in folder.iterdir():
        if p.suffix.lower() != ".wav":
            continue
        m = FSDD_NAME.match(p.name)
        if not m:
            raise NeurosimError(f"{p}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav)")
        files.append((p, int(m.group(1)), m.group(2), int(m.group(3))))
    if not files:
        raise NeurosimError(f"no .wav files in {folder}")
    files.sort(key=lambda f: (f[1], f[2], f[3]))
    return files


def _check_cache_dir(cache: Path) -> None:
    repo = Path(__file__).resolve().parents[2]  # the folder that holds the neurosim package
    if (repo / ".git").exists() and cache.resolve().is_relative_to(repo):
        raise NeurosimError(f"cache folder {cache} is inside the neurosim repository; give a folder outside it")


def fsdd(root: str | Path | None = None, channels: int = 64, dt: float = 0.01, *, gain: float = 0.25,
         tau: float | None = None, cochlea: Cochlea | None = None, cache: str | Path | None = None) -> EventSplit:
    """The Free Spoken Digit Dataset as spike events on its official split (module doc).

    Every WAV file in ``root`` (or ``root/recordings``; default ``$NEUROSIM_DATA/fsdd``) must be an
    8 kHz ``{digit}_{speaker}_{index}.wav``; other files are ignored. Audio goes through
    ``cochlea`` (default ``Cochlea(channels)``) and :func:`neurosim.datasets.audio.spike_encode` with
    ``gain`` and ``tau``. ``dt`` is the sets' default step. With ``cache`` (a folder outside the
    repository, created if needed) the events are stored in ``fsdd-<key>.npz``, the key covering
    the parameters and the files' names and sizes, and read back on the next call.
    """
    folder = Path(root) if root is not None else data_root() / "fsdd"
    files = _fsdd_files(folder)
    if cochlea is None:
        cochlea = Cochlea(channels=channels, sample_rate=FSDD_RATE)
    elif cochlea.channels != channels:
        raise NeurosimError(f"channels={channels} but the cochlea given has {cochlea.channels}")
    if cochlea.sample_rate != FSDD_RATE:
        raise NeurosimError(f"the cochlea must run at {FSDD_RATE} Hz for FSDD, got {cochlea.sample_rate}")
    check_positive("gain", gain)
    if tau is not None:
        check_positive("tau", tau)
    _micros("dt", dt)
    params = {"cochlea": cochlea.params(), "gain": float(gain), "tau": tau, "version": CACHE_VERSION}
    target = None
    if cache is not None:
        cache = Path(cache)
        _check_cache_dir(cache)
        listing = [(p.name, p.stat().st_size) for p, *_ in files]
        key = hashlib.sha256(json.dumps([params, listing]).encode()).hexdigest()[:16]
        target = cache / f"fsdd-{key}.npz"
        if target.is_file():
            full, meta = EventSet.load(target)
            if meta.get("params") == params and full.names is not None and \
                    [str(n) for n in full.names] == [p.stem for p, *_ in files]:
                full.dt, full._dt_us = float(dt), _micros("dt", dt)
                return _fsdd_split(full)
    times, units, durations = [], [], []
    for p, *_ in files:
        x, _ = read_wav(p, FSDD_RATE)
        t, u = audio_events(x, cochlea, gain, tau)
        times.append(t)
        units.append(u)
        durations.append(x.size / FSDD_RATE)
    full = EventSet.from_lists(times, units, [f[1] for f in files], cochlea.channels, durations=np.array(durations),
                               dt=dt, classes=10, speakers=np.array([f[2] for f in files]),
                               names=np.array([p.stem for p, *_ in files]))
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        full.save(target, {"params": params})
    return _fsdd_split(full)


def _fsdd_split(full: EventSet) -> EventSplit:
    index = np.array([int(str(n).rsplit("_", 1)[1]) for n in full.names])
    test = np.isin(index, list(FSDD_TEST_INDICES))
    return EventSplit(full.subset(np.flatnonzero(~test)), full.subset(np.flatnonzero(test)))


# --- Heidelberg spike data sets (SHD, SSC) -------------------------------------------------------

def read_heidelberg(path: str | Path, channels: int = 700, group: int = 1, dt: float = 0.01,
                    classes: int | None = None) -> EventSet:
    """One HDF5 file of the SHD/SSC format as an :class:`EventSet`, channels grouped by ``group``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise NeurosimError(f"spike data file not found: {path}")
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise NeurosimError(f"{path} is not a readable HDF5 file ({e})") from None
    with f:
        for key in ("spikes/times", "spikes/units", "labels"):
            if not isinstance(f.get(key), h5py.Dataset):
                raise NeurosimError(f"{path}: missing dataset {key!r}")
        ts, us, lab = f["spikes/times"], f["spikes/units"], f["labels"]
        for key, ds, kind in (("spikes/times", ts, "f"), ("spikes/units", us, "iu")):
            base = h5py.check_vlen_dtype(ds.dtype)
            if ds.ndim != 1 or base is None or base.kind not in kind:
                raise NeurosimError(f"{path}: {key!r} must be a 1-d variable-length "
                                    f"{'float' if kind == 'f' else 'integer'} dataset, got {ds.dtype} {ds.shape}")
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise NeurosimError(f"{path}: 'labels' must be a 1-d integer dataset, got {lab.dtype} {lab.shape}")
        if not ts.shape[0] == us.shape[0] == lab.shape[0]:
            raise NeurosimError(f"{path}: {ts.shape[0]} time arrays, {us.shape[0]} unit arrays and "
                                f"{lab.shape[0]} labels")
        times, units, labels = ts[()], us[()], lab[()].astype(np.int64)
        speakers = None
        if isinstance(f.get("extra/speaker"), h5py.Dataset) and f["extra/speaker"].shape == lab.shape:
            speakers = f["extra/speaker"][()]
    for i, (t, u) in enumerate(zip(times, units)):
        if t.shape != u.shape:
            raise NeurosimError(f"{path}: sample {i} has {t.size} times but {u.size} units")
    s = EventSet.from_lists(list(times), list(units), labels, channels, dt=dt, classes=classes, speakers=speakers)
    if s.times.size:
        if not np.isfinite(s.times).all() or s.times.min() < 0:
            raise NeurosimError(f"{path}: spike times must be finite and >= 0")
        if s.units.min() < 0 or s.units.max() >= channels:
            raise NeurosimError(f"{path}: units must lie in [0, {channels}), found {int(s.units.min())}..{int(s.units.max())}")
    if labels.size and labels.min() < 0:
        raise NeurosimError(f"{path}: labels must be >= 0")
    if channels <= np.iinfo(np.uint16).max:
        s.units = s.units.astype(np.uint16, copy=False)
    return s.grouped(group)


def heidelberg(name: str = "shd", root: str | Path | None = None, group: int = 1, dt: float = 0.01) -> EventSplit:
    """SHD (``shd_train.h5``, ``shd_test.h5``) or SSC (also ``ssc_valid.h5``) from ``root``
    (default ``$NEUROSIM_DATA/<name>``), 700 channels grouped by ``group`` (the delay paper: 5)."""
    if name not in ("shd", "ssc"):
        raise NeurosimError(f"unknown Heidelberg data set {name!r}; expected shd or ssc")
    folder = Path(root) if root is not None else data_root() / name
    if not folder.is_dir():
        raise NeurosimError(f"{name.upper()} folder not found: {folder}")
    parts = ("train", "test", "valid") if name == "ssc" else ("train", "test")
    sets = [read_heidelberg(folder / f"{name}_{p}.h5", 700, group, dt) for p in parts]
    classes = max(s.classes for s in sets)
    for s in sets:
        s.classes = classes
    return EventSplit(*sets)


def shd(root: str | Path | None = None, group: int = 1, dt: float = 0.01) -> EventSplit:
    """Spiking Heidelberg Digits: :func:`heidelberg` ``("shd", ...)``; ``group=5`` gives the paper's 140 inputs."""
    return heidelberg("shd", root, group, dt)


def ssc(root: str | Path | None = None, group: int = 1, dt: float = 0.01) -> EventSplit:
    """Spiking Speech Commands (train, test, valid): :func:`heidelberg` ``("ssc", ...)``."""
    return heidelberg("ssc", root, group, dt)
