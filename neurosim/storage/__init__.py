"""The run file: one HDF5 file per run holding its experiment, metrics, recordings and checkpoints.

:mod:`~neurosim.storage.store` and :mod:`~neurosim.storage.repair` (h5py) are imported when first
used, so that declaring a :class:`~neurosim.storage.recording.Recording` does not load h5py.
"""
import importlib

from .recording import Recording, record_run

__all__ = ["Recording", "record_run", "repair", "CheckpointInfo", "RunStore", "StoreWriteError"]
_LAZY = {"repair": ".repair", "CheckpointInfo": ".store", "RunStore": ".store", "StoreWriteError": ".store"}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'neurosim.storage' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name], __name__), name)
    globals()[name] = value  # also over the submodule ``repair``, which the import set as an attribute
    return value
