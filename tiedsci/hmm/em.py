"""Baum-Welch: E-step, pooled M-step and the EM loop, as pure functions.

The M-step pools every sufficient statistic through the registry's compiled layout
(:meth:`Layout.pool_stats`: a tie sums the statistics of its members) and then solves each
element's M-step on its pooled statistics, so tied elements receive one shared estimate — exact
EM, the log-likelihood never decreases. Fixed elements and elements whose pooled posterior mass is
zero keep their values.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiedsci.core import Layout
from tiedsci.errors import DegenerateDataWarning
from tiedsci.hmm.emissions import simplex_mstep
from tiedsci.hmm.engines import Engine
from tiedsci.hmm.gaussian_core import MIN_POST
from tiedsci.hmm.inference import PackedIndex, forward_backward

__all__ = ["Problem", "ResidentShards", "ConvergenceMonitor", "frozen_masks", "pool_and_keep",
           "e_step", "m_step", "baum_welch"]


@dataclass(frozen=True, eq=False)
class Problem:
    """Data of one fit, already packed and placed on the engine."""

    emission: Any
    frames: dict[str, Any]
    idx: PackedIndex
    eng: Engine


@dataclass
class ConvergenceMonitor:
    """hmmlearn-compatible record of an EM run.

    Attributes
    ----------
    tol : float
    n_iter : int
    history : list of float
        Log-likelihood (of the parameters entering each iteration), one entry per iteration.
    iter : int
        Number of iterations run.
    converged : bool
    """

    tol: float
    n_iter: int
    history: list[float] = field(default_factory=list)
    iter: int = 0
    converged: bool = False


def frozen_masks(layout: Layout) -> dict[str, np.ndarray]:
    """Per parameter, a boolean array marking elements the M-step must not change (fixed)."""
    return {name: layout.fixed_mask(name) for name in layout.names}


def e_step(values: dict[str, np.ndarray], problem: Problem) -> tuple[dict[str, Any], float]:
    """Posterior statistics of all sequences under ``values``.

    Returns
    -------
    stats : dict
        ``"start"`` (K,), ``"trans"`` (K, K) and the emission's statistics (numpy).
    log_likelihood : float
        Total log-likelihood of the data under ``values``.
    """
    eng = problem.eng
    log_frame = problem.emission.log_prob(values, problem.frames, eng)
    post = forward_backward(values["startprob"], values["transmat"], log_frame, problem.idx, eng)
    stats = problem.emission.accumulate(values, problem.frames, post.gamma, eng)
    stats["start"] = np.asarray(eng.to_numpy(post.start), dtype=float)
    stats["trans"] = np.asarray(eng.to_numpy(post.trans), dtype=float)
    return stats, float(post.log_likelihood.sum())


def pool_and_keep(layout: Layout, frozen: dict[str, np.ndarray]
                  ) -> tuple[Callable[..., np.ndarray], Callable[..., np.ndarray]]:
    """The two callables handed to the emission M-steps.

    ``pool(name, stats, unit_axes=0)`` sums statistics over tie groups (registry
    ``pool_stats``; ``unit_axes=1`` for one statistic per vector of the last axis);
    ``keep(name, new, old, valid)`` keeps old values where elements are fixed, have no posterior
    mass (``valid`` False) or came out non-finite.
    """

    def pool(name: str, st: np.ndarray, unit_axes: int = 0) -> np.ndarray:
        return np.asarray(layout.pool_stats({name: st}, unit_axes=unit_axes)[name])

    def keep(name: str, new: np.ndarray, old: np.ndarray, valid: np.ndarray) -> np.ndarray:
        ok = valid & np.isfinite(new) & ~frozen[name]
        return np.where(ok, new, old)

    return pool, keep


def m_step(values: dict[str, np.ndarray], stats: dict[str, Any], emission: Any,
           layout: Layout, frozen: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """New parameter values from pooled statistics (see the module docstring)."""
    pool, keep = pool_and_keep(layout, frozen)
    out = dict(values)
    out["startprob"] = simplex_mstep("startprob", stats["start"], values["startprob"], pool,
                                     frozen["startprob"])
    out["transmat"] = simplex_mstep("transmat", stats["trans"], values["transmat"], pool,
                                    frozen["transmat"])
    out.update(emission.m_step(values, stats, pool, keep, frozen))
    return out


def _shard_e_step(problem: Problem, values: dict[str, np.ndarray]
                  ) -> tuple[dict[str, Any], float]:
    """E-step of one shard of sequences (a map task of a distributed fit)."""
    return e_step(values, problem)


def _add_e_results(a: tuple[dict[str, Any], float], b: tuple[dict[str, Any], float]
                   ) -> tuple[dict[str, Any], float]:
    """Sum two shards' statistics and log-likelihoods (the reduce of a distributed E-step)."""
    return {k: a[0][k] + b[0][k] for k in a[0]}, a[1] + b[1]


@dataclass(frozen=True)
class ResidentShards:
    """Shards of sequences already prepared where an executor runs them.

    Attributes
    ----------
    handles : list
        Executor handles (Dask futures) of :class:`Problem` shards, built on the workers from
        the raw data so that only the data, not the prepared problems, cross the network.
    emission : emission family
        The shards' emission (its M-step runs on the client).
    """

    handles: list[Any]
    emission: Any


def baum_welch(values: dict[str, np.ndarray],
               problem: Problem | Sequence[Problem] | ResidentShards,
               layout: Layout, n_iter: int, tol: float,
               callback: Callable[[int, float], None] | None = None,
               executor: Any = None) -> tuple[dict[str, np.ndarray], ConvergenceMonitor]:
    """Run EM from ``values`` until the log-likelihood gain is below ``tol`` or ``n_iter``.

    As in hmmlearn, the history records the log-likelihood of the parameters entering each
    iteration and every iteration ends with an M-step.

    ``problem`` may be a list of shards (each a :class:`Problem` over some of the sequences) run
    through ``executor`` (:mod:`tiedsci.parallel`): the E-step is a map over shards whose
    statistics are summed — a tie sums, so per-state statistics of any number of sequences stay
    one small message — and the M-step runs here.
    """
    frozen = frozen_masks(layout)
    monitor = ConvergenceMonitor(tol=tol, n_iter=n_iter)
    handles = None
    if isinstance(problem, ResidentShards):
        if executor is None:
            raise ValueError("resident shards need the executor that holds them")
        handles, emission = list(problem.handles), problem.emission
    elif executor is not None:
        shards = [problem] if isinstance(problem, Problem) else list(problem)
        handles = executor.put(shards)
        emission = shards[0].emission
    else:
        emission = problem.emission  # type: ignore[union-attr]
    for it in range(n_iter):
        if handles is None:
            stats, ll = e_step(values, problem)  # type: ignore[arg-type]
        else:
            stats, ll = executor.map_reduce(_shard_e_step, handles, values,
                                            combine=_add_e_results)
        values = m_step(values, stats, emission, layout, frozen)
        monitor.history.append(ll)
        monitor.iter = it + 1
        if callback is not None:
            callback(it, ll)
        if len(monitor.history) >= 2 and monitor.history[-1] - monitor.history[-2] < tol:
            monitor.converged = True
            break
    else:
        monitor.converged = n_iter > 0 and monitor.iter == n_iter
    if monitor.iter:
        _warn_empty_states(stats)
    return values, monitor


def _warn_empty_states(stats: dict[str, Any]) -> None:
    """Warn about states that the last E-step gave no posterior mass (their parameters were
    kept, or came from the states they are tied to)."""
    occupancy = np.asarray(stats["start"]) + np.asarray(stats["trans"]).sum(0)
    empty = [int(k) for k in np.flatnonzero(occupancy <= MIN_POST)]
    if empty:
        warnings.warn(f"states {empty} received no posterior mass in the last EM iteration: "
                      "their emission parameters keep their previous values unless tied to "
                      "states with data (too many states, or unreachable states)",
                      DegenerateDataWarning, stacklevel=3)
