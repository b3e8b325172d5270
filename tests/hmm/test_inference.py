"""Forward-backward and Viterbi against hmmlearn's compiled implementation (the oracle)."""

import numpy as np
import pytest
from hmmlearn import hmm

from tests.hmm.conftest import random_gaussian_truth
from tiedsci.hmm.engines import get_engine
from tiedsci.hmm.inference import forward_backward, index_on, log_likelihood, viterbi
from tiedsci.hmm.packing import make_packing


def _oracle(rng, k=4, d=2, lengths=(30, 55, 1, 40)):
    m = hmm.GaussianHMM(k, "diag", init_params="")
    for name, v in random_gaussian_truth(rng, k, d, "diag").items():
        setattr(m, name, v)
    x, _ = m.sample(int(sum(lengths)), random_state=7)
    return m, x, np.array(lengths)


@pytest.mark.parametrize("engine", ["numpy", "torch"])
def test_posteriors_loglik_and_viterbi_match_hmmlearn(rng, engine):
    m, x, lengths = _oracle(rng)
    pk = make_packing(lengths)
    eng = get_engine(engine)
    idx = index_on(pk, eng)
    log_frame = eng.asarray(pk.pack(m._compute_log_likelihood(x)))
    post = forward_backward(m.startprob_, m.transmat_, log_frame, idx, eng)
    gamma = pk.unpack(eng.to_numpy(post.gamma))
    np.testing.assert_allclose(gamma, m.predict_proba(x, lengths), atol=1e-10)
    per_seq = post.log_likelihood
    begins = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    expect = [m.score(x[b:b + n]) for b, n in zip(begins, lengths)]
    np.testing.assert_allclose(per_seq, expect, rtol=1e-12)
    ll = log_likelihood(m.startprob_, m.transmat_, log_frame, idx, eng)
    np.testing.assert_allclose(ll, post.log_likelihood, rtol=1e-13)
    lp, states = viterbi(m.startprob_, m.transmat_, log_frame, idx, eng)
    lp_ref, states_ref = m.decode(x, lengths, algorithm="viterbi")
    np.testing.assert_allclose(lp.sum(), lp_ref, rtol=1e-12)
    np.testing.assert_array_equal(pk.unpack(states), states_ref)


def test_expected_transitions_match_bruteforce(rng):
    """xi summed over time equals the enumeration over all state paths of a tiny model."""
    import itertools

    k, t_len = 2, 5
    start = np.array([0.3, 0.7])
    trans = np.array([[0.8, 0.2], [0.4, 0.6]])
    log_b = np.log(rng.uniform(0.1, 1.0, size=(t_len, k)))
    counts = np.zeros((k, k))
    total = 0.0
    for path in itertools.product(range(k), repeat=t_len):
        p = start[path[0]] * np.exp(log_b[0, path[0]])
        for t in range(1, t_len):
            p *= trans[path[t - 1], path[t]] * np.exp(log_b[t, path[t]])
        total += p
        for t in range(1, t_len):
            counts[path[t - 1], path[t]] += p
    pk = make_packing(np.array([t_len]))
    eng = get_engine("numpy")
    post = forward_backward(start, trans, log_b, index_on(pk, eng), eng)
    np.testing.assert_allclose(post.trans, counts / total, rtol=1e-12)
    np.testing.assert_allclose(post.log_likelihood[0], np.log(total), rtol=1e-12)


def test_structural_zeros_stay_zero_and_no_nan():
    start = np.array([1.0, 0.0, 0.0])
    trans = np.array([[0.9, 0.1, 0.0], [0.0, 0.9, 0.1], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(0)
    log_b = rng.normal(size=(50, 3)) * 5
    pk = make_packing(np.array([20, 30]))
    eng = get_engine("numpy")
    post = forward_backward(start, trans, log_b, index_on(pk, eng), eng)
    assert np.all(np.isfinite(post.gamma))
    assert post.trans[1, 0] == 0 and post.trans[2, 0] == 0 and post.trans[0, 2] == 0
    first = post.gamma[: pk.batch_sizes[0]]
    np.testing.assert_array_equal(first[:, 1:], 0.0)


def test_one_sequence_compiled_kernels_match_the_batched_recursion():
    """A single sequence runs on the engine's compiled kernels; same numbers as the loop."""
    from tiedsci.hmm import inference
    from tiedsci.hmm.engines import get_engine
    from tiedsci.hmm.packing import make_packing

    rng = np.random.default_rng(0)
    k, n = 3, 400
    eng = get_engine("numpy")
    assert eng.sequence_kernels() is not None
    idx = inference.index_on(make_packing(np.array([n])), eng)
    sp = rng.dirichlet(np.ones(k))
    tm = rng.dirichlet(np.ones(k), size=k)
    tm[0, 1] = 0.0  # a structural zero stays zero
    tm /= tm.sum(1, keepdims=True)
    lf = rng.normal(size=(n, k)) * 30  # large spreads: the shift keeps the kernels in range

    class LoopOnly:
        def __getattr__(self, name):
            if name == "sequence_kernels":
                raise AttributeError(name)
            return getattr(eng, name)

    a = inference.forward_backward(sp, tm, lf, idx, eng)
    b = inference.forward_backward(sp, tm, lf, idx, LoopOnly())
    for f in ("gamma", "start", "trans", "log_likelihood"):
        np.testing.assert_allclose(getattr(a, f), getattr(b, f), rtol=1e-10, atol=1e-12)
    assert a.trans[0, 1] == 0.0
    np.testing.assert_allclose(inference.log_likelihood(sp, tm, lf, idx, eng),
                               inference.log_likelihood(sp, tm, lf, idx, LoopOnly()), rtol=1e-12)
