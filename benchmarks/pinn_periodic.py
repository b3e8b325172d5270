"""Periodic features vs soft periodic penalty vs shared boundary sub-network, same net and budget.

Problems: advection ``u_t + 30 u_x = 0`` (exact reference) and Allen-Cahn (Raissi's AC.mat).
For each boundary treatment the *same* network, optimiser schedule and wall-clock budget are used
(``NetSpec.boundary`` is the only change, the one-flag switch of the API):

- ``periodic``: exact ``cos / sin`` features of x (the registry's periodic axis), no boundary term;
- ``penalty``: plain scaled x, soft ``|u(a,t) - u(b,t)|^2 + |u_x(a,t) - u_x(b,t)|^2`` term
  (what DeepXDE's ``PeriodicBC`` does);
- ``shared_subnet``: plain scaled x and a boundary network ``h(t)`` whose value and slope both
  ends must match (soft).

Reported per run: relative L2 error on the reference grid, max boundary mismatch of u and u_x
over the reference times, wall time, the time to each decade of error (checked every
``monitor_every`` Adam steps and after every L-BFGS call, once every window has started; the
checks are inside the budget) and the ratios to the periodic-feature run. DeepXDE is run
only if it is installed (it is not a dependency); otherwise the row says so.

Problems: advection (60 s), Allen-Cahn (AC.mat, 900 s) and KdV (KdV.mat, 900 s) by default.

Usage: ``python benchmarks/pinn_periodic.py [--json] [--quick] [--budget-advection S]
[--budget-allen-cahn S] [--budget-kdv S] [--only PROBLEM ...] [--variants VARIANT ...]
[--threads N]``. Runs one after another (never in parallel); the ratios to the periodic run
are given when both are run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from tiedsci.pinn import evaluate, solve_time_marching
from tiedsci.pinn.budget import time_to_decades
from tiedsci.pinn.recipes import advection_recipe, allen_cahn_recipe, kdv_recipe

VARIANTS = ("periodic", "penalty", "shared_subnet")


RECIPES = {"advection": advection_recipe, "allen_cahn": allen_cahn_recipe, "kdv": kdv_recipe}


def run_case(problem: Any, reference: Any, net: Any, train: Any) -> dict[str, Any]:
    """Solve once with ``reference`` monitored; metrics, wall time and time to each decade,
    and where the error is: away from the periodic boundary (``rel_l2_interior``: columns
    more than 1 % of the period from it), at it (``boundary_max_abs``) and per tenth of the
    time interval (``rel_l2_by_time``)."""
    start = time.perf_counter()
    sol = solve_time_marching(problem, net, train, reference=reference)
    wall = time.perf_counter() - start
    metrics, u = evaluate(sol, reference)
    return {**metrics.as_dict(), **_where(reference, u), "wall_s": round(wall, 2),
            "time_to_error_s": time_to_decades(sol.history, full_t=float(reference.t[-1]))}


def _where(reference: Any, u: Any) -> dict[str, Any]:
    x, err, ref = np.asarray(reference.x), u - reference.u, reference.u
    a, b = x[0], x[-1] + (x[1] - x[0])
    near = np.minimum(x - a, b - x) <= 0.01 * (b - a)
    rows = np.array_split(np.arange(ref.shape[0]), 10)
    return {"rel_l2_interior": float(np.linalg.norm(err[:, ~near]) / np.linalg.norm(ref[:, ~near])),
            "boundary_max_abs": float(np.abs(err[:, near]).max()),
            "rel_l2_by_time": [float(np.linalg.norm(err[r]) / np.linalg.norm(ref[r]))
                               for r in rows]}


def _deepxde_row() -> dict[str, Any]:
    if importlib.util.find_spec("deepxde") is None:
        return {"status": "not installed (optional; pip install deepxde to compare)"}
    return {"status": "installed, but no DeepXDE driver is wired in this script yet"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--quick", action="store_true", help="10 s / 20 s budgets (smoke run)")
    parser.add_argument("--budget-advection", type=float, default=60.0)
    parser.add_argument("--budget-allen-cahn", type=float, default=900.0)
    parser.add_argument("--budget-kdv", type=float, default=900.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", default=None, choices=tuple(RECIPES))
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=VARIANTS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budgets = {"advection": 10.0, "allen_cahn": 20.0, "kdv": 20.0} if args.quick else {
        "advection": args.budget_advection, "allen_cahn": args.budget_allen_cahn,
        "kdv": args.budget_kdv}
    cases = {name: RECIPES[name](budgets[name], args.seed) for name in RECIPES
             if not args.only or name in args.only}
    results: dict[str, Any] = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch_threads_global": torch.get_num_threads(),
                    "solve_threads": next(iter(cases.values()))[3].threads,
                    "torch": torch.__version__, "load_before": os.getloadavg()},
        "budgets_s": {name: budgets[name] for name in cases},
        "problems": {},
    }
    for name, (problem, ref, net, train) in cases.items():
        rows: dict[str, Any] = {}
        for variant in args.variants:
            load = os.getloadavg()
            rows[variant] = run_case(problem, ref, replace(net, boundary=variant), train)
            rows[variant]["load_before"] = load
            rows[variant]["load_after"] = os.getloadavg()
            if not args.json:
                r = rows[variant]
                print(f"{name:>11} {variant:>14}: rel L2 {r['rel_l2']:.3e}  mismatch "
                      f"{r['boundary_mismatch']:.2e} (u_x {r['boundary_mismatch_dx']:.2e})  "
                      f"{r['wall_s']:.1f} s", flush=True)
        base = rows.get("periodic")
        for variant in [v for v in args.variants if v != "periodic" and base is not None]:
            rows[variant]["error_ratio_vs_periodic"] = rows[variant]["rel_l2"] / base["rel_l2"]
            # None when the periodic model's mismatch is exactly zero (no finite ratio)
            rows[variant]["mismatch_ratio_vs_periodic"] = (
                rows[variant]["boundary_mismatch"] / base["boundary_mismatch"]
                if base["boundary_mismatch"] > 0 else None)
        rows["deepxde_periodic_bc"] = _deepxde_row()
        results["problems"][name] = rows
    results["machine"]["load_after"] = os.getloadavg()
    if args.json:
        print(json.dumps(results, default=float))
    else:
        for name, rows in results["problems"].items():
            compared = [v for v in VARIANTS[1:] if "error_ratio_vs_periodic" in rows.get(v, {})]
            for variant in compared:
                r = rows[variant]
                ratio = r["mismatch_ratio_vs_periodic"]
                mism = "inf (periodic: 0)" if ratio is None else f"{ratio:.3g}"
                print(f"{name:>11} {variant:>14}: error x{r['error_ratio_vs_periodic']:.1f}, "
                      f"mismatch x{mism} vs periodic features")
            print(f"{name:>11} {'deepxde':>14}: {rows['deepxde_periodic_bc']['status']}")
        print(f"load average before/after: {results['machine']['load_before']} / "
              f"{results['machine']['load_after']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
