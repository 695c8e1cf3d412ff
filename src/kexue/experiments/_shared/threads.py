"""Run a block with a given number of torch intra-op threads, then give the setting back.

Recurrent models step through time with many tiny operations; on a shared 2-core machine
one thread runs them fastest (a second thread spin-waits on a busy core), and an experiment
must not leave its setting to the ones run after it in the same process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """``with torch_threads(1): ...`` runs the block on ``n`` threads and restores the count."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
