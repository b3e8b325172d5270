"""The TOML run file behind ``tiedsci hmm fit run.toml`` and the example's run()."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.errors import DataError
from tiedsci.hmm.runfile import BUNDLED, run_from_toml

RUN = """
[data]
path = "bundled:nile.csv"
columns = ["volume"]

[model]
family = "gaussian"
n_components = 2
n_iter = 100
tol = 1e-8
covars_prior = 0.0

[model.ties]
covars = [[0, 1]]

[init]
startprob = [1.0, 0.0]
transmat = [[0.95, 0.05], [0.0, 1.0]]
"""


def test_run_from_toml_fits_change_point_with_tied_variance(tmp_path):
    (tmp_path / "run.toml").write_text(RUN)
    summary = run_from_toml(tmp_path / "run.toml", tmp_path / "out")
    model = th.load(tmp_path / "out" / "model")
    assert model.transmat_[1, 0] == 0 and model.startprob_[1] == 0  # change point stays one
    assert model.covars_[0, 0] == model.covars_[1, 0]
    # 1 transition + 2 means + 1 shared variance
    assert summary["n_free"] == 4
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["bic"] == summary["bic"]
    years = np.loadtxt(BUNDLED / "nile.csv", delimiter=",", skiprows=1)[:, 0]
    states = model.predict(np.loadtxt(BUNDLED / "nile.csv", delimiter=",",
                                      skiprows=1)[:, 1:])
    change = years[np.argmax(states == 1)]
    assert 1895 <= change <= 1902  # the Aswan dam / known change point near 1898


def test_run_file_bad_column(tmp_path):
    (tmp_path / "run.toml").write_text(RUN.replace('["volume"]', '["flow"]'))
    with pytest.raises(DataError, match="column 'flow' not found"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


def test_example_runs_quick(tmp_path):
    path = Path(__file__).resolve().parents[2] / "examples" / "hmm_tied_states.py"
    spec = importlib.util.spec_from_file_location("hmm_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    res = module.run(tmp_path, quick=True)
    assert res["n_free_tied"] == res["n_free_untied"] - 2
    assert (tmp_path / "states.png").exists()
    json.dumps(res)
