"""Reference networks of published papers, each a module: :mod:`~neurosim.models.pmnist` (HLOP's
permuted-MNIST network), :mod:`~neurosim.models.delays` (learnable delays), :mod:`~neurosim.models.cuba`,
:mod:`~neurosim.models.izhikevich2003` and :mod:`~neurosim.models.prediction`."""
from . import cuba, delays, izhikevich2003, pmnist, prediction

__all__ = ["cuba", "delays", "izhikevich2003", "pmnist", "prediction"]
