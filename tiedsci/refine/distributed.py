"""Block Levenberg-Marquardt over an executor: batches of datasets live on the workers.

:class:`ExecutorBatches` is the provider of normal equations that
:func:`tiedsci.refine.lm.levenberg_marquardt` (the one LM loop: acceptance, damping, stopping,
Ctrl-C, resume) drives when the per-dataset work is mapped over batches of datasets through the
map-reduce seam of :mod:`tiedsci.parallel`. *A tie sums*: after each batch
eliminates its local parameters, its reduced shared normal matrix is just added to the others'.

Each batch (its compiled model blocks, the data, its local parameters and its normal-matrix
blocks) is put on a worker once per fit and its state stays there (``map_persist``). One
iteration is three rounds of messages whose size depends on the number of *shared* parameters
``n_s`` only, never on the number of datasets:

1. ``map_reduce(_reduce)``: every batch eliminates its damped local blocks and returns
   ``(S_b, s_b, chi2_b)`` plus ``diag(H_SS)_b``, ``g_S,b`` and a gradient check (~``n_s^2``
   floats); the client sums them, adds the restraints and the damping ``mu D_S`` and solves the
   small shared system for ``ds``.
2. ``map_persist(_trial)`` with ``ds`` broadcast (``n_s`` floats): every batch back-substitutes
   its local steps, keeps the trial point and returns (via ``_trial_sums``) its chi-square, its
   share of the step and parameter norms and of the predicted reduction (4 floats).
3. on acceptance, ``map_persist(_accept)``: every batch computes its Jacobian at the trial point
   (nothing comes back; the next round 1 reads it).

Only after convergence does each batch send its local parameters, normal blocks and model
curves back once (for the covariance and the result). Restraints involve shared parameters
only; the client evaluates them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.parallel import StatefulExecutor
from tiedsci.refine.lm import scale_floor, scaled_gradient_max, sum_squares
from tiedsci.refine.problem import Problem
from tiedsci.refine.solver import (
    NormalSystem,
    Partition,
    assemble,
    back_substitute,
    chol_solve,
    eliminate_locals,
)

__all__ = ["BatchShard", "BatchState", "TrialState", "Reduced", "TrialSums", "make_batches",
           "default_n_batches", "ExecutorBatches"]


@dataclass(frozen=True, eq=False)
class BatchShard:
    """What one batch needs on its worker (sent once, at ``put``).

    Attributes
    ----------
    problem : Problem
        The full layout with only this batch's model blocks and no restraint rows; its
        ``partition`` holds this batch's :class:`~tiedsci.refine.solver.BlockCols` and the
        global shared indices.
    index : ndarray of int, shape (n_batch,)
        Positions of the batch's datasets in the full problem.
    theta0 : ndarray, shape (n_free,)
        Starting point (the other batches' local entries are never read here).
    scale0 : ndarray, shape (n_free,), optional
        Marquardt scaling of a resumed iteration (None: start it from ``diag(J^T J)``).
    """

    problem: Problem
    index: np.ndarray
    theta0: np.ndarray
    scale0: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class BatchState:
    """A batch at one point of the iteration (resident on its worker).

    Attributes
    ----------
    shard : BatchShard
    theta : ndarray, shape (n_free,)
        Current point; the shared entries and this batch's local entries are meaningful.
    system : NormalSystem
        Normal-matrix blocks of this batch at ``theta``.
    chi2 : float
        ``sum r^2`` of this batch at ``theta``.
    scale : ndarray, shape (n_free,)
        Running maximum of ``diag(J^T J)`` (this batch's local entries are meaningful).
    """

    shard: BatchShard
    theta: np.ndarray
    system: NormalSystem
    chi2: float
    scale: np.ndarray


@dataclass(frozen=True)
class Reduced:
    """One batch's (or a sum of batches') share of a damped shared system.

    Attributes
    ----------
    s : ndarray, shape (n_s, n_s)
        ``H_SS - sum_k B_k (C_k + mu D_k)^-1 B_k^T`` over the batch's datasets.
    rhs : ndarray, shape (n_s,)
        ``-g_S + sum_k B_k (C_k + mu D_k)^-1 g_k``.
    chi2 : float
        ``sum r^2`` at the current point.
    hss_diag, gs : ndarray, shape (n_s,)
        ``diag(H_SS)`` and ``g_S = J_S^T r`` (scaling and gradient test of the shared part).
    gmax : float
        ``max |g_l| / sqrt(D_l cost)`` over the local parameters (the gradient test).
    failed : bool
        A damped local block was not positive definite (the client increases ``mu``).
    """

    s: np.ndarray
    rhs: np.ndarray
    chi2: float
    hss_diag: np.ndarray
    gs: np.ndarray
    gmax: float
    failed: bool


@dataclass(frozen=True)
class TrialSums:
    """Sums over batches at a trial point: chi-square, ``|D^1/2 dl|^2``, ``|D^1/2 theta_l|^2``
    (``D`` the Marquardt scaling) and
    ``dl . (mu D_l dl - g_l)`` (the local share of the predicted reduction)."""

    chi2: float
    step2: float
    theta2: float
    pred: float


@dataclass(frozen=True, eq=False)
class TrialState:
    """A batch at a proposed point (resident on its worker until accepted or dropped).

    ``theta`` is the trial point, ``resids`` its residual blocks (kept to assemble the normal
    blocks if the step is accepted), ``scale`` the proposing state's running maximum of
    ``diag(J^T J)`` and ``sums`` what the client needs to judge the step.
    """

    shard: BatchShard
    theta: np.ndarray
    resids: tuple[np.ndarray, ...]
    scale: np.ndarray
    sums: TrialSums


def _add_reduced(a: Reduced, b: Reduced) -> Reduced:
    return Reduced(a.s + b.s, a.rhs + b.rhs, a.chi2 + b.chi2, a.hss_diag + b.hss_diag,
                   a.gs + b.gs, max(a.gmax, b.gmax), a.failed or b.failed)


def _add_trial(a: TrialSums, b: TrialSums) -> TrialSums:
    return TrialSums(a.chi2 + b.chi2, a.step2 + b.step2, a.theta2 + b.theta2, a.pred + b.pred)


def _local_idx(part: Partition) -> np.ndarray:
    if not part.blocks:
        return np.zeros(0, dtype=np.intp)
    return np.concatenate([blk.l_idx for blk in part.blocks]).astype(np.intp)


# ---------------------------------------------------------------------- tasks (on the workers)
def _start(shard: BatchShard) -> BatchState:
    """Residuals, Jacobian and normal blocks at the starting point."""
    prob = shard.problem
    theta = shard.theta0.copy()
    resids = prob.residuals(theta)
    system = assemble(prob.partition, prob.jacobians(theta), resids)
    scale = np.maximum(system.diagonal(prob.partition),
                       0.0 if shard.scale0 is None else shard.scale0)
    return BatchState(shard, theta, system, sum_squares(resids), scale)


def _start_sums(state: BatchState) -> tuple[float, np.ndarray, float]:
    """``(chi2_b, diag(H_SS)_b, largest local diagonal entry of J^T J)`` at the start."""
    idx = _local_idx(state.shard.problem.partition)
    return (state.chi2, np.diag(state.system.hss).copy(),
            float(state.scale[idx].max(initial=0.0)))


def _add_start(a: tuple[float, np.ndarray, float], b: tuple[float, np.ndarray, float]
               ) -> tuple[float, np.ndarray, float]:
    return a[0] + b[0], a[1] + b[1], max(a[2], b[2])


def _eliminate(state: BatchState, mu: float, floor: float
               ) -> tuple[np.ndarray, np.ndarray, list[Any], np.ndarray]:
    """``(S_b, s_b, eliminated blocks, floored scaling)`` of the batch at damping ``mu``."""
    system = state.system
    scale = np.maximum(state.scale, floor)
    s, rhs = system.hss.copy(), -system.gs.copy()
    eliminated = eliminate_locals(state.shard.problem.partition, system, mu, scale, s, rhs)
    return s, rhs, eliminated, scale


def _local_gradient(system: NormalSystem) -> np.ndarray:
    return np.concatenate(system.gl) if system.gl else np.zeros(0)


def _reduce(state: BatchState, mu: float, floor: float, cost: float) -> Reduced:
    """Eliminate the batch's damped local blocks: its share of the shared system."""
    system = state.system
    part = state.shard.problem.partition
    gmax = scaled_gradient_max(_local_gradient(system), system.diagonal(part)[_local_idx(part)],
                               cost)
    ns = system.gs.size
    try:
        s, rhs, _, _ = _eliminate(state, mu, floor)
        failed = False
    except np.linalg.LinAlgError:
        s, rhs, failed = np.zeros((ns, ns)), np.zeros(ns), True
    return Reduced(s, rhs, state.chi2, np.diag(system.hss).copy(), system.gs.copy(), gmax,
                   failed)


def _trial(state: BatchState, ds: np.ndarray, mu: float, floor: float) -> TrialState:
    """Back-substitute the local steps for the shared step ``ds``; residuals there."""
    prob = state.shard.problem
    part = prob.partition
    _, _, eliminated, scale = _eliminate(state, mu, floor)
    delta = np.zeros(part.n_free)
    delta[part.shared] = ds
    back_substitute(part, state.system, eliminated, ds, delta)
    trial = state.theta + delta
    resids = tuple(prob.residuals(trial))
    idx = _local_idx(part)
    dl, th = delta[idx], state.theta[idx]
    pred = float(dl @ (mu * scale[idx] * dl - _local_gradient(state.system)))
    sl = scale[idx]
    sums = TrialSums(sum_squares(resids), float(dl @ (sl * dl)), float(th @ (sl * th)), pred)
    return TrialState(state.shard, trial, resids, state.scale, sums)


def _trial_sums(trial: TrialState) -> TrialSums:
    return trial.sums


def _accept(trial: TrialState) -> BatchState:
    """Jacobian and normal blocks at an accepted trial point."""
    prob = trial.shard.problem
    system = assemble(prob.partition, prob.jacobians(trial.theta), trial.resids)
    scale = np.maximum(trial.scale, system.diagonal(prob.partition))
    return BatchState(trial.shard, trial.theta, system, trial.sums.chi2, scale)


def _snapshot(state: BatchState, floor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(theta indices, values, floored scaling)`` of the batch's local parameters."""
    idx = _local_idx(state.shard.problem.partition)
    return idx, state.theta[idx], np.maximum(state.scale[idx], floor)


def _final(state: BatchState) -> tuple[np.ndarray, np.ndarray, NormalSystem,
                                       list[np.ndarray]]:
    """What the result needs, once: local values, normal blocks and model curves."""
    prob = state.shard.problem
    idx = _local_idx(prob.partition)
    return state.shard.index, state.theta[idx], state.system, prob.y_calcs(state.theta)
# ---------------------------------------------------------------------- client side
def default_n_batches(executor: Any, n_datasets: int) -> int:
    """One batch per Dask worker (each batch re-evaluates the layout map), else one."""
    client = getattr(executor, "client", None)
    n = 1
    if client is not None:
        n = max(1, len(client.scheduler_info().get("workers", {})))
    return max(1, min(n, n_datasets))


def _check_n_batches(n_data: int, n_batches: Any) -> None:
    if not isinstance(n_batches, int | np.integer) or not 1 <= n_batches <= n_data:
        raise ValueError(f"n_batches must be an integer between 1 and the number of datasets "
                         f"({n_data}), got {n_batches!r}")


def make_batches(problem: Problem, n_batches: int, theta0: np.ndarray | None = None,
                 scale0: np.ndarray | None = None) -> list[BatchShard]:
    """Split the datasets of ``problem`` into ``n_batches`` contiguous, near-equal batches.

    ``theta0`` (default the layout's) and ``scale0`` (a resumed Marquardt scaling) have shape
    (n_free,).
    """
    n_data = len(problem.blocks)
    _check_n_batches(n_data, n_batches)
    part = problem.partition
    shards = []
    for idx in np.array_split(np.arange(n_data), int(n_batches)):
        sub = Partition(part.n_free, part.shared, tuple(part.blocks[i] for i in idx))
        prob = dataclasses.replace(
            problem, blocks=tuple(problem.blocks[i] for i in idx),
            restraint_deps=np.zeros(0, dtype=np.intp), restraint_elem=np.zeros(0, dtype=np.intp),
            restraint_names=(), restraint_jac=np.zeros((0, 0)), partition=sub)
        theta = problem.layout.theta0 if theta0 is None else theta0
        shards.append(BatchShard(prob, idx.astype(np.intp), np.array(theta, dtype=float),
                                 None if scale0 is None else np.array(scale0, dtype=float)))
    return shards


@dataclass(frozen=True)
class _Restraints:
    """The restraint block, evaluated here (it involves shared parameters only)."""

    problem: Problem  # no model block: residuals/jacobians give the restraint rows only
    part: Partition   # the restraint block's columns

    @classmethod
    def of(cls, problem: Problem) -> _Restraints | None:
        if not problem.n_restraint_rows:
            return None
        part = problem.partition
        return cls(dataclasses.replace(problem, blocks=()),
                   Partition(part.n_free, part.shared, (part.blocks[-1],)))

    def at(self, theta: np.ndarray, jacobian: bool
           ) -> tuple[np.ndarray, NormalSystem | None]:
        r = self.problem.residuals(theta)
        if not jacobian:
            return r[0], None
        return r[0], assemble(self.part, self.problem.jacobians(theta), r)


def _zero_system(ns: int) -> NormalSystem:
    return NormalSystem(np.zeros((ns, ns)), np.zeros(ns), (), (), ())


@dataclass(frozen=True)
class _Shared:
    """The client's side of the current point: shared values, restraints, scaling, cost."""

    theta_s: np.ndarray
    r_res: np.ndarray
    r_sys: NormalSystem
    cost: float
    states: list[Any]


class ExecutorBatches:
    """:class:`~tiedsci.refine.lm.NormalProvider` over batches of datasets on executor workers.

    Parameters
    ----------
    problem : Problem
        The compiled refinement (datasets, then restraints).
    executor : StatefulExecutor
        :class:`tiedsci.parallel.SerialExecutor` or :class:`tiedsci.parallel.DaskExecutor`.
    n_batches : int, optional
        Number of batches of datasets (default :func:`default_n_batches`). The result does not
        depend on it beyond summation round-off; for a fixed value a serial and a Dask run give
        the same numbers.

    Notes
    -----
    Per iteration: :meth:`gradient_max` is round 1 of the module docstring (the batches'
    reduced systems at damping ``mu``), :meth:`propose` solves the shared system here and runs
    round 2 (back substitution and trial residuals on the workers), :meth:`accept` round 3.
    :meth:`state` (checkpoints only) brings the local parameters back.
    """

    def __init__(self, problem: Problem, executor: StatefulExecutor,
                 n_batches: int | None = None) -> None:
        if not isinstance(executor, StatefulExecutor):
            raise TypeError("a distributed refinement needs an executor with map_persist (keeps "
                            f"each batch's local state on its worker), got {executor!r}")
        self.problem, self.executor = problem, executor
        self.part = problem.partition
        self.n_batches = default_n_batches(executor, len(problem.blocks)) \
            if n_batches is None else n_batches
        _check_n_batches(len(problem.blocks), self.n_batches)
        self._restraints = _Restraints.of(problem)
        self._theta_full = problem.layout.theta0.copy()  # only its shared entries are used
        self._cur: _Shared | None = None
        self.floor = 0.0
        self.scale_s = np.zeros(self.part.shared.size)
        self._red: Reduced | None = None
        self._red_mu = float("nan")
        self._gs = np.zeros(self.part.shared.size)
        self._proposal: tuple[np.ndarray, float, list[Any], TrialSums] | None = None

    def _restraint_terms(self, theta_s: np.ndarray, jacobian: bool
                         ) -> tuple[np.ndarray, NormalSystem | None]:
        if self._restraints is None:
            ns = self.part.shared.size
            return np.zeros(0), (_zero_system(ns) if jacobian else None)
        self._theta_full[self.part.shared] = theta_s
        return self._restraints.at(self._theta_full, jacobian)

    def _shared_point(self, theta_s: np.ndarray, states: list[Any], chi2: float) -> _Shared:
        r_res, r_sys = self._restraint_terms(theta_s, True)
        assert r_sys is not None
        return _Shared(theta_s, r_res, r_sys, 0.5 * (chi2 + float(r_res @ r_res)), states)

    def start(self, theta: np.ndarray, scale: np.ndarray | None) -> float:
        ex = self.executor
        handles = ex.put(make_batches(self.problem, self.n_batches, theta, scale))
        states = ex.map_persist(_start, handles)
        chi2, hss_diag, local_max = ex.map_reduce(_start_sums, states, combine=_add_start)
        cur = self._shared_point(theta[self.part.shared].copy(), states, chi2)
        diag_s = hss_diag + np.diag(cur.r_sys.hss)
        if scale is None:
            scale_s = np.maximum(diag_s, 0.0)
            self.floor = scale_floor(max(scale_s.max(initial=0.0), local_max))
            self.scale_s = np.maximum(scale_s, self.floor)
        else:  # the resumed scaling holds the floor already
            self.floor, self.scale_s = 0.0, np.maximum(scale[self.part.shared], diag_s)
        self._cur = cur
        return cur.cost

    def gradient_max(self, mu: float, cost: float) -> float:
        red = self._reduce(mu, cost)
        diag_s = red.hss_diag + np.diag(self._current().r_sys.hss)
        return max(red.gmax, scaled_gradient_max(self._gs, diag_s, cost))

    def _reduce(self, mu: float, cost: float) -> Reduced:
        """The batches' share of the shared system at damping ``mu`` (kept for propose)."""
        cur = self._current()
        red = self.executor.map_reduce(_reduce, cur.states, mu, self.floor, cost,
                                       combine=_add_reduced)
        self.scale_s = np.maximum(self.scale_s, red.hss_diag + np.diag(cur.r_sys.hss))
        self._red, self._red_mu, self._gs = red, mu, red.gs + cur.r_sys.gs
        return red

    def propose(self, mu: float) -> tuple[float, float]:
        cur = self._current()
        if self._red is None or mu != self._red_mu:  # another damping: eliminate again
            self._reduce(mu, cur.cost)
        red = self._red
        assert red is not None
        if red.failed:
            raise np.linalg.LinAlgError("a damped local block is not positive definite")
        ds = chol_solve(red.s + cur.r_sys.hss + np.diag(mu * self.scale_s),
                        red.rhs - cur.r_sys.gs)
        trials = self.executor.map_persist(_trial, cur.states, ds, mu, self.floor)
        sums = self.executor.map_reduce(_trial_sums, trials, combine=_add_trial)
        self._proposal = (ds, mu, trials, sums)
        th = cur.theta_s
        sc = self.scale_s
        return (float(np.sqrt(ds @ (sc * ds) + sums.step2)),
                float(np.sqrt(th @ (sc * th) + sums.theta2)))

    def evaluate(self) -> tuple[float, float]:
        assert self._proposal is not None
        ds, mu, _, sums = self._proposal
        new_r, _ = self._restraint_terms(self._current().theta_s + ds, False)
        pred = 0.5 * (float(ds @ (mu * self.scale_s * ds - self._gs)) + sums.pred)
        return 0.5 * (sums.chi2 + float(new_r @ new_r)), pred

    def accept(self, cost: float) -> None:
        assert self._proposal is not None
        ds, _, trials, sums = self._proposal
        states = self.executor.map_persist(_accept, trials)
        self._cur = self._shared_point(self._current().theta_s + ds, states, sums.chi2)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        cur = self._current()
        theta = self.problem.layout.theta0.copy()
        scale = np.zeros(self.part.n_free)
        theta[self.part.shared], scale[self.part.shared] = cur.theta_s, self.scale_s
        for idx, theta_l, scale_l in self.executor.map(_snapshot, cur.states, self.floor):
            theta[idx], scale[idx] = theta_l, scale_l
        return theta, scale

    def outcome(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], NormalSystem, float,
                               tuple[np.ndarray, ...]]:
        cur = self._current()
        return _gather(self.problem, self.executor, cur)

    def _current(self) -> _Shared:
        if self._cur is None:
            raise RuntimeError("ExecutorBatches.start() has not been called")
        return self._cur


def _gather(problem: Problem, executor: StatefulExecutor, cur: _Shared
            ) -> tuple[np.ndarray, tuple[np.ndarray, ...], NormalSystem, float,
                       tuple[np.ndarray, ...]]:
    """Bring every batch's final pieces back once and rebuild the serial provider's outcome."""
    part = problem.partition
    n_data = len(problem.blocks)
    theta = problem.layout.theta0.copy()
    theta[part.shared] = cur.theta_s
    hss, gs = cur.r_sys.hss.copy(), cur.r_sys.gs.copy()
    c: list[Any] = [None] * n_data
    b: list[Any] = [None] * n_data
    gl: list[Any] = [None] * n_data
    y_calcs: list[Any] = [None] * n_data
    for index, theta_l, system, ycs in executor.map(_final, cur.states):
        sub = Partition(part.n_free, part.shared, tuple(part.blocks[i] for i in index))
        theta[_local_idx(sub)] = theta_l
        hss += system.hss
        gs += system.gs
        for j, i in enumerate(index):
            c[i], b[i], gl[i], y_calcs[i] = system.c[j], system.b[j], system.gl[j], ycs[j]
    resids = [blk.sqrt_w * (yc - blk.y) for blk, yc in zip(problem.blocks, y_calcs)]
    if problem.n_restraint_rows:
        resids.append(cur.r_res)
        c += list(cur.r_sys.c)
        b += list(cur.r_sys.b)
        gl += list(cur.r_sys.gl)
    system_all = NormalSystem(hss, gs, tuple(c), tuple(b), tuple(gl))
    return theta, tuple(resids), system_all, cur.cost, tuple(y_calcs)
