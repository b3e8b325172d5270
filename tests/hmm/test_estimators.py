"""Parity with hmmlearn (same start, 10 EM iterations) and the EM invariants with ties."""

import numpy as np
import pytest
from hmmlearn import hmm

import tiedsci.hmm as th
from tests.hmm.conftest import random_gaussian_truth, set_random_gmm

N_ITER = 10
RTOL = 1e-6


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _fit_pair(ref, ours, names, x, lengths):
    for n in names:
        setattr(ours, n, np.array(getattr(ref, n), dtype=float))
    ref.fit(x, lengths)
    ours.fit(x, lengths)
    return ref, ours


def _assert_same(ref, ours, names, x, lengths, ref_values=None):
    ref_values = ref_values or {}
    for n in names:
        want = ref_values.get(n, getattr(ref, n))
        assert _rel(getattr(ours, n), want) < RTOL, n
    assert abs(ours.score(x, lengths) - ref.score(x, lengths)) < RTOL * abs(ref.score(x, lengths))
    assert ours.monitor_.iter == ref.monitor_.iter == N_ITER


@pytest.mark.parametrize("kind", ["spherical", "diag", "full", "tied"])
def test_gaussian_matches_hmmlearn(rng, kind):
    k, d = 3, 2
    ref = hmm.GaussianHMM(k, kind, init_params="", n_iter=N_ITER, tol=-np.inf)
    for n, v in random_gaussian_truth(rng, k, d, kind).items():
        setattr(ref, n, v)
    lengths = np.array([60, 80, 45])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ref.means_ = ref.means_ + rng.normal(scale=0.5, size=ref.means_.shape)  # start off truth
    start_cov = ref._covars_
    ours = th.GaussianHMM(k, kind, init_params="", n_iter=N_ITER, tol=-np.inf)
    ours.covars_ = np.array(start_cov)
    ref, ours = _fit_pair(ref, ours, ["startprob_", "transmat_", "means_"], x, lengths)
    cov = ref._covars_[:, 0] if kind == "spherical" else ref._covars_  # hmmlearn tiles it
    _assert_same(ref, ours, ["startprob_", "transmat_", "means_"], x, lengths)
    assert _rel(ours._covars_, cov) < RTOL  # the compact form; covars_ gives full matrices
    if kind != "spherical":  # hmmlearn's getter mis-shapes the spherical covariances it tiled
        assert _rel(ours.covars_, ref.covars_) < RTOL


def test_categorical_matches_hmmlearn(rng):
    k, m = 3, 6
    ref = hmm.CategoricalHMM(k, n_features=m, init_params="", n_iter=N_ITER, tol=-np.inf)
    ref.startprob_ = rng.dirichlet(np.ones(k))
    ref.transmat_ = rng.dirichlet(np.full(k, 3.0), size=k)
    ref.emissionprob_ = rng.dirichlet(np.ones(m), size=k)
    lengths = np.array([70, 90, 40])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ours = th.CategoricalHMM(k, n_features=m, init_params="", n_iter=N_ITER, tol=-np.inf)
    names = ["startprob_", "transmat_", "emissionprob_"]
    ref, ours = _fit_pair(ref, ours, names, x, lengths)
    _assert_same(ref, ours, names, x, lengths)


def test_poisson_matches_hmmlearn(rng):
    k = 3
    ref = hmm.PoissonHMM(k, init_params="", n_iter=N_ITER, tol=-np.inf)
    ref.startprob_ = rng.dirichlet(np.ones(k))
    ref.transmat_ = rng.dirichlet(np.full(k, 3.0), size=k)
    ref.lambdas_ = rng.uniform(1.0, 12.0, size=(k, 2))
    lengths = np.array([70, 90, 40])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ours = th.PoissonHMM(k, init_params="", n_iter=N_ITER, tol=-np.inf)
    names = ["startprob_", "transmat_", "lambdas_"]
    ref, ours = _fit_pair(ref, ours, names, x, lengths)
    _assert_same(ref, ours, names, x, lengths)


@pytest.mark.parametrize("kind", ["spherical", "diag", "full", "tied"])
def test_gmm_matches_hmmlearn(rng, kind):
    k, m, d = 3, 2, 2
    # hmmlearn's default spherical prior is not maximum likelihood; this one is
    extra = {"covars_prior": -(d + 2) / 2} if kind == "spherical" else {}
    ref = hmm.GMMHMM(k, m, covariance_type=kind, init_params="", n_iter=N_ITER, tol=-np.inf,
                     **extra)
    set_random_gmm(ref, rng, kind, k, m, d)
    lengths = np.array([80, 60, 70])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ours = th.GMMHMM(k, m, covariance_type=kind, init_params="", n_iter=N_ITER, tol=-np.inf)
    names = ["startprob_", "transmat_", "weights_", "means_", "covars_"]
    ref, ours = _fit_pair(ref, ours, names, x, lengths)
    _assert_same(ref, ours, names, x, lengths)


def test_all_covariances_tied_equals_hmmlearn_tied(rng):
    """Registry ties of every state's full covariance == hmmlearn covariance_type='tied'."""
    k, d = 4, 3
    ref = hmm.GaussianHMM(k, "tied", init_params="", n_iter=N_ITER, tol=-np.inf)
    for n, v in random_gaussian_truth(rng, k, d, "tied").items():
        setattr(ref, n, v)
    lengths = np.array([100, 120])
    x, _ = ref.sample(lengths.sum(), random_state=5)
    ours = th.GaussianHMM(k, "full", init_params="", n_iter=N_ITER, tol=-np.inf,
                          ties={"covars": [list(range(k))]})
    ours.covars_ = np.tile(ref._covars_, (k, 1, 1))
    ref, ours = _fit_pair(ref, ours, ["startprob_", "transmat_", "means_"], x, lengths)
    for s in range(k):
        assert _rel(ours.covars_[s], ref._covars_) < RTOL
    assert _rel(ours.means_, ref.means_) < RTOL
    assert _rel(ours.transmat_, ref.transmat_) < RTOL
    # charged once: d(d+1)/2 covariance parameters, like hmmlearn's own count for 'tied'
    assert ours.n_free == (k - 1) + k * (k - 1) + k * d + d * (d + 1) // 2


def _two_cluster_data(rng, n=240, d=2):
    x = rng.normal(size=(n, d))
    x[n // 3: 2 * n // 3] += 3.0
    return x, np.array([n // 2, n - n // 2])


FAMILIES = [
    ("gaussian-diag", lambda **kw: th.GaussianHMM(4, "diag", covars_prior=0, **kw)),
    ("gaussian-full", lambda **kw: th.GaussianHMM(4, "full", covars_prior=0, **kw)),
    ("gaussian-spherical", lambda **kw: th.GaussianHMM(4, "spherical", covars_prior=0, **kw)),
    ("gmm-diag", lambda **kw: th.GMMHMM(4, 2, covariance_type="diag", **kw)),
    ("gmm-full", lambda **kw: th.GMMHMM(4, 2, covariance_type="full", **kw)),
    ("tied-mixture", lambda **kw: th.TiedMixtureHMM(4, 3, **kw)),
    ("categorical", lambda **kw: th.CategoricalHMM(4, **kw)),
    ("poisson", lambda **kw: th.PoissonHMM(4, **kw)),
]


def _family_data(name, rng):
    x, lengths = _two_cluster_data(rng)
    if name == "categorical":
        return np.clip(np.round(x[:, :1] * 1.5 + 2), 0, 7).astype(int), lengths
    if name == "poisson":
        return rng.poisson(np.exp(0.5 * x[:, :2] + 1.0)), lengths
    return x, lengths


@pytest.mark.parametrize("name,make", FAMILIES, ids=[f[0] for f in FAMILIES])
def test_loglik_never_decreases_with_ties(rng, name, make):
    x, lengths = _family_data(name, rng)
    for ties in ({"tie_states": [[0, 1], [2, 3]]},
                 {"ties": {"transmat": [[2, 3]]}, "tie_states": [[0, 1]]}):
        model = make(n_iter=25, tol=-np.inf, random_state=1, **ties).fit(x, lengths)
        hist = np.array(model.monitor_.history)
        assert np.all(np.diff(hist) >= -1e-8 * np.abs(hist[1:])), (name, np.diff(hist).min())
        pub = {"gaussian": "means_", "gmm": "means_", "tied": "means_",
               "categorical": "emissionprob_", "poisson": "lambdas_"}[name.split("-")[0]]
        np.testing.assert_array_equal(getattr(model, pub)[0], getattr(model, pub)[1])


def test_tied_groups_are_charged_once_in_n_free(rng):
    x, lengths = _two_cluster_data(rng)
    free = th.GaussianHMM(4, "diag", n_iter=2, random_state=0).fit(x, lengths)
    tied = th.GaussianHMM(4, "diag", n_iter=2, random_state=0,
                          tie_states=[[0, 1], [2, 3]]).fit(x, lengths)
    assert free.n_free == 3 + 12 + 8 + 8
    assert tied.n_free == 3 + 12 + 4 + 4
    assert tied.bic(x, lengths) == pytest.approx(-2 * tied.score(x, lengths)
                                                 + tied.n_free * np.log(len(x)))
    assert "tied to means[0,0]" in tied.report()


def test_fixed_params_and_left_right_zeros(rng):
    x, lengths = _two_cluster_data(rng)
    model = th.GaussianHMM(3, "diag", init_params="mc", n_iter=15, random_state=0,
                           fixed={"means": [0]})
    model.startprob_ = np.array([1.0, 0.0, 0.0])
    model.transmat_ = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    probe = th.GaussianHMM(3, "diag", init_params="mc", n_iter=0, random_state=0)
    probe.startprob_, probe.transmat_ = model.startprob_, model.transmat_
    probe.fit(x, lengths)
    model.fit(x, lengths)
    np.testing.assert_array_equal(model.means_[0], probe.means_[0])
    assert np.all(model.transmat_[np.tril_indices(3, -1)] == 0)
    assert model.transmat_[0, 2] == 0 and np.all(model.startprob_[1:] == 0)
    assert not np.allclose(model.means_[1], probe.means_[1])
    # startprob fully determined, 2 free transition entries, 2x2 means, 3x2 variances
    assert model.n_free == 0 + 2 + 4 + 6


def test_params_letters_freeze_blocks(rng):
    x, lengths = _two_cluster_data(rng)
    m0 = th.GaussianHMM(2, "diag", n_iter=0, random_state=0).fit(x, lengths)
    m1 = th.GaussianHMM(2, "diag", params="mc", init_params="", n_iter=5)
    for n in ("startprob_", "transmat_", "means_", "covars_"):
        setattr(m1, n, getattr(m0, n))
    m1.fit(x, lengths)
    np.testing.assert_array_equal(m1.transmat_, m0.transmat_)
    assert m1.n_free == 8


def test_empty_state_keeps_parameters_without_nan(rng):
    x = rng.normal(size=(100, 1))
    model = th.GaussianHMM(2, "diag", init_params="", n_iter=3)
    model.startprob_ = np.array([1.0, 0.0])
    model.transmat_ = np.array([[1.0, 0.0], [0.0, 1.0]])  # state 1 is unreachable
    model.means_ = np.array([[0.0], [50.0]])
    model.covars_ = np.array([[1.0], [2.0]])
    model.fit(x)
    assert np.all(np.isfinite(model.means_)) and np.all(np.isfinite(model.covars_))
    assert model.means_[1, 0] == 50.0 and model.covars_[1, 0] == 2.0


def test_decode_predict_sample_api(rng):
    x, lengths = _two_cluster_data(rng)
    model = th.GaussianHMM(2, "diag", n_iter=5, random_state=0).fit(x, lengths)
    ref = model.to_hmmlearn()
    for algo in ("viterbi", "map"):
        lp, st = model.decode(x, lengths, algorithm=algo)
        lp_ref, st_ref = ref.decode(x, lengths, algorithm=algo)
        np.testing.assert_array_equal(st, st_ref)
        assert lp == pytest.approx(lp_ref, rel=1e-10)
    np.testing.assert_allclose(model.predict_proba(x, lengths), ref.predict_proba(x, lengths),
                               atol=1e-10)
    xs, states = model.sample(50, random_state=3)
    assert xs.shape == (50, 2) and states.shape == (50,)
    assert model.aic(x, lengths) == pytest.approx(-2 * model.score(x, lengths) + 2 * model.n_free)
