"""Exchange with other tools: networks to and from NIR (:mod:`neurosim.interop.nir`, needs the ``nir`` package)."""
from .nir import from_nir, to_nir

__all__ = ["to_nir", "from_nir"]
