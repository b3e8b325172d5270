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

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotrs

from tiedsci.refine.lm import initial_scale, scaled_gradient_max, sum_squares

__all__ = [
    "BlockCols",
    "Partition",
    "NormalSystem",
    "partition_blocks",
    "assemble",
    "chol_solve",
    "eliminate_locals",
    "back_substitute",
    "solve_damped",
    "solve_dense",
    "DENSE_MAX",
    "dense_normal",
    "gradient_and_max",
    "scaled_norms",
    "SerialBlocks",
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
        d[part.shared] = self.hss.diagonal()
        for blk, c in zip(part.blocks, self.c):
            d[blk.l_idx] += c.diagonal()
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


def damped(a: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``a + diag(d)`` (a new array), shape (n, n)."""
    out = a.copy()
    out.flat[::a.shape[0] + 1] += d
    return out


def cho_factor(a: np.ndarray) -> np.ndarray:
    """Upper Cholesky factor of a symmetric positive definite ``a`` (LAPACK ``dpotrf``).

    The same routine as :func:`scipy.linalg.cho_factor`, called directly: its argument
    checks cost more than the factorisation of the small systems solved at every LM step.

    Raises
    ------
    numpy.linalg.LinAlgError
        When ``a`` is not positive definite.
    """
    c, info = dpotrf(a, lower=0, clean=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"{info}-th leading minor not positive definite"
                                    if info > 0 else f"dpotrf: illegal argument {-info}")
    return c


def cho_solve(c: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` from the factor ``c`` of :func:`cho_factor` (LAPACK ``dpotrs``)."""
    x, info = dpotrs(c, b, lower=0)
    if info != 0:
        raise ValueError(f"dpotrs: illegal argument {-info}")
    return x


def chol_solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a^-1 b`` for a symmetric positive definite ``a`` (empty when ``a`` is 0 x 0)."""
    if a.shape[0] == 0:
        return np.zeros_like(b)
    return cho_solve(cho_factor(a), b)


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
        cd = damped(c, mu * scale[blk.l_idx])
        if blk.l_idx.size == 0:
            eliminated.append(None)
            continue
        fac = cho_factor(cd)
        cinv_bt = cho_solve(fac, b.T)  # (nl, ns_k)
        cinv_g = cho_solve(fac, gl)    # (nl,)
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
        dl = -cinv_g - cho_solve(fac, b.T @ ds[blk.s_pos])
        delta[blk.l_idx] += dl


def solve_damped(part: Partition, system: NormalSystem, mu: float,
                 scale: np.ndarray) -> np.ndarray:
    """Solve ``(J^T J + mu diag(scale)) delta = -J^T r`` by eliminating local blocks.

    Raises
    ------
    numpy.linalg.LinAlgError
        When a damped block is not positive definite (the caller increases ``mu``).
    """
    s = damped(system.hss, mu * scale[part.shared])
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


def gradient_and_max(part: Partition, system: NormalSystem, cost: float
                     ) -> tuple[np.ndarray, float]:
    """``(J^T r, max_j |g_j| / (|J_j| |r|))`` of a normal system (the gtol test)."""
    g = system.gradient(part)
    return g, scaled_gradient_max(g, system.diagonal(part), cost)


def scaled_norms(scale: np.ndarray, delta: np.ndarray, theta: np.ndarray) -> tuple[float, float]:
    """``(|D^1/2 delta|, |D^1/2 theta|)``, ``D`` the Marquardt scaling (what propose returns)."""
    root = np.sqrt(scale)
    sd, st = root * delta, root * theta
    return math.sqrt(float(sd @ sd)), math.sqrt(float(st @ st))


DENSE_MAX = 32
""":class:`SerialBlocks` solves a fit with at most this many free parameters (any number of
datasets) as one dense system (LAPACK Cholesky): for small fits the block machinery costs
more than it saves."""


def solve_dense(h: np.ndarray, g: np.ndarray, mu: float, scale: np.ndarray) -> np.ndarray:
    """Solve ``(h + mu diag(scale)) delta = -g`` by a dense Cholesky factorisation.

    Parameters
    ----------
    h : ndarray, shape (n, n)
        ``J^T J``.
    g : ndarray, shape (n,)
        ``J^T r``.
    mu : float
    scale : ndarray, shape (n,)

    Raises
    ------
    numpy.linalg.LinAlgError
        When the damped matrix is not positive definite.
    """
    return chol_solve(damped(h, mu * scale), -g)


def _normal_of_jacobians(part: Partition, jacs: Sequence[np.ndarray],
                         resids: Sequence[np.ndarray], every: bool
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(J^T J, J^T r)`` summed over the residual blocks, shapes (n_free, n_free), (n_free,);
    ``every``: there is one block and it depends on every free parameter, in order."""
    if every:
        return jacs[0].T @ jacs[0], jacs[0].T @ resids[0]
    h, g = np.zeros((part.n_free, part.n_free)), np.zeros(part.n_free)
    for blk, jac, r in zip(part.blocks, jacs, resids):
        h[np.ix_(blk.deps, blk.deps)] += jac.T @ jac
        g[blk.deps] += jac.T @ r
    return h, g


@dataclass(frozen=True)
class _Point:
    """The serial provider's current or proposed point (replaced by one assignment)."""

    theta: np.ndarray
    resids: tuple[np.ndarray, ...]
    system: NormalSystem | None
    cost: float
    scale: np.ndarray
    dense: np.ndarray | None = None  # J^T J when the provider solves densely (system None)
    grad: np.ndarray | None = None  # J^T r then
    jacs: tuple[np.ndarray, ...] = ()  # the Jacobian blocks then (for outcome)


class SerialBlocks:
    """:class:`~tiedsci.refine.lm.NormalProvider` over residual blocks in this process.

    Parameters
    ----------
    fun : callable
        ``theta -> [r_k]``; residual blocks (non-finite values reject a trial step).
    jac : callable
        ``theta -> [J_k]``, ``J_k`` of shape (n_k, len(part.blocks[k].deps)).
    part : Partition
        Shared / local split of theta over the blocks (see :func:`partition_blocks`).
    projection : optional
        Variable projection (:class:`tiedsci.refine.varpro.VariableProjection`): every point
        is first projected (``project(theta) -> (theta, resids)``, the linear parameters at
        their optimum), ``jac`` gives the projected Jacobian, the ``pinned`` (linear) entries
        never step, and :meth:`outcome` returns ``full_system(theta, resids)``.

    Notes
    -----
    A damped step eliminates each block's local parameters (:func:`solve_damped`), so its
    cost is linear in the number of blocks. A fit with at most :data:`DENSE_MAX` free
    parameters (a single small curve, or an everyday global fit of a few datasets) is solved
    as one dense system instead (:func:`solve_dense`): the same equations, without the
    per-block overhead (the same optimum; the iterates agree to rounding).
    """

    def __init__(self, fun: Callable[[np.ndarray], Sequence[np.ndarray]],
                 jac: Callable[[np.ndarray], Sequence[np.ndarray]], part: Partition,
                 projection: Any = None) -> None:
        self.fun, self.jac, self.part, self.projection = fun, jac, part, projection
        self._cur: _Point | None = None
        self._g = np.zeros(part.n_free)
        self._trial: tuple[np.ndarray, float] | None = None
        self._proposal: _Point | None = None
        self.dense = part.n_free <= DENSE_MAX and projection is None
        self._every = self.dense and len(part.blocks) == 1 and np.array_equal(
            part.blocks[0].deps, np.arange(part.n_free))

    def _resids(self, theta: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
        if self.projection is not None:
            return self.projection.project(theta)
        return theta, tuple(self.fun(theta))

    def _at(self, theta: np.ndarray, resids: tuple[np.ndarray, ...], cost: float,
            scale: np.ndarray | None) -> _Point:
        jacs = self.jac(theta)
        if self.dense:  # few parameters: the normal equations as one dense system
            h, g = _normal_of_jacobians(self.part, jacs, resids, self._every)
            diag = h.diagonal().copy()
            scale = initial_scale(diag) if scale is None else np.maximum(scale, diag)
            return _Point(theta, resids, None, cost, scale, h, g, tuple(jacs))
        system = assemble(self.part, jacs, resids)
        if self.projection is not None:
            system = self.projection.pin(system)
        diag = system.diagonal(self.part)
        scale = initial_scale(diag) if scale is None else np.maximum(scale, diag)
        return _Point(theta, resids, system, cost, scale)

    def start(self, theta: np.ndarray, scale: np.ndarray | None) -> float:
        theta, resids = self._resids(theta)
        cost = 0.5 * sum_squares(resids)
        if np.isfinite(cost):
            self._cur = self._at(theta, resids, cost, scale)
        return cost

    def gradient_max(self, mu: float, cost: float) -> float:
        cur = self._current()
        if cur.dense is not None and cur.grad is not None:
            self._g = cur.grad
            return scaled_gradient_max(cur.grad, cur.dense.diagonal(), cost)
        assert cur.system is not None
        self._g, gmax = gradient_and_max(self.part, cur.system, cost)
        return gmax

    def propose(self, mu: float) -> tuple[float, float]:
        cur = self._current()
        if cur.dense is not None:
            delta = solve_dense(cur.dense, self._g, mu, cur.scale)
        else:
            assert cur.system is not None
            delta = solve_damped(self.part, cur.system, mu, cur.scale)
        if self.projection is not None:
            delta[self.projection.pinned] = 0.0
        self._trial = (delta, mu)
        return scaled_norms(cur.scale, delta, cur.theta)

    def evaluate(self) -> tuple[float, float]:
        cur = self._current()
        assert self._trial is not None
        delta, mu = self._trial
        theta, resids = self._resids(cur.theta + delta)
        self._proposal = _Point(theta, resids, None, 0.5 * sum_squares(resids), cur.scale)
        return self._proposal.cost, 0.5 * float(delta @ (mu * cur.scale * delta - self._g))

    def accept(self, cost: float) -> None:
        p = self._proposal
        assert p is not None
        self._cur = self._at(p.theta, p.resids, cost, p.scale)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        cur = self._current()
        return cur.theta.copy(), cur.scale.copy()

    def outcome(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], NormalSystem, float, None]:
        cur = self._current()
        if cur.dense is not None:
            system = assemble(self.part, cur.jacs, cur.resids)
        else:
            assert cur.system is not None
            system = cur.system if self.projection is None else self.projection.full_system(
                cur.theta, cur.resids)
        return cur.theta, cur.resids, system, cur.cost, None

    def _current(self) -> _Point:
        if self._cur is None:
            raise RuntimeError("SerialBlocks.start() has not been called (or failed)")
        return self._cur
