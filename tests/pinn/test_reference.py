"""Reference grids, metrics and their validation."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.evaluate import evaluate, relative_l2
from tiedsci.pinn.reference import Reference, load_reference, spectral_reference


def test_bundled_allen_cahn_layout_and_initial_condition():
    ref = load_reference("allen_cahn")
    assert ref.u.shape == (201, 512)
    assert_allclose(ref.x[:2], [-1.0, -1.0 + 2 / 512])
    assert_allclose(ref.u[0], ref.x**2 * np.cos(np.pi * ref.x), atol=1e-12)
    kdv = load_reference("kdv")
    assert_allclose(kdv.u[0], np.cos(np.pi * kdv.x), atol=1e-12)


def test_spectral_reference_of_advection_is_exact():
    ref = spectral_reference(P.advection(3.0), n_x=64, n_t=11, dt=0.01)
    assert_allclose(ref.u, np.sin(ref.x[None, :] - 3.0 * ref.t[:, None]), atol=1e-11)


def test_wrong_reference_grid_shape_raises():
    with pytest.raises(DataError, match=r"shape \(len\(t\), len\(x\)\)"):
        Reference(np.zeros(4), np.zeros(3), np.zeros((4, 3)))
    with pytest.raises(DataError, match="not finite"):
        Reference(np.zeros(2), np.zeros(1), np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match="unknown reference"):
        load_reference("navier_stokes")


class _Exact:
    """A predictor returning the exact advection solution plus a known perturbation."""

    def __init__(self, eps=0.0, shape=None):
        self.eps, self.shape = eps, shape

    def predict(self, x, t):
        u = np.sin(x[None, :] - 3.0 * t[:, None]) + self.eps
        return u if self.shape is None else u[: self.shape[0], : self.shape[1]]

    def boundary_mismatch(self, t, order=0):
        return 0.0


def test_evaluate_metrics_and_shape_check():
    ref = spectral_reference(P.advection(3.0), n_x=32, n_t=5, dt=0.05)
    metrics, u = evaluate(_Exact(), ref)
    assert metrics.rel_l2 < 1e-11 and u.shape == ref.u.shape
    metrics, _ = evaluate(_Exact(eps=0.01), ref)
    assert_allclose(metrics.max_abs, 0.01, rtol=1e-9)
    assert_allclose(metrics.rel_l2, 0.01 * np.sqrt(ref.u.size) / np.linalg.norm(ref.u), rtol=1e-9)
    with pytest.raises(DataError, match="shape"):
        evaluate(_Exact(shape=(3, 32)), ref)
    with pytest.raises(DataError, match="shape"):
        relative_l2(np.zeros((2, 2)), np.ones((2, 3)))
