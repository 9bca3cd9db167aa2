"""The run file: one HDF5 file per run holding its experiment, metrics, recordings and checkpoints."""
from .recording import Recording, record_run
from .store import CheckpointInfo, RunStore

__all__ = ["Recording", "record_run", "CheckpointInfo", "RunStore"]
