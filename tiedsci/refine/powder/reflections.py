"""Reflections: hkl generation, systematic absences, multiplicities, d-spacings.

The reciprocal metric is written in the GSAS convention,
``1/d^2 = A0 h^2 + A1 k^2 + A2 l^2 + A3 h k + A4 h l + A5 k l`` with
``A = (a*^2, b*^2, c*^2, 2 a* b* cos gamma*, 2 a* c* cos beta*, 2 b* c* cos alpha*)``, so a
hydrostatic strain ``D_ij`` is simply added to ``A`` (:func:`inv_d2`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.errors import DataError

__all__ = ["Reflections", "reciprocal_metric", "inv_d2", "generate_reflections",
           "multiplicity", "is_absent"]


@dataclass(frozen=True, eq=False)
class Reflections:
    """Unique powder reflections (one per set of symmetry-equivalent hkl, Friedel included).

    Attributes
    ----------
    hkl : ndarray of int, shape (n_refl, 3)
    multiplicity : ndarray of int, shape (n_refl,)
    d : ndarray, shape (n_refl,)
        d-spacings (angstrom) for the cell used to generate them, decreasing.
    """

    hkl: np.ndarray
    multiplicity: np.ndarray
    d: np.ndarray

    def __len__(self) -> int:
        return int(self.hkl.shape[0])


def reciprocal_metric(cell: Any) -> Any:
    """``A`` (GSAS order, see module doc) from ``(a, b, c, alpha, beta, gamma)``.

    Parameters
    ----------
    cell : sequence of 6 numbers or tensors (angstrom, degrees)

    Returns
    -------
    ndarray or Tensor, shape (6,)
        Differentiable when the cell entries are torch tensors.
    """
    if any(hasattr(v, "detach") for v in cell):
        import torch

        a, b, c, al, be, ga = (torch.as_tensor(v, dtype=torch.float64) for v in cell)
        deg = torch.pi / 180.0
        ca, cb, cg = torch.cos(al * deg), torch.cos(be * deg), torch.cos(ga * deg)
        row = [torch.stack([a * a, a * b * cg, a * c * cb]),
               torch.stack([a * b * cg, b * b, b * c * ca]),
               torch.stack([a * c * cb, b * c * ca, c * c])]
        g = torch.stack(row)
        gi = torch.linalg.inv(g)
        return torch.stack([gi[0, 0], gi[1, 1], gi[2, 2], 2 * gi[0, 1], 2 * gi[0, 2],
                            2 * gi[1, 2]])
    a, b, c, al, be, ga = (float(v) for v in cell)
    ca, cb, cg = np.cos(np.radians([al, be, ga]))
    g = np.array([[a * a, a * b * cg, a * c * cb], [a * b * cg, b * b, b * c * ca],
                  [a * c * cb, b * c * ca, c * c]])
    gi = np.linalg.inv(g)
    return np.array([gi[0, 0], gi[1, 1], gi[2, 2], 2 * gi[0, 1], 2 * gi[0, 2], 2 * gi[1, 2]])


def inv_d2(hkl: np.ndarray, metric: Any) -> Any:
    """``1/d^2`` of each reflection, shape (n_refl,), for a GSAS-order ``metric`` (6,)."""
    h = np.asarray(hkl, dtype=float)
    q = np.stack([h[:, 0] ** 2, h[:, 1] ** 2, h[:, 2] ** 2, h[:, 0] * h[:, 1],
                  h[:, 0] * h[:, 2], h[:, 1] * h[:, 2]], axis=1)
    if hasattr(metric, "detach"):
        import torch

        return torch.as_tensor(q, dtype=metric.dtype) @ metric
    return q @ np.asarray(metric, dtype=float)


def _hkl_rotations(space_group: str) -> list[np.ndarray]:
    import gemmi

    ops = gemmi.SpaceGroup(space_group).operations()
    rots = []
    for op in ops.sym_ops:
        r = np.array(op.rot, dtype=int) // op.DEN
        rots.append(r)
        rots.append(-r)  # Friedel: powder data cannot tell hkl from -h-k-l
    return rots


def multiplicity(space_group: str, hkl: Any) -> int:
    """Number of distinct reflections equivalent to ``hkl`` in a powder pattern."""
    h = np.asarray(hkl, dtype=int)
    return len({tuple(h @ r) for r in _hkl_rotations(space_group)})


def is_absent(space_group: str, hkl: Any) -> bool:
    """Whether ``hkl`` is systematically absent (gemmi)."""
    import gemmi

    return bool(gemmi.SpaceGroup(space_group).operations().is_systematically_absent(
        [int(v) for v in hkl]))


def generate_reflections(cell: Any, space_group: str, d_min: float,
                         d_max: float = np.inf) -> Reflections:
    """All unique, allowed reflections with ``d_min <= d <= d_max``.

    Parameters
    ----------
    cell : sequence of 6 floats
    space_group : str
    d_min, d_max : float
        Range in angstrom.

    Returns
    -------
    Reflections
        Sorted by decreasing d (increasing 2theta).
    """
    import gemmi

    if not d_min > 0:
        raise DataError(f"d_min must be > 0, got {d_min!r}")
    metric = reciprocal_metric(cell)
    a, b, c = (float(v) for v in cell[:3])
    # a* <= 1/d_min bounds |h| <= a / d_min for any cell (|h| = |d* . a| <= |d*| a)
    hmax, kmax, lmax = (int(np.floor(v / d_min)) + 1 for v in (a, b, c))
    grid = np.stack(np.meshgrid(np.arange(-hmax, hmax + 1), np.arange(-kmax, kmax + 1),
                                np.arange(-lmax, lmax + 1), indexing="ij"), -1).reshape(-1, 3)
    grid = grid[np.any(grid != 0, axis=1)]
    q = inv_d2(grid, metric)
    keep = (q <= 1.0 / d_min**2) & (q >= 1.0 / d_max**2 if np.isfinite(d_max) else True)
    grid = grid[keep]
    ops = gemmi.SpaceGroup(space_group).operations()
    rots = _hkl_rotations(space_group)
    seen: set[tuple[int, int, int]] = set()
    out, mult = [], []
    # canonical representative: the largest tuple in the orbit
    for h in grid:
        t = tuple(int(v) for v in h)
        if t in seen:
            continue
        orbit = {tuple(int(v) for v in h @ r) for r in rots}
        seen |= orbit
        if ops.is_systematically_absent(list(t)):
            continue
        out.append(max(orbit))
        mult.append(len(orbit))
    if not out:
        raise DataError(f"no reflection with {d_min} <= d <= {d_max} for cell {tuple(cell)}")
    hkl = np.array(out, dtype=int)
    d = 1.0 / np.sqrt(inv_d2(hkl, metric))
    order = np.lexsort((hkl[:, 2], hkl[:, 1], hkl[:, 0], -d))
    return Reflections(hkl[order], np.array(mult, dtype=int)[order], d[order])
