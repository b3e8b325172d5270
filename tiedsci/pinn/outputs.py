"""Write a trained solution's artefacts: prediction .npz, metrics .json, saved model, plots."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci._files import atomic_write, atomic_write_bytes
from tiedsci.pinn.evaluate import evaluate
from tiedsci.pinn.marching import TimeMarchingSolution
from tiedsci.pinn.reference import Reference

__all__ = ["write_outputs", "run_recipe", "recipe_main", "recipe_example"]


def _title(name: str) -> str:
    """A problem's identifier as a title: ``allen_cahn`` -> ``Allen-Cahn``."""
    return "-".join(w.capitalize() for w in name.split("_"))


def write_outputs(solution: TimeMarchingSolution, reference: Reference, out_dir: str | Path,
                  plots: bool = True, stem: str = "") -> dict[str, Any]:
    """Evaluate against ``reference`` and write ``prediction.npz``, ``metrics.json``, the model
    (``model.json`` / ``.npz`` / ``.pt``, see :func:`tiedsci.pinn.load`) and (optionally)
    ``solution.png`` / ``loss.png`` into ``out_dir``.

    Returns
    -------
    dict
        ``rel_l2``, ``max_abs``, ``boundary_mismatch``, ``boundary_mismatch_dx``, ``wall_s``,
        ``device``, ``prediction_file``, ``metrics_file``, ``model_file``, ``plots``,
        ``coefficients`` (free registry values), ``completed``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    prefix = f"{stem}_" if stem else ""
    metrics, u = evaluate(solution, reference)
    pred = out / f"{prefix}prediction.npz"
    atomic_write(pred, lambda fh: np.savez(fh, x=reference.x, t=reference.t, u=u))
    model = solution.save(out / f"{prefix}model")
    values = solution.coefficients
    free = {name: float(np.asarray(values[name.split("[")[0]]).reshape(-1)[0])
            for name in solution.layout.free_names}
    result: dict[str, Any] = {
        **metrics.as_dict(),
        "wall_s": round(float(solution.wall_s), 3),
        "device": solution.device,
        "prediction_file": str(pred),
        "model_file": str(model),
        "coefficients": free,
        "completed": solution.completed,
        "n_windows": len(solution.windows),
    }
    if plots:
        from tiedsci.pinn.plots import plot_loss, plot_solution

        paths = [out / f"{prefix}solution.png", out / f"{prefix}loss.png"]
        plot_solution(reference.x, reference.t, u, reference.u, paths[0],
                      f"{_title(solution.problem.name)}: relative L2 error "
                      f"{metrics.rel_l2:.2e}")
        plot_loss(solution.history, paths[1], f"Training loss, {_title(solution.problem.name)}")
        result["plots"] = [str(p) for p in paths]
    metrics_file = out / f"{prefix}metrics.json"
    result["metrics_file"] = str(metrics_file)
    atomic_write_bytes(metrics_file, json.dumps(result, indent=2).encode("utf-8"))
    return result


def run_recipe(recipe: Callable[..., tuple], out_dir: str | Path, budget_s: float, seed: int = 0,
               device: str = "cpu", dtype: str = "float32", plots: bool = True,
               threads: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Solve a measured recipe (:mod:`tiedsci.pinn.recipes`) and write its outputs.

    ``recipe(budget_s, seed, device, dtype) -> (problem, reference, net, train)``; the
    solution is evaluated against the reference and written by :func:`write_outputs`
    (``threads`` scopes torch's intra-op threads to the solve; ``progress``: a bar of the
    budget on stderr when it is a terminal). Returns that dict with ``budget_s``,
    ``time_to_error_s`` (seconds to each decade of error against the reference, checked as in
    ``benchmarks/pinn_periodic.py``) and ``total_wall_s`` (seconds, evaluation and files
    included).
    """
    from tiedsci.pinn.budget import time_to_decades
    from tiedsci.pinn.marching import solve_time_marching

    start = time.perf_counter()
    problem, reference, net, train = recipe(budget_s, seed, device, dtype)
    train = replace(train, progress=progress, **({"threads": threads} if threads else {}))
    solution = solve_time_marching(problem, net, train, reference=reference)
    result = write_outputs(solution, reference, out_dir, plots=plots)
    result["time_to_error_s"] = time_to_decades(solution.history,
                                                full_t=float(reference.t[-1]))
    result["budget_s"] = budget_s
    result["total_wall_s"] = round(time.perf_counter() - start, 2)
    return result


def recipe_main(argv: list[str] | None, description: str,
                run: Callable[..., dict[str, Any]], quick_budget_s: float,
                out_default: str) -> int:
    """The command line of a recipe example: ``[--json] [--quick] [--budget S] [--out DIR]
    [--device D] [--dtype T] [--seed N] [--threads N]``; calls ``run(out_dir, quick, budget_s,
    seed, device, dtype, threads=...)`` and prints its dict (one JSON object with ``--json``)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help=f"{quick_budget_s:.0f} s budget")
    parser.add_argument("--budget", type=float, default=None, help="training budget in seconds")
    parser.add_argument("--out", default=out_default)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args(argv)
    result = run(args.out, args.quick, args.budget, args.seed, args.device, args.dtype,
                 threads=args.threads)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


def recipe_example(recipe: Callable[..., tuple], full_budget_s: float, quick_budget_s: float,
                   out_default: str, description: str
                   ) -> tuple[Callable[..., dict[str, Any]], Callable[..., int]]:
    """``(run, main)`` of an example script built on a recipe.

    ``run(out_dir=out_default, quick=False, budget_s=None, seed=0, device="cpu",
    dtype="float32", plots=True, threads=None, progress=False)`` trains with ``budget_s``
    (default ``quick_budget_s`` with ``quick``, else ``full_budget_s``) and returns
    :func:`run_recipe`'s dict; ``main(argv)`` is :func:`recipe_main` around it.
    """
    def run(out_dir: str | Path = out_default, quick: bool = False,
            budget_s: float | None = None, seed: int = 0, device: str = "cpu",
            dtype: str = "float32", plots: bool = True, threads: int | None = None,
            progress: bool = False) -> dict[str, Any]:
        budget = budget_s if budget_s is not None else (
            quick_budget_s if quick else full_budget_s)
        return run_recipe(recipe, out_dir, budget, seed, device, dtype, plots, threads,
                          progress)

    def main(argv: list[str] | None = None) -> int:
        return recipe_main(argv, description, run, quick_budget_s, out_default)

    return run, main
