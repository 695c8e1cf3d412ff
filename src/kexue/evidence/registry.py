"""The registry of experiments: every public module of :mod:`kexue.experiments` registers
its own; :func:`load_all` imports them all (names starting with ``_`` are helpers)."""

from __future__ import annotations

import importlib
import pkgutil

from kexue.evidence.base import SCALES, Experiment

EXPERIMENTS = "kexue.experiments"  # the package whose public modules are the suite
_REGISTRY: dict[str, type[Experiment]] = {}


class UnknownExperiment(ValueError):
    pass


def register(cls: type[Experiment]) -> type[Experiment]:
    """Class decorator: add an experiment to the suite (names are unique)."""
    for attr in ("name", "techniques", "claim"):
        if not hasattr(cls, attr):
            raise TypeError(f"experiment {cls.__name__} has no class attribute {attr!r}")
    if set(cls.minutes) - set(SCALES):
        raise TypeError(f"experiment {cls.name}: minutes keys must be in {SCALES}")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise TypeError(f"two experiments are named {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


def load_all() -> dict[str, type[Experiment]]:
    """Import every experiment module of the package; return name -> class, sorted."""
    pkg = importlib.import_module(EXPERIMENTS)  # by name: the framework knows no experiment
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{EXPERIMENTS}.{info.name}")
    return dict(sorted(_REGISTRY.items()))


def resolve(names: list[str] | None) -> list[type[Experiment]]:
    """Experiments by name or technique number (``T12``); all of them if ``names`` is empty,
    quickest first (by expected quick-scale minutes) so a report fills up early."""
    experiments = load_all()
    if not names:
        return sorted(experiments.values(), key=lambda e: e.minutes.get("quick", 1e9))
    chosen: list[type[Experiment]] = []
    for name in names:
        if name in experiments:
            hits = [experiments[name]]
        else:
            hits = [e for e in experiments.values() if name.upper() in e.techniques]
        if not hits:
            raise UnknownExperiment(_unknown(name, experiments))
        chosen += [h for h in hits if h not in chosen]
    return chosen


def _unknown(name: str, experiments: dict[str, type[Experiment]]) -> str:
    from kexue.evidence.catalogue import by_id

    try:
        technique = by_id(name)
    except KeyError:
        known = ", ".join(experiments) or "(none registered)"
        return f"unknown experiment {name!r}; known: {known}"
    status = "implemented" if technique.implemented() else "planned"
    return (f"technique {technique.id} ({technique.name}) has no experiment yet "
            f"(library status: {status})")
