"""Joint refinement through the executor seam: batches of datasets on workers, same answer."""

import os
import time

import numpy as np
import pytest

from tests.refine.conftest import gauss_data, gauss_model
from tiedsci.core import Positive
from tiedsci.parallel import DaskExecutor, SerialExecutor, payload_bytes
from tiedsci.refine import JointRefinement
from tiedsci.refine.distributed import (
    _reduce,
    _start,
    _trial,
    _trial_sums,
    make_batches,
)
from tiedsci.refine.synthetic import (
    LOCAL_NAMES,
    make_powder_data,
    make_powder_model,
    perturbed_start,
)


def _tied(datasets):
    """Shared centre; local amp (positive), widths related by affine and derived relations,
    a restraint on one local background (restrained parameters become shared)."""
    jr = JointRefinement()
    for ds in datasets:
        jr.add(ds, gauss_model)
    jr.shared("center", 0.0)
    jr.local("amp", 6.0, bounds=Positive())
    jr.local("width", 1.2)
    jr.local("bkg", 0.0)
    reg = jr.registry
    reg.affine("d1.width", "d0.width", scale=1.5)
    reg.derive("d2.width", lambda a, b: 0.6532 * (a * b) ** 0.5, deps=("d0.width", "d1.width"))
    reg.restrain("d1.bkg", strength=1 / 0.05**2, target=2.0)
    return jr


def _powder(n_datasets, n_points=300, seed=0):
    """Powder-like joint refinement: bounded shared cell (restrained a), shared intensities,
    per-dataset scale, zero, U, V, W and background."""
    setup, datasets, truth = make_powder_data(n_datasets, n_points=n_points, n_peaks=8,
                                              random_state=seed)
    start = perturbed_start(truth, [d.name for d in datasets], random_state=seed + 1)
    model = make_powder_model(setup)
    jr = JointRefinement()
    for ds in datasets:
        jr.add(ds, model)
    for name, value in zip("abc", start["cell"]):
        jr.shared(f"cell.{name}", float(value), bounds=(4.0, 9.0))
    jr.shared("intensities", start["intensities"])
    for name in LOCAL_NAMES:
        jr.local(name, {ds.name: start[ds.name][name] for ds in datasets})
    jr.registry.fix(f"{datasets[0].name}.scale")
    jr.registry.restrain("cell.a", strength=1 / 0.010**2, target=5.020)
    return jr


def _assert_same(a, b, rtol, same_path=True):
    """Same optimum (to rtol); with ``same_path`` also the same counters and stopping reason
    (two paths, e.g. serial then distributed, may end on a different rounding-level test)."""
    assert a.free_names == b.free_names
    np.testing.assert_allclose(b.theta, a.theta, rtol=rtol, atol=0)
    for name in a.values:
        np.testing.assert_allclose(b.values[name], a.values[name], rtol=rtol, atol=0)
        np.testing.assert_allclose(b.esd[name], a.esd[name], rtol=rtol, atol=0)
    # off-diagonal covariances of nearly uncorrelated pairs are ~0: compare correlations
    np.testing.assert_allclose(b.correlation, a.correlation, rtol=0, atol=rtol)
    np.testing.assert_allclose([b.chi2, b.redchi], [a.chi2, a.redchi], rtol=rtol)
    # the restraint penalty is a small part of chi2: compare it on chi2's scale (two paths to
    # the optimum that stop at rounding level differ there by ~1e-8 of the penalty alone)
    np.testing.assert_allclose(b.penalty, a.penalty, rtol=0, atol=rtol * a.chi2)
    for da, db in zip(a.datasets, b.datasets):
        np.testing.assert_allclose(db.y_calc, da.y_calc, rtol=rtol)
    if same_path:
        assert (a.converged, a.message, a.nfev, a.njev, a.n_iter) == \
            (b.converged, b.message, b.nfev, b.njev, b.n_iter)
    else:
        assert a.converged and b.converged


@pytest.mark.parametrize("n_batches", [1, 2, 3])
def test_serial_executor_equals_the_serial_fit_with_relations(n_batches):
    jr = _tied(gauss_data(seed=0))
    serial = jr.fit()
    batched = jr.fit(executor=SerialExecutor(), n_batches=n_batches)
    _assert_same(serial, batched, rtol=1e-8)
    assert serial.penalty > 0  # the restraint is really in play (evaluated on the client)


def test_progress_reports_the_same_iterations_serial_and_batched():
    jr = _tied(gauss_data(seed=2))
    seen_serial, seen_batched = [], []
    serial = jr.fit(callback=lambda i, chi2: seen_serial.append((i, chi2)))
    jr.fit(executor=SerialExecutor(), n_batches=2,
           callback=lambda i, chi2: seen_batched.append((i, chi2)))
    assert [i for i, _ in seen_serial] == list(range(1, serial.n_iter + 1))
    assert [i for i, _ in seen_batched] == [i for i, _ in seen_serial]
    np.testing.assert_allclose([c for _, c in seen_batched], [c for _, c in seen_serial],
                               rtol=1e-10)
    # the last report is the final chi-square (data + restraint penalty)
    np.testing.assert_allclose(seen_serial[-1][1], serial.chi2 + serial.penalty, rtol=1e-12)


def test_dask_equals_the_serial_fit_and_the_serial_executor(dask_client):
    jr = _powder(6)
    serial = jr.fit()
    executor = DaskExecutor(dask_client)
    dask = jr.fit(executor=executor, n_batches=2)
    _assert_same(serial, dask, rtol=1e-8)
    # a fixed sharding sums in the same order in both executors
    _assert_same(jr.fit(executor=SerialExecutor(), n_batches=2), dask, rtol=1e-12)
    assert executor.bytes_sent > 0


def test_staged_fit_on_a_client(dask_client):
    jr = _tied(gauss_data(seed=3))
    stages = [{"name": "bkg", "vary": ["bkg"]}, {"name": "all", "vary": ["*"]}]
    serial = jr.fit(stages=stages)
    dask = jr.fit(stages=stages, client=dask_client, n_batches=3)
    _assert_same(serial, dask, rtol=1e-8)
    assert [s.name for s in dask.stages] == ["bkg", "all"]


def test_messages_per_iteration_do_not_grow_with_the_number_of_datasets():
    sizes = []
    for n in (2, 8):
        problem = _powder(n, n_points=60).compile()
        (shard,) = make_batches(problem, 1)
        state = _start(shard)
        ns = problem.partition.shared.size
        ds = np.full(ns, 1e-6)
        reduced = _reduce(state, 1e-3, 1e-12, 1.0)
        sums = _trial_sums(_trial(state, ds, 1e-3, 1e-12))
        assert reduced.s.shape == (ns, ns)
        sizes.append((payload_bytes(reduced), payload_bytes(sums), payload_bytes(ds)))
    assert sizes[0] == sizes[1]


def test_bad_arguments():
    jr = _tied(gauss_data(seed=0))
    with pytest.raises(ValueError, match="optimizer='tiedsci'"):
        jr.fit(optimizer="lmfit", executor=SerialExecutor())
    with pytest.raises(ValueError, match="n_batches"):
        jr.fit(executor=SerialExecutor(), n_batches=4)  # only 3 datasets
    with pytest.raises(ValueError, match="n_batches"):
        jr.fit(executor=SerialExecutor(), n_batches=0)

    class MapOnly:  # an executor that cannot keep state on its workers
        def put(self, shards):
            return list(shards)

        def map(self, fn, handles, *args):
            return [fn(h, *args) for h in handles]

        def map_reduce(self, fn, handles, *args, combine=None):
            raise AssertionError("not reached")

    with pytest.raises(TypeError, match="map_persist"):
        jr.fit(executor=MapOnly())


@pytest.fixture(scope="module")
def fragile_client():
    """A 2-worker cluster of its own: a test kills one of its workers."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    # glibc's default mmap threshold is lost under dask's MALLOC_TRIM_THRESHOLD_ setting and
    # torch/numpy temporaries then cost page faults (3x slower tasks); restore a large one
    with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_":
                          16 * 2**20}):
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=50)
    client = distributed.Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_a_worker_killed_mid_step_is_survived(fragile_client):
    client = fragile_client
    jr = _powder(4, n_points=400, seed=5)
    serial = jr.fit()
    assert serial.n_iter >= 3
    victim = sorted(client.scheduler_info()["workers"])[0]
    killed = []

    def kill_after_first_step(n_iter, chi2):
        # the step just accepted sends its Jacobian tasks: kill a worker while it runs one
        if n_iter != 1:
            return
        deadline = time.perf_counter() + 5.0
        while not client.processing(workers=[victim])[victim] and \
                time.perf_counter() < deadline:
            time.sleep(0.002)
        killed.append(list(client.processing(workers=[victim])[victim]))
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:  # the worker dies mid-call; that is the point
            pass

    survived = jr.fit(client=client, n_batches=2, callback=kill_after_first_step)
    assert len(killed) == 1 and killed[0], "no task was running on the killed worker"
    assert victim not in client.scheduler_info()["workers"]  # that worker process is gone
    _assert_same(serial, survived, rtol=1e-8)


def _stop_at(n):
    def callback(n_iter, chi2):
        if n_iter == n:
            raise KeyboardInterrupt  # as if Ctrl-C came right after this accepted step
    return callback


def _interrupt_then_resume(jr, tmp_path, stages=None, **where):
    ckpt = tmp_path / "ckpt"
    with pytest.warns(RuntimeWarning, match="interrupted"):
        cut = jr.fit(stages=stages, checkpoint=ckpt, callback=_stop_at(2), **where)
    assert cut.message == "interrupted" and not cut.converged
    assert (tmp_path / "ckpt.json").exists() and (tmp_path / "ckpt.npz").exists()
    return cut, jr.fit(stages=stages, resume=tmp_path / "ckpt.json", **where)


def test_a_distributed_fit_is_interrupted_and_resumed_like_a_serial_one(tmp_path):
    jr = _tied(gauss_data(seed=4))
    where = dict(executor=SerialExecutor(), n_batches=2)
    full = jr.fit(**where)
    assert full.n_iter > 3
    cut, resumed = _interrupt_then_resume(jr, tmp_path, **where)
    assert cut.n_iter == 2
    _assert_same(full, resumed, rtol=0)  # the same iterates: bit for bit
    assert resumed.theta.tobytes() == full.theta.tobytes()
    # a checkpoint of the serial fit resumes on the executor (and reaches the same optimum)
    _, serial_resumed = _interrupt_then_resume(jr, tmp_path / "s")
    _assert_same(full, jr.fit(resume=tmp_path / "s" / "ckpt.json", **where), rtol=1e-8,
                 same_path=False)
    _assert_same(jr.fit(), serial_resumed, rtol=0)


def test_a_staged_fit_on_a_client_is_interrupted_and_resumed(dask_client, tmp_path):
    jr = _tied(gauss_data(seed=5))
    stages = [{"name": "bkg", "vary": ["bkg"]}, {"name": "all", "vary": ["*"]}]
    where = dict(client=dask_client, n_batches=2)
    full = jr.fit(stages=stages, **where)
    cut, resumed = _interrupt_then_resume(jr, tmp_path, stages=stages, **where)
    assert [s.name for s in cut.stages] == ["bkg"] and cut.message == "interrupted"
    _assert_same(full, resumed, rtol=0)
    assert [s.name for s in resumed.stages] == ["bkg", "all"]
    _assert_same(jr.fit(stages=stages), resumed, rtol=1e-8)


class _CtrlCExecutor(SerialExecutor):
    """A SerialExecutor whose n-th ``map_persist`` (a trial or accept round) is interrupted."""

    def __init__(self, n):
        self.calls, self.n = 0, n

    def map_persist(self, fn, handles, *args):
        self.calls += 1
        if self.calls == self.n:
            raise KeyboardInterrupt
        return super().map_persist(fn, handles, *args)


@pytest.mark.parametrize("n", [4, 5, 6])  # 1: start; then trial, accept, trial, ...
def test_ctrl_c_inside_a_distributed_round_keeps_the_last_accepted_point(tmp_path, n):
    jr = _tied(gauss_data(seed=6))
    full = jr.fit(executor=SerialExecutor(), n_batches=2)
    states = []
    with pytest.warns(RuntimeWarning, match="interrupted"):
        cut = jr.fit(executor=_CtrlCExecutor(n), n_batches=2, checkpoint=states.append)
    assert cut.message == "interrupted" and states
    assert cut.n_iter == states[-1]["lm"].n_iter >= 1
    np.testing.assert_array_equal(cut.theta, states[-1]["lm"].theta)
    resumed = jr.fit(executor=SerialExecutor(), n_batches=2, resume=states[-1])
    _assert_same(full, resumed, rtol=0)
