"""Fixtures of the reliability suite: seeded generators, one torch thread, and the helper that
checks an error is a clear one (a tiedsci or builtin error whose message names the culprit)."""

from __future__ import annotations

import re

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Small models on a shared machine: a second torch thread costs more than it gives."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240607)


def raises_naming(exc_type, *needles: str):
    """``pytest.raises(exc_type)`` whose message must contain every needle (case-insensitive,
    plain text, not regular expressions)."""
    pattern = "".join(f"(?=.*{re.escape(n)})" for n in needles)
    return pytest.raises(exc_type, match=re.compile(pattern, re.IGNORECASE | re.DOTALL))
