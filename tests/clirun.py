"""The `neurosim` command run in a forked child (cheap: torch is imported already), with a time limit,
optionally a file-size limit and a function applied in the child first; and what a run file holds
at its end, to compare runs bit for bit."""
from __future__ import annotations

import os
import resource
import signal
import sys
import tempfile
import time

import numpy as np
import torch

from neurosim.cli.main import main
from neurosim.storage.store import RunStore


def warm() -> None:
    """Import here, once, what every run imports lazily (scikit-learn's digits, torch's optimiser
    machinery), so that forked children start at once."""
    import neurosim.cli.commands  # noqa: F401  (the command line imports its commands on first use)
    import neurosim.kernels.compiled  # noqa: F401  (kernels are imported on their first lookup)
    import neurosim.kernels.fused  # noqa: F401
    from neurosim.datasets.images import digits

    digits()
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


warm()


class Child:
    def __init__(self, argv, fsize: int | None = None, setup=None):
        self.out, self.err = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        self.pid = os.fork()
        if self.pid == 0:
            code = 99
            try:
                os.dup2(self.out.fileno(), 1)
                os.dup2(self.err.fileno(), 2)
                sys.stdout = open(1, "w", closefd=False)  # not pytest's capture objects
                sys.stderr = open(2, "w", closefd=False)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                torch.set_num_threads(1)
                if fsize is not None:
                    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
                    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
                if setup is not None:
                    setup()
                code = main([str(a) for a in argv])
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 2
            except BaseException:  # noqa: BLE001 - a traceback is a failure the test sees
                import traceback

                traceback.print_exc()
                code = 98
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        self.started = time.monotonic()

    def wait(self, timeout: float = 300) -> tuple[int | None, str, str]:
        """(exit status, negative for a signal, None if it did not end in time; stdout; stderr)."""
        status = None
        while time.monotonic() - self.started < timeout:
            done, st = os.waitpid(self.pid, os.WNOHANG)
            if done:
                status = os.waitstatus_to_exitcode(st)
                break
            time.sleep(0.01)
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        texts = []
        for f in (self.out, self.err):
            f.seek(0)
            texts.append(f.read().decode(errors="replace"))
            f.close()
        return status, texts[0], texts[1]


def run_cli(argv, timeout: float = 300, **kwargs) -> tuple[int | None, str, str]:
    return Child(argv, **kwargs).wait(timeout)


def final(path) -> tuple:
    """(R, log rows without times, latest checkpoint's network state) of a run file."""
    with RunStore.open(path) as s:
        found = s.latest_checkpoint()
        log = s.read_log()
        return s.R, {f: log[f] for f in ("task", "epoch", "step", "loss")}, found[1]["network"] if found else None


def same_run(a, b) -> bool:
    (Ra, la, na), (Rb, lb, nb) = final(a), final(b)
    return (np.array_equal(Ra, Rb, equal_nan=True) and all(np.array_equal(la[f], lb[f]) for f in la)
            and na.keys() == nb.keys() and all(torch.equal(na[k], nb[k]) for k in na))


def digest(path) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()
