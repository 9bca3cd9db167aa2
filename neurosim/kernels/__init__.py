"""Fast paths below the network: fused sequence functions for the gradient path, compiled
event-driven loops for the no-gradient path, and the registry through which a model declares them.

Only the registry is imported here: the kernels import the models they run, and the models look
their kernels up in the registry, which imports the built-in kernels when they are first looked up.
"""
from .registry import lookup, register

__all__ = ["lookup", "register"]
