"""Joint inverse problem: one reaction-diffusion law, several experiments, shared coefficients.

``u_t = D u_xx + r (u - u^3)`` (Allen-Cahn form) on ``x in [0, 2 pi)`` periodic, ``t in [0, 1]``.
The diffusion ``D`` and reaction rate ``r`` are declared once in the core registry
(``allen_cahn.eps``, ``allen_cahn.gamma``) and shared by every experiment; each experiment has its
own initial condition, its own network, sparse sensors (16 positions x 11 times) with 1 % noise and
a local, unknown sensor offset (``<experiment>.offset``). The data are made by the Fourier
pseudo-spectral ETDRK4 solver at the true coefficients. The coefficients get esds from the
Gauss-Newton covariance along the PDE (see :mod:`tiedsci.pinn.inverse`).

The same fit is run with the first 1, 3 and 5 experiments: the esds shrink as experiments are
pooled, and the errors with them. Each esd is checked against ``*_esd_spectral``: the same
Gauss-Newton esd at the truth with sensitivities from the spectral solver (finite differences).

Run: ``python examples/inverse_shared_coefficients.py [--json] [--quick] [--budget S]
[--counts 1,3,5] [--seed N]``. ``run(...)`` returns the printed dict: per count, the
coefficients, their esds, errors in esds, the per-experiment field error against the spectral
solution, and timings.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import numpy as np
import torch

from tiedsci.pinn import problem as P
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.evaluate import relative_l2
from tiedsci.pinn.inverse import Experiment, solve_inverse
from tiedsci.pinn.marching import Observations
from tiedsci.pinn.spectral import solve_periodic, spectral_pde

TRUTH = {"eps": 0.05, "gamma": 1.0}
START = {"eps": 0.1, "gamma": 0.5}
NOISE = 0.01  # of each experiment's largest |u|
N_GRID = 256


def _initials() -> list[tuple[str, Any]]:
    """Five initial conditions (elementwise on numpy and torch).

    The first mixes two wavenumbers, so it identifies ``D`` and ``r`` on its own (diffusion
    scales with ``k^2``, reaction does not); a single mode (``sine``) alone hardly separates
    them (only through the cubic term), which pooling fixes.
    """
    def lib(v: Any) -> Any:
        return torch if isinstance(v, torch.Tensor) else np

    return [
        ("mixed", lambda v: 0.4 * lib(v).sin(v) + 0.4 * lib(v).cos(3 * v)),
        ("sine", lambda v: 0.6 * lib(v).sin(v)),
        ("two_bumps", lambda v: 0.7 * lib(v).cos(2 * v)),
        ("shifted", lambda v: 0.5 * lib(v).sin(2 * v + 1.0) + 0.2),
        ("biased", lambda v: 0.3 + 0.5 * lib(v).cos(v)),
    ]


def _sensors() -> tuple[np.ndarray, np.ndarray]:
    """Grid indices (x, t) of the sensors: 16 positions x 11 times, flattened."""
    ix, it = np.meshgrid(np.arange(0, N_GRID, N_GRID // 16), np.arange(0, 101, 10))
    return ix.ravel(), it.ravel()


def _simulate(u0: Any, coefficients: dict[str, float], t: np.ndarray) -> Any:
    pde = spectral_pde("allen_cahn", N_GRID, **coefficients)
    return solve_periodic(pde, u0, (0.0, 2 * math.pi), N_GRID, t, dt=1e-3)


def reference_esd(experiments: list[Experiment], h: float = 1e-5) -> dict[str, float]:
    """Gauss-Newton esds at the truth with the spectral solver's finite-difference sensitivities
    (an independent check of the PINN's esds; offsets are eliminated the same way)."""
    ix, it = _sensors()
    t = np.linspace(0.0, 1.0, 101)
    keys = list(TRUTH)
    n = len(experiments)
    normal = np.zeros((len(keys) + n, len(keys) + n))
    for e, exp in enumerate(experiments):
        cols = []
        for k in keys:
            up, down = dict(TRUTH), dict(TRUTH)
            up[k] += h
            down[k] -= h
            diff = _simulate(exp.initial, up, t).u - _simulate(exp.initial, down, t).u
            cols.append(diff[it, ix] / (2 * h))
        g = np.zeros((ix.size, len(keys) + n))
        g[:, :len(keys)] = np.stack(cols, 1)
        g[:, len(keys) + e] = 1.0
        normal += (g / exp.sigma).T @ (g / exp.sigma)
    cov = np.linalg.inv(normal)
    return {k: float(math.sqrt(cov[i, i])) for i, k in enumerate(keys)}


def make_experiments(seed: int = 0) -> tuple[list[Experiment], list[np.ndarray], np.ndarray,
                                             np.ndarray]:
    """Synthetic experiments, their reference fields ``u[i_t, i_x]``, the grid ``x`` and ``t``."""
    rng = np.random.default_rng(seed)
    t_ref = np.linspace(0.0, 1.0, 101)
    exps, refs = [], []
    ix, it = _sensors()
    for i, (name, u0) in enumerate(_initials()):
        ref = _simulate(u0, TRUTH, t_ref)
        clean = ref.u[it, ix]
        sigma = NOISE * float(np.max(np.abs(ref.u)))
        offset = 0.05 * (i - 2)
        y = clean + offset + sigma * rng.normal(size=clean.size)
        obs = Observations(ref.x[ix], t_ref[it], y)
        exps.append(Experiment(name, u0, obs, sigma=sigma, nuisance=("offset",)))
        refs.append(ref.u)
    return exps, refs, ref.x, t_ref


def fit(experiments: list[Experiment], budget_s: float, seed: int = 0) -> Any:
    """One joint fit of ``experiments`` (a fresh registry, coefficients at ``START``)."""
    problem = P.allen_cahn(eps=START["eps"], gamma=START["gamma"], x=(0.0, 2 * math.pi),
                           trainable=True)
    net = NetSpec(width=32, depth=3, rank=16, n_harmonics=8, time_frequencies=4)
    train = TrainConfig(adam_steps=100_000, lbfgs_steps=100_000, lr=5e-3, lr_decay=0.5,
                        decay_steps=2000, n_x=64, n_t=32, n_x_lbfgs=96, n_t_lbfgs=48,
                        dtype="float64", budget_s=budget_s, adam_fraction=0.4, seed=seed)
    return solve_inverse(problem, experiments, net, train, covariance_grid=(48, 24))


def run(quick: bool = False, budget_s: float | None = None, counts: tuple[int, ...] = (1, 3, 5),
        seed: int = 0) -> dict[str, Any]:
    """Fit the first ``n`` experiments for each ``n`` in ``counts``; report against the truth.

    ``budget_s`` is the training budget per experiment (default 40 s, 8 s with ``quick``).
    """
    per_exp = budget_s if budget_s is not None else (8.0 if quick else 40.0)
    exps, refs, x, t = make_experiments(seed)
    rows = []
    for n in counts:
        sol = fit(exps[:n], per_exp * n, seed)
        ref_esd = reference_esd(exps[:n])
        row: dict[str, Any] = {"n_experiments": n, "train_s": round(sol.wall_s, 1),
                               "covariance_s": round(sol.covariance_s, 1)}
        for key, (value, esd) in sol.coefficients.items():
            row[key] = value
            row[f"{key}_esd"] = esd
            row[f"{key}_error"] = value - TRUTH[key]
            row[f"{key}_error_in_esd"] = (value - TRUTH[key]) / esd
            row[f"{key}_esd_spectral"] = ref_esd[key]
        row["field_rel_l2"] = [relative_l2(sol.predict(e, x, t), refs[e]) for e in range(n)]
        row["data_rms_over_sigma"] = (sol.rms / sol.sigma).round(3).tolist()
        rows.append(row)
    return {"truth": TRUTH, "start": START, "noise": NOISE, "budget_per_experiment_s": per_exp,
            "runs": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="8 s per experiment")
    parser.add_argument("--budget", type=float, default=None,
                        help="training budget per experiment, seconds")
    parser.add_argument("--counts", default="1,3,5", help="experiment counts to fit")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = tuple(int(c) for c in args.counts.split(","))
    start = time.perf_counter()
    result = run(args.quick, args.budget, counts, args.seed)
    result["total_wall_s"] = round(time.perf_counter() - start, 1)
    if args.json:
        print(json.dumps(result))
        return 0
    for row in result["runs"]:
        print(f"n={row['n_experiments']}: "
              + "  ".join(f"{k} {row[k]:.5f} +- {row[k + '_esd']:.5f} "
                          f"(truth {TRUTH[k]}, {row[k + '_error_in_esd']:+.2f} esd)"
                          for k in TRUTH)
              + f"  field rel L2 {max(row['field_rel_l2']):.2e}  train {row['train_s']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
