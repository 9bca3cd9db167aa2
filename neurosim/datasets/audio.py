r"""Audio to spike events: WAV files, a gammatone cochlea on the ERB scale, an integrate-and-fire encoder.

The chain, per file (all in numpy, vectorised over channels; float32 except where noted):

1. **Reading** (:func:`read_wav`): uncompressed PCM WAV via the standard ``wave`` module, scaled
   to [-1, 1) (int16 / 32768); several channels are averaged to one.

2. **Level** (:class:`Cochlea`, ``level``): the waveform is scaled to an RMS of ``level`` dB
   re full scale (default -20 dBFS), since recording levels differ a lot between files;
   ``level=None`` keeps the file's own level.

3. **Filter bank** (:meth:`Cochlea.filter`): ``channels`` fourth-order gammatone filters
   (Patterson et al. 1992) with centre frequencies equally spaced on the ERB-number scale of
   Glasberg & Moore (1990) between ``f_min`` and ``f_max``:

   .. math::

       \mathrm{ERB}(f) = 24.7\,(4.37 f / 1000 + 1)\ \mathrm{Hz}, \qquad
       E(f) = 21.4 \log_{10}(1 + 4.37 f / 1000),

       f_k = E^{-1}\Big(E(f_\min) + \tfrac{k}{C-1}\big(E(f_\max) - E(f_\min)\big)\Big),
       \quad E^{-1}(e) = (10^{e/21.4} - 1)\,\tfrac{1000}{4.37},

       g_k(t) = t^{n-1} e^{-2\pi b_k t} \cos(2\pi f_k t), \quad b_k = 1.019\,\mathrm{ERB}(f_k),
       \quad n = 4.

   The impulse response is sampled at ``t = j / f_s`` for ``j = 0 .. L-1``, with ``L`` the
   length after which the envelope of the widest-lasting (lowest) channel has fallen below
   ``1e-4`` of its peak (:math:`2\pi b_{\min} t = 18`, 79 ms at 100 Hz), and scaled so that the
   discrete filter has gain exactly 1 at its own centre frequency. Near the centre its magnitude
   response is then :math:`|H_k(f)| \approx (1 + ((f - f_k)/b_k)^2)^{-n/2}`. The output
   ``y_k = g_k * x`` is causal and as long as the input (computed by FFT, exact linear
   convolution).

4. **Hair cells** (:meth:`Cochlea.energy`): half-wave rectification and the mean over frames of
   ``frame`` seconds (default 1 ms, 8 samples at 8 kHz; a trailing partial frame is dropped):
   :math:`e_k[m] = \frac1h \sum_{j < h} \max(0, y_k[m h + j])`. A steady tone of amplitude
   :math:`A` gives :math:`e_k \approx A\,|H_k(f)| / \pi`.

5. **Compression** (:meth:`Cochlea.__call__`): logarithmic, over a dynamic range of
   ``dynamic_range`` dB (default 60) below the level of a full-scale tone at the centre
   frequency (:math:`e = 1/\pi`):

   .. math::  a_k[m] = \max\big(0,\ 1 + 20 \log_{10}(\pi\, e_k[m]) / R\big),

   0 for anything more than ``R`` dB below full scale, 1 for a full-scale tone (more is possible).

6. **Spikes** (:func:`spike_encode`): per channel an integrate-and-fire neuron driven by
   ``gain * a`` once per frame, threshold 1, reset by subtraction, with an optional leak
   (``tau``, seconds):

   .. math::

       v_k[m] = \beta\, v_k[m-1] + \mathrm{gain}\; a_k[m], \quad \beta = e^{-\mathrm{frame}/\tau}
       \ (\beta = 1 \text{ without leak}),

   and whenever :math:`v_k[m] \ge 1` the neuron emits :math:`\lfloor v_k[m] \rfloor` events at
   time ``m * frame`` (the start of the frame) and :math:`v_k[m]` drops by as much. Without leak
   (the default) this is computed in closed form: the count up to frame ``m`` is
   :math:`\lfloor \mathrm{gain} \sum_{m' \le m} a_k[m'] \rfloor`, so a channel fires at
   ``gain * a / frame`` Hz (250 Hz at ``a = 1`` with the defaults). With a leak, the loop over
   frames costs a few milliseconds per file.

:func:`audio_events` runs steps 2-6 and returns the events as ``(times, units)``: float32
seconds and int16 channel indices, sorted by time then channel -- the layout of the Heidelberg
spike data sets (:mod:`neurosim.datasets.event_sets`), which bin them into counts per time step.
"""
from __future__ import annotations

import math
import wave
from pathlib import Path

import numpy as np

from ..errors import NeurosimError, check_positive

ORDER = 4
TAIL = 18.0
"""The impulse response is cut where 2 pi b t = TAIL for the lowest channel: envelope < 1e-4 of its peak."""


def read_wav(path: str | Path, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Samples of an uncompressed PCM WAV file as float32 in [-1, 1) (``[N]``; several channels
    averaged) and its sample rate. With ``sample_rate``, a file at another rate is refused."""
    path = Path(path)
    if not path.is_file():
        raise NeurosimError(f"WAV file not found: {path}")
    try:
        with wave.open(str(path), "rb") as w:
            n_ch, width, rate, n = w.getnchannels(), w.getsampwidth(), w.getframerate(), w.getnframes()
            raw = w.readframes(n)
    except (wave.Error, EOFError, OSError) as e:
        raise NeurosimError(f"{path} is not a readable PCM WAV file ({e or 'unexpected end of file'})") from None
    if sample_rate is not None and rate != sample_rate:
        raise NeurosimError(f"{path} has sample rate {rate} Hz, expected {sample_rate} Hz")
    if width not in (1, 2, 3, 4) or n_ch < 1:
        raise NeurosimError(f"{path}: unsupported WAV layout ({n_ch} channels of {width} bytes)")
    if len(raw) != n * n_ch * width:
        raise NeurosimError(f"{path} is truncated: {len(raw)} bytes of data for {n} frames")
    if n == 0:
        raise NeurosimError(f"{path} holds no samples")
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (np.where(v >= 1 << 23, v - (1 << 24), v) / float(1 << 23)).astype(np.float32)
    else:
        dtype = "<i2" if width == 2 else "<i4"
        x = np.frombuffer(raw, dtype).astype(np.float32) / float(1 << (8 * width - 1))
    if n_ch > 1:
        x = x.reshape(n, n_ch).mean(axis=1)
    return x, rate


def erb(f):
    """Equivalent rectangular bandwidth (Hz) at frequency ``f`` (Hz): ``24.7 (4.37 f / 1000 + 1)``."""
    return 24.7 * (4.37e-3 * np.asarray(f, dtype=np.float64) + 1.0)


def erb_number(f):
    """ERB-number (Cam) of frequency ``f`` (Hz): ``21.4 log10(1 + 4.37 f / 1000)``."""
    return 21.4 * np.log10(1.0 + 4.37e-3 * np.asarray(f, dtype=np.float64))


def erb_number_to_hz(e):
    """Inverse of :func:`erb_number`."""
    return (10.0 ** (np.asarray(e, dtype=np.float64) / 21.4) - 1.0) / 4.37e-3


class Cochlea:
    """Gammatone filter bank with half-wave rectification, framing and log compression (module doc).

    ``Cochlea(channels=64, sample_rate=8000, f_min=100, f_max=3500, frame=1e-3,
    dynamic_range=60, level=-20)``; ``cochlea(x)`` gives the activity ``[M, channels]`` of a
    waveform ``x`` (``[N]``, in [-1, 1]), ``M = N // (frame * sample_rate)``.
    """

    def __init__(self, channels: int = 64, sample_rate: int = 8000, f_min: float = 100.0,
                 f_max: float = 3500.0, frame: float = 1e-3, dynamic_range: float = 60.0,
                 level: float | None = -20.0):
        if not isinstance(channels, int) or isinstance(channels, bool) or channels < 2:
            raise NeurosimError(f"channels must be an integer >= 2, got {channels!r}")
        if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate <= 0:
            raise NeurosimError(f"sample_rate must be a positive integer (Hz), got {sample_rate!r}")
        for name, v in (("f_min", f_min), ("f_max", f_max), ("frame", frame), ("dynamic_range", dynamic_range)):
            check_positive(name, v)
        if not f_min < f_max < sample_rate / 2:
            raise NeurosimError(f"need f_min < f_max < sample_rate / 2 = {sample_rate / 2:g} Hz, "
                                f"got f_min={f_min!r}, f_max={f_max!r}")
        hop = frame * sample_rate
        if abs(hop - round(hop)) > 1e-6 or round(hop) < 1:
            raise NeurosimError(f"frame must be a whole number of samples at {sample_rate} Hz, got {frame!r} s")
        if level is not None and (not isinstance(level, (int, float)) or not math.isfinite(level)):
            raise NeurosimError(f"level must be a number (dB re full scale) or None, got {level!r}")
        self.channels, self.sample_rate = channels, sample_rate
        self.f_min, self.f_max, self.frame = float(f_min), float(f_max), float(frame)
        self.dynamic_range = float(dynamic_range)
        self.level = None if level is None else float(level)
        self.hop = int(round(hop))
        self.centre_frequencies = erb_number_to_hz(
            np.linspace(erb_number(f_min), erb_number(f_max), channels))
        self.bandwidths = 1.019 * erb(self.centre_frequencies)
        fs = float(sample_rate)
        self.ir_length = int(math.ceil(TAIL / (2 * math.pi * self.bandwidths[0]) * fs))
        t = np.arange(self.ir_length) / fs
        fc, b = self.centre_frequencies[:, None], self.bandwidths[:, None]
        g = t ** (ORDER - 1) * np.exp(-2 * math.pi * b * t) * np.cos(2 * math.pi * fc * t)
        gain_at_fc = np.abs((g * np.exp(-2j * math.pi * fc * t)).sum(axis=1, keepdims=True))
        self.impulse_responses = g / gain_at_fc
        """``[channels, L]`` float64, unit gain at each centre frequency."""
        self._spectra: dict[int, np.ndarray] = {}

    def params(self) -> dict:
        """The parameters that define the output (for caches and records)."""
        return {"kind": "gammatone", "order": ORDER, "channels": self.channels, "sample_rate": self.sample_rate,
                "f_min": self.f_min, "f_max": self.f_max, "frame": self.frame,
                "dynamic_range": self.dynamic_range, "level": self.level}

    def __repr__(self) -> str:
        return "Cochlea(" + ", ".join(f"{k}={v!r}" for k, v in self.params().items() if k not in ("kind", "order")) + ")"

    def _spectrum(self, nfft: int) -> np.ndarray:
        h = self._spectra.get(nfft)
        if h is None:
            h = np.fft.rfft(self.impulse_responses, nfft, axis=1).astype(np.complex64)
            self._spectra[nfft] = h
        return h

    def _waveform(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 1 or x.size == 0:
            raise NeurosimError(f"audio must be a non-empty 1-d array of samples, got shape {x.shape}")
        if not np.isfinite(x).all():
            raise NeurosimError("audio contains NaN or infinite values")
        return x

    def normalised(self, x) -> np.ndarray:
        """``x`` scaled to an RMS of ``level`` dB re full scale (unchanged with ``level=None`` or silence)."""
        x = self._waveform(x)
        if self.level is None:
            return x
        rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
        return x if rms == 0 else (x * (10 ** (self.level / 20) / rms)).astype(np.float32)

    def filter(self, x) -> np.ndarray:
        """Basilar-membrane output ``[channels, N]`` (float32) of ``x`` (``[N]``), without level scaling."""
        x = self._waveform(x)
        n = x.size
        nfft = 1 << int(math.ceil(math.log2(n + self.ir_length - 1)))
        spec = np.fft.rfft(x, nfft)
        return np.fft.irfft(self._spectrum(nfft) * spec, nfft, axis=1)[:, :n]

    def energy(self, x) -> np.ndarray:
        """Half-wave rectified output averaged per frame, ``[M, channels]``, without level scaling."""
        x = self._waveform(x)
        m = x.size // self.hop
        if m == 0:
            return np.zeros((0, self.channels), np.float32)
        y = self.filter(x[: m * self.hop])
        np.maximum(y, 0, out=y)
        return y.reshape(self.channels, m, self.hop).mean(axis=2, dtype=np.float32).T

    def __call__(self, x) -> np.ndarray:
        """Activity ``[M, channels]`` (float32, >= 0): level, filter bank, rectification, framing, compression."""
        e = self.energy(self.normalised(x))
        a = 1.0 + (20.0 / self.dynamic_range) * np.log10(np.maximum(e * np.float32(math.pi), np.float32(1e-30)))
        return np.maximum(a, 0.0, out=a).astype(np.float32, copy=False)


def spike_encode(activity, frame: float = 1e-3, gain: float = 0.25, tau: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Integrate-and-fire events of an activity ``[M, C]`` (one row per ``frame`` seconds): float32
    times (s, ``m * frame``) and int16 channels, sorted by time then channel (module doc, step 6)."""
    a = np.asarray(activity, dtype=np.float64)
    if a.ndim != 2:
        raise NeurosimError(f"activity must be [frames, channels], got shape {a.shape}")
    check_positive("frame", frame)
    check_positive("gain", gain)
    if tau is not None:
        check_positive("tau", tau)
    if not np.isfinite(a).all() or (a < 0).any():
        raise NeurosimError("activity must be finite and >= 0")
    if a.shape[1] > np.iinfo(np.int16).max:
        raise NeurosimError(f"at most {np.iinfo(np.int16).max} channels, got {a.shape[1]}")
    drive = gain * a
    if tau is None:
        total = np.floor(np.cumsum(drive, axis=0) + 1e-9)
        counts = np.diff(total, axis=0, prepend=0.0).astype(np.int64)
    else:
        beta = math.exp(-frame / tau)
        counts = np.zeros(a.shape, np.int64)
        v = np.zeros(a.shape[1])
        for m in range(a.shape[0]):
            v = beta * v + drive[m]
            k = np.floor(v + 1e-9)
            counts[m] = k
            v -= k
    rows, cols = np.nonzero(counts)
    reps = counts[rows, cols]
    times = (np.repeat(rows, reps) * frame).astype(np.float32)
    return times, np.repeat(cols, reps).astype(np.int16)


def audio_events(x, cochlea: Cochlea, gain: float = 0.25, tau: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Events ``(times, units)`` of waveform ``x`` through ``cochlea`` and :func:`spike_encode`."""
    return spike_encode(cochlea(x), cochlea.frame, gain, tau)
