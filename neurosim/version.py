"""The version of neurosim, read by the package metadata and written into every run file."""
__version__ = "0.1.0"
