"""Neuron models: a pure step function and a thin stateful module each; surrogate gradients."""
from .adaptive_threshold import (AdaptiveThresholdLIF, AdaptiveThresholdLIFParameters, AdaptiveThresholdLIFState,
                                 adaptive_threshold_step)
from .alif import ALIF, ALIFParameters, ALIFState, alif_step
from .base import NeuronParameters, Population
from .dsr import DSR, DSRParameters, DSRState, dsr_step, weighted_rate
from .izhikevich import IZHIKEVICH_TYPES, Izhikevich, IzhikevichParameters, IzhikevichState, izhikevich_step
from .lif import LIF, LIFParameters, LIFState, lif_step
from .readout import LI, LIParameters, LIState, li_step
from .surrogate import Surrogate, surrogate

__all__ = [
    "Population", "NeuronParameters", "LIF", "LIFParameters", "LIFState", "lif_step", "ALIF", "ALIFParameters",
    "ALIFState", "alif_step", "AdaptiveThresholdLIF", "AdaptiveThresholdLIFParameters", "AdaptiveThresholdLIFState",
    "adaptive_threshold_step", "DSR", "DSRParameters", "DSRState", "dsr_step", "weighted_rate", "Izhikevich",
    "IzhikevichParameters", "IzhikevichState", "izhikevich_step",
    "IZHIKEVICH_TYPES", "LI", "LIParameters", "LIState", "li_step", "Surrogate", "surrogate",
]
