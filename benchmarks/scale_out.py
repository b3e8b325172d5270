"""Scale-out benchmark: serial vs 2-worker Dask for distributed Baum-Welch and joint refinement.

Usage: ``python benchmarks/scale_out.py [--json] [--sections hmm refine]
[--n-seq 10000] [--length 500] [--n-iter 10] [--n-datasets 100 400 1000] [--points 2000]``

HMM: serial and Dask seconds for ``--n-iter`` EM iterations, the speedup, the largest relative
difference between the two fits, and the bytes sent per iteration.

Joint refinement (synthetic powder-like datasets, :mod:`tiedsci.refine.synthetic`: 3 shared
cell parameters and 20 shared intensities, 8 local parameters per dataset, ``--points`` points
each): for each N the serial fit (``fit()``) and the same fit on the 2-worker cluster
(``fit(client=...)``, one batch of datasets per worker) are timed end to end (compile, fit,
covariance, statistics), and per accepted LM iteration (median time between progress callbacks:
residuals, Jacobians, elimination, solve, back substitution). ``bytes_per_iter`` is what
``DaskExecutor.bytes_sent`` grows by per iteration (broadcast arguments and results; the data
travel once, at ``put``). ``max_rel_diff`` is over all values and esds. The Dask fit reports an
accepted step before its workers have finished the Jacobian at the new point (the serial fit
after), so the last Jacobian falls into ``dask_after_last_step_s``.

Both use a ``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` whose workers get
``MALLOC_MMAP_THRESHOLD_`` = 16 MiB (see :func:`_cluster`).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np

from tiedsci.parallel import DaskExecutor, SerialExecutor

WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": 16 * 2**20}


@contextmanager
def _cluster(n_workers: int = 2) -> Any:
    """A local cluster (processes, one thread each) and its client.

    dask's nanny sets ``MALLOC_TRIM_THRESHOLD_`` in the workers, which also switches off glibc's
    adaptive mmap threshold: every numpy/torch temporary above 128 KiB is then a fresh mmap and
    its page faults (measured: refinement tasks 3x slower). A fixed 16 MiB mmap threshold
    restores the speed of a plain process.
    """
    import dask
    import distributed

    env = {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENV.items()}
    with dask.config.set(env), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "large graph" notes about the one-time put
        with distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None,
                                      silence_logs=50) as cluster, \
                distributed.Client(cluster) as client:
            yield client


# ---------------------------------------------------------------------- HMM
def _data(n_seq: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    states = rng.integers(0, 8, size=n_seq * length)
    means = rng.normal(scale=3.0, size=(8, 4))
    x = means[states] + rng.normal(size=(n_seq * length, 4))
    return x, np.full(n_seq, length)


def _model(n_iter: int) -> Any:
    from tiedsci.hmm import GaussianHMM

    return GaussianHMM(n_components=8, covariance_type="diag", n_iter=n_iter, tol=0.0,
                       tie_states=[[0, 1], [2, 3]], random_state=0)


class _Timed:
    """Delegates to an executor and stamps the start of every ``map_reduce`` (one per EM
    iteration), so that iterations can be timed apart from the set-up (initialisation, put)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.stamps: list[tuple[float, int]] = []
        self.waits: list[float] = []

    def put(self, shards: Any) -> Any:
        return self.inner.put(shards)

    def map(self, fn: Any, handles: Any, *args: Any) -> Any:
        return self.inner.map(fn, handles, *args)

    def map_reduce(self, fn: Any, handles: Any, *args: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        self.stamps.append((start, getattr(self.inner, "bytes_sent", 0)))
        out = self.inner.map_reduce(fn, handles, *args, **kw)
        self.waits.append(time.perf_counter() - start)
        return out

    def client_s(self, end: float) -> float:
        """Median seconds per iteration spent on the client outside the map-reduce (M-step,
        bookkeeping): the part that more workers cannot shorten."""
        starts = [t for t, _ in self.stamps] + [end]
        return float(np.median(np.diff(starts) - np.asarray(self.waits)))

    def per_iter(self, end: float, end_bytes: int) -> tuple[float, float]:
        """Median seconds and bytes per EM iteration (E-step map-reduce + M-step)."""
        arr = np.array(self.stamps + [(end, end_bytes)], dtype=float)
        return float(np.median(np.diff(arr[:, 0]))), float(np.median(np.diff(arr[:, 1])))


def bench_hmm(args: argparse.Namespace) -> dict | None:
    """Distributed Baum-Welch; ``None`` when :mod:`tiedsci.hmm` has no ``executor=``."""
    import inspect

    from threadpoolctl import threadpool_limits

    try:
        from tiedsci.hmm import GaussianHMM
    except ImportError:
        return None
    if "executor" not in inspect.signature(GaussianHMM.fit).parameters:
        return None
    x, lengths = _data(args.n_seq, args.length)
    n_shards = args.shards
    timed = _Timed(SerialExecutor())
    with threadpool_limits(1):  # as each single-threaded worker
        start = time.perf_counter()
        serial = _model(args.n_iter).fit(x, lengths, executor=timed, n_shards=n_shards)
        end = time.perf_counter()
    serial_s = end - start
    serial_it, _ = timed.per_iter(end, 0)
    serial_client = timed.client_s(end)
    with _cluster() as client:
        executor = DaskExecutor(client)
        _model(1).fit(x[: lengths[0] * 4], lengths[:4], executor=executor, n_shards=2)  # warm up
        executor.reset_bytes()
        timed = _Timed(executor)
        start = time.perf_counter()
        dask = _model(args.n_iter).fit(x, lengths, executor=timed, n_shards=n_shards)
        end = time.perf_counter()
        dask_s = end - start
        dask_it, bytes_it = timed.per_iter(end, executor.bytes_sent)
        dask_client = timed.client_s(end)
    diffs = [np.max(np.abs(getattr(serial, a) - getattr(dask, a))
                    / np.maximum(np.abs(getattr(serial, a)), 1e-300))
             for a in ("startprob_", "transmat_", "means_", "covars_")]
    return {"n_sequences": args.n_seq, "length": args.length, "n_iter": args.n_iter,
            "n_shards": n_shards, "serial_s": serial_s, "dask_s": dask_s,
            "speedup": serial_s / dask_s, "max_rel_diff": float(max(diffs)),
            "bytes_per_iter": bytes_it, "serial_iter_s": serial_it, "dask_iter_s": dask_it,
            "iter_speedup": serial_it / dask_it,
            "serial_client_s_per_iter": serial_client, "dask_client_s_per_iter": dask_client,
            # before the first iteration: k-means initialisation on the client (both) and,
            # for Dask, shipping the shards once
            "serial_setup_s": serial_s - serial_it * args.n_iter,
            "dask_setup_s": dask_s - dask_it * args.n_iter,
            "data_bytes_sent_once": int(x.nbytes)}


# ---------------------------------------------------------------------- joint refinement
def _refinement(n_datasets: int, n_points: int, seed: int = 0) -> Any:
    """Synthetic joint refinement: shared cell and intensities, 8 locals per dataset."""
    from tiedsci.refine import JointRefinement
    from tiedsci.refine.synthetic import (
        LOCAL_NAMES,
        make_powder_data,
        make_powder_model,
        perturbed_start,
    )

    setup, datasets, truth = make_powder_data(n_datasets, n_points=n_points,
                                              random_state=seed)
    start = perturbed_start(truth, [d.name for d in datasets], random_state=seed + 1)
    model = make_powder_model(setup)
    jr = JointRefinement()
    for ds in datasets:
        jr.add(ds, model)
    for name, value in zip("abc", start["cell"]):
        jr.shared(f"cell.{name}", float(value), unit="angstrom")
    jr.shared("intensities", start["intensities"])
    for name in LOCAL_NAMES:
        jr.local(name, {ds.name: start[ds.name][name] for ds in datasets})
    jr.registry.fix(f"{datasets[0].name}.scale")
    return jr


def _max_rel_diff(a: Any, b: Any) -> float:
    worst = 0.0
    for name in a.values:
        for x, y in ((a.values[name], b.values[name]), (a.esd[name], b.esd[name])):
            rel = np.abs(x - y) / np.maximum(np.abs(x), 1e-300)
            worst = max(worst, float(np.max(rel)))
    return worst


def _timed_fit(jr: Any, executor: Any = None) -> tuple[Any, float, list[tuple[float, int]]]:
    """The fit, its seconds, and (seconds since start, bytes sent) at every accepted step."""
    marks: list[tuple[float, int]] = []
    start = time.perf_counter()

    def progress(n_iter: int, chi2: float) -> None:
        marks.append((time.perf_counter() - start, getattr(executor, "bytes_sent", 0)))

    res = jr.fit(executor=executor, callback=progress)
    return res, time.perf_counter() - start, marks


def _per_iter(marks: list[tuple[float, int]]) -> tuple[float, float]:
    """Median seconds and bytes between consecutive accepted steps."""
    if len(marks) < 2:
        return float("nan"), float("nan")
    arr = np.array(marks, dtype=float)
    return float(np.median(np.diff(arr[:, 0]))), float(np.median(np.diff(arr[:, 1])))


def bench_refine(args: argparse.Namespace) -> list[dict]:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1)  # as on each single-threaded worker
    out = []
    _refinement(2, 200).fit()  # torch's one-time initialisation, here
    with _cluster() as client:
        executor = DaskExecutor(client)
        _refinement(4, 200).fit(executor=executor)  # ... and on every worker
        for n in args.n_datasets:
            jr = _refinement(n, args.points)
            with threadpool_limits(1):  # as each single-threaded worker
                serial, serial_s, serial_marks = _timed_fit(jr)
            executor.reset_bytes()
            dask, dask_s, dask_marks = _timed_fit(jr, executor)
            serial_it, _ = _per_iter(serial_marks)
            dask_it, bytes_it = _per_iter(dask_marks)
            out.append({
                "n_datasets": n, "n_points": args.points, "n_free": serial.n_free,
                "n_iter": serial.n_iter, "n_iter_dask": dask.n_iter,
                "serial_s": serial_s, "dask_s": dask_s, "speedup": serial_s / dask_s,
                "max_rel_diff": _max_rel_diff(serial, dask), "bytes_per_iter": bytes_it,
                "serial_iter_s": serial_it, "dask_iter_s": dask_it,
                "iter_speedup": serial_it / dask_it,
                # after the last step: covariance of all n_free parameters and statistics,
                # on the client in both cases (plus, for Dask, gathering the batches once)
                "serial_after_last_step_s": serial_s - serial_marks[-1][0],
                "dask_after_last_step_s": dask_s - dask_marks[-1][0],
            })
    return out


# ---------------------------------------------------------------------- report
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--sections", nargs="+", choices=("hmm", "refine"),
                        default=["hmm", "refine"])
    parser.add_argument("--n-seq", type=int, default=10_000)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--n-iter", type=int, default=10)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--n-datasets", type=int, nargs="+", default=[100, 400, 1000])
    parser.add_argument("--points", type=int, default=2000)
    args = parser.parse_args()
    out: dict[str, Any] = {
        "hmm": bench_hmm(args) if "hmm" in args.sections else None,
        "refine": bench_refine(args) if "refine" in args.sections else None,
    }
    if args.json:
        print(json.dumps(out))
        return
    h = out["hmm"]
    if h is not None:
        print(f"HMM K=8 D=4, {h['n_sequences']} sequences x {h['length']} steps, "
              f"{h['n_iter']} EM iterations, {h['n_shards']} shards")
        print(f"  serial {h['serial_s']:.2f} s   dask(2 workers) {h['dask_s']:.2f} s   "
              f"speedup {h['speedup']:.2f}x   max rel diff {h['max_rel_diff']:.1e}   "
              f"bytes/iter {h['bytes_per_iter']:.0f}")
        print(f"  per EM iteration: serial {h['serial_iter_s']:.3f} s   dask "
              f"{h['dask_iter_s']:.3f} s   speedup {h['iter_speedup']:.2f}x   (set-up before the "
              f"first iteration: serial {h['serial_setup_s']:.1f} s, "
              f"dask {h['dask_setup_s']:.1f} s)")
    if out["refine"] is not None:
        print(f"Joint refinement, {args.points} points per dataset, 2 workers (1 batch each)")
        print(f"{'N':>6} {'n_free':>7} {'iters':>5} {'serial s':>9} {'dask s':>8} {'speedup':>7} "
              f"{'s/iter ser':>10} {'s/iter dask':>11} {'it speedup':>10} {'bytes/iter':>10} "
              f"{'max rel diff':>12}")
        for r in out["refine"]:
            print(f"{r['n_datasets']:>6} {r['n_free']:>7} {r['n_iter']:>5} "
                  f"{r['serial_s']:>9.2f} {r['dask_s']:>8.2f} {r['speedup']:>6.2f}x "
                  f"{r['serial_iter_s']:>10.3f} {r['dask_iter_s']:>11.3f} "
                  f"{r['iter_speedup']:>9.2f}x {r['bytes_per_iter']:>10.0f} "
                  f"{r['max_rel_diff']:>12.1e}")
        print("  (of the end-to-end seconds, after the last step -- covariance and statistics "
              "on the client: " + ", ".join(
                  f"N={r['n_datasets']}: {r['serial_after_last_step_s']:.1f} s serial, "
                  f"{r['dask_after_last_step_s']:.1f} s dask" for r in out["refine"]) + ")")


if __name__ == "__main__":
    main()
