"""Recordings in a run store, streamed in bounded chunks, and a runner that records a network.

A :class:`Recording` is declared when the store is created; its data live in
``/recordings/NAME`` with attributes ``kind``, ``n``, ``dt`` (ms), ``stride``, ``source``
(population or projection), ``variable``, ``units``, ``batch``, ``shape`` and ``dtype``:

- ``spikes``: events in extendable, chunked, compressed datasets ``t`` (int64 step, shuffle and
  deflate), ``i`` (int32 neuron) and, with a batch, ``b`` (int32 sample), both scale-offset
  packed; counters ``NAME:events`` and ``NAME:steps`` (steps covered, spikes or not);
- ``state``: a variable sampled every ``stride`` steps, ``data`` ``[K, n]`` (``[K, batch, n]``
  with a batch), row ``k`` at step ``k * stride``; counter ``NAME:rows``;
- ``weights``: snapshots ``data`` ``[K, *shape]`` taken at steps ``step`` ``[K]``; counter
  ``NAME:snapshots``.

Recorders buffer at most one chunk (spikes, states) or nothing (weights) before writing, so memory
does not grow with the length of a run; the store commits what they wrote at each flush.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Mapping

import numpy as np
import torch

from ..errors import NeurosimError, check_choice
from ..progress import progress_bar
from ..network import Network, Probe

if TYPE_CHECKING:
    import h5py

    from .store import RunStore

KINDS = ("spikes", "state", "weights")
SPIKE_CHUNK = 1 << 17
"""Events per chunk of a spike recording (also the recorder's buffer)."""
STATE_CHUNK_BYTES = 1 << 18


@dataclass(frozen=True)
class Recording:
    """What a recording holds: ``kind`` (spikes, state or weights), ``n`` neurons (spikes, state),
    ``dt`` in ms, ``stride`` in steps (state: one sample every ``stride`` steps; weights: the
    interval :func:`record_run` snapshots at), ``source`` population or projection, ``variable``
    (state: the population variable, e.g. ``"v"``), ``units``, ``batch`` samples, ``shape`` of a
    weight, and ``dtype`` of state and weight values."""

    kind: str
    n: int | None = None
    dt: float = 1.0
    stride: int = 1
    source: str = ""
    variable: str = ""
    units: str = ""
    batch: int = 1
    shape: tuple | None = None
    dtype: str = "float32"

    def __post_init__(self):
        check_choice("recording kind", self.kind, KINDS)

        def positive_int(name, v):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise NeurosimError(f"recording {name} must be a positive integer, got {v!r}")

        if self.kind != "weights":
            positive_int("n", self.n)
        else:
            if self.shape is None or not all(isinstance(s, (int, np.integer)) and s >= 0 for s in self.shape):
                raise NeurosimError(f"a weights recording needs shape=(sizes...), got {self.shape!r}")
            object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        if self.kind == "state" and not self.variable:
            raise NeurosimError("a state recording needs variable= (e.g. 'v')")
        positive_int("stride", self.stride)
        positive_int("batch", self.batch)
        if not (isinstance(self.dt, (int, float)) and math.isfinite(self.dt) and self.dt > 0):
            raise NeurosimError(f"recording dt must be a positive number, got {self.dt!r}")
        try:
            dt = np.dtype(self.dtype)
        except TypeError:
            dt = None
        if dt is None or dt.kind not in "fiub":
            raise NeurosimError(f"recording dtype must be a numeric dtype name, got {self.dtype!r}")

    def create(self, parent: h5py.Group, name: str) -> list[str]:
        """Create the recording's group and datasets in ``parent``; returns its counter names."""
        g = parent.create_group(name)
        for f in fields(self):
            v = getattr(self, f.name)
            g.attrs[f.name] = json.dumps(v) if f.name == "shape" else (-1 if v is None else v)
        if self.kind == "spikes":
            # Standard HDF5 filters, the cheapest found for each: sorted steps shuffle and deflate
            # to ~0.3 byte an event; indices are bit-packed by the scale-offset filter (~2 bytes).
            opts = dict(maxshape=(None,), chunks=(SPIKE_CHUNK,))
            g.create_dataset("t", (0,), dtype="<i8", compression="gzip", compression_opts=1, shuffle=True, **opts)
            g.create_dataset("i", (0,), dtype="<i4", scaleoffset=0, **opts)
            columns = ["t", "i"]
            if self.batch > 1:
                g.create_dataset("b", (0,), dtype="<i4", scaleoffset=0, **opts)
                columns.append("b")
            return [f"{name}:events", f"{name}:steps"] + [f"{name}:{c}_crc32" for c in columns]
        if self.kind == "state":
            row = (self.n,) if self.batch == 1 else (self.batch, self.n)
            rows = max(1, STATE_CHUNK_BYTES // (math.prod(row) * np.dtype(self.dtype).itemsize))
            g.create_dataset("data", (0, *row), maxshape=(None, *row), chunks=(rows, *row), dtype=self.dtype)
            return [f"{name}:rows", f"{name}:data_crc32"]
        g.create_dataset("data", (0, *self.shape), maxshape=(None, *self.shape), chunks=(1, *self.shape),
                         dtype=self.dtype)
        g.create_dataset("step", (0,), maxshape=(None,), chunks=(1024,), dtype="<i8")
        return [f"{name}:snapshots", f"{name}:data_crc32", f"{name}:step_crc32"]

    @classmethod
    def from_attrs(cls, attrs) -> "Recording":
        values = {}
        for f in fields(cls):
            v = attrs[f.name]
            v = v.item() if isinstance(v, np.generic) else v
            if f.name == "n":
                v = None if v == -1 else int(v)
            elif f.name == "shape":
                v = json.loads(v)
                v = None if v is None else tuple(v)
            values[f.name] = v
        return cls(**values)


def _numpy(x, dtype=None) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x) if dtype is None else np.asarray(x, dtype=dtype)


class Recorder:
    """Appends to one recording of a store (see the kinds in the module docstring)."""

    def __init__(self, store: "RunStore", name: str, group: h5py.Group, spec: Recording):
        self.store, self.name, self.group, self.spec = store, name, group, spec

    def _count(self, suffix: str) -> int:
        return self.store.count(f"{self.name}:{suffix}")

    def _set(self, suffix: str, value: int) -> None:
        self.store.set_count(f"{self.name}:{suffix}", value)

    def write_pending(self) -> None:
        """Write what is buffered (the store commits it)."""

    def rewind(self, counts: Mapping[str, int]) -> None:
        """Go back to the counters ``counts`` (missing: 0), dropping what is buffered."""

    def trim(self) -> None:
        """Shrink the datasets to what is counted."""

    def pending_bytes(self) -> int:
        """Bytes buffered, not written yet."""
        return 0

    def datasets(self) -> dict[str, tuple[h5py.Dataset, int]]:
        """Each dataset with the rows the commit counts in it."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise unless every counted row is in the datasets, reads, and matches its running CRC-32
        (where the file has one); reads in bounded blocks."""
        from .store import check_rows

        what = f"recording {self.name!r}"
        shape = None if self.spec.kind == "spikes" else \
            ((self.spec.n,) if self.spec.batch == 1 else (self.spec.batch, self.spec.n)) if self.spec.kind == "state" \
            else self.spec.shape
        for key, (ds, n) in self.datasets().items():
            if shape is not None and key == "data" and ds.shape[1:] != shape:
                raise NeurosimError(f"{self.store.path} is a damaged run file: {what} holds rows of shape "
                                    f"{ds.shape[1:]}, its declaration says {shape}")
            crc = f"{self.name}:{key}_crc32"
            check_rows(self.store, ds, n, what, self.store.count(crc) if crc in self.store.fields else None)

    def _rewind_crcs(self, counts: Mapping[str, int]) -> None:
        for key in self.datasets():
            field = f"{self.name}:{key}_crc32"
            if field in self.store.fields:
                self.store.set_count(field, counts.get(field, 0))

    def read(self, *args):
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.spec})"


class SpikeRecorder(Recorder):
    """Spike events, buffered one chunk at a time."""

    def __init__(self, store, name, group, spec):
        super().__init__(store, name, group, spec)
        self._keys = ["t", "i"] + (["b"] if spec.batch > 1 else [])
        self._ds = [group[k] for k in self._keys]
        self._buf = [np.empty(SPIKE_CHUNK, d.dtype) for d in self._ds]
        self._fill = 0
        self._until = self._count("steps")
        self._floor = self._until

    @property
    def steps(self) -> int:
        """Steps covered so far (spikes or not)."""
        return self._until

    def append(self, t, i, b=None, *, until: int | None = None) -> None:
        """Append spikes at steps ``t`` (non-decreasing, not before what was appended) of neurons
        ``i`` (and samples ``b`` when the recording has a batch); ``until``: the recording now
        covers all steps before it, spikes or not (default: the last spike's step + 1)."""
        self.store.check_writable()
        t, i = _numpy(t, np.int64).reshape(-1), _numpy(i, np.int32).reshape(-1)
        cols = [t, i]
        if self.spec.batch > 1:
            if b is None:
                raise NeurosimError(f"recording {self.name!r} has batch {self.spec.batch}: append needs b=")
            b = _numpy(b, np.int32).reshape(-1)
            cols.append(b)
        if any(c.size != t.size for c in cols):
            raise NeurosimError(f"spike arrays must have the same length, got {[c.size for c in cols]}")
        if t.size:
            if t[0] < self._floor or (t.size > 1 and bool((t[1:] < t[:-1]).any())):
                raise NeurosimError(f"spike steps of {self.name!r} must be non-decreasing and >= {self._floor}")
            if int(i.min()) < 0 or int(i.max()) >= self.spec.n:
                raise NeurosimError(f"neuron indices of {self.name!r} must be in [0, {self.spec.n})")
            if len(cols) == 3 and (int(b.min()) < 0 or int(b.max()) >= self.spec.batch):
                raise NeurosimError(f"sample indices of {self.name!r} must be in [0, {self.spec.batch})")
            self._floor = int(t[-1])
            self._until = max(self._until, self._floor + 1)
        if until is not None:
            if until < self._until:
                raise NeurosimError(f"until={until} is before the steps already covered ({self._until})")
            self._until = self._floor = int(until)
        pos = 0
        while pos < t.size:
            k = min(SPIKE_CHUNK - self._fill, t.size - pos)
            for buf, c in zip(self._buf, cols):
                buf[self._fill:self._fill + k] = c[pos:pos + k]
            self._fill += k
            pos += k
            if self._fill == SPIKE_CHUNK:
                self._write_block()
        self.store.maybe_flush()

    def _write_block(self) -> None:
        k = self._fill
        if k:
            n = self._count("events")
            with self.store.writing(self.pending_bytes()):
                for ds, buf in zip(self._ds, self._buf):
                    ds.resize((n + k,))
                    ds[n:n + k] = buf[:k]
            for key, buf in zip(self._keys, self._buf):
                self.store.add_crc(f"{self.name}:{key}_crc32", buf[:k])
            self._set("events", n + k)
            self._fill = 0

    def pending_bytes(self) -> int:
        return self._fill * sum(d.dtype.itemsize for d in self._ds)

    def datasets(self):
        n = self._count("events")
        return {key: (ds, n) for key, ds in zip(self._keys, self._ds)}

    def write_pending(self) -> None:
        self._write_block()
        self._set("steps", self._until)

    def rewind(self, counts) -> None:
        self._fill = 0
        self._set("events", counts.get(f"{self.name}:events", 0))
        self._set("steps", counts.get(f"{self.name}:steps", 0))
        self._rewind_crcs(counts)
        self._until = self._floor = self._count("steps")

    def trim(self) -> None:
        for ds in self._ds:
            ds.resize((self._count("events"),))

    def blocks(self, size: int = 1 << 20):
        """The committed events in blocks of ``size``, as :meth:`read` returns them (bounded memory)."""
        n = self._count("events")
        for a in range(0, n, size):
            z = min(n, a + size)
            yield tuple(self.store.read_dataset(ds, lambda d: d[a:z], f"recording {self.name!r}") for ds in self._ds)

    def read(self, start: int = 0, stop: int | None = None):
        """``(t, i)`` (``(t, i, b)`` with a batch) of the committed spikes with ``start <= t < stop``."""
        n = self._count("events")

        def window(ds):
            def bisect(value):  # first index whose step is >= value
                lo, hi = 0, n
                while lo < hi:
                    mid = (lo + hi) // 2
                    if ds[mid] < value:
                        lo = mid + 1
                    else:
                        hi = mid
                return lo

            return (0 if start <= 0 else bisect(start)), (n if stop is None else bisect(stop))

        a, z = self.store.read_dataset(self._ds[0], window, f"recording {self.name!r}") if n else (0, 0)
        return tuple(self.store.read_dataset(ds, lambda d: d[a:z], f"recording {self.name!r}") if z > a
                     else np.zeros(0, ds.dtype) for ds in self._ds)


class StateRecorder(Recorder):
    """Rows of a sampled variable, buffered one chunk at a time."""

    def __init__(self, store, name, group, spec):
        super().__init__(store, name, group, spec)
        self._ds = group["data"]
        self._buf = np.empty(self._ds.chunks, self._ds.dtype)
        self._fill = 0

    def append(self, values) -> None:
        """Append samples ``[K, n]`` (``[K, batch, n]`` with a batch): those of steps
        ``rows * stride, (rows + 1) * stride, ...`` where ``rows`` were recorded before."""
        self.store.check_writable()
        values = _numpy(values)
        row = self._ds.shape[1:]
        if values.ndim == len(row) + 2 and self.spec.batch == 1 and values.shape[1] == 1:
            values = values[:, 0]
        if values.shape[1:] != row:
            raise NeurosimError(f"recording {self.name!r} takes rows of shape {row}, got {values.shape[1:]}")
        pos = 0
        while pos < values.shape[0]:
            k = min(self._buf.shape[0] - self._fill, values.shape[0] - pos)
            self._buf[self._fill:self._fill + k] = values[pos:pos + k]
            self._fill += k
            pos += k
            if self._fill == self._buf.shape[0]:
                self.write_pending()
        self.store.maybe_flush()

    def write_pending(self) -> None:
        k = self._fill
        if k:
            n = self._count("rows")
            with self.store.writing(self.pending_bytes()):
                self._ds.resize((n + k, *self._ds.shape[1:]))
                self._ds[n:n + k] = self._buf[:k]
            self.store.add_crc(f"{self.name}:data_crc32", self._buf[:k])
            self._set("rows", n + k)
            self._fill = 0

    def pending_bytes(self) -> int:
        return self._fill * self._buf[0].nbytes

    def datasets(self):
        return {"data": (self._ds, self._count("rows"))}

    def rewind(self, counts) -> None:
        self._fill = 0
        self._set("rows", counts.get(f"{self.name}:rows", 0))
        self._rewind_crcs(counts)

    def trim(self) -> None:
        self._ds.resize((self._count("rows"), *self._ds.shape[1:]))

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values)`` of the committed rows."""
        n = self._count("rows")
        values = self.store.read_dataset(self._ds, lambda d: d[:n], f"recording {self.name!r}") if n else \
            np.zeros((0, *self._ds.shape[1:]), self._ds.dtype)
        return np.arange(n, dtype=np.int64) * self.spec.stride, values


class WeightRecorder(Recorder):
    """Weight snapshots, written as they come."""

    def __init__(self, store, name, group, spec):
        super().__init__(store, name, group, spec)
        self._ds, self._steps = group["data"], group["step"]

    def append(self, weight, step: int) -> None:
        """Append a snapshot of ``weight`` (the recording's shape) taken at ``step``."""
        self.store.check_writable()
        w = _numpy(weight)
        if w.shape == self.spec.shape:
            w = np.ascontiguousarray(w, self._ds.dtype)
        if w.shape != self.spec.shape:
            raise NeurosimError(f"recording {self.name!r} takes weights of shape {self.spec.shape}, got {w.shape}")
        n = self._count("snapshots")
        with self.store.writing(w.nbytes):
            self._ds.resize((n + 1, *self.spec.shape))
            self._steps.resize((n + 1,))
            self._ds[n] = w
            self._steps[n] = int(step)
        self.store.add_crc(f"{self.name}:data_crc32", w)
        self.store.add_crc(f"{self.name}:step_crc32", np.array([int(step)], "<i8"))
        self._set("snapshots", n + 1)
        self.store.maybe_flush()

    def datasets(self):
        n = self._count("snapshots")
        return {"data": (self._ds, n), "step": (self._steps, n)}

    def rewind(self, counts) -> None:
        self._set("snapshots", counts.get(f"{self.name}:snapshots", 0))
        self._rewind_crcs(counts)

    def trim(self) -> None:
        n = self._count("snapshots")
        self._ds.resize((n, *self.spec.shape))
        self._steps.resize((n,))

    def read(self) -> tuple[np.ndarray, np.ndarray]:
        """``(steps, values [K, *shape])`` of the committed snapshots."""
        n = self._count("snapshots")
        if not n:
            return np.zeros(0, np.int64), np.zeros((0, *self.spec.shape), self._ds.dtype)
        what = f"recording {self.name!r}"
        return self.store.read_dataset(self._steps, lambda d: d[:n], what), self.store.read_dataset(self._ds, lambda d: d[:n], what)


_RECORDERS = {"spikes": SpikeRecorder, "state": StateRecorder, "weights": WeightRecorder}


def open_recorder(store: "RunStore", name: str, group: h5py.Group) -> Recorder:
    """The recorder of the recording stored in ``group``."""
    spec = Recording.from_attrs(group.attrs)
    return _RECORDERS[spec.kind](store, name, group, spec)


def record_run(network: "Network", store: "RunStore", steps: int, *, inputs: Mapping | None = None,
               state: dict | None = None, start: int = 0, chunk: int = 10_000, batch: int = 1,
               progress: bool = False) -> dict:
    """Run ``network`` without gradients for ``steps`` steps in chunks of ``chunk`` steps, carrying
    the state, and append to every recording of ``store`` whose source is in the network: spikes as
    events, states sampled every ``stride`` steps, weights (a projection's ``weight``) at
    ``start`` and after every chunk that ends on a multiple of ``stride``. Steps are counted from
    ``start`` (to continue an earlier call). ``inputs`` are ``[steps, batch, n]``, sliced per chunk.
    Memory stays that of one chunk. Returns the final state."""
    for label, v, low in (("steps", steps, 1), ("chunk", chunk, 1), ("start", start, 0), ("batch", batch, 1)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise NeurosimError(f"{label} must be an integer >= {low}, got {v!r}")
    store.check_writable()
    inputs = dict(inputs or {})
    for k, x in inputs.items():
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != steps:
            raise NeurosimError(f"input {k!r} must be a [steps={steps}, batch, n] tensor")
    spikes, states, weights = [], [], []
    for name, rec in store.recorders.items():
        spec = rec.spec
        if spec.kind == "weights":
            if spec.source in network.projections:
                weights.append(rec)
            continue
        if spec.source not in network.populations:
            continue
        if spec.batch != batch:
            raise NeurosimError(f"recording {name!r} has batch {spec.batch} but the run has batch {batch}")
        if network.populations[spec.source].n != spec.n:
            raise NeurosimError(f"recording {name!r} holds {spec.n} neurons but {spec.source!r} has "
                                f"{network.populations[spec.source].n}")
        if spec.kind == "state":
            if chunk % spec.stride or start % spec.stride:
                raise NeurosimError(f"recording {name!r} samples every {spec.stride} steps: chunk and start "
                                    f"must be multiples of it")
            states.append(rec)
        else:
            spikes.append(rec)
    if not spikes and not states and not weights:
        raise NeurosimError("no recording of the store has its source in this network")
    probes = {rec.name: Probe(rec.spec.source, "spikes", events=True) for rec in spikes}
    probes.update({rec.name: Probe(rec.spec.source, rec.spec.variable, rec.spec.stride) for rec in states})
    for probe in probes.values():
        network.check_probe(probe)

    def snap(recs, step):
        for rec in recs:
            rec.append(network.projections[rec.spec.source].weight.detach().reshape(rec.spec.shape), step)

    snap(weights, start)
    with torch.no_grad(), progress_bar(total=steps, desc="recording", unit="step", enabled=progress) as bar:
        for t0 in range(0, steps, chunk):
            n = min(chunk, steps - t0)
            part = {k: x[t0:t0 + n] for k, x in inputs.items()}
            res = network.run(part, state=state, steps=n, batch=batch, outputs=[], probes=probes)
            state = res.state
            for rec in spikes:
                ev = res.probes[rec.name]
                rec.append(ev.t + (start + t0), ev.i, ev.b if batch > 1 else None, until=start + t0 + n)
            for rec in states:
                rec.append(res.probes[rec.name])
            end = start + t0 + n
            snap([r for r in weights if end % r.spec.stride == 0], end)
            bar.update(n)
    store.flush()
    return state
