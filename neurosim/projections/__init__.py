"""Projections: dense, sparse (fixed random CSR), convolutional, delayed, chained with dropout and batch
norm; recurrent when pre is post."""
from .base import Projection, dale_signs
from .chain import Chain
from .conv import Conv2d
from .delayed import Delayed, integer_delays, sigma_schedule
from .dense import Dense
from .sparse import Sparse, random_connectivity

__all__ = ["Projection", "Dense", "Sparse", "Conv2d", "dale_signs", "random_connectivity", "Delayed",
           "integer_delays", "sigma_schedule", "Chain"]
