"""Checkpoints of a refinement, in tiedsci's one persistence convention.

:meth:`tiedsci.refine.JointRefinement.fit` hands its resumable *state* to ``checkpoint=`` after
every accepted Levenberg-Marquardt step and at every stage boundary; with a path it writes it
with :func:`save_checkpoint`, and ``resume=`` reads it back with :func:`load_checkpoint`. The
bundle (:mod:`tiedsci.persist`) is ``<stem>.json`` (stage, counters, stage summaries, damping,
the refinement's fingerprint) and ``<stem>.npz`` (parameter values, ``theta``, scaling), both
exact.

The state is a dict: ``stage`` (index of the stage in progress), ``stage_name``, ``values``
(every parameter at the start of that stage), ``lm`` (the :class:`~tiedsci.refine.lm.LMState`
within the stage, or None at a stage boundary), ``stages`` (summaries of the finished stages),
the counters ``nfev``, ``njev``, ``n_iter`` of the finished stages, and ``fingerprint`` (what
the refinement was; a resume of another refinement is refused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import CheckpointError, DataError
from tiedsci.persist import bundle_stem, read_bundle, write_bundle
from tiedsci.refine.lm import LMState
from tiedsci.refine.result import StageSummary

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "fingerprint",
           "check_fingerprint"]

CHECKPOINT_FORMAT = "tiedsci.refine.checkpoint/2"

_COUNTS = ("nfev", "njev", "n_iter")


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> Path:
    """Write a fit's checkpoint ``state`` atomically; returns the path of its JSON file.

    Parameters
    ----------
    path : path-like
        Bundle stem (``run/checkpoint`` or ``run/checkpoint.json``).
    state : mapping
        As given to ``checkpoint=`` by :meth:`~tiedsci.refine.JointRefinement.fit`.
    """
    arrays = {f"values/{k}": np.asarray(v, dtype=float) for k, v in state["values"].items()}
    lm = state.get("lm")
    lm_meta = None
    if lm is not None:
        arrays["lm/theta"], arrays["lm/scale"] = lm.theta, lm.scale
        radius = float(lm.radius) if np.isfinite(lm.radius) else None
        lm_meta = {"cost": lm.cost, "mu": lm.mu, "radius": radius,
                   **{k: getattr(lm, k) for k in _COUNTS}}
    meta = {
        "fingerprint": state.get("fingerprint"),
        "state": {"stage": state["stage"], "stage_name": state.get("stage_name"),
                  "values": list(state["values"]), "lm": lm_meta,
                  "stages": [dataclasses.asdict(s) for s in state["stages"]],
                  **{k: state[k] for k in _COUNTS}},
    }
    return write_bundle(path, CHECKPOINT_FORMAT, meta, arrays=arrays)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: the ``state`` to resume from.

    Raises
    ------
    FileNotFoundError
        No checkpoint at ``path``.
    CheckpointError
        The files are truncated, corrupt, of another format or incomplete (names the file).
    """
    where = bundle_stem(path).with_suffix(".json")
    try:
        bundle = read_bundle(path, CHECKPOINT_FORMAT)
        return _decode(bundle.meta, bundle.arrays)
    except DataError as exc:
        raise CheckpointError(f"checkpoint {where} is unreadable or truncated ({exc}); delete "
                              "it to start over") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"checkpoint {where} is incomplete ({type(exc).__name__}: "
                              f"{exc}); delete it to start over") from None


def _decode(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    st = meta["state"]
    lm = st["lm"]
    if lm is not None:
        radius = lm.get("radius")
        lm = LMState(arrays["lm/theta"], float(lm["cost"]), float(lm["mu"]), arrays["lm/scale"],
                     *(int(lm[k]) for k in _COUNTS),
                     radius=float("nan") if radius is None else float(radius))
    return {"stage": int(st["stage"]), "stage_name": st["stage_name"],
            "values": {k: arrays[f"values/{k}"] for k in st["values"]}, "lm": lm,
            "stages": [StageSummary(**{**s, "vary": tuple(s["vary"])}) for s in st["stages"]],
            **{k: int(st[k]) for k in _COUNTS}, "fingerprint": meta.get("fingerprint")}


def fingerprint(parts: Iterable[Any]) -> str:
    """SHA-256 of a refinement's description: strings, numbers and arrays, in order."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(f"{p.dtype.str}{p.shape}".encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"\0")
    return h.hexdigest()


def check_fingerprint(state: Mapping[str, Any], expected: str) -> None:
    """Refuse to resume from the state of another refinement (when the state has a print)."""
    got = state.get("fingerprint")
    if got is not None and got != expected:
        raise CheckpointError("resume: the checkpoint was written for a different refinement "
                              "(its data, declarations, stages or options changed since); "
                              "delete it or run without resume")
