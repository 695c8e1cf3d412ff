"""Helpers shared by the kexue.data tests."""

from __future__ import annotations

import pytest

from kexue.data import registry


def requires(name: str):
    """Skip a test when a research-use set is absent (e.g. a fresh clone without ../shared);
    in a checkout that has ../shared/data the files must be there, so nothing is skipped."""
    return pytest.mark.skipif(
        not registry.SHARED_ROOT.is_dir() and not registry.available(name),
        reason=f"data set {name!r} not available (set KEXUE_DATA)",
    )
