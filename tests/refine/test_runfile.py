"""`tiedsci refine run run.toml` back end, and the example's run()."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tiedsci.errors import DataError, DeclarationError
from tiedsci.refine import Dataset, JointRefinement
from tiedsci.refine.models import gaussian_peaks
from tiedsci.refine.runfile import load_columns, run_from_toml

RUN = """
[model]
builtin = "gaussian_peaks"

[[dataset]]
name = "a"
file = "a.dat"

[[dataset]]
name = "b"
file = "b.csv"
limits = [-4.0, 4.0]

[shared]
center = 0.1
width = { value = 0.9, bounds = [0.1, 5.0] }

[local]
height = { value = 5.0, bounds = "positive" }
bkg = { values = { a = [0.5, 0.0], b = [1.5, 0.0] } }

[[stage]]
name = "background"
vary = ["bkg"]

[[stage]]
name = "all"
vary = ["*"]
"""


def _write_data(tmp_path, rng):
    x = np.linspace(-5, 5, 150)
    out = {}
    for name, h, b, sep in (("a", 8.0, 1.0, " "), ("b", 4.0, 2.0, ", ")):
        y = h * np.exp(-0.5 * ((x - 0.3) / 1.1) ** 2) + b + 0.05 * x
        s = np.full_like(x, 0.1)
        y = y + s * rng.standard_normal(x.size)
        lines = ["# x y sigma"] + [sep.join(repr(float(v)) for v in row) for row in zip(x, y, s)]
        (tmp_path / ("a.dat" if name == "a" else "b.csv")).write_text("\n".join(lines))
        out[name] = (x, y, s)
    return out


def test_run_from_toml_matches_the_python_api(tmp_path):
    data = _write_data(tmp_path, np.random.default_rng(0))
    (tmp_path / "run.toml").write_text(RUN)
    summary = run_from_toml(tmp_path / "run.toml", tmp_path / "out")
    for f in summary["files"]:
        assert Path(f).exists()
    assert summary["stages"] == ["background", "all"]
    json.dumps(summary)

    jr = JointRefinement()
    jr.add(Dataset(*data["a"][:2], sigma=data["a"][2], name="a"), gaussian_peaks)
    jr.add(Dataset(*data["b"][:2], sigma=data["b"][2], limits=(-4, 4), name="b"),
           gaussian_peaks)
    jr.shared("center", 0.1)
    jr.shared("width", 0.9, bounds=(0.1, 5.0))
    jr.local("height", 5.0, bounds=(0, None))
    jr.local("bkg", {"a": [0.5, 0.0], "b": [1.5, 0.0]})
    ref = jr.fit()
    for name, val in ref.values.items():
        np.testing.assert_allclose(summary["values"][name], val, rtol=1e-6)
    assert summary["n_obs"] == 150 + int(np.sum(np.abs(data["b"][0]) <= 4))


def test_bad_files_are_reported(tmp_path):
    (tmp_path / "bad.dat").write_text("1 2\n3 x\n")
    with pytest.raises(DataError, match="line 2 is not numeric"):
        load_columns(tmp_path / "bad.dat")
    (tmp_path / "run.toml").write_text('[model]\nbuiltin = "nope"\n')
    with pytest.raises(DeclarationError, match="unknown builtin model"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


def test_example_runs_quickly(tmp_path):
    path = Path(__file__).resolve().parents[2] / "examples" / "joint_synthetic.py"
    spec = importlib.util.spec_from_file_location("joint_synthetic_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.run(tmp_path, quick=True)
    assert summary["converged"]
    assert summary["n_free"] == 3 + 20 + 3 * 8 - 1
    # the recovered cell is within 4 esd of the truth
    assert max(abs(e) for e in summary["cell_error_in_esd"]) < 4
    assert (tmp_path / "fit.png").exists()
