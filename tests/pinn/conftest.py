"""Fixtures for the PINN tests: one torch thread (small models on a shared machine)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
