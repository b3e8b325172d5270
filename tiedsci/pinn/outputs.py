"""Write a trained solution's artefacts: prediction .npz, metrics .json, saved model, plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci._files import atomic_write, atomic_write_bytes
from tiedsci.pinn.evaluate import evaluate
from tiedsci.pinn.marching import TimeMarchingSolution
from tiedsci.pinn.reference import Reference

__all__ = ["write_outputs"]


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
