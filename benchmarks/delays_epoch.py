r"""Training time per epoch of the learnable-delay network: neurosim against the same model on ``dcls``.

Both models are the network of :mod:`neurosim.models.delays` (Hammouamri et al. 2024): ``n_in`` ->
hidden LIF layers -> leaky-integrator readout, every synapse a Gaussian-interpolated delay kernel of
``D`` taps, BatchNorm1d over time and batch, dropout with one mask per sequence, the loss
cross-entropy of :math:`\sum_t \mathrm{softmax}(V_{out}[t])`, Adam on weights and batch norm,
a second Adam on positions. The anchor is built as the paper's code builds it: ``DCLS``'s
``Dcls1d`` (``version="gauss"``, fixed ``SIG``) on the input padded by ``D-1`` steps on the left and
``(D-1)//2`` on the right, ``BatchNorm1d`` on ``[B, C, T]``, and the neurons as a per-step Python
loop of torch operations (:math:`V \leftarrow V(1 - 1/\tau) + I`, ATan surrogate, detached hard
reset), positions clamped after each step. neurosim runs :class:`~neurosim.models.delays.DelayTrainer`
(``Delayed`` projections in ``Chain``, the fused LIF / leaky-integrator recurrences; its optimisers), its input padded
at the end by the same ``L (D-1)//2`` steps, so both readouts see as many steps.

Same data (FSDD spoken digits through the 64-channel cochlea at ``--dt``, or the generated lag task
with ``--data lag``), same batches, one thread. The two models take turns: ``--rounds`` epochs of
``--samples`` training samples each (the same shuffled batches for both in a round), after one
untimed warm-up round; the table gives medians of wall-clock and process CPU time (on a shared
machine the CPU time is the steadier figure).
``--profile`` adds a breakdown of one neurosim training step (torch profiler, self CPU time).
``--conv`` only times the delay convolution alone, forward and backward through the Gaussian kernel,
computed over time (:func:`~neurosim.projections.delayed.direct_conv`) and through the FFT
(:func:`~neurosim.projections.delayed.spectral_conv`), for several kernel lengths: the crossover
behind ``FFT_MIN_TAPS``.

Usage::

    python benchmarks/delays_epoch.py [--quick] [--hidden 128 128] [--max-delay 25] [--samples 640]
        [--batch-size 64] [--rounds 5] [--data fsdd|lag] [--cache /tmp/fsdd_cache] [--profile] [--conv]
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
from torch import nn
from torch.nn import functional as F

from neurosim.models.delays import ALPHA, TAU_STEPS, DelayTrainer, build_delay_net, delay_loss, padded_batches


class _ATan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x >= 0).to(x.dtype)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (ALPHA / 2) / (1 + (math.pi / 2 * ALPHA * x) ** 2)


class DclsNet(nn.Module):
    """The paper's model on ``DCLS.construct.modules.Dcls1d``, neurons as a per-step loop; input ``[B, C, T]``."""

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int, max_delay: int, dropout: float):
        super().__init__()
        from DCLS.construct.modules import Dcls1d

        sizes = (n_in,) + tuple(hidden) + (n_out,)
        self.D, self.dropout = max_delay, dropout
        self.convs = nn.ModuleList()
        for a, b in zip(sizes[:-1], sizes[1:]):
            conv = Dcls1d(a, b, kernel_count=1, dilated_kernel_size=max_delay, bias=False, version="gauss")
            with torch.no_grad():
                conv.weight.uniform_(-1 / math.sqrt(a), 1 / math.sqrt(a))
                lo = -math.ceil(max_delay / 2)
                conv.P.uniform_(lo, max_delay // 2)
                conv.SIG.fill_(max_delay // 2)
            conv.SIG.requires_grad_(False)
            self.convs.append(conv)
        self.norms = nn.ModuleList(nn.BatchNorm1d(h) for h in hidden)

    def positions(self):
        return [c.P for c in self.convs]

    def clamp(self):
        with torch.no_grad():
            for c in self.convs:
                c.P.clamp_(-(self.D // 2), self.D - 1 - self.D // 2)

    @staticmethod
    def neurons(x: torch.Tensor, spiking: bool) -> torch.Tensor:
        v, out = torch.zeros_like(x[..., 0]), []
        for t in range(x.shape[-1]):
            v = v - v / TAU_STEPS + x[..., t]
            if spiking:
                z = _ATan.apply(v - 1.0)
                v = v * (1 - z.detach())
                out.append(z)
            else:
                out.append(v)
        return torch.stack(out, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.D - 1, (self.D - 1) // 2)
        for k, conv in enumerate(self.convs):
            if k > 0 and self.training and self.dropout > 0:
                keep = torch.rand(x.shape[0], x.shape[1], 1) >= self.dropout
                x = x * keep / (1 - self.dropout)
            x = conv(F.pad(x, pad))
            if k < len(self.norms):
                x = self.neurons(self.norms[k](x), True)
        return self.neurons(x, False).permute(2, 0, 1)  # [T, B, n_out]


def epoch(forward, opts, batches, after_step=None) -> tuple[float, float]:
    """One training epoch over ``batches`` (``[T, B, C]`` counts, labels); returns its wall and CPU seconds."""
    start, cpu = time.perf_counter(), time.process_time()
    for x, y in batches:
        for o in opts:
            o.zero_grad(set_to_none=True)
        delay_loss(forward(x), y).backward()
        for o in opts:
            o.step()
        if after_step is not None:
            after_step()
    return time.perf_counter() - start, time.process_time() - cpu


def load(args):
    if args.data == "lag":
        from neurosim.datasets.temporal_tasks import lag_task

        train, _, _ = lag_task(10, 64, 60, n_train=args.samples, n_test=10, steps=80, noise_rate=0.1, dt=args.dt)
        return train
    from neurosim.datasets.event_sets import fsdd

    train = fsdd(args.root, channels=64, dt=args.dt, cache=args.cache).train
    return train.subset(torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[: args.samples].numpy())


def profile_step(trainer: DelayTrainer, data, batch_size: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    x, y = next(padded_batches(data, batch_size, trainer.max_delay, trainer.tail))
    trainer.net.train()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.opt.zero_grad()
        trainer.opt_pos.zero_grad()
        delay_loss(trainer.forward(x), y).backward()
        trainer.opt.step()
        trainer.opt_pos.step()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def conv_crossover(steps: int = 100, batch: int = 64, n: int = 128, taps=(2, 4, 6, 8, 12, 25, 50),
                   repeats: int = 5) -> None:
    """Median CPU time of one forward and backward pass of each convolution of a ``n -> n`` delayed
    layer on ``[steps, batch, n]`` spikes, per kernel length."""
    from neurosim.projections.delayed import direct_conv, gaussian_kernel, spectral_conv

    print(f"delay convolution {n} -> {n}, T={steps}, batch {batch}: forward + backward, CPU ms (median of {repeats})")
    print(f"{'taps':>5}{'direct':>9}{'FFT':>9}{'ratio':>7}")
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(steps, batch, n, generator=g) < 0.1).float()
    for D in taps:
        w = torch.rand(n, n, generator=g).requires_grad_()
        p = (torch.rand(n, n, generator=g) * (D - 1) - D // 2).requires_grad_()
        row = []
        for conv in (direct_conv, spectral_conv):
            times = []
            for _ in range(repeats + 1):
                xs = x.clone().requires_grad_()
                cpu = time.process_time()
                conv(xs, gaussian_kernel(w, p, D // 2, D)).sum().backward()
                times.append(time.process_time() - cpu)
            row.append(1e3 * statistics.median(times[1:]))
        print(f"{D:>5}{row[0]:>9.1f}{row[1]:>9.1f}{row[1] / row[0]:>7.2f}")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small: 192 samples, 3 rounds")
    ap.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
    ap.add_argument("--max-delay", type=int, default=25)
    ap.add_argument("--dropout", type=float, default=0.4)
    ap.add_argument("--samples", type=int, default=640)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--dt", type=float, default=0.01)
    ap.add_argument("--data", choices=("fsdd", "lag"), default="fsdd")
    ap.add_argument("--root", default=None, help="FSDD folder (default $NEUROSIM_DATA/fsdd)")
    ap.add_argument("--cache", default="/tmp/neurosim-fsdd-cache", help="event cache folder (outside the repo)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--conv", action="store_true", help="only time the convolution, over time and through the FFT")
    return ap


def compare(args, data, log=None) -> dict:
    """The two models on ``data`` taking turns for ``args.rounds`` epochs after a warm-up one:
    ``{"neurosim": [(wall, cpu), ...], "dcls": [...], "trainer": DelayTrainer, "parameters": trained
    parameters of each}``; ``log(round, ours, theirs)`` after each round."""
    n_in, n_out, D, hidden = data.channels, data.classes, args.max_delay, tuple(args.hidden)
    torch.manual_seed(0)
    net = build_delay_net(n_in, n_out, hidden, D, dropout=args.dropout, seed=0)
    ours = DelayTrainer(net, 1000, batch_size=args.batch_size)
    torch.manual_seed(0)
    anchor = DclsNet(n_in, hidden, n_out, D, args.dropout)
    weights = [c.weight for c in anchor.convs] + list(anchor.norms.parameters())
    opts = [torch.optim.Adam(weights, lr=5e-3, weight_decay=1e-5), torch.optim.Adam(anchor.positions(), lr=0.1)]
    n_params = (sum(p.numel() for p in net.parameters() if p.requires_grad),
                sum(p.numel() for p in anchor.parameters() if p.requires_grad))
    assert n_params[0] == n_params[1], n_params

    def run_ours(batches):
        return epoch(lambda x: ours.forward(F.pad(x, (0, 0, 0, 0, 0, ours.tail))), [ours.opt, ours.opt_pos], batches)

    def run_dcls(batches):
        return epoch(lambda x: anchor(x.permute(1, 2, 0).contiguous()), opts, batches, anchor.clamp)

    net.train(), anchor.train()
    times = {"neurosim": [], "dcls": [], "trainer": ours, "parameters": n_params[0]}  # (wall, cpu) per round
    for r in range(-1, args.rounds):  # round -1: warm-up (allocator, caches), not timed
        batches = list(padded_batches(data, args.batch_size, D, shuffle=True, seed=r + 1))
        t_ours, t_dcls = run_ours(batches), run_dcls(batches)
        if r < 0:
            continue
        times["neurosim"].append(t_ours)
        times["dcls"].append(t_dcls)
        if log is not None:
            log(r, t_ours, t_dcls)
    return times


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.conv:
        conv_crossover()
        return
    if args.quick:
        args.samples, args.rounds = 192, 3
    data = load(args)
    n_in, n_out, D, hidden = data.channels, data.classes, args.max_delay, tuple(args.hidden)
    steps = data.steps()
    print(f"{args.data}: {len(data)} samples, {n_in} channels, {n_out} classes, steps median {int(statistics.median(steps))} "
          f"max {steps.max()}; {n_in}-{'-'.join(map(str, hidden))}-{n_out}, D={D}, batch {args.batch_size}, "
          f"{args.threads} thread(s)")

    def log(r, t_ours, t_dcls):
        print(f"round {r}: neurosim {t_ours[0]:.2f} s ({t_ours[1]:.2f} s CPU), dcls {t_dcls[0]:.2f} s "
              f"({t_dcls[1]:.2f} s CPU), ratio {t_ours[0] / t_dcls[0]:.2f}", flush=True)

    times = compare(args, data, log)
    print(f"trained parameters: {times['parameters']:,} in each model")
    med = {k: [statistics.median(t[i] for t in times[k]) for i in (0, 1)] for k in ("neurosim", "dcls")}
    ratio = statistics.median(a[0] / b[0] for a, b in zip(times["neurosim"], times["dcls"]))
    print()
    print(f"{'model':<32}{'epoch s':>9}{'CPU s':>8}{'ms/batch':>10}{'ratio':>7}{'CPU ratio':>11}")
    batches = math.ceil(len(data) / args.batch_size)
    for name, label in (("neurosim", "neurosim (Delayed, fused LIF)"), ("dcls", "dcls Dcls1d + Python LIF loop")):
        (wall, cpu), (w0, c0) = med[name], med["dcls"]
        print(f"{label:<32}{wall:>9.3f}{cpu:>8.3f}{1000 * wall / batches:>10.1f}{wall / w0:>7.2f}{cpu / c0:>11.2f}")
    print(f"median of the per-round ratios: {ratio:.2f}; goal neurosim <= 0.7 x dcls -> "
          f"{'met' if med['neurosim'][0] <= 0.7 * med['dcls'][0] else 'missed'} (medians, wall)")
    if args.profile:
        profile_step(times["trainer"], data, args.batch_size)

if __name__ == "__main__":
    main()
