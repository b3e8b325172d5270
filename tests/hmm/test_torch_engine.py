"""The torch engine (batched, padded-free packed layout) agrees with the numpy engine."""

import numpy as np
import pytest

import tiedsci.hmm as th

torch = pytest.importorskip("torch")


def _data(rng, kind):
    x = rng.normal(size=(300, 2))
    x[100:200] += 2.5
    lengths = np.array([120, 1, 79, 100])
    if kind == "categorical":
        return np.clip(np.round(x[:, :1] + 2), 0, 5).astype(int), lengths
    if kind == "poisson":
        return rng.poisson(np.exp(0.5 * x + 1.0)), lengths
    return x, lengths


MODELS = {
    "gaussian-full": lambda **kw: th.GaussianHMM(3, "full", **kw),
    "gaussian-diag-tied": lambda **kw: th.GaussianHMM(4, "diag", tie_states=[[0, 1]], **kw),
    "gmm-diag": lambda **kw: th.GMMHMM(3, 2, **kw),
    "tied-mixture": lambda **kw: th.TiedMixtureHMM(3, 3, covariance_type="full", **kw),
    "categorical": lambda **kw: th.CategoricalHMM(3, **kw),
    "poisson": lambda **kw: th.PoissonHMM(3, **kw),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_torch_float64_fit_matches_numpy(rng, name):
    x, lengths = _data(rng, name.split("-")[0])
    ref = MODELS[name](n_iter=8, tol=-np.inf, random_state=0).fit(x, lengths)
    tor = MODELS[name](n_iter=8, tol=-np.inf, random_state=0, engine="torch",
                       dtype="float64").fit(x, lengths)
    np.testing.assert_allclose(tor.monitor_.history, ref.monitor_.history, rtol=1e-8)
    for attr in ("transmat_", "means_", "covars_", "emissionprob_", "lambdas_", "weights_"):
        if hasattr(ref, attr):
            np.testing.assert_allclose(getattr(tor, attr), getattr(ref, attr), rtol=1e-8,
                                       atol=1e-12)
    np.testing.assert_array_equal(tor.predict(x, lengths), ref.predict(x, lengths))
    np.testing.assert_allclose(tor.predict_proba(x, lengths), ref.predict_proba(x, lengths),
                               atol=1e-10)


def test_torch_float32_close_to_float64(rng):
    x, lengths = _data(rng, "gaussian")
    ref = th.GaussianHMM(3, "diag", n_iter=5, random_state=0).fit(x, lengths)
    f32 = th.GaussianHMM(3, "diag", engine="torch", dtype="float32", init_params="")
    for n in ("startprob_", "transmat_", "means_", "covars_"):
        setattr(f32, n, getattr(ref, n))
    assert f32.score(x, lengths) == pytest.approx(ref.score(x, lengths), rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(rng):
    x, lengths = _data(rng, "gaussian")
    ref = th.GaussianHMM(3, "diag", n_iter=5, tol=-np.inf, random_state=0).fit(x, lengths)
    gpu = th.GaussianHMM(3, "diag", n_iter=5, tol=-np.inf, random_state=0, engine="torch",
                         device="cuda").fit(x, lengths)
    np.testing.assert_allclose(gpu.means_, ref.means_, rtol=1e-8)
