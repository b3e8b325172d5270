"""``tiedsci pinn solve run.toml`` back end and the example entry points (tiny budgets)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tiedsci.errors import DataError
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
    ("[problem]\nname = 'navier'\n", "name must be one of"),
    ("[problem]\nname = 'heat'\n[net]\nwidht = 3\n", "unknown NetSpec"),
    ("[problem]\nname = 'heat'\ncoefficients = { nu = nan }\n", "not finite"),
    ("[problem]\nname = 'heat'\nx = [1.0, 1.0]\n", "period"),
    ("[problm]\n", "unknown run-file section"),
])
def test_bad_run_files_raise(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        run_from_toml(path, tmp_path / "out")


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["advection_periodic", "allen_cahn_periodic"])
def test_examples_run_and_print_the_json_schema(tmp_path, capsys, name):
    module = _load(name)
    module.main(["--json", "--budget", "1.5", "--out", str(tmp_path)])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in ("rel_l2", "boundary_mismatch", "wall_s", "device", "prediction_file"):
        assert key in result
    data = np.load(result["prediction_file"])
    assert data["u"].shape == (data["t"].size, data["x"].size)
    assert result["boundary_mismatch"] <= 1e-6
