"""CUBA (Brette et al. 2007): 4000 LIF neurons, 1 s simulated at dt 0.1 ms.

neurosim's compiled loop and its torch event-driven loop against a hand-written numba loop (the
same arithmetic on the synapses as CSR arrays and nothing else: what a compiled loop costs at
least) and Brian2 2.9 with the cython runtime and in C++ standalone mode, all on the same synapses
and initial voltages, side by side in one process, each on one thread. Times are medians over
repetitions of the simulation alone; compilation (numba, cython, the standalone build) is reported
on its own line. Brian2 records spikes with a SpikeMonitor as in its example; the timed neurosim
runs record nothing, spike counts come from one extra run. "Loop alone" calls the compiled loop
with a drive that holds no memory (a broadcast zero), to show what ``Network.run`` adds.

Brian2 times its standalone run by the process's CPU time (``std::clock``); ``--cpu`` times the
others likewise, which on a machine shared with other work is the comparable figure.

    python benchmarks/cuba.py [--reps 7] [--torch-reps 3] [--no-brian2] [--no-torch] [--cpu]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from numba import njit

import neurosim.kernels.compiled
from neurosim.models.cuba import (TAU_EXC, TAU_INH, TAU_MEM, TAU_REF, V_LEAK, V_RESET, V_TH, W_EXC, W_INH,
                                  build_cuba, connectivity, initial_voltage)
from neurosim.neurons.lif import decay, refractory_steps, synaptic_gain
from neurosim.reservoirs.builders import spike_events

from common import brian2_standalone, median_time, timed

N = 4000
DT = 0.1  # ms
STEPS = 10000  # 1 s

EQS = """
dv/dt = (ge + gi - (v - El)) / taum : volt (unless refractory)
dge/dt = -ge / taue : volt
dgi/dt = -gi / taui : volt
"""


@njit(cache=False)
def _cuba_loop(steps, v, ref, exc_ptr, exc_post, inh_ptr, inh_post, w_exc, w_inh, v_leak, beta, k_exc, k_inh,
               d_exc, d_inh, v_th, v_reset, n_ref):
    """CUBA written out: each step the previous step's spikes add their weight to ``g_e`` / ``g_i``
    of their targets, then every neuron integrates exactly (as neurosim's LIF), holds while
    refractory and fires above threshold. Returns the spike count."""
    n = v.size
    g_exc, g_inh = np.zeros(n), np.zeros(n)
    spikes, count, total = np.empty(n, np.int64), 0, 0
    for _ in range(steps):
        for s in range(count):
            j = spikes[s]
            for q in range(exc_ptr[j], exc_ptr[j + 1]):
                g_exc[exc_post[q]] += w_exc
            for q in range(inh_ptr[j], inh_ptr[j + 1]):
                g_inh[inh_post[q]] += w_inh
        count = 0
        for i in range(n):
            vn = v_leak + (v[i] - v_leak) * beta + g_exc[i] * k_exc + g_inh[i] * k_inh
            g_exc[i] *= d_exc
            g_inh[i] *= d_inh
            r = max(ref[i] - 1, 0)
            if r == 0 and vn - v_th > 0:
                v[i], ref[i] = v_reset, n_ref
                spikes[count] = i
                count += 1
            else:
                ref[i] = r
                if r == 0:
                    v[i] = vn
        total += count
    return total


def _csr(pre: np.ndarray, post: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, targets)`` of synapses ``pre -> post`` grouped by presynaptic neuron."""
    order = np.argsort(pre, kind="stable")
    return np.concatenate([[0], np.cumsum(np.bincount(pre, minlength=n))]), post[order].astype(np.int64)


def numba_loop(conn: dict, v0: np.ndarray, reps: int, clock=time.perf_counter) -> tuple[float, int, float]:
    """The hand-written loop on CUBA's synapses and initial voltages: (median seconds, spikes,
    seconds of the first call, which compiles), by ``clock``."""
    n = v0.size
    args = (*_csr(*conn["exc"], n), *_csr(*conn["inh"], n), W_EXC, W_INH, V_LEAK, decay(DT, TAU_MEM),
            synaptic_gain(DT, TAU_MEM, TAU_EXC), synaptic_gain(DT, TAU_MEM, TAU_INH), decay(DT, TAU_EXC),
            decay(DT, TAU_INH), V_TH, V_RESET, refractory_steps(TAU_REF, DT))

    def run():
        return _cuba_loop(STEPS, v0.astype(np.float64), np.zeros(n, np.int64), *args)

    first = timed(run, clock)
    return median_time(run, reps, clock), run(), first


def neurosim_rows(reps: int, torch_reps: int, clock=time.perf_counter) -> list[tuple[str, float, int | None]]:
    """(label, seconds, spikes) of neurosim's loops; a ``None`` time marks a one-off figure."""
    rows = []
    for dtype in (torch.float64, torch.float32):
        net = build_cuba(N, dt=DT, dtype=dtype)
        name = "float64" if dtype == torch.float64 else "float32"
        with torch.no_grad():
            if dtype == torch.float64:
                kernel = neurosim.kernels.compiled.LIF_LOOP.kernels[0]  # the serial loop (one thread)
                misses = sum(kernel.stats.cache_misses.values())
                first = timed(lambda: net.run(steps=STEPS), clock)
                how = "compile" if sum(kernel.stats.cache_misses.values()) > misses else "cache load"
                rows.append((f"neurosim compiled first call ({how} + run)", first, None))
            spikes = spike_events(net, STEPS)[0].size
            rows.append((f"neurosim compiled, Network.run, {name}",
                         median_time(lambda: net.run(steps=STEPS), reps, clock), spikes))
            if dtype == torch.float64:
                pop, projections = net.populations["neurons"], [net.projections["exc"], net.projections["inh"]]
                state = net.initial_state(1)["neurons"]
                no_drive = (torch.zeros(N, dtype=dtype).expand(STEPS, 1, N), None)
                loop = median_time(lambda: neurosim.kernels.lookup("loop", pop)(pop, projections, no_drive, state, [],
                                                                              False, False), reps, clock)
                rows.append((f"neurosim compiled loop alone (drive not allocated), {name}", loop, spikes))
                if torch_reps:
                    net.compiled = False
                    rows.append((f"neurosim torch event-driven, {name}",
                                 median_time(lambda: net.run(steps=STEPS), torch_reps, clock), spikes))
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

    standalone = brian2_standalone(lambda b2: (*brian2_network(b2, conn, v0), 1 * second), reps)
    rows.append(("Brian2 C++ standalone build (code generation + gcc)", standalone["build"], None))
    rows.append(("Brian2 C++ standalone, 1 thread, simulation", standalone["simulation"], standalone["spikes"]))
    rows.append(("Brian2 C++ standalone, 1 thread, whole process", standalone["process"], standalone["spikes"]))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="repetitions of the fast runs")
    parser.add_argument("--torch-reps", type=int, default=3, help="repetitions of the torch loop (0: skip it)")
    parser.add_argument("--no-brian2", action="store_true")
    parser.add_argument("--no-torch", action="store_true", help="same as --torch-reps 0")
    parser.add_argument("--cpu", action="store_true",
                        help="time neurosim and the numba loop by process CPU time, as Brian2 times its standalone run "
                             "(on a loaded machine)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    clock = time.process_time if args.cpu else time.perf_counter
    rows = neurosim_rows(args.reps, 0 if args.no_torch else args.torch_reps, clock)
    net = build_cuba(N, dt=DT)
    seconds, spikes, first = numba_loop(connectivity(net), initial_voltage(net), args.reps, clock)
    rows += [("hand-written numba loop, first call (compile + run)", first, None),
             ("hand-written numba loop, float64", seconds, spikes)]
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
