"""HMM estimators and ``tiedsci.hmm.io`` under bad input, degenerate data and failed writes.

Complements ``tests/hmm/test_errors.py`` (NaN rows, ragged lengths, symbols, tie groups) and
``tests/hmm/test_io.py`` (round trips of three classes): here the remaining entry points
(configuration, parameters set by hand, scoring/decoding/sampling of a fitted model, the
readers of saved models), EM on degenerate data, and atomic, bit-exact save/load.
"""

from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest

import tiedsci.hmm as th
from tests.reliability.conftest import raises_naming
from tiedsci.errors import DataError, DegenerateDataWarning

# ---------------------------------------------------------------------- bad data


@pytest.mark.parametrize("X,needles", [
    (np.array([["a", "b"], ["c", "d"]]), ("X", "numeric")),
    ([[1.0, 2.0], [3.0]], ("X", "shape")),
    (np.ones((6, 2)) * (1 + 1j), ("X", "complex")),
    (np.zeros((6, 0)), ("X", "feature")),
    (np.array([[1.0, np.inf]] * 6), ("X", "inf")),
    (np.zeros((0, 2)), ("X", "no samples")),
], ids=["strings", "ragged", "complex", "no-features", "inf", "empty"])
@pytest.mark.parametrize("make", [lambda: th.GaussianHMM(2), lambda: th.PoissonHMM(2),
                                  lambda: th.GMMHMM(2, 2)], ids=["gauss", "poisson", "gmm"])
def test_bad_X_is_named(make, X, needles):
    with raises_naming(DataError, *needles):
        make().fit(X)


@pytest.mark.parametrize("X,needles", [
    (np.array([["a"], ["b"]]), ("X", "integer")),
    ([[0], [1, 2]], ("X", "shape")),
    (np.array([[0.0], [np.nan]]), ("X", "nan")),
    (np.zeros((0, 1), dtype=int), ("X", "no samples")),
])
def test_bad_symbols_are_named(X, needles):
    with raises_naming(DataError, *needles):
        th.CategoricalHMM(2).fit(X)


@pytest.mark.parametrize("kw,needles", [
    ({"n_components": 0}, ("n_components",)),
    ({"n_components": -2}, ("n_components",)),
    ({"n_components": 2.5}, ("n_components",)),
    ({"n_components": "3"}, ("n_components",)),
    ({"n_iter": -1}, ("n_iter",)),
    ({"n_iter": 1.5}, ("n_iter",)),
    ({"tol": math.nan}, ("tol",)),
    ({"min_covar": -1e-3}, ("min_covar",)),
    ({"min_covar": math.nan}, ("min_covar",)),
    ({"covars_prior": math.inf}, ("covars_prior",)),
    ({"params": "stmz"}, ("letters", "z")),
    ({"init_params": ["means", "mean"]}, ("unknown parameter names", "mean")),
    ({"fixed": {"mean": True}}, ("fixed", "mean")),
    ({"engine": "jax"}, ("engine", "jax")),
])
def test_bad_configuration_names_the_argument(rng, kw, needles):
    kw = {"n_components": 2, **kw}
    with raises_naming(ValueError, *needles):
        th.GaussianHMM(**kw).fit(rng.normal(size=(30, 2)))


def test_categorical_n_features_must_be_positive(rng):
    with raises_naming(ValueError, "n_features"):
        th.CategoricalHMM(2, n_features=0).fit(rng.integers(0, 3, (20, 1)))


@pytest.fixture
def fitted(rng):
    x = rng.normal(size=(80, 2))
    return th.GaussianHMM(2, n_iter=3, random_state=0).fit(x, [40, 40]), x


@pytest.mark.parametrize("method", ["score", "score_samples", "predict", "predict_proba",
                                    "decode", "score_sequences"])
def test_a_fitted_model_rejects_data_of_another_width(fitted, rng, method):
    model, _ = fitted
    with raises_naming(DataError, "3 features", "n_features=2"):
        getattr(model, method)(rng.normal(size=(10, 3)))


@pytest.mark.parametrize("lengths,needle", [([5, 5], "sum to 10"), (["a", "b"], "integers"),
                                            ([np.nan, 80], "integers"), ([80, 0], "lengths[1]")])
def test_scoring_checks_lengths_too(fitted, lengths, needle):
    model, x = fitted
    with raises_naming(DataError, needle):
        model.decode(x, lengths)


def test_sample_arguments(fitted):
    model, _ = fitted
    with raises_naming(ValueError, "n_samples", "-1"):
        model.sample(-1)
    with raises_naming(ValueError, "currstate", "7"):
        model.sample(3, currstate=7)
    x, states = model.sample(0)
    assert x.shape[0] == 0 and states.shape == (0,)


def _set(model, **attrs):
    for k, v in attrs.items():
        setattr(model, k, np.asarray(v, dtype=float))
    return model


@pytest.mark.parametrize("kind,covars,needles", [
    ("diag", [[1.0, 0.0], [1.0, 1.0]], ("covars_", "> 0")),
    ("diag", [[1.0, -2.0], [1.0, 1.0]], ("covars_", "> 0")),
    ("spherical", [1.0, 0.0], ("covars_", "> 0")),
    ("full", [[[1.0, 2.0], [2.0, 1.0]], [[1.0, 0.0], [0.0, 1.0]]], ("covars_", "positive def")),
    ("full", [[[1.0, 0.5], [0.1, 1.0]], [[1.0, 0.0], [0.0, 1.0]]], ("covars_", "symmetric")),
    ("tied", [[1.0, 0.0], [0.0, 0.0]], ("covars_", "positive def")),
])
def test_bad_hand_set_covariances_are_named(rng, kind, covars, needles):
    model = _set(th.GaussianHMM(2, kind, init_params="", n_iter=2), startprob_=[0.5, 0.5],
                 transmat_=[[0.9, 0.1], [0.1, 0.9]], means_=[[0.0, 0.0], [1.0, 1.0]],
                 covars_=covars)
    with raises_naming(DataError, *needles):
        model.fit(rng.normal(size=(40, 2)))
    with raises_naming(DataError, *needles):
        model.score(rng.normal(size=(40, 2)))


def test_hand_set_means_of_the_wrong_width(rng):
    model = _set(th.GaussianHMM(2, "diag", init_params="", n_iter=2), startprob_=[0.5, 0.5],
                 transmat_=[[0.9, 0.1], [0.1, 0.9]], means_=np.zeros((2, 3)),
                 covars_=np.ones((2, 3)))
    with raises_naming(DataError, "X has 2 features", "n_features=3"):
        model.fit(rng.normal(size=(40, 2)))


@pytest.mark.parametrize("name,value,needles", [
    ("startprob_", [0.7, 0.7], ("startprob_", "summing to 1")),
    ("transmat_", [[0.5, 0.5, 0.0], [0.5, 0.5, 0.0]], ("transmat_", "shape")),
    ("transmat_", [[np.nan, 1.0], [0.5, 0.5]], ("transmat_", "nan")),
])
def test_bad_hand_set_probabilities(rng, name, value, needles):
    model = _set(th.GaussianHMM(2, init_params="", n_iter=2), startprob_=[0.5, 0.5],
                 transmat_=[[0.9, 0.1], [0.1, 0.9]], means_=np.zeros((2, 1)),
                 covars_=np.ones((2, 1)))
    setattr(model, name, np.asarray(value))
    with raises_naming(DataError, *needles):
        model.fit(rng.normal(size=(20, 1)))


# ---------------------------------------------------------------------- degenerate data
def _finite(model):
    for attr in ("startprob_", "transmat_", "means_", "covars_", "emissionprob_", "lambdas_",
                 "weights_"):
        v = getattr(model, attr, None)
        if v is not None:
            assert np.all(np.isfinite(v)), attr
    assert np.all(np.isfinite(model.monitor_.history))


def _fit_quietly(model, x, lengths=None):
    """Fit, failing on any warning that leaks out (numpy's divide by zero, invalid value,
    degrees of freedom...) other than tiedsci's own ``DegenerateDataWarning``; return those
    messages."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with np.errstate(divide="warn", invalid="warn", over="warn"):
            model.fit(x, lengths)
    other = [f"{w.category.__name__}: {w.message}" for w in caught
             if not issubclass(w.category, (DegenerateDataWarning, DeprecationWarning))]
    assert not other, other
    return [str(w.message) for w in caught if issubclass(w.category, DegenerateDataWarning)]


@pytest.mark.parametrize("make", [
    lambda: th.GaussianHMM(3, "diag", n_iter=5, random_state=0),
    lambda: th.GaussianHMM(3, "spherical", n_iter=5, random_state=0),
    lambda: th.GaussianHMM(3, "full", n_iter=5, random_state=0),
    lambda: th.GaussianHMM(3, "tied", n_iter=5, random_state=0),
    lambda: th.GMMHMM(2, 2, n_iter=5, random_state=0),
    lambda: th.TiedMixtureHMM(2, 2, n_iter=5, random_state=0),
    lambda: th.PoissonHMM(3, n_iter=5, random_state=0),
], ids=["diag", "spherical", "full", "tied", "gmm", "tied-mixture", "poisson"])
def test_identical_observations_and_a_single_observation(make):
    model = make()
    _fit_quietly(model, np.full((60, 2), 3.0), [30, 30])
    _finite(model)
    if hasattr(model, "min_covar"):  # variances (eigenvalues) stay at or above the floor
        c = model.covars_  # GaussianHMM: full matrices for every type (hmmlearn's getter)
        full = isinstance(model, th.GaussianHMM) or model.covariance_type in ("full", "tied")
        var = np.linalg.eigvalsh(c) if full else c
        assert np.all(var >= model.min_covar * (1 - 1e-9))
    one = make()
    msgs = _fit_quietly(one, np.array([[3.0, 2.0]]))
    _finite(one)
    assert any("degenerate" in m and "free parameters" in m for m in msgs), msgs


def test_categorical_with_one_symbol_and_one_sample():
    model = th.CategoricalHMM(3, n_iter=5, random_state=0)
    _fit_quietly(model, np.zeros((40, 1), dtype=int))
    _finite(model)
    np.testing.assert_array_equal(model.emissionprob_, np.ones((3, 1)))
    one = th.CategoricalHMM(2, n_features=4, n_iter=3, random_state=0)
    msgs = _fit_quietly(one, np.array([[2]]))
    _finite(one)
    assert any("degenerate" in m for m in msgs)


@pytest.mark.parametrize("family", ["gauss-full", "categorical", "poisson"])
def test_a_state_without_data_keeps_its_parameters_and_is_reported(rng, family):
    start, trans = [1.0, 0.0], [[1.0, 0.0], [0.5, 0.5]]  # state 1 is never visited
    if family == "gauss-full":
        model = _set(th.GaussianHMM(2, "full", init_params="", n_iter=4),
                     means_=[[0.0, 0.0], [40.0, 40.0]], covars_=[np.eye(2), 2 * np.eye(2)])
        x = rng.normal(size=(60, 2))
        kept = ("means_", "covars_")
    elif family == "categorical":
        model = _set(th.CategoricalHMM(2, init_params="", n_iter=4),
                     emissionprob_=[[0.5, 0.5, 0.0], [0.1, 0.1, 0.8]])
        x = rng.integers(0, 2, (60, 1))
        kept = ("emissionprob_",)
    else:
        model = _set(th.PoissonHMM(2, init_params="", n_iter=4), lambdas_=[[2.0], [30.0]])
        x = rng.poisson(2.0, (60, 1))
        kept = ("lambdas_",)
    _set(model, startprob_=start, transmat_=trans)
    before = {k: getattr(model, k)[1].copy() for k in kept}
    msgs = _fit_quietly(model, x)
    _finite(model)
    for k in kept:  # up to the round-off of the registry's transforms
        np.testing.assert_allclose(getattr(model, k)[1], before[k], rtol=1e-13, atol=0)
    assert any("state" in m and "[1]" in m and "no posterior mass" in m for m in msgs), msgs


def test_min_covar_zero_on_constant_data_is_a_clear_error():
    with raises_naming(DataError, "min_covar", "variance"):
        th.GaussianHMM(2, min_covar=0.0).fit(np.ones((20, 1)))


# ---------------------------------------------------------------------- save / load
def _models(rng):
    xg = rng.normal(size=(90, 2))
    xs = rng.integers(0, 4, (90, 1))
    xp = rng.poisson(3.0, (90, 2))
    return [
        (th.GaussianHMM(3, "tied", n_iter=3, random_state=0, fixed={"means": [0]}), xg),
        (th.GaussianHMM(2, "spherical", n_iter=3, random_state=1,
                        ties={"transmat": [[0, 1]]}), xg),
        (th.CategoricalHMM(3, n_iter=3, random_state=0, tie_states=[[1, 2]]), xs),
        (th.GMMHMM(2, 2, covariance_type="full", n_iter=3, random_state=0), xg),
        (th.PoissonHMM(2, n_iter=3, random_state=0), xp),
    ]


def test_save_load_is_bit_exact_for_every_family(tmp_path, rng):
    for i, (model, x) in enumerate(_models(rng)):
        model.fit(x, [45, 45])
        th.save(model, tmp_path / f"m{i}")
        back = th.load(tmp_path / f"m{i}.json")
        assert type(back) is type(model)
        for attr in ("startprob_", "transmat_", "means_", "covars_", "emissionprob_",
                     "lambdas_", "weights_"):
            a, b = getattr(model, attr, None), getattr(back, attr, None)
            assert (a is None) == (b is None), attr
            if a is not None:
                assert a.dtype == b.dtype and a.shape == b.shape
                assert a.tobytes() == b.tobytes(), attr  # bitwise
        assert back.get_params() == {**model.get_params(), "random_state": None}
        assert back.n_free == model.n_free
        assert back.score(x, [45, 45]) == model.score(x, [45, 45])
        np.testing.assert_array_equal(back.predict(x), model.predict(x))


@pytest.fixture
def saved(tmp_path, rng):
    model = th.GaussianHMM(2, n_iter=2, random_state=0).fit(rng.normal(size=(40, 1)))
    json_path, npz_path = th.save(model, tmp_path / "model")
    return model, json_path, npz_path


def test_missing_files_are_named(saved, tmp_path):
    _, json_path, npz_path = saved
    npz_path.unlink()
    with raises_naming(FileNotFoundError, "model.npz"):
        th.load(tmp_path / "model")
    with raises_naming(FileNotFoundError, "other.json"):
        th.load(tmp_path / "other")


@pytest.mark.parametrize("corrupt,needles", [
    (lambda j, n: j.write_text(j.read_text()[:40]), ("model.json", "json")),
    (lambda j, n: j.write_bytes(b"\xff\xfe\x00garbage"), ("model.json",)),
    (lambda j, n: j.write_text("[1, 2, 3]"), ("model.json", "format")),
    (lambda j, n: j.write_text(json.dumps({**json.loads(j.read_text()), "class": "FooHMM"})),
     ("model.json", "FooHMM")),
    (lambda j, n: j.write_text(json.dumps({**json.loads(j.read_text()),
                                           "params": {"n_componentz": 2}})),
     ("model.json", "n_componentz")),
    (lambda j, n: n.write_bytes(n.read_bytes()[: len(n.read_bytes()) // 2]), ("model.npz",)),
    (lambda j, n: n.write_bytes(b"not a zip file at all"), ("model.npz",)),
    (lambda j, n: np.savez(n, startprob_=np.ones(2) / 2), ("model.npz",)),
    (lambda j, n: j.write_text(json.dumps({**json.loads(j.read_text()),
                                           "arrays": ["startprob_"]})),
     ("model.json", "transmat_")),
], ids=["truncated-json", "binary-json", "not-a-dict", "unknown-class", "bad-params",
        "truncated-npz", "not-a-zip", "other-arrays", "arrays-missing"])
def test_corrupt_saved_models_raise_data_errors_naming_the_file(saved, tmp_path, corrupt,
                                                                needles):
    _, json_path, npz_path = saved
    corrupt(json_path, npz_path)
    with raises_naming(DataError, *needles):
        th.load(tmp_path / "model")


@pytest.mark.parametrize("target", ["numpy.savez", "json.dumps"])
def test_a_save_that_fails_half_way_keeps_the_previous_model(saved, tmp_path, rng, monkeypatch,
                                                              target):
    old, json_path, npz_path = saved
    before = (json_path.read_bytes(), npz_path.read_bytes())
    new = th.GaussianHMM(3, n_iter=2, random_state=5).fit(rng.normal(size=(60, 1)))
    module, attr = target.split(".")
    real = getattr(__import__(module), attr)

    def half_then_fail(*args, **kwargs):
        out = args[0]
        if hasattr(out, "write"):  # a file object: write something, then die
            out.write(b"partial" if "b" in getattr(out, "mode", "b") else "partial")
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(f"{module}.{attr}", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        th.save(new, tmp_path / "model")
    monkeypatch.setattr(f"{module}.{attr}", real)
    assert (json_path.read_bytes(), npz_path.read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.npz"]
    back = th.load(tmp_path / "model")
    np.testing.assert_array_equal(back.means_, old.means_)
    inodes = (os.stat(json_path).st_ino, os.stat(npz_path).st_ino)
    th.save(new, tmp_path / "model")  # a successful save renames new files into place
    assert (os.stat(json_path).st_ino, os.stat(npz_path).st_ino) != inodes
    np.testing.assert_array_equal(th.load(tmp_path / "model").means_, new.means_)


def test_a_mismatched_pair_of_files_is_detected(tmp_path, rng):
    a = th.GaussianHMM(2, n_iter=2, random_state=0).fit(rng.normal(size=(40, 1)))
    b = th.GaussianHMM(2, n_iter=2, random_state=1).fit(rng.normal(size=(40, 1)) + 3)
    th.save(a, tmp_path / "a")
    th.save(b, tmp_path / "b")
    (tmp_path / "a.npz").write_bytes((tmp_path / "b.npz").read_bytes())
    with raises_naming(DataError, "a.npz", "a.json"):
        th.load(tmp_path / "a")
