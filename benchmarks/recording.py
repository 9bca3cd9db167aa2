"""Cost of recording every spike of a 10,000-neuron reservoir into a run store.

An E/I LIF reservoir (:func:`neurosim.reservoirs.builders.lif_reservoir`, 10,000 neurons, p 0.02, CUBA's
weights scaled by 4000 / n as in ``scaling.py``, a few Hz) runs 100,000 steps (10 s at dt 0.1 ms)
from a warmed-up state on one thread:

- bare: one ``Network.run`` call, nothing recorded;
- recorded: :func:`neurosim.storage.recording.record_run` into a fresh :class:`~neurosim.storage.store.RunStore`,
  in chunks of ``--chunk`` steps, every spike streamed to disk as events (closing the file included).

Then: memory growth while recording (peak RSS above the level before, sampled every 5 ms, and the
peak of Python/numpy allocations traced by tracemalloc), bytes per recorded spike on disk, and the
write path alone on the same events: the store's recorder against a bare h5py append with the same
filters and chunks (the limit), and against an uncompressed append, timing the appends and closing the file (not
creating it). Medians over ``--reps``.

    python benchmarks/recording.py [--neurons 10000] [--steps 100000] [--chunk 10000] [--reps 5]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import tracemalloc

import h5py
import numpy as np
import torch

from neurosim.storage.recording import SPIKE_CHUNK, record_run
from neurosim.storage.store import RunStore

from scaling import DT, reservoir


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples the resident set size in a thread; ``growth``: peak above the level at entry."""

    def __enter__(self):
        self.base = self.peak = rss()
        self.running = True
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak = max(self.peak, rss())
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, rss())
        self.growth = self.peak - self.base


def spikes_store(path: str, n: int) -> RunStore:
    return RunStore.create(path, {"name": "recording benchmark"}, overwrite=True,
                           recordings={"spikes": dict(kind="spikes", n=n, dt=DT, source="neurons")})


def bare_append(path: str, pieces: list[tuple[np.ndarray, np.ndarray]], compressed: bool):
    """What the store's recorder does, with h5py alone: extend two datasets and write each piece
    (returns the timed part: the appends and closing the file)."""
    f = h5py.File(path, "w", libver=("v110", "latest"))
    extra = [dict(compression="gzip", compression_opts=1, shuffle=True), dict(scaleoffset=0)] if compressed \
        else [{}, {}]
    t = f.create_dataset("t", (0,), maxshape=(None,), chunks=(SPIKE_CHUNK,), dtype="<i8", **extra[0])
    i = f.create_dataset("i", (0,), maxshape=(None,), chunks=(SPIKE_CHUNK,), dtype="<i4", **extra[1])

    def write():
        n = 0
        for pt, pi in pieces:
            k = pt.size
            t.resize((n + k,))
            t[n:n + k] = pt
            i.resize((n + k,))
            i[n:n + k] = pi
            n += k
        f.close()

    return write


def store_append(path: str, n_neurons: int, pieces, chunk: int):
    """The same through the store's recorder (timed part: the appends, the commit, closing)."""
    store = spikes_store(path, n_neurons)

    def write():
        rec = store.recorder("spikes")
        for k, (pt, pi) in enumerate(pieces):
            rec.append(pt, pi, until=(k + 1) * chunk)
        store.close()

    return write


def median_time(setup, reps: int) -> float:
    """Median seconds of ``setup()()``, timing only the call of what ``setup`` returns."""
    times = []
    for _ in range(reps):
        fn = setup()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--neurons", type=int, default=10_000)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="steps per chunk of record_run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    n, steps = args.neurons, args.steps
    folder = args.dir or tempfile.mkdtemp(prefix="neurosim-recording-")
    path = os.path.join(folder, "recording.h5")

    net = reservoir(n)
    with torch.no_grad():
        state = net.run(steps=1000, outputs=[]).state
        net.run(state=state, steps=100, outputs=[])  # compile and cache outside the timings
    with spikes_store(path, n) as store:
        record_run(net, store, 100, state=state, chunk=100)

    bare, recorded = [], []
    for _ in range(args.reps):  # interleaved, so that drifts of the machine hit both alike
        with torch.no_grad():
            start = time.perf_counter()
            net.run(state=state, steps=steps, outputs=[])
            bare.append(time.perf_counter() - start)
        store = spikes_store(path, n)
        start = time.perf_counter()
        record_run(net, store, steps, state=state, chunk=args.chunk)
        store.close()
        recorded.append(time.perf_counter() - start)
    t_bare, t_rec = statistics.median(bare), statistics.median(recorded)

    store = spikes_store(path, n)
    tracemalloc.start()
    with PeakRSS() as mem:
        record_run(net, store, steps, state=state, chunk=args.chunk)
        store.close()
    traced_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()

    with RunStore.open(path) as store:
        events = store.count("spikes:events")
        t, i = store.read_spikes("spikes")
        on_disk = sum(store._f[f"recordings/spikes/{k}"].id.get_storage_size() for k in ("t", "i"))
    file_size = os.path.getsize(path)
    rate = events / (n * steps * DT / 1000)
    bounds = np.searchsorted(t, np.arange(args.chunk, steps, args.chunk))
    pieces = list(zip(np.split(t, bounds), np.split(i, bounds)))
    other = os.path.join(folder, "bare.h5")
    w_store = median_time(lambda: store_append(path, n, pieces, args.chunk), args.reps)
    w_bare = median_time(lambda: bare_append(other, pieces, True), args.reps)
    w_raw = median_time(lambda: bare_append(other, pieces, False), args.reps)

    mb = 1e6
    print(f"E/I LIF reservoir: {n} neurons, p 0.02, {steps} steps at dt {DT} ms ({steps * DT / 1000:g} s), "
          f"{events} spikes ({rate:.2f} Hz); one thread, medians of {args.reps}")
    print(f"{'':34s} {'seconds':>9s}  {'ratio':>6s}")
    print(f"{'run, nothing recorded':34s} {t_bare:9.3f}  {1:6.3f}")
    print(f"{'run, every spike to the store':34s} {t_rec:9.3f}  {t_rec / t_bare:6.3f}   (goal < 1.15)")
    print(f"memory while recording: peak RSS +{mem.growth / mb:.1f} MB, traced Python/numpy peak "
          f"{traced_peak / mb:.1f} MB   (goal < 100 MB)")
    print(f"on disk: {on_disk / events:.2f} bytes per spike in the event datasets, "
          f"{file_size / events:.2f} with everything in the file ({file_size / mb:.1f} MB)")
    print(f"{'write path alone, same events':34s} {'seconds':>9s}  {'M spikes/s':>10s}")
    for label, s in (("store recorder (commit, close)", w_store), ("bare h5py, same filters (limit)", w_bare),
                     ("bare h5py, uncompressed", w_raw)):
        print(f"{label:34s} {s:9.3f}  {events / s / 1e6:10.1f}")
    print(f"store recorder / bare h5py: {w_store / w_bare:.2f}")


if __name__ == "__main__":
    main()
