"""Reference networks of published papers, each a module: :mod:`~neurosim.models.pmnist` (HLOP's
permuted-MNIST network), :mod:`~neurosim.models.delays` (learnable delays), :mod:`~neurosim.models.cuba`,
:mod:`~neurosim.models.izhikevich2003`, :mod:`~neurosim.models.prediction` and
:mod:`~neurosim.models.binarized` (Laborieux et al.'s binarised network, not spiking)."""
from . import binarized, cuba, delays, izhikevich2003, pmnist, prediction

__all__ = ["binarized", "cuba", "delays", "izhikevich2003", "pmnist", "prediction"]
