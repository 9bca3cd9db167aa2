"""Data sets as float arrays in [0, 1] with integer labels; nothing is downloaded.

- :func:`digits`: scikit-learn's 8x8 digits (ships with the package, 1,797 samples).
- :func:`idx_dataset`: MNIST or Fashion-MNIST from the official IDX ``.gz`` files in
  ``root`` (default ``$NEUROSIM_DATA/mnist`` or ``$NEUROSIM_DATA/fashion_mnist``).
- :func:`generated`: Gaussian class clusters, for tests.

:func:`subset` draws a smaller training and test set from any of them.
"""
from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import NeurosimError, optional_import

IDX_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


class Dataset(NamedTuple):
    """``x``: ``[N, F]`` float32 (in [0, 1] as loaded), or ``[N, T, C]`` for sequences (e.g. binned
    events, :func:`neurosim.datasets.event_sets.as_dataset`); ``y``: ``[N]`` int64; ``shape``: the
    sample's original shape."""

    x: np.ndarray
    y: np.ndarray
    shape: tuple[int, ...]


class Split(NamedTuple):
    train: Dataset
    test: Dataset


def data_root() -> Path:
    root = os.environ.get("NEUROSIM_DATA")
    if not root:
        raise NeurosimError("no data directory: set NEUROSIM_DATA or pass root=")
    return Path(root)


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (gzip-compressed or not) into an array of its declared shape."""
    path = Path(path)
    if not path.is_file():
        raise NeurosimError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise NeurosimError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise NeurosimError(f"{path} is truncated: {data.size} values for shape {dims}")
    return data.reshape(dims)


def idx_dataset(name: str = "mnist", root: str | Path | None = None) -> Split:
    """MNIST (``name="mnist"``) or Fashion-MNIST (``"fashion_mnist"``) from IDX files."""
    if name not in ("mnist", "fashion_mnist"):
        raise NeurosimError(f"unknown IDX data set {name!r}; expected mnist or fashion_mnist")
    folder = Path(root) if root is not None else data_root() / name
    parts = []
    for split in ("train", "test"):
        images, labels = (read_idx(folder / f) for f in IDX_FILES[split])
        if images.shape[0] != labels.shape[0]:
            raise NeurosimError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels ({split})")
        parts.append(Dataset((images.reshape(len(images), -1) / 255.0).astype(np.float32),
                             labels.astype(np.int64), images.shape[1:]))
    return Split(*parts)


def standardised(data: Split) -> Split:
    """``(x - mean) / std`` on both parts, with the mean and deviation of all training values."""
    mean, std = float(data.train.x.mean()), float(data.train.x.std())
    return Split(*(Dataset(((d.x - mean) / std).astype(np.float32), d.y, d.shape) for d in data))


def digits(test_fraction: float = 0.25, seed: int = 0) -> Split:
    """scikit-learn's 8x8 digits, scaled to [0, 1], split at random with ``seed``."""
    d = optional_import("sklearn.datasets", "data", "the digits data set").load_digits()
    x = (d.data / 16.0).astype(np.float32)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(round(len(y) * test_fraction))
    te, tr = order[:n_test], order[n_test:]
    return Split(Dataset(x[tr], y[tr], (8, 8)), Dataset(x[te], y[te], (8, 8)))


def subset(data: Split, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
           name: str = "the data set") -> Split:
    """``n_train`` training and ``n_test`` test samples drawn at random (without replacement, kept in
    their order) with ``seed``; None keeps a part whole."""
    parts = []
    for part, n, what in ((data.train, n_train, "n_train"), (data.test, n_test, "n_test")):
        if n is None:
            parts.append(part)
            continue
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise NeurosimError(f"{what} must be a positive integer, got {n!r}")
        if n > len(part.y):
            raise NeurosimError(f"{what}={n} is more than the {len(part.y)} samples {name} has")
        pick = np.sort(np.random.default_rng(seed).choice(len(part.y), n, replace=False))
        parts.append(Dataset(part.x[pick], part.y[pick], part.shape))
    return Split(*parts)


def generated(n_classes: int = 4, n_features: int = 20, n_train: int = 400, n_test: int = 200,
              spread: float = 0.15, seed: int = 0) -> Split:
    """Gaussian clusters around random centres in [0, 1]^F, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    centres = rng.random((n_classes, n_features))

    def draw(n):
        y = rng.integers(0, n_classes, n)
        x = np.clip(centres[y] + spread * rng.standard_normal((n, n_features)), 0, 1)
        return Dataset(x.astype(np.float32), y.astype(np.int64), (n_features,))

    return Split(draw(n_train), draw(n_test))
