"""Resident memory of this process, read from /proc (shared by the benchmarks)."""

from __future__ import annotations

from pathlib import Path


def status_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB. ``ru_maxrss`` would not
    do for a child process: after fork + exec it starts from the parent's size."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} not in /proc/self/status")
