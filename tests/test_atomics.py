"""The atomic operations and the thread synchronisation of the compiled loop: exact counts under
contention, compare-and-exchange semantics, a barrier no thread passes early, and a parallel loop
run on fewer threads than its iterations that still finishes with every range stepped once."""
import numba
import numpy as np
import pytest
from numba import njit, prange

from neurosim.kernels import atomics
from neurosim.kernels.compiled import _ALONE, _NONE, _TEAM, _barrier, _join


@njit(parallel=True)
def _count(a, per_thread):
    for _ in prange(2):
        for _k in range(per_thread):
            atomics.fetch_add(a, 0, 1)


@njit
def _single(a):
    before = atomics.fetch_add(a, 1, 5)
    atomics.store(a, 2, 7)
    swapped = atomics.compare_exchange(a, 2, 7, 9)
    refused = atomics.compare_exchange(a, 2, 7, 11)
    return before, atomics.load(a, 1), atomics.load(a, 2), swapped, refused


@njit(parallel=True)
def _rounds(sync, seen, team, rounds):
    """Each worker, after joining, adds 1 to its own counter per round and, after a barrier, reads
    every worker's counter: all must equal the round number."""
    counters = np.zeros(team, np.int64)
    modes = np.zeros(team, np.int64)
    for worker in prange(team):
        mode = _join(sync, team)
        modes[worker] = mode
        if mode == _TEAM:
            for k in range(rounds):
                atomics.fetch_add(counters, worker, 1)
                _barrier(sync, team)
                for v in range(team):
                    if atomics.load(counters, v) != k + 1:
                        atomics.fetch_add(seen, 0, 1)
                _barrier(sync, team)
    return modes


def test_fetch_add_counts_every_increment_of_two_threads():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread")
    a = np.zeros(1, np.int64)
    _count(a, 500_000)
    assert a[0] == 1_000_000


def test_single_thread_semantics():
    a = np.zeros(3, np.int64)
    assert _single(a) == (0, 5, 9, True, False)


def test_barrier_lets_no_thread_through_before_all_arrive():
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("one numba thread")
    previous = numba.get_num_threads()
    numba.set_num_threads(2)
    try:
        seen, teams = np.zeros(1, np.int64), 0
        for _ in range(20):  # on a busy machine the second thread may start too late to join
            modes = sorted(_rounds(np.zeros(5, np.int64), seen, 2, 2000).tolist())
            assert modes in ([_TEAM, _TEAM], [_ALONE, _NONE])
            teams += modes == [_TEAM, _TEAM]
            if teams >= 3:
                break
        if not teams:
            pytest.skip("two threads never ran at once on this machine")
        assert seen[0] == 0
        # three iterations on two threads: they cannot all run at once, so one runs alone
        modes = _rounds(np.zeros(5, np.int64), seen, 3, 10)
        assert sorted(modes.tolist()) == [_ALONE, _NONE, _NONE]
    finally:
        numba.set_num_threads(previous)
