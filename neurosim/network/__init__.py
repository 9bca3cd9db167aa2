"""The network: a graph of populations and projections, its execution plan, its probes and noise."""
from .graph import Connection, Network, RunResult
from .noise import GaussianNoise, PoissonNoise
from .probes import Probe

__all__ = ["Connection", "Network", "RunResult", "Probe", "GaussianNoise", "PoissonNoise"]
