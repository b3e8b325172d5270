"""Variable projection (Golub-Pereyra / Kaufman) as a provider of the one LM loop.

Parameters that enter a dataset's model linearly (amplitudes, scales, polynomial background
coefficients), declared with ``fit(linear=[...])``, are eliminated exactly at every point: for
block ``k`` with linear columns ``A_k = d r_k / d c_k``, ``c_k* = c_k - A_k^+ r_k`` and the
projected residual ``r_k* = r_k + A_k (c_k* - c_k)``. The LM loop
(:func:`tiedsci.refine.lm.levenberg_marquardt`) then sees only the nonlinear parameters, with
Kaufman's Jacobian ``K_k = J_k - A_k (A_k^+ J_k)`` (the Schur complement of the linear block in
the Gauss-Newton matrix), so the damped step, its Schur elimination of the nonlinear locals and
every stopping rule are the ones of the plain fit. At the end the *unprojected* normal blocks
(``[J_k, A_k]`` with the linear parameters as locals) are handed back, so the esds of the linear
parameters and their correlations with the rest come from the full covariance (the block
formula ``Cov(c_k) = s^2 (A_k^T A_k)^-1 + G_k Cov(t) G_k^T``, ``G_k = A_k^+ J_k``).

Each trial point costs one residual and one Jacobian evaluation (the linear columns at the new
nonlinear values), each accepted one a second Jacobian (at the projected linear values).

**Non-negative linear parameters** (``fit(nonnegative=[...])``): per block the linear problem
``min |A c - b|`` with ``c_i >= 0`` for those parameters is solved exactly by the active-set
NNLS of Lawson & Hanson (:func:`scipy.optimize.nnls`), after the unconstrained linear
parameters of the block are projected out (``P_u A_n``, ``P_u b``). The parameters NNLS puts at
0 (the *active set*, exactly 0.0) are held there: Kaufman's Jacobian projects with the free
(unconstrained + passive) columns only, and the final covariance treats the active ones as
fixed at 0. Their esd is reported as NaN (a one-sided bound has no Gaussian esd), they are
listed in ``result.at_bounds`` as ``"lower"``, and every other esd is the one conditional on
them being 0 (equal to the esds of a fit with those parameters fixed at 0). The reduced
functional is only piecewise smooth where the active set changes; the LM loop's acceptance
test keeps the iteration monotone across such changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from tiedsci.errors import DeclarationError
from tiedsci.refine.problem import Problem
from tiedsci.refine.solver import (
    NormalSystem,
    Partition,
    SerialBlocks,
    assemble,
    partition_blocks,
)

__all__ = ["VariableProjection", "linear_columns", "nonnegative_masks", "solve_linear",
           "varpro_provider"]


def linear_columns(problem: Problem, linear: Sequence[str]) -> list[np.ndarray]:
    """Per dataset block, the positions (in its ``deps``) of the declared linear parameters.

    ``linear`` holds short names (``"A1"``: every dataset's ``<dataset>.A1``) or full ones.
    Each must be a free, unbounded, untied parameter local to one dataset.

    Raises
    ------
    DeclarationError
        For a name that is shared, bounded, tied or unknown.
    """
    layout, part = problem.layout, problem.partition
    if problem.n_restraint_rows:
        raise DeclarationError("linear=: variable projection does not combine with restraints")
    wanted = set(linear)
    names = [n for n in layout.names if n in wanted or n.split(".", 1)[-1] in wanted
             and "." in n]
    if not names:
        raise DeclarationError(f"linear={list(linear)}: no declared parameter has these names")
    unbounded = layout.unbounded_mask()
    out = [np.zeros(0, dtype=np.intp) for _ in problem.blocks]
    for name in names:
        idx = layout.depends_on(name)
        owner = [k for k, blk in enumerate(part.blocks[:len(problem.blocks)])
                 if np.isin(idx, blk.l_idx).all() and idx.size]
        if not owner:
            raise DeclarationError(f"linear=: {name!r} is not a free parameter local to one "
                                   "dataset (shared and tied ones cannot be projected out)")
        if not np.all(unbounded[idx]):
            raise DeclarationError(f"linear=: {name!r} has bounds; a projected parameter must "
                                   "be unbounded")
        k = owner[0]
        pos = np.flatnonzero(np.isin(part.blocks[k].deps, idx))
        out[k] = np.union1d(out[k], pos).astype(np.intp)
    return out


def solve_linear(a: np.ndarray, b: np.ndarray, nonneg: np.ndarray) -> np.ndarray:
    """``argmin |a c - b|`` with ``c[nonneg] >= 0``.

    The unconstrained columns are projected out (QR), the non-negative ones solved by
    :func:`scipy.optimize.nnls` on the projected problem, then the unconstrained ones by
    least squares given those; without ``nonneg`` entries, plain least squares.

    Parameters
    ----------
    a : ndarray, shape (n, m)
    b : ndarray, shape (n,)
    nonneg : ndarray of bool, shape (m,)

    Returns
    -------
    ndarray, shape (m,)
        Entries of the active set are exactly 0.0.
    """
    if not nonneg.any():
        return np.linalg.lstsq(a, b, rcond=None)[0]
    free = ~nonneg
    an, bn = a[:, nonneg], b
    if free.any():
        q = np.linalg.qr(a[:, free])[0]
        an, bn = an - q @ (q.T @ an), b - q @ (q.T @ b)
    c = np.zeros(a.shape[1])
    c[nonneg] = nnls(an, bn)[0]
    if free.any():
        c[free] = np.linalg.lstsq(a[:, free], b - a[:, nonneg] @ c[nonneg], rcond=None)[0]
    return c


@dataclass(frozen=True, eq=False)
class VariableProjection:
    """The projection hooks of :class:`~tiedsci.refine.solver.SerialBlocks` (see the module
    docstring).

    Attributes
    ----------
    problem : Problem
    linear : list of int arrays
        Per block, positions in its ``deps`` of the linear parameters.
    part : Partition
        The nonlinear problem's split: the linear parameters in no block, forced shared and
        pinned (unit diagonal, zero step).
    pinned : ndarray of int
        theta indices of the linear parameters.
    nonneg : list of bool arrays, optional
        Per block, which of its linear parameters must be >= 0 (default: none).
    """

    problem: Problem
    linear: list[np.ndarray]
    nonneg: list[np.ndarray] | None = None
    part: Partition = field(init=False)
    pinned: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        full = self.problem.partition
        c_idx = [blk.deps[p] for blk, p in zip(full.blocks, self.linear)]
        pinned = np.concatenate(c_idx) if c_idx else np.zeros(0, dtype=np.intp)
        part = partition_blocks([np.delete(blk.deps, p) for blk, p in
                                 zip(full.blocks, self.linear)], full.n_free,
                                force_shared=pinned)
        object.__setattr__(self, "part", part)
        object.__setattr__(self, "pinned", pinned.astype(np.intp))
        if self.nonneg is None:
            object.__setattr__(self, "nonneg", [np.zeros(p.size, dtype=bool)
                                                for p in self.linear])

    def _mask(self, k: int) -> np.ndarray:
        assert self.nonneg is not None
        return self.nonneg[k]

    def active(self, theta: np.ndarray) -> np.ndarray:
        """theta indices of the non-negative linear parameters held at 0 (the NNLS active
        set at ``theta``, a projected point)."""
        out = [blk.deps[p][self._mask(k) & (theta[blk.deps[p]] == 0.0)]
               for k, (blk, p) in enumerate(zip(self.problem.partition.blocks, self.linear))]
        return np.concatenate(out).astype(np.intp) if out else np.zeros(0, dtype=np.intp)

    def project(self, theta: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        """Linear parameters to their optimum for the nonlinear ones in ``theta``:
        ``(theta*, projected residual blocks)`` (non-finite residuals when it fails)."""
        theta = np.array(theta, dtype=float)
        resids = list(self.problem.residuals(theta))
        try:
            jacs = self.problem.jacobians(theta)
            for k, (jac, blk, p) in enumerate(zip(jacs, self.problem.partition.blocks,
                                                  self.linear)):
                if p.size and self._mask(k).any():  # r = A c - b: NNLS for the new c
                    c = theta[blk.deps[p]]
                    c_new = solve_linear(jac[:, p], jac[:, p] @ c - resids[k], self._mask(k))
                    theta[blk.deps[p]] = c_new
                    resids[k] = resids[k] + jac[:, p] @ (c_new - c)
                elif p.size:
                    dc = np.linalg.lstsq(jac[:, p], -resids[k], rcond=None)[0]
                    theta[blk.deps[p]] += dc
                    resids[k] = resids[k] + jac[:, p] @ dc
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            resids = [np.full_like(r, np.inf) for r in resids]
        return theta, tuple(resids)

    def jacobians(self, theta: np.ndarray) -> list[np.ndarray]:
        """Kaufman's projected Jacobian blocks ``J_k - A_k (A_k^+ J_k)`` over :attr:`part`
        (``A_k`` the free linear columns: those of the NNLS active set are held at 0)."""
        out = []
        held = self.active(np.asarray(theta, dtype=float))
        for jac, blk, p in zip(self.problem.jacobians(theta), self.problem.partition.blocks,
                               self.linear):
            jq = np.delete(jac, p, axis=1)
            free = p[~np.isin(blk.deps[p], held)]
            if free.size:
                a = jac[:, free]
                jq = jq - a @ np.linalg.lstsq(a, jq, rcond=None)[0]
            out.append(jq)
        return out

    def pin(self, system: NormalSystem) -> NormalSystem:
        """Unit diagonal on the (gradient-free) linear parameters of the projected system."""
        pos = np.searchsorted(self.part.shared, self.pinned)
        hss = system.hss.copy()
        hss[pos, pos] += 1.0
        return NormalSystem(hss, system.gs, system.c, system.b, system.gl)

    def full_system(self, theta: np.ndarray, resids: tuple[np.ndarray, ...]) -> NormalSystem:
        """The unprojected normal blocks (linear parameters as locals): the full covariance.

        The columns of the NNLS active set are zeroed: those parameters are held at 0, and
        the covariance of the others is the one conditional on that."""
        jacs = self.problem.jacobians(theta)
        held = self.active(np.asarray(theta, dtype=float))
        if held.size:
            jacs = [j.copy() for j in jacs]
            for j, blk in zip(jacs, self.problem.partition.blocks):
                j[:, np.isin(blk.deps, held)] = 0.0
        return assemble(self.problem.partition, jacs, resids)


def nonnegative_masks(problem: Problem, linear: list[np.ndarray],
                      nonnegative: Sequence[str]) -> list[np.ndarray]:
    """Per block, which of its ``linear`` positions are among the ``nonnegative`` names
    (resolved as :func:`linear_columns` does)."""
    nn = linear_columns(problem, nonnegative)
    return [np.isin(p, q) for p, q in zip(linear, nn)]


def varpro_provider(problem: Problem, linear: list[np.ndarray],
                    nonneg: list[np.ndarray] | None = None) -> SerialBlocks:
    """:class:`~tiedsci.refine.solver.SerialBlocks` with the ``linear`` columns
    (:func:`linear_columns`) projected out, those flagged in ``nonneg`` by NNLS."""
    vp = VariableProjection(problem, linear, nonneg)
    return SerialBlocks(problem.residuals, vp.jacobians, vp.part, projection=vp)
