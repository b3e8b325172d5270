"""Save/load (json + npz, no pickle) round trips exactly; hmmlearn conversion both ways."""

import json

import numpy as np
import pytest
from hmmlearn import hmm

import tiedsci.hmm as th


@pytest.mark.parametrize("make", [
    lambda: th.GaussianHMM(3, "full", n_iter=3, random_state=0, ties={"covars": [[0, 1]]}),
    lambda: th.TiedMixtureHMM(3, 2, n_iter=3, random_state=0),
    lambda: th.PoissonHMM(2, n_iter=3, random_state=0, tie_states=[[0, 1]]),
], ids=["gaussian", "tied-mixture", "poisson"])
def test_save_load_exact_round_trip(tmp_path, rng, make):
    x = rng.poisson(4.0, size=(120, 2)).astype(float)
    model = make().fit(x, [60, 60])
    json_path, npz_path = th.save(model, tmp_path / "model")
    assert json.loads(json_path.read_text())["class"] == type(model).__name__
    back = th.load(tmp_path / "model")
    assert type(back) is type(model)
    for attr in ("startprob_", "transmat_", "means_", "covars_", "lambdas_", "weights_"):
        if hasattr(model, attr):
            np.testing.assert_array_equal(getattr(back, attr), getattr(model, attr))
    assert back.get_params().keys() == model.get_params().keys()
    assert back.n_free == model.n_free
    assert back.score(x, [60, 60]) == model.score(x, [60, 60])
    assert back.monitor_.history == model.monitor_.history


def test_hmmlearn_round_trip(rng):
    x = rng.normal(size=(100, 2))
    model = th.GaussianHMM(2, "diag", n_iter=4, random_state=0).fit(x)
    ref = model.to_hmmlearn()
    assert isinstance(ref, hmm.GaussianHMM)
    assert ref.score(x) == pytest.approx(model.score(x), rel=1e-12)
    back = th.from_hmmlearn(ref, tie_states=[[0, 1]])
    np.testing.assert_array_equal(back.means_, model.means_)
    assert back.tie_states == [[0, 1]]
    sym = rng.integers(0, 3, (60, 1))
    cat = th.CategoricalHMM(2, n_iter=3, random_state=0).fit(sym)
    cat_ref = cat.to_hmmlearn()
    assert cat_ref.score(sym) == pytest.approx(cat.score(sym), rel=1e-12)
    np.testing.assert_array_equal(th.from_hmmlearn(cat_ref).emissionprob_, cat.emissionprob_)
