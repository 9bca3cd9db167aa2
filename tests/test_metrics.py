"""ACC / BWT / FWT against matrices worked out by hand."""
import math

import numpy as np
import pytest

from neurosim import NeurosimError
from neurosim.continual.metrics import acc, bwt, fwt

NAN = float("nan")
R3 = np.array([[0.90, 0.20, 0.15],
               [0.70, 0.85, 0.30],
               [0.60, 0.75, 0.95]])
B3 = np.array([0.10, 0.12, 0.08])


def test_complete_matrix():
    assert acc(R3) == pytest.approx((0.60 + 0.75 + 0.95) / 3)
    assert bwt(R3) == pytest.approx(((0.60 - 0.90) + (0.75 - 0.85)) / 2)
    assert fwt(R3, B3) == pytest.approx(((0.20 - 0.12) + (0.30 - 0.08)) / 2)


def test_partial_matrix_with_unseen_tasks():
    R = R3.copy()
    R[2, :] = NAN
    assert acc(R) == pytest.approx((0.70 + 0.85) / 2)
    assert bwt(R) == pytest.approx(0.70 - 0.90)
    assert fwt(R, B3) == pytest.approx(0.20 - 0.12)
    R[1, :] = NAN
    R[0, 1:] = NAN
    assert acc(R) == pytest.approx(0.90)
    assert math.isnan(bwt(R)) and math.isnan(fwt(R, B3))
    assert math.isnan(acc(np.full((3, 3), NAN)))


def test_bad_matrices():
    with pytest.raises(NeurosimError, match="square"):
        acc(np.zeros((2, 3)))
    R = R3.copy()
    R[1, :] = NAN
    with pytest.raises(NeurosimError, match="gap"):
        acc(R)
    with pytest.raises(NeurosimError, match="one accuracy per task"):
        fwt(R3, [0.1])
