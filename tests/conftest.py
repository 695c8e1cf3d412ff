"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: tiny shapes run fastest that way, and they do not
    fight the other processes of a 2-core machine (waiting on a busy core makes a tiny
    model orders of magnitude slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.data("stsb-zh", ...)``: skip, naming the sets, when a set is absent.

    Research-use sets come from ``$KEXUE_DATA`` (or ``kexue data get``); ``make test`` runs
    the suite once with them hidden and once more, with them, for the tests marked ``data``.
    """
    from kexue.data import available

    for item in items:
        for mark in item.iter_markers("data"):
            missing = [name for name in mark.args if not available(name)]
            if missing:
                item.add_marker(pytest.mark.skip(
                    reason=f"data set(s) {', '.join(missing)} not available "
                           "(set KEXUE_DATA or run `kexue data get NAME`)"))
