"""Write a trained solution's artefacts: prediction .npz, metrics .json, checkpoint, plots."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiedsci._files import atomic_write
from tiedsci.pinn.evaluate import evaluate
from tiedsci.pinn.marching import TimeMarchingSolution
from tiedsci.pinn.reference import Reference

__all__ = ["write_outputs", "save_model"]


def save_model(solution: TimeMarchingSolution, path: str | Path) -> Path:
    """Save the trained windows and registry vector, atomically (temporary file + rename).

    The file holds plain data only: ``torch.load(path, weights_only=True)`` gives a dict with
    the problem name, the specs as dicts, one state dict per window, ``theta`` and the free
    parameter names.
    """
    path = Path(path)
    data = {
        "problem": solution.problem.name,
        "net": asdict(solution.net), "train": asdict(solution.train),
        "windows": [{"t_start": w.t_start, "t_end": w.t_end, "subtract": w.subtract,
                     "field": w.field.state_dict()} for w in solution.windows],
        "theta": torch.as_tensor(solution.theta), "free_names": list(solution.layout.free_names),
    }
    return atomic_write(path, lambda fh: torch.save(data, fh))


def write_outputs(solution: TimeMarchingSolution, reference: Reference, out_dir: str | Path,
                  plots: bool = True, stem: str = "") -> dict[str, Any]:
    """Evaluate against ``reference`` and write ``prediction.npz``, ``metrics.json``, the model
    and (optionally) ``solution.png`` / ``loss.png`` into ``out_dir``.

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
    model = save_model(solution, out / f"{prefix}model.pt")
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

        title = f"{solution.problem.name}: rel L2 {metrics.rel_l2:.2e}"
        result["plots"] = [
            str(plot_solution(reference.x, reference.t, u, reference.u,
                              out / f"{prefix}solution.png", title)),
            str(plot_loss(solution.history, out / f"{prefix}loss.png", solution.problem.name)),
        ]
    metrics_file = out / f"{prefix}metrics.json"
    result["metrics_file"] = str(metrics_file)
    tmp = metrics_file.with_name(metrics_file.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(metrics_file)
    return result
