"""neurosim: a discrete-time spiking network simulator in PyTorch."""
from .errors import NeurosimError
from .network import Network, RunResult
from .plugin import Plugin
from .neurons import (ALIF, DSR, LI, LIF, AdaptiveThresholdLIF, AdaptiveThresholdLIFParameters, ALIFParameters,
                      Izhikevich, IzhikevichParameters, LIFParameters, LIParameters, Population)
from .projections import Conv2d, Delayed, Dense, Projection, Sparse
from .projections import Chain
from .surrogate import surrogate

__version__ = "0.1.0"

__all__ = [
    "NeurosimError", "Network", "RunResult", "Plugin", "Population", "LIF", "LIFParameters", "ALIF", "ALIFParameters",
    "AdaptiveThresholdLIF", "AdaptiveThresholdLIFParameters", "DSR",
    "Izhikevich", "IzhikevichParameters", "LI", "LIParameters", "Projection", "Dense", "Sparse", "Conv2d",
    "Delayed",
    "surrogate", "__version__",
]
__all__ += ["Chain"]
