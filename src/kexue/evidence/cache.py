"""Provenance and caches: which code made a result, and files that survive a crash.

A result or a trained model is only reused when the code that made it is unchanged. What
"the code" is gets recorded, not guessed: :func:`module_hashes` lists every ``kexue``
module loaded in the process with the SHA-256 of its source, and :func:`unchanged` checks
a recorded list against the files on disk now. Caches are looked up by what was asked
(experiment, scale, seeds; a model's configuration) and then validated by that list.

Every cache file is written atomically (:func:`kexue.train.atomic_write`: a unique temporary file in
the same folder, fsync, rename), so a kill never leaves a half-written file; a file that
cannot be read is discarded with a warning naming it, and recomputed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import torch

from kexue.train.loop import atomic_write  # one home for crash-safe writes (checkpoints too)

__all__ = ["atomic_write", "cached_state", "code_hash", "git_commit", "module_hashes",
           "unchanged"]


def _sha256_file(path: str | os.PathLike) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _experiment_module(name: str) -> bool:
    """A module of one experiment (``kexue.experiments.x``), not a shared helper."""
    parts = name.split(".")
    return len(parts) >= 3 and parts[:2] == ["kexue", "experiments"] and not parts[2].startswith("_")


def module_hashes(owner: str | None = None) -> dict[str, str]:
    """``{module: sha256 of its source}`` for every loaded ``kexue`` module that can shape a
    result: the library, the evidence framework, the shared experiment helpers and the
    ``owner`` experiment module — not the other experiments (the registry loads them all)
    nor the command line."""
    out = {}
    for name, module in list(sys.modules.items()):
        if name != "kexue" and not name.startswith("kexue."):
            continue
        if name == "kexue.cli" or (_experiment_module(name) and name != owner):
            continue
        file = getattr(module, "__file__", None)
        if file and file.endswith(".py") and os.path.isfile(file):
            out[name] = _sha256_file(file)
    return dict(sorted(out.items()))


def code_hash(hashes: dict[str, str]) -> str:
    """One short hash of a module list (what the report shows)."""
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest()[:16]


def unchanged(recorded: dict[str, str]) -> bool:
    """True if every recorded module still exists with the same source."""
    for name, digest in recorded.items():
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            return False
        if spec is None or not spec.origin or not os.path.isfile(spec.origin):
            return False
        if _sha256_file(spec.origin) != digest:
            return False
    return True


@cache
def git_commit() -> str | None:
    """The commit of the checkout kexue runs from (with ``+dirty`` for local changes), or
    None for an installed package or a machine without git."""
    root = Path(__file__).resolve().parents[3]
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                              text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "src"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def cached_state(cache_dir: str | os.PathLike, tag: str, key: dict[str, Any],
                 build: Callable[[], dict[str, torch.Tensor]],
                 log: Callable[[str], None] = print) -> dict[str, torch.Tensor]:
    """A trained model's state dict, from ``cache_dir`` when the same ``key`` (its
    configuration, seed, data) was trained by unchanged code, else ``build()`` and store.

    The file ``<tag>-<hash of key>.pt`` holds the state dict, the key and the module hashes
    of the code loaded when it was built; an unreadable or stale file is replaced.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()
    path = Path(cache_dir) / f"{tag}-{digest[:16]}.pt"
    if path.exists():
        try:
            blob = torch.load(path, weights_only=True)
            if blob["key"] == json.loads(json.dumps(key, default=str)) and \
                    unchanged(blob["modules"]):
                log(f"loaded cached weights {path.name}")
                return blob["state"]
            log(f"cached weights {path.name} were made by other code; retraining")
        except Exception as e:  # noqa: BLE001  any unreadable file is discarded, never fatal
            warnings.warn(f"discarding unreadable weight cache {path}: {type(e).__name__}: {e}",
                          stacklevel=2)
    state = build()
    buffer = io.BytesIO()
    owner = sys._getframe(1).f_globals.get("__name__")
    torch.save({"key": json.loads(json.dumps(key, default=str)),
                "modules": module_hashes(owner), "state": state}, buffer)
    try:
        atomic_write(path, buffer.getvalue())
    except OSError as e:
        warnings.warn(f"could not write the weight cache {path}: {e}", stacklevel=2)
    return state
