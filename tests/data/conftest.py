"""Shared fixtures for the kexue.data tests."""

from __future__ import annotations

import pytest

from kexue.data import registry


@pytest.fixture
def only_shipped(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Resolve files from the repository's shipped data/ folder only."""
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setattr(registry, "SHARED_ROOT", tmp_path / "no-shared")


@pytest.fixture
def only_shared(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """Resolve files from ../shared/data only (skip where that folder does not exist)."""
    if not registry.SHARED_ROOT.is_dir():
        pytest.skip(f"shared data folder {registry.SHARED_ROOT} not present")
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setattr(registry, "SHIPPED_ROOT", tmp_path / "no-shipped")


@pytest.fixture
def no_roots(monkeypatch: pytest.MonkeyPatch, tmp_path):
    """No data anywhere: every root points at an empty folder."""
    monkeypatch.delenv("KEXUE_DATA", raising=False)
    monkeypatch.setattr(registry, "SHIPPED_ROOT", tmp_path / "empty-shipped")
    monkeypatch.setattr(registry, "SHARED_ROOT", tmp_path / "empty-shared")

