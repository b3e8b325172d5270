"""Save and load fitted HMMs without pickle: a JSON file (configuration) + an NPZ (arrays).

``save(model, "run/model")`` writes ``run/model.json`` and ``run/model.npz``; ``load`` rebuilds the
estimator with the same constructor arguments and bit-identical parameter arrays.

Both files are written to temporary names and renamed into place only once both are complete,
so a failed save leaves the previous model intact; the JSON records the SHA-256 of the NPZ, so
``load`` detects a pair of files that do not belong together. Unreadable, truncated or foreign
files raise :class:`~tiedsci.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci._files import sha256_file, write_temp
from tiedsci.errors import DataError, NotFittedError

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
    """Write ``<path>.json`` and ``<path>.npz``; returns both paths (atomically, see above)."""
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
    npz_tmp = write_temp(npz_path, lambda fh: np.savez(fh, **arrays))
    try:
        meta["npz_sha256"] = sha256_file(npz_tmp)
        json_tmp = write_temp(json_path,
                               lambda fh: fh.write(json.dumps(meta, indent=2).encode("utf-8")))
    except BaseException:
        npz_tmp.unlink(missing_ok=True)
        raise
    os.replace(npz_tmp, npz_path)
    os.replace(json_tmp, json_path)
    return json_path, npz_path


def load(path: str | Path) -> Any:
    """Rebuild a model saved by :func:`save` (exact arrays; layout rebuilt from the ties)."""
    from tiedsci.hmm.em import ConvergenceMonitor

    stem = _stem(path)
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    for p in (json_path, npz_path):
        if not p.exists():
            raise FileNotFoundError(f"saved model file {str(p)!r} not found (a saved model is "
                                    f"{json_path.name} + {npz_path.name})")
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{str(json_path)!r} is not valid json ({exc}); truncated or not a "
                        "tiedsci HMM file") from None
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise DataError(f"{str(json_path)!r} is not a tiedsci HMM file (format {fmt!r})")
    missing = [k for k in ("class", "params", "arrays") if k not in meta]
    if missing:
        raise DataError(f"{str(json_path)!r} lacks the entries {missing}")
    classes = _classes()
    if meta["class"] not in classes:
        raise DataError(f"{str(json_path)!r}: unknown model class {meta['class']!r}; "
                        f"known: {sorted(classes)}")
    digest = meta.get("npz_sha256")
    if digest is not None and sha256_file(npz_path) != digest:
        raise DataError(f"{str(npz_path)!r} does not match {str(json_path)!r} (checksum "
                        "differs): the file was changed, truncated or comes from another save")
    try:
        model = classes[meta["class"]](**meta["params"])
    except TypeError as exc:
        raise DataError(f"{str(json_path)!r}: bad parameters for {meta['class']}: {exc}") from None
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            for k in meta["arrays"]:
                if k not in _ARRAYS:
                    raise DataError(f"{str(json_path)!r} lists an unknown array {k!r}")
                setattr(model, k, data[k].copy())
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"cannot read the arrays of {str(npz_path)!r} ({type(exc).__name__}: "
                        f"{exc}); the file is truncated or not from tiedsci.hmm.save") from None
    try:
        if "monitor" in meta:
            m = meta["monitor"]
            model.monitor_ = ConvergenceMonitor(tol=m["tol"], n_iter=m["n_iter"],
                                                history=list(m["history"]), iter=m["iter"],
                                                converged=m["converged"])
        values = model._values()
        if "n_features" not in meta["params"]:
            model.n_features = model._n_features(values)
        model.layout_ = model.build_registry(values).compile()
    except (NotFittedError, KeyError, TypeError) as exc:
        raise DataError(f"{str(json_path)!r} does not describe a complete model: {exc}") from None
    except DataError as exc:
        raise DataError(f"{str(json_path)!r}: {exc}") from None
    return model
