"""Block-sparse Levenberg-Marquardt with a Schur complement on the shared parameters.

The residual vector is a concatenation of blocks (one per dataset, plus one for restraints).
A free parameter is *local* when exactly one block depends on it (a dataset's scale, zero
shift, background...) and *shared* otherwise. The Gauss-Newton normal matrix then has the
arrow shape of bundle adjustment::

    [ H_SS  B_1 ... B_N ]      H_SS = sum_k J_kS^T J_kS   (small, dense)
    [ B_1^T C_1         ]      C_k  = J_kL^T J_kL         (local block of dataset k)
    [  ...       ...    ]      B_k  = J_kS^T J_kL
    [ B_N^T         C_N ]

and a damped step eliminates the local blocks one dataset at a time (Schur complement), so
the cost of a step is linear in the number of datasets. Everything here is pure numpy on
already computed Jacobian blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg as sla

__all__ = [
    "BlockCols",
    "Partition",
    "NormalSystem",
    "LMOutcome",
    "LMState",
    "INTERRUPTED",
    "partition_blocks",
    "assemble",
    "chol_solve",
    "eliminate_locals",
    "back_substitute",
    "solve_damped",
    "dense_normal",
    "levenberg_marquardt",
]


@dataclass(frozen=True)
class BlockCols:
    """Columns of one residual block's Jacobian, split into shared and local parameters.

    Attributes
    ----------
    deps : ndarray of int, shape (n_deps,)
        theta indices the block depends on (its Jacobian columns, in this order).
    s_cols, l_cols : ndarray of int
        Positions in ``deps`` of the shared / local parameters.
    s_pos : ndarray of int
        Positions of the shared ones in :attr:`Partition.shared`.
    l_idx : ndarray of int
        theta indices of the local parameters.
    """

    deps: np.ndarray
    s_cols: np.ndarray
    l_cols: np.ndarray
    s_pos: np.ndarray
    l_idx: np.ndarray


@dataclass(frozen=True)
class Partition:
    """Shared / local split of the free vector over the residual blocks."""

    n_free: int
    shared: np.ndarray
    blocks: tuple[BlockCols, ...]


def partition_blocks(deps: Sequence[np.ndarray], n_free: int,
                     force_shared: np.ndarray | None = None) -> Partition:
    """Split theta into shared and per-block local parameters.

    Parameters
    ----------
    deps : sequence of int arrays
        theta indices each residual block depends on.
    n_free : int
        Length of theta.
    force_shared : int array, optional
        Indices to treat as shared whatever their use (e.g. those in restraints).
    """
    count = np.zeros(n_free, dtype=int)
    for d in deps:
        count[np.unique(d)] += 1
    is_shared = count != 1
    if force_shared is not None:
        is_shared[np.asarray(force_shared, dtype=np.intp)] = True
    shared = np.flatnonzero(is_shared)
    pos = np.full(n_free, -1)
    pos[shared] = np.arange(shared.size)
    blocks = []
    for d in deps:
        d = np.asarray(d, dtype=np.intp)
        sh = is_shared[d]
        blocks.append(BlockCols(d, np.flatnonzero(sh), np.flatnonzero(~sh), pos[d[sh]],
                                d[~sh]))
    return Partition(n_free, shared, tuple(blocks))


@dataclass(frozen=True)
class NormalSystem:
    """Blocks of ``J^T J`` and ``J^T r`` (see the module docstring)."""

    hss: np.ndarray
    gs: np.ndarray
    c: tuple[np.ndarray, ...]
    b: tuple[np.ndarray, ...]
    gl: tuple[np.ndarray, ...]

    def diagonal(self, part: Partition) -> np.ndarray:
        """``diag(J^T J)``, shape (n_free,)."""
        d = np.zeros(part.n_free)
        d[part.shared] = np.diag(self.hss)
        for blk, c in zip(part.blocks, self.c):
            d[blk.l_idx] += np.diag(c)
        return d

    def gradient(self, part: Partition) -> np.ndarray:
        """``J^T r``, shape (n_free,)."""
        g = np.zeros(part.n_free)
        g[part.shared] = self.gs
        for blk, gl in zip(part.blocks, self.gl):
            g[blk.l_idx] += gl
        return g


def assemble(part: Partition, jacs: Sequence[np.ndarray],
             resids: Sequence[np.ndarray]) -> NormalSystem:
    """Normal-equation blocks from per-block Jacobians (n_k, n_deps_k) and residuals (n_k,)."""
    ns = part.shared.size
    hss = np.zeros((ns, ns))
    gs = np.zeros(ns)
    cs, bs, gls = [], [], []
    for blk, jac, r in zip(part.blocks, jacs, resids):
        js = jac[:, blk.s_cols]
        jl = jac[:, blk.l_cols]
        if blk.s_pos.size:
            hss[np.ix_(blk.s_pos, blk.s_pos)] += js.T @ js
            gs[blk.s_pos] += js.T @ r
        cs.append(jl.T @ jl)
        bs.append(js.T @ jl)
        gls.append(jl.T @ r)
    return NormalSystem(hss, gs, tuple(cs), tuple(bs), tuple(gls))


def chol_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` for a symmetric positive definite ``a`` (empty when ``a`` is 0 x 0)."""
    if a.shape[0] == 0:
        return np.zeros_like(b)
    return sla.cho_solve(sla.cho_factor(a, lower=False, check_finite=False), b,
                         check_finite=False)


def eliminate_locals(part: Partition, system: NormalSystem, mu: float, scale: np.ndarray,
                     s: np.ndarray, rhs: np.ndarray) -> list[Any]:
    """Fold each block's damped local parameters into the shared system (Schur complement).

    Subtracts ``B_k (C_k + mu D_k)^-1 B_k^T`` from ``s`` and adds ``B_k (C_k + mu D_k)^-1 g_k``
    to ``rhs``, in place, block by block. A distributed fit calls it on one batch of blocks
    (``s = H_SS`` and ``rhs = -g_S`` of that batch) and sums the results.

    Parameters
    ----------
    part, system : Partition, NormalSystem
        Blocks to eliminate (``system.c/b/gl`` follow ``part.blocks``).
    mu : float
        Damping.
    scale : ndarray, shape (n_free,)
        Marquardt scaling (only the blocks' local entries are read).
    s : ndarray, shape (n_shared, n_shared)
    rhs : ndarray, shape (n_shared,)

    Returns
    -------
    list
        Per block ``(cholesky factor, C^-1 g)`` or ``None`` (no local parameter), for
        :func:`back_substitute`.

    Raises
    ------
    numpy.linalg.LinAlgError
        When a damped local block is not positive definite.
    """
    eliminated: list[Any] = []
    for blk, c, b, gl in zip(part.blocks, system.c, system.b, system.gl):
        cd = c + np.diag(mu * scale[blk.l_idx])
        if blk.l_idx.size == 0:
            eliminated.append(None)
            continue
        fac = sla.cho_factor(cd, check_finite=False)
        cinv_bt = sla.cho_solve(fac, b.T, check_finite=False)  # (nl, ns_k)
        cinv_g = sla.cho_solve(fac, gl, check_finite=False)    # (nl,)
        if blk.s_pos.size:
            s[np.ix_(blk.s_pos, blk.s_pos)] -= b @ cinv_bt
            rhs[blk.s_pos] += b @ cinv_g
        eliminated.append((fac, cinv_g))
    return eliminated


def back_substitute(part: Partition, system: NormalSystem, eliminated: Sequence[Any],
                    ds: np.ndarray, delta: np.ndarray) -> None:
    """Local steps ``-(C_k + mu D_k)^-1 (g_k + B_k^T ds)`` added into ``delta`` (in place).

    ``ds`` is the shared step, shape (n_shared,); ``eliminated`` comes from
    :func:`eliminate_locals`; ``delta`` has shape (n_free,).
    """
    for blk, b, item in zip(part.blocks, system.b, eliminated):
        if item is None:
            continue
        fac, cinv_g = item
        dl = -cinv_g - sla.cho_solve(fac, b.T @ ds[blk.s_pos], check_finite=False)
        delta[blk.l_idx] += dl


def solve_damped(part: Partition, system: NormalSystem, mu: float,
                 scale: np.ndarray) -> np.ndarray:
    """Solve ``(J^T J + mu diag(scale)) delta = -J^T r`` by eliminating local blocks.

    Raises
    ------
    numpy.linalg.LinAlgError
        When a damped block is not positive definite (the caller increases ``mu``).
    """
    s = system.hss + np.diag(mu * scale[part.shared])
    rhs = -system.gs.copy()
    eliminated = eliminate_locals(part, system, mu, scale, s, rhs)
    delta = np.zeros(part.n_free)
    ds = chol_solve(s, rhs)
    delta[part.shared] = ds
    back_substitute(part, system, eliminated, ds, delta)
    return delta


def dense_normal(part: Partition, system: NormalSystem) -> np.ndarray:
    """The full ``J^T J``, shape (n_free, n_free) (for the covariance)."""
    h = np.zeros((part.n_free, part.n_free))
    h[np.ix_(part.shared, part.shared)] = system.hss
    for blk, c, b in zip(part.blocks, system.c, system.b):
        sidx = part.shared[blk.s_pos]
        h[np.ix_(blk.l_idx, blk.l_idx)] += c
        h[np.ix_(sidx, blk.l_idx)] += b
        h[np.ix_(blk.l_idx, sidx)] += b.T
    return h


@dataclass(frozen=True)
class LMOutcome:
    """What :func:`levenberg_marquardt` returns."""

    theta: np.ndarray
    resids: tuple[np.ndarray, ...]
    system: NormalSystem
    cost: float
    nfev: int
    njev: int
    n_iter: int
    converged: bool
    message: str


INTERRUPTED = "interrupted"
"""``LMOutcome.message`` of an iteration stopped by KeyboardInterrupt (Ctrl-C)."""


@dataclass(frozen=True)
class LMState:
    """Iteration state after an accepted step: what :func:`levenberg_marquardt` needs (as
    ``start=``) to continue exactly as if it had not stopped.

    Attributes
    ----------
    theta : ndarray, shape (n_free,)
    cost : float
        ``0.5 * sum |r_k|^2`` at ``theta``.
    mu : float
        Damping for the next step.
    scale : ndarray, shape (n_free,)
        Marquardt scaling (running maximum of ``diag(J^T J)``).
    nfev, njev, n_iter : int
        Counters so far.
    """

    theta: np.ndarray
    cost: float
    mu: float
    scale: np.ndarray
    nfev: int
    njev: int
    n_iter: int


def _cost(resids: Sequence[np.ndarray]) -> float:
    total = 0.0
    for r in resids:
        total += float(r @ r)
    return 0.5 * total


def damping_after_acceptance(mu: float, rho: float) -> float:
    """Nielsen's damping update after an accepted step with gain ratio ``rho``."""
    return mu * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)


def after_rejection(mu: float, nu: float, pred: float, actual: float, new_cost: float,
                    cost: float, ftol: float) -> tuple[float, float, str | None, bool]:
    """Damping after a rejected step, or the reason to stop.

    Returns ``(mu, nu, message, converged)``; ``message`` is None when the iteration goes on.
    """
    if 0 <= pred <= ftol * cost and np.isfinite(new_cost) and abs(actual) <= ftol * cost:
        return mu, nu, "converged: chi^2 cannot be reduced further (rounding level)", True
    mu *= nu
    nu *= 2.0
    if mu > 1e30:
        return mu, nu, "stopped: no step reduces chi^2 (damping exhausted)", False
    return mu, nu, None, False


def levenberg_marquardt(
    fun: Callable[[np.ndarray], Sequence[np.ndarray]],
    jac: Callable[[np.ndarray], Sequence[np.ndarray]],
    theta0: np.ndarray,
    part: Partition,
    *,
    ftol: float = 1e-10,
    xtol: float = 1e-10,
    gtol: float = 1e-10,
    max_nfev: int = 1000,
    mu0: float = 1e-3,
    callback: Callable[[int, np.ndarray, float], None] | None = None,
    start: LMState | None = None,
    on_accept: Callable[[LMState], None] | None = None,
) -> LMOutcome:
    """Minimise ``0.5 * sum_k |r_k(theta)|^2`` by damped Gauss-Newton (Marquardt scaling).

    Parameters
    ----------
    fun : callable
        ``theta -> [r_k]``; residual blocks (non-finite values reject a trial step).
    jac : callable
        ``theta -> [J_k]``, ``J_k`` of shape (n_k, len(part.blocks[k].deps)).
    theta0 : ndarray, shape (n_free,)
    part : Partition
    ftol, xtol, gtol : float
        Stop when the actual and predicted relative reductions of the cost are both below
        ``ftol``, when the step is below ``xtol * (|theta| + xtol)``, or when the scaled gradient
        ``max |g_j| / sqrt(D_j cost)`` is below ``gtol``.
    max_nfev : int
        Budget of residual evaluations.
    mu0 : float
        Initial damping (relative: the damping term is ``mu * diag(J^T J)``).
    callback : callable, optional
        ``callback(n_iter, theta, cost)`` after each accepted step.
    start : LMState, optional
        Continue from a state given earlier to ``on_accept`` (``theta0`` and ``mu0`` are then
        not used); the iteration goes on exactly as it would have without the stop. The
        re-evaluation at ``start.theta`` is not counted in ``nfev`` / ``njev``.
    on_accept : callable, optional
        ``on_accept(state)`` with an :class:`LMState` after each accepted step (checkpoints).

    Notes
    -----
    A KeyboardInterrupt (Ctrl-C) after the first evaluation stops the iteration cleanly: the
    last accepted point is returned with ``message == INTERRUPTED`` and ``converged=False``.
    """
    theta = np.array(theta0 if start is None else start.theta, dtype=float)
    resids = tuple(fun(theta))
    cost = _cost(resids)
    if not np.isfinite(cost):
        raise FloatingPointError("the residuals are not finite at the starting point")
    system = assemble(part, jac(theta), resids)
    if start is None:
        nfev, njev, n_iter, mu = 1, 1, 0, mu0
        scale = np.maximum(system.diagonal(part), 0.0)
        floor = max(float(scale.max(initial=0.0)), 1.0) * 1e-12
        scale = np.maximum(scale, floor)
    else:
        nfev, njev, n_iter, mu = int(start.nfev), int(start.njev), int(start.n_iter), start.mu
        scale = np.maximum(np.asarray(start.scale, dtype=float), system.diagonal(part))
    nu = 2.0
    converged = False
    message = f"stopped: max_nfev={max_nfev} residual evaluations used without convergence"
    accepted = (theta, resids, system, cost)  # replaced in one assignment: always consistent
    try:
        while nfev < max_nfev:
            g = system.gradient(part)
            if cost == 0.0 or np.max(np.abs(g) / np.sqrt(scale * max(cost, 1e-300)),
                                     initial=0.0) <= gtol:
                converged, message = True, "converged: gradient below gtol"
                break
            try:
                delta = solve_damped(part, system, mu, scale)
            except np.linalg.LinAlgError:
                mu *= nu
                nu *= 2.0
                if mu > 1e30:
                    message = "stopped: damped normal matrix not positive definite"
                    break
                continue
            step_norm = float(np.linalg.norm(delta))
            if step_norm <= xtol * (float(np.linalg.norm(theta)) + xtol):
                converged, message = True, "converged: step below xtol"
                break
            trial = theta + delta
            new = tuple(fun(trial))
            nfev += 1
            new_cost = _cost(new)
            pred = 0.5 * float(delta @ (mu * scale * delta - g))
            actual = cost - new_cost if np.isfinite(new_cost) else -np.inf
            rho = actual / pred if pred > 0 else -1.0
            if rho > 0:
                n_iter += 1
                theta, resids, old_cost, cost = trial, new, cost, new_cost
                small = (actual <= ftol * old_cost) and (pred <= ftol * old_cost) and rho <= 2.0
                system = assemble(part, jac(theta), resids)
                njev += 1
                accepted = (theta, resids, system, cost)
                scale = np.maximum(scale, system.diagonal(part))
                mu = damping_after_acceptance(mu, rho)
                nu = 2.0
                if on_accept is not None:
                    on_accept(LMState(theta.copy(), cost, mu, scale.copy(), nfev, njev,
                                      n_iter))
                if callback is not None:
                    callback(n_iter, theta, cost)
                if small:
                    converged, message = True, "converged: relative reduction of chi^2 below ftol"
                    break
            else:
                mu, nu, stop, converged = after_rejection(mu, nu, pred, actual, new_cost, cost,
                                                          ftol)
                if stop is not None:
                    message = stop
                    break
    except KeyboardInterrupt:
        theta, resids, system, cost = accepted
        converged, message = False, INTERRUPTED
    return LMOutcome(theta, resids, system, cost, nfev, njev, n_iter, converged, message)
