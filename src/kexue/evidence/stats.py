"""Statistics behind a verdict: metrics over seeds, checks with Student-t intervals, and
the rule that turns a list of checks into a verdict.

Each check compares a difference ``d`` (e.g. ``mean(a) - mean(b) - margin``) with zero:

* arms measured in the same runs share their seeds, so ``d`` is estimated from the
  per-seed differences (a *paired* comparison, ``n - 1`` degrees of freedom); arms with
  different seeds use Welch's unequal-variance interval; a threshold check is a
  one-sample interval;
* the check *holds* when the two-sided 95% t-interval of ``d`` lies above zero, *fails*
  when it lies below, and is undecided (``None``) when it straddles zero or when a
  stochastic experiment ran one seed (no noise estimate);
* a *deterministic* experiment (nothing trained or sampled: a fixed model and closed
  forms) decides on the sign of ``d`` alone.

Verdict over several checks (:func:`verdict`): ``reproduced`` when every check holds —
an intersection-union test, valid at the checks' own level without correction;
``not reproduced`` when at least one check fails after Holm's step-down correction of the
one-sided p-values for failing, across all the checks of the verdict; otherwise
``inconclusive``. An experiment whose post states no numerical claim has no checks and
the outcome ``measured``: its measurements are reported without a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats as st

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
INCONCLUSIVE = "inconclusive"
MEASURED = "measured"  # the post states no numerical claim: measurements, no verdict
ALPHA = 0.025  # one-sided level of each direction (a two-sided 95% interval)

__all__ = ["ALPHA", "INCONCLUSIVE", "MEASURED", "NOT_REPRODUCED", "REPRODUCED", "Check", "Stat", "Stats",
           "fmt", "format_stat", "verdict"]


@dataclass
class Stat:
    """One metric over seeds: ``values[i]`` was measured with seed ``seeds[i]``."""

    values: list[float]
    seeds: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.seeds:
            self.seeds = list(range(len(self.values)))
        if len(self.seeds) != len(self.values):
            raise ValueError(f"expected one seed per value, got {len(self.seeds)} seeds for "
                             f"{len(self.values)} values")

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
        return fmt(self.mean) if self.n < 2 else format_stat(self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {"values": self.values, "seeds": self.seeds, "mean": self.mean, "std": self.std,
                "n": self.n}


def fmt(x: float) -> str:
    """A number alone: four significant digits, no exponent between 1e-3 and 1e6."""
    if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
        return str(x)
    if x == 0 or 1e-3 <= abs(x) < 1e6:
        return f"{x:.4g}" if abs(x) < 1000 else f"{x:.0f}"
    return f"{x:.2g}"


def format_stat(mean: float, std: float | None = None) -> str:
    """``mean ± std`` with as many digits as the noise allows: the std to one significant
    digit (two when it starts with 1), the mean to the same decimal place, e.g.
    ``34.8 ± 0.5`` for 34.8312 ± 0.4924. Without noise, :func:`fmt`."""
    if std is None or not math.isfinite(std) or std <= 0 or not math.isfinite(mean):
        return fmt(mean)
    exponent = math.floor(math.log10(std))
    decimals = -exponent + (1 if std / 10**exponent < 2 else 0)
    if decimals > 8:
        return f"{mean:.2g} ± {std:.1g}"
    if decimals < 0:  # noise in the tens or more: round both to that place
        unit = 10 ** (-decimals)
        return f"{round(mean / unit) * unit:.0f} ± {round(std / unit) * unit:.0f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


@dataclass
class Check:
    """One comparison behind a verdict.

    ``holds`` is True, False or None (undecided); ``p_fail`` is the one-sided p-value of
    the evidence that the check fails (0 for a deterministic failure, 1 when nothing
    speaks for failing), which :func:`verdict` corrects across checks (Holm).
    """

    description: str
    holds: bool | None
    detail: str
    p_fail: float = 1.0
    metrics: list[str] = field(default_factory=list)  # the metrics this check decided on

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Estimate:
    """A difference ``d`` with its standard error and degrees of freedom (None: no noise
    estimate; 0 standard error with ``exact``: deterministic)."""

    d: float
    se: float | None
    df: float | None
    how: str
    exact: bool = False

    def interval(self) -> tuple[float, float] | None:
        if self.exact:
            return self.d, self.d
        if self.se is None or self.df is None:
            return None
        half = st.t.ppf(1 - ALPHA, self.df) * self.se
        return self.d - half, self.d + half

    def p_below(self, value: float = 0.0) -> float:
        """One-sided p-value that the true ``d`` is >= ``value`` (evidence that d < value)."""
        if self.exact:
            return 0.0 if self.d < value else 1.0
        if self.se is None or self.df is None:
            return 1.0
        if self.se == 0:
            return 0.0 if self.d < value else 1.0
        return float(st.t.cdf((self.d - value) / self.se, self.df))


class Stats(dict):
    """Metric name -> :class:`Stat`, plus the comparison helpers experiments use."""

    deterministic: bool = False

    # ---------------------------------------------------------------- estimates
    def _one(self, s: Stat, shift: float) -> _Estimate:
        d = s.mean + shift
        if self.deterministic:
            return _Estimate(d, 0.0, None, "deterministic", exact=True)
        if s.n < 2:
            return _Estimate(d, None, None, "one seed")
        return _Estimate(d, s.sem, s.n - 1, f"t, {s.n - 1} df")

    def _two(self, a: Stat, b: Stat, shift: float) -> _Estimate:
        d = a.mean - b.mean + shift
        if self.deterministic:
            return _Estimate(d, 0.0, None, "deterministic", exact=True)
        common = [s for s in a.seeds if s in set(b.seeds)]
        if len(common) == a.n == b.n and a.n >= 2:  # paired: the same seeds
            ia, ib = dict(zip(a.seeds, a.values)), dict(zip(b.seeds, b.values))
            diffs = Stat([ia[s] - ib[s] for s in common], common)
            return _Estimate(d, diffs.sem, diffs.n - 1, f"paired t, {diffs.n - 1} df")
        if a.n < 2 or b.n < 2:
            return _Estimate(d, None, None, "one seed")
        va, vb = a.sem**2, b.sem**2
        se = math.sqrt(va + vb)
        if se == 0:
            return _Estimate(d, 0.0, a.n + b.n - 2, "Welch t")
        df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
        return _Estimate(d, se, df, f"Welch t, {df:.1f} df")

    @staticmethod
    def _decide(description: str, est: _Estimate, what: str, metrics: list[str]) -> Check:
        ci = est.interval()
        if ci is None:
            return Check(description, None, f"{what}; {est.how}, noise unknown", 1.0, metrics)
        lo, hi = ci
        span = "" if est.exact else f" (95% CI of the difference {fmt(lo)} .. {fmt(hi)}, {est.how})"
        p_fail = est.p_below(0.0)
        if lo > 0:
            return Check(description, True, f"{what}; holds{span}", p_fail, metrics)
        if hi < 0:
            return Check(description, False, f"{what}; fails{span}", p_fail, metrics)
        word = "zero difference" if est.exact else "within noise"
        return Check(description, None, f"{what}; {word}{span}", p_fail, metrics)

    # ---------------------------------------------------------------- public checks
    def greater(self, a: str, b: str, margin: float = 0.0, description: str = "") -> Check:
        """``mean(a) > mean(b) + margin`` beyond seed noise."""
        sa, sb = self[a], self[b]
        what = f"{a} = {sa} vs {b} = {sb}" + (f" (+{fmt(margin)})" if margin else "")
        return self._decide(description or f"{a} > {b}", self._two(sa, sb, -margin), what,
                            [a, b])

    def not_worse(self, a: str, b: str, tolerance: float, description: str = "") -> Check:
        """``mean(a) >= mean(b) - tolerance`` beyond seed noise (a stated tolerance)."""
        sa, sb = self[a], self[b]
        what = f"{a} = {sa} vs {b} = {sb}, tolerance {fmt(tolerance)}"
        desc = description or f"{a} >= {b} - {fmt(tolerance)}"
        return self._decide(desc, self._two(sa, sb, tolerance), what, [a, b])

    def above(self, a: str, threshold: float, description: str = "") -> Check:
        """``mean(a) > threshold`` beyond seed noise."""
        sa = self[a]
        return self._decide(description or f"{a} > {fmt(threshold)}",
                            self._one(sa, -threshold), f"{a} = {sa} vs {fmt(threshold)}", [a])

    def below(self, a: str, threshold: float, description: str = "") -> Check:
        """``mean(a) < threshold`` beyond seed noise."""
        sa = self[a]
        est = self._one(sa, -threshold)
        flipped = _Estimate(-est.d, est.se, est.df, est.how, est.exact)
        return self._decide(description or f"{a} < {fmt(threshold)}", flipped,
                            f"{a} = {sa} vs {fmt(threshold)}", [a])

    def every_below(self, a: str, threshold: float, description: str = "") -> Check:
        """``a < threshold`` in *every* seed, not on average: for what must hold in each run
        (e.g. a theorem's count of counterexamples). One seed over the threshold fails the
        check outright."""
        sa = self[a]
        worst = max(sa.values)
        holds = worst < threshold
        detail = (f"{a} = {', '.join(fmt(v) for v in sa.values)} over seeds "
                  f"{', '.join(map(str, sa.seeds))}; "
                  + ("below" if holds else "not below") + f" {fmt(threshold)} in every seed")
        return Check(description or f"{a} < {fmt(threshold)} in every seed", holds, detail,
                     1.0 if holds else 0.0, [a])

    def within(self, a: str, b: str, tolerance: float, description: str = "") -> Check:
        """``|mean(a) - mean(b)| <= tolerance``, an equivalence test: holds when the whole
        interval of the difference lies inside ``[-tolerance, tolerance]``, fails when it
        lies wholly outside, undecided otherwise."""
        sa, sb = self[a], self[b]
        est = self._two(sa, sb, 0.0)
        desc = description or f"|{a} - {b}| <= {fmt(tolerance)}"
        what = f"|{a} - {b}| = {fmt(abs(est.d))} (tolerance {fmt(tolerance)}; {sa} vs {sb})"
        ci = est.interval()
        if ci is None:
            return Check(desc, None, f"{what}; {est.how}, noise unknown", 1.0, [a, b])
        lo, hi = ci
        span = "" if est.exact else f" (95% CI {fmt(lo)} .. {fmt(hi)}, {est.how})"
        # evidence of failing: the difference is beyond +tolerance or below -tolerance
        p_fail = min(1.0, 2 * min(1 - est.p_below(tolerance), est.p_below(-tolerance)))
        if -tolerance <= lo and hi <= tolerance:
            return Check(desc, True, f"{what}; holds{span}", p_fail, [a, b])
        if lo > tolerance or hi < -tolerance:
            return Check(desc, False, f"{what}; fails{span}", p_fail, [a, b])
        return Check(desc, None, f"{what}; undecided{span}", p_fail, [a, b])


def verdict(checks: Iterable[Check], alpha: float = ALPHA, *, numerical_claim: bool = True) -> str:
    """``reproduced`` if every check holds; ``not reproduced`` if some check fails after
    Holm's correction of the checks' ``p_fail`` at ``alpha``; else ``inconclusive``.

    ``numerical_claim=False`` (the post states nothing that measurements could refute)
    gives ``measured`` and requires ``checks`` to be empty."""
    checks = list(checks)
    if not numerical_claim:
        if checks:
            raise ValueError(f"an experiment without a numerical claim has no checks, got "
                             f"{len(checks)}")
        return MEASURED
    if not checks:
        raise ValueError("an experiment must produce at least one check")
    if all(c.holds is True for c in checks):
        return REPRODUCED
    m = len(checks)
    for rank, c in enumerate(sorted(checks, key=lambda c: c.p_fail)):
        if c.p_fail > alpha / (m - rank):
            break  # Holm: stop at the first p-value above its threshold
        if c.holds is False:
            return NOT_REPRODUCED
    return INCONCLUSIVE
