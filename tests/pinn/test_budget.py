"""Budgets: time / step limits, early stop at a target error or a plateau, time to decades."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.budget import time_to_decades
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.reference import Reference
from tiedsci.pinn.solvers import solve

NET = NetSpec(width=12, depth=2, rank=4, n_harmonics=2, time_frequencies=2)
CFG = TrainConfig(adam_steps=400, lbfgs_steps=40, lbfgs_chunk=10, lr=1e-2, n_x=32, n_t=8,
                  n_x_lbfgs=32, n_t_lbfgs=8, monitor_every=20, dtype="float64")


def _heat_reference(nu: float = 0.2) -> Reference:
    x = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    t = np.linspace(0, 1, 21)
    return Reference(x, t, np.exp(-nu * t)[:, None] * np.sin(x)[None, :], "heat")


def _adam_steps(sol) -> int:
    return max(h["step"] for h in sol.history if h["phase"] == "adam")


def test_stops_at_the_target_error_and_records_each_check():
    ref = _heat_reference()
    sol = solve(P.heat(0.2), NET, replace(CFG, target_error=0.05), reference=ref)
    checks = [h for h in sol.history if h["phase"] == "monitor"]
    assert checks and checks[-1]["error"] <= 0.05
    assert all(h["error"] > 0.05 for h in checks[:-1])
    assert _adam_steps(sol) < CFG.adam_steps
    assert not any(h["phase"] == "lbfgs" for h in sol.history)
    walls = [h["wall"] for h in checks]
    assert walls == sorted(walls)


def test_plateau_ends_the_adam_phase():
    sol = solve(P.heat(0.2), NET, replace(CFG, lr=1e-12, lbfgs_steps=0, plateau_steps=50))
    assert 50 <= _adam_steps(sol) <= 70
    full = solve(P.heat(0.2), NET, replace(CFG, lr=1e-12, lbfgs_steps=0, adam_steps=120))
    assert _adam_steps(full) == 120


def test_time_to_decades_reads_the_first_crossing_of_each_decade():
    hist = [{"phase": "adam", "loss": 1.0},
            {"phase": "monitor", "error": 0.5, "wall": 1.0, "t_max": 1.0},
            {"phase": "monitor", "error": 0.05, "wall": 2.0, "t_max": 1.0},
            {"phase": "monitor", "error": 0.2, "wall": 3.0, "t_max": 1.0},
            {"phase": "monitor", "error": 4e-4, "wall": 4.0, "t_max": 1.0},
            {"phase": "monitor", "error": 1e-5, "wall": 5.0, "t_max": 0.5}]
    assert time_to_decades(hist) == {"1e-1": 2.0, "1e-2": 4.0, "1e-3": 4.0, "1e-4": 5.0,
                                     "1e-5": 5.0}
    assert time_to_decades(hist, full_t=1.0) == {"1e-1": 2.0, "1e-2": 4.0, "1e-3": 4.0}


def test_steps_and_time_budget_reach_the_solver():
    prob = P.poisson_2d()
    net = NetSpec(architecture="mlp", width=8, depth=2, n_harmonics=2)
    sol = solve(prob, net, replace(CFG, adam_fraction=0.5), steps=30)
    assert (sol.train.adam_steps, sol.train.lbfgs_steps) == (15, 15)
    assert 10 <= _adam_steps(sol) <= 15  # Adam logs every 10 steps
    assert solve(prob, net, CFG, steps=4, time_budget=7.0).train.budget_s == 7.0
    marched = solve(P.heat(0.2), NET, CFG, steps=25)
    assert not marched.completed and _adam_steps(marched) <= 25
    with pytest.raises(DataError, match="steps"):
        solve(prob, net, CFG, steps=0)
    with pytest.raises(DataError, match="target_error"):
        TrainConfig(target_error=-1.0)
