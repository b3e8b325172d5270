"""The verbs every PINN solution has: ``solve``, ``report``, ``plot``, ``save`` / ``load``;
scoped torch threads; no global state touched by plotting."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tiedsci import pinn
from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.train import torch_threads

NET = pinn.NetSpec(width=8, depth=1, rank=3, n_harmonics=2)
CFG = pinn.TrainConfig(adam_steps=12, lbfgs_steps=3, lbfgs_chunk=3, n_x=16, n_t=4,
                       n_x_lbfgs=16, n_t_lbfgs=4, n_windows=2, seed=3)
STEADY_NET = pinn.NetSpec(architecture="mlp", width=8, depth=1, n_harmonics=2)
STEADY_CFG = pinn.TrainConfig(adam_steps=10, lbfgs_steps=3, lbfgs_chunk=3, n_x=8, n_t=8,
                              n_x_lbfgs=8, n_t_lbfgs=8, dtype="float64")
X, T = np.linspace(0.0, 2 * np.pi, 23), np.linspace(0.0, 1.0, 7)


def _params(sol):
    mods = [w.field for w in sol.windows] if hasattr(sol, "windows") else [sol.field]
    return [p.detach().clone() for m in mods for p in m.parameters()]


@pytest.fixture(scope="module")
def marching():
    return pinn.solve(P.heat(0.2, trainable=True), replace(NET, boundary="shared_subnet"), CFG)


@pytest.mark.parametrize("suffix", ["", ".json", ".pt"])
def test_time_marching_solution_round_trips_exactly(marching, tmp_path, suffix):
    written = marching.save(tmp_path / f"model{suffix}")
    assert written == tmp_path / "model.json"
    again = pinn.load(tmp_path / f"model{suffix}")
    assert isinstance(again, pinn.TimeMarchingSolution)
    assert np.array_equal(again.predict(X, T), marching.predict(X, T))  # bit for bit
    for a, b in zip(_params(marching), _params(again)):
        assert a.dtype == b.dtype and torch.equal(a, b)
    for wa, wb in zip(marching.windows, again.windows):
        for a, b in zip(wa.boundary_net.parameters(), wb.boundary_net.parameters()):
            assert torch.equal(a, b)
        assert (wa.t_start, wa.t_end, wa.subtract) == (wb.t_start, wb.t_end, wb.subtract)
    assert again.theta.tobytes() == marching.theta.tobytes()
    assert again.history == marching.history
    assert (again.net, again.train, again.completed) == (marching.net, marching.train, True)
    assert again.layout.free_names == marching.layout.free_names == ("heat.nu",)


def test_saved_files_are_json_npz_and_weights_only_torch(marching, tmp_path):
    marching.save(tmp_path / "m")
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["format"] == "tiedsci.pinn.solution/1" and doc["recipe"][0] == "heat"
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        assert data["theta"].tobytes() == marching.theta.tobytes()
    weights = torch.load(tmp_path / "m.pt", weights_only=True)
    assert len(weights["windows"]) == CFG.n_windows


def test_steady_solution_with_dirichlet_values_round_trips_exactly(tmp_path):
    prob = P.helmholtz_2d(kappa=1.0, y=(0.0, math.pi), periodic=("x",), trainable=True)
    sol = pinn.solve(prob, STEADY_NET, STEADY_CFG, dirichlet={"y": (0.5, -1.5)})
    assert isinstance(sol, pinn.SteadySolution)
    sol.save(tmp_path / "steady")
    again = pinn.load(tmp_path / "steady")
    assert isinstance(again, pinn.SteadySolution)
    y = np.linspace(0.0, math.pi, 5)
    assert np.array_equal(again.predict(X, y), sol.predict(X, y))
    assert again.dirichlet == sol.dirichlet == {"y": (0.5, -1.5)}
    assert again.theta.tobytes() == sol.theta.tobytes() and again.history == sol.history


def test_spectral_solution_has_the_same_verbs(tmp_path):
    from matplotlib.figure import Figure

    sol = pinn.solve_periodic(pinn.spectral_pde("burgers", 32, nu=0.05), np.sin,
                              (0.0, 2 * np.pi), 32, np.linspace(0.0, 0.5, 6), 1e-2)
    assert sol.save(tmp_path / "ref") == tmp_path / "ref.json"
    assert not (tmp_path / "ref.pt").exists()  # no network: JSON and npz only
    again = pinn.load(tmp_path / "ref")
    assert isinstance(again, pinn.SpectralSolution)
    for k in "xtu":
        assert np.array_equal(getattr(again, k), getattr(sol, k))
    assert "32 points" in sol.report() and "6 times" in sol.report()
    assert isinstance(sol.plot(), Figure)


def test_a_user_problem_must_be_passed_back_to_load(tmp_path):
    prob = P.custom("wave", lambda d, c, p: d["u_t"] + d["u_x"], (0.0, 1.0), (0.0, 0.5),
                    lambda v: torch.sin(2 * math.pi * v))
    sol = pinn.solve(prob, NET, replace(CFG, n_windows=1))
    sol.save(tmp_path / "user")
    with pytest.raises(DataError, match="user problem 'wave'.*load\\(path, problem\\)"):
        pinn.load(tmp_path / "user")
    with pytest.raises(DataError, match="not 'heat'"):
        pinn.load(tmp_path / "user", P.heat())
    again = pinn.load(tmp_path / "user", prob)
    x = np.linspace(0.0, 1.0, 9)
    assert np.array_equal(again.predict(x, T[:3]), sol.predict(x, T[:3]))


@pytest.mark.parametrize("suffix", [".json", ".npz", ".pt"])
def test_a_damaged_file_of_a_saved_solution_is_named(marching, tmp_path, suffix):
    marching.save(tmp_path / "m")
    damaged = tmp_path / f"m{suffix}"
    damaged.write_bytes(damaged.read_bytes()[:40])
    with pytest.raises(DataError, match=f"m\\{suffix}"):
        pinn.load(tmp_path / "m")


def test_load_refuses_a_problem_with_other_free_parameters(marching, tmp_path):
    marching.save(tmp_path / "m")
    with pytest.raises(DataError, match="free parameters"):
        pinn.load(tmp_path / "m", P.heat(0.2))


def test_report_names_problem_network_status_and_coefficients(marching):
    text = marching.report()
    assert "'heat'" in text and "2 time window(s)" in text and "completed" in text
    assert "heat.nu" in text and "final loss" in text
    nu = float(marching.coefficients["heat.nu"])
    assert f"{nu:.4g}"[:4] in text


def test_plot_returns_figures_without_touching_pyplot(marching, tmp_path):
    import matplotlib
    from matplotlib.figure import Figure

    backend = matplotlib.get_backend()
    import matplotlib.pyplot as plt

    open_before = plt.get_fignums()
    fig = marching.plot(path=tmp_path / "u.png")
    loss = marching.plot(what="loss")
    assert isinstance(fig, Figure) and isinstance(loss, Figure)
    assert len(fig.axes) == 2  # the prediction and its colour bar (no reference)
    assert (tmp_path / "u.png").stat().st_size > 0
    ref = pinn.Reference(X, T, np.zeros((T.size, X.size)), "zeros")
    assert len(marching.plot(ref).axes) == 6  # prediction, reference, error and colour bars
    assert plt.get_fignums() == open_before and matplotlib.get_backend() == backend
    with pytest.raises(DataError, match="what"):
        marching.plot(what="phase portrait")


def test_solve_dispatches_and_checks_its_arguments():
    with pytest.raises(DataError, match="steady problems only"):
        pinn.solve(P.heat(), NET, CFG, dirichlet={"x": (0.0, 0.0)})
    with pytest.raises(DataError, match="time-marching problems only"):
        pinn.solve(P.helmholtz_2d(), STEADY_NET, STEADY_CFG, max_steps=3)
    cfg = replace(STEADY_CFG, adam_steps=3, lbfgs_steps=0)
    a = pinn.solve(P.helmholtz_2d(), STEADY_NET, cfg)
    b = pinn.solve_steady(P.helmholtz_2d(), STEADY_NET, cfg)
    for pa, pb in zip(_params(a), _params(b)):
        assert torch.equal(pa, pb)


def test_torch_threads_are_restored_even_after_an_error():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), torch_threads(other):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    bad = P.custom("c", lambda d, c, p: d["u_t"] * torch.sqrt(d["u"] - 1e6), (0.0, 1.0),
                   (0.0, 1.0), lambda v: torch.sin(2 * math.pi * v))
    with pytest.raises(Exception, match="not finite"):
        pinn.solve(bad, NET, replace(CFG, threads=other))
    assert torch.get_num_threads() == before


def test_fourier_x_factor_with_harmonic_decay_round_trips_exactly(tmp_path):
    """The decay factors are rebuilt from the spec (not saved): the reloaded model predicts the
    same bits."""
    net = replace(NET, x_depth=0, n_harmonics=4, harmonic_decay=2.0)
    sol = pinn.solve(P.kdv(), net, replace(CFG, n_windows=1))
    sol.save(tmp_path / "kdv")
    again = pinn.load(tmp_path / "kdv")
    assert again.net == net
    assert "Fourier-series x-factors (4 harmonics)" in again.report()
    x = np.linspace(-1.0, 1.0, 9)
    assert np.array_equal(again.predict(x, T), sol.predict(x, T))
