"""Runs above the runner: experiment files, replay of recordings, reference simulations.

The modules are imported on first use, so that the command line reads :mod:`neurosim.runs.builtin`
without loading torch.
"""
import importlib

__all__ = ["experiment", "replay", "simulation"]


def __getattr__(name: str):
    if name in __all__:
        return importlib.import_module(f".{name}", __name__)  # which sets the attribute
    raise AttributeError(f"module 'neurosim.runs' has no attribute {name!r}")
