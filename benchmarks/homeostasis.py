r"""Memory capacity and Mackey-Glass prediction of an E/I LIF reservoir, globally tuned against E/I homeostasis.

The reservoir: :func:`neurosim.reservoir.lif_reservoir` with ``--n`` neurons (80 % excitatory),
about 50 inputs per neuron of each kind together (``p = 50 / n``), the CUBA weights (``w_exc``
1.62 mV, ``w_inh = -9 g`` mV), heterogeneity 0.3, ``dt`` 1 ms, resting potential -60 mV (below the
-50 mV threshold: it fires only when driven). Each input sample is held ``--hold`` steps, during
which neuron i receives ``bias + w_i u`` (``w_i ~ U(-3, 3)``); features are spike traces
(``tau`` 20 ms) read at the end of each sample (:mod:`neurosim.reservoir_tasks`); ridge readout.

Tasks: memory capacity (i.i.d. U(-1, 1) input, delays 1..``--max-delay``) and Mackey-Glass
(tau 17, sampled every 3 time units, standardised) predicted ``--horizon`` samples ahead (NRMSE).

Globally tuned ("global"): one inhibition scale ``g`` for all synapses, chosen per task by a sweep
(``--scales``) on a validation seed not used for testing. Homeostasis: the same reservoir at
``g = 1`` adapted by :func:`neurosim.homeostasis.adapt` (``--adapt-samples`` samples of an
independent i.i.d. input, windows of 1 s, rate trace 3 s, ``--delta``), its Beta(2, 2) target
range chosen per task by a sweep (``--targets``) on the same validation seed; weights frozen
afterwards. Both are then measured on ``--seeds`` test seeds (new connectivity, heterogeneity,
input weights and signals each), in the same run; printed: mean, standard deviation and range
over seeds, and the ratio of the means.

    python benchmarks/homeostasis.py [--quick] [--n 500] [--seeds 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from neurosim.homeostasis import EIHomeostasis, HomeostasisParameters, adapt
from neurosim.reservoir import lif_reservoir
from neurosim.reservoir_tasks import (input_weights, mackey_glass, memory_capacity, prediction_nrmse,
                                      reservoir_states)

DT = 1.0  # ms
TAU = 20.0  # ms, feature traces
INPUT_SCALE = 3.0
BIAS = 2.5
VALIDATION_SEED = 1000
TASKS = ("MC", "MG NRMSE")
BETTER = {"MC": max, "MG NRMSE": min}


def build(n: int, g: float, seed: int):
    return lif_reservoir(n, p=min(1.0, 50 / n), w_inh=-9.0 * g, heterogeneity=0.3, v_leak=-60.0, dt=DT,
                         v0=(-60.0, -50.0), seed=seed)


def signals(args, seed: int) -> dict:
    rng = np.random.default_rng(seed + 1)
    mg = mackey_glass(args.samples, sample=3.0, transient=600.0 + 3.0 * (seed % 97))
    return {"u": rng.uniform(-1, 1, args.samples), "mg": (mg - mg.mean()) / mg.std(),
            "adapt": rng.uniform(-1, 1, args.adapt_samples), "w": input_weights(args.n, INPUT_SCALE, seed=seed + 2)}


def evaluate(net, sig: dict, args) -> dict:
    """Both tasks on ``net`` (each from the network's initial state) and its mean rate (Hz)."""
    feats, _ = reservoir_states(net, sig["u"], sig["w"], args.hold, bias=BIAS, tau=TAU)
    mc, _ = memory_capacity(feats, sig["u"], args.max_delay, alpha=args.alpha, washout=args.washout)
    feats_mg, _ = reservoir_states(net, sig["mg"], sig["w"], args.hold, bias=BIAS, tau=TAU)
    err = prediction_nrmse(feats_mg, sig["mg"], args.horizon, alpha=args.alpha, washout=args.washout)
    rates = feats.mean(0) * (1 - np.exp(-DT / TAU)) * 1000 / DT
    return {"MC": mc, "MG NRMSE": err, "rate": float(rates.mean()), "silent": float((rates < 0.5).mean())}


def homeostatic(n: int, seed: int, sig: dict, targets: tuple[float, float], args) -> tuple[object, float]:
    """The reservoir at g = 1 after adaptation; and the last window's mean |r - rho| (Hz)."""
    net = build(n, 1.0, seed)
    params = HomeostasisParameters(delta=args.delta, rate_low=targets[0], rate_high=targets[1], tau=3000.0)
    rule = EIHomeostasis(net, params=params, seed=seed)
    x = torch.as_tensor(BIAS + sig["adapt"][:, None] * sig["w"][None, :], dtype=torch.float32)
    x = x.repeat_interleave(args.hold, 0).unsqueeze(1)
    res = adapt(net, x.shape[0], 1000, inputs={"neurons": x}, rule=rule)
    return net, float(res.mismatch[-1])


def summary(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):7.3f} +- {sd:5.3f} [{min(values):.3f}, {max(values):.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--samples", type=int, default=2500, help="samples per task")
    ap.add_argument("--adapt-samples", type=int, default=3000)
    ap.add_argument("--hold", type=int, default=20, help="steps per input sample")
    ap.add_argument("--max-delay", type=int, default=30)
    ap.add_argument("--horizon", type=int, default=1)
    ap.add_argument("--washout", type=int, default=100)
    ap.add_argument("--alpha", type=float, default=1e-3)
    ap.add_argument("--delta", type=float, default=0.05)
    ap.add_argument("--scales", default="0.25,0.5,1,2,4", help="global inhibition scales g swept")
    ap.add_argument("--targets", default="1:10,2:20,5:40", help="target rate ranges (Hz) swept")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="n 200, 800 samples, 2 seeds, smaller sweeps")
    args = ap.parse_args()
    if args.quick:
        args.n, args.samples, args.adapt_samples, args.seeds = 200, 800, 1000, 2
        args.scales, args.targets = "0.5,1,2", "1:10,2:20"
    torch.set_num_threads(args.threads)
    scales = [float(s) for s in args.scales.split(",")]
    ranges = [tuple(float(v) for v in r.split(":")) for r in args.targets.split(",")]
    start = time.perf_counter()

    print(f"validation seed {VALIDATION_SEED}: n {args.n}, hold {args.hold} ms, {args.samples} samples per task")
    sig = signals(args, VALIDATION_SEED)
    global_val = {g: evaluate(build(args.n, g, VALIDATION_SEED), sig, args) for g in scales}
    homeo_val = {}
    for r in ranges:
        net, mismatch = homeostatic(args.n, VALIDATION_SEED, sig, r, args)
        homeo_val[r] = {**evaluate(net, sig, args), "mismatch": mismatch}
    print(f"{'setting':>24} {'MC':>7} {'MG NRMSE':>9} {'rate Hz':>8} {'silent':>7}")
    for g, m in global_val.items():
        print(f"{f'global g={g:g}':>24} {m['MC']:7.3f} {m['MG NRMSE']:9.4f} {m['rate']:8.2f} {m['silent']:7.2f}")
    for r, m in homeo_val.items():
        label = f"homeostasis {r[0]:g}-{r[1]:g} Hz"
        print(f"{label:>24} {m['MC']:7.3f} {m['MG NRMSE']:9.4f} {m['rate']:8.2f} {m['silent']:7.2f}"
              f"   (last |r - rho| {m['mismatch']:.2f} Hz)")
    best_g = {t: BETTER[t](scales, key=lambda g: global_val[g][t]) for t in TASKS}
    best_r = {t: BETTER[t](ranges, key=lambda r: homeo_val[r][t]) for t in TASKS}
    print("chosen: " + ", ".join(f"{t}: g={best_g[t]:g}, targets {best_r[t][0]:g}-{best_r[t][1]:g} Hz" for t in TASKS))

    results = {(kind, t): [] for kind in ("global", "homeostasis") for t in TASKS}
    rates = {"global": [], "homeostasis": []}
    for seed in range(args.seeds):
        sig = signals(args, seed)
        cache = {}
        for t in TASKS:
            key = ("global", best_g[t])
            if key not in cache:
                cache[key] = evaluate(build(args.n, best_g[t], seed), sig, args)
            results[("global", t)].append(cache[key][t])
            key = ("homeostasis", best_r[t])
            if key not in cache:
                cache[key] = evaluate(homeostatic(args.n, seed, sig, best_r[t], args)[0], sig, args)
            results[("homeostasis", t)].append(cache[key][t])
        rates["global"].append(cache[("global", best_g["MC"])]["rate"])
        rates["homeostasis"].append(cache[("homeostasis", best_r["MC"])]["rate"])
        print(f"seed {seed}: " + ", ".join(f"{k} {t} {results[(k, t)][-1]:.3f}" for k in ("global", "homeostasis")
                                            for t in TASKS))

    print(f"\n{args.seeds} test seeds, mean +- sd [min, max]")
    print(f"{'task':>9} | {'global (tuned g)':>34} | {'homeostasis':>34} | homeo / global")
    for t in TASKS:
        a, b = results[("global", t)], results[("homeostasis", t)]
        print(f"{t:>9} | {summary(a):>34} | {summary(b):>34} | {statistics.mean(b) / statistics.mean(a):.3f}")
    print(f"mean rate (MC setting), Hz: global {summary(rates['global'])}, homeostasis {summary(rates['homeostasis'])}")
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
