"""Reverse-mode helpers against analytic derivatives."""

from __future__ import annotations

import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.errors import DataError
from tiedsci.pinn.autodiff import derivatives_1d, grad, laplacian, partial


def _points():
    gen = torch.Generator().manual_seed(0)
    return (torch.rand(30, 2, generator=gen, dtype=torch.float64) * 3).requires_grad_(True)


def test_grad_and_partial_of_analytic_function():
    x = _points()
    u = torch.sin(x[:, 0]) * torch.exp(0.5 * x[:, 1])
    g = grad(u, x)
    s, c, e = torch.sin(x[:, 0]), torch.cos(x[:, 0]), torch.exp(0.5 * x[:, 1])
    assert_allclose(g[:, 0].detach(), (c * e).detach(), rtol=1e-12)
    assert_allclose(g[:, 1].detach(), (0.5 * s * e).detach(), rtol=1e-12)
    assert_allclose(partial(u, x, 0, 3).detach(), (-c * e).detach(), rtol=1e-12)
    assert_allclose(partial(u, x, 1, 2).detach(), (0.25 * s * e).detach(), rtol=1e-12)


def test_laplacian_of_harmonic_and_non_harmonic_functions():
    x = _points()
    harmonic = torch.exp(x[:, 0]) * torch.sin(x[:, 1])
    assert_allclose(laplacian(harmonic, x).detach(), 0.0, atol=1e-12)
    u = (x[:, 0] ** 3 + x[:, 1] ** 2)[:, None]
    assert_allclose(laplacian(u, x).detach(), (6 * x[:, 0] + 2).detach(), rtol=1e-12)
    assert_allclose(laplacian(u, x, axes=(1,)).detach(), 2.0, rtol=1e-12)


def test_derivatives_1d_of_initial_condition():
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)
    d = derivatives_1d(lambda v: v**2 * torch.cos(torch.pi * v), x, 2)
    pi = torch.pi
    assert_allclose(d[1], 2 * x * torch.cos(pi * x) - pi * x**2 * torch.sin(pi * x), atol=1e-12)
    assert_allclose(d[2], 2 * torch.cos(pi * x) - 4 * pi * x * torch.sin(pi * x)
                    - pi**2 * x**2 * torch.cos(pi * x), atol=1e-12)
    assert_allclose(derivatives_1d(lambda v: 0 * v + 1.0, x, 1)[1], 0.0)


def test_helpers_reject_bad_inputs():
    x = torch.rand(5, 2)
    with pytest.raises(DataError, match="requires_grad"):
        grad(x[:, 0], x)
    xr = x.clone().requires_grad_(True)
    with pytest.raises(DataError, match="shape"):
        grad(xr.sum(1)[:3], xr)
    with pytest.raises(DataError, match="elementwise"):
        derivatives_1d(lambda v: v.sum(), torch.rand(4), 1)
