"""PINN problems, specs, solvers and checkpoints under bad input and failed writes.

Complements ``tests/pinn`` (bad specs and domains, NaN coefficients, exact resume after an
interruption): here non-numeric specs, user problems (residuals, initial conditions that are
NaN or polynomial), non-finite losses, damaged or foreign checkpoints, atomic checkpoint and
model writes, and bit-exact checkpoint round trips.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.reliability.conftest import raises_naming
from tiedsci.errors import CheckpointError, DataError, ModelError, UnknownParameterError
from tiedsci.pinn import NetSpec, TrainConfig, solve_time_marching
from tiedsci.pinn import problem as P
from tiedsci.pinn.outputs import save_model

NET = NetSpec(width=6, depth=1, rank=2, n_harmonics=2)
CFG = TrainConfig(adam_steps=6, lbfgs_steps=3, lbfgs_chunk=3, n_x=16, n_t=4, n_x_lbfgs=16,
                  n_t_lbfgs=4, n_windows=2, seed=1)


def _params(sol):
    return [p.detach().clone() for w in sol.windows for p in w.field.parameters()]


# ---------------------------------------------------------------------- specs
@pytest.mark.parametrize("cls,kw,needle", [
    (NetSpec, {"width": "abc"}, "width"),
    (NetSpec, {"depth": None}, "depth"),
    (NetSpec, {"time_frequencies": math.nan}, "time_frequencies"),
    (NetSpec, {"time_frequencies": "2"}, "time_frequencies"),
    (NetSpec, {"ck": -1}, "ck"),
    (NetSpec, {"ck": 2.5}, "ck"),
    (TrainConfig, {"lr": "fast"}, "lr"),
    (TrainConfig, {"lr": None}, "lr"),
    (TrainConfig, {"n_x": math.inf}, "n_x"),
    (TrainConfig, {"seed": "a"}, "seed"),
    (TrainConfig, {"seed": 1.5}, "seed"),
    (TrainConfig, {"budget_s": "10"}, "budget_s"),
])
def test_non_numeric_specs_name_the_field(cls, kw, needle):
    with raises_naming(DataError, needle):
        cls(**kw)


def test_an_unknown_device_is_named():
    with raises_naming(ValueError, "device", "tpu9"):
        solve_time_marching(P.heat(), NET, replace(CFG, device="tpu9"))


# ---------------------------------------------------------------------- problems
def _residual(d, c, p):
    return d["u_t"] - 0.1 * d["u_xx"]


@pytest.mark.parametrize("call,needles", [
    (lambda: P.heat(x=(0.0, 1.0, 2.0)), ("x", "(lo, hi)")),
    (lambda: P.heat(t=5.0), ("t", "(lo, hi)")),
    (lambda: P.custom("c", None, (0, 1), (0, 1), math.sin), ("residual", "callable")),
    (lambda: P.custom("c", _residual, (0, 1), (0, 1), 0.5), ("initial", "callable")),
    (lambda: P.custom("bad name", _residual, (0, 1), (0, 1), math.sin), ("bad name",)),
    (lambda: P.custom("c", _residual, (0, 1), (0, 1), math.sin, coefficients={"a": 1.0},
                      trainable=("b",)), ("trainable", "'b'")),
])
def test_bad_problem_definitions_are_named(call, needles):
    with raises_naming(DataError, *needles):
        call()


@pytest.mark.parametrize("u0", [lambda v: v * 0 + 1.0, lambda v: 0.5 * v, lambda v: v * v],
                         ids=["constant", "linear", "quadratic"])
def test_polynomial_initial_conditions_train(u0):
    """Derivatives of u0 that vanish identically must not break the exact-IC construction."""
    prob = P.custom("poly", _residual, (0.0, 1.0), (0.0, 1.0), u0)
    sol = solve_time_marching(prob, NET, replace(CFG, n_windows=1))
    assert all(np.isfinite(h["loss"]) for h in sol.history)
    x = np.linspace(0, 1, 5)
    np.testing.assert_allclose(sol.predict(x, np.array([0.0]))[0],
                               np.asarray(u0(torch.as_tensor(x))), atol=1e-6)


def test_a_nan_initial_condition_is_named():
    prob = P.custom("c", _residual, (0.0, 1.0), (0.0, 1.0), lambda v: torch.log(v - 2.0))
    with raises_naming(DataError, "initial condition", "'c'", "not finite"):
        solve_time_marching(prob, NET, CFG)


def test_a_nan_residual_stops_training_with_a_named_error():
    prob = P.custom("c", lambda d, c, p: d["u_t"] * torch.sqrt(d["u"] - 1e6), (0.0, 1.0),
                    (0.0, 1.0), lambda v: torch.sin(2 * math.pi * v))
    with raises_naming(ModelError, "'residual'", "not finite", "window 0"):
        solve_time_marching(prob, NET, CFG)


@pytest.mark.parametrize("residual,needles", [
    (lambda d, c, p: d["u_t"] - p["nu"] * d["u_xx"], ("coefficient 'nu'", "['kappa']")),
    (lambda d, c, p: d["u_t"] + d["u_xxxx"], ("derivative 'u_xxxx'", "u_xx", "order 2")),
], ids=["coefficient", "derivative"])
def test_a_residual_asking_for_something_undeclared_is_named(residual, needles):
    prob = P.custom("c", residual, (0.0, 1.0), (0.0, 1.0), lambda v: torch.sin(2 * math.pi * v),
                    coefficients={"kappa": 1.0})
    with raises_naming(UnknownParameterError, "'c'", *needles):
        solve_time_marching(prob, NET, CFG)


def test_predict_rejects_non_finite_coordinates():
    sol = solve_time_marching(P.heat(), NET, replace(CFG, n_windows=1, adam_steps=2,
                                                     lbfgs_steps=0))
    with raises_naming(DataError, "x", "not finite"):
        sol.predict(np.array([0.0, np.nan]), np.array([0.5]))
    with raises_naming(DataError, "t", "not finite"):
        sol.predict(np.array([0.0]), np.array([np.inf]))


# ---------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete run with a checkpoint file, and the same run without one."""
    path = tmp_path_factory.mktemp("ck") / "run.pt"
    cfg = replace(CFG, checkpoint=str(path), checkpoint_every=2)
    return solve_time_marching(P.burgers(0.05), NET, cfg), path, cfg


def test_checkpoint_holds_the_final_state_bit_exactly(finished):
    sol, path, cfg = finished
    ck = torch.load(path, weights_only=True)
    for win, saved in zip(sol.windows, ck["windows"]):
        for k, v in win.field.state_dict().items():
            assert v.dtype == saved["field"][k].dtype and torch.equal(v, saved["field"][k]), k
    again = solve_time_marching(P.burgers(0.05), NET, cfg, resume=path)  # nothing left to do
    for a, b in zip(_params(sol), _params(again)):
        assert torch.equal(a, b)
    assert again.history == sol.history


def test_saved_model_round_trips_bit_exactly_and_atomically(finished, tmp_path, monkeypatch):
    sol, _, _ = finished
    path = save_model(sol, tmp_path / "model.pt")
    data = torch.load(path, weights_only=True)
    for win, saved in zip(sol.windows, data["windows"]):
        for k, v in win.field.state_dict().items():
            assert torch.equal(v, saved["field"][k]), k
    assert np.asarray(data["theta"]).tobytes() == sol.theta.tobytes()
    before, inode = path.read_bytes(), os.stat(path).st_ino
    monkeypatch.setattr("torch.save", _write_half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        save_model(sol, path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
    save_model(sol, path)
    assert os.stat(path).st_ino != inode


def _write_half_then_fail(obj, f, *args, **kwargs):
    if hasattr(f, "write"):
        f.write(b"PK\x03\x04 partial checkpoint")
    else:
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 partial checkpoint")
    raise OSError("disk full (simulated)")


def test_a_checkpoint_write_that_fails_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    cfg = replace(CFG, checkpoint=str(path), checkpoint_every=2)
    full = solve_time_marching(P.heat(0.2), NET, replace(cfg, checkpoint=None))
    real = torch.save
    calls = {"n": 0}

    def second_save_fails(obj, f, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            _write_half_then_fail(obj, f)
        return real(obj, f, *args, **kwargs)

    monkeypatch.setattr("torch.save", second_save_fails)
    with pytest.raises(OSError, match="simulated"):
        solve_time_marching(P.heat(0.2), NET, cfg)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.pt"]  # no half-written file
    resumed = solve_time_marching(P.heat(0.2), NET, cfg, resume=path)  # from the first save
    for a, b in zip(_params(full), _params(resumed)):
        assert torch.equal(a, b)


def test_missing_checkpoint_is_named(tmp_path):
    with raises_naming(FileNotFoundError, "nope.pt"):
        solve_time_marching(P.heat(), NET, CFG, resume=tmp_path / "nope.pt")


@pytest.mark.parametrize("damage,needles", [
    (lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]), ("run.pt",)),
    (lambda p: p.write_bytes(b"\x80\x04garbage"), ("run.pt",)),
    (lambda p: p.write_bytes(b""), ("run.pt",)),
    (lambda p: torch.save({"windows": []}, p), ("run.pt", "theta")),
    (lambda p: torch.save([1, 2, 3], p), ("run.pt", "not a")),
], ids=["truncated", "garbage", "empty", "missing-keys", "a-list"])
def test_damaged_checkpoints_are_checkpoint_errors(finished, tmp_path, damage, needles):
    _, path, cfg = finished
    bad = tmp_path / "run.pt"
    bad.write_bytes(path.read_bytes())
    damage(bad)
    with raises_naming(CheckpointError, *needles):
        solve_time_marching(P.burgers(0.05), NET, cfg, resume=bad)


@pytest.mark.parametrize("other,needles", [
    (lambda: (P.burgers(0.05), replace(NET, width=7), CFG), ("run.pt", "network")),
    (lambda: (P.burgers(0.05), NET, replace(CFG, n_windows=3)), ("run.pt", "2 windows", "3")),
    (lambda: (P.burgers(0.05, trainable=True), NET, CFG), ("run.pt", "free", "1")),
], ids=["architecture", "windows", "coefficients"])
def test_a_checkpoint_of_another_run_is_refused(finished, other, needles):
    _, path, _ = finished
    prob, net, cfg = other()
    with raises_naming(CheckpointError, *needles):
        solve_time_marching(prob, net, cfg, resume=path)
