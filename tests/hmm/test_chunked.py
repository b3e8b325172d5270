"""Chunked forward-backward equals the unsplit recursion; 10^6-step sequences are stable."""

import time

import numpy as np
import pytest
from hmmlearn import hmm

import tiedsci.hmm as th
from tiedsci.hmm.chunked import make_chunking
from tiedsci.hmm.engines import get_engine
from tiedsci.hmm.inference import forward_backward, index_on, viterbi
from tiedsci.hmm.packing import make_packing


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_chunked_equals_plain(engine):
    rng = np.random.default_rng(3)
    k = 4
    start = rng.dirichlet(np.ones(k))
    trans = rng.dirichlet(np.ones(k), size=k) * 0.3 + np.eye(k) * 0.7
    trans[0, 3] = 0.0  # a structural zero
    trans /= trans.sum(1, keepdims=True)
    lengths = np.array([900, 37, 1, 610])
    log_frame = rng.normal(size=(lengths.sum(), k)) * 3
    eng = get_engine(engine)
    pk = make_packing(lengths)
    plain = forward_backward(start, trans, eng.asarray(pk.pack(log_frame)), index_on(pk, eng),
                             eng)
    ch = make_chunking(lengths, chunk_len=50)
    cpk = ch.packing
    chunked = forward_backward(start, trans, eng.asarray(cpk.pack(log_frame)),
                               index_on(cpk, eng, ch), eng)
    np.testing.assert_allclose(chunked.log_likelihood, plain.log_likelihood, rtol=1e-12)
    np.testing.assert_allclose(cpk.unpack(eng.to_numpy(chunked.gamma)),
                               pk.unpack(eng.to_numpy(plain.gamma)), atol=1e-10)
    np.testing.assert_allclose(eng.to_numpy(chunked.trans), eng.to_numpy(plain.trans),
                               rtol=1e-9, atol=1e-9)
    assert eng.to_numpy(chunked.trans)[0, 3] == 0.0
    np.testing.assert_allclose(eng.to_numpy(chunked.start), eng.to_numpy(plain.start),
                               atol=1e-12)
    lp, states = viterbi(start, trans, eng.asarray(pk.pack(log_frame)), index_on(pk, eng), eng)
    lp_c, states_c = viterbi(start, trans, eng.asarray(cpk.pack(log_frame)),
                             index_on(cpk, eng, ch), eng)
    np.testing.assert_allclose(lp_c, lp, rtol=1e-12)
    np.testing.assert_array_equal(cpk.unpack(states_c), pk.unpack(states))


def _sample_chain(ref, n, rng):
    """Draw a long state path and Gaussian frames (oracle model's parameters)."""
    cum = np.cumsum(ref.transmat_, axis=1)
    u = rng.random(n)
    states = np.empty(n, dtype=np.int64)
    s = int(np.searchsorted(np.cumsum(ref.startprob_), u[0]))
    for t in range(n):
        if t:
            s = int(np.searchsorted(cum[s], u[t]))
        states[t] = s
    return ref.means_[states] + np.sqrt(ref._covars_[states]) * rng.standard_normal((n, 1))


def test_million_step_sequence_is_stable_and_matches_hmmlearn():
    k = 3
    ref = hmm.GaussianHMM(k, "diag", init_params="", implementation="scaling")
    ref.startprob_ = np.array([0.5, 0.3, 0.2])
    ref.transmat_ = np.array([[0.98, 0.02, 0.0], [0.01, 0.98, 0.01], [0.03, 0.0, 0.97]])
    ref.means_ = np.array([[0.0], [2.0], [5.0]])
    ref.covars_ = np.array([[1.0], [0.5], [2.0]])
    x = np.tile(_sample_chain(ref, 50_000, np.random.default_rng(0)), (20, 1))  # 10^6 steps
    ours = th.GaussianHMM(k, "diag", init_params="", n_iter=1, tol=-np.inf)
    for n in ("startprob_", "transmat_", "means_"):
        setattr(ours, n, getattr(ref, n))
    ours.covars_ = ref._covars_
    t0 = time.perf_counter()
    ll = ours.score(x)
    elapsed = time.perf_counter() - t0
    ll_ref = ref.score(x)
    assert np.isfinite(ll) and ll == pytest.approx(ll_ref, rel=1e-9)
    ours.fit(x)  # one EM step on 10^6 frames: finite, and the likelihood improves
    assert np.all(np.isfinite(ours.means_)) and np.all(np.isfinite(ours.transmat_))
    assert ours.score(x) >= ll - 1e-6 * abs(ll)
    assert elapsed < 20
    lp, states = ours.decode(x[:200_000])
    lp_ref, states_ref = ours.to_hmmlearn().decode(x[:200_000])
    assert lp == pytest.approx(lp_ref, rel=1e-10)
    np.testing.assert_array_equal(states, states_ref)
