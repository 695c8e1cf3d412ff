"""The evidence suite's vocabulary: a claim, an experiment, its runs and its context.

An experiment reproduces one post's claim. It runs once per seed (``run``), each run
returning measured metrics; the suite aggregates every metric over seeds
(:class:`~kexue.evidence.stats.Stats`) and the experiment turns those statistics into
:class:`~kexue.evidence.stats.Check` s with the helpers there. The verdict is computed
from the checks (:func:`~kexue.evidence.stats.verdict`), never written by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from kexue.evidence.stats import (  # noqa: F401  (re-exported: the vocabulary in one place)
    INCONCLUSIVE,
    MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    Check,
    Stat,
    Stats,
    fmt,
    verdict,
)

SCALES = ("quick", "full")


FIDELITIES = ("as-posted", "scaled-down", "substituted")


@dataclass(frozen=True)
class Claim:
    """What a post claims, in which setting, and what counts as reproducing it.

    ``fidelity`` says how our setting relates to the post's: ``as-posted`` (the post's
    model, data and budget), ``scaled-down`` (the same kind of model and data, smaller or
    shorter) or ``substituted`` (another kind of model or data; ``substitution`` says why).
    A ``substituted`` verdict is about our setting, not a verdict on the post.
    """

    post: str  # the post's title
    date: str  # YYYY-MM-DD
    url: str
    statement: str  # the claim, one sentence
    condition: str  # what counts as "reproduced", in words; the checks implement it
    reported: str = ""  # the post's own numbers, quoted with their setting
    fidelity: str = ""  # one of FIDELITIES
    post_setting: str = ""  # the post's model, data and budget
    our_setting: str = ""  # ours (the quick scale; the full scale is in the experiment)
    substitution: str = ""  # why, when fidelity is "substituted"
    # the post's own numbers under our metric names, e.g. {"sst2/fgm/accuracy": 62.46}, drawn
    # beside ours in the report (leave out what the post does not report comparably)
    reported_values: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.fidelity and self.fidelity not in FIDELITIES:
            raise ValueError(f"fidelity must be one of {FIDELITIES}, got {self.fidelity!r}")
        if self.fidelity == "substituted" and not self.substitution:
            raise ValueError("a substituted claim must say why (substitution=...)")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class Skip(Exception):
    """Raised by an experiment that cannot run here (missing data or package)."""


@dataclass
class Run:
    """What one seed of an experiment measured and produced."""

    metrics: dict[str, float]
    figures: list[str] = field(default_factory=list)  # PNG paths relative to the workdir
    tables: list[str] = field(default_factory=list)  # Markdown tables
    notes: list[str] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)  # e.g. generated text


@dataclass
class Context:
    """What a run gets: its seed, scale, a folder for figures, a shared cache, and the
    pretrained model to use (``--model``; None means the bundled MiniLM)."""

    seed: int
    scale: str
    workdir: Path  # this experiment's folder inside the report
    cache_dir: Path  # survives across runs, e.g. for trained weights
    log: Callable[[str], None] = print
    model: Path | None = None
    progress: bool = False  # show progress bars (the suite sets it on a terminal)

    def figure(self, name: str) -> Path:
        """Path for a PNG; pass ``path.name`` relative paths back in ``Run.figures``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / name

    def model_path(self) -> Path:
        """The pretrained encoder's folder: ``--model`` or the bundled all-MiniLM-L6-v2."""
        if self.model is not None:
            return Path(self.model)
        from kexue.data import minilm_path

        return minilm_path()

    def pick(self, quick: Any, full: Any, smoke: Any = None) -> Any:
        """The value for the current scale. ``smoke`` is a tiny setting that only the
        tests use (``Context(scale="smoke")``) to run an experiment end to end in seconds;
        it falls back to ``quick``."""
        if self.scale == "smoke":
            return quick if smoke is None else smoke
        return quick if self.scale == "quick" else full


class Experiment:
    """Base class: subclass, fill the class attributes, implement ``run`` and ``checks``.

    Register with :func:`kexue.evidence.registry.register`.
    """

    name: ClassVar[str]
    techniques: ClassVar[tuple[str, ...]]  # T-numbers of TECHNIQUES.md
    claim: ClassVar[Claim]
    datasets: ClassVar[tuple[str, ...]] = ()  # kexue.data names this needs
    minutes: ClassVar[dict[str, float]] = {"quick": 1.0, "full": 10.0}  # expected wall time
    seeds: ClassVar[int] = 3  # default number of seeds
    deterministic: ClassVar[bool] = False  # True: nothing trained or sampled
    uses_model: ClassVar[bool] = False  # True: runs on a pretrained encoder (--model)
    # False: the post states no numerical claim; ``checks`` returns [] and the outcome is
    # "measured" (the measurements are reported without a verdict)
    numerical_claim: ClassVar[bool] = True

    def run(self, ctx: Context) -> Run:
        raise NotImplementedError

    def checks(self, stats: Stats) -> list[Check]:
        raise NotImplementedError

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        """Optional: figures/tables drawn from all seeds together."""
        return None
