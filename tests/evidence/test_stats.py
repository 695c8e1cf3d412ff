"""Statistics behind verdicts: t intervals, pairing, Welch, equivalence, Holm."""

import math

import pytest
from scipy import stats as st

from kexue.evidence.stats import (
    INCONCLUSIVE,
    MEASURED,
    NOT_REPRODUCED,
    REPRODUCED,
    Check,
    Stat,
    Stats,
    verdict,
)


def test_paired_difference_uses_the_per_seed_differences():
    # arms differ by exactly 1 in every seed while each varies a lot across seeds:
    # paired, the difference is certain; unpaired, it would be lost in the noise
    a = Stat([10.0, 20.0, 30.0], [0, 1, 2])
    b = Stat([9.0, 19.0, 29.1], [0, 1, 2])
    check = Stats(a=a, b=b).greater("a", "b")
    assert check.holds is True and "paired t, 2 df" in check.detail
    d = [1.0, 1.0, 0.9]
    m, s = sum(d) / 3, Stat(d).std
    expected_p = st.t.cdf(m / (s / math.sqrt(3)), 2)  # evidence that a - b < 0
    assert check.p_fail == pytest.approx(expected_p)


def test_unpaired_arms_use_welch():
    a = Stat([10.0, 20.0, 30.0], [0, 1, 2])
    b = Stat([9.0, 19.0, 29.1, 15.0], [3, 4, 5, 6])
    check = Stats(a=a, b=b).greater("a", "b")
    assert check.holds is None and "Welch" in check.detail
    va, vb = a.sem**2, b.sem**2
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 3)
    assert f"{df:.1f} df" in check.detail


def test_t_critical_value_not_two_sigma():
    # mean 1, std 1, n = 3: 2 * SE = 1.155 < 1 ... < t(0.975, 2) * SE = 2.48
    s = Stat([0.0, 1.0, 2.0])
    assert s.mean - 2 * s.sem < 0  # the old 2-SE rule would also be undecided here
    above = Stats(x=Stat([1.0, 1.2, 1.4])).above("x", 0.9)
    # SE = 0.1155, t = 3.46 -> beyond 2 SE but within t(0.975, 2) = 4.30 SE
    assert above.holds is None and "within noise" in above.detail


def test_one_seed_is_undecided_unless_deterministic():
    stats = Stats(a=Stat([2.0]), b=Stat([1.0]))
    assert stats.greater("a", "b").holds is None
    stats.deterministic = True
    assert stats.greater("a", "b").holds is True
    assert stats.greater("b", "a").holds is False and stats.greater("b", "a").p_fail == 0.0


def test_below_and_not_worse():
    stats = Stats(x=Stat([0.1, 0.12, 0.11]), a=Stat([80.0, 81.0, 79.0]), b=Stat([82, 83, 81.5]))
    assert stats.below("x", 0.5).holds is True
    assert stats.below("x", 0.05).holds is False
    assert stats.not_worse("a", "b", 2.2).holds is None  # paired: 0.2, 0.2, -0.3
    assert stats.not_worse("a", "b", 10.0).holds is True
    assert stats.not_worse("a", "b", 0.0).holds is False


def test_within_is_an_equivalence_test():
    same = Stats(a=Stat([1.0, 1.1, 0.9]), b=Stat([1.02, 1.08, 0.93]))
    assert same.within("a", "b", 0.5).holds is True
    far = Stats(a=Stat([1.0, 1.1, 0.9]), b=Stat([3.0, 3.1, 2.9]))
    assert far.within("a", "b", 0.5).holds is False
    noisy = Stats(a=Stat([1.0, 3.0, -1.0]), b=Stat([1.1, 0.9, 1.0]))
    assert noisy.within("a", "b", 0.5).holds is None  # one seed would have said True before


def test_verdict_rules():
    ok = Check("a", True, "", 0.9)
    undecided = Check("b", None, "", 0.3)
    clear_fail = Check("c", False, "", 0.001)
    weak_fail = Check("d", False, "", 0.02)  # fails alone at 0.025, not after Holm with 3
    assert verdict([ok, ok]) == REPRODUCED
    assert verdict([ok, undecided]) == INCONCLUSIVE
    assert verdict([ok, clear_fail]) == NOT_REPRODUCED
    assert verdict([weak_fail]) == NOT_REPRODUCED
    assert verdict([weak_fail, ok, undecided]) == INCONCLUSIVE
    with pytest.raises(ValueError):
        verdict([])


def test_verdict_without_a_numerical_claim_is_measured():
    assert verdict([], numerical_claim=False) == MEASURED
    with pytest.raises(ValueError, match="no checks"):
        verdict([Check("a", True, "", 0.9)], numerical_claim=False)


def test_holm_false_positive_rate_stays_at_alpha():
    # 6 checks of arms that are truly equal: the chance that chance alone makes a verdict
    # "not reproduced" stays near alpha (one-sided 0.025) with Holm
    import random

    rng = random.Random(0)
    trials, hits = 400, 0
    for _ in range(trials):
        stats = Stats({f"a{i}": Stat([rng.gauss(0, 1) for _ in range(3)]) for i in range(6)})
        stats.update({f"b{i}": Stat([rng.gauss(0, 1) for _ in range(3)]) for i in range(6)})
        checks = [stats.greater(f"a{i}", f"b{i}") for i in range(6)]
        hits += verdict(checks) == NOT_REPRODUCED
    assert hits / trials <= 0.05


def test_seed_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="one seed per value"):
        Stat([1.0, 2.0], [0])


@pytest.mark.parametrize("mean, std, text", [
    (34.8312, 0.4924, "34.8 ± 0.5"),
    (34.8312, 0.1524, "34.83 ± 0.15"),
    (81.55, 0.0, "81.55"),
    (0.5012, 0.0312, "0.50 ± 0.03"),
    (1234.5, 56.0, "1230 ± 60"),
    (1234.5, 5.6, "1234 ± 6"),
    (3.399e-17, None, "3.4e-17"),
])
def test_numbers_carry_the_digits_the_noise_allows(mean, std, text):
    from kexue.evidence.stats import format_stat

    assert format_stat(mean, std) == text


def test_checks_name_the_metrics_they_decided_on():
    stats = Stats(a=Stat([1.0, 2.0]), b=Stat([0.0, 1.0]))
    assert stats.greater("a", "b").metrics == ["a", "b"]
    assert stats.above("a", 0.5).metrics == ["a"]


def test_every_below_fails_on_one_counterexample():
    stats = Stats(v=Stat([0.0, 0.0, 2.0]), w=Stat([0.0, 0.0, 0.0]))
    bad, good = stats.every_below("v", 0.5), stats.every_below("w", 0.5)
    assert bad.holds is False and bad.p_fail == 0.0 and good.holds is True
    assert verdict([bad, good]) == NOT_REPRODUCED and verdict([good]) == REPRODUCED
