"""``tiedsci pinn solve run.toml``: train a periodic PINN described by a TOML run file.

Example run file::

    [problem]
    name = "allen_cahn"            # advection | heat | burgers | allen_cahn | kdv
    coefficients = { eps = 1e-4, gamma = 5.0 }

    [net]                          # tiedsci.pinn.NetSpec fields
    architecture = "separable"
    rank = 32

    [train]                        # tiedsci.pinn.TrainConfig fields
    n_windows = 10
    budget_s = 120

    [reference]
    source = "bundled"             # "bundled" (AC.mat / KdV.mat) or "spectral"
    n_x = 512
    n_t = 201

    [output]
    plots = true

Writes into ``out_dir``: ``checkpoint.pt`` (resumable), ``model.pt``, ``prediction.npz``
(``x``, ``t``, ``u[i_t, i_x]``), ``metrics.json`` and ``solution.png`` / ``loss.png``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from tiedsci.errors import DataError
from tiedsci.pinn import problem as problems
from tiedsci.pinn.config import NetSpec, TrainConfig, from_dict
from tiedsci.pinn.marching import solve_time_marching
from tiedsci.pinn.outputs import write_outputs
from tiedsci.pinn.reference import DATASETS, Reference, load_reference, spectral_reference

__all__ = ["run_from_toml", "run_config", "PROBLEMS"]

PROBLEMS = {"advection": problems.advection, "heat": problems.heat, "burgers": problems.burgers,
            "allen_cahn": problems.allen_cahn, "kdv": problems.kdv}
_SECTIONS = {"problem", "net", "train", "reference", "output"}


def _reference(prob: problems.PDEProblem, spec: dict[str, Any]) -> Reference:
    unknown = set(spec) - {"source", "n_x", "n_t", "dt"}
    if unknown:
        raise DataError(f"unknown [reference] option(s) {sorted(unknown)}")
    source = spec.get("source", "bundled" if prob.name in DATASETS else "spectral")
    if source == "bundled":
        ref = load_reference(prob.name)
        default = problems.allen_cahn() if prob.name == "allen_cahn" else problems.kdv()
        if default.spectral != prob.spectral:
            raise DataError(f"the bundled {prob.name} data use the default coefficients "
                            f"{default.spectral[1]}; use source = 'spectral' for others")
        return ref
    if source == "spectral":
        return spectral_reference(prob, int(spec.get("n_x", 512)), int(spec.get("n_t", 201)),
                                  float(spec.get("dt", 1e-4)))
    raise DataError(f"[reference] source must be 'bundled' or 'spectral', got {source!r}")


def run_config(config: dict[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Run a parsed run-file dictionary (see the module docstring); returns the metrics dict."""
    unknown = set(config) - _SECTIONS
    if unknown:
        raise DataError(f"unknown run-file section(s) {sorted(unknown)}; known: "
                        f"{sorted(_SECTIONS)}")
    pspec = dict(config.get("problem", {}))
    name = pspec.pop("name", None)
    if name not in PROBLEMS:
        raise DataError(f"[problem] name must be one of {sorted(PROBLEMS)}, got {name!r}")
    coeffs = dict(pspec.pop("coefficients", {}))
    kwargs: dict[str, Any] = {}
    for key in ("x", "t"):
        if key in pspec:
            kwargs[key] = tuple(float(v) for v in pspec.pop(key))
    if "trainable" in pspec:
        kwargs["trainable"] = tuple(pspec.pop("trainable"))
    if pspec:
        raise DataError(f"unknown [problem] option(s) {sorted(pspec)}")
    try:
        prob = PROBLEMS[name](**coeffs, **kwargs)
    except TypeError as exc:
        raise DataError(f"bad [problem] coefficients for {name!r}: {exc}") from None
    out = Path(out_dir)
    net = from_dict(NetSpec, config.get("net"))
    train = from_dict(TrainConfig, config.get("train"))
    if train.checkpoint is None:
        train = replace(train, checkpoint=str(out / "checkpoint.pt"))
    reference = _reference(prob, dict(config.get("reference", {})))
    solution = solve_time_marching(prob, net, train)
    plots = bool(config.get("output", {}).get("plots", True))
    result = write_outputs(solution, reference, out, plots=plots)
    result["checkpoint_file"] = train.checkpoint
    result["problem"] = name
    return result


def run_from_toml(path: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Parse ``path`` (TOML) and run it, writing into ``out_dir``; returns the metrics dict."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"run file {str(path)!r} does not exist")
    try:
        import tomllib
    except ModuleNotFoundError:  # pragma: no cover - Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with path.open("rb") as fh:
        try:
            config = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise DataError(f"{path}: invalid TOML: {exc}") from None
    return run_config(config, out_dir)
