"""One timer for every benchmark: implementations alternate inside each repeat.

Running the contenders back to back, in alternating order, within every repeat means a
burst of load from another process hits both sides of a ratio alike; the medians and the
median of per-repeat ratios are what the benchmarks report.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def alternate(fns: dict[str, Callable[[], object]], repeats: int, inner: int = 1,
              warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each fn, one entry per repeat (``inner`` calls averaged).

    Every repeat runs each fn once (``inner`` times), in the given order on even repeats
    and reversed on odd ones.
    """
    if repeats < 1 or inner < 1:
        raise ValueError(f"expected repeats >= 1 and inner >= 1, got {repeats} and {inner}")
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            times[name].append((time.perf_counter() - t0) / inner)
    return times


def medians(times: dict[str, list[float]]) -> dict[str, float]:
    """Median seconds per call of each fn."""
    return {k: statistics.median(v) for k, v in times.items()}


def ratio(times: dict[str, list[float]], a: str, b: str) -> float:
    """Median over repeats of ``time(a) / time(b)`` (> 1: ``a`` is slower)."""
    return statistics.median(x / y for x, y in zip(times[a], times[b]))
