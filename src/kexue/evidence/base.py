"""The evidence suite's vocabulary: a claim, an experiment, its checks and its result.

An experiment reproduces one post's claim. It runs once per seed (``run``), each run
returning measured metrics; the suite aggregates every metric over seeds (mean, std)
and the experiment turns those statistics into ``Check`` s with the helpers below.
The verdict is computed from the checks, never written by hand:

* every check holds                       -> ``reproduced``
* some check fails beyond seed noise      -> ``not reproduced``
* otherwise (a difference within noise)   -> ``inconclusive``

"Beyond noise" means the difference of means exceeds twice its standard error
(sample std over seeds, ddof=1). A stochastic experiment run with one seed has no
noise estimate, so a comparison it makes is ``inconclusive`` unless the experiment
is declared ``deterministic`` (e.g. evaluating a fixed pretrained model).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
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
class Stat:
    """One metric over seeds."""

    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return sum(self.values) / len(self.values)

    @property
    def std(self) -> float:
        if self.n < 2:
            return 0.0
        m = self.mean
        return math.sqrt(sum((v - m) ** 2 for v in self.values) / (self.n - 1))

    @property
    def sem(self) -> float:
        return self.std / math.sqrt(self.n)

    def __str__(self) -> str:
        return fmt(self.mean) if self.n < 2 else f"{fmt(self.mean)} ± {fmt(self.std)}"

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "mean": self.mean, "std": self.std, "n": self.n}


def fmt(x: float) -> str:
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    return f"{x:.4g}" if abs(x) < 1000 else f"{x:.1f}"


@dataclass
class Check:
    """One comparison behind a verdict: ``holds`` is True, False or None (within noise)."""

    description: str
    holds: bool | None
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Stats(dict):
    """Metric name -> :class:`Stat`, plus the comparison helpers experiments use."""

    deterministic: bool = False

    def _noise(self, *stats: Stat) -> float | None:
        """Twice the standard error of a sum/difference of means; None if unknown."""
        if self.deterministic:
            return 0.0
        if any(s.n < 2 for s in stats):
            return None
        return 2.0 * math.sqrt(sum(s.sem**2 for s in stats))

    def _decide(self, description: str, diff: float, noise: float | None, what: str) -> Check:
        if noise is None:
            return Check(description, None, f"{what}; one seed, noise unknown")
        beyond = "deterministic" if self.deterministic else f"beyond noise ({fmt(noise)})"
        if diff > noise:
            return Check(description, True, f"{what}; {beyond}")
        if diff < -noise:
            return Check(description, False, f"{what}; {beyond}")
        return Check(description, None, f"{what}; within noise ({fmt(noise)})")

    def greater(self, a: str, b: str, margin: float = 0.0, description: str = "") -> Check:
        """``mean(a) > mean(b) + margin`` beyond seed noise."""
        sa, sb = self[a], self[b]
        diff = sa.mean - sb.mean - margin
        what = f"{a} = {sa} vs {b} = {sb}" + (f" (+{fmt(margin)})" if margin else "")
        return self._decide(description or f"{a} > {b}", diff, self._noise(sa, sb), what)

    def not_worse(self, a: str, b: str, tolerance: float, description: str = "") -> Check:
        """``mean(a) >= mean(b) - tolerance`` (a tolerance is a stated, not noise, bound)."""
        sa, sb = self[a], self[b]
        diff = sa.mean - sb.mean + tolerance
        what = f"{a} = {sa} vs {b} = {sb}, tolerance {fmt(tolerance)}"
        desc = description or f"{a} >= {b} - {fmt(tolerance)}"
        return self._decide(desc, diff, self._noise(sa, sb), what)

    def above(self, a: str, threshold: float, description: str = "") -> Check:
        """``mean(a) > threshold`` beyond seed noise."""
        sa = self[a]
        noise = self._noise(sa)
        return self._decide(
            description or f"{a} > {fmt(threshold)}",
            sa.mean - threshold,
            noise,
            f"{a} = {sa} vs {fmt(threshold)}",
        )

    def below(self, a: str, threshold: float, description: str = "") -> Check:
        """``mean(a) < threshold`` beyond seed noise."""
        sa = self[a]
        return self._decide(
            description or f"{a} < {fmt(threshold)}",
            threshold - sa.mean,
            self._noise(sa),
            f"{a} = {sa} vs {fmt(threshold)}",
        )

    def within(self, a: str, b: str, tolerance: float, description: str = "") -> Check:
        """``|mean(a) - mean(b)| <= tolerance``; noise widens nothing here (a stated bound)."""
        sa, sb = self[a], self[b]
        gap = abs(sa.mean - sb.mean)
        what = f"|{a} - {b}| = {fmt(gap)} (tolerance {fmt(tolerance)}; {sa} vs {sb})"
        return Check(description or f"|{a} - {b}| <= {fmt(tolerance)}", gap <= tolerance, what)


def verdict(checks: Iterable[Check]) -> str:
    outcomes = [c.holds for c in checks]
    if not outcomes:
        raise ValueError("an experiment must produce at least one check")
    if all(o is True for o in outcomes):
        return REPRODUCED
    if any(o is False for o in outcomes):
        return NOT_REPRODUCED
    return INCONCLUSIVE


@dataclass
class Context:
    """What a run gets: its seed, scale, a folder for figures and a shared cache."""

    seed: int
    scale: str
    workdir: Path  # this experiment's folder inside the report
    cache_dir: Path  # survives across runs, e.g. for trained weights
    log: Callable[[str], None] = print

    def figure(self, name: str) -> Path:
        """Path for a PNG; pass ``path.name`` relative paths back in ``Run.figures``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        return self.workdir / name

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
    deterministic: ClassVar[bool] = False  # True: seeds cannot change the result

    def run(self, ctx: Context) -> Run:
        raise NotImplementedError

    def checks(self, stats: Stats) -> list[Check]:
        raise NotImplementedError

    def summarize(self, stats: Stats, runs: list[Run], ctx: Context) -> Run | None:
        """Optional: figures/tables drawn from all seeds together."""
        return None
