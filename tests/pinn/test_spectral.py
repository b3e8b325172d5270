"""Spectral ETDRK4 solver against exact solutions and Raissi's reference data."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.special import ive

from tiedsci.errors import DataError
from tiedsci.pinn.reference import load_reference
from tiedsci.pinn.spectral import etdrk4_coefficients, solve_periodic, spectral_pde


def test_advection_matches_exact_translation():
    t = np.linspace(0, 1, 11)
    sol = solve_periodic(spectral_pde("advection", 64, speed=30.0), np.sin, (0, 2 * np.pi), 64,
                         t, 1e-2)
    exact = np.sin(sol.x[None, :] - 30.0 * t[:, None])
    assert_allclose(sol.u, exact, atol=1e-11)


def test_heat_matches_exact_decay_of_each_mode():
    nu = 0.3
    t = np.linspace(0, 0.5, 6)

    def u0(x):
        return np.sin(x) + 0.5 * np.cos(3 * x) - 0.2 * np.sin(7 * x)

    sol = solve_periodic(spectral_pde("heat", 64, nu=nu), u0, (0, 2 * np.pi), 64, t, 1e-2)
    x = sol.x[None, :]
    tt = t[:, None]
    exact = (np.exp(-nu * tt) * np.sin(x) + 0.5 * np.exp(-9 * nu * tt) * np.cos(3 * x)
             - 0.2 * np.exp(-49 * nu * tt) * np.sin(7 * x))
    assert_allclose(sol.u, exact, atol=1e-12)


def test_burgers_matches_cole_hopf_series():
    # u0 = sin x, nu: Cole-Hopf phi0 = exp(cos(x) / (2 nu)) = I0(a) + 2 sum I_n(a) cos(n x)
    nu, a = 0.1, 0.5 / 0.1
    t = np.array([0.0, 0.2, 0.5])
    sol = solve_periodic(spectral_pde("burgers", 128, nu=nu), np.sin, (0, 2 * np.pi), 128, t,
                         1e-3)
    n = np.arange(1, 60)[:, None, None]
    x = sol.x[None, None, :]
    tt = t[None, :, None]
    decay = ive(n, a) * np.exp(-nu * n**2 * tt)
    phi = ive(0, a) + 2 * np.sum(decay * np.cos(n * x), axis=0)
    phi_x = -2 * np.sum(n * decay * np.sin(n * x), axis=0)
    exact = -2 * nu * phi_x / phi
    assert_allclose(sol.u, exact, atol=1e-9)


def test_allen_cahn_reproduces_ac_mat_on_first_tenth():
    ref = load_reference("allen_cahn")
    sol = solve_periodic(spectral_pde("allen_cahn", 512, eps=1e-4, gamma=5.0),
                         lambda x: x**2 * np.cos(np.pi * x), (-1, 1), 512, ref.t[:21], 1e-4)
    assert_allclose(sol.x, ref.x, atol=1e-15)
    err = np.linalg.norm(sol.u - ref.u[:21]) / np.linalg.norm(ref.u[:21])
    assert err < 1e-10


def test_kdv_reproduces_kdv_mat_on_first_tenth():
    ref = load_reference("kdv")
    sol = solve_periodic(spectral_pde("kdv", 512, lambda1=1.0, lambda2=0.0025),
                         lambda x: np.cos(np.pi * x), (-1, 1), 512, ref.t[:21], 1e-4)
    err = np.linalg.norm(sol.u - ref.u[:21]) / np.linalg.norm(ref.u[:21])
    assert err < 1e-10


def test_contour_coefficients_match_direct_formula_for_large_symbols():
    lin = np.array([-5.0, -50.0, 3.0])
    dt = 0.1
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(lin, dt)
    z = dt * lin
    assert_allclose(q.real, dt * (np.exp(z / 2) - 1) / z, rtol=1e-12)
    assert_allclose(f1.real, dt * (-4 - z + np.exp(z) * (4 - 3 * z + z**2)) / z**3, rtol=1e-10)
    assert_allclose(f3.real, dt * (-4 - 3 * z - z**2 + np.exp(z) * (4 - z)) / z**3, rtol=1e-10)


@pytest.mark.parametrize("kwargs, match", [
    (dict(domain=(1.0, 1.0)), "period"),
    (dict(dt=-1.0), "dt"),
    (dict(t_eval=np.array([0.0, 0.015])), "whole number"),
])
def test_bad_inputs_raise(kwargs, match):
    args = dict(pde=spectral_pde("heat", 16, nu=0.1), u0=np.sin, domain=(0, 2 * np.pi),
                n_x=16, t_eval=np.array([0.0, 0.1]), dt=0.01)
    args.update(kwargs)
    with pytest.raises(DataError, match=match):
        solve_periodic(**args)


def test_unknown_equation_and_nan_coefficient_raise():
    with pytest.raises(DataError, match="unknown equation"):
        spectral_pde("navier_stokes", 16)
    with pytest.raises(DataError, match="not finite"):
        spectral_pde("heat", 16, nu=float("nan"))
    with pytest.raises(DataError, match="missing"):
        spectral_pde("allen_cahn", 16, eps=1e-4)
