"""Shared fixtures for the HMM tests: seeded generators and hmmlearn-sampled data."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small per-step tensor ops are slower with several threads on a loaded CPU."""
    try:
        import torch
    except ImportError:  # pragma: no cover
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


def random_gaussian_truth(rng: np.random.Generator, k: int, d: int, kind: str) -> dict:
    """Random well-separated Gaussian HMM parameters in hmmlearn's shapes."""
    covars = {
        "diag": rng.uniform(0.5, 2.0, (k, d)),
        "spherical": rng.uniform(0.5, 2.0, k),
        "full": np.array([_spd(rng, d) for _ in range(k)]),
        "tied": _spd(rng, d),
    }[kind]
    return {
        "startprob_": rng.dirichlet(np.ones(k)),
        "transmat_": rng.dirichlet(np.full(k, 3.0), size=k),
        "means_": rng.normal(scale=2.0, size=(k, d)),
        "covars_": covars,
    }


def _spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.normal(size=(d, d)) * 0.4
    return a @ a.T + np.eye(d) * rng.uniform(0.5, 1.5)


def set_random_gmm(model, rng: np.random.Generator, kind: str, k: int, m: int, d: int):
    """Random GMM-HMM parameters in hmmlearn's shapes, set on ``model``; returns it."""
    model.startprob_ = rng.dirichlet(np.ones(k))
    model.transmat_ = rng.dirichlet(np.full(k, 3.0), size=k)
    model.weights_ = rng.dirichlet(np.ones(m), size=k)
    model.means_ = rng.normal(scale=2.0, size=(k, m, d))
    model.covars_ = {"diag": rng.uniform(0.5, 2, (k, m, d)),
                     "spherical": rng.uniform(0.5, 2, (k, m)),
                     "full": np.tile(np.eye(d), (k, m, 1, 1)),
                     "tied": np.tile(np.eye(d), (k, 1, 1))}[kind]
    return model
