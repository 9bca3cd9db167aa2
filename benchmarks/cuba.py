"""CUBA (Brette et al. 2007): 4000 LIF neurons, 1 s simulated at dt 0.1 ms.

neurosim's compiled loop and its torch event-driven loop against Brian2 2.9 with the cython
runtime and in C++ standalone mode, all on the same synapses and initial voltages, side by side
in one process, each on one thread. Times are medians over repetitions of the simulation alone;
compilation (numba, cython, the standalone build) is reported on its own line. Brian2 records
spikes with a SpikeMonitor as in its example; the timed neurosim runs record nothing, spike
counts come from one extra run. "Loop alone" calls the compiled loop with a drive that holds no
memory (a broadcast zero), to show what ``Network.run`` adds.

    python benchmarks/cuba.py [--reps 7] [--torch-reps 3] [--no-brian2] [--no-torch]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

import neurosim.kernels.compiled
from neurosim.models.cuba import (TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK, V_RESET, V_TH, W_EXC, W_INH,
                                  build_cuba, connectivity, initial_voltage)
from neurosim.reservoirs.builders import spike_events

N = 4000
DT = 0.1  # ms
STEPS = 10000  # 1 s

EQS = """
dv/dt = (ge + gi - (v - El)) / taum : volt (unless refractory)
dge/dt = -ge / taue : volt
dgi/dt = -gi / taui : volt
"""


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_time(fn, reps: int) -> float:
    return statistics.median(timed(fn) for _ in range(reps))


def neurosim_rows(reps: int, torch_reps: int) -> list[tuple[str, float, int | None]]:
    """(label, seconds, spikes) of neurosim's loops; a ``None`` time marks a one-off figure."""
    rows = []
    for dtype in (torch.float64, torch.float32):
        net = build_cuba(N, dt=DT, dtype=dtype)
        name = "float64" if dtype == torch.float64 else "float32"
        with torch.no_grad():
            if dtype == torch.float64:
                kernel = neurosim.kernels.compiled._lif_kernel
                misses = sum(kernel.stats.cache_misses.values())
                first = timed(lambda: net.run(steps=STEPS))
                how = "compile" if sum(kernel.stats.cache_misses.values()) > misses else "cache load"
                rows.append((f"neurosim compiled first call ({how} + run)", first, None))
            spikes = spike_events(net, STEPS)[0].size
            rows.append((f"neurosim compiled, Network.run, {name}", median_time(lambda: net.run(steps=STEPS), reps),
                         spikes))
            if dtype == torch.float64:
                pop, projections = net.populations["neurons"], [net.projections["exc"], net.projections["inh"]]
                state = net.initial_state(1)["neurons"]
                no_drive = (torch.zeros(N, dtype=dtype).expand(STEPS, 1, N), None)
                loop = median_time(lambda: neurosim.kernels.lookup("loop", pop)(pop, projections, no_drive, state, [],
                                                                              False, False), reps)
                rows.append((f"neurosim compiled loop alone (drive not allocated), {name}", loop, spikes))
                if torch_reps:
                    net.compiled = False
                    rows.append((f"neurosim torch event-driven, {name}",
                                 median_time(lambda: net.run(steps=STEPS), torch_reps), spikes))
    return rows


def brian2_network(b2, conn: dict, v0):
    """Brian2's CUBA example on the given synapses and initial voltages (mV): (network, spike monitor)."""
    from brian2 import mV, ms

    b2.start_scope()
    b2.defaultclock.dt = DT * ms
    group = b2.NeuronGroup(N, EQS, threshold="v > Vt", reset="v = Vr", refractory=TAU_REF * ms, method="exact",
                           namespace=dict(taum=TAU_MEM * ms, taue=TAU_EXC * ms, taui=TAU_INH * ms, Vt=V_TH * mV,
                                          Vr=V_RESET * mV, El=V_LEAK * mV))
    group.v = v0 * mV
    exc = b2.Synapses(group, group, on_pre="ge += we", namespace=dict(we=W_EXC * mV))
    exc.connect(i=conn["exc"][0], j=conn["exc"][1])
    inh = b2.Synapses(group, group, on_pre="gi += wi", namespace=dict(wi=W_INH * mV))
    inh.connect(i=conn["inh"][0], j=conn["inh"][1])
    monitor = b2.SpikeMonitor(group)
    return b2.Network(group, exc, inh, monitor), monitor


def brian2_rows(reps: int) -> list[tuple[str, float, int | None]]:
    import brian2 as b2
    from brian2 import second

    net = build_cuba(N, dt=DT)
    conn, v0 = connectivity(net), initial_voltage(net)
    rows = []

    b2.set_device("runtime")
    b2.prefs.codegen.target = "cython"
    network, monitor = brian2_network(b2, conn, v0)
    rows.append(("Brian2 cython first run (compile or cache load + run)", timed(lambda: network.run(1 * second)), None))
    times = []
    for _ in range(reps):
        network, monitor = brian2_network(b2, conn, v0)
        times.append(timed(lambda: network.run(1 * second)))
    rows.append(("Brian2 cython runtime", statistics.median(times), monitor.num_spikes))

    with tempfile.TemporaryDirectory() as directory:
        b2.set_device("cpp_standalone", build_on_run=False, directory=directory)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        network, monitor = brian2_network(b2, conn, v0)
        network.run(1 * second)
        rows.append(("Brian2 C++ standalone build (code generation + gcc)",
                     timed(lambda: b2.device.build(directory=directory, compile=True, run=False)), None))
        inside, whole = [], []
        for _ in range(reps):
            whole.append(timed(lambda: b2.device.run(directory=directory, with_output=False)))
            inside.append(b2.device._last_run_time)
        spikes = monitor.num_spikes
        rows.append(("Brian2 C++ standalone, 1 thread, simulation", statistics.median(inside), spikes))
        rows.append(("Brian2 C++ standalone, 1 thread, whole process", statistics.median(whole), spikes))
        b2.device.reinit()
        b2.set_device("runtime")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the fast runs")
    parser.add_argument("--torch-reps", type=int, default=3, help="repetitions of the torch loop (0: skip it)")
    parser.add_argument("--no-brian2", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="same as --torch-reps 0")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = neurosim_rows(args.reps, 0 if args.no_torch else args.torch_reps)
    if not args.no_brian2:
        rows += brian2_rows(args.reps)
    reference = next((t for label, t, _ in rows if label.startswith("Brian2 C++ standalone, 1 thread, sim")), None)
    print(f"CUBA, {N} neurons, {STEPS} steps of {DT} ms; medians (s); torch threads {torch.get_num_threads()}")
    print(f"{'':64s} {'time (s)':>9s} {'vs Brian2 C++':>13s} {'spikes':>7s}")
    for label, seconds, spikes in rows:
        ratio = f"{seconds / reference:.2f}x" if reference and spikes is not None else ""
        print(f"{label:64s} {seconds:9.4f} {ratio:>13s} {'' if spikes is None else spikes:>7}")


if __name__ == "__main__":
    main()
