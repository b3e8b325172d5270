"""Variants of a measured recipe at one fixed budget: which change buys accuracy.

Each variant is the recipe of :mod:`tiedsci.pinn.recipes` with a few ``NetSpec`` /
``TrainConfig`` fields replaced (listed in ``VARIANTS``); every run gets the same wall-clock
budget, seed and thread count, one after another. Reported per variant: relative L2 error on the
reference grid, the time to each decade of error, wall time and the load average before and
after (the machine may be shared: figures under load are pessimistic).

``--span T0 T1`` screens one window cheaply: the problem is solved on ``[T0, T1]`` alone (one
window, one sweep), starting from the reference's state at ``T0`` (its trigonometric
interpolant, exact for a resolved spectral reference), and compared with the reference there;
``--span 0 0.1`` is the recipe's first window, ``--span 0.9 1`` its last one started from the
exact state (in a full run the start state is the previous windows' prediction).

Usage: ``python benchmarks/pinn_variants.py --problem allen_cahn --budget 300
[--variants base corner ...] [--seed 0] [--span T0 T1]``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from pinn_periodic import RECIPES, run_case

from tiedsci.pinn import problem as P
from tiedsci.pinn.reference import Reference

VARIANTS: dict[str, dict[str, tuple[dict[str, Any], dict[str, Any]]]] = {
    "advection": {
        "recipe": ({}, {}),
        # the L-BFGS grid redrawn every k calls (of lbfgs_chunk iterations each): a fixed grid
        # can be over-fitted late in the budget
        "lbfgs_resample5": ({}, {"lbfgs_resample_every": 5}),
        "lbfgs_resample2": ({}, {"lbfgs_resample_every": 2}),
        "lbfgs_grid512": ({}, {"n_x_lbfgs": 512, "n_t_lbfgs": 256}),
    },
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
        # the recipe before issue 17's KdV work: an MLP x-factor on 16 harmonics
        "mlp16": ({"x_depth": None, "n_harmonics": 16, "harmonic_decay": 0.0}, {}),
        "mlp16_f64": ({"x_depth": None, "n_harmonics": 16, "harmonic_decay": 0.0},
                      {"dtype": "float64"}),
        "mlp16_decay2": ({"x_depth": None, "n_harmonics": 16, "harmonic_decay": 2.0}, {}),
        # linear Fourier x-factor (x_depth=0) with K harmonics, with / without the k^-p
        # preconditioner
        "lin16": ({"n_harmonics": 16, "harmonic_decay": 0.0}, {}),
        "lin24": ({"n_harmonics": 24, "harmonic_decay": 0.0}, {}),
        "lin32": ({"n_harmonics": 32, "harmonic_decay": 0.0}, {}),
        "lin32_decay2": ({"n_harmonics": 32, "harmonic_decay": 2.0}, {}),
        "lin32_decay3": ({"n_harmonics": 32, "harmonic_decay": 3.0}, {}),
        "lin48_decay2": ({"n_harmonics": 48, "harmonic_decay": 2.0}, {}),
        "20win": ({}, {"n_windows": 20}),
    },
}


def reference_state(reference: Reference, t0: float) -> Any:
    """The reference's state at (the grid time nearest) ``t0`` as a callable ``u0(x)`` for
    numpy arrays and torch tensors: its trigonometric interpolant on the periodic x-grid."""
    i0 = int(np.argmin(np.abs(np.asarray(reference.t) - t0)))
    x = np.asarray(reference.x)
    coef = np.fft.rfft(reference.u[i0]) / x.size
    k = np.arange(coef.size)
    weight = np.where((k == 0) | (2 * k == x.size), 1.0, 2.0)
    cos_c, sin_c = weight * coef.real, -weight * coef.imag
    omega = 2 * np.pi * k / (x[-1] - x[0] + (x[1] - x[0]))

    def u0(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            ph = (v[..., None] - x[0]) * torch.as_tensor(omega, dtype=v.dtype)
            return (torch.cos(ph) * torch.as_tensor(cos_c, dtype=v.dtype)
                    + torch.sin(ph) * torch.as_tensor(sin_c, dtype=v.dtype)).sum(-1)
        ph = (np.asarray(v)[..., None] - x[0]) * omega
        return (np.cos(ph) * cos_c + np.sin(ph) * sin_c).sum(-1)

    return u0


def span_case(problem: Any, reference: Reference, train: Any, t0: float, t1: float
              ) -> tuple[Any, Reference, Any]:
    """The problem, reference and schedule of the one-window screen on ``[t0, t1]``."""
    factory, args = problem.recipe
    initial = None if t0 <= reference.t[0] else reference_state(reference, t0)
    sub = getattr(P, factory)(**{**args, "t": (t0, t1), "initial": initial})
    rows = np.flatnonzero((reference.t >= t0 - 1e-12) & (reference.t <= t1 + 1e-12))
    ref = Reference(reference.x, reference.t[rows], reference.u[rows],
                    name=f"{reference.name} on [{t0}, {t1}]")
    return sub, ref, replace(train, n_windows=1, n_sweeps=1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", choices=sorted(VARIANTS), default="allen_cahn")
    parser.add_argument("--budget", type=float, default=300.0)
    parser.add_argument("--variants", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, nargs=2, default=None, metavar=("ADAM", "LBFGS"),
                        help="fixed steps per window instead of a time budget (load-proof)")
    parser.add_argument("--span", type=float, nargs=2, default=None, metavar=("T0", "T1"),
                        help="screen one window on [T0, T1] from the reference state at T0")
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
        if args.span:
            problem, ref, train = span_case(problem, ref, train, *args.span)
        load = os.getloadavg()
        row = run_case(problem, ref, replace(net, **net_kw), replace(train, **train_kw))
        keep = ("rel_l2", "rel_l2_interior", "boundary_max_abs", "rel_l2_by_time", "wall_s",
                "time_to_error_s")
        rows[name] = {"net": net_kw, "train": train_kw, **{k: row[k] for k in keep},
                      "load_before": load, "load_after": os.getloadavg()}
        print(json.dumps({name: rows[name]}, default=float), flush=True)
    print(json.dumps({"problem": args.problem, "budget_s": None if args.steps else args.budget,
                      "steps_per_window": args.steps, "seed": args.seed, "span": args.span,
                      "variants": rows}, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
