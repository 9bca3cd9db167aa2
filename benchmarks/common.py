"""What the benchmarks share: timing by a chosen clock, Brian2's C++ standalone runner, the load line.

Times are medians of repetitions. ``clock`` is ``time.perf_counter`` (wall time: what a user
waits, and the only clock that shows threads working in parallel) or ``time.process_time``
(CPU time of the process: on a machine shared with other work, the steadier figure for one
thread, and the way Brian2 times its standalone run).
"""
from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from typing import Callable, NamedTuple


def timed(fn, clock=time.perf_counter) -> float:
    """Seconds of one call of ``fn`` by ``clock``."""
    start = clock()
    fn()
    return clock() - start


def median_time(fn, reps: int, clock=time.perf_counter) -> float:
    """Median seconds of ``reps`` calls of ``fn`` by ``clock``."""
    return statistics.median(timed(fn, clock) for _ in range(reps))


def load_average() -> str:
    """The 1, 5 and 15 minute load averages and the number of cores, as one phrase."""
    return f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores"


class StandaloneProject(NamedTuple):
    """A built Brian2 C++ standalone project (:func:`standalone_project`): ``build`` the seconds of
    code generation and compilation, ``run()`` runs the binary once and returns ``(simulation
    seconds as Brian2 measures them, whole-process wall seconds)``, ``monitor`` the spike monitor
    (its count is that of the last run)."""

    build: float
    run: Callable[[], tuple[float, float]]
    monitor: object


@contextlib.contextmanager
def standalone_project(build):
    """A Brian2 network in C++ standalone mode, one thread: ``build(b2)`` makes it on the standalone
    device and returns ``(network, spike monitor, duration)``. Yields a :class:`StandaloneProject`,
    so that its runs can alternate with other work; the simulation time is Brian2's own (with one
    thread, the process's CPU time, ``std::clock``)."""
    import brian2 as b2

    with tempfile.TemporaryDirectory() as directory:
        b2.set_device("cpp_standalone", build_on_run=False, directory=directory)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        try:
            network, monitor, duration = build(b2)
            network.run(duration)
            built = timed(lambda: b2.device.build(directory=directory, compile=True, run=False))

            def run() -> tuple[float, float]:
                whole = timed(lambda: b2.device.run(directory=directory, with_output=False))
                return b2.device._last_run_time, whole

            yield StandaloneProject(built, run, monitor)
        finally:
            b2.device.reinit()
            b2.set_device("runtime")


def brian2_standalone(build, reps: int) -> dict:
    """:func:`standalone_project` run ``reps`` times: the seconds of the build, the median seconds of
    the simulation alone (as Brian2 measures it) and of the whole process (wall time), and the
    spike count."""
    with standalone_project(build) as project:
        inside, whole = zip(*(project.run() for _ in range(reps)))
        spikes = int(project.monitor.num_spikes)
    return {"build": project.build, "simulation": statistics.median(inside), "process": statistics.median(whole),
            "spikes": spikes}


def brian2_available() -> bool:
    try:
        import brian2  # noqa: F401
    except ImportError:
        return False
    return True
