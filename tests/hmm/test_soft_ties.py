"""Soft ties in Baum-Welch: the closed-form MAP M-step, its limits, the learned spread."""

import math

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.core.softtie import log_prior
from tiedsci.errors import DeclarationError
from tiedsci.hmm.discovery import sticky_gaussian_hmm

GROUPS = [[0, 1], [2, 3]]


@pytest.fixture(scope="module")
def data():
    truth = sticky_gaussian_hmm([[0.0, 0.0], [0.4, 0.2], [3.0, 3.0], [3.3, 2.8]],
                                [[1.0, 0.5], [0.6, 1.2], [1.0, 1.0], [0.8, 0.7]],
                                concentration=1.0, seed=3)
    x, _ = truth.sample(1200, random_state=4)
    return x, np.full(6, 200)


def _start(kind, x, lengths):
    base = th.GaussianHMM(4, kind, n_iter=5, random_state=0, covars_prior=0).fit(x, lengths)
    return base.em_state().values


def _fit(kind, x, lengths, start, **kw):
    est = th.GaussianHMM(4, kind, n_iter=15, tol=-1.0, covars_prior=0, **kw)
    return est.fit(x, lengths, start=dict(start))


@pytest.mark.parametrize("kind", ["diag", "spherical", "full"])
def test_spread_zero_is_the_hard_tie_and_inf_the_untied_fit(data, kind):
    x, lengths = data
    start = _start(kind, x, lengths)
    hard = _fit(kind, x, lengths, start, ties={"means": GROUPS})
    soft0 = _fit(kind, x, lengths, start, soft_ties={"means": GROUPS}, spread=0.0)
    untied = _fit(kind, x, lengths, start)
    soft_inf = _fit(kind, x, lengths, start, soft_ties={"means": GROUPS}, spread=math.inf)
    for a, b in ((hard, soft0), (untied, soft_inf)):
        np.testing.assert_allclose(b.means_, a.means_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(b.covars_, a.covars_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(b.transmat_, a.transmat_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(b.monitor_.history, a.monitor_.history, rtol=0, atol=1e-8)
    # the hard limit: both members equal the centre, shrinkage 1
    for fit in soft0.soft_ties_:
        assert fit.spread == 0.0 and not fit.learned
    np.testing.assert_allclose(soft0.means_[0], soft0.soft_ties_[0].value, atol=1e-12)
    # the registry compiles the limits exactly: spread 0 is the hard tie (members and centre
    # one free value), spread inf the untied fit (the unseen centre is the members' mean)
    assert soft0.n_free == hard.n_free == untied.n_free - 2 * x.shape[1]
    assert soft_inf.n_free == untied.n_free


def test_one_map_m_step_matches_a_hand_computation(data):
    """Means after one M-step = the maximiser of the penalised Q (a linear system solved here
    directly, not the shrinkage formula)."""
    x, lengths = data
    start = _start("diag", x, lengths)
    tau = 0.3
    est = th.GaussianHMM(4, "diag", n_iter=1, tol=-1.0, covars_prior=0,
                         soft_ties={"means": GROUPS}, spread=tau).fit(x, lengths,
                                                                       start=dict(start))
    before = th.GaussianHMM(4, "diag", init_params="", covars_prior=0)
    before.startprob_, before.transmat_ = start["startprob"], start["transmat"]
    before.means_, before.covars_ = start["means"], start["covars"]
    _, gamma = before.score_samples(x, lengths)
    n = gamma.sum(0)
    s1 = gamma.T @ x
    var = start["covars"]
    expected = np.empty_like(start["means"])
    for g in GROUPS:
        for d in range(x.shape[1]):
            # unknowns (mu_a, mu_b, c): d/dmu_k = N_k (xbar_k - mu_k)/v_k - (mu_k - c)/tau^2,
            # d/dc = sum_k (mu_k - c)/tau^2
            a, b = g
            lhs = np.array([[n[a] / var[a, d] + 1 / tau**2, 0, -1 / tau**2],
                            [0, n[b] / var[b, d] + 1 / tau**2, -1 / tau**2],
                            [-1, -1, 2.0]])
            rhs = np.array([s1[a, d] / var[a, d], s1[b, d] / var[b, d], 0.0])
            sol = np.linalg.solve(lhs, rhs)
            expected[a, d], expected[b, d] = sol[:2]
    np.testing.assert_allclose(est.means_, expected, rtol=1e-10, atol=1e-10)
    fit = est.soft_ties_[0]
    assert fit.spread == tau and fit.shrinkage.shape == (2, 2)
    assert np.all((fit.shrinkage > 0) & (fit.shrinkage < 1))


def _penalised(est_values, history, tau2, groups=GROUPS):
    """Penalised objective log p(X | theta) + log p(mu | c, tau) of the parameters entering
    each iteration (history[i] is the log-likelihood of values[i - 1])."""
    out = []
    for i in range(1, len(history)):
        v = est_values[i - 1]
        prior = sum(log_prior(v["means"][g], v[f"soft{j}.centre"], tau2)
                    for j, g in enumerate(groups))
        out.append(history[i] + prior)
    return np.array(out)


@pytest.mark.parametrize("kind", ["diag", "full"])
def test_penalised_objective_never_decreases_at_a_given_spread(data, kind):
    x, lengths = data
    start = _start(kind, x, lengths)
    seen = []
    est = th.GaussianHMM(4, kind, n_iter=25, tol=-1.0, covars_prior=0, min_covar=0,
                         soft_ties={"means": GROUPS}, spread=0.2)
    est.fit(x, lengths, start=dict(start), on_iteration=lambda s: seen.append(s.values))
    obj = _penalised(seen, est.monitor_.history, 0.04)
    assert np.all(np.diff(obj) >= -1e-8 * np.abs(obj[1:])), np.diff(obj).min()


def test_learned_spread_is_reported_and_between_the_limits(data):
    x, lengths = data
    start = _start("diag", x, lengths)
    est = _fit("diag", x, lengths, start, soft_ties={"means": GROUPS})
    for fit in est.soft_ties_:
        assert fit.learned and 0.0 <= fit.spread < math.inf
        assert fit.members == (f"means[{fit.members[0][6]}]", fit.members[1])
    ll = {s: _fit("diag", x, lengths, start, soft_ties={"means": GROUPS}, spread=s)
          .monitor_.history[-1] for s in (0.0, math.inf)}
    assert ll[0.0] - 1e-6 <= est.monitor_.history[-1] <= ll[math.inf] + 1e-6


def test_soft_ties_survive_save_and_load(data, tmp_path):
    x, lengths = data
    est = th.GaussianHMM(4, "diag", n_iter=5, random_state=1, soft_ties={"means": GROUPS})
    est.fit(x, lengths)
    est.save(tmp_path / "m")
    back = th.load(tmp_path / "m")
    assert back.soft_ties == est.soft_ties and back.spread is None
    assert len(back.soft_ties_) == 2
    for a, b in zip(est.soft_ties_, back.soft_ties_):
        assert a.centre == b.centre and a.members == b.members and a.spread == b.spread
        np.testing.assert_array_equal(a.value, b.value)
        np.testing.assert_array_equal(a.shrinkage, b.shrinkage)
    assert back.n_free == est.n_free
    assert "soft0.centre" in back.report()
    assert "soft tie of means[0], means[1] around soft0.centre: spread" in back.report()


def test_bad_soft_ties_are_named(data):
    x, lengths = data
    with pytest.raises(DeclarationError, match="cannot be soft-tied"):
        th.GaussianHMM(4, soft_ties={"covars": GROUPS}).fit(x, lengths)
    with pytest.raises(DeclarationError, match="cannot be soft-tied"):
        th.GaussianHMM(4, soft_ties={"lambdas": GROUPS}).fit(x, lengths)
    with pytest.raises(DeclarationError, match="two or more"):
        th.GaussianHMM(4, soft_ties={"means": [[0]]}).fit(x, lengths)
    with pytest.raises(DeclarationError, match="does not exist"):
        th.GaussianHMM(4, soft_ties={"means": [[0, 7]]}).fit(x, lengths)
    with pytest.raises(DeclarationError, match="spread"):
        th.GaussianHMM(4, soft_ties={"means": GROUPS}, spread=-1.0).fit(x, lengths)


def test_suff_stats_match_the_posteriors(data):
    x, lengths = data
    est = th.GaussianHMM(4, "diag", n_iter=3, random_state=0).fit(x, lengths)
    st = est.suff_stats(x, lengths)
    ll, gamma = est.score_samples(x, lengths)
    np.testing.assert_allclose(st.n, gamma.sum(0), rtol=1e-10)
    np.testing.assert_allclose(st.s1, gamma.T @ x, rtol=1e-10)
    np.testing.assert_allclose(st.s2, gamma.T @ (x * x), rtol=1e-10)
    assert st.log_likelihood == pytest.approx(ll, rel=1e-12)
    assert st.trans.shape == (4, 4)
    assert st.trans.sum() == pytest.approx(len(x) - len(lengths))
    assert st.start.sum() == pytest.approx(len(lengths))


@pytest.fixture(scope="module")
def counts():
    rng = np.random.default_rng(5)
    truth = th.PoissonHMM(4, init_params="")
    truth.startprob_ = np.full(4, 0.25)
    truth.transmat_ = 0.8 * np.eye(4) + 0.2 * rng.dirichlet(np.ones(4), size=4)
    truth.lambdas_ = np.array([[3.0, 10.0], [3.5, 11.0], [12.0, 2.0], [13.0, 2.5]])
    x, _ = truth.sample(1000, random_state=6)
    start = th.PoissonHMM(4, n_iter=5, random_state=0).fit(x, [250] * 4).em_state().values
    return x, [250] * 4, start


def test_poisson_soft_tie_limits(counts):
    x, lengths, start = counts

    def fit(**kw):
        est = th.PoissonHMM(4, n_iter=15, tol=-1.0, **kw)
        return est.fit(x, lengths, start=dict(start))

    for a, b in ((fit(ties={"lambdas": GROUPS}), fit(soft_ties={"lambdas": GROUPS}, spread=0)),
                 (fit(), fit(soft_ties={"lambdas": GROUPS}, spread=math.inf))):
        np.testing.assert_allclose(b.lambdas_, a.lambdas_, rtol=0, atol=1e-8)
        np.testing.assert_allclose(b.monitor_.history, a.monitor_.history, rtol=0, atol=1e-8)


def test_poisson_map_m_step_solves_the_stationarity_conditions(counts):
    """One M-step's rates against the MAP conditions written out by hand: for each member
    ``s / lambda - n - (lambda - c) / tau^2 = 0`` and for the centre ``c = mean(lambda)``."""
    x, lengths, start = counts
    tau = 0.7
    est = th.PoissonHMM(4, n_iter=1, tol=-1.0, soft_ties={"lambdas": GROUPS}, spread=tau)
    est.fit(x, lengths, start=dict(start))
    before = th.PoissonHMM(4, init_params="")
    before.startprob_, before.transmat_ = start["startprob"], start["transmat"]
    before.lambdas_ = start["lambdas"]
    _, gamma = before.score_samples(x, lengths)
    n, s = gamma.sum(0), gamma.T @ x
    for j, g in enumerate(GROUPS):
        lam = est.lambdas_[g]
        c = est.soft_ties_[j].value
        np.testing.assert_allclose(c, lam.mean(0), rtol=1e-12)
        grad = s[g] / lam - n[g][:, None] - (lam - c) / tau**2
        assert np.abs(grad).max() < 1e-8 * n.max(), grad
        assert np.all(np.abs(lam - s[g] / n[g][:, None]) > 1e-3)  # really pooled
    assert all(f.spread == tau for f in est.soft_ties_)
    learned = th.PoissonHMM(4, n_iter=10, soft_ties={"lambdas": GROUPS}).fit(
        x, lengths, start=dict(start))
    assert all(f.learned and f.spread >= 0 for f in learned.soft_ties_)


def test_positive_spread_stays_off_zero_where_ml_collapses(data):
    """From the data-wide initial covariances the first M-step sees diffuse posteriors: the
    maximum-likelihood spread is 0 there and stays 0 (equal members stay equal);
    ``spread="positive"`` keeps it off 0 and the members apart."""
    x, lengths = data
    kw = dict(n_iter=20, init_params="stc", covars_prior=0, soft_ties={"means": GROUPS})
    fits = {}
    for spread in (None, "positive"):
        est = th.GaussianHMM(4, "diag", spread=spread, **kw)
        est.means_ = np.array([[0.0, 0.0], [0.4, 0.2], [3.0, 3.0], [3.3, 2.8]])
        fits[spread] = est.fit(x, lengths)
    assert all(f.spread > 0 and f.learned for f in fits["positive"].soft_ties_)
    for g in GROUPS:
        assert np.abs(np.diff(fits["positive"].means_[g], axis=0)).max() > 1e-3
    assert min(f.spread for f in fits[None].soft_ties_) >= 0.0
    with pytest.raises(DeclarationError, match="positive"):
        th.GaussianHMM(4, soft_ties={"means": GROUPS}, spread="wide").fit(x, lengths)
