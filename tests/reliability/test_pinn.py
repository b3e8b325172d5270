"""PINN problems, specs, solvers and checkpoints under bad input and failed writes.

Complements ``tests/pinn`` (bad specs and domains, NaN coefficients, exact resume after an
interruption): here non-numeric specs, user problems (residuals, initial conditions that are
NaN or polynomial), non-finite losses, damaged or foreign checkpoints (each file of the bundle),
atomic checkpoint and model writes, and bit-exact checkpoint and model round trips.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tests.reliability.conftest import raises_naming
from tiedsci.errors import CheckpointError, DataError, ModelError, UnknownParameterError
from tiedsci.pinn import NetSpec, TrainConfig, load, solve_time_marching
from tiedsci.pinn import problem as P
from tiedsci.pinn.checkpoint import read_checkpoint

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
    """A complete run with a checkpoint bundle (run.json / run.npz / run.pt), and its specs."""
    path = tmp_path_factory.mktemp("ck") / "run.pt"
    cfg = replace(CFG, checkpoint=str(path), checkpoint_every=2)
    return solve_time_marching(P.burgers(0.05), NET, cfg), path, cfg


def test_checkpoint_holds_the_final_state_bit_exactly(finished):
    sol, path, cfg = finished
    ck = read_checkpoint(path)
    for win, saved in zip(sol.windows, ck.windows):
        for k, v in win.field.state_dict().items():
            assert v.dtype == saved["field"][k].dtype and torch.equal(v, saved["field"][k]), k
    assert ck.theta.numpy().tobytes() == sol.theta.tobytes()
    again = solve_time_marching(P.burgers(0.05), NET, cfg, resume=path)  # nothing left to do
    for a, b in zip(_params(sol), _params(again)):
        assert torch.equal(a, b)
    assert again.history == sol.history


def test_checkpoint_files_follow_the_one_convention(finished):
    """JSON values, npz arrays without pickles, torch weights readable with weights_only."""
    _, path, _ = finished
    stem = path.with_suffix("")
    doc = json.loads(stem.with_suffix(".json").read_text())
    assert doc["format"] == "tiedsci.pinn.checkpoint/1" and doc["window"] == 0
    with np.load(stem.with_suffix(".npz"), allow_pickle=False) as data:
        assert "theta" in data.files
    weights = torch.load(stem.with_suffix(".pt"), weights_only=True)
    assert set(weights) == {"windows"} and len(weights["windows"]) == CFG.n_windows


def test_saved_solution_round_trips_bit_exactly_and_atomically(finished, tmp_path, monkeypatch):
    sol, _, _ = finished
    path = sol.save(tmp_path / "model")
    again = load(path)
    for a, b in zip(_params(sol), _params(again)):
        assert torch.equal(a, b)
    assert again.theta.tobytes() == sol.theta.tobytes()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["model.json", "model.npz", "model.pt"]
    before = {n: (tmp_path / n).read_bytes() for n in files}
    monkeypatch.setattr("torch.save", _write_half_then_fail)
    with pytest.raises(OSError, match="simulated"):
        sol.save(path)
    monkeypatch.undo()
    assert {n: (tmp_path / n).read_bytes() for n in files} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == files  # no temporary file left


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
    # no half-written file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json", "run.npz", "run.pt"]
    resumed = solve_time_marching(P.heat(0.2), NET, cfg, resume=path)  # from the first save
    for a, b in zip(_params(full), _params(resumed)):
        assert torch.equal(a, b)


def test_missing_checkpoint_is_named(tmp_path):
    with raises_naming(FileNotFoundError, "nope.json"):
        solve_time_marching(P.heat(), NET, CFG, resume=tmp_path / "nope.pt")


def _truncate(p):
    p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2])


def _rewrite_json(change):
    def damage(p):
        doc = json.loads(p.read_text())
        change(doc)
        p.write_text(json.dumps(doc))
    return damage


@pytest.mark.parametrize("suffix,damage,needles", [
    (".pt", _truncate, ("run.pt",)),
    (".pt", lambda p: p.write_bytes(b"\x80\x04garbage"), ("run.pt",)),
    (".npz", lambda p: p.write_bytes(b""), ("run.npz",)),
    (".json", _truncate, ("run.json",)),
    (".json", lambda p: p.write_text("[1, 2, 3]"), ("run.json",)),
    (".json", _rewrite_json(lambda d: d.pop("inner")), ("run.json", "inner")),
    (".json", _rewrite_json(lambda d: d.update(format="tiedsci.hmm/1")), ("run.json", "format")),
], ids=["pt-truncated", "pt-garbage", "npz-empty", "json-truncated", "json-a-list",
        "json-missing-key", "json-other-format"])
def test_damaged_checkpoints_are_checkpoint_errors(finished, tmp_path, suffix, damage, needles):
    _, path, cfg = finished
    for s in (".json", ".npz", ".pt"):
        (tmp_path / f"run{s}").write_bytes(path.with_suffix(s).read_bytes())
    damage(tmp_path / f"run{suffix}")
    with raises_naming(CheckpointError, *needles):
        solve_time_marching(P.burgers(0.05), NET, cfg, resume=tmp_path / "run.pt")


@pytest.mark.parametrize("other,needles", [
    (lambda: (P.burgers(0.05), replace(NET, width=7), CFG), ("run.json", "network")),
    (lambda: (P.burgers(0.05), NET, replace(CFG, n_windows=3)), ("run.json", "2 windows", "3")),
    (lambda: (P.burgers(0.05, trainable=True), NET, CFG), ("run.json", "free", "1")),
], ids=["architecture", "windows", "coefficients"])
def test_a_checkpoint_of_another_run_is_refused(finished, other, needles):
    _, path, _ = finished
    prob, net, cfg = other()
    with raises_naming(CheckpointError, *needles):
        solve_time_marching(prob, net, cfg, resume=path)
