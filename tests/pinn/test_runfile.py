"""``tiedsci pinn solve run.toml`` back end and the example entry points (tiny budgets)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tiedsci.errors import CheckpointError, RunFileError
from tiedsci.pinn.runfile import run_from_toml

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

RUN = """
[problem]
name = "heat"
coefficients = { nu = 0.2 }

[net]
width = 12
depth = 2
rank = 4
n_harmonics = 2

[train]
adam_steps = 30
lbfgs_steps = 6
lbfgs_chunk = 3
n_x = 32
n_t = 8
n_x_lbfgs = 32
n_t_lbfgs = 8
n_windows = 2

[reference]
source = "spectral"
n_x = 64
n_t = 11

[output]
plots = true
"""


def test_run_from_toml_writes_checkpoint_metrics_prediction_and_plots(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RUN)
    result = run_from_toml(path, tmp_path / "out")
    for key in ("prediction_file", "metrics_file", "model_file", "checkpoint_file"):
        assert Path(result[key]).exists(), key
    assert all(Path(p).exists() for p in result["plots"])
    data = np.load(result["prediction_file"])
    assert data["u"].shape == (11, 64) and data["x"].shape == (64,) and data["t"].shape == (11,)
    saved = json.loads(Path(result["metrics_file"]).read_text())
    assert saved["rel_l2"] == pytest.approx(result["rel_l2"])
    assert result["boundary_mismatch"] <= 1e-6


@pytest.mark.parametrize("text, match", [
    ("[problem]\nname = 'navier'\n",
     r"line 2: \[problem\] name: expected one of \"advection\", .*, got \"navier\""),
    ("[problem]\nname = 'heat'\n[net]\nwidht = 3\n",
     r'line 4: unknown key \[net\] widht \(did you mean "width"\?\)'),
    ("[problem]\nname = 'heat'\ncoefficients = { nu = nan }\n",
     r"line 3: \[problem.coefficients\] nu: expected a finite number, got nan"),
    ("[problem]\nname = 'heat'\ncoefficients = { eps = 0.1 }\n",
     r"line 3: \[problem.coefficients\] eps: 'heat' has no coefficient 'eps'"),
    ("[problem]\nname = 'heat'\nx = [1.0, 1.0]\n",
     r"line 3: \[problem\] x: need low < high"),
    ("[problem]\nname = 'heat'\n[train]\nn_windows = 0\n",
     r"line 4: \[train\] n_windows: n_windows must be an integer >= 1"),
    ("[problem]\nname = 'heat'\n[reference]\nsource = 'bundled'\n",
     r"line 4: \[reference\] source: no bundled data for 'heat'"),
    ("[problm]\n", r'line 1: unknown table \[problm\] \(did you mean "problem"\?\)'),
])
def test_bad_run_files_raise(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(RunFileError, match=match):
        run_from_toml(path, tmp_path / "out")


def test_ctrl_c_writes_the_checkpointed_state_and_resume_finishes_exactly(tmp_path,
                                                                        monkeypatch):
    import tiedsci.pinn.marching as marching

    path = tmp_path / "run.toml"
    path.write_text(RUN)
    full = run_from_toml(path, tmp_path / "full")
    real = marching.write_checkpoint

    def ctrl_c_inside_window_1(path, windows, theta, window, sweep, inner, history):
        out = real(path, windows, theta, window, sweep, inner, history)
        if window == 1 and inner is not None:  # the first checkpoint inside window 1
            raise KeyboardInterrupt
        return out

    monkeypatch.setattr(marching, "write_checkpoint", ctrl_c_inside_window_1)
    part = run_from_toml(path, tmp_path / "out")
    assert part["interrupted"] and not part["completed"]
    assert part["stopped_at"] == {"window": 1, "sweep": 0, "in_window": True}
    assert json.loads(Path(part["metrics_file"]).read_text())["interrupted"] is True
    assert Path(part["prediction_file"]).exists() and all(Path(p).exists() for p in part["plots"])
    assert part["rel_l2"] != full["rel_l2"]  # the interrupted state is not the final one

    monkeypatch.setattr(marching, "write_checkpoint", real)
    done = run_from_toml(path, tmp_path / "out", resume=True)
    assert done["completed"] and not done["interrupted"]
    np.testing.assert_array_equal(np.load(done["prediction_file"])["u"],
                                  np.load(full["prediction_file"])["u"])


def test_ctrl_c_before_the_first_checkpoint_writes_nothing(tmp_path, monkeypatch):
    import tiedsci.pinn.marching as marching

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    path = tmp_path / "run.toml"
    path.write_text(RUN)
    monkeypatch.setattr(marching, "optimize", ctrl_c)
    part = run_from_toml(path, tmp_path / "out")
    assert part == {"problem": "heat", "interrupted": True, "completed": False,
                    "checkpoint_file": None}
    assert not (tmp_path / "out" / "metrics.json").exists()


def test_truncated_or_mismatched_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(RUN)
    ckpt = tmp_path / "out" / "checkpoint.json"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b'{"format": "tiedsci.pinn.che')
    with pytest.raises(CheckpointError, match=f"checkpoint {ckpt} is unreadable or truncated"):
        run_from_toml(path, tmp_path / "out", resume=True)
    run_from_toml(path, tmp_path / "out")
    path.write_text(RUN.replace("width = 12", "width = 10"))
    with pytest.raises(CheckpointError, match="does not match this NetSpec"):
        run_from_toml(path, tmp_path / "out", resume=True)


def test_the_saved_model_loads_and_predicts_bit_for_bit(tmp_path):
    from tiedsci.pinn import load

    path = tmp_path / "run.toml"
    path.write_text(RUN)
    result = run_from_toml(path, tmp_path / "out")
    model = load(result["model_file"])
    data = np.load(result["prediction_file"])
    np.testing.assert_array_equal(model.predict(data["x"], data["t"]), data["u"])


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["advection_periodic", "allen_cahn_periodic", "kdv_periodic"])
def test_examples_run_and_print_the_json_schema(tmp_path, capsys, name):
    module = _load(name)
    module.main(["--json", "--budget", "1.5", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("rel_l2", "boundary_mismatch", "wall_s", "device", "prediction_file",
                "time_to_error_s"):
        assert key in result
    times = result["time_to_error_s"]  # seconds to each decade reached, within the solve
    assert list(times) == [f"1e-{k}" for k in range(1, len(times) + 1)]
    assert all(0 <= s <= result["wall_s"] for s in times.values())
    assert list(times.values()) == sorted(times.values())
    data = np.load(result["prediction_file"])
    assert data["u"].shape == (data["t"].size, data["x"].size)
    assert result["boundary_mismatch"] <= 1e-6
