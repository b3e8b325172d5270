"""Planted tie structures for testing tie discovery and soft ties (synthetic, seeded).

:func:`zero_shift_groups`: the 6-dataset refinement of shared/notes/discovery.md, section 3:
500 points per dataset, five Gaussian peaks at ``c q_i + zero_d`` with a shared lattice-like
scale ``c`` and width, per-dataset scale and zero shift; the zero shifts are equal within two
groups of three datasets and differ by ``delta`` between the groups.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tiedsci.refine.data import Dataset
from tiedsci.refine.joint import JointRefinement

__all__ = ["peaks_model", "zero_shift_groups", "detector_banks", "heldout_chi2", "PLANTED_GROUPS"]

Q = (1.0, 1.6, 2.3, 3.1, 3.8)
AMPLITUDES = (10.0, 7.0, 8.0, 5.0, 6.0)
PLANTED_GROUPS = ((0, 1, 2), (3, 4, 5))


def peaks_model(v: Any, x: Any) -> Any:
    """Five Gaussian peaks at ``c q_i + zero``, width ``width``, times ``scale``."""
    xp = _namespace(x)
    out = 0.0 * x
    for q, amp in zip(Q, AMPLITUDES):
        out = out + amp * xp.exp(-0.5 * ((x - v["c"] * q - v["zero"]) / v["width"]) ** 2)
    return v["scale"] * out


def _namespace(x: Any) -> Any:
    if hasattr(x, "detach"):
        import torch

        return torch
    return np


def zero_shift_groups(seed: int, *, delta: float = 0.02, n_points: int = 500,
                      noise: float = 1.0, groups: tuple[tuple[int, ...], ...] = PLANTED_GROUPS
                      ) -> tuple[JointRefinement, dict[str, Any]]:
    """A fresh untied refinement of the planted set-up and its truth.

    Returns
    -------
    jr : JointRefinement
        Shared ``c``, ``width``; local ``scale``, ``zero`` (declared untied, started at 1
        and 0).
    truth : dict
        ``zero`` per dataset, ``groups`` (dataset names per planted group), ``c``,
        ``width``.
    """
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 8.0, n_points)
    base = rng.uniform(-0.05, 0.05)
    zeros = {}
    for g, members in enumerate(groups):
        for k in members:
            zeros[f"d{k}"] = base + g * delta
    c, width = 1.5, 0.12
    jr = JointRefinement()
    for name, zero in zeros.items():
        scale = rng.uniform(0.8, 1.2)
        y = peaks_model({"c": c, "width": width, "scale": scale, "zero": zero}, x)
        jr.add(Dataset(x, y + noise * rng.standard_normal(n_points), sigma=noise, name=name),
               peaks_model)
    jr.shared("c", 1.49)
    jr.shared("width", 0.13)
    jr.local("scale", 1.0)
    jr.local("zero", 0.0)
    truth = {"zero": zeros, "c": c, "width": width,
             "groups": [sorted(f"d{k}" for k in g) for g in groups]}
    return jr, truth


def detector_banks(seed: int, *, n_banks: int = 10, tau: float = 0.006, noise: float = 1.5,
                   n_points: int = 300) -> tuple[JointRefinement, dict[str, Any]]:
    """Nominally identical detector banks with a small real spread of zero shifts.

    Every bank ``b0..b{n-1}`` measures the same five peaks twice (a training run and a
    held-out run, same zero shift and scale, independent noise); the zero shifts are drawn
    ``N(z0, tau^2)``. The returned refinement holds the training runs (shared ``c`` and
    ``width``, local ``scale`` and ``zero``, untied); ``truth["heldout"]`` the held-out runs
    as ``name -> (x, y, sigma)``, scored by :func:`heldout_chi2`.
    """
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 8.0, n_points)
    z0 = rng.uniform(-0.05, 0.05)
    c, width = 1.5, 0.12
    jr = JointRefinement()
    zeros, held = {}, {}
    for k in range(n_banks):
        name = f"b{k}"
        zero, scale = z0 + tau * rng.standard_normal(), rng.uniform(0.8, 1.2)
        y = peaks_model({"c": c, "width": width, "scale": scale, "zero": zero}, x)
        runs = [y + noise * rng.standard_normal(n_points) for _ in range(2)]
        jr.add(Dataset(x, runs[0], sigma=noise, name=name), peaks_model)
        held[name] = (x, runs[1], noise)
        zeros[name] = zero
    jr.shared("c", 1.49)
    jr.shared("width", 0.13)
    jr.local("scale", 1.0)
    jr.local("zero", 0.0)
    return jr, {"zero": zeros, "tau": tau, "heldout": held}


def heldout_chi2(values: Any, heldout: dict[str, Any]) -> float:
    """chi^2 of the held-out runs of :func:`detector_banks` at fitted ``values``."""
    total = 0.0
    for name, (x, y, sigma) in heldout.items():
        v = {"c": values["c"], "width": values["width"], "scale": values[f"{name}.scale"],
             "zero": values[f"{name}.zero"]}
        total += float(np.sum(((peaks_model(v, x) - y) / sigma) ** 2))
    return total
