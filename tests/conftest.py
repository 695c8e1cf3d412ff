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
