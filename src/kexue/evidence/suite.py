"""Run experiments over seeds, aggregate, decide, cache and write the report.

Results are written after every experiment (``results.json``, ``index.md``,
``index.html``), so a failure later in the run loses nothing already measured.
A finished experiment is cached under ``$KEXUE_CACHE`` (default ``~/.cache/kexue``)
keyed by name, scale, seeds and a hash of the code it ran.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import kexue
from kexue.data import PretrainedModelMissing
from kexue.evidence.base import (
    SCALES,
    Context,
    Experiment,
    Run,
    Skip,
    Stat,
    Stats,
    verdict,
)

PACKAGE_DIR = Path(kexue.__file__).resolve().parent
_SUITE_ONLY = ("experiments", "evidence", "cli.py")


class CacheError(RuntimeError):
    pass


def cache_root() -> Path:
    """``$KEXUE_CACHE`` or the user cache folder (see :func:`kexue.data.user_cache_root`)."""
    from kexue.data import user_cache_root

    return user_cache_root()


def code_version(exp: type[Experiment]) -> str:
    """Hash of the library sources plus the experiment's own module."""
    h = hashlib.sha256(kexue.__version__.encode())
    files = sorted(
        p
        for p in PACKAGE_DIR.rglob("*.py")
        if not p.relative_to(PACKAGE_DIR).parts[0] in _SUITE_ONLY
    )
    files += [Path(inspect.getfile(exp)), Path(__file__), PACKAGE_DIR / "evidence" / "base.py"]
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def cache_key(exp: type[Experiment], scale: str, seeds: list[int]) -> str:
    raw = json.dumps([exp.name, scale, seeds, code_version(exp)])
    return hashlib.sha256(raw.encode()).hexdigest()[:20]


def versions() -> dict[str, str]:
    """Versions of Python, kexue and the libraries results depend on, read from package
    metadata (importing transformers just for its version would cost seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version(), "kexue": kexue.__version__}
    for dist in ("torch", "numpy", "transformers", "sentence-transformers"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    out["platform"] = platform.platform()
    return out


def _timings_path() -> Path:
    return cache_root() / "timings.json"


def measured_minutes() -> dict[tuple[str, str], float]:
    """(experiment, scale) -> wall minutes of its last run on this machine."""
    try:
        raw = json.loads(_timings_path().read_text())
        return {tuple(k.split("|", 1)): float(v) for k, v in raw.items()}  # type: ignore[misc]
    except (OSError, ValueError, AttributeError):
        return {}


def _record_minutes(name: str, scale: str, seconds: float) -> None:
    """Remember a run's wall time for ``kexue list`` (best effort: never fails a run)."""
    try:
        times = {f"{k[0]}|{k[1]}": v for k, v in measured_minutes().items()}
        times[f"{name}|{scale}"] = round(seconds / 60, 2)
        path = _timings_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".timings.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        pass


def data_provenance(names: tuple[str, ...]) -> dict[str, Any]:
    if not names:
        return {}
    from kexue import data

    out = {}
    for name in names:
        ds = data.DATASETS[name]
        out[name] = {"source": ds.source, "licence": ds.licence, "available": data.available(name)}
    return out


def missing_data(names: tuple[str, ...]) -> list[str]:
    if not names:
        return []
    from kexue import data

    return [n for n in names if not data.available(n)]


def seeds_for(exp: type[Experiment], n_seeds: int | None) -> list[int]:
    n = exp.seeds if n_seeds is None else n_seeds
    if n < 1:
        raise ValueError(f"--seeds must be >= 1, got {n}")
    return [0] if exp.deterministic else list(range(n))


def _aggregate(runs: list[Run], deterministic: bool) -> Stats:
    stats = Stats()
    stats.deterministic = deterministic
    for key in runs[0].metrics:
        stats[key] = Stat([float(r.metrics[key]) for r in runs if key in r.metrics])
    return stats


def run_experiment(
    exp_cls: type[Experiment],
    scale: str,
    seeds: list[int],
    workdir: Path,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run one experiment over ``seeds`` and return its result record."""
    started = time.time()
    record: dict[str, Any] = {
        "name": exp_cls.name,
        "techniques": list(exp_cls.techniques),
        "claim": exp_cls.claim.to_dict(),
        "scale": scale,
        "seeds": seeds,
        "deterministic": exp_cls.deterministic,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "figures": [],
        "tables": [],
        "notes": [],
        "samples": [],
    }
    missing = missing_data(exp_cls.datasets)
    if missing:
        record.update(status="skipped", verdict="skipped",
                      reason=f"data not available: {', '.join(missing)} (run `kexue data get "
                             f"{' '.join(missing)}` or set KEXUE_DATA)")
        record["wall_time"] = time.time() - started
        return record
    record["data"] = data_provenance(exp_cls.datasets)
    exp = exp_cls()
    runs: list[Run] = []
    try:
        for seed in seeds:
            ctx = Context(seed, scale, workdir, cache_root() / "work", log)
            t0 = time.time()
            run = exp.run(ctx)
            log(f"    seed {seed}: {_short(run.metrics)} ({time.time() - t0:.0f} s)")
            runs.append(run)
        stats = _aggregate(runs, exp_cls.deterministic)
        extra = exp.summarize(stats, runs, Context(seeds[0], scale, workdir, cache_root() / "work", log))
        checks = exp.checks(stats)
    except (Skip, PretrainedModelMissing) as e:
        reason = str(e) if isinstance(e, Skip) else f"pretrained model not installed: {e}"
        record.update(status="skipped", verdict="skipped", reason=reason)
        record["wall_time"] = time.time() - started
        return record
    for r in runs + ([extra] if extra else []):
        for key in ("figures", "tables", "notes", "samples"):
            record[key] += [x for x in getattr(r, key) if x not in record[key]]
    record.update(
        status="ok",
        metrics={k: s.to_dict() for k, s in stats.items()},
        per_seed=[r.metrics for r in runs],
        checks=[c.to_dict() for c in checks],
        verdict=verdict(checks),
        wall_time=time.time() - started,
    )
    return record


def _short(metrics: dict[str, float], n: int = 4) -> str:
    items = list(metrics.items())[:n]
    more = ", ..." if len(metrics) > n else ""
    return ", ".join(f"{k}={v:.4g}" for k, v in items) + more


def _load_cached(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or "verdict" not in record:
            raise ValueError("not a result record")
        return record
    except (OSError, ValueError) as e:
        raise CacheError(f"corrupt cache file {path} ({e}); delete it or run with --no-cache") from e


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to --out {out}: {e.strerror or e}") from e


def reproduce(
    experiments: list[type[Experiment]],
    scale: str = "quick",
    n_seeds: int | None = None,
    out: Path | None = None,
    use_cache: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[Path, list[dict[str, Any]]]:
    """Run ``experiments`` and write the report into ``out``; return (out, records)."""
    from kexue.evidence.report import write_report

    if scale not in SCALES:
        raise ValueError(f"--scale must be one of {SCALES}, got {scale!r}")
    if n_seeds is not None and n_seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {n_seeds}")
    for root in os.environ.get("KEXUE_DATA", "").split(os.pathsep):
        if root and not Path(root).expanduser().is_dir():
            raise FileNotFoundError(f"KEXUE_DATA entry {root} is not a directory")
    out = Path(out or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    check_writable(out)
    run_info = {"scale": scale, "seeds": n_seeds, "started": datetime.now(timezone.utc)
                .isoformat(timespec="seconds"), "versions": versions()}
    records: list[dict[str, Any]] = []
    t_suite = time.time()
    for i, exp in enumerate(experiments, 1):
        seeds = seeds_for(exp, n_seeds)
        workdir = out / exp.name
        key = cache_key(exp, scale, seeds)
        entry = cache_root() / "results" / key
        log(f"[{i}/{len(experiments)}] {exp.name} ({scale}, seeds {seeds}, "
            f"~{exp.minutes.get(scale, '?')} min)")
        if use_cache and (entry / "result.json").exists():
            record = _load_cached(entry / "result.json")
            if workdir.exists():
                shutil.rmtree(workdir)
            if (entry / "files").exists():
                shutil.copytree(entry / "files", workdir)
            record["cached"] = True
            log("    cached result")
        else:
            try:
                record = run_experiment(exp, scale, seeds, workdir, log)
            except Exception as e:  # noqa: BLE001  an experiment's bug must not lose the others' results
                record = {"name": exp.name, "techniques": list(exp.techniques),
                          "claim": exp.claim.to_dict(), "scale": scale, "seeds": seeds,
                          "status": "error", "verdict": "error",
                          "reason": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}
            if record["status"] == "ok":
                _record_minutes(exp.name, scale, record["wall_time"])
            if use_cache and record["status"] == "ok":
                _store(entry, record, workdir)
        records.append(record)
        log(f"    -> {record['verdict']}" + (f": {record['reason']}" if record.get("reason") else "")
            + (f" ({record['wall_time']:.0f} s)" if "wall_time" in record else ""))
        run_info["wall_time"] = time.time() - t_suite
        write_report(out, run_info, records)
    return out, records


def _store(entry: Path, record: dict[str, Any], workdir: Path) -> None:
    if entry.exists():
        shutil.rmtree(entry)
    entry.mkdir(parents=True)
    if workdir.exists():
        shutil.copytree(workdir, entry / "files")
    tmp = entry / "result.json.tmp"
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, entry / "result.json")
