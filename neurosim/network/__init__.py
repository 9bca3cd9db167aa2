"""The network: a graph of populations and projections, its execution plan and its probes."""
from .graph import Connection, Network, RunResult
from .probes import Probe

__all__ = ["Connection", "Network", "RunResult", "Probe"]
