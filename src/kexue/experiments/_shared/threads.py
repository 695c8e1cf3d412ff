"""How many intra-op threads torch uses while an experiment runs."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block on ``n`` intra-op threads, then restore the previous count.

    Tiny models (a few hundred hidden units, batches of ~100) run fastest on one thread: on
    a machine whose cores are busy, a second thread waits for a core at every op and makes
    each step an order of magnitude slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
