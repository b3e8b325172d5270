import numpy as np
import pytest

from tiedsci.errors import DataError
from tiedsci.refine import Dataset


def test_weights_from_sigma_and_used_points():
    x = np.arange(10.0)
    ds = Dataset(x, x**2, sigma=np.full(10, 2.0), mask=x == 3, limits=(1, 8), name="xray")
    np.testing.assert_allclose(ds.weights, 0.25)
    assert ds.n_obs == 7  # 1..8 without 3
    assert not ds.used[3] and not ds.used[0] and not ds.used[9]
    with pytest.raises(ValueError):
        ds.x[0] = 5.0  # read-only


def test_unit_weights_and_given_weights():
    x = np.arange(5.0)
    np.testing.assert_array_equal(Dataset(x, x, name="a").weights, 1.0)
    ds = Dataset(x, x, weights=[0, 1, 2, 3, 4], name="a")
    assert ds.n_obs == 4  # zero weight excluded


@pytest.mark.parametrize("field,bad,needle", [
    ("y", np.nan, "y is not finite at index 2"),
    ("y", np.inf, "y is not finite at index 2"),
    ("x", np.nan, "x is not finite at index 2"),
    ("sigma", 0.0, "sigma must be > 0, got 0.0 at index 2"),
    ("sigma", -1.0, "sigma must be > 0, got -1.0 at index 2"),
    ("sigma", np.nan, "sigma is not finite at index 2"),
])
def test_bad_values_name_dataset_and_index(field, bad, needle):
    arrays = {"x": np.arange(5.0), "y": np.ones(5), "sigma": np.ones(5)}
    arrays[field][2] = bad
    with pytest.raises(DataError, match="neutron") as exc:
        Dataset(arrays["x"], arrays["y"], sigma=arrays["sigma"], name="neutron")
    assert needle in str(exc.value)


def test_shape_and_option_errors():
    x = np.arange(5.0)
    with pytest.raises(DataError, match="y has 4 points but x has 5"):
        Dataset(x, np.ones(4), name="a")
    with pytest.raises(DataError, match="1-D"):
        Dataset(np.ones((5, 2)), np.ones(5), name="a")
    with pytest.raises(DataError, match="not both"):
        Dataset(x, x, sigma=np.ones(5), weights=np.ones(5), name="a")
    with pytest.raises(DataError, match="weights must be >= 0"):
        Dataset(x, x, weights=[1, 1, -1, 1, 1], name="a")
    with pytest.raises(DataError, match="no point is left"):
        Dataset(x, x, limits=(10, 20), name="a")
    with pytest.raises(DataError, match="mask must be boolean"):
        Dataset(x, x, mask=np.zeros(5), name="a")
    with pytest.raises(DataError, match="identifier"):
        Dataset(x, x, name="x ray")
