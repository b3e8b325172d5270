"""Variants of a measured recipe at one fixed budget: which change buys accuracy.

Each variant is the recipe of :mod:`tiedsci.pinn.recipes` with a few ``NetSpec`` /
``TrainConfig`` fields replaced (listed in ``VARIANTS``); every run gets the same wall-clock
budget, seed and thread count, one after another. Reported per variant: relative L2 error on the
reference grid, the time to each decade of error, wall time and the load average before and
after (the machine may be shared: figures under load are pessimistic).

Usage: ``python benchmarks/pinn_variants.py --problem allen_cahn --budget 300
[--variants base corner ...] [--seed 0]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from typing import Any

from pinn_periodic import RECIPES, run_case

VARIANTS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "allen_cahn": {
        "base": ({"corner_orders": 0}, {}),
        "soft_ic": ({"corner_orders": 0, "ic": "soft"}, {}),
        "corner": ({"corner_orders": 1, "corner_amplitude": "learned"}, {}),
        "corner_lin": ({"corner_orders": 1, "corner_amplitude": "linearized"}, {}),
        "corner3": ({"corner_orders": 3}, {}),
        "corner_20win": ({"corner_orders": 1}, {"n_windows": 20}),
        "corner_f64": ({"corner_orders": 1}, {"dtype": "float64"}),
        "f64": ({"corner_orders": 0}, {"dtype": "float64"}),
        "20win": ({"corner_orders": 0}, {"n_windows": 20}),
        "lbfgs_heavy": ({"corner_orders": 0}, {"adam_fraction": 0.25}),
    },
    "kdv": {
        "1win": ({}, {"n_windows": 1}),
        "10win": ({}, {"n_windows": 10}),
        "20win": ({}, {"n_windows": 20}),
        "40win": ({}, {"n_windows": 40}),
        "20win_f64": ({}, {"n_windows": 20, "dtype": "float64"}),
        "20win_h32": ({"n_harmonics": 32}, {"n_windows": 20}),
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=sorted(VARIANTS), default="allen_cahn")
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs=2, default=None, metavar=("ADAM", "LBFGS"),
                        help="fixed steps per window instead of a time budget (load-proof)")
    args = parser.parse_args(argv)
    table = VARIANTS[args.problem]
    names = args.variants or list(table)
    rows: dict[str, Any] = {}
    for name in names:
        net_kw, train_kw = table[name]
        problem, ref, net, train = RECIPES[args.problem](args.budget, args.seed)
        if args.steps:
            train = replace(train, budget_s=None, adam_steps=args.steps[0],
                            lbfgs_steps=args.steps[1])
        load = os.getloadavg()
        row = run_case(problem, ref, replace(net, **net_kw), replace(train, **train_kw))
        keep = ("rel_l2", "rel_l2_interior", "boundary_max_abs", "rel_l2_by_time", "wall_s",
                "time_to_error_s")
        rows[name] = {"net": net_kw, "train": train_kw, **{k: row[k] for k in keep},
                      "load_before": load, "load_after": os.getloadavg()}
        print(json.dumps({name: rows[name]}, default=float), flush=True)
    print(json.dumps({"problem": args.problem, "budget_s": None if args.steps else args.budget,
                      "steps_per_window": args.steps, "seed": args.seed,
                      "variants": rows}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
