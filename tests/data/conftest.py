"""Fixtures for the kexue.data tests: which data roots are visible."""

from __future__ import annotations

import pytest

from kexue.data import registry


@pytest.fixture
def only_bundled(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Resolve files from the data bundled in the package only."""
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "empty-cache"))


@pytest.fixture
def no_roots(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No data anywhere: no KEXUE_DATA, an empty bundle and an empty user cache."""
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setenv("KEXUE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(registry, "BUNDLED_ROOT", tmp_path / "empty-bundle")


@pytest.fixture
def research_root() -> str:
    """The first ``$KEXUE_DATA`` folder (the research-use sets), or skip."""
    import os

    roots = [p for p in os.environ.get("KEXUE_DATA", "").split(os.pathsep) if p]
    if not roots:
        pytest.skip("KEXUE_DATA not set")
    return roots[0]
