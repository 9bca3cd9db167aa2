r"""Memory capacity and Mackey-Glass prediction of an E/I LIF reservoir, globally tuned against E/I homeostasis.

The reservoir: :func:`neurosim.reservoirs.builders.lif_reservoir` with ``--n`` neurons (80 % excitatory),
about 50 inputs per neuron of each kind together (``p = 50 / n``), the CUBA weights scaled by
``--w-scale`` (``w_exc = 1.62 s`` mV, ``w_inh = -9 g s`` mV; at ``s = 1`` the recurrence is so
strong that its chaos drowns the input), excitatory weights multiplied by lognormal factors of mean 1
(``--w-lognormal`` sigma) and heterogeneity 0.3 (thresholds, membrane time constants), so that no
single inhibition scale suits every neuron. ``dt`` 1 ms, synaptic currents 5 / 10 ms, resting
potential -60 mV (below the -50 mV threshold); ``--tau-mem low:high`` draws the membrane time
constants log-uniform (before the heterogeneity). Each input sample is held ``--hold`` steps, during
which neuron i receives ``bias + w_i u`` (``--bias``; ``w_i ~ U(-3, 3)`` for a random
``--input-fraction`` of the neurons, 0 for the others); features are spike traces of
several time constants (``--taus``) read at the end of each sample; ridge readout whose penalty is
chosen per output among ``--alphas`` on the last quarter of the training samples
(:mod:`neurosim.reservoirs.tasks`).

Tasks: memory capacity (i.i.d. U(-1, 1) input, delays 1..``--max-delay``) and Mackey-Glass
(tau 17, sampled every 3 time units, standardised) predicted ``--horizon`` samples ahead (NRMSE).

Globally tuned ("global"): one inhibition scale ``g`` for all synapses, chosen per task by a sweep
(``--scales``) on a validation seed not used for testing. Homeostasis: the same reservoir at
``g = 1`` adapted by :func:`neurosim.learning.homeostasis.adapt` on ``--adapt-samples`` samples of an
independent signal of the task's own kind (windows of 1 s, rate trace 3 s, ``delta = --delta s``),
its Beta(2, 2) target range chosen per task by a sweep (``--targets``) on the same validation
seed; weights frozen afterwards. With ``--relative-targets`` the range is a fraction of each
neuron's own rate over the first 3 s of that signal before adaptation (a target the neuron can
reach by inhibition alone), not Hz. The mean ``|r - rho|`` over the adaptation is printed for the
validation seed, to check that it converged. Both are then measured on ``--seeds`` test seeds (new
connectivity, heterogeneity, input weights and signals each), in the same run; printed: mean,
standard deviation and range over seeds, and the ratio of the means.

    python benchmarks/homeostasis.py [--quick] [--n 300] [--seeds 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from neurosim.learning.homeostasis import EIHomeostasis, HomeostasisParameters, adapt, target_rates, window_rates
from neurosim.reservoirs.builders import lif_reservoir
from neurosim.reservoirs.tasks import (input_weights, mackey_glass, memory_capacity, prediction_nrmse,
                                      reservoir_states)

DT = 1.0  # ms
INPUT_SCALE = 3.0
BIAS = 2.5
RELATIVE_STEPS = 3000  # steps of the adaptation input that measure each neuron's rate before adaptation
VALIDATION_SEED = 1000
TASKS = ("MC", "MG NRMSE")
SIGNAL = {"MC": "u", "MG NRMSE": "mg"}
BETTER = {"MC": max, "MG NRMSE": min}


def build(args, g: float, seed: int):
    s = args.w_scale
    tau_mem = 20.0
    if args.tau_mem:
        low, high = args.tau_mem
        tau_mem = torch.as_tensor(np.exp(np.random.default_rng(seed + 4).uniform(np.log(low), np.log(high), args.n)))
    net = lif_reservoir(args.n, p=min(1.0, 50 / args.n), w_exc=1.62 * s, w_inh=-9.0 * g * s, heterogeneity=0.3,
                        tau_mem=tau_mem, v_leak=-60.0, dt=DT, v0=(-60.0, -50.0), seed=seed)
    if args.w_lognormal > 0:
        w = net.projections["exc"].weight
        sigma = args.w_lognormal
        factors = np.random.default_rng(seed + 3).lognormal(-sigma ** 2 / 2, sigma, w.numel())
        with torch.no_grad():
            w.mul_(torch.as_tensor(factors, dtype=w.dtype).view_as(w))
    return net


def mg_series(n: int, offset: float) -> np.ndarray:
    mg = mackey_glass(n, sample=3.0, transient=600.0 + offset)
    return (mg - mg.mean()) / mg.std()


def signals(args, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    return {"u": rng.uniform(-1, 1, args.samples), "mg": mg_series(args.samples, 3.0 * (seed % 97)),
            "adapt u": rng.uniform(-1, 1, args.adapt_samples),
            "adapt mg": mg_series(args.adapt_samples, 3.0 * (seed % 97) + 3.0 * args.samples + 900.0),
            "w": input_weights(args.n, INPUT_SCALE, seed=seed + 2) * driven(args, seed)}


def driven(args, seed: int) -> np.ndarray:
    """1 for the ``--input-fraction`` of neurons (chosen at random) that receive the signal, else 0."""
    mask = np.zeros(args.n)
    mask[np.random.default_rng(seed + 5).permutation(args.n)[:round(args.input_fraction * args.n)]] = 1.0
    return mask


def score(net, sig: dict, task: str, args) -> tuple[float, float]:
    """The task's measure on ``net`` from its initial state, and the mean rate (Hz)."""
    x = sig[SIGNAL[task]]
    feats, _ = reservoir_states(net, x, sig["w"], args.hold, bias=args.bias, tau=args.taus)
    fast = feats[:, :args.n] * (1 - np.exp(-DT / args.taus[0])) * 1000 / DT
    if task == "MC":
        value = memory_capacity(feats, x, args.max_delay, alpha=args.alphas, washout=args.washout)[0]
    else:
        value = prediction_nrmse(feats, x, args.horizon, alpha=args.alphas, washout=args.washout)
    return value, float(fast.mean())


def homeostatic(args, seed: int, sig: dict, task: str, targets: tuple[float, float]) -> tuple[object, np.ndarray]:
    """The reservoir at g = 1 adapted on the task's kind of input; and the mean |r - rho| (Hz) of every window."""
    net = build(args, 1.0, seed)
    params = HomeostasisParameters(delta=args.delta * args.w_scale, rate_low=targets[0], rate_high=targets[1],
                                   tau=3000.0)
    u = sig["adapt " + SIGNAL[task]]
    x = torch.as_tensor(args.bias + u[:, None] * sig["w"][None, :], dtype=torch.float32)
    x = x.repeat_interleave(args.hold, 0).unsqueeze(1)
    rho = None
    if args.relative_targets:  # Beta(2, 2) fractions of each neuron's own rate
        with torch.no_grad():
            first = net.run({"neurons": x[:RELATIVE_STEPS]}, outputs=["neurons"]).outputs["neurons"]
        fractions = target_rates(first.shape[-1], targets[0], targets[1], np.random.default_rng(seed))
        rho = fractions * window_rates(first, DT)
    rule = EIHomeostasis(net, params=params, seed=seed, targets=rho)
    res = adapt(net, x.shape[0], 1000, inputs={"neurons": x}, rule=rule)
    return net, res.mismatch


def summary(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):7.3f} +- {sd:5.3f} [{min(values):.3f}, {max(values):.3f}]"


def floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=2000, help="samples per task")
    ap.add_argument("--adapt-samples", type=int, default=3000)
    ap.add_argument("--hold", type=int, default=10, help="steps per input sample")
    ap.add_argument("--taus", default="5,15,45,135", help="feature trace time constants (ms)")
    ap.add_argument("--w-scale", type=float, default=0.1, help="factor on the CUBA recurrent weights")
    ap.add_argument("--input-fraction", type=float, default=1.0, help="fraction of neurons receiving the signal")
    ap.add_argument("--tau-mem", default="", help="low:high (ms): per-neuron membrane time constants, log-uniform")
    ap.add_argument("--bias", type=float, default=BIAS, help="constant input to every neuron per step")
    ap.add_argument("--w-lognormal", type=float, default=1.0, help="sigma of the lognormal excitatory factors")
    ap.add_argument("--max-delay", type=int, default=40)
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--washout", type=int, default=100)
    ap.add_argument("--alphas", default="1e-4,1e-3,1e-2,1e-1,1,10,100,1000", help="ridge penalties to choose from")
    ap.add_argument("--delta", type=float, default=0.05, help="homeostatic step per Hz, times --w-scale")
    ap.add_argument("--scales", default="0.25,0.5,1,2,4,8", help="global inhibition scales g swept")
    ap.add_argument("--targets", default="1:10,2:20,5:40,10:60", help="target rate ranges (Hz) swept")
    ap.add_argument("--relative-targets", action="store_true",
                    help="--targets are fractions of each neuron's rate at g = 1 before adaptation, not Hz")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="n 150, 1000 samples, 2 seeds, smaller sweeps")
    args = ap.parse_args()
    if args.quick:
        args.n, args.samples, args.adapt_samples, args.seeds = 150, 1000, 1500, 2
        args.scales, args.targets = "0.5,1,2,4", "2:20,5:40"
    torch.set_num_threads(args.threads)
    args.taus, args.alphas = floats(args.taus), floats(args.alphas)
    args.tau_mem = tuple(float(v) for v in args.tau_mem.split(":")) if args.tau_mem else None
    scales = floats(args.scales)
    ranges = [tuple(float(v) for v in r.split(":")) for r in args.targets.split(",")]
    start = time.perf_counter()

    unit = "x own rate" if args.relative_targets else "Hz"
    print(f"validation seed {VALIDATION_SEED}: n {args.n}, hold {args.hold} ms, traces {args.taus} ms, "
          f"weights x{args.w_scale:g}, lognormal {args.w_lognormal:g}, {args.samples} samples per task, "
          f"signal to {args.input_fraction:g} of the neurons, bias {args.bias:g}, tau_mem "
          f"{'%g-%g ms log-uniform' % args.tau_mem if args.tau_mem else '20 ms'}, delta {args.delta:g}, "
          f"{args.adapt_samples} adaptation samples")
    sig = signals(args, VALIDATION_SEED)
    print(f"{'setting':>32} {'task':>9} {'value':>7} {'rate Hz':>8}")
    val = {}
    for t in TASKS:
        for g in scales:
            val[("global", t, g)] = score(build(args, g, VALIDATION_SEED), sig, t, args)
            print(f"{f'global g={g:g}':>32} {t:>9} {val[('global', t, g)][0]:7.3f} {val[('global', t, g)][1]:8.2f}",
                  flush=True)
        for r in ranges:
            net, mismatch = homeostatic(args, VALIDATION_SEED, sig, t, r)
            val[("homeostasis", t, r)] = score(net, sig, t, args)
            curve = " ".join(f"{m:.1f}" for m in mismatch[np.linspace(0, len(mismatch) - 1, 5).round().astype(int)])
            print(f"{f'homeostasis {r[0]:g}-{r[1]:g} {unit}':>32} {t:>9} {val[('homeostasis', t, r)][0]:7.3f} "
                  f"{val[('homeostasis', t, r)][1]:8.2f}   (|r - rho| over adaptation {curve} Hz)", flush=True)
    best_g = {t: BETTER[t](scales, key=lambda g: val[("global", t, g)][0]) for t in TASKS}
    best_r = {t: BETTER[t](ranges, key=lambda r: val[("homeostasis", t, r)][0]) for t in TASKS}
    print("chosen: " + ", ".join(f"{t}: g={best_g[t]:g}, targets {best_r[t][0]:g}-{best_r[t][1]:g} {unit}" for t in TASKS))

    results = {(kind, t): [] for kind in ("global", "homeostasis") for t in TASKS}
    rates = {(kind, t): [] for kind in ("global", "homeostasis") for t in TASKS}
    for seed in range(args.seeds):
        sig = signals(args, seed)
        for t in TASKS:
            for kind, net in (("global", build(args, best_g[t], seed)),
                              ("homeostasis", homeostatic(args, seed, sig, t, best_r[t])[0])):
                value, rate = score(net, sig, t, args)
                results[(kind, t)].append(value)
                rates[(kind, t)].append(rate)
        print(f"seed {seed}: " + ", ".join(f"{k} {t} {results[(k, t)][-1]:.3f}" for k in ("global", "homeostasis")
                                            for t in TASKS), flush=True)

    print(f"\n{args.seeds} test seeds, mean +- sd [min, max]")
    print(f"{'task':>9} | {'global (tuned g)':>34} | {'homeostasis':>34} | homeo / global")
    for t in TASKS:
        a, b = results[("global", t)], results[("homeostasis", t)]
        print(f"{t:>9} | {summary(a):>34} | {summary(b):>34} | {statistics.mean(b) / statistics.mean(a):.3f}")
    for t in TASKS:
        print(f"mean rate ({t}), Hz: global {summary(rates[('global', t)])}, "
              f"homeostasis {summary(rates[('homeostasis', t)])}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
