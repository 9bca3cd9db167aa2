"""The permuted-MNIST network of HLOP (Xiao et al., ICLR 2024) and its settings.

A spiking MLP 784-800-800-10 without biases and with one shared head: two populations of
DSR-trained LIF neurons (:class:`neurosim.DSR`; dt 0.05, tau 1, threshold 0.3 learnt, firing
fraction 0.3) and a readout whose score is the weighted firing rate of its input. Pixels are
normalised with the MNIST mean and standard deviation and fed as a constant current for 20
steps. One epoch per task, plain SGD (lr 0.1, batch 64). HLOP learns from weighted firing rates
with Hebbian rates 0.001 (input layer) and 0.01, and adds rows per task as
:func:`hlop_rows` gives (80 / 200 / 100 at task 0). GPM (:func:`gpm`) takes its authors'
permuted-MNIST thresholds on the same weighted firing rates.

At the size of scikit-learn's 8x8 digits (``n_in=64``), the same network is the default
experiment of ``neurosim run`` (:data:`neurosim.runs.experiment.PERMUTED_DIGITS`).
"""
from __future__ import annotations

import math

import torch

from neurosim.datasets.images import idx_dataset, standardised
from neurosim.network import Network
from neurosim.neurons import DSR, LI
from neurosim.projections import Dense
from neurosim.continual.scenarios import Scenario, permuted
from neurosim.plugins.gpm import GPM
from neurosim.plugins.hlop import HLOP

#: Simulation (ms) and neuron settings.
STEPS, DT, TAU, V_TH, ALPHA = 20, 0.05, 1.0, 0.3, 0.3
#: Training settings.
LR, BATCH_SIZE, EPOCHS = 0.1, 64, 1
#: Projections from input to output.
LAYERS = ("x_to_h1", "h1_to_h2", "h2_to_out")


def build_pmnist(n_in: int = 784, hidden: int = 800, n_out: int = 10, seed: int = 0,
                 dtype: torch.dtype = torch.float32) -> Network:
    """Input ``"x"``, DSR populations ``"h1"``, ``"h2"``, readout ``"out"``; projections :data:`LAYERS`."""
    g = torch.Generator().manual_seed(seed)
    net = Network(dt=DT)
    net.add_input("x", n_in)
    for name in ("h1", "h2"):
        net.add(name, DSR(hidden, tau_mem=TAU, v_th=V_TH, alpha=ALPHA, dtype=dtype))
    net.add("out", LI(n_out, tau_mem=TAU, input_mode="current", dtype=dtype))
    for (pre, post), size in zip((("x", "h1"), ("h1", "h2"), ("h2", "out")), ((n_in, hidden), (hidden, hidden),
                                                                             (hidden, n_out))):
        net.connect(pre, post, Dense(*size, generator=g, dtype=dtype))
    return net


def readout(vs: torch.Tensor) -> torch.Tensor:
    r"""Scores from the readout's membrane ``vs`` (``[T, B, n]``): the weighted firing rate of its input.

    The readout integrates :math:`v_t = \beta v_{t-1} + (1 - \beta) x_t` from rest, so
    :math:`v_T / (1 - \beta^T) = \sum_t \beta^{T - t} x_t / \sum_t \beta^{T - t}`.
    """
    beta = math.exp(-DT / TAU)
    return vs[-1] / (1 - beta ** vs.shape[0])


def hlop_rows(task: int, layer: int, first: tuple[int, ...] = (80, 200, 100)) -> int:
    """Rows HLOP adds at ``task``: ``first[layer]`` at task 0, then 70 for tasks 1-2, 50 for 3-5,
    30 for 6-8 and 10 from task 9 on."""
    if task == 0:
        return first[layer]
    return 70 - 20 * min(task // 3, 3)


def hlop(first: tuple[int, ...] = (80, 200, 100), rows=None, **kwargs) -> HLOP:
    """HLOP with the paper's settings for this network; ``rows`` overrides :func:`hlop_rows`."""
    options = dict(lr_hebb=dict(zip(LAYERS, (0.001, 0.01, 0.01))), rates=TAU, form="gradient")
    options.update(kwargs)
    return HLOP(rows or (lambda task, layer: hlop_rows(task, layer, first)), projections=list(LAYERS), **options)


def gpm(**kwargs) -> GPM:
    """GPM with its authors' permuted-MNIST settings for this network: thresholds 0.95 (input layer)
    and 0.99, constant over tasks, on 300 training samples per task; the representation is the weighted
    firing rate DSR trains on."""
    options = dict(threshold=dict(zip(LAYERS, (0.95, 0.99, 0.99))), samples=300, rates=TAU)
    options.update(kwargs)
    return GPM(projections=list(LAYERS), **options)


def mnist_scenario(n_tasks: int = 10, root=None, seed: int = 0) -> Scenario:
    """Permuted MNIST from IDX files (``root`` or ``$NEUROSIM_DATA/mnist``), standardised with the
    training set's pixel mean and deviation (0.1307 and 0.3081, the usual MNIST constants)."""
    return permuted(standardised(idx_dataset("mnist", root)), n_tasks, seed)
