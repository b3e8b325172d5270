"""A scalar starting value (``means_ = 1.0``, ``covars_ = 1.0``; run file ``[init]``) broadcasts."""

from __future__ import annotations

import json

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.cli import main


@pytest.mark.parametrize("kind", ["diag", "full", "tied", "spherical"])
def test_scalar_means_and_covars_broadcast_in_the_api(kind):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(-3, 1, (60, 2)), rng.normal(3, 1, (60, 2))])
    model = th.GaussianHMM(2, covariance_type=kind, init_params="st", n_iter=1, tol=-1,
                           params="st")  # keep the given means and covars: check them exactly
    model.means_, model.covars_ = 0.5, 2.0
    model.fit(x)
    assert model.means_.shape == (2, 2) and np.all(model.means_ == 0.5)
    cov = np.asarray(model.covars_)  # hmmlearn's getter: full matrices for every type
    assert cov.shape == (2, 2, 2)
    assert np.array_equal(cov, np.broadcast_to(2.0 * np.eye(2), cov.shape))


def test_scalar_init_in_a_run_file(tmp_path, capsys):
    (tmp_path / "run.toml").write_text(
        '[data]\npath = "bundled:nile.csv"\ncolumns = ["volume"]\n\n'
        "[model]\nn_components = 2\nn_iter = 3\nrandom_state = 0\n\n"
        "[init]\nmeans = 900.0\ncovars = 20000.0\n")
    assert main(["hmm", "fit", str(tmp_path / "run.toml"), "--quiet",
                 "--out", str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["em_iterations"] >= 1
