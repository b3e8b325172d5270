"""Baum-Welch speed: hmmlearn vs tiedsci (numpy CPU, torch CPU, torch CUDA when present).

Workloads (issue 3): Gaussian diag K=8, D=4 and Categorical K=8 with 32 symbols, each on 200
sequences x 500 steps, 50 EM iterations from identical starting parameters (tol=0), printing
seconds per EM iteration and the ratio to hmmlearn; plus a scaling row with 10^4 sequences.

hmmlearn is timed with its default ``implementation="log"`` and with its faster
``implementation="scaling"``; ratios are given against the faster of the two.

Small rows (issue 14, what most users fit): Gaussian diag K=2 and K=4, D=2, one sequence of 200
and 1000 steps, per-iteration time of a whole ``fit`` (setup included, 50 iterations, best of 5),
hmmlearn ``scaling`` and ``log`` side by side (``--small-only`` runs just these).

Usage::

    python benchmarks/hmm_vs_hmmlearn.py [--json] [--n-iter 50] [--scaling-len 200]
    python benchmarks/hmm_vs_hmmlearn.py --small-only
"""

from __future__ import annotations

import argparse
import json
import time
from functools import partial
from typing import Any

import numpy as np

K, D, N_SYMBOLS = 8, 4, 32


def make_data(kind: str, n_seq: int, seq_len: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Sample data from a random K=8 model and a different random starting point."""
    from hmmlearn import hmm

    rng = np.random.default_rng(seed)
    if kind == "gaussian":
        m = hmm.GaussianHMM(K, "diag", init_params="")
        m.means_ = rng.normal(scale=2.0, size=(K, D))
        m.covars_ = rng.uniform(0.5, 2.0, (K, D))
    else:
        m = hmm.CategoricalHMM(K, n_features=N_SYMBOLS, init_params="")
        m.emissionprob_ = rng.dirichlet(np.full(N_SYMBOLS, 0.5), size=K)
    m.startprob_ = rng.dirichlet(np.ones(K))
    m.transmat_ = rng.dirichlet(np.ones(K), size=K) * 0.5 + np.eye(K) * 0.5
    lengths = np.full(n_seq, seq_len)
    x = np.concatenate([m.sample(seq_len, random_state=int(s))[0] for s in
                        rng.integers(0, 2**31, size=min(n_seq, 50))])
    reps = int(np.ceil(n_seq / min(n_seq, 50)))
    x = np.tile(x, (reps, 1))[: n_seq * seq_len]
    start = {"startprob_": rng.dirichlet(np.ones(K)),
             "transmat_": rng.dirichlet(np.full(K, 5.0), size=K)}
    if kind == "gaussian":
        start["means_"] = rng.normal(scale=2.0, size=(K, D))
        start["covars_"] = np.ones((K, D))
    else:
        start["emissionprob_"] = rng.dirichlet(np.ones(N_SYMBOLS), size=K)
    return x, lengths, start


def _set(model: Any, start: dict[str, np.ndarray]) -> Any:
    for name, value in start.items():
        setattr(model, name, value.copy())
    return model


def time_hmmlearn(kind: str, impl: str, x: np.ndarray, lengths: np.ndarray,
                  start: dict[str, np.ndarray], n_iter: int) -> float:
    from hmmlearn import hmm

    if kind == "gaussian":
        m = hmm.GaussianHMM(K, "diag", init_params="", n_iter=n_iter, tol=0,
                            implementation=impl)
    else:
        m = hmm.CategoricalHMM(K, n_features=N_SYMBOLS, init_params="", n_iter=n_iter, tol=0,
                               implementation=impl)
    _set(m, start)
    t0 = time.perf_counter()
    m.fit(x, lengths)
    return (time.perf_counter() - t0) / max(m.monitor_.iter, 1)


def time_tiedsci(kind: str, engine: str, device: str | None, x: np.ndarray,
                 lengths: np.ndarray, start: dict[str, np.ndarray], n_iter: int) -> float:
    import tiedsci.hmm as th

    kw: dict[str, Any] = {"engine": engine, "init_params": "", "n_iter": n_iter, "tol": 0}
    if device is not None:
        kw["device"] = device
    if kind == "gaussian":
        m = th.GaussianHMM(K, "diag", **kw)
    else:
        m = th.CategoricalHMM(K, n_features=N_SYMBOLS, **kw)
    _set(m, start)
    t0 = time.perf_counter()
    m.fit(x, lengths)
    return (time.perf_counter() - t0) / max(m.monitor_.iter, 1)


def small_data(k: int, d: int, n: int, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """One sequence of ``n`` steps from a random K-state diagonal Gaussian model, and a
    different random starting point."""
    from hmmlearn import hmm

    rng = np.random.default_rng(seed)
    m = hmm.GaussianHMM(k, "diag", init_params="")
    m.means_ = rng.normal(scale=2.0, size=(k, d))
    m.covars_ = rng.uniform(0.5, 2.0, (k, d))
    m.startprob_ = np.full(k, 1.0 / k)
    m.transmat_ = rng.dirichlet(np.ones(k), size=k) * 0.5 + np.eye(k) * 0.5
    x, _ = m.sample(n, random_state=1)
    start = {"startprob_": np.full(k, 1.0 / k),
             "transmat_": rng.dirichlet(np.full(k, 5.0), size=k),
             "means_": rng.normal(scale=2.0, size=(k, d)), "covars_": np.ones((k, d))}
    return x, start


def _best_fit_time(make: Any, x: np.ndarray, start: dict[str, Any], repeats: int) -> float:
    """Best over ``repeats`` of (seconds of one fit) / iterations."""
    best = np.inf
    for _ in range(repeats):
        m = _set(make(), start)
        t0 = time.perf_counter()
        m.fit(x)
        best = min(best, (time.perf_counter() - t0) / max(m.monitor_.iter, 1))
    return float(best)


def run_small(n_iter: int = 50, repeats: int = 5) -> list[dict[str, Any]]:
    """The small rows: ratios against hmmlearn's default ``log`` implementation."""
    from hmmlearn import hmm

    import tiedsci.hmm as th

    rows = []
    kw = {"init_params": "", "n_iter": n_iter, "tol": -np.inf}
    for k in (2, 4):
        for n in (200, 1000):
            x, start = small_data(k, 2, n)
            label = f"small: gaussian diag K={k} D=2, 1 seq x {n} steps, {n_iter} iter"
            makers = {
                "hmmlearn scaling": partial(hmm.GaussianHMM, k, "diag", implementation="scaling",
                                            **kw),
                "hmmlearn log": partial(hmm.GaussianHMM, k, "diag", implementation="log", **kw),
                "tiedsci cpu (numpy)": partial(th.GaussianHMM, k, "diag", **kw)}
            times = {name: _best_fit_time(make, x, start, repeats)
                     for name, make in makers.items()}
            for name, s in times.items():
                rows.append({"workload": label, "impl": name, "s_per_iter": s,
                             "ratio": s / times["hmmlearn log"]})
    return rows


def run(n_iter: int = 50, n_seq: int = 200, seq_len: int = 500, scaling_seqs: int = 10_000,
        scaling_len: int = 200, scaling_iter: int = 3, hmmlearn_log: bool = True,
        torch_threads: int | None = 1) -> list[dict[str, Any]]:
    """Time every row; returns a list of result dicts."""
    devices: list[tuple[str, str | None, str]] = [("numpy", None, "tiedsci cpu (numpy)")]
    try:
        import torch

        if torch_threads:
            torch.set_num_threads(torch_threads)
        devices.append(("torch", "cpu", "tiedsci torch cpu"))
        if torch.cuda.is_available():
            devices.append(("torch", "cuda", "tiedsci torch cuda"))
    except ImportError:
        pass
    rows = []
    workloads = [("gaussian", n_seq, seq_len, n_iter), ("categorical", n_seq, seq_len, n_iter)]
    if scaling_seqs:
        workloads.append(("gaussian", scaling_seqs, scaling_len, scaling_iter))
    for kind, ns, sl, it in workloads:
        x, lengths, start = make_data(kind, ns, sl)
        label = f"{kind} K={K} " + (f"D={D}" if kind == "gaussian" else f"M={N_SYMBOLS}")
        label += f", {ns} seq x {sl} steps, {it} iter"
        ref = {"hmmlearn scaling": time_hmmlearn(kind, "scaling", x, lengths, start, it)}
        if hmmlearn_log:
            ref["hmmlearn log"] = time_hmmlearn(kind, "log", x, lengths, start, it)
        best = min(ref.values())
        for name, s in ref.items():
            rows.append({"workload": label, "impl": name, "s_per_iter": s, "ratio": s / best})
        for engine, device, name in devices:
            s = time_tiedsci(kind, engine, device, x, lengths, start, it)
            rows.append({"workload": label, "impl": name, "s_per_iter": s, "ratio": s / best})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--n-iter", type=int, default=50)
    p.add_argument("--scaling-seqs", type=int, default=10_000, help="0 skips the scaling row")
    p.add_argument("--scaling-len", type=int, default=200)
    p.add_argument("--scaling-iter", type=int, default=3)
    p.add_argument("--no-hmmlearn-log", action="store_true",
                   help="skip hmmlearn's slower default implementation='log'")
    p.add_argument("--torch-threads", type=int, default=1,
                   help="torch CPU threads (0 = torch default); 1 avoids oversubscription")
    p.add_argument("--small-only", action="store_true",
                   help="only the small rows (ratios against hmmlearn log)")
    p.add_argument("--blas-threads", type=int, default=1,
                   help="BLAS threads for numpy (all implementations; 0 = library default)")
    a = p.parse_args()
    limits = None
    if a.blas_threads:
        from threadpoolctl import threadpool_limits

        limits = threadpool_limits(limits=a.blas_threads, user_api="blas")
    rows = run_small()
    if not a.small_only:
        rows += run(a.n_iter, scaling_seqs=a.scaling_seqs, scaling_len=a.scaling_len,
                    scaling_iter=a.scaling_iter, hmmlearn_log=not a.no_hmmlearn_log,
                    torch_threads=a.torch_threads or None)
    if limits is not None:
        limits.restore_original_limits()
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    current = None
    for r in rows:
        if r["workload"] != current:
            current = r["workload"]
            print(f"\n{current}")
            ref = "hmmlearn log" if current.startswith("small") else "best hmmlearn"
            print(f"  {'implementation':<22}{'ms/iter':>10}{'ratio vs ' + ref:>26}")
        print(f"  {r['impl']:<22}{1e3 * r['s_per_iter']:>10.3f}{r['ratio']:>26.2f}")


if __name__ == "__main__":
    main()
