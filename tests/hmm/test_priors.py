"""Priors (MAP M-step): hand-computed one-state updates, hmmlearn parity with priors set,
the tie rule (a tied group's prior counts once) and named errors for bad priors."""

import warnings

import numpy as np
import pytest
from hmmlearn import hmm
from scipy.stats import norm

import tiedsci.hmm as th
from tests.hmm.conftest import random_gaussian_truth, set_random_gmm
from tiedsci.errors import PriorError, PriorWarning

N_ITER = 10
RTOL = 1e-8


def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def _one_step(model, x, **values):
    """One EM iteration from hand-set values (nothing initialised by fit)."""
    model.set_params(init_params="", n_iter=1, tol=-np.inf)
    for k, v in values.items():
        setattr(model, k, np.asarray(v, dtype=float))
    return model.fit(x)


# ---------------------------------------------------------------- hand-computed, one state
@pytest.mark.parametrize("kind", ["spherical", "diag", "full", "tied"])
def test_gaussian_one_state_map_update_by_hand(rng, kind):
    n, d = 40, 2
    x = rng.normal(size=(n, d)) * [1.0, 2.0] + [0.5, -1.0]
    mu0, w, cw = np.array([[1.0, 0.0]]), 3.0, 5.0
    cp = {"spherical": np.array([0.7]), "diag": np.array([[0.7, 0.2]]),
          "full": np.array([[[0.7, 0.1], [0.1, 0.2]]]),
          "tied": np.array([[0.7, 0.1], [0.1, 0.2]])}[kind]
    start_cov = {"spherical": [1.0], "diag": [[1.0, 1.0]], "full": [np.eye(d)],
                 "tied": np.eye(d)}[kind]
    model = th.GaussianHMM(1, kind, min_covar=0.0, means_prior=mu0, means_weight=w,
                           covars_prior=cp, covars_weight=cw)
    _one_step(model, x, startprob_=[1.0], transmat_=[[1.0]], means_=[[9.0, 9.0]],
              covars_=start_cov)
    mean = (w * mu0[0] + x.sum(0)) / (w + n)
    assert _rel(model.means_[0], mean) < 1e-12
    diff, dev = mean - mu0[0], x - mean
    if kind in ("spherical", "diag"):
        var = (np.ravel(cp) + (dev ** 2).sum(0) + w * diff ** 2) / (max(cw - 1, 0) + n)
        want = var.mean() if kind == "spherical" else var
        got = model.covars_[0].diagonal() if kind == "spherical" else np.diagonal(
            model.covars_[0])
        assert _rel(got, want) < 1e-12
    else:
        want = (cp.reshape(d, d) + dev.T @ dev + w * np.outer(diff, diff)) / (cw - d + n)
        assert _rel(model.covars_[0], want) < 1e-12


def test_categorical_one_state_dirichlet_by_hand(rng):
    x = rng.integers(0, 4, size=(60, 1))
    prior = np.array([[3.0, 1.0, 0.5, 2.0]])
    with pytest.warns(PriorWarning, match="below 1"):
        model = _one_step(th.CategoricalHMM(1, emissionprob_prior=prior, n_features=4), x,
                          startprob_=[1.0], transmat_=[[1.0]], emissionprob_=[[0.25] * 4])
    counts = np.bincount(x[:, 0], minlength=4)
    want = np.maximum(counts + prior[0] - 1, 0)
    assert _rel(model.emissionprob_[0], want / want.sum()) < 1e-12


def test_poisson_one_state_gamma_by_hand(rng):
    x = rng.poisson([2.0, 7.0], size=(50, 2)).astype(float)
    a, b = np.array([[1.5, 4.0]]), np.array([[2.0, 0.5]])
    model = _one_step(th.PoissonHMM(1, lambdas_prior=a, lambdas_weight=b), x,
                      startprob_=[1.0], transmat_=[[1.0]], lambdas_=[[1.0, 1.0]])
    assert _rel(model.lambdas_[0], (a[0] + x.sum(0)) / (b[0] + len(x))) < 1e-12


def test_start_and_transition_dirichlet_by_hand(rng):
    # emissions that reveal the state: the posteriors are one-hot, the counts exact
    x = rng.integers(0, 2, size=(80, 1))
    sp, tp = np.array([4.0, 2.0]), np.array([[2.0, 5.0], [3.0, 1.0]])
    model = _one_step(th.CategoricalHMM(2, sp, tp, params="st"), x, startprob_=[0.5, 0.5],
                      transmat_=[[0.5, 0.5], [0.5, 0.5]], emissionprob_=np.eye(2))
    s = x[:, 0]
    start = sp - 1 + np.eye(2)[s[0]]
    trans = tp - 1 + np.array([[np.sum((s[:-1] == i) & (s[1:] == j)) for j in range(2)]
                               for i in range(2)])
    assert _rel(model.startprob_, start / start.sum()) < 1e-12
    assert _rel(model.transmat_, trans / trans.sum(1, keepdims=True)) < 1e-12


def test_gmm_one_state_map_update_by_hand(rng):
    n, m = 70, 2
    x = np.concatenate([rng.normal(-2, 1, (n // 2, 1)), rng.normal(2, 0.5, (n // 2, 1))])
    wts, mus, vs = np.array([0.4, 0.6]), np.array([-1.0, 1.0]), np.array([1.0, 1.0])
    wp, mu0, lam = np.array([[3.0, 2.0]]), np.array([[[0.5], [-0.5]]]), np.array([[2.0, 1.0]])
    alpha, beta = np.array([[[1.0], [0.5]]]), np.array([[[0.3], [0.6]]])
    model = th.GMMHMM(1, m, min_covar=0.0, weights_prior=wp, means_prior=mu0,
                      means_weight=lam, covars_prior=alpha, covars_weight=beta)
    _one_step(model, x, startprob_=[1.0], transmat_=[[1.0]], weights_=[wts],
              means_=mus.reshape(1, m, 1), covars_=vs.reshape(1, m, 1))
    dens = wts * norm.pdf(x, mus, np.sqrt(vs))
    r = dens / dens.sum(1, keepdims=True)
    post = r.sum(0)
    weights = (post + wp[0] - 1) / (n + (wp[0] - 1).sum())
    means = (lam[0] * mu0[0, :, 0] + (r * x).sum(0)) / (post + lam[0])
    scatter = (r * (x - mus) ** 2).sum(0)  # about the entering means (hmmlearn)
    covars = ((scatter + lam[0] * (means - mu0[0, :, 0]) ** 2 + 2 * beta[0, :, 0])
              / (post + 2 * alpha[0, :, 0] + 3))
    assert _rel(model.weights_[0], weights) < 1e-12
    assert _rel(model.covars_[0, :, 0], covars) < 1e-12
    assert _rel(model.means_[0, :, 0], means) < 1e-12


# ---------------------------------------------------------------- hmmlearn parity with priors
def _parity(ref, ours, names, x, lengths, ref_values=None):
    for n in names:
        setattr(ours, n, np.array(getattr(ref, n), dtype=float))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ref.fit(x, lengths)
    ours.fit(x, lengths)
    for n in names:
        want = (ref_values or {}).get(n, getattr(ref, n))
        assert _rel(getattr(ours, n), want) < RTOL, n
    assert _rel(ours.monitor_.history, ref.monitor_.history) < RTOL
    assert abs(ours.score(x, lengths) - ref.score(x, lengths)) < RTOL * abs(ref.score(x, lengths))


@pytest.mark.parametrize("kind", ["spherical", "diag", "full", "tied"])
def test_gaussian_priors_match_hmmlearn(rng, kind):
    k, d = 3, 2
    truth = random_gaussian_truth(rng, k, d, kind)
    cp = {"spherical": 0.3, "diag": rng.uniform(0.1, 0.5, (k, d)),
          "full": np.tile(np.diag([0.3, 0.2]), (k, 1, 1)), "tied": np.diag([0.3, 0.2])}[kind]
    priors = dict(startprob_prior=rng.uniform(1, 4, k), transmat_prior=rng.uniform(1, 4, (k, k)),
                  means_prior=rng.normal(size=(k, d)), means_weight=2.0, covars_prior=cp,
                  covars_weight=2.0 + (d if kind in ("full", "tied") else 0))
    ref = hmm.GaussianHMM(k, kind, init_params="", n_iter=N_ITER, tol=-np.inf, **priors)
    for n, v in truth.items():
        setattr(ref, n, v)
    lengths = np.array([60, 80, 45])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ref.means_ = ref.means_ + rng.normal(scale=0.5, size=ref.means_.shape)
    ours = th.GaussianHMM(k, kind, init_params="", n_iter=N_ITER, tol=-np.inf, **priors)
    ours.covars_ = truth["covars_"]
    names = ["startprob_", "transmat_", "means_"]
    _parity(ref, ours, names, x, lengths)
    cov = ref._covars_[:, 0] if kind == "spherical" else ref._covars_  # hmmlearn tiles it
    assert _rel(ours._covars_, cov) < RTOL


def test_categorical_priors_match_hmmlearn(rng):
    k, m = 3, 5
    priors = dict(startprob_prior=rng.uniform(1, 3, k), transmat_prior=rng.uniform(1, 3, (k, k)),
                  emissionprob_prior=rng.uniform(1, 3, (k, m)))
    ref = hmm.CategoricalHMM(k, n_features=m, init_params="", n_iter=N_ITER, tol=-np.inf,
                             **priors)
    ref.startprob_ = rng.dirichlet(np.ones(k))
    ref.transmat_ = rng.dirichlet(np.full(k, 3.0), size=k)
    ref.emissionprob_ = rng.dirichlet(np.ones(m), size=k)
    lengths = np.array([70, 90, 40])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ours = th.CategoricalHMM(k, n_features=m, init_params="", n_iter=N_ITER, tol=-np.inf,
                             **priors)
    _parity(ref, ours, ["startprob_", "transmat_", "emissionprob_"], x, lengths)


def test_poisson_priors_match_hmmlearn_for_one_state(rng):
    # hmmlearn 0.3.3 divides by the mass of all states; one state is where the two agree
    ref = hmm.PoissonHMM(1, lambdas_prior=3.0, lambdas_weight=0.5, init_params="",
                         n_iter=N_ITER, tol=-np.inf)
    ref.startprob_, ref.transmat_, ref.lambdas_ = np.ones(1), np.ones((1, 1)), np.array([[1., 9.]])
    x = rng.poisson([2.0, 5.0], size=(150, 2))
    ours = th.PoissonHMM(1, lambdas_prior=3.0, lambdas_weight=0.5, init_params="",
                         n_iter=N_ITER, tol=-np.inf)
    _parity(ref, ours, ["startprob_", "transmat_", "lambdas_"], x, None)


@pytest.mark.parametrize("kind", ["spherical", "diag", "full", "tied"])
def test_gmm_priors_match_hmmlearn(rng, kind):
    k, m, d = 2, 2, 2
    alpha = {"spherical": 0.5, "diag": 0.5, "full": np.eye(d) * 0.4, "tied": np.eye(d) * 0.4}
    beta = {"spherical": 0.2, "diag": 0.2, "full": 1.0, "tied": 1.0}
    priors = dict(startprob_prior=2.0, transmat_prior=rng.uniform(1, 3, (k, k)),
                  weights_prior=rng.uniform(1, 3, (k, m)), means_prior=0.3, means_weight=0.7,
                  covars_prior=alpha[kind], covars_weight=beta[kind])
    ref = hmm.GMMHMM(k, m, covariance_type=kind, init_params="", n_iter=N_ITER, tol=-np.inf,
                     **priors)
    set_random_gmm(ref, rng, kind, k, m, d)
    lengths = np.array([80, 60, 70])
    x, _ = ref.sample(lengths.sum(), random_state=3)
    ours = th.GMMHMM(k, m, covariance_type=kind, init_params="", n_iter=N_ITER, tol=-np.inf,
                     **priors)
    _parity(ref, ours, ["startprob_", "transmat_", "weights_", "means_", "covars_"], x, lengths)


# ---------------------------------------------------------------- ties: a group's prior once
@pytest.mark.parametrize("kind", ["diag", "full"])
def test_tied_states_under_a_prior_equal_one_state_on_the_pooled_data(rng, kind):
    x = rng.normal(size=(90, 2)) * [1.0, 0.5]
    priors = dict(means_prior=[0.4, -0.2], means_weight=3.0, covars_prior=0.5, covars_weight=4.0)
    cov = {"diag": np.ones(2), "full": np.eye(2)}[kind]
    one = _one_step(th.GaussianHMM(1, kind, min_covar=0.0, **priors), x, startprob_=[1.0],
                    transmat_=[[1.0]], means_=[[1.0, 1.0]], covars_=[cov])
    tied = _one_step(th.GaussianHMM(2, kind, min_covar=0.0, tie_states=[[0, 1]], **priors), x,
                     startprob_=[0.3, 0.7], transmat_=[[0.6, 0.4], [0.2, 0.8]],
                     means_=[[1.0, 1.0]] * 2, covars_=[cov, cov])
    for k in range(2):
        assert _rel(tied.means_[k], one.means_[0]) < 1e-12
        assert _rel(tied.covars_[k], one.covars_[0]) < 1e-12


def test_tied_transition_rows_count_their_dirichlet_prior_once(rng):
    x = rng.integers(0, 3, size=(120, 1))
    tp = np.array([[4.0, 2.0, 3.0]] * 3)
    kw = dict(transmat_prior=tp, params="t")
    start = dict(startprob_=np.full(3, 1 / 3), transmat_=np.full((3, 3), 1 / 3),
                 emissionprob_=np.eye(3))
    tied = _one_step(th.CategoricalHMM(3, ties={"transmat": [[0, 1]]}, **kw), x, **start)
    s = x[:, 0]
    counts = np.array([[np.sum((s[:-1] == i) & (s[1:] == j)) for j in range(3)]
                       for i in range(3)], dtype=float)
    pooled = counts[0] + counts[1] + tp[0] - 1  # the group's prior once
    assert _rel(tied.transmat_[0], pooled / pooled.sum()) < 1e-12
    assert _rel(tied.transmat_[1], pooled / pooled.sum()) < 1e-12


def test_likelihood_reported_is_the_data_log_likelihood(rng):
    model = th.GaussianHMM(2, means_weight=5.0, covars_prior=0.5, n_iter=5, random_state=0)
    x = rng.normal(size=(100, 1))
    model.fit(x)
    model_at_last = th.GaussianHMM(2)
    # monitor_ records the log-likelihood entering each iteration (hmmlearn's convention)
    assert np.isfinite(model.monitor_.history).all()
    model_at_last.startprob_, model_at_last.transmat_ = model.startprob_, model.transmat_
    model_at_last.means_, model_at_last.covars_ = model.means_, model.covars_
    assert model.score(x) == pytest.approx(model_at_last.score(x), rel=1e-12)


# ---------------------------------------------------------------- named errors
@pytest.mark.parametrize("make, match", [
    (lambda: th.GaussianHMM(2, means_prior=np.zeros((3, 1))), "means_prior"),
    (lambda: th.GaussianHMM(2, means_weight=-1.0), "means_weight"),
    (lambda: th.GaussianHMM(2, covars_prior=-0.1), "covars_prior"),
    (lambda: th.GaussianHMM(2, "full", covars_prior=-np.eye(1)), "covars_prior"),
    (lambda: th.GaussianHMM(2, covars_weight=np.nan), "covars_weight"),
    (lambda: th.GaussianHMM(2, startprob_prior=0.0), "startprob_prior"),
    (lambda: th.GaussianHMM(2, transmat_prior=np.ones((3, 3))), "transmat_prior"),
    (lambda: th.PoissonHMM(2, lambdas_prior=-1.0), "lambdas_prior"),
    (lambda: th.CategoricalHMM(2, emissionprob_prior=-2.0), "emissionprob_prior"),
    (lambda: th.GMMHMM(2, 2, weights_prior=0.0), "weights_prior"),
])
def test_bad_priors_are_named_errors(rng, make, match):
    model = make()
    x = rng.poisson(3.0, size=(50, 1)) if isinstance(model, (th.PoissonHMM, th.CategoricalHMM)) \
        else rng.normal(size=(50, 1))
    with pytest.raises(PriorError, match=match):
        model.fit(x)


def test_dirichlet_below_one_warns_and_zeroes_what_has_no_mass(rng):
    x = rng.integers(0, 3, size=(40, 1))
    x[x == 2] = 1  # symbol 2 never seen
    with pytest.warns(PriorWarning, match="set to 0"):
        model = _one_step(th.CategoricalHMM(1, emissionprob_prior=0.5, n_features=3), x,
                          startprob_=[1.0], transmat_=[[1.0]], emissionprob_=[[1 / 3] * 3])
    assert model.emissionprob_[0, 2] == 0.0


# ---------------------------------------------------------------- covars_ convention
@pytest.mark.parametrize("kind", ["spherical", "diag", "full", "tied"])
def test_covars_getter_full_setter_compact_round_trip(rng, kind):
    k, d = 3, 2
    compact = random_gaussian_truth(rng, k, d, kind)["covars_"]
    ours, ref = th.GaussianHMM(k, kind), hmm.GaussianHMM(k, kind)
    ours.means_ = ref.means_ = np.zeros((k, d))
    ref.n_features = d
    ours.covars_ = compact
    ref.covars_ = compact
    assert ours.covars_.shape == (k, d, d)
    np.testing.assert_array_equal(ours.covars_, ref.covars_)
    again = th.GaussianHMM(k, kind)
    again.means_ = ours.means_
    again.covars_ = ours.covars_  # the full form is accepted back
    np.testing.assert_array_equal(again._covars_, np.asarray(compact, float))


def test_priors_survive_save_and_load(tmp_path, rng):
    x = rng.normal(size=(80, 2))
    model = th.GaussianHMM(2, means_prior=rng.normal(size=(2, 2)), means_weight=[1.0, 2.0],
                           transmat_prior=[[2.0, 1.0], [1.0, 3.0]], n_iter=3, random_state=0)
    model.fit(x)
    back = th.load(model.save(tmp_path / "m")[0])
    np.testing.assert_array_equal(back.means_prior, model.means_prior)
    np.testing.assert_array_equal(back.transmat_prior, model.transmat_prior)
    np.testing.assert_array_equal(back.covars_, model.covars_)
