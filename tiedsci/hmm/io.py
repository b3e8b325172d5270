"""Save and load fitted HMMs without pickle: a JSON file (configuration) + an NPZ (arrays).

``save(model, "run/model")`` writes ``run/model.json`` and ``run/model.npz``; ``load`` rebuilds the
estimator with the same constructor arguments and bit-identical parameter arrays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import DataError

__all__ = ["save", "load"]

_FORMAT = "tiedsci.hmm/1"
_ARRAYS = ("startprob_", "transmat_", "means_", "covars_", "emissionprob_", "lambdas_",
           "weights_")


def _classes() -> dict[str, type]:
    from tiedsci.hmm import estimators

    return {name: getattr(estimators, name) for name in estimators.__all__}


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.integer | np.floating):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return str(v)


def _stem(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".json", ".npz") else p


def save(model: Any, path: str | Path) -> tuple[Path, Path]:
    """Write ``<path>.json`` and ``<path>.npz``; returns both paths."""
    cls = type(model).__name__
    if cls not in _classes():
        raise TypeError(f"save supports {sorted(_classes())}, got {cls}")
    stem = _stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    params = model.get_params()
    params.pop("random_state", None)
    arrays = {k: np.asarray(getattr(model, k)) for k in _ARRAYS
              if getattr(model, k, None) is not None}
    meta = {"format": _FORMAT, "class": cls, "params": _jsonable(params),
            "arrays": sorted(arrays)}
    monitor = getattr(model, "monitor_", None)
    if monitor is not None:
        meta["monitor"] = {"history": [float(h) for h in monitor.history], "iter": monitor.iter,
                           "converged": bool(monitor.converged), "tol": float(monitor.tol),
                           "n_iter": int(monitor.n_iter)}
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    json_path.write_text(json.dumps(meta, indent=2))
    np.savez(npz_path, **arrays)
    return json_path, npz_path


def load(path: str | Path) -> Any:
    """Rebuild a model saved by :func:`save` (exact arrays; layout rebuilt from the ties)."""
    from tiedsci.hmm.em import ConvergenceMonitor

    stem = _stem(path)
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if not json_path.exists() or not npz_path.exists():
        raise FileNotFoundError(f"expected {json_path} and {npz_path}")
    meta = json.loads(json_path.read_text())
    if meta.get("format") != _FORMAT:
        raise DataError(f"{json_path} is not a tiedsci HMM file (format {meta.get('format')!r})")
    model = _classes()[meta["class"]](**meta["params"])
    with np.load(npz_path, allow_pickle=False) as data:
        for k in meta["arrays"]:
            setattr(model, k, data[k].copy())
    if "monitor" in meta:
        m = meta["monitor"]
        model.monitor_ = ConvergenceMonitor(tol=m["tol"], n_iter=m["n_iter"],
                                            history=list(m["history"]), iter=m["iter"],
                                            converged=m["converged"])
    if "n_features" not in meta["params"]:
        model.n_features = model._n_features(model._values())
    model.layout_ = model.build_registry(model._values()).compile()
    return model
