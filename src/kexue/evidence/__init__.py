"""The evidence suite's framework: claims, runs, checks, statistics, registry, runner,
cache, plots and reports.

An experiment (in :mod:`kexue.experiments`) subclasses :class:`Experiment`, states its
:class:`Claim`, measures in ``run`` and decides in ``checks``; :func:`register` adds it
to the suite and :func:`reproduce` runs it. The library never imports this package.
"""

from kexue.evidence.base import (
    FIDELITIES,
    INCONCLUSIVE,
    MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    SCALES,
    Check,
    Claim,
    Context,
    Experiment,
    Run,
    Skip,
    Stat,
    Stats,
    verdict,
)
from kexue.evidence.registry import UnknownExperiment, load_all, register, resolve
from kexue.evidence.tables import markdown_table

__all__ = [
    "FIDELITIES",
    "INCONCLUSIVE",
    "MEASURED",
    "NOT_REPRODUCED",
    "REPRODUCED",
    "SCALES",
    "Check",
    "Claim",
    "Context",
    "Experiment",
    "Run",
    "Skip",
    "Stat",
    "Stats",
    "UnknownExperiment",
    "load_all",
    "markdown_table",
    "register",
    "resolve",
    "verdict",
]
