"""Residuals of the built-in problems on exact solutions; coefficients in the registry."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.core import Registry
from tiedsci.errors import DataError, DeclarationError
from tiedsci.pinn import problem as P


def _values(prob):
    layout = prob.registry.compile()
    return prob.coefficient_values(layout.unpack(torch.as_tensor(layout.theta0)))


def test_advection_residual_vanishes_on_exact_solution():
    prob = P.advection(30.0)
    x = torch.linspace(0, 2 * math.pi, 17, dtype=torch.float64)[None, :]
    t = torch.linspace(0, 1, 5, dtype=torch.float64)[:, None]
    ph = x - 30.0 * t
    d = {"u": torch.sin(ph), "u_x": torch.cos(ph), "u_t": -30.0 * torch.cos(ph)}
    r = prob.residual(d, {"x": x, "t": t}, _values(prob))
    assert_allclose(r, 0.0, atol=1e-12)
    d["u_t"] = -29.0 * torch.cos(ph)
    assert float(prob.residual(d, {"x": x, "t": t}, _values(prob)).abs().max()) > 0.5


def test_heat_burgers_kdv_allen_cahn_residuals_of_manufactured_fields():
    x = torch.linspace(-1, 1, 9, dtype=torch.float64)[None, :]
    t = torch.linspace(0, 1, 4, dtype=torch.float64)[:, None]
    nu = 0.2
    # heat: u = exp(-nu pi^2 t) sin(pi x)
    e = torch.exp(-nu * math.pi**2 * t)
    d = {"u": e * torch.sin(math.pi * x), "u_t": -nu * math.pi**2 * e * torch.sin(math.pi * x),
         "u_x": math.pi * e * torch.cos(math.pi * x),
         "u_xx": -math.pi**2 * e * torch.sin(math.pi * x)}
    prob = P.heat(nu, x=(-1, 1))
    assert_allclose(prob.residual(d, {}, _values(prob)), 0.0, atol=1e-12)
    # Allen-Cahn with u = 1 (a steady state) and u = 0
    ac = P.allen_cahn()
    for c in (1.0, 0.0, -1.0):
        one = torch.full((4, 9), c, dtype=torch.float64)
        z = torch.zeros_like(one)
        assert_allclose(ac.residual({"u": one, "u_t": z, "u_xx": z}, {}, _values(ac)), 0.0)
    # KdV: constant state u = c with linear wave: u = c is a solution
    kd = P.kdv()
    one = torch.full((4, 9), 0.7, dtype=torch.float64)
    z = torch.zeros_like(one)
    assert_allclose(kd.residual({"u": one, "u_t": z, "u_x": z, "u_xxx": z}, {}, _values(kd)), 0)
    # Burgers: u = x / (1 + t) solves u_t + u u_x = nu u_xx (not periodic, residual only)
    bu = P.burgers(0.01)
    u = x / (1 + t)
    d = {"u": u, "u_t": -x / (1 + t) ** 2, "u_x": 1 / (1 + t) + 0 * x, "u_xx": 0 * u}
    assert_allclose(bu.residual(d, {}, _values(bu)), 0.0, atol=1e-12)


def test_coefficients_are_registry_parameters_trainable_and_tied():
    reg = Registry()
    heat = P.heat(0.1, registry=reg, trainable=True)
    burg = P.burgers(0.3, x=(0, 2 * math.pi), registry=reg, trainable=True)
    reg.tie(reg["heat.nu"], reg["burgers.nu"])  # one viscosity for both equations
    layout = reg.compile()
    assert layout.n_free == 1
    values = layout.unpack(torch.tensor([0.25], dtype=torch.float64))
    assert float(heat.coefficient_values(values)["nu"]) == 0.25
    assert float(burg.coefficient_values(values)["nu"]) == 0.25
    assert heat.periodic == ("x",)
    fixed = P.advection(30.0)
    assert fixed.registry.compile().n_free == 0


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "abc"])
def test_nan_coefficient_raises(bad):
    with pytest.raises(DataError, match="speed"):
        P.advection(bad)
    with pytest.raises(ValueError):
        P.allen_cahn(eps=bad)


def test_bad_domains_raise():
    with pytest.raises(DataError, match="period"):
        P.advection(1.0, x=(1.0, 1.0))
    with pytest.raises(DataError, match="period"):
        P.heat(0.1, x=(2.0, 1.0))
    with pytest.raises(DataError, match="t0 < t1"):
        P.heat(0.1, t=(1.0, 0.0))
    reg = Registry()
    P.heat(0.1, registry=reg)
    with pytest.raises(DataError, match="already declares"):
        P.advection(1.0, x=(0, 1), registry=reg)
    with pytest.raises(DeclarationError):
        reg.declare("heat.nu", 1.0)


def test_steady_problems_residual_on_manufactured_solution():
    for prob in (P.poisson_2d(), P.helmholtz_2d(kappa=2.0)):
        x = torch.linspace(0, 6, 7, dtype=torch.float64)
        y = torch.linspace(0, 6, 7, dtype=torch.float64)
        c = {"x": x, "y": y}
        u = prob.exact(c)
        d = {"u": u, "u_xx": -u, "u_yy": -4 * u}
        assert_allclose(prob.residual(d, c, _values(prob)), 0.0, atol=1e-12)
        assert set(prob.periodic) == {"x", "y"}
    assert P.poisson_2d().gauge and not P.helmholtz_2d().gauge
    assert np.isclose(float(P.poisson_2d(periodic=("x",)).registry.compile().n_free), 0)
