"""hmmlearn's attribute and method conventions: the init-overwrite log message, MultinomialHMM,
sampling a hand-set model, ``sample(random_state=...)``, ``set_params``, fitted attribute
names and shapes, and the robustness cases hmmlearn's own tests probe."""

import logging

import numpy as np
import pytest
from hmmlearn import hmm

import tiedsci.hmm as th
from tiedsci.errors import DataError


def test_hand_set_parameter_in_init_params_is_logged_as_overwritten(rng, caplog):
    model = th.GaussianHMM(2, n_iter=2, random_state=0)
    model.startprob_ = np.array([0.3, 0.7])
    with caplog.at_level(logging.WARNING, logger="tiedsci.hmm.model"):
        model.fit(rng.normal(size=(50, 2)))
    assert any("will be overwritten" in r.getMessage() and "startprob_" in r.getMessage()
               for r in caplog.records)


def test_no_overwrite_message_when_the_parameter_is_kept(rng, caplog):
    model = th.GaussianHMM(2, n_iter=2, random_state=0, init_params="tmc")
    model.startprob_ = np.array([0.3, 0.7])
    with caplog.at_level(logging.WARNING, logger="tiedsci.hmm.model"):
        model.fit(rng.normal(size=(50, 2)))
    assert not any("will be overwritten" in r.getMessage() for r in caplog.records)


def _multinomial_pair(n_trials):
    kw = dict(n_components=2, n_trials=n_trials, init_params="", n_iter=10, tol=-np.inf)
    ref, ours = hmm.MultinomialHMM(**kw), th.MultinomialHMM(**kw)
    for m in (ref, ours):
        m.startprob_ = np.array([0.6, 0.4])
        m.transmat_ = np.array([[0.8, 0.2], [0.3, 0.7]])
        m.emissionprob_ = np.array([[0.5, 0.3, 0.1, 0.1], [0.1, 0.1, 0.4, 0.4]])
    return ref, ours


def test_multinomial_matches_hmmlearn(rng):
    ref, ours = _multinomial_pair(5)
    x, _ = ref.sample(300, random_state=1)
    assert ours.score(x) == pytest.approx(ref.score(x), rel=1e-12)
    ref.fit(x)
    ours.fit(x)
    for n in ("startprob_", "transmat_", "emissionprob_"):
        np.testing.assert_allclose(getattr(ours, n), getattr(ref, n), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ours.monitor_.history, ref.monitor_.history, rtol=1e-10)
    xs, states = ours.sample(50, random_state=0)
    assert xs.shape == (50, 4) and np.all(xs.sum(1) == 5) and states.shape == (50,)


def test_multinomial_with_one_trial_is_categorical(rng):
    _, multi = _multinomial_pair(1)
    cat = th.CategoricalHMM(2)
    cat.startprob_, cat.transmat_ = multi.startprob_, multi.transmat_
    cat.emissionprob_ = multi.emissionprob_
    sym = rng.integers(0, 4, size=40)
    assert multi.score(np.eye(4, dtype=int)[sym]) == pytest.approx(cat.score(sym[:, None]),
                                                                    rel=1e-12)


def test_multinomial_n_trials_inconsistent_with_the_counts_is_a_named_error():
    _, ours = _multinomial_pair(5)
    with pytest.raises(DataError, match="n_trials=5"):
        ours.score(np.array([[1, 1, 1, 1], [2, 1, 1, 1]]))
    with pytest.raises(DataError, match="non-negative integers"):
        ours.score(np.array([[1.5, 1.5, 1, 1]]))
    _, unset = _multinomial_pair(None)
    with pytest.raises(ValueError, match="single n_trials"):
        unset.sample(3)


def test_sampling_a_hand_set_spherical_model_infers_n_features():
    model = th.GaussianHMM(2, covariance_type="spherical")
    model.startprob_ = np.array([0.6, 0.4])
    model.transmat_ = np.array([[0.4, 0.6], [0.9, 0.1]])
    model.means_ = np.array([[3.0], [5.0]])
    model.covars_ = np.array([[[[4.0]]], [[[3.0]]]])  # any shape with one value per state
    assert model.covars_.shape == (2, 1, 1)
    x, states = model.sample(200, random_state=0)
    assert x.shape == (200, 1) and set(states) <= {0, 1}


@pytest.mark.parametrize("rs", [None, 3, np.random.RandomState(3), np.random.default_rng(3),
                                np.random.SeedSequence(3)])
def test_sample_accepts_what_hmmlearn_and_numpy_accept(rs):
    model = th.PoissonHMM(2, random_state=0)
    model.startprob_, model.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    model.lambdas_ = np.array([[1.0], [8.0]])
    x, _ = model.sample(20, random_state=rs)
    assert x.shape == (20, 1)


def test_sample_with_an_int_seed_is_reproducible():
    model = th.PoissonHMM(2)
    model.startprob_, model.transmat_ = np.array([0.5, 0.5]), np.full((2, 2), 0.5)
    model.lambdas_ = np.array([[1.0], [8.0]])
    np.testing.assert_array_equal(model.sample(30, random_state=7)[0],
                                  model.sample(30, random_state=7)[0])


def test_set_params_rejects_unknown_keys_and_sets_nothing():
    model = th.GaussianHMM(2)
    with pytest.raises(ValueError, match="n_comp"):
        model.set_params(n_iter=5, n_comp=3)
    assert model.n_iter == 10
    assert model.set_params(n_iter=5, means_weight=2.0) is model and model.n_iter == 5


FITTED = {
    "gaussian": (lambda: th.GaussianHMM(3, "diag", n_iter=2, random_state=0),
                 lambda: hmm.GaussianHMM(3, "diag", n_iter=2, random_state=0), "normal"),
    "gaussian-tied": (lambda: th.GaussianHMM(3, "tied", n_iter=2, random_state=0),
                      lambda: hmm.GaussianHMM(3, "tied", n_iter=2, random_state=0), "normal"),
    "categorical": (lambda: th.CategoricalHMM(3, n_iter=2, random_state=0),
                    lambda: hmm.CategoricalHMM(3, n_iter=2, random_state=0), "symbols"),
    "poisson": (lambda: th.PoissonHMM(3, n_iter=2, random_state=0),
                lambda: hmm.PoissonHMM(3, n_iter=2, random_state=0), "counts"),
    "gmm-spherical": (lambda: th.GMMHMM(3, 2, covariance_type="spherical", n_iter=2,
                                        random_state=0),
                      lambda: hmm.GMMHMM(3, 2, covariance_type="spherical", n_iter=2,
                                         random_state=0), "normal"),
}


@pytest.mark.parametrize("name", sorted(FITTED))
def test_fitted_attribute_names_and_shapes_match_hmmlearn(rng, name):
    ours_f, ref_f, kind = FITTED[name]
    x = {"normal": rng.normal(size=(120, 2)), "symbols": rng.integers(0, 4, size=(120, 1)),
         "counts": rng.poisson(3.0, size=(120, 2))}[kind]
    ours, ref = ours_f().fit(x), ref_f().fit(x)
    public = [a for a in ("startprob_", "transmat_", "means_", "covars_", "emissionprob_",
                          "lambdas_", "weights_", "n_features") if hasattr(ref, a)]
    for a in public:
        assert np.shape(getattr(ours, a)) == np.shape(getattr(ref, a)), a
    assert ours.monitor_.iter == ref.monitor_.iter


def test_outlier_in_a_hand_started_two_state_model_fits(rng):
    data = np.concatenate([rng.normal(0, 1, 100), rng.normal(5, 1, 100),
                           rng.normal(0, 1, 100), rng.normal(5, 1, 100)])
    data[40] = 10000
    model = th.GaussianHMM(2, n_iter=100, init_params="")
    model.startprob_ = np.array([0.0, 1.0])
    model.transmat_ = np.array([[0.4, 0.6], [0.6, 0.4]])
    model.means_ = np.array([[0.0], [5.0]])
    model.covars_ = np.array([[1.0], [1.0]])
    model.fit(data[:, None])
    assert np.isfinite(model.score(data[:, None]))
    assert np.all(np.isfinite(model.means_)) and np.all(np.isfinite(model.covars_))


def _gmm_frames(rng, n=1000, k=3, m=2, d=2):
    """Independent frames from a mixture of ``k * m`` well-separated Gaussians."""
    centres = rng.uniform(-20, 20, size=(k * m, d))
    comp = rng.integers(0, k * m, size=n)
    return centres[comp] + rng.normal(scale=rng.uniform(0.2, 1.0, (k * m, 1))[comp], size=(n, d))


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_gmm_fit_does_not_depend_on_how_one_sequence_is_chunked(rng, kind):
    # each state's mixture starts from a k-means split of that state's own cluster, so the two
    # fits start equal and reach the same optimum; only the 4 cut transitions differ
    x = _gmm_frames(rng)
    fits = []
    for lengths in (None, [200] * 5):
        model = th.GMMHMM(3, 2, covariance_type=kind, random_state=1, n_iter=30, tol=1e-6)
        model.startprob_, model.transmat_ = np.full(3, 1 / 3), np.full((3, 3), 1 / 3)
        model.set_params(init_params="mcw")
        fits.append(model.fit(x, lengths))
    np.testing.assert_allclose(fits[0].means_, fits[1].means_, atol=1e-2)
    np.testing.assert_allclose(fits[0].weights_, fits[1].weights_, atol=1e-3)


def test_a_user_monitor_set_before_fit_is_reported_to_and_can_stop_em(rng):
    class StopAfterThree:  # hmmlearn's pattern: replace monitor_ with a custom monitor
        def __init__(self):
            self.history = []

        def _reset(self):
            self.history = []

        def report(self, log_prob):
            self.history.append(log_prob)

        @property
        def converged(self):
            return len(self.history) >= 3

    model = th.GaussianHMM(2, n_iter=50, tol=-np.inf, random_state=0)
    assert model.monitor_.tol == model.tol and model.monitor_.n_iter == 50
    model.monitor_ = StopAfterThree()
    model.fit(rng.normal(size=(80, 1)))
    assert isinstance(model.monitor_, StopAfterThree) and len(model.monitor_.history) == 3
    assert model.em_state().monitor.iter == 3  # tiedsci's own view of it
