"""Progress of long loops: a tqdm bar on a terminal; in a log file one line per bar when it ends.

A bar's description says what it counts (``task 2 epoch 5``, ``simulating``), so a training run
written to a file gets one line per epoch (``task 2 epoch 5: 47/47 batch in 3.1 s (15.2 batch/s),
loss=0.412``) instead of one line per update. A terminal is a standard error that is a TTY, or a
Jupyter kernel (where tqdm draws its own widget).
"""
from __future__ import annotations

import sys
import time
from typing import Iterable


def interactive() -> bool:
    """Whether progress goes to a person watching (a terminal or a notebook) rather than to a file."""
    return sys.stderr.isatty() or "ipykernel" in sys.modules


class LineProgress:
    """The bar's interface used here (iteration, ``update``, ``set_postfix``, ``close``, ``with``); it
    counts silently and writes one summary line to standard error when closed (nothing when ``quiet``)."""

    def __init__(self, iterable: Iterable | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", initial: int = 0, quiet: bool = False):
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n, self.start, self.postfix, self.quiet, self.closed = initial, time.perf_counter(), {}, quiet, False

    def __iter__(self):
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n

    def set_postfix(self, **values) -> None:
        self.postfix = values

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.quiet:
            return
        elapsed = time.perf_counter() - self.start
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        rate = f" ({self.n / elapsed:.1f} {self.unit}/s)" if elapsed > 0 and self.n else ""
        line = f"{self.desc}: {count} {self.unit} in {elapsed:.1f} s{rate}"
        line += "".join(f", {k}={v}" for k, v in self.postfix.items())
        print(line, file=sys.stderr, flush=True)


def progress_bar(iterable: Iterable | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0, enabled: bool = True):
    """A progress bar over ``iterable`` or up to ``total``: tqdm when :func:`interactive`, else a
    :class:`LineProgress`; silent unless ``enabled``."""
    if enabled and interactive():
        from tqdm.auto import tqdm  # imported when first drawn: it loads asyncio and more

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=False)
    return LineProgress(iterable, total, desc, unit, initial, quiet=not enabled)
