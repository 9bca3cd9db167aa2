"""Izhikevich's (2003) network like for like: 1000 neurons, all-to-all, 1 s at dt 1 ms, the thalamic
noise drawn inside the simulation loop by both simulators.

neurosim's compiled loop (:func:`neurosim.models.izhikevich2003.build_izhikevich2003`, float64, the
noise from its counter-based streams, :mod:`neurosim.kernels.noise`) against Brian2 2.9 in C++
standalone mode running the same instance (weights, cell parameters) with the same schedule and
arithmetic: ``I = sigma * randn() + I_syn``, two half steps of ``v`` with ``0.04 v^2`` then ``u``,
threshold ``v > 30`` and reset, synapses adding to ``I_syn`` for the next step. Each on one thread,
side by side, medians of the simulation alone; compilation on its own line. The two draw different
noise, so the spike counts agree as statistics, not spike for spike. A third row runs neurosim
with the noise drawn beforehand and fed as an input tensor (drawing excluded from its time).

    python benchmarks/izhikevich_noise.py [--reps 7] [--no-brian2]
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import torch

import neurosim as ns
from neurosim.kernels.noise import GAUSSIAN, fill_noise, stream_key
from neurosim.models.izhikevich2003 import build_izhikevich2003

N_EXC, N_INH, STEPS = 800, 200, 1000


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def spikes_of(net, **kwargs) -> int:
    with torch.no_grad():
        res = net.run(steps=STEPS, probes={"s": ns.Probe("neurons", "spikes", events=True)}, **kwargs)
    return res.probes["s"].t.numel()


def neurosim_rows(reps: int) -> list[tuple[str, float, int | None]]:
    net = build_izhikevich2003(N_EXC, N_INH, seed=0)
    rows = []
    with torch.no_grad():
        rows.append(("neurosim first call (compile or cache load + run)", timed(lambda: net.run(steps=STEPS)), None))
        inside = statistics.median(timed(lambda: net.run(steps=STEPS)) for _ in range(reps))
    rows.append(("neurosim compiled, noise drawn in the loop", inside, spikes_of(net)))
    drawn = build_izhikevich2003(N_EXC, N_INH, seed=0, thalamic=False)
    std = np.r_[np.full(N_EXC, 5.0), np.full(N_INH, 2.0)]
    noise = np.empty((STEPS, 1, N_EXC + N_INH))
    keys = np.array([stream_key(0, 0)], dtype=np.uint64)
    for t in range(STEPS):
        fill_noise(GAUSSIAN, keys, t, std, 0.0, noise[t])
    x = {"neurons": torch.from_numpy(noise)}
    with torch.no_grad():
        drawn.run(x)
        before = statistics.median(timed(lambda: drawn.run(x)) for _ in range(reps))
    rows.append(("neurosim compiled, noise given as an input tensor", before, spikes_of(drawn, inputs=x)))
    return rows


def brian2_rows(reps: int) -> list[tuple[str, float, int | None]]:
    import brian2 as b2
    from brian2 import ms

    net = build_izhikevich2003(N_EXC, N_INH, seed=0)
    pop = net.populations["neurons"]
    weights = (net.projections["exc"].to_dense() + net.projections["inh"].to_dense()).numpy()
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        b2.set_device("cpp_standalone", build_on_run=False, directory=directory)
        b2.prefs.devices.cpp_standalone.openmp_threads = 0
        b2.defaultclock.dt = 1 * ms
        group = b2.NeuronGroup(N_EXC + N_INH, """v : 1
                                                 u : 1
                                                 a : 1 (constant)
                                                 b : 1 (constant)
                                                 c : 1 (constant)
                                                 d : 1 (constant)
                                                 sigma : 1 (constant)
                                                 Isyn : 1""", threshold="v > 30", reset="v = c; u += d")
        for name in "abcd":
            setattr(group, name, getattr(pop.params, name).numpy())
        group.sigma = np.r_[np.full(N_EXC, 5.0), np.full(N_INH, 2.0)]
        group.v = -65.0
        group.u = pop.params.b.numpy() * -65.0
        group.run_regularly("""I = sigma * randn() + Isyn
                               v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
                               v = v + 0.5 * (0.04 * v**2 + 5 * v + 140 - u + I)
                               u = u + a * (b * v - u)
                               Isyn = 0""", when="groups")
        synapses = b2.Synapses(group, group, "w : 1", on_pre="Isyn_post += w")
        pre, post = np.divmod(np.arange((N_EXC + N_INH) ** 2), N_EXC + N_INH)
        synapses.connect(i=pre, j=post)
        synapses.w = weights[post, pre]
        monitor = b2.SpikeMonitor(group)
        b2.Network(group, synapses, monitor).run(STEPS * ms)
        rows.append(("Brian2 C++ standalone build (code generation + gcc)",
                     timed(lambda: b2.device.build(directory=directory, compile=True, run=False)), None))
        inside, whole = [], []
        for _ in range(reps):
            whole.append(timed(lambda: b2.device.run(directory=directory, with_output=False)))
            inside.append(b2.device._last_run_time)
        rows.append(("Brian2 C++ standalone, 1 thread, simulation", statistics.median(inside), monitor.num_spikes))
        rows.append(("Brian2 C++ standalone, 1 thread, whole process", statistics.median(whole), None))
        b2.device.reinit()
        b2.set_device("runtime")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--no-brian2", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = neurosim_rows(args.reps)
    if not args.no_brian2:
        rows += brian2_rows(args.reps)
    anchor = next((t for label, t, _ in rows if label.startswith("Brian2 C++ standalone, 1 thread, sim")), None)
    print(f"Izhikevich (2003), {N_EXC + N_INH} neurons, all-to-all, {STEPS} steps of 1 ms; medians of {args.reps} (s); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'':58s} {'time (s)':>9s} {'vs Brian2':>10s} {'spikes':>7s}")
    for label, seconds, spikes in rows:
        ratio = f"{seconds / anchor:.2f}x" if anchor and spikes is not None else ""
        print(f"{label:58s} {seconds:9.4f} {ratio:>10s} {'' if spikes is None else spikes:>7}")


if __name__ == "__main__":
    main()
