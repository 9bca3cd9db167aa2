r"""Data parallelism over ``torch.distributed``: the process group's plumbing in one place.

Every function is the identity (or the trivial answer) in a single process, so plugins call them
unconditionally: :func:`rank` is 0, :func:`world_size` 1, :func:`all_reduce` returns its tensor
unchanged. In a process group (gloo on the CPU, nccl where CUDA exists), started by ``torchrun``
(:func:`init_from_env`) or by :func:`launch` (``N`` local processes), they are the collective
operations of ``torch.distributed``.

**How the runner splits the work.** Every rank holds the whole scenario and the same parameters.
A training batch is the global batch of ``batch_size`` samples (plus what plugins such as replay add
to it, drawn identically on every rank); rank :math:`r` of :math:`R` runs the network on the
contiguous shard :func:`shard` ``(n)`` of it, :math:`n_r` of the :math:`n` samples. Its loss is the
mean over its shard, so its gradient :math:`g_r` is weighted by :math:`n_r / n` before the sum over
ranks (:func:`average_gradients`): :math:`\sum_r (n_r / n) g_r` is the gradient of the mean over the
global batch, and a penalty that every rank adds (EWC, SI) keeps weight :math:`\sum_r n_r / n = 1`;
the loss is averaged in the same collective call. A plugin that learns from the batch's activity
(HLOP) gathers every rank's shard of it with :func:`gather_shards`, once per step, and computes on
the rows one process would have.
Random numbers (sample order, stochastic encodings, replay draws) are drawn for the global batch on
every rank, so the result does not depend on :math:`R` up to the order of floating-point sums.
"""
from __future__ import annotations

import math
import os
import pickle
import socket
from typing import Callable, Iterable

import torch
import torch.distributed as dist

from ..errors import NeurosimError

#: Environment variables torchrun sets for every process it starts.
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def active() -> bool:
    """Whether this process belongs to a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 in a single process)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """The number of processes (1 in a single process)."""
    return dist.get_world_size() if active() else 1


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """``t`` summed (``op="sum"``) or maximised (``"max"``) over every rank, in place; returns ``t``."""
    if active():
        dist.all_reduce(t, op={"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op])
    return t


def all_reduce_many(tensors: Iterable[torch.Tensor]) -> None:
    """Sum each tensor over every rank in place, all of them in one collective call (per dtype)."""
    if not active():
        return
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()


def shard(n: int) -> slice:
    """This rank's contiguous part of ``n`` items: ``[r n // R, (r + 1) n // R)``."""
    r, size = rank(), world_size()
    return slice(r * n // size, (r + 1) * n // size)


def gather_shards(tensors: Iterable[torch.Tensor], total: int) -> list[torch.Tensor]:
    """The global batch of each tensor, all gathered in one collective call.

    Each tensor holds along dim 0 this rank's shard :func:`shard` ``(total)`` of ``total`` samples
    (its other dimensions, and its dtype, the same on every rank; tensors may differ in dtype and
    shape). Returns a list with, for each tensor, the ``total`` rows of every rank's shard
    concatenated in rank order: row for row the tensor one process holds for the whole batch. The
    tensors travel as bytes, each rank's padded to the largest shard, in one ``all_gather``. In one
    process it returns the tensors themselves."""
    tensors = list(tensors)
    if not active():
        return tensors
    size = world_size()
    counts = [(r + 1) * total // size - r * total // size for r in range(size)]
    mine, most = counts[rank()], max(counts)
    widths = []  # bytes per sample
    for t in tensors:
        if t.dim() == 0 or t.shape[0] != mine:
            raise NeurosimError(f"gather_shards: rank {rank()} holds {mine} of {total} samples, "
                                f"got a tensor of shape {tuple(t.shape)}")
        widths.append(math.prod(t.shape[1:]) * t.element_size())
    device = tensors[0].device if tensors else torch.device("cpu")
    send = torch.zeros(most * sum(widths), dtype=torch.uint8, device=device)
    offset = 0
    for t, w in zip(tensors, widths):
        send[offset:offset + mine * w] = t.contiguous().reshape(-1).view(torch.uint8)
        offset += most * w
    received = [torch.empty_like(send) for _ in range(size)]
    dist.all_gather(received, send)
    out, offset = [], 0
    for t, w in zip(tensors, widths):
        parts = [buf[offset:offset + n * w] for buf, n in zip(received, counts)]
        out.append(torch.cat(parts).view(t.dtype).reshape(total, *t.shape[1:]))
        offset += most * w
    return out


def average_gradients(params: Iterable[torch.Tensor], local: int, total: int,
                      value: torch.Tensor | None = None) -> float | None:
    r"""Replace every ``.grad`` (that is not None) by :math:`\sum_r (n_r / n)\, g_r`, with ``local``
    = :math:`n_r` and ``total`` = :math:`n`, in one collective call per dtype. With ``value``, this
    rank's mean :math:`v_r` over its ``local`` items (such as its loss), also return
    :math:`\sum_r (n_r / n)\, v_r`, the mean over all ``total`` items, as a float, summed in the same
    call (in the first gradient's dtype); ``float(value)`` in one process, where the gradients stay."""
    if not active():
        return None if value is None else float(value.detach())
    grads = [p.grad for p in params if p.grad is not None]
    for g in grads:
        g.mul_(local / total)
    mean = [] if value is None else [value.detach().reshape(1).to(grads[0].dtype if grads else torch.float64)
                                     * (local / total)]
    all_reduce_many(grads + mean)
    return float(mean[0]) if mean else None


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (pickled by torch.distributed between the processes of
    one run; never read from a file)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj) -> list:
    """Every rank's ``obj``, in rank order."""
    if not active():
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()


def from_torchrun() -> bool:
    """Whether this process was started by torchrun (its environment variables are set)."""
    return all(k in os.environ for k in TORCHRUN_ENV) and int(os.environ["WORLD_SIZE"]) > 1


def init_from_env(backend: str | None = None) -> None:
    """Join the process group that torchrun's environment describes (no-op if already joined)."""
    if not dist.is_initialized():
        dist.init_process_group(backend or default_backend(), init_method="env://")


def default_backend() -> str:
    return "nccl" if torch.cuda.is_available() else "gloo"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(r: int, size: int, port: int, backend: str, fn: Callable, args: tuple, results) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=r, world_size=size)
    try:
        out = fn(*args)
        if r == 0:  # as bytes: tensors put on the queue as such would live in this process's shared memory
            results.put(pickle.dumps(out))
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, nproc: int, *args, backend: str | None = None):
    """Run ``fn(*args)`` in ``nproc`` new local processes joined in one process group (gloo on the
    CPU), and return rank 0's result (which must be picklable). ``fn`` must be importable by name
    (a module-level function). With ``nproc == 1``, ``fn(*args)`` runs in this process."""
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise NeurosimError(f"nproc must be a positive integer, got {nproc!r}")
    if nproc == 1:
        return fn(*args)
    if dist.is_initialized():
        raise NeurosimError("launch starts its own process group: this process already belongs to one")
    import queue

    import torch.multiprocessing as mp

    results = mp.get_context("spawn").Queue()
    procs = mp.start_processes(_worker, args=(nproc, free_port(), backend or default_backend(), fn, args, results),
                               nprocs=nproc, join=False, start_method="spawn")
    out, got = None, False
    try:
        while True:
            if not got:
                try:
                    out, got = results.get(timeout=0.2), True
                except queue.Empty:
                    pass
            if procs.join(timeout=0.2):
                break
    except mp.ProcessRaisedException as e:
        last = str(e).strip().splitlines()[-1]
        if last.startswith("neurosim.errors.NeurosimError: "):  # bad input: one line, as in one process
            raise NeurosimError(last.split(": ", 1)[1]) from None
        raise
    if not got:
        out = results.get(timeout=10)
    return pickle.loads(out)
