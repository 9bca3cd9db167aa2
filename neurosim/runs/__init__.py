"""Runs above the runner: experiment files, replay of recordings, reference simulations."""
