"""The evidence suite: one module per post, each registering an :class:`Experiment`.

``kexue reproduce`` runs them (see :mod:`kexue.experiments.suite`). Nothing in the
library imports this package.
"""

from kexue.experiments.base import (
    INCONCLUSIVE,
    NOT_REPRODUCED,
    REPRODUCED,
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
from kexue.experiments.registry import UnknownExperiment, load_all, register, resolve

__all__ = [
    "INCONCLUSIVE",
    "NOT_REPRODUCED",
    "REPRODUCED",
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
    "register",
    "resolve",
    "verdict",
]
