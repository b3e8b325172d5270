"""Save and load fitted HMMs without pickle, in the one convention of :mod:`tiedsci.persist`.

``save(model, "run/model")`` writes ``run/model.json`` (class, constructor arguments, EM monitor)
and ``run/model.npz`` (the fitted arrays); :func:`load` rebuilds the estimator with the same
constructor arguments, bit-identical arrays and the same monitor. Writes are atomic (a failed save
leaves the previous model intact) and the JSON records the checksum of the NPZ, so ``load``
detects files that do not belong together. Unreadable, truncated or foreign files raise
:class:`~tiedsci.errors.DataError` naming the file.

The same bundle is an EM checkpoint: ``fit(X, start=load(path).em_state())`` continues the fit
it was saved from (see :meth:`TiedHMM.fit <tiedsci.hmm.model.TiedHMM.fit>`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import DataError, NotFittedError
from tiedsci.hmm.model import STORED_ATTRIBUTES
from tiedsci.persist import bundle_stem, jsonable, read_bundle, write_bundle

__all__ = ["save", "load", "load_with_extra", "FORMAT"]

FORMAT = "tiedsci.hmm/2"
_ARRAYS = STORED_ATTRIBUTES


def _classes() -> dict[str, type]:
    from tiedsci.hmm import estimators

    return {name: getattr(estimators, name) for name in estimators.__all__}


def _param(v: Any) -> Any:
    """A constructor argument as JSON (dtypes and devices by name)."""
    try:
        return jsonable(v)
    except TypeError:
        return str(v)


def save(model: Any, path: str | Path, *, extra: Mapping[str, Any] | None = None
         ) -> tuple[Path, Path]:
    """Write ``<path>.json`` and ``<path>.npz`` atomically; returns both paths.

    Parameters
    ----------
    model : fitted estimator
        One of :mod:`tiedsci.hmm.estimators`.
    path : path-like
        Stem (a ``.json`` / ``.npz`` suffix is dropped).
    extra : mapping, optional
        JSON-able metadata stored alongside (e.g. a run file's fingerprint in a checkpoint);
        read back by :func:`load_with_extra`.
    """
    cls = type(model).__name__
    if cls not in _classes():
        raise TypeError(f"save supports {sorted(_classes())}, got {cls}")
    params = {k: _param(v) for k, v in model.get_params().items() if k != "random_state"}
    arrays = {k: np.asarray(model._stored(k)) for k in _ARRAYS
              if model._stored(k) is not None}
    meta: dict[str, Any] = {"class": cls, "params": params, "arrays": sorted(arrays),
                            "extra": dict(extra or {})}
    soft = getattr(model, "soft_ties_", ())
    if soft:
        meta["soft_ties"] = [f.to_dict() for f in soft]
    monitor = model._own_monitor()
    if monitor.history:
        meta["monitor"] = asdict(monitor)
    json_path = write_bundle(path, FORMAT, meta, arrays=arrays)
    return json_path, json_path.with_suffix(".npz")


def load(path: str | Path) -> Any:
    """Rebuild a model saved by :func:`save` (exact arrays and monitor; layout rebuilt)."""
    return load_with_extra(path)[0]


def load_with_extra(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """:func:`load`, also returning the ``extra`` metadata given to :func:`save`."""
    from tiedsci.hmm.em import ConvergenceMonitor, SoftTieFit

    stem = bundle_stem(path)
    json_path, npz_path = stem.with_suffix(".json"), stem.with_suffix(".npz")
    if json_path.exists() and not npz_path.exists():
        raise FileNotFoundError(f"saved model file {str(npz_path)!r} not found (a saved model is "
                                f"{json_path.name} + {npz_path.name})")
    bundle = read_bundle(stem, FORMAT)
    meta = bundle.meta
    missing = [k for k in ("class", "params", "arrays") if k not in meta]
    if missing:
        raise DataError(f"{str(json_path)!r} lacks the entries {missing}")
    classes = _classes()
    if meta["class"] not in classes:
        raise DataError(f"{str(json_path)!r}: unknown model class {meta['class']!r}; "
                        f"known: {sorted(classes)}")
    try:
        model = classes[meta["class"]](**meta["params"])
    except TypeError as exc:
        raise DataError(f"{str(json_path)!r}: bad parameters for {meta['class']}: {exc}") from None
    for k in meta["arrays"]:
        if k not in _ARRAYS or k not in bundle.arrays:
            raise DataError(f"{str(json_path)!r} lists an array {k!r} that "
                            f"{str(npz_path)!r} does not hold")
        setattr(model, k, bundle.arrays[k])
    try:
        if "monitor" in meta:
            model.monitor_ = ConvergenceMonitor(**meta["monitor"])
        if "soft_ties" in meta:
            model.soft_ties_ = tuple(SoftTieFit.from_dict(d) for d in meta["soft_ties"])
        values = model._values()
        if "n_features" not in meta["params"]:
            model.n_features = model._n_features(values)
        model.layout_ = model.build_registry(values).compile()
    except (NotFittedError, KeyError, TypeError) as exc:
        raise DataError(f"{str(json_path)!r} does not describe a complete model: {exc}") from None
    except DataError as exc:
        raise DataError(f"{str(json_path)!r}: {exc}") from None
    return model, dict(meta.get("extra", {}))
