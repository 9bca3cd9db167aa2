r"""What-and-when prediction: the three-factor readout against FORCE, and forgetting with and without HLOP.

All in one run, on one reservoir (:mod:`neurosim.models.prediction`), every model seeing the same
trials (same reservoir activity, same event draws):

1. **Acquisition.** Four cues, each with its own readout, latencies and probabilities not in the
   same order. After ``--trials`` trials: each readout's peak time against its latency (error in
   ms and in bins of ``--bin`` ms) and the Pearson correlation of the peak amplitudes with the
   probabilities, for the three-factor readout and for FORCE (no resets).
2. **Re-adaptation.** Then cue 0's latency moves and cue 2's probability drops. Trials until
   cue 0's peak is within one bin of the new latency, and until cue 2's value at its latency has
   made 80 % of its expected change (the pre-switch value times p_new / p_old), each for three
   evaluations in a row (every ``--every`` trials, on held-out trials), for the three-factor
   readout, FORCE without resets (the claim) and FORCE with P reset at the switch (a reference
   that is told when the world changed).
3. **Two tasks in a row** (three-factor only, one shared readout): task A (cues 0, 1), then task B
   (cues 2, 3, other latencies), each ``--task-trials`` trials. A's error (mean squared distance of
   the mean readout from the expected target over the attended window) after A and after B,
   without a plugin and with HLOP (gradient form on the readout projection, ``--rows`` rows per
   task), hooks driven by hand; B's error after B.

Usage::

    python benchmarks/prediction.py [--quick] [--n 300] [--trials 400] [--switch-trials 300]
"""
from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch

from neurosim.models.prediction import (Contingency, CueReservoir, ForceReadout, PredictionTask, ReservoirParameters,
                                        ThreeFactorReadout, draw_trials, evaluate)
from neurosim.plugins.hlop import HLOP


def pearson(a, b) -> float:
    return float(np.corrcoef(np.asarray(a, float), np.asarray(b, float))[0, 1])


def run_trials(reservoir, task, n, seed, learners, on_eval=None, every=0):
    """``n`` trials shared by every learner (``(readout, plugins)`` or a ForceReadout); ``on_eval(k)``
    after every ``every`` trials."""
    gate = task.gate()
    for k, (cue, event) in enumerate(draw_trials(task, n, np.random.default_rng(seed)), start=1):
        spikes = reservoir.trial(cue, task)
        for learner, plugins in learners:
            target = task.target(cue, event, learner.projection.n_out)
            if plugins is None:
                learner.learn(spikes, target, gate)
            else:
                learner.learn(spikes, target, gate, plugins)
        if every and k % every == 0:
            on_eval(k)


def settled(history, ok, run=3):
    """The trial count at the start of the first ``run`` consecutive evaluations satisfying ``ok``."""
    streak = 0
    for i, (k, value) in enumerate(history):
        streak = streak + 1 if ok(value) else 0
        if streak == run:
            return history[i - run + 1][0]
    return None


def task_error(readout, task, held) -> float:
    """Mean over the task's cues of the squared distance between the mean readout and the expected target."""
    errs = []
    for c in task.contingencies:
        z = readout.predict(held[c.cue]).mean(1)[task.attention_onset:]
        f = task.expected(c.cue, z.shape[1])[task.attention_onset:]
        errs.append(float((z - f).pow(2).mean()))
    return float(np.mean(errs))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="reservoir neurons")
    ap.add_argument("--trials", type=int, default=400, help="acquisition trials")
    ap.add_argument("--switch-trials", type=int, default=300, help="trials after the switch")
    ap.add_argument("--task-trials", type=int, default=300, help="trials per task in the two-task part")
    ap.add_argument("--held", type=int, default=10, help="held-out trials per cue")
    ap.add_argument("--every", type=int, default=10, help="trials between evaluations after the switch")
    ap.add_argument("--lr", type=float, default=5e-4, help="three-factor learning rate")
    ap.add_argument("--alpha", type=float, default=1.0, help="FORCE regulariser, P0 = I / alpha")
    ap.add_argument("--rows", type=int, default=20, help="HLOP subspace rows per task")
    ap.add_argument("--bin", type=float, default=20.0, help="time bin (ms)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="small and short: checks that the script runs")
    args = ap.parse_args()
    if args.quick:
        args.n, args.trials, args.switch_trials, args.task_trials, args.held = 100, 40, 40, 30, 3
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    start = time.perf_counter()

    task = PredictionTask((Contingency(0, 150, 0.6, readout=0), Contingency(1, 200, 0.2, readout=1),
                           Contingency(2, 250, 0.8, readout=2), Contingency(3, 300, 0.4, readout=3)),
                          trial_ms=500, cue_onset=100)
    reservoir = CueReservoir(ReservoirParameters(n=args.n, n_cues=4, seed=args.seed))
    baseline = reservoir.baseline()
    held = {c: reservoir.trials(c, task, args.held) for c in range(4)}
    tf = ThreeFactorReadout(args.n, 4, lr=args.lr, baseline=baseline)
    force = ForceReadout(args.n, 4, alpha=args.alpha, baseline=baseline)
    print(f"reservoir {args.n} Izhikevich neurons, {args.trials} acquisition trials, lr {args.lr}, "
          f"FORCE alpha {args.alpha}, bin {args.bin:g} ms, seed {args.seed}")

    # 1. acquisition
    run_trials(reservoir, task, args.trials, args.seed, [(tf, ()), (force, None)])
    print("\n1. acquisition: peak time (ms after the cue) and amplitude of each cue's readout")
    print(f"{'cue':>4} {'latency':>8} {'p':>5} | {'3-factor peak':>13} {'amp':>6} {'err bins':>8} | "
          f"{'FORCE peak':>10} {'amp':>6} {'err bins':>8}")
    summary = {}
    for name, model in (("3-factor", tf), ("FORCE", force)):
        summary[name] = evaluate(model, task, held)
    for i, c in enumerate(task.contingencies):
        a, b = summary["3-factor"][i], summary["FORCE"][i]
        print(f"{c.cue:>4} {c.latency:>8g} {c.probability:>5g} | {a.peak_ms:>13g} {a.amplitude:>6.3f} "
              f"{abs(a.peak_ms - c.latency) / args.bin:>8.2f} | {b.peak_ms:>10g} {b.amplitude:>6.3f} "
              f"{abs(b.peak_ms - c.latency) / args.bin:>8.2f}")
    probs = [c.probability for c in task.contingencies]
    for name, res in summary.items():
        errs = [abs(r.peak_ms - c.latency) for r, c in zip(res, task.contingencies)]
        print(f"{name:>9}: median peak error {np.median(errs):.1f} ms, max {max(errs):.1f} ms "
              f"({max(errs) / args.bin:.2f} bins); corr(amplitude, p) {pearson([r.amplitude for r in res], probs):.3f}, "
              f"corr(value at latency, p) {pearson([r.at_latency for r in res], probs):.3f}")

    # 2. re-adaptation
    new_latency, new_p = 250, 0.2
    switched = task.replace(0, latency=new_latency).replace(2, probability=new_p)
    force_reset = copy.deepcopy(force)
    force_reset.reset()
    models = {"3-factor": tf, "FORCE": force, "FORCE+reset": force_reset}
    before = {name: evaluate(m, task, held)[2].at_latency for name, m in models.items()}
    history = {name: [] for name in models}

    def record(k):
        for name, m in models.items():
            history[name].append((k, evaluate(m, switched, held)))

    run_trials(reservoir, switched, args.switch_trials, args.seed + 1,
               [(tf, ()), (force, None), (force_reset, None)], record, args.every)
    print(f"\n2. re-adaptation over {args.switch_trials} trials (evaluated every {args.every}): cue 0 latency "
          f"150 -> {new_latency} ms, cue 2 probability 0.8 -> {new_p}")
    print(f"{'model':>12} | {'latency: trials':>15} {'final peak':>10} | {'probability: trials':>19} "
          f"{'value before':>12} {'final':>6} {'expected':>8}")
    for name in models:
        lat = settled([(k, r[0].peak_ms) for k, r in history[name]], lambda v: abs(v - new_latency) <= args.bin)
        expected = before[name] * new_p / 0.8
        prob = settled([(k, r[2].at_latency) for k, r in history[name]],
                       lambda v: (before[name] - v) >= 0.8 * (before[name] - expected))
        final = history[name][-1][1]
        print(f"{name:>12} | {str(lat) if lat is not None else 'not reached':>15} {final[0].peak_ms:>10g} | "
              f"{str(prob) if prob is not None else 'not reached':>19} {before[name]:>12.3f} "
              f"{final[2].at_latency:>6.3f} {expected:>8.3f}")

    # 3. two tasks in a row, one shared readout
    task_a = PredictionTask((Contingency(0, 150, 0.9), Contingency(1, 300, 0.5)), trial_ms=500, cue_onset=100)
    task_b = PredictionTask((Contingency(2, 250, 0.9), Contingency(3, 200, 0.5)), trial_ms=500, cue_onset=100)
    print(f"\n3. task A (cues 0, 1) then task B (cues 2, 3), {args.task_trials} trials each, one shared readout: "
          "squared error of the mean readout from the expected target")
    print(f"{'plugin':>8} | {'A after A':>9} {'A after B':>9} {'forgetting':>10} | {'B after B':>9}")
    for label in ("none", "HLOP"):
        readout = ThreeFactorReadout(args.n, 1, lr=args.lr, baseline=baseline)
        plugins = [HLOP(args.rows, form="gradient", projections=["readout"])] if label == "HLOP" else []
        for p in plugins:
            p.before_training(readout)
        errors = {}
        for t, (tk, seed) in enumerate(((task_a, 10), (task_b, 11))):
            for p in plugins:
                p.before_task(readout, t)
            run_trials(reservoir, tk, args.task_trials, args.seed + seed, [(readout, plugins)])
            for p in plugins:
                p.after_task(readout, t)
            errors[t] = (task_error(readout, task_a, held), task_error(readout, task_b, held))
        for p in plugins:
            p.after_training(readout)
        print(f"{label:>8} | {errors[0][0]:>9.4f} {errors[1][0]:>9.4f} {errors[1][0] - errors[0][0]:>10.4f} | "
              f"{errors[1][1]:>9.4f}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
