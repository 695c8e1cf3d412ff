"""Run the embed tests single-threaded: the machine is shared, and intra-op threads that
wait on busy cores make tiny models orders of magnitude slower."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
