"""Audio front end (WAV, gammatone cochlea, integrate-and-fire encoder) and event data sets (FSDD, SHD)."""
import math
import os
import wave
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from neurosim import NeurosimError
from neurosim.datasets.audio import Cochlea, audio_events, erb, erb_number, read_wav, spike_encode
from neurosim.datasets.event_sets import (EventSet, bin_events, collate, fsdd, heidelberg, read_heidelberg)

FS = 8000


def tone(f, amplitude=0.5, n=4000, fs=FS):
    return (amplitude * np.cos(2 * np.pi * f * np.arange(n) / fs)).astype(np.float32)


def write_wav(path, x, rate=FS, width=2):
    scale = float(1 << (8 * width - 1)) - 1
    data = np.round(np.clip(x, -1, 1) * scale).astype("<i2" if width == 2 else "<i4")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(data.tobytes())


def one_line(err):
    assert "\n" not in str(err.value)


# --- cochlea --------------------------------------------------------------------------------------

def test_centre_frequencies_equally_spaced_on_erb_scale():
    c = Cochlea(64, f_min=100.0, f_max=3500.0)
    fc = c.centre_frequencies
    assert fc.shape == (64,) and np.all(np.diff(fc) > 0)
    assert fc[0] == pytest.approx(100.0) and fc[-1] == pytest.approx(3500.0)
    step = np.diff(erb_number(fc))
    np.testing.assert_allclose(step, step[0], rtol=1e-9)
    np.testing.assert_allclose(c.bandwidths, 1.019 * 24.7 * (4.37 * fc / 1000 + 1))
    assert erb(1000.0) == pytest.approx(132.639)
    # each discrete filter has gain exactly 1 at its own centre frequency
    t = np.arange(c.ir_length) / FS
    gain = np.abs((c.impulse_responses * np.exp(-2j * np.pi * fc[:, None] * t)).sum(axis=1))
    np.testing.assert_allclose(gain, 1.0, rtol=1e-9)


def test_tone_amplitude_per_channel_matches_gammatone_response():
    c = Cochlea(64, level=None)
    f0, a = 1000.0, 0.5
    y = c.filter(tone(f0, a))[:, c.ir_length:c.ir_length + 800].astype(np.float64)  # 100 whole periods
    amp = np.sqrt(2 * np.mean(y ** 2, axis=1))
    expect = a * (1 + ((f0 - c.centre_frequencies) / c.bandwidths) ** 2) ** -2
    near = expect > 0.01 * a
    assert near.sum() >= 10
    np.testing.assert_allclose(amp[near], expect[near], rtol=2e-3)


@pytest.mark.parametrize("f0", [180.0, 250.0, 333.0, 500.0, 640.0])
def test_tone_excites_the_nearest_channel_with_mean_a_over_pi(f0):
    c = Cochlea(64, level=None)
    a = 0.3
    e = c.energy(tone(f0, a))[c.ir_length // c.hop + 1:].mean(axis=0)
    nearest = int(np.argmin(np.abs(erb_number(c.centre_frequencies) - erb_number(f0))))
    assert int(np.argmax(e)) == nearest
    gain = (1 + ((f0 - c.centre_frequencies[nearest]) / c.bandwidths[nearest]) ** 2) ** -2
    assert e[nearest] == pytest.approx(a * gain / math.pi, rel=0.01)   # half-wave rectified mean


def test_nearest_channel_across_the_range():
    c = Cochlea(128, level=None)
    fc = c.centre_frequencies
    for k in (5, 40, 80, 110):
        f0 = erb_number(fc[k]) + 0.3 * (erb_number(fc[k + 1]) - erb_number(fc[k]))   # 30 % of the way up
        f0 = float((10 ** (f0 / 21.4) - 1) / 4.37e-3)
        y = c.filter(tone(f0, 0.5, n=3000))[:, c.ir_length:]
        assert int(np.argmax((y.astype(np.float64) ** 2).mean(axis=1))) == k


def test_compression_maps_dynamic_range_to_zero_one():
    # 48 samples per period and per 1 ms frame: the frame mean of the rectified tone is A / pi
    c = Cochlea(8, sample_rate=48000, f_min=1000.0, f_max=8000.0, level=None, dynamic_range=60.0)
    full = c(tone(1000.0, 1.0, n=9600, fs=48000))[50:, 0]
    quiet = c(tone(1000.0, 10 ** (-30 / 20), n=9600, fs=48000))[50:, 0]
    faint = c(tone(1000.0, 10 ** (-61 / 20), n=9600, fs=48000))[50:, 0]
    np.testing.assert_allclose(full, 1.0, atol=2e-3)
    np.testing.assert_allclose(quiet, 0.5, atol=2e-3)
    assert (faint == 0).all() and (c(np.zeros(4800)) == 0).all()


def test_level_normalisation_makes_activity_independent_of_gain():
    c = Cochlea(32)
    x = tone(440.0, 0.5) + tone(1300.0, 0.2)
    np.testing.assert_allclose(c(x), c(0.01 * x), atol=1e-4)


# --- encoder --------------------------------------------------------------------------------------

def test_spike_count_grows_with_amplitude():
    c = Cochlea(64, level=None)
    counts = [audio_events(tone(700.0, a), c)[0].size for a in (1e-3, 1e-2, 1e-1, 1.0)]
    assert counts[0] < counts[1] < counts[2] < counts[3], counts
    assert audio_events(np.zeros(4000), c)[0].size == 0


def test_integrate_and_fire_closed_form_and_order():
    rng = np.random.default_rng(0)
    a = rng.random((300, 16)) * (rng.random((300, 16)) < 0.5)
    t, u = spike_encode(a, frame=1e-3, gain=0.3)
    per_channel = np.bincount(u, minlength=16)
    np.testing.assert_array_equal(per_channel, np.floor(0.3 * a.sum(axis=0) + 1e-9))
    key = np.round(t / 1e-3).astype(int) * 16 + u
    assert np.all(np.diff(key) >= 0)                                  # sorted by time, then channel
    assert t.dtype == np.float32 and u.dtype == np.int16
    # a leak lowers the count; below the rheobase (1 - beta) / gain nothing fires
    tl, _ = spike_encode(a, frame=1e-3, gain=0.3, tau=0.01)
    assert 0 < tl.size < t.size
    rheobase = (1 - math.exp(-0.1)) / 0.3
    assert spike_encode(np.full((500, 4), 0.95 * rheobase), 1e-3, 0.3, tau=0.01)[0].size == 0
    assert spike_encode(np.full((500, 4), 1.05 * rheobase), 1e-3, 0.3, tau=0.01)[0].size > 0


# --- binning and event sets -----------------------------------------------------------------------

def random_set(n=7, channels=10, seed=1, dt=0.01):
    rng = np.random.default_rng(seed)
    times, units, durations = [], [], []
    for i in range(n):
        k = int(rng.integers(0, 60))
        dur = float(rng.uniform(0.05, 0.4))
        times.append(np.sort(rng.uniform(0, dur, k)).astype(np.float32))
        units.append(rng.integers(0, channels, k).astype(np.int16))
        durations.append(dur)
    return EventSet.from_lists(times, units, rng.integers(0, 3, n), channels, durations=np.array(durations), dt=dt)


def test_binning_preserves_events_and_pads_per_batch():
    s = random_set()
    t, u = s.events(3)
    counts = bin_events(t, u, s.channels, 0.01)
    assert counts.sum() == t.size and counts.dtype == np.float32
    assert bin_events([0.03, 0.03, 0.0299], [1, 1, 2], 3, 0.01)[3, 1] == 2    # step boundaries in microseconds
    x, y, lengths = s.batch([0, 3, 5])
    assert x.shape == (int(lengths.max()), 3, s.channels) and x.dtype == torch.float32
    for j, i in enumerate([0, 3, 5]):
        assert int(x[:, j].sum()) == s.counts()[i]
        assert int(x[lengths[j]:, j].sum()) == 0
        assert lengths[j] == math.ceil(s.durations[i] / 0.01 - 1e-9)
        torch.testing.assert_close(x[:lengths[j], j], s[i][0])
    assert y.tolist() == s.labels[[0, 3, 5]].tolist()
    xc, yc, lc = collate([s[i] for i in (0, 3, 5)])
    torch.testing.assert_close(xc, x)
    assert lc.tolist() == lengths.tolist()
    assert s.batch([1], min_steps=100)[0].shape[0] == 100
    total = sum(int(b[0].sum()) for b in s.batches(3, shuffle=True, seed=0))
    assert total == s.times.size
    g = s.grouped(5)
    assert g.channels == 2
    torch.testing.assert_close(g.batch([0, 3, 5])[0], x.reshape(*x.shape[:2], 2, 5).sum(-1))


def test_event_set_save_and_load(tmp_path):
    s = random_set()
    s.save(tmp_path / "s.npz", {"a": 1})
    r, meta = EventSet.load(tmp_path / "s.npz")
    assert meta == {"a": 1} and len(r) == len(s) and r.channels == s.channels
    torch.testing.assert_close(r.batch(range(len(r)))[0], s.batch(range(len(s)))[0])


# --- SHD / SSC ------------------------------------------------------------------------------------

def write_heidelberg(path, times, units, labels, speakers=None):
    with h5py.File(path, "w") as f:
        ft = f.create_dataset("spikes/times", (len(times),), dtype=h5py.vlen_dtype(np.float16))
        fu = f.create_dataset("spikes/units", (len(units),), dtype=h5py.vlen_dtype(np.uint16))
        for i, (t, u) in enumerate(zip(times, units)):
            ft[i], fu[i] = t, u
        f.create_dataset("labels", data=np.asarray(labels, np.uint8))
        if speakers is not None:
            f.create_dataset("extra/speaker", data=np.asarray(speakers, np.uint8))


def heidelberg_sample(seed, n=6):
    rng = np.random.default_rng(seed)
    times, units = [], []
    for _ in range(n):
        k = int(rng.integers(0, 300))
        times.append(np.sort(rng.uniform(0, 1.2, k)).astype(np.float16))
        units.append(rng.integers(0, 700, k).astype(np.uint16))
    return times, units, rng.integers(0, 20, n), rng.integers(0, 12, n)


def test_heidelberg_file_read_exactly_and_grouped(tmp_path):
    times, units, labels, speakers = heidelberg_sample(0)
    times[2], units[2] = np.zeros(0, np.float16), np.zeros(0, np.uint16)    # a sample without events
    write_heidelberg(tmp_path / "shd_train.h5", times, units, labels, speakers)
    s = read_heidelberg(tmp_path / "shd_train.h5")
    assert len(s) == 6 and s.channels == 700
    assert s.labels.tolist() == labels.tolist() and s.speakers.tolist() == speakers.tolist()
    for i in range(6):
        t, u = s.events(i)
        np.testing.assert_array_equal(t, times[i])
        np.testing.assert_array_equal(u, units[i])
    x, _, lengths = s.batch(range(6))
    assert x.shape[2] == 700 and int(x.sum()) == sum(t.size for t in times)
    assert lengths[2] == 1
    for i in (0, 1):
        k = np.floor(np.rint(times[i].astype(np.float64) * 1e6) / 1e4).astype(int)
        assert lengths[i] == k.max() + 1
        ref = np.zeros((int(lengths[i]), 700))
        np.add.at(ref, (k, units[i].astype(int)), 1)
        np.testing.assert_array_equal(x[:lengths[i], i].numpy(), ref)
    g = read_heidelberg(tmp_path / "shd_train.h5", group=5)
    assert g.channels == 140
    for i in range(6):
        np.testing.assert_array_equal(g.events(i)[1], units[i] // 5)
    torch.testing.assert_close(g.batch(range(6))[0], x.reshape(*x.shape[:2], 140, 5).sum(-1))

    t2, u2, l2, _ = heidelberg_sample(1, n=3)
    write_heidelberg(tmp_path / "shd_test.h5", t2, u2, l2)
    split = heidelberg("shd", root=tmp_path, group=5)
    assert len(split.train) == 6 and len(split.test) == 3 and split.valid is None
    assert split.train.channels == split.test.channels == 140
    assert split.train.classes == split.test.classes == max(labels.max(), l2.max()) + 1


def test_heidelberg_bad_files(tmp_path):
    times, units, labels, _ = heidelberg_sample(0, n=3)

    def bad(path, match, **kw):
        with pytest.raises(NeurosimError, match=match) as err:
            read_heidelberg(path, **kw)
        one_line(err)

    bad(tmp_path / "absent.h5", "spike data file not found")
    (tmp_path / "text.h5").write_text("not hdf5")
    bad(tmp_path / "text.h5", "not a readable HDF5 file")
    with h5py.File(tmp_path / "nounits.h5", "w") as f:
        f.create_dataset("spikes/times", (1,), dtype=h5py.vlen_dtype(np.float32))
        f.create_dataset("labels", data=np.zeros(1, np.uint8))
    bad(tmp_path / "nounits.h5", "missing dataset 'spikes/units'")
    write_heidelberg(tmp_path / "short.h5", times, [units[0], units[1], units[2][:-1]], labels)
    bad(tmp_path / "short.h5", "sample 2 has")
    write_heidelberg(tmp_path / "labels.h5", times, units, labels[:2])
    bad(tmp_path / "labels.h5", "3 time arrays, 3 unit arrays and 2 labels")
    with h5py.File(tmp_path / "dense.h5", "w") as f:
        f.create_dataset("spikes/times", data=np.zeros((3, 4), np.float32))
        f.create_dataset("spikes/units", data=np.zeros((3, 4), np.uint16))
        f.create_dataset("labels", data=np.zeros(3, np.uint8))
    bad(tmp_path / "dense.h5", "variable-length")
    write_heidelberg(tmp_path / "ok.h5", times, units, labels)
    bad(tmp_path / "ok.h5", r"units must lie in \[0, 100\)", channels=100)
    bad(tmp_path / "ok.h5", "group=3 does not divide", group=3)
    with pytest.raises(NeurosimError, match="SHD folder not found"):
        heidelberg("shd", root=tmp_path / "nothing")


# --- WAV and FSDD ---------------------------------------------------------------------------------

def fake_fsdd(folder, digits=(0, 1), speakers=("ann", "bob"), indices=(0, 1, 5, 6)):
    folder.mkdir(parents=True, exist_ok=True)
    for d in digits:
        for s, sp in enumerate(speakers):
            for i in indices:
                x = tone(300 + 400 * d, 0.3, n=1200 + 97 * i + 31 * s) + tone(2000 + 50 * s, 0.05, n=1200 + 97 * i + 31 * s)
                write_wav(folder / f"{d}_{sp}_{i}.wav", x)
    (folder / "README.md").write_text("ignored")


def test_read_wav(tmp_path):
    x = tone(440.0, 0.5, n=1000)
    write_wav(tmp_path / "a.wav", x)
    y, rate = read_wav(tmp_path / "a.wav", FS)
    assert rate == FS and y.dtype == np.float32 and y.shape == (1000,)
    np.testing.assert_allclose(y, x, atol=1 / 32767)
    write_wav(tmp_path / "b.wav", x, width=4)
    np.testing.assert_allclose(read_wav(tmp_path / "b.wav")[0], x, atol=1e-6)


@pytest.mark.parametrize("case, match", [
    ("missing", "WAV file not found"),
    ("text", "is not a readable PCM WAV file"),
    ("rate", "has sample rate 16000 Hz, expected 8000 Hz"),
    ("empty", "holds no samples"),
])
def test_read_wav_errors(tmp_path, case, match):
    p = tmp_path / "x.wav"
    if case == "text":
        p.write_text("RIFF? no, just text")
    elif case == "rate":
        write_wav(p, tone(440.0, n=100), rate=16000)
    elif case == "empty":
        write_wav(p, np.zeros(0))
    with pytest.raises(NeurosimError, match=match) as err:
        read_wav(p, FS)
    one_line(err)


def test_fsdd_official_split_and_cache(tmp_path):
    fake_fsdd(tmp_path / "fsdd" / "recordings")
    split = fsdd(tmp_path / "fsdd", channels=32, dt=0.01, cache=tmp_path / "cache")
    assert len(split.train) == len(split.test) == 8
    assert all(int(str(n).rsplit("_", 1)[1]) in (0, 1) for n in split.test.names)
    assert all(int(str(n).rsplit("_", 1)[1]) in (5, 6) for n in split.train.names)
    assert split.train.channels == 32 and split.train.classes == 10
    assert sorted(set(split.test.labels.tolist())) == [0, 1]
    assert all(str(n).startswith(str(y)) for n, y in zip(split.train.names, split.train.labels))
    assert (split.train.counts() > 0).all()
    np.testing.assert_allclose(split.train.durations[0], (1200 + 97 * 5) / FS)
    assert split.train.steps()[0] == math.ceil((1200 + 97 * 5) / 80)
    # digits are separable by their dominant channel
    peak = [int(np.argmax(np.bincount(split.test.events(i)[1], minlength=32))) for i in range(len(split.test))]
    assert len(set(p for p, y in zip(peak, split.test.labels) if y == 0) & set(p for p, y in zip(peak, split.test.labels) if y == 1)) == 0
    cached = list((tmp_path / "cache").glob("fsdd-*.npz"))
    assert len(cached) == 1
    again = fsdd(tmp_path / "fsdd" / "recordings", channels=32, dt=0.02, cache=tmp_path / "cache")
    assert again.train.dt == 0.02 and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    np.testing.assert_array_equal(again.train.times, split.train.times)
    np.testing.assert_array_equal(again.test.units, split.test.units)
    fsdd(tmp_path / "fsdd", channels=16, cache=tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2                 # other parameters, other file


def test_fsdd_errors(tmp_path, monkeypatch):
    def bad(match, *args, **kw):
        with pytest.raises(NeurosimError, match=match) as err:
            fsdd(*args, **kw)
        one_line(err)

    bad("FSDD folder not found", tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    bad("no .wav files in", tmp_path / "empty")
    fake_fsdd(tmp_path / "a", digits=(3,), speakers=("cy",), indices=(0, 7))
    (tmp_path / "a" / "3_cy_9.wav").write_bytes(b"\x00" * 100)
    bad(r"3_cy_9.wav is not a readable PCM WAV file", tmp_path / "a")
    (tmp_path / "a" / "3_cy_9.wav").unlink()
    write_wav(tmp_path / "a" / "3_cy_9.wav", tone(500.0, n=500), rate=16000)
    bad("has sample rate 16000 Hz, expected 8000 Hz", tmp_path / "a")
    (tmp_path / "a" / "3_cy_9.wav").unlink()
    write_wav(tmp_path / "a" / "take2.wav", tone(500.0, n=500))
    bad("not an FSDD file name", tmp_path / "a")
    (tmp_path / "a" / "take2.wav").unlink()
    bad("channels=32 but the cochlea given has 64", tmp_path / "a", channels=32, cochlea=Cochlea(64))
    bad("inside the neurosim repository", tmp_path / "a", cache=Path(__file__).resolve().parents[1] / "cache")
    monkeypatch.delenv("NEUROSIM_DATA", raising=False)
    bad("set NEUROSIM_DATA or pass root=")


REAL = Path(os.environ.get("NEUROSIM_DATA", "/nonexistent")) / "fsdd"


@pytest.mark.skipif(not (REAL / "recordings").is_dir(), reason="$NEUROSIM_DATA/fsdd is absent")
def test_real_fsdd_handful(tmp_path):
    names = [f"{d}_{s}_{i}.wav" for d in (0, 7) for s in ("jackson", "george") for i in (0, 12)]
    folder = tmp_path / "recordings"
    folder.mkdir()
    for n in names:
        (folder / n).symlink_to(REAL / "recordings" / n)
    x, rate = read_wav(folder / names[0], FS)
    assert rate == FS and 1148 <= x.size <= 18262 and np.abs(x).max() <= 1.0
    split = fsdd(tmp_path, channels=64)
    assert len(split.train) == len(split.test) == 4
    assert sorted(split.test.labels.tolist()) == [0, 0, 7, 7]
    counts = np.concatenate([split.train.counts(), split.test.counts()])
    assert (counts > 200).all() and (counts < 20000).all()
    xb, yb, lengths = split.train.batch(range(4))
    assert xb.shape == (int(lengths.max()), 4, 64) and int(xb.sum()) == split.train.counts().sum()
