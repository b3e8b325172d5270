"""Steady periodic problems: 2-D Helmholtz / Poisson, hard Dirichlet transform."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.steady import DirichletTransform, solve_steady

NET = NetSpec(architecture="mlp", width=16, depth=2, n_harmonics=2)
CFG = TrainConfig(adam_steps=150, lbfgs_steps=40, lbfgs_chunk=20, lr=5e-3, n_x=16, n_t=16,
                  n_x_lbfgs=24, n_t_lbfgs=24, dtype="float64")


def test_helmholtz_2d_learns_manufactured_solution_and_is_periodic():
    prob = P.helmholtz_2d(kappa=1.0)
    sol = solve_steady(prob, NET, CFG)
    x = np.linspace(0, 2 * np.pi, 17)
    u = sol.predict(x, x)
    exact = np.sin(x)[None, :] * np.cos(2 * x)[:, None]
    err = np.linalg.norm(u - exact) / np.linalg.norm(exact)
    assert err < 0.1, err
    assert_allclose(u[:, 0], u[:, -1], atol=1e-12)  # x = 0 and x = 2 pi: tied exactly
    assert_allclose(u[0, :], u[-1, :], atol=1e-12)


def test_poisson_with_dirichlet_axis_meets_boundary_values_exactly():
    prob = P.poisson_2d(forcing=lambda c: 2 * torch.sin(c["x"]) * torch.sin(c["y"]),
                        y=(0.0, np.pi), periodic=("x",))
    cfg = TrainConfig(adam_steps=5, lbfgs_steps=0, n_x=8, n_t=8, dtype="float64")
    sol = solve_steady(prob, NET, cfg, dirichlet={"y": (0.5, -1.5)})
    x = np.linspace(0, 2 * np.pi, 9)
    u = sol.predict(x, np.array([0.0, np.pi]))
    assert_allclose(u[0], 0.5, atol=1e-12)
    assert_allclose(u[1], -1.5, atol=1e-12)


def test_dirichlet_transform_jets_match_finite_differences():
    tr = DirichletTransform(axis=1, lower=0.0, upper=2.0, value_lower=1.0, value_upper=3.0)

    def n_fn(y):
        return torch.sin(3 * y)

    def u_fn(y):
        pts = torch.stack([torch.zeros_like(y), y], 1)
        return tr.apply(pts, (n_fn(y),), along=1)[0]

    y = torch.tensor([0.3, 1.1], dtype=torch.float64)
    pts = torch.stack([torch.zeros_like(y), y], 1)
    jet = tr.apply(pts, (n_fn(y), 3 * torch.cos(3 * y), -9 * torch.sin(3 * y)), along=1)
    h = 1e-5
    assert_allclose(jet[1], (u_fn(y + h) - u_fn(y - h)) / (2 * h), atol=1e-8)
    assert_allclose(jet[2], (u_fn(y + h) - 2 * u_fn(y) + u_fn(y - h)) / h**2, atol=1e-4)


def test_steady_solver_rejects_bad_setups():
    with pytest.raises(DataError, match="steady"):
        solve_steady(P.heat(0.1), NET, CFG)
    with pytest.raises(DataError, match="periodic"):
        solve_steady(P.poisson_2d(), NET, CFG, dirichlet={"x": (0.0, 0.0)})
    with pytest.raises(DataError, match="mlp"):
        solve_steady(P.poisson_2d(), NetSpec(), CFG)


def test_steady_solve_monitors_a_reference_and_stops_at_the_target():
    from dataclasses import replace

    from tiedsci.pinn import solve
    from tiedsci.pinn.budget import time_to_decades
    from tiedsci.pinn.reference import Reference

    x = np.linspace(0, 2 * np.pi, 17)
    ref = Reference(x, x, np.sin(x)[None, :] * np.cos(2 * x)[:, None], name="manufactured")
    cfg = replace(CFG, monitor_every=10)
    sol = solve(P.helmholtz_2d(kappa=1.0), NET, cfg, reference=ref)
    records = [h for h in sol.history if h["phase"] == "monitor"]
    assert records and all(np.isfinite(h["error"]) for h in records)
    last = np.linalg.norm(sol.predict(x, x) - ref.u) / np.linalg.norm(ref.u)
    assert records[-1]["error"] == pytest.approx(last, rel=1e-9)
    assert "1e-1" in time_to_decades(sol.history)
    stop = solve(P.helmholtz_2d(kappa=1.0), NET, replace(cfg, target_error=0.5), reference=ref)
    n_stop = sum(h["phase"] == "adam" for h in stop.history)
    assert n_stop < sum(h["phase"] == "adam" for h in sol.history)
    assert [h for h in stop.history if h["phase"] == "monitor"][-1]["error"] <= 0.5
