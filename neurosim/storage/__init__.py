"""The run file: one HDF5 file per run holding its experiment, metrics, recordings and checkpoints."""
from .recording import Recording, record_run
from .repair import repair
from .store import CheckpointInfo, RunStore, StoreWriteError

__all__ = ["Recording", "record_run", "repair", "CheckpointInfo", "RunStore", "StoreWriteError"]
