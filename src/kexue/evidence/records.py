"""Result records on disk: their schema, validation, checksums, and a report folder's
``results.json`` that accumulates records safely.

A record is the dictionary :func:`kexue.evidence.suite.run_experiment` returns. Whatever
reads one from disk (the result cache, ``kexue report``) validates it first: a missing or
mistyped field, a name that would make an unsafe path, or a cache record whose checksum
does not match its contents is rejected with one error naming the file and the field.

``results.json`` in a report folder holds every experiment run into that folder: writers
merge their records into it (by experiment name, newest wins) under an exclusive file
lock and replace it atomically, so sequential and concurrent runs into one folder keep
everything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from kexue.evidence.cache import atomic_write

__all__ = ["RecordError", "checksum", "load_results", "merge_results", "safe_name",
           "validate_record"]

NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")
STATUSES = ("ok", "skipped", "error")
VERDICTS = ("reproduced", "not reproduced", "inconclusive", "measured", "skipped", "error")
# field -> type(s) required in every record; more are required when status == "ok"
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "name": str, "techniques": list, "claim": dict, "scale": str, "seeds": list,
    "status": str, "verdict": str,
}
REQUIRED_OK: dict[str, type | tuple[type, ...]] = {
    "metrics": dict, "checks": list, "wall_time": (int, float), "figures": list,
    "tables": list, "notes": list, "samples": list,
}


class RecordError(ValueError):
    """A record (or results file) that does not have the expected shape."""


def safe_name(name: Any, source: str = "record") -> str:
    """``name`` if it is a safe experiment name (it becomes a folder), else RecordError."""
    if not isinstance(name, str) or not NAME.match(name):
        raise RecordError(f"{source}: field 'name' must match {NAME.pattern} (it names a "
                          f"folder), got {name!r}")
    return name


def _safe_relative(path: Any, source: str, field: str) -> None:
    p = PurePosixPath(path) if isinstance(path, str) else None
    if p is None or p.is_absolute() or ".." in p.parts or "\\" in path or not path:
        raise RecordError(f"{source}: field {field!r} must hold relative paths inside the "
                          f"experiment's folder, got {path!r}")


def validate_record(record: Any, source: str = "record") -> dict[str, Any]:
    """Check a record's shape; return it, or raise :class:`RecordError` naming ``source``
    and the offending field."""
    if not isinstance(record, dict):
        raise RecordError(f"{source}: expected a record (a JSON object), got "
                          f"{type(record).__name__}")
    required = dict(REQUIRED)
    if record.get("status") == "ok":
        required |= REQUIRED_OK
    for field, kind in required.items():
        if field not in record:
            raise RecordError(f"{source}: record {record.get('name', '?')!r} has no field "
                              f"{field!r}")
        if not isinstance(record[field], kind):
            raise RecordError(f"{source}: field {field!r} of record {record.get('name', '?')!r} "
                              f"must be {getattr(kind, '__name__', kind)}, got "
                              f"{type(record[field]).__name__}")
    safe_name(record["name"], source)
    if record["status"] not in STATUSES:
        raise RecordError(f"{source}: field 'status' must be one of {STATUSES}, got "
                          f"{record['status']!r}")
    if record["verdict"] not in VERDICTS:
        raise RecordError(f"{source}: field 'verdict' must be one of {VERDICTS}, got "
                          f"{record['verdict']!r}")
    for fig in record.get("figures", []):
        _safe_relative(fig, source, "figures")
    for key, m in (record.get("metrics") or {}).items():
        if not isinstance(m, dict) or not isinstance(m.get("values"), list):
            raise RecordError(f"{source}: metric {key!r} must hold a list of 'values'")
    return record


def checksum(record: dict[str, Any]) -> str:
    """SHA-256 of a record's contents (without its own ``checksum`` field)."""
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


def _read(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise RecordError(f"{path}: not a readable results file ({e})") from e
    if not isinstance(blob, dict) or not isinstance(blob.get("run"), dict) \
            or not isinstance(blob.get("experiments"), list):
        raise RecordError(f"{path}: expected {{'run': {{...}}, 'experiments': [...]}}")
    return blob["run"], [validate_record(r, str(path)) for r in blob["experiments"]]


def load_results(directory: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run information and the validated records of a report folder."""
    path = Path(directory) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"no results.json in {directory}; is it a report folder?")
    return _read(path)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".results.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def merge_results(directory: str | Path, run: dict[str, Any], records: list[dict[str, Any]]
                  ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Merge ``records`` into ``directory/results.json`` (by name; these win) under an
    exclusive lock, write it atomically, and return the merged (run, records).

    An unreadable existing file is kept aside as ``results.json.corrupt-<n>`` rather than
    overwritten silently.
    """
    directory = Path(directory)
    path = directory / "results.json"
    with _locked(directory):
        merged: dict[str, dict[str, Any]] = {}
        old_run: dict[str, Any] = {}
        if path.exists():
            try:
                old_run, old = _read(path)
                merged = {r["name"]: r for r in old}
            except RecordError:
                n = 0
                while (aside := path.with_name(f"results.json.corrupt-{n}")).exists():
                    n += 1
                path.rename(aside)
        for r in records:
            merged[r["name"]] = r
        run = {**old_run, **run}
        out = list(merged.values())
        atomic_write(path, json.dumps({"run": run, "experiments": out}, indent=1, default=str))
    return run, out
