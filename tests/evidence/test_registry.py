"""Every registered experiment declares its setting and is tested against a false claim."""

from pathlib import Path

import pytest

from kexue.evidence.base import FIDELITIES
from kexue.evidence.registry import load_all

EXPERIMENTS = load_all()
TESTS = Path(__file__).resolve().parents[1] / "experiments"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_claim_declares_fidelity_and_both_settings(name):
    claim = EXPERIMENTS[name].claim
    assert claim.fidelity in FIDELITIES, f"{name}: fidelity {claim.fidelity!r}"
    assert claim.post_setting.strip() and claim.our_setting.strip(), f"{name}: settings"
    if claim.fidelity == "substituted":
        assert claim.substitution.strip(), f"{name}: substituted without saying why"


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_each_experiment_has_a_test_where_the_claim_fails(name):
    if not EXPERIMENTS[name].numerical_claim:
        pytest.skip(f"{name} states no numerical claim: its outcome is 'measured'")
    module = EXPERIMENTS[name].__module__.rsplit(".", 1)[-1]
    path = TESTS / f"test_{module}.py"
    assert path.is_file(), f"{name}: no {path.name}"
    text = path.read_text(encoding="utf-8")
    assert "NOT_REPRODUCED" in text or '"not reproduced"' in text, (
        f"{name}: {path.name} never feeds measurements for which the claim is false")
