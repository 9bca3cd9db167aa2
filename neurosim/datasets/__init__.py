"""Data: image sets (IDX files, scikit-learn digits, generated), spike-event sets (spoken digits, SHD /
SSC), the audio front end, input encodings and generated temporal tasks."""
from .audio import Cochlea, audio_events, read_wav, spike_encode
from .encoding import ENCODINGS, encode
from .event_sets import EventSet, EventSplit, as_dataset, as_split, bin_events, fsdd, heidelberg, shd, ssc
from .images import Dataset, Split, data_root, digits, generated, idx_dataset, read_idx, standardised
from .temporal_tasks import lag_patterns, lag_task

__all__ = ["Cochlea", "audio_events", "read_wav", "spike_encode", "ENCODINGS", "encode", "EventSet", "EventSplit",
           "as_dataset", "as_split", "bin_events", "fsdd", "heidelberg", "shd", "ssc", "Dataset", "Split",
           "data_root", "digits", "generated", "idx_dataset", "read_idx", "standardised", "lag_patterns",
           "lag_task"]
