"""Bad input raises clear tiedsci errors naming what is wrong."""

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.errors import DataError, DeclarationError, NotFittedError


def test_nan_in_x(rng):
    x = rng.normal(size=(50, 2))
    x[17, 1] = np.nan
    with pytest.raises(DataError, match="row 17"):
        th.GaussianHMM(2).fit(x)


@pytest.mark.parametrize("lengths,msg", [([20, 20], "sum to 40"), ([30, 0, 20], "lengths\\[1\\]"),
                                         ([[25, 25]], "1-D"), ([25.5, 24.5], "integers")])
def test_ragged_lengths(rng, lengths, msg):
    with pytest.raises(DataError, match=msg):
        th.GaussianHMM(2).fit(rng.normal(size=(50, 2)), lengths)


def test_symbols_out_of_range(rng):
    x = rng.integers(0, 4, size=(40, 1))
    x[9] = 7
    with pytest.raises(DataError, match="symbol 7 at row 9"):
        th.CategoricalHMM(2, n_features=4).fit(x)
    with pytest.raises(DataError, match="negative symbol"):
        th.CategoricalHMM(2).fit(-x)


def test_negative_counts(rng):
    x = rng.poisson(3.0, size=(40, 2))
    x[5, 0] = -1
    with pytest.raises(DataError, match="negative count at row 5"):
        th.PoissonHMM(2).fit(x)


@pytest.mark.parametrize("kw", [{"tie_states": [[0, 5]]}, {"ties": {"means": [[1, 3]]}},
                                {"ties": {"transmat": [[0, -1]]}}])
def test_tie_group_naming_missing_state(rng, kw):
    with pytest.raises(DeclarationError, match="does not exist"):
        th.GaussianHMM(3, **kw).fit(rng.normal(size=(30, 1)))


def test_unknown_tied_parameter(rng):
    with pytest.raises(DeclarationError, match="unknown parameter 'mean'"):
        th.GaussianHMM(3, ties={"mean": [[0, 1]]}).fit(rng.normal(size=(30, 1)))


def test_not_fitted(rng):
    with pytest.raises(NotFittedError, match="not fitted"):
        th.GaussianHMM(2).score(rng.normal(size=(10, 1)))


def test_bad_covariance_type(rng):
    with pytest.raises(ValueError, match="covariance_type"):
        th.GaussianHMM(2, "diagonal").fit(rng.normal(size=(10, 1)))
