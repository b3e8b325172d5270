"""The map-reduce seam: serial and Dask executors give the same tree-summed result."""

import numpy as np
import pytest

from tiedsci.parallel import (
    DaskExecutor,
    SerialExecutor,
    StatefulExecutor,
    as_executor,
    payload_bytes,
)


def _stats(shard, w):
    return np.array([shard.sum() * w, (shard**2).sum()])


def test_serial_map_reduce_sums_every_shard():
    shards = [np.arange(i, i + 5, dtype=float) for i in range(7)]
    ex = SerialExecutor()
    got = ex.map_reduce(_stats, ex.put(shards), 2.0)
    want = sum(_stats(s, 2.0) for s in shards)
    np.testing.assert_allclose(got, want, rtol=1e-15)
    assert len(ex.map(_stats, ex.put(shards), 1.0)) == 7


def test_as_executor_rejects_both_and_garbage():
    with pytest.raises(ValueError, match="either"):
        as_executor(executor=SerialExecutor(), client=object())
    with pytest.raises(TypeError, match="put/map/map_reduce"):
        as_executor(executor=42)
    assert isinstance(as_executor(), SerialExecutor)


def test_payload_bytes_grows_with_size():
    assert payload_bytes(np.zeros(1000)) > payload_bytes(np.zeros(10))


@pytest.mark.parametrize("client_reduce_max", [64, 0])  # combine here / as worker tasks
def test_dask_equals_serial_for_fixed_sharding(dask_client, client_reduce_max):
    rng = np.random.default_rng(0)
    shards = [rng.normal(size=50) for _ in range(9)]
    serial = SerialExecutor()
    dask = DaskExecutor(dask_client, client_reduce_max=client_reduce_max)
    a = serial.map_reduce(_stats, serial.put(shards), 0.5)
    b = dask.map_reduce(_stats, dask.put(shards), 0.5)
    # same tree of additions -> bit-identical
    np.testing.assert_array_equal(a, b)
    assert dask.bytes_sent > 0


def _scaled(shard, k):
    return shard * k


def test_map_persist_keeps_results_resident_for_the_next_map(dask_client):
    shards = [np.arange(3.0) + i for i in range(5)]
    want = sum(_stats(s * 6.0, 1.0) for s in shards)
    for ex in (SerialExecutor(), DaskExecutor(dask_client)):
        assert isinstance(ex, StatefulExecutor)
        handles = ex.put(shards)
        for k in (2.0, 3.0):
            handles = ex.map_persist(_scaled, handles, k)
        np.testing.assert_array_equal(ex.map_reduce(_stats, handles, 1.0), want)
