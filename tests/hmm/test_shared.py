"""Several HMMs fitted at once, sharing the emissions of chosen states across models."""

import numpy as np
import pytest
from hmmlearn import hmm

import tiedsci.hmm as th
from tiedsci.errors import DeclarationError
from tiedsci.hmm.shared import fit_shared


def _sample(means, trans, n, seed):
    m = hmm.GaussianHMM(len(means), "diag", init_params="")
    m.startprob_ = np.full(len(means), 1.0 / len(means))
    m.transmat_ = np.asarray(trans)
    m.means_ = np.asarray(means, float)
    m.covars_ = np.full(np.shape(means), 0.5)
    return m.sample(n, random_state=seed)[0]


def test_shared_state_across_two_models():
    # model A: states (0, 3); model B: states (3, 6); the "3" state is shared
    xa = _sample([[0.0], [3.0]], [[0.9, 0.1], [0.2, 0.8]], 400, 1)
    xb = _sample([[3.0], [6.0]], [[0.7, 0.3], [0.1, 0.9]], 300, 2)
    a = th.GaussianHMM(2, "diag", covars_prior=0, random_state=0, init_params="stc")
    b = th.GaussianHMM(2, "diag", covars_prior=0, random_state=1, init_params="stc")
    a.means_ = np.array([[0.5], [2.5]])
    b.means_ = np.array([[2.5], [5.5]])
    res = fit_shared([a, b], [xa, xb], shared_states=[[(0, 1), (1, 0)]], n_iter=300, tol=1e-10)
    hist = np.array(res.monitor.history)
    assert np.all(np.diff(hist) >= -1e-9 * np.abs(hist[1:]))
    np.testing.assert_array_equal(a.means_[1], b.means_[0])
    np.testing.assert_array_equal(a.covars_[1], b.covars_[0])
    assert not np.allclose(a.transmat_, b.transmat_)
    # 2 x (1 start + 2 transition) + 3 distinct states x (mean + variance)
    assert res.n_free == 6 + 6
    # fixed point of EM: the shared mean is the pooled posterior mean of both data sets
    ga, gb = a.predict_proba(xa), b.predict_proba(xb)
    pooled = (ga[:, 1] @ xa[:, 0] + gb[:, 0] @ xb[:, 0]) / (ga[:, 1].sum() + gb[:, 0].sum())
    assert a.means_[1, 0] == pytest.approx(pooled, rel=1e-6)
    assert abs(a.means_[1, 0] - 3.0) < 0.2


def test_shared_fit_rejects_missing_state():
    x = np.zeros((10, 1))
    with pytest.raises(DeclarationError, match="does not exist"):
        fit_shared([th.GaussianHMM(2), th.GaussianHMM(2)], [x, x], shared_states=[[(0, 1),
                                                                                  (1, 2)]])
