"""Scale-out benchmark: serial vs 2-worker Dask for distributed Baum-Welch.

Usage: ``python benchmarks/scale_out.py [--json] [--n-seq 2000] [--length 500] [--n-iter 3]``

Prints serial and Dask seconds per EM iteration, the speedup, the largest relative difference
between the two fits, and the bytes sent per iteration. The joint-refinement half of issue 9 has
not landed yet; its section reports that instead of numbers.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tiedsci.hmm import GaussianHMM
from tiedsci.parallel import DaskExecutor, SerialExecutor


def _data(n_seq: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    states = rng.integers(0, 8, size=n_seq * length)
    means = rng.normal(scale=3.0, size=(8, 4))
    x = means[states] + rng.normal(size=(n_seq * length, 4))
    return x, np.full(n_seq, length)


def _model(n_iter: int) -> GaussianHMM:
    return GaussianHMM(n_components=8, covariance_type="diag", n_iter=n_iter, tol=0.0,
                       tie_states=[[0, 1], [2, 3]], random_state=0)


def bench_hmm(args: argparse.Namespace) -> dict:
    import distributed

    x, lengths = _data(args.n_seq, args.length)
    n_shards = args.shards
    start = time.perf_counter()
    serial = _model(args.n_iter).fit(x, lengths, executor=SerialExecutor(), n_shards=n_shards)
    serial_s = time.perf_counter() - start
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None, silence_logs=50) as cluster, \
            distributed.Client(cluster) as client:
        executor = DaskExecutor(client)
        _model(1).fit(x[: lengths[0] * 4], lengths[:4], executor=executor, n_shards=2)  # warm up
        executor.reset_bytes()
        start = time.perf_counter()
        dask = _model(args.n_iter).fit(x, lengths, executor=executor, n_shards=n_shards)
        dask_s = time.perf_counter() - start
        put_bytes = x.nbytes  # shards travel once, at put()
        bytes_per_iter = executor.bytes_sent / args.n_iter
    diffs = [np.max(np.abs(getattr(serial, a) - getattr(dask, a))
                    / np.maximum(np.abs(getattr(serial, a)), 1e-300))
             for a in ("startprob_", "transmat_", "means_", "covars_")]
    return {"n_sequences": args.n_seq, "length": args.length, "n_iter": args.n_iter,
            "n_shards": n_shards, "serial_s": serial_s, "dask_s": dask_s,
            "speedup": serial_s / dask_s, "max_rel_diff": float(max(diffs)),
            "bytes_per_iter": bytes_per_iter, "data_bytes_sent_once": put_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--n-seq", type=int, default=2000)
    parser.add_argument("--length", type=int, default=500)
    parser.add_argument("--n-iter", type=int, default=3)
    parser.add_argument("--shards", type=int, default=8)
    args = parser.parse_args()
    out = {"hmm": bench_hmm(args),
           "refine": {"status": "not implemented yet (issue 9: refinement half open)"}}
    if args.json:
        print(json.dumps(out))
        return
    h = out["hmm"]
    print(f"HMM K=8 D=4, {h['n_sequences']} sequences x {h['length']} steps, "
          f"{h['n_iter']} EM iterations, {h['n_shards']} shards")
    print(f"  serial {h['serial_s']:.2f} s   dask(2 workers) {h['dask_s']:.2f} s   "
          f"speedup {h['speedup']:.2f}x   max rel diff {h['max_rel_diff']:.1e}   "
          f"bytes/iter {h['bytes_per_iter']:.0f}")
    print(f"  refine: {out['refine']['status']}")


if __name__ == "__main__":
    main()
