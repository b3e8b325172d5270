"""One convention for everything tiedsci saves: models, results and checkpoints.

A saved object is a *bundle* named by a stem ``path``:

* ``<path>.json`` — values and metadata (JSON; floats are written with ``repr`` and so round-trip
  exactly), with a ``format`` tag naming what was saved and the SHA-256 of each sibling file;
* ``<path>.npz`` — arrays (``allow_pickle=False`` on reading), present when there are arrays;
* ``<path>.pt`` — torch state dicts of network weights only, read with ``weights_only=True``.

Every file is written to a temporary sibling and renamed into place only after all of them are
complete (the JSON last), so a save that fails half-way leaves the previous bundle intact; the
checksums let :func:`read_bundle` detect siblings that do not belong together. Unreadable,
truncated or foreign files raise :class:`~tiedsci.errors.DataError` naming the file.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci._files import sha256_file, write_temp
from tiedsci.errors import DataError

__all__ = ["Bundle", "write_bundle", "read_bundle", "bundle_stem", "jsonable"]

_SUFFIXES = (".json", ".npz", ".pt")


@dataclass(frozen=True)
class Bundle:
    """What :func:`read_bundle` returns.

    Attributes
    ----------
    format : str
        The format tag given to :func:`write_bundle` (e.g. ``"tiedsci.hmm/1"``).
    meta : dict
        The JSON metadata, as written.
    arrays : dict of str to ndarray
        The arrays of the ``.npz`` file (empty when there was none).
    weights : dict or None
        The torch state dicts of the ``.pt`` file (loaded with ``weights_only=True``), or None.
    path : Path
        The bundle's stem.
    """

    format: str
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    weights: dict[str, Any] | None = None
    path: Path = Path()


def bundle_stem(path: str | os.PathLike[str]) -> Path:
    """The stem of a bundle: ``run/model.json`` and ``run/model`` both give ``run/model``."""
    p = Path(path)
    return p.with_suffix("") if p.suffix in _SUFFIXES else p


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples and sets as JSON types (exact floats)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(x) for x in value]
    if isinstance(value, Path):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot write a {type(value).__name__} into a bundle's JSON: {value!r}")


def write_bundle(path: str | os.PathLike[str], format: str, meta: Mapping[str, Any], *,
                 arrays: Mapping[str, Any] | None = None,
                 weights: Mapping[str, Any] | None = None) -> Path:
    """Write a bundle atomically; returns the path of its JSON file.

    Parameters
    ----------
    path : path-like
        Stem (a ``.json``/``.npz``/``.pt`` suffix is dropped).
    format : str
        Tag checked by :func:`read_bundle`, e.g. ``"tiedsci.refine.result/1"``.
    meta : mapping
        JSON-able values and metadata (numpy scalars and arrays are converted).
    arrays : mapping, optional
        ``name -> array`` written to ``<path>.npz``.
    weights : mapping, optional
        torch state dicts (or other tensors/plain data) written to ``<path>.pt``.
    """
    stem = bundle_stem(path)
    stem.parent.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"format": format, **jsonable(dict(meta)), "files": {}}
    temps: list[tuple[Path, Path]] = []
    try:
        if arrays:
            arrs = {k: np.asarray(v) for k, v in arrays.items()}
            target = stem.with_suffix(".npz")
            tmp = write_temp(target, lambda fh: np.savez(fh, **arrs))
            temps.append((tmp, target))
            doc["files"]["npz"] = {"sha256": sha256_file(tmp), "arrays": sorted(arrs)}
        if weights is not None:
            import torch

            target = stem.with_suffix(".pt")
            data = dict(weights)
            tmp = write_temp(target, lambda fh: torch.save(data, fh))
            temps.append((tmp, target))
            doc["files"]["pt"] = {"sha256": sha256_file(tmp)}
        text = json.dumps(doc, indent=1).encode("utf-8")
        json_path = stem.with_suffix(".json")
        temps.append((write_temp(json_path, lambda fh: fh.write(text)), json_path))
    except BaseException:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
        raise
    for suffix in (".npz", ".pt"):  # stale siblings of an earlier save must not be paired
        if not any(t.suffix == suffix for _, t in temps):
            stem.with_suffix(suffix).unlink(missing_ok=True)
    for tmp, target in temps:
        os.replace(tmp, target)
    return stem.with_suffix(".json")


def read_bundle(path: str | os.PathLike[str], format: str | tuple[str, ...], *,
                map_location: Any = "cpu") -> Bundle:
    """Read a bundle written by :func:`write_bundle`, checking its format and checksums.

    Parameters
    ----------
    path : path-like
        Stem or any of the bundle's files.
    format : str or tuple of str
        Accepted format tags.
    map_location : optional
        Passed to ``torch.load`` for the weights.

    Raises
    ------
    FileNotFoundError
        No ``<path>.json``.
    DataError
        Not JSON, another format, a missing or altered sibling file, unreadable arrays.
    """
    stem = bundle_stem(path)
    json_path = stem.with_suffix(".json")
    if not json_path.exists():
        raise FileNotFoundError(f"saved file {str(json_path)!r} not found (a tiedsci save is "
                                f"{json_path.name} with its .npz / .pt siblings)")
    try:
        doc = json.loads(json_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise DataError(f"{str(json_path)!r} is not valid json ({exc}); truncated or not a "
                        "tiedsci file") from None
    accepted = (format,) if isinstance(format, str) else tuple(format)
    if not isinstance(doc, dict) or doc.get("format") not in accepted:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{str(json_path)!r} has format {got!r}; expected "
                        f"{' or '.join(map(repr, accepted))}")
    files = doc.pop("files", {}) or {}
    fmt = doc.pop("format")
    arrays: dict[str, np.ndarray] = {}
    weights = None
    for kind in ("npz", "pt"):
        if kind not in files:
            continue
        p = stem.with_suffix("." + kind)
        if not p.exists():
            raise DataError(f"{str(p)!r} is missing; {str(json_path)!r} needs it")
        if sha256_file(p) != files[kind].get("sha256"):
            raise DataError(f"{str(p)!r} does not match {str(json_path)!r} (checksum differs): "
                            "the file was changed, truncated or comes from another save")
        try:
            if kind == "npz":
                with np.load(p, allow_pickle=False) as data:
                    arrays = {k: data[k].copy() for k in files[kind].get("arrays", data.files)}
            else:
                import torch

                weights = torch.load(p, map_location=map_location, weights_only=True)
        except (OSError, ValueError, KeyError, EOFError, RuntimeError,
                zipfile.BadZipFile) as exc:
            raise DataError(f"cannot read {str(p)!r} ({type(exc).__name__}: {exc})") from None
    return Bundle(format=fmt, meta=doc, arrays=arrays, weights=weights, path=stem)
