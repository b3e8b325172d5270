"""PINN checkpoints in tiedsci's one save convention (:mod:`tiedsci.persist`).

A checkpoint with stem ``ck`` is three files written atomically together:

* ``ck.json`` — where training stands (window, sweep), the loss history and the optimiser loop
  state (step counters, learning-rate schedule, loss weights, optimiser hyper-parameters), with
  every tensor replaced by a reference into the ``.npz``;
* ``ck.npz`` — the arrays: the free registry vector ``theta``, the optimisers' moment and
  curvature tensors, generator states and the current collocation batch;
* ``ck.pt`` — the network weights only (one state dict per window), read with
  ``weights_only=True``.

Floats go through JSON with ``repr`` and tensors through ``.npz`` bit for bit, so a resumed run
repeats exactly the arithmetic of an uninterrupted one. :func:`encode_tree` /
:func:`decode_tree` are the (generic) mapping between nested Python/torch values and
JSON + arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tiedsci.errors import CheckpointError, DataError
from tiedsci.persist import bundle_stem, read_bundle, write_bundle

__all__ = ["CHECKPOINT_FORMAT", "CheckpointState", "write_checkpoint", "read_checkpoint",
           "checkpoint_file", "encode_tree", "decode_tree", "window_states",
           "load_window_states", "map_tensors"]

CHECKPOINT_FORMAT = "tiedsci.pinn.checkpoint/1"
_TENSOR, _ARRAY, _TUPLE, _ITEMS = "__tensor__", "__ndarray__", "__tuple__", "__items__"
_MARKERS = {_TENSOR, _ARRAY, _TUPLE, _ITEMS}


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The JSON file of the checkpoint bundle ``path`` (``run/ck.pt`` -> ``run/ck.json``)."""
    return bundle_stem(path).with_suffix(".json")


def encode_tree(value: Any, arrays: dict[str, np.ndarray], prefix: str = "a") -> Any:
    """``value`` as JSON data, its tensors and arrays moved into ``arrays`` (by reference).

    Tensors become ``{"__tensor__": key}``, numpy arrays ``{"__ndarray__": key}``, tuples
    ``{"__tuple__": [...]}`` and mappings with non-string keys ``{"__items__": [[k, v], ...]}``;
    :func:`decode_tree` inverts it exactly (dtypes and bits of the arrays, ``int``/``float``).
    """
    if isinstance(value, torch.Tensor):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = value.detach().cpu().numpy()
        return {_TENSOR: key}
    if isinstance(value, np.ndarray):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = value
        return {_ARRAY: key}
    if isinstance(value, Mapping):
        keys = list(value)
        if all(isinstance(k, str) for k in keys) and not _MARKERS & set(keys):
            return {k: encode_tree(v, arrays, prefix) for k, v in value.items()}
        return {_ITEMS: [[encode_tree(k, arrays, prefix), encode_tree(v, arrays, prefix)]
                         for k, v in value.items()]}
    if isinstance(value, tuple):
        return {_TUPLE: [encode_tree(v, arrays, prefix) for v in value]}
    if isinstance(value, list):
        return [encode_tree(v, arrays, prefix) for v in value]
    if isinstance(value, np.integer | np.floating | np.bool_):
        return value.item()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot write a {type(value).__name__} into a checkpoint: {value!r}")


def decode_tree(data: Any, arrays: Mapping[str, np.ndarray]) -> Any:
    """The inverse of :func:`encode_tree` (tensors on the CPU)."""
    if isinstance(data, list):
        return [decode_tree(v, arrays) for v in data]
    if not isinstance(data, dict):
        return data
    if len(data) == 1:
        (key, inner), = data.items()
        if key == _TENSOR:
            return torch.from_numpy(np.array(arrays[inner]))
        if key == _ARRAY:
            return np.array(arrays[inner])
        if key == _TUPLE:
            return tuple(decode_tree(v, arrays) for v in inner)
        if key == _ITEMS:
            return {decode_tree(k, arrays): decode_tree(v, arrays) for k, v in inner}
    return {k: decode_tree(v, arrays) for k, v in data.items()}


@dataclass
class CheckpointState:
    """What a PINN checkpoint holds.

    Attributes
    ----------
    window, sweep : int
        Where training continues.
    inner : dict or None
        The optimiser loop state inside that window (:func:`~tiedsci.pinn.train.optimize`);
        None at a window boundary.
    history : list of dict
        Loss records so far.
    theta : Tensor, shape (n_free,)
        Free registry vector.
    windows : list of dict
        Per window ``{"field": state dict, "boundary": state dict or None}``.
    path : Path
        The checkpoint's JSON file.
    """

    window: int
    sweep: int
    inner: dict[str, Any] | None
    history: list[dict[str, Any]]
    theta: torch.Tensor
    windows: list[dict[str, Any]] = field(default_factory=list)
    path: Path = Path()


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """``obj`` with ``fn`` applied to every tensor in nested mappings, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, Mapping):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(map_tensors(v, fn) for v in obj)
    return obj


def window_states(windows: Sequence[Any]) -> list[dict[str, Any]]:
    """``[{"field": state dict, "boundary": state dict or None}]``, one entry per window."""
    return [{"field": w.field.state_dict(),
             "boundary": None if w.boundary_net is None else w.boundary_net.state_dict()}
            for w in windows]


def load_window_states(windows: Sequence[Any], states: Sequence[Mapping[str, Any]]) -> None:
    """Load :func:`window_states` output into ``windows`` (same network structure).

    Raises ``RuntimeError``/``KeyError``/``TypeError`` when the structures differ.
    """
    for win, sd in zip(windows, states, strict=True):
        win.field.load_state_dict(sd["field"])
        if win.boundary_net is not None:
            win.boundary_net.load_state_dict(sd["boundary"])


def write_checkpoint(path: str | os.PathLike[str], windows: Sequence[Any], theta: torch.Tensor,
                     window: int, sweep: int, inner: dict[str, Any] | None,
                     history: list[dict[str, Any]]) -> Path:
    """Write a checkpoint bundle atomically; returns its JSON file.

    Parameters
    ----------
    path : path-like
        Stem (``ck``, ``ck.json`` and ``ck.pt`` all name the bundle ``ck.*``).
    windows : sequence
        Objects with ``field`` and ``boundary_net`` modules
        (:class:`~tiedsci.pinn.marching.Window`).
    theta : Tensor, shape (n_free,)
    window, sweep : int
    inner : dict or None
        Loop state of :func:`~tiedsci.pinn.train.optimize`.
    history : list of dict
    """
    arrays: dict[str, np.ndarray] = {"theta": theta.detach().cpu().numpy()}
    meta = {"window": int(window), "sweep": int(sweep), "n_windows": len(windows),
            "inner": encode_tree(inner, arrays), "history": encode_tree(list(history), arrays)}
    return write_bundle(path, CHECKPOINT_FORMAT, meta, arrays=arrays,
                        weights={"windows": window_states(windows)})


def read_checkpoint(path: str | os.PathLike[str], map_location: Any = "cpu") -> CheckpointState:
    """Read a checkpoint bundle written by :func:`write_checkpoint`.

    Raises
    ------
    FileNotFoundError
        No ``<stem>.json``.
    CheckpointError
        A file of the bundle is unreadable, truncated, of another format or from another save
        (the message names the file).
    """
    json_path = checkpoint_file(path)
    where = str(json_path)
    try:
        bundle = read_bundle(json_path, CHECKPOINT_FORMAT, map_location=map_location)
    except DataError as exc:
        raise CheckpointError(f"checkpoint {where} is unreadable or truncated ({exc})") from None
    meta, weights = bundle.meta, bundle.weights
    missing = [k for k in ("window", "sweep", "inner", "history") if k not in meta]
    if "theta" not in bundle.arrays:
        missing.append("theta")
    if not isinstance(weights, dict) or not isinstance(weights.get("windows"), list):
        missing.append("windows")
    if missing:
        raise CheckpointError(f"checkpoint {where} is not a complete PINN checkpoint: it lacks "
                              f"{missing}")
    try:
        inner = decode_tree(meta["inner"], bundle.arrays)
        history = decode_tree(meta["history"], bundle.arrays)
    except KeyError as exc:
        raise CheckpointError(f"checkpoint {where} refers to the array {exc} its .npz does not "
                              "hold") from None
    return CheckpointState(int(meta["window"]), int(meta["sweep"]), inner, history,
                           torch.from_numpy(bundle.arrays["theta"]), weights["windows"],
                           json_path)
