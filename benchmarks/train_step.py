r"""Training step of a feedforward spiking network: neurosim against snnTorch, SpikingJelly and a plain torch loop.

Network: 700 inputs -> Dense -> 256 LIF -> Dense -> 256 LIF -> Dense -> 20 leaky-integrator
readouts, no biases, T = 100 steps of 1 ms, batch 32, float32. Every framework computes

.. math::

    v^l_t = \beta v^l_{t-1} + W^l z^{l-1}_t, \quad z^l_t = H(v^l_t - 1), \quad
    \text{reset by subtraction of 1 (detached)}, \quad \beta = e^{-1/10}, \\
    o_t = \beta_o o_{t-1} + W^3 z^2_t, \quad \beta_o = e^{-1/20}, \quad
    \text{loss} = \mathrm{CE}(\max_t o_t, y),

with the arctangent surrogate :math:`dS/dx = 1 / (1 + (\pi x)^2)` (alpha 2) and one Adam step
(learning rate 1e-3). snnTorch applies a spike's reset one step later (its default); the rest is
the same model. SpikingJelly's LIF (``decay_input=False``, soft reset) has :math:`\beta = 1 - 1/\tau`,
so :math:`\tau = 1 / (1 - \beta)`; its readout is a LIF node that never fires (infinite threshold)
whose membranes are kept (``store_v_seq``).

- neurosim: a :class:`~neurosim.Network` run layer at a time (one matmul per projection for all
  steps, then the fused LIF / leaky-integrator recurrence and its fused BPTT);
- snnTorch: ``nn.Linear`` + ``snn.Leaky`` in a loop over steps (its tutorials' way);
- SpikingJelly: ``layer.Linear`` + ``neuron.LIFNode`` in multi-step mode, torch backend;
- plain torch: the same loop written with torch operations and a custom surrogate function.

All start from the same weights and train on the same random data (input spikes with
probability 0.05 per step, random labels). Each framework runs in subprocesses of its own, the
frameworks taking turns over several rounds, after one unmeasured run each that fills on-disk
caches: warm-up steps, then the timed steps (median over all rounds). Memory, from the peak
resident memory of each process (``VmHWM``, largest over the rounds; ``ru_maxrss`` would also
count the launching process, whose memory a child inherits at its start):

- *process peak*: everything (interpreter, torch, the framework and its runtime, data, model,
  optimiser, training);
- *training*: that peak above the resident memory before the first full-size step, taken after
  one forward and backward pass on a tiny input (2 steps, batch 1) has loaded whatever each
  framework loads lazily (parts of torch, for all of them); activations, gradients,
  optimiser state and temporary buffers of the training steps.

The matmuls are the same work everywhere; they run on torch's threads, so under other load on the
machine the layer-at-a-time big matmuls suffer most: measure on an otherwise idle machine.

Usage: ``python benchmarks/train_step.py [--steps 20] [--warmup 5] [--rounds 3] [--threads N] [--only NAME ...]``
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time

import torch

T, BATCH, N_IN, N_HID, N_OUT = 100, 32, 700, 256, 20
BETA, BETA_OUT = math.exp(-1 / 10), math.exp(-1 / 20)
THRESHOLD, ALPHA = 1.0, 2.0
FRAMEWORKS = ("neurosim", "snntorch", "spikingjelly", "torch")


def make_data_and_weights(seed: int = 0):
    """Input spikes ``[T, B, 700]``, labels, and the three weight matrices (``[out, in]``, uniform
    in :math:`\\pm 3/\\sqrt{n_{in}}` so that the hidden layers fire)."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(T, BATCH, N_IN, generator=g) < 0.05).float()
    y = torch.randint(0, N_OUT, (BATCH,), generator=g)
    weights = [(torch.rand(n_out, n_in, generator=g) * 2 - 1) * 3 / math.sqrt(n_in)
               for n_in, n_out in ((N_IN, N_HID), (N_HID, N_HID), (N_HID, N_OUT))]
    return x, y, weights


def build_neurosim(weights):
    from neurosim import LI, LIF, Dense, Network

    net = Network(dt=1.0)
    net.add_input("x", N_IN)
    net.add("h1", LIF(N_HID, tau_mem=10.0, v_th=THRESHOLD, spike_fn="atan"))
    net.add("h2", LIF(N_HID, tau_mem=10.0, v_th=THRESHOLD, spike_fn="atan"))
    net.add("out", LI(N_OUT, tau_mem=20.0))
    for (pre, post), w in zip((("x", "h1"), ("h1", "h2"), ("h2", "out")), weights):
        net.connect(pre, post, Dense(w.shape[1], w.shape[0], weight=w))
    return net, lambda x: net.run(x).outputs["out"]


def build_snntorch(weights):
    import snntorch as snn
    from snntorch import surrogate
    from torch import nn

    fcs = nn.ModuleList(nn.Linear(w.shape[1], w.shape[0], bias=False) for w in weights)
    for fc, w in zip(fcs, weights):
        fc.weight.data.copy_(w)
    spike_grad = surrogate.atan(alpha=ALPHA)
    lifs = nn.ModuleList([snn.Leaky(beta=BETA, threshold=THRESHOLD, spike_grad=spike_grad),
                          snn.Leaky(beta=BETA, threshold=THRESHOLD, spike_grad=spike_grad),
                          snn.Leaky(beta=BETA_OUT, threshold=THRESHOLD, spike_grad=spike_grad,
                                    reset_mechanism="none")])
    model = nn.ModuleList([fcs, lifs])

    def forward(x):
        mems = [lif.reset_mem() for lif in lifs]
        out = []
        for t in range(x.shape[0]):
            s = x[t]
            for k in range(3):
                s, mems[k] = lifs[k](fcs[k](s), mems[k])
            out.append(mems[2])
        return torch.stack(out)

    return model, forward


def build_spikingjelly(weights):
    from spikingjelly.activation_based import functional, layer, neuron, surrogate
    from torch import nn

    def lif(beta, threshold, v_reset):
        return neuron.LIFNode(tau=1 / (1 - beta), decay_input=False, v_threshold=threshold, v_reset=v_reset,
                              detach_reset=True, surrogate_function=surrogate.ATan(alpha=ALPHA),
                              step_mode="m", backend="torch", store_v_seq=v_reset is not None)

    fcs = [layer.Linear(w.shape[1], w.shape[0], bias=False, step_mode="m") for w in weights]
    for fc, w in zip(fcs, weights):
        fc.weight.data.copy_(w)
    readout = lif(BETA_OUT, math.inf, 0.0)
    model = nn.Sequential(fcs[0], lif(BETA, THRESHOLD, None), fcs[1], lif(BETA, THRESHOLD, None), fcs[2], readout)

    def forward(x):
        functional.reset_net(model)
        model(x)
        return readout.v_seq

    return model, forward


class _ATanSpike(torch.autograd.Function):
    """H(x) forward; (alpha / 2) / (1 + (pi alpha x / 2)^2) backward."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x > 0).float()

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (ALPHA / 2) / (1 + (math.pi / 2 * ALPHA * x) ** 2)


def build_torch(weights):
    from torch import nn

    params = nn.ParameterList(nn.Parameter(w.clone()) for w in weights)

    def forward(x):
        w1, w2, w3 = params
        v1 = torch.zeros(x.shape[1], N_HID)
        v2 = torch.zeros(x.shape[1], N_HID)
        o = torch.zeros(x.shape[1], N_OUT)
        out = []
        for t in range(x.shape[0]):
            v1 = BETA * v1 + x[t] @ w1.t()
            z1 = _ATanSpike.apply(v1 - THRESHOLD)
            v1 = v1 - z1.detach() * THRESHOLD
            v2 = BETA * v2 + z1 @ w2.t()
            z2 = _ATanSpike.apply(v2 - THRESHOLD)
            v2 = v2 - z2.detach() * THRESHOLD
            o = BETA_OUT * o + z2 @ w3.t()
            out.append(o)
        return torch.stack(out)

    return params, forward


BUILDERS = {"neurosim": build_neurosim, "snntorch": build_snntorch, "spikingjelly": build_spikingjelly,
            "torch": build_torch}


def _peak_kib() -> int:
    """The peak resident memory of this process's own address space (reset by ``exec``)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))


def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def measure(name: str, steps: int, warmup: int) -> dict:
    """Time ``steps`` training steps of framework ``name`` after ``warmup`` steps (in this process),
    by wall clock and by process CPU time."""
    x, y, weights = make_data_and_weights()
    model, forward = BUILDERS[name](weights)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x).amax(0), y)
        loss.backward()
        opt.step()
        return loss.item()

    loss_fn(forward(x[:2, :1]).amax(0), y[:1]).backward()
    rss_before = _rss_kib()
    losses = [step() for _ in range(warmup)]
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        losses.append(step())
        times.append(time.perf_counter() - t0)
        cpu_times.append(time.process_time() - c0)
    peak = _peak_kib()
    return {"times": times, "cpu_times": cpu_times, "peak_mib": peak / 1024,
            "training_mib": (peak - rss_before) / 1024, "first_loss": losses[0], "last_loss": losses[-1]}


def run_child(name: str, args, steps: int, warmup: int) -> dict | None:
    cmd = [sys.executable, __file__, "--child", name, "--steps", str(steps), "--warmup", str(warmup)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"{name}: failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="timed training steps per framework and round")
    ap.add_argument("--warmup", type=int, default=5, help="untimed full-size steps first")
    ap.add_argument("--rounds", type=int, default=3,
                    help="subprocesses per framework, the frameworks taking turns (spreads changes in machine load)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--only", nargs="+", choices=FRAMEWORKS, default=list(FRAMEWORKS))
    ap.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(measure(args.child, args.steps, args.warmup)))
        return

    load_start = os.getloadavg()[0]
    for name in args.only:  # fills on-disk caches (numba's compiled kernels) before anything is measured
        run_child(name, args, 1, 0)
    runs: dict[str, list[dict]] = {name: [] for name in args.only}
    for _ in range(args.rounds):
        for name in args.only:
            r = run_child(name, args, args.steps, args.warmup)
            if r is not None:
                runs[name].append(r)
    results = {}
    for name, rs in runs.items():
        if rs:
            times = [t for r in rs for t in r["times"]]
            results[name] = {"median_ms": 1e3 * statistics.median(times), "min_ms": 1e3 * min(times),
                             "peak_mib": max(r["peak_mib"] for r in rs),
                             "training_mib": max(r["training_mib"] for r in rs),
                             "first_loss": rs[0]["first_loss"], "last_loss": rs[0]["last_loss"]}

    print(f"training step, {N_IN}-{N_HID}-{N_HID}-{N_OUT}, T={T}, batch {BATCH}, Adam; torch {torch.__version__}, "
          f"{args.threads or torch.get_num_threads()} threads; load average {load_start:.1f} -> "
          f"{os.getloadavg()[0]:.1f}; {args.rounds} rounds of {args.steps} timed steps after {args.warmup}")
    ref = results.get("snntorch")

    def ratio(r, key):
        return f"{r[key] / ref[key]:.2f}" if ref else "-"

    head = (f"{'framework':<13}{'median ms':>10}{'min ms':>8}{'x snnTorch':>11}{'process MiB':>12}{'x snnTorch':>11}"
            f"{'training MiB':>13}{'x snnTorch':>11}")
    print(head)
    print("-" * len(head))
    for name, r in results.items():
        print(f"{name:<13}{r['median_ms']:>10.1f}{r['min_ms']:>8.1f}{ratio(r, 'median_ms'):>11}"
              f"{r['peak_mib']:>12.0f}{ratio(r, 'peak_mib'):>11}"
              f"{r['training_mib']:>13.0f}{ratio(r, 'training_mib'):>11}")
    print("loss, first warm-up step -> last step: "
          + ", ".join(f"{n} {r['first_loss']:.3f} -> {r['last_loss']:.3f}" for n, r in results.items()))


if __name__ == "__main__":
    main()
