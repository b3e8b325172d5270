"""Agreement indices of a least-squares fit (crystallographic conventions).

With weights ``w``, observations ``y`` and calculated values ``c``:
``chi2 = sum w (y - c)^2``; ``Rwp = sqrt(chi2 / sum w y^2)``; ``Rp = sum |y - c| / sum |y|``;
``Rexp = sqrt(dof / sum w y^2)``; ``GOF = sqrt(chi2 / dof) = Rwp / Rexp``. For one dataset of a
joint fit ``dof`` is its number of points (GSAS-II's per-histogram convention); for the whole
fit it is ``n_obs + n_restraints - n_free``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Agreement", "agreement"]


@dataclass(frozen=True)
class Agreement:
    """Agreement indices (R values as fractions, not percent)."""

    n_obs: int
    chi2: float
    rwp: float
    rp: float
    rexp: float
    gof: float


def agreement(y: np.ndarray, c: np.ndarray, w: np.ndarray, dof: float) -> Agreement:
    """Indices for observations ``y``, calculated ``c`` and weights ``w`` (same shapes)."""
    diff = y - c
    chi2 = float(np.sum(w * diff * diff))
    swy2 = float(np.sum(w * y * y))
    sy = float(np.sum(np.abs(y)))
    rwp = float(np.sqrt(chi2 / swy2)) if swy2 > 0 else float("nan")
    rp = float(np.sum(np.abs(diff)) / sy) if sy > 0 else float("nan")
    rexp = float(np.sqrt(dof / swy2)) if swy2 > 0 and dof > 0 else float("nan")
    gof = float(np.sqrt(chi2 / dof)) if dof > 0 else float("nan")
    return Agreement(int(y.size), chi2, rwp, rp, rexp, gof)
