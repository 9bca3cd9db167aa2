"""Local learning rules; each deposits its weight change into ``.grad`` as a descent direction."""
from .force import FORCE, FORCEParameters, FORCEState, force_initial_state, force_reset, force_step
from .three_factor import ThreeFactor, ThreeFactorParameters, ThreeFactorState, three_factor_step
from .stdp import STDP, STDPParameters, STDPState, stdp_step
from .eprop import EProp, EPropParameters, EPropState, eligibility_step

__all__ = ["FORCE", "FORCEParameters", "FORCEState", "force_initial_state", "force_reset", "force_step",
           "ThreeFactor", "ThreeFactorParameters", "ThreeFactorState", "three_factor_step",
           "STDP", "STDPParameters", "STDPState", "stdp_step",
           "EProp", "EPropParameters", "EPropState", "eligibility_step"]
