"""Measure a training configuration in a fresh Python process (memory and time).

Peak memory is only comparable between configurations when each starts from a clean
process: the allocator keeps what an earlier run freed, and ``ru_maxrss`` is inherited
across fork. :func:`call_in_fresh_process` runs ``module.function(**kwargs)`` in a new
interpreter with this process's torch thread count and returns its JSON result;
:func:`status_bytes` reads the process's current (``VmRSS``) or peak (``VmHWM``) resident
memory, which the measured function reports relative to its own baseline, and
:func:`reset_peak` starts the peak afresh (so loading a model does not count as training).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any


def status_bytes(field: str) -> int:
    """``VmRSS`` (now) or ``VmHWM`` (peak since exec) of this process, in bytes. Unlike
    ``ru_maxrss``, ``VmHWM`` does not inherit the parent's size across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    """Reset ``VmHWM`` to the current resident size (Linux ``clear_refs`` value 5)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def call_in_fresh_process(module: str, function: str, **kwargs: Any) -> Any:
    """``module.function(threads=..., **kwargs)`` in a new interpreter on this process's
    torch thread count; the function's JSON-serialisable result."""
    import torch

    kwargs["threads"] = torch.get_num_threads()
    code = (f"import json, sys; from {module} import {function}; "
            f"print(json.dumps({function}(**json.loads(sys.argv[1]))))")
    env = {**os.environ, "OMP_NUM_THREADS": str(kwargs["threads"])}
    out = subprocess.run([sys.executable, "-c", code, json.dumps(kwargs)], check=False,
                         capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{module}.{function} failed in a fresh process:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])
