r"""Continual-learning metrics over the accuracy matrix (Lopez-Paz & Ranzato 2017).

``R[i, j]`` is the test accuracy on task ``j`` after training through task ``i`` (NaN until
known); ``b[j]`` the accuracy of the untrained model on task ``j``. With ``k`` tasks trained so far
(the rows of ``R`` that are filled):

.. math::
    ACC = \frac1k \sum_{i<k} R_{k-1,i}, \quad
    BWT = \frac1{k-1} \sum_{i<k-1} (R_{k-1,i} - R_{i,i}), \quad
    FWT = \frac1{k-1} \sum_{1 \le i < k} (R_{i-1,i} - b_i)
"""
from __future__ import annotations

import numpy as np

from ..errors import NeurosimError


def _trained(R) -> tuple[np.ndarray, int]:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise NeurosimError(f"the accuracy matrix must be square, got shape {R.shape}")
    rows = [i for i in range(R.shape[0]) if not np.isnan(R[i, : i + 1]).any()]
    k = len(rows)
    if rows != list(range(k)):
        raise NeurosimError("the accuracy matrix has a gap: a task's row is unknown while a later one is known")
    return R, k


def acc(R) -> float:
    """Average accuracy over the tasks seen so far, after the last trained task (NaN if none)."""
    R, k = _trained(R)
    return float(np.mean(R[k - 1, :k])) if k else float("nan")


def bwt(R) -> float:
    """Backward transfer: mean change of old tasks' accuracy since they were learnt (NaN before two tasks)."""
    R, k = _trained(R)
    return float(np.mean(R[k - 1, : k - 1] - np.diag(R)[: k - 1])) if k > 1 else float("nan")


def fwt(R, b) -> float:
    """Forward transfer: accuracy on each next task before training it, minus the untrained model's."""
    R, k = _trained(R)
    b = np.asarray(b, dtype=float)
    if b.shape != (R.shape[0],):
        raise NeurosimError(f"b must have one accuracy per task ({R.shape[0]}), got shape {b.shape}")
    if k < 2:
        return float("nan")
    return float(np.mean([R[i - 1, i] - b[i] for i in range(1, k)]))
