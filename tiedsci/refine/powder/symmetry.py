"""Space-group symmetry as linear constraints: special positions and symmetric tensors.

Everything is derived from the symmetry operations of :mod:`gemmi`, never from typed-in
tables. A special position's coordinates satisfy ``R x + t = x (mod 1)`` for every operation
of its site-symmetry group; the solutions form an affine subspace, written here as a few free
coordinates and the others as linear functions of them (``y = 1/4``; ``y = x``;
``y = 2x``...). The same null-space construction gives the tensors allowed by the point group
(the reciprocal-metric strain ``D_ij``).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = [
    "SymOp",
    "LinearRelation",
    "SiteSymmetry",
    "symmetry_operations",
    "site_symmetry",
    "invariant_relations",
    "metric_relations",
]


@dataclass(frozen=True, eq=False)
class SymOp:
    """One operation ``x -> R x + t`` in fractional coordinates (centring included).

    Attributes
    ----------
    rot : ndarray of float, shape (3, 3)
    tran : ndarray of float, shape (3,)
    """

    rot: np.ndarray
    tran: np.ndarray


@dataclass(frozen=True)
class LinearRelation:
    """``value[target] = sum(coef * value[source]) + offset`` among the components of a vector.

    Attributes
    ----------
    target : int
        Dependent component.
    terms : tuple of (float, int)
        ``(coefficient, source component)``; empty for a fixed component.
    offset : float
    """

    target: int
    terms: tuple[tuple[float, int], ...]
    offset: float


@dataclass(frozen=True)
class SiteSymmetry:
    """Site symmetry of one position.

    Attributes
    ----------
    xyz : tuple of float
        The position moved exactly onto its special position (projection onto the fixed
        affine subspace of the site-symmetry group).
    n_site_ops : int
        Order of the site-symmetry group (centring translations counted).
    multiplicity : int
        Number of equivalent positions in the unit cell (``n_ops / n_site_ops``).
    free : tuple of bool
        Which of x, y, z are free.
    relations : tuple of LinearRelation
        How the other coordinates follow from the free ones (indices 0, 1, 2 = x, y, z).
    """

    xyz: tuple[float, float, float]
    n_site_ops: int
    multiplicity: int
    free: tuple[bool, bool, bool]
    relations: tuple[LinearRelation, ...]


def symmetry_operations(space_group: str) -> tuple[SymOp, ...]:
    """All operations of a space group (with centring), from gemmi.

    Parameters
    ----------
    space_group : str
        Hermann-Mauguin symbol or number understood by ``gemmi.SpaceGroup``.
    """
    import gemmi

    ops = gemmi.SpaceGroup(space_group).operations()
    out = []
    for op in ops:
        rot = np.array(op.rot, dtype=float) / op.DEN
        tran = np.array(op.tran, dtype=float) / op.DEN
        out.append(SymOp(rot, tran))
    return tuple(out)


def _nice(v: float) -> float:
    """Snap to a small fraction (denominator <= 24) when within 1e-9."""
    f = Fraction(v).limit_denominator(24)
    return float(f) if abs(float(f) - v) < 1e-9 else float(v)


def _relations_from_nullspace(basis: np.ndarray, x0: np.ndarray,
                              ) -> tuple[tuple[bool, ...], tuple[LinearRelation, ...]]:
    """Free components and relations of ``{x0 + basis @ alpha}``.

    Parameters
    ----------
    basis : ndarray, shape (n, d)
        Orthonormal basis of the allowed directions (d may be 0).
    x0 : ndarray, shape (n,)
        A point of the affine subspace.
    """
    n, d = basis.shape
    pivots: list[int] = []
    if d:
        # Gauss-Jordan on basis^T: leftmost pivots are the free components (x before y ...)
        m = basis.T.copy()
        row = 0
        for col in range(n):
            if row == d:
                break
            p = row + int(np.argmax(np.abs(m[row:, col])))
            if abs(m[p, col]) < 1e-8:
                continue
            m[[row, p]] = m[[p, row]]
            m[row] /= m[row, col]
            for r in range(d):
                if r != row:
                    m[r] -= m[r, col] * m[row]
            pivots.append(col)
            row += 1
    free = tuple(i in pivots for i in range(n))
    relations = []
    if pivots:
        bp = basis[pivots, :]  # (d, d)
        coef = basis @ np.linalg.inv(bp)  # (n, d): x = x0 + coef (x_P - x0_P)
    else:
        coef = np.zeros((n, 0))
    for i in range(n):
        if free[i]:
            continue
        terms = tuple((_nice(float(coef[i, j])), p) for j, p in enumerate(pivots)
                      if abs(coef[i, j]) > 1e-9)
        offset = float(x0[i]) - sum(c * float(x0[p]) for c, p in terms)
        relations.append(LinearRelation(i, terms, _nice(offset)))
    return free, tuple(relations)


def site_symmetry(ops: tuple[SymOp, ...], xyz: np.ndarray, tol: float = 1e-3
                  ) -> SiteSymmetry:
    """Site-symmetry group of a position and the constraints it puts on x, y, z.

    Parameters
    ----------
    ops : tuple of SymOp
        The space group's operations (:func:`symmetry_operations`).
    xyz : array_like, shape (3,)
        Fractional coordinates (approximately on the special position).
    tol : float
        Largest fractional distance for an image to count as the same position.

    Returns
    -------
    SiteSymmetry
    """
    x = np.asarray(xyz, dtype=float)
    images, rows = [], []
    for op in ops:
        img = op.rot @ x + op.tran
        shift = np.round(x - img)
        if np.max(np.abs(img + shift - x)) < tol:
            images.append(img + shift)
            rows.append((op.rot, op.tran + shift))
    exact = np.mean(images, axis=0)  # orbit average = projection onto the fixed subspace
    m = np.concatenate([r - np.eye(3) for r, _ in rows], axis=0)
    _, s, vt = np.linalg.svd(m)
    rank = int(np.sum(s > 1e-8))
    basis = vt[rank:].T  # (3, 3 - rank)
    free, relations = _relations_from_nullspace(basis, exact)
    exact = np.array([_nice(float(v)) for v in exact])
    mult = len(ops) // len(rows)
    return SiteSymmetry(tuple(float(v) for v in exact), len(rows), mult, free, relations)


def _sym_index() -> list[tuple[int, int]]:
    return [(0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2)]


def invariant_relations(ops: tuple[SymOp, ...]
                        ) -> tuple[tuple[bool, ...], tuple[LinearRelation, ...]]:
    """Components of a symmetric reciprocal-space tensor allowed by the point group.

    The tensor is written in the GSAS order ``(D11, D22, D33, D12, D13, D23)`` with
    ``1/d^2 = D11 h^2 + D22 k^2 + D33 l^2 + D12 h k + D13 h l + D23 k l``; invariance under
    every rotation ``R`` (acting on row vectors ``h -> h R``) gives linear relations.

    Returns
    -------
    free : tuple of bool, length 6
    relations : tuple of LinearRelation
        Dependent components as linear functions of free ones (offsets 0).
    """
    idx = _sym_index()

    def to_mat(v: np.ndarray) -> np.ndarray:
        s = np.zeros((3, 3))
        for k, (i, j) in enumerate(idx):
            if i == j:
                s[i, i] = v[k]
            else:
                s[i, j] = s[j, i] = v[k] / 2.0
        return s

    def to_vec(s: np.ndarray) -> np.ndarray:
        return np.array([s[i, j] * (1.0 if i == j else 2.0) for i, j in idx])

    blocks = []
    for op in ops:
        cols = [to_vec(op.rot @ to_mat(e) @ op.rot.T) for e in np.eye(6)]
        blocks.append(np.stack(cols, axis=1) - np.eye(6))
    m = np.concatenate(blocks, axis=0)
    _, s, vt = np.linalg.svd(m)
    rank = int(np.sum(s > 1e-8))
    basis = vt[rank:].T
    return _relations_from_nullspace(basis, np.zeros(6))


def metric_relations(crystal_system: str, rhombohedral: bool = False
                     ) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...],
                                dict[str, float]]:
    """Cell-parameter constraints of a crystal system (standard settings).

    Parameters
    ----------
    crystal_system : str
        As ``gemmi.SpaceGroup.crystal_system_str()``: ``"triclinic"``, ``"monoclinic"``,
        ``"orthorhombic"``, ``"tetragonal"``, ``"trigonal"``, ``"hexagonal"``, ``"cubic"``.
    rhombohedral : bool
        Trigonal group in rhombohedral axes (a = b = c, alpha = beta = gamma).

    Returns
    -------
    free : tuple of str
        Cell parameters that stay free.
    ties : tuple of (source, target)
        ``target = source``.
    fixed : dict
        ``name -> value`` (angles in degrees).
    """
    sys_ = crystal_system.lower()
    if sys_ == "triclinic":
        return ("a", "b", "c", "alpha", "beta", "gamma"), (), {}
    if sys_ == "monoclinic":  # unique axis b
        return ("a", "b", "c", "beta"), (), {"alpha": 90.0, "gamma": 90.0}
    if sys_ == "orthorhombic":
        return ("a", "b", "c"), (), {"alpha": 90.0, "beta": 90.0, "gamma": 90.0}
    if sys_ == "tetragonal":
        return ("a", "c"), (("a", "b"),), {"alpha": 90.0, "beta": 90.0, "gamma": 90.0}
    if sys_ == "trigonal" and rhombohedral:
        return ("a", "alpha"), (("a", "b"), ("a", "c"), ("alpha", "beta"),
                                ("alpha", "gamma")), {}
    if sys_ in ("trigonal", "hexagonal"):
        return ("a", "c"), (("a", "b"),), {"alpha": 90.0, "beta": 90.0, "gamma": 120.0}
    if sys_ == "cubic":
        return ("a",), (("a", "b"), ("a", "c")), {"alpha": 90.0, "beta": 90.0, "gamma": 90.0}
    raise ValueError(f"unknown crystal system {crystal_system!r}")
