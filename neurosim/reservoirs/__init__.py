"""Reservoirs: E/I network builders and the tasks that measure them (memory capacity, Mackey-Glass)."""
from .builders import ei_sizes, izhikevich_cells, izhikevich_reservoir, lif_reservoir, spike_events
from .tasks import (Ridge, fit_ridge, input_weights, mackey_glass, memory_capacity, nrmse, predict, prediction_nrmse,
                    reservoir_states, select_alpha)

__all__ = ["ei_sizes", "izhikevich_cells", "izhikevich_reservoir", "lif_reservoir", "spike_events", "Ridge", "fit_ridge",
           "input_weights", "mackey_glass", "memory_capacity", "nrmse", "predict", "prediction_nrmse",
           "reservoir_states", "select_alpha"]
