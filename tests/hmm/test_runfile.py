"""The TOML run file behind ``tiedsci hmm fit run.toml`` and the example's run()."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.errors import CheckpointError, RunFileError
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
    with pytest.raises(RunFileError, match=r"run.toml, line 4: \[data\] columns\[0\]: "
                                           r"column 'flow' not found"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


@pytest.mark.parametrize("old, new, match", [
    ('family = "gaussian"', 'family = "gaussian"\nn_mix = 2',
     r"line 8: \[model\] n_mix: not an option of family 'gaussian'"),
    ("covars = [[0, 1]]", "covar = [[0, 1]]",
     r'line 14: unknown key \[model.ties\] covar \(did you mean "covars"\?\)'),
    ('"bundled:nile.csv"', '"bundled:nil.csv"', r'line 3: \[data\] path: no bundled file'),
    ("transmat = [[0.95, 0.05], [0.0, 1.0]]", "transmat = [[0.95, 0.05], [0.0]]",
     r"line 18: \[init\] transmat: rows of different lengths"),
    ('columns = ["volume"]', 'columns = ["volume"]\nlengths = [50, 40]',
     r"line 5: \[data\] lengths: the lengths sum to 90"),
])
def test_run_file_errors_name_the_key_and_line(tmp_path, old, new, match):
    assert old in RUN
    (tmp_path / "run.toml").write_text(RUN.replace(old, new))
    with pytest.raises(RunFileError, match=match):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


def test_documented_defaults_are_the_estimators():
    import inspect

    from tiedsci.hmm.runfile import SCHEMA

    for key, field in SCHEMA.fields["model"].fields.items():
        doc = getattr(field, "default_doc", None) or ""
        if not doc.startswith("`") or key == "dtype":
            continue
        sig = inspect.signature(th.GaussianHMM.__init__).parameters
        sig = sig if key in sig else inspect.signature(th.GMMHMM.__init__).parameters
        assert doc.strip("`") == (json.dumps(sig[key].default)
                                  if isinstance(sig[key].default, str)
                                  else str(sig[key].default)), key


def test_run_file_is_one_fit_of_the_estimator(tmp_path):
    """The run file translates TOML into one ``fit``: the same iterates, bit for bit."""
    run = RUN.replace("n_iter = 100", "n_iter = 30\nrandom_state = 0")
    (tmp_path / "run.toml").write_text(run)
    seen = []
    summary = run_from_toml(tmp_path / "run.toml", tmp_path / "out",
                            callback=lambda n, ll: seen.append(n))
    x = np.loadtxt(BUNDLED / "nile.csv", delimiter=",", skiprows=1)[:, 1:]
    direct = th.GaussianHMM(2, n_iter=30, tol=1e-8, covars_prior=0.0, random_state=0,
                            ties={"covars": [[0, 1]]}, init_params="mc")
    direct.startprob_ = np.array([1.0, 0.0])
    direct.transmat_ = np.array([[0.95, 0.05], [0.0, 1.0]])
    direct.fit(x)
    model = th.load(tmp_path / "out" / "model")
    assert seen == list(range(1, summary["em_iterations"] + 1))
    for name in ("startprob_", "transmat_", "means_", "covars_"):
        np.testing.assert_array_equal(getattr(model, name), getattr(direct, name))
    assert model.monitor_ == direct.monitor_


LONG = RUN.replace("n_iter = 100", "n_iter = 60\nrandom_state = 0").replace("tol = 1e-8",
                                                                            "tol = -1.0")


def test_ctrl_c_keeps_the_last_iteration_and_resume_finishes_the_same_fit(tmp_path):
    (tmp_path / "run.toml").write_text(LONG)
    full = run_from_toml(tmp_path / "run.toml", tmp_path / "full")

    def stop(n, ll):
        if n == 7:
            raise KeyboardInterrupt

    part = run_from_toml(tmp_path / "run.toml", tmp_path / "out", callback=stop)
    assert part["interrupted"] and not part["converged"] and part["em_iterations"] == 7
    saved = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert saved["interrupted"] is True
    assert th.load(tmp_path / "out" / "model").monitor_.iter == 7
    assert th.load(tmp_path / "out" / "checkpoint").monitor_.interrupted
    assert (tmp_path / "out" / "checkpoint.npz").exists()

    done = run_from_toml(tmp_path / "run.toml", tmp_path / "out", resume=True)
    assert not done["interrupted"] and done["em_iterations"] == 60
    assert done["resumed_at_iteration"] == 7
    a, b = th.load(tmp_path / "out" / "model"), th.load(tmp_path / "full" / "model")
    for name in ("startprob_", "transmat_", "means_", "covars_"):  # the same iterates
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.monitor_.history, b.monitor_.history)
    # scoring the same arrays may differ in the last bit (memory layout of the attributes)
    assert done["log_likelihood"] == pytest.approx(full["log_likelihood"], rel=1e-13)
    assert not (tmp_path / "out" / "checkpoint.npz").exists()
    assert not (tmp_path / "out" / "checkpoint.json").exists()


def test_truncated_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    (tmp_path / "run.toml").write_text(LONG)

    def stop(n, ll):
        if n == 2:
            raise KeyboardInterrupt

    run_from_toml(tmp_path / "run.toml", tmp_path / "out", callback=stop)
    ckpt = tmp_path / "out" / "checkpoint.npz"
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="checkpoint .*checkpoint.json is unreadable or "
                                              "truncated .*checkpoint.npz"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out", resume=True)
    ckpt.write_bytes(data)
    (tmp_path / "run.toml").write_text(LONG.replace("n_iter = 60", "n_iter = 61"))
    with pytest.raises(CheckpointError, match="written for a different run file"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out", resume=True)


def test_example_runs_quick(tmp_path):
    path = Path(__file__).resolve().parents[2] / "examples" / "hmm_tied_states.py"
    spec = importlib.util.spec_from_file_location("hmm_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    res = module.run(tmp_path, quick=True)
    assert res["n_free_tied"] == res["n_free_untied"] - 2
    assert (tmp_path / "states.png").exists()
    json.dumps(res)


def test_device_override_runs_the_torch_engine_and_matches_numpy(tmp_path):
    (tmp_path / "run.toml").write_text(RUN)
    ref = run_from_toml(tmp_path / "run.toml", tmp_path / "numpy")
    on_torch = run_from_toml(tmp_path / "run.toml", tmp_path / "torch", device="cpu")
    model = th.load(tmp_path / "torch" / "model")
    assert model.engine == "torch" and model.device == "cpu"
    np.testing.assert_allclose(on_torch["log_likelihood"], ref["log_likelihood"], rtol=1e-8)
