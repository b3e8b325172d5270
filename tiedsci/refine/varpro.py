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
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tiedsci.errors import DeclarationError
from tiedsci.refine.lm import initial_scale, scaled_gradient_max, sum_squares
from tiedsci.refine.problem import Problem
from tiedsci.refine.solver import NormalSystem, assemble, partition_blocks, solve_damped

__all__ = ["VarProBlocks", "linear_columns"]


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
    theta = layout.theta0
    t1 = layout.transform_derivative(theta).diagonal()
    t2 = layout.transform_derivative(theta + 0.37).diagonal()
    out = [np.zeros(0, dtype=np.intp) for _ in problem.blocks]
    for name in names:
        idx = layout.depends_on(name)
        owner = [k for k, blk in enumerate(part.blocks[:len(problem.blocks)])
                 if np.isin(idx, blk.l_idx).all() and idx.size]
        if not owner:
            raise DeclarationError(f"linear=: {name!r} is not a free parameter local to one "
                                   "dataset (shared and tied ones cannot be projected out)")
        if not (np.all(t1[idx] == 1.0) and np.all(t2[idx] == 1.0)):
            raise DeclarationError(f"linear=: {name!r} has bounds; a projected parameter must "
                                   "be unbounded")
        k = owner[0]
        pos = np.flatnonzero(np.isin(part.blocks[k].deps, idx))
        out[k] = np.union1d(out[k], pos).astype(np.intp)
    return out


@dataclass(frozen=True)
class _Point:
    theta: np.ndarray
    resids: tuple[np.ndarray, ...]
    cost: float
    jacs: tuple[np.ndarray, ...] | None = None  # full Jacobian blocks at theta
    system: NormalSystem | None = None          # projected normal blocks
    scale: np.ndarray | None = None


class VarProBlocks:
    """:class:`~tiedsci.refine.lm.NormalProvider` with each block's linear parameters projected
    out (Kaufman's variable projection); serial.

    Parameters
    ----------
    problem : Problem
    linear : list of int arrays
        Per block, positions in its ``deps`` of the linear parameters
        (:func:`linear_columns`).
    """

    def __init__(self, problem: Problem, linear: list[np.ndarray]) -> None:
        self.problem = problem
        self.linear = linear
        part = problem.partition
        self.c_idx = [blk.deps[p] for blk, p in zip(part.blocks, linear)]
        self.rest = [np.setdiff1d(np.arange(blk.deps.size), p)
                     for blk, p in zip(part.blocks, linear)]
        all_c = np.concatenate(self.c_idx) if self.c_idx else np.zeros(0, dtype=np.intp)
        # the nonlinear problem: the linear parameters leave every block (their rows are
        # pinned by a unit diagonal, so their step is 0)
        self.part = partition_blocks([blk.deps[q] for blk, q in zip(part.blocks, self.rest)],
                                     part.n_free, force_shared=all_c)
        self.all_c = all_c
        self._cur: _Point | None = None
        self._trial: tuple[np.ndarray, float] | None = None
        self._proposal: _Point | None = None
        self._g = np.zeros(part.n_free)

    # ----------------------------------------------------------------- projection
    def _project(self, theta: np.ndarray) -> _Point:
        """Linear parameters to their optimum for the nonlinear ones in ``theta``."""
        theta = np.array(theta, dtype=float)
        resids = list(self.problem.residuals(theta))
        jacs = self.problem.jacobians(theta)
        for k, (jac, p) in enumerate(zip(jacs, self.linear)):
            if p.size == 0:
                continue
            dc = np.linalg.lstsq(jac[:, p], -resids[k], rcond=None)[0]
            theta[self.c_idx[k]] += dc
            resids[k] = resids[k] + jac[:, p] @ dc
        return _Point(theta, tuple(resids), 0.5 * sum_squares(resids))

    def _with_system(self, pt: _Point, scale: np.ndarray | None) -> _Point:
        """Kaufman's projected Jacobian and its normal blocks at a projected point."""
        jacs = tuple(self.problem.jacobians(pt.theta))
        red = []
        for jac, p, q in zip(jacs, self.linear, self.rest):
            jq = jac[:, q]
            if p.size:
                a = jac[:, p]
                jq = jq - a @ np.linalg.lstsq(a, jq, rcond=None)[0]
            red.append(jq)
        system = assemble(self.part, red, pt.resids)
        pos = np.searchsorted(self.part.shared, self.all_c)
        hss = system.hss.copy()
        hss[pos, pos] += 1.0  # pinned linear parameters (zero gradient, zero step)
        system = NormalSystem(hss, system.gs, system.c, system.b, system.gl)
        diag = system.diagonal(self.part)
        scale = initial_scale(diag) if scale is None else np.maximum(scale, diag)
        return _Point(pt.theta, pt.resids, pt.cost, jacs, system, scale)

    # ----------------------------------------------------------------- provider
    def start(self, theta: np.ndarray, scale: np.ndarray | None) -> float:
        pt = self._project(theta)
        if np.isfinite(pt.cost):
            self._cur = self._with_system(pt, scale)
        return pt.cost

    def gradient_max(self, mu: float, cost: float) -> float:
        cur = self._current()
        assert cur.system is not None
        self._g = cur.system.gradient(self.part)
        return scaled_gradient_max(self._g, cur.system.diagonal(self.part), cost)

    def propose(self, mu: float) -> tuple[float, float]:
        cur = self._current()
        assert cur.system is not None and cur.scale is not None
        delta = solve_damped(self.part, cur.system, mu, cur.scale)
        delta[self.all_c] = 0.0
        self._trial = (delta, mu)
        root = np.sqrt(cur.scale)
        return float(np.linalg.norm(root * delta)), float(np.linalg.norm(root * cur.theta))

    def evaluate(self) -> tuple[float, float]:
        cur = self._current()
        assert self._trial is not None and cur.scale is not None
        delta, mu = self._trial
        try:
            self._proposal = self._project(cur.theta + delta)
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            self._proposal = _Point(cur.theta + delta, cur.resids, float("inf"))
        return self._proposal.cost, 0.5 * float(delta @ (mu * cur.scale * delta - self._g))

    def accept(self, cost: float) -> None:
        p = self._proposal
        assert p is not None
        self._cur = self._with_system(p, self._current().scale)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        cur = self._current()
        assert cur.scale is not None
        return cur.theta.copy(), cur.scale.copy()

    def outcome(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], NormalSystem, float, None]:
        """The point with the *unprojected* normal blocks (full covariance for the esds)."""
        cur = self._current()
        assert cur.jacs is not None
        system = assemble(self.problem.partition, cur.jacs, cur.resids)
        return cur.theta, cur.resids, system, cur.cost, None

    def _current(self) -> _Point:
        if self._cur is None:
            raise RuntimeError("VarProBlocks.start() has not been called (or failed)")
        return self._cur
