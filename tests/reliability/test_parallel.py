"""The executor seam (``tiedsci.parallel``) as the fitting functions use it: bad executors and
shard counts are named, and a failing executor leaves the estimator unfitted."""

from __future__ import annotations

import numpy as np
import pytest

import tiedsci.hmm as th
from tests.reliability.conftest import raises_naming
from tests.reliability.test_refine import _jr
from tiedsci.errors import NotFittedError
from tiedsci.parallel import SerialExecutor


@pytest.fixture
def xl(rng):
    return rng.normal(size=(60, 1)), [30, 30]


@pytest.mark.parametrize("n_shards", [0, -3, 2.5, "a", True])
def test_hmm_shard_count_is_checked(xl, n_shards):
    x, lengths = xl
    with raises_naming(ValueError, "n_shards"):
        th.GaussianHMM(2, n_iter=2).fit(x, lengths, executor=SerialExecutor(), n_shards=n_shards)


def test_garbage_executors_are_named(xl):
    x, lengths = xl
    with raises_naming(TypeError, "executor", "put/map/map_reduce"):
        th.GaussianHMM(2, n_iter=2).fit(x, lengths, executor=42)
    with raises_naming(ValueError, "executor=", "client="):
        th.GaussianHMM(2, n_iter=2).fit(x, lengths, executor=SerialExecutor(), client=object())
    with raises_naming(TypeError, "executor"):
        _jr().fit(executor="dask")
    with raises_naming(ValueError, "n_batches", "0"):
        _jr().fit(executor=SerialExecutor(), n_batches=0)
    with raises_naming(ValueError, "optimizer='tiedsci'"):
        _jr().fit(executor=SerialExecutor(), optimizer="lmfit")
    with raises_naming(ValueError, "at least one shard"):
        SerialExecutor().map_reduce(sum, [])


class _DyingExecutor(SerialExecutor):
    """Runs the first map-reduce, then loses its workers."""

    def __init__(self) -> None:
        self.calls = 0

    def map_reduce(self, *args, **kwargs):
        self.calls += 1
        if self.calls > 1:
            raise RuntimeError("all workers died (simulated)")
        return super().map_reduce(*args, **kwargs)


def test_a_failing_executor_surfaces_and_leaves_the_model_unfitted(xl):
    x, lengths = xl
    model = th.GaussianHMM(2, n_iter=5, random_state=0)
    with pytest.raises(RuntimeError, match="workers died"):
        model.fit(x, lengths, executor=_DyingExecutor(), n_shards=2)
    with pytest.raises(NotFittedError):
        model.score(x, lengths)
    # the same estimator fits normally afterwards, and equals a serial fit
    model.fit(x, lengths, executor=SerialExecutor(), n_shards=2)
    ref = th.GaussianHMM(2, n_iter=5, random_state=0).fit(x, lengths)
    np.testing.assert_allclose(model.means_, ref.means_, rtol=1e-10)
