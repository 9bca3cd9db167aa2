"""Runs above the runner: experiment files, replay of recordings, reference simulations."""
from . import experiment, replay, simulation

__all__ = ["experiment", "replay", "simulation"]
