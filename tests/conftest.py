"""Fixtures shared across the test packages."""

import pytest


@pytest.fixture(scope="session")
def dask_client():
    """A 2-worker LocalCluster (processes, one thread each), shared by the distributed tests."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, silence_logs=40)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()
