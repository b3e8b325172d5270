"""Distributed Baum-Welch: the E-step as a map over shards of sequences, statistics summed."""

import numpy as np
import pytest

from tiedsci.hmm import CategoricalHMM, GaussianHMM
from tiedsci.parallel import SerialExecutor


def _gaussian_data(seed=0, n_seq=24, length=60):
    truth = GaussianHMM(n_components=4, covariance_type="diag", random_state=seed)
    truth.startprob_ = np.full(4, 0.25)
    truth.transmat_ = np.full((4, 4), 0.1) + 0.6 * np.eye(4)
    truth.means_ = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 1.0], [3.0, 1.0]])
    truth.covars_ = np.full((4, 2), 0.5)
    truth.n_features = 2
    xs = [truth.sample(length, random_state=seed + i)[0] for i in range(n_seq)]
    return np.concatenate(xs), np.full(n_seq, length)


def _tied_gaussian(seed=1):
    return GaussianHMM(n_components=4, covariance_type="diag", n_iter=6, tol=0.0,
                       tie_states=[[0, 1], [2, 3]], random_state=seed)


def _categorical_data(seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(20, 50, size=30)
    return rng.integers(0, 6, size=(lengths.sum(), 1)), lengths


def _tied_categorical(seed=1):
    return CategoricalHMM(n_components=3, n_iter=6, tol=0.0, random_state=seed,
                          ties={"transmat": [[1, 2]]})


def _assert_same(a, b, rtol):
    for name in ("startprob_", "transmat_", "means_", "covars_", "emissionprob_"):
        if hasattr(a, name):
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=rtol, atol=1e-300)
    np.testing.assert_allclose(a.monitor_.history, b.monitor_.history, rtol=rtol)


@pytest.mark.parametrize("make, data", [(_tied_gaussian, _gaussian_data),
                                        (_tied_categorical, _categorical_data)])
def test_sharded_fit_equals_one_process_within_round_off(make, data):
    x, lengths = data()
    whole = make().fit(x, lengths)
    sharded = make().fit(x, lengths, executor=SerialExecutor(), n_shards=5)
    _assert_same(whole, sharded, rtol=1e-10)
    # likelihood still never decreases
    assert np.all(np.diff(sharded.monitor_.history) > -1e-8)


@pytest.mark.parametrize("make, data", [(_tied_gaussian, _gaussian_data),
                                        (_tied_categorical, _categorical_data)])
def test_dask_fit_equals_serial_for_a_fixed_sharding(dask_client, make, data):
    x, lengths = data()
    serial = make().fit(x, lengths, executor=SerialExecutor(), n_shards=4)
    dask = make().fit(x, lengths, client=dask_client, n_shards=4)
    _assert_same(serial, dask, rtol=1e-10)
    # tied states share their emission parameters in the distributed fit too
    if hasattr(dask, "means_"):
        np.testing.assert_array_equal(dask.means_[0], dask.means_[1])


def _kill_one_worker(client):
    import os
    import threading
    import time

    addr = sorted(client.scheduler_info()["workers"])[0]
    killed_at = []

    def kill():
        time.sleep(1.0)
        killed_at.append(time.perf_counter())
        try:
            client.run(os._exit, 1, workers=[addr])
        except Exception:  # the worker dies mid-call; that is the point
            pass

    thread = threading.Thread(target=kill)
    thread.start()
    return thread, addr, killed_at


def test_a_worker_killed_mid_fit_is_survived():
    distributed = pytest.importorskip("distributed")
    x, lengths = _gaussian_data(n_seq=60, length=200)

    def make():
        return GaussianHMM(n_components=4, covariance_type="diag", n_iter=40, tol=0.0,
                           tie_states=[[0, 1], [2, 3]], random_state=3)

    serial = make().fit(x, lengths, executor=SerialExecutor(), n_shards=6)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=50) as cluster, \
            distributed.Client(cluster) as client:
        import time

        thread, addr, killed_at = _kill_one_worker(client)
        survived = make().fit(x, lengths, client=client, n_shards=6)
        finished_at = time.perf_counter()
        thread.join()
        assert killed_at and killed_at[0] < finished_at  # the kill happened during the fit
        time.sleep(0.5)
        assert addr not in client.scheduler_info()["workers"]  # that worker process is gone
    _assert_same(serial, survived, rtol=1e-10)
