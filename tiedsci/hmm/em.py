"""Baum-Welch: E-step, pooled M-step and the one EM loop (:func:`baum_welch`).

The M-step pools every sufficient statistic through the registry's compiled layout
(:meth:`Layout.pool_stats`: a tie sums the statistics of its members) and then solves each
element's M-step on its pooled statistics, so tied elements receive one shared estimate — exact
EM, the log-likelihood never decreases. Fixed elements and elements whose pooled posterior mass is
zero keep their values.

One loop serves every caller: a single fit (``TiedHMM.fit``), a fit of several models sharing
states (:func:`tiedsci.hmm.fit_shared`: the registry stacks the models' states, see
:class:`ModelBlocks`), a distributed fit (the E-step a map over shards of sequences) and the run
files (checkpoints written from ``on_iteration``, resume through ``start=``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tiedsci.core import Layout
from tiedsci.core.softtie import (
    learn_spread,
    learn_spread_cov,
    partial_pool,
    partial_pool_cov,
    partial_pool_poisson,
)
from tiedsci.errors import DeclarationError, DegenerateDataWarning
from tiedsci.hmm.emissions import simplex_mstep
from tiedsci.hmm.engines import Engine
from tiedsci.hmm.gaussian_core import MIN_POST
from tiedsci.hmm.inference import PackedIndex, forward_backward

__all__ = ["Problem", "ResidentShards", "ConvergenceMonitor", "EMState", "ModelBlocks",
           "SoftTieFit", "frozen_masks", "Pooling", "pool_and_keep", "e_step", "m_step",
           "baum_welch"]


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
        The gain fell below ``tol`` or ``n_iter`` iterations ran (hmmlearn's meaning).
    interrupted : bool
        EM was stopped by Ctrl-C (KeyboardInterrupt); the values are those of the last
        completed iteration.
    verbose : bool
        hmmlearn's field (the estimator's ``verbose`` prints the iterations).
    """

    tol: float
    n_iter: int
    history: list[float] = field(default_factory=list)
    iter: int = 0
    converged: bool = False
    interrupted: bool = False
    verbose: bool = False

    def gain_below_tol(self) -> bool:
        """True when the last log-likelihood gain is below ``tol`` (the stopping rule)."""
        h = self.history
        return len(h) >= 2 and h[-1] - h[-2] < self.tol


@dataclass(frozen=True)
class SoftTieFit:
    """A soft tie as the last M-step left it (:meth:`Pooling.soft`).

    Attributes
    ----------
    centre : str
        Registry name of the centre parameter.
    members : tuple of str
        Labels of the members (e.g. ``"means[0]"``).
    value : ndarray, shape of one member
        The centre ``c`` (precision-weighted mean of the members' own estimates).
    spread : float
        Standard deviation ``tau`` of the members around the centre (given or learned), in the
        members' units; ``0`` is a hard tie, ``inf`` untied.
    learned : bool
        Whether ``spread`` was learned (type-II maximum likelihood on the M-step's statistics).
    shrinkage : ndarray, shape (m,) + member shape, or (m, D, D) for full covariances
        ``B_k``: the share of member ``k``'s own estimate replaced by the centre (0 untied,
        1 hard tie).
    """

    centre: str
    members: tuple[str, ...]
    value: np.ndarray
    spread: float
    learned: bool
    shrinkage: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (``spread`` inf as the string ``"inf"``)."""
        return {"centre": self.centre, "members": list(self.members),
                "value": np.asarray(self.value).tolist(),
                "spread": "inf" if np.isinf(self.spread) else float(self.spread),
                "learned": bool(self.learned),
                "shrinkage": np.asarray(self.shrinkage).tolist()}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> SoftTieFit:
        """Inverse of :meth:`to_dict`."""
        return cls(str(doc["centre"]), tuple(doc["members"]), np.asarray(doc["value"], float),
                   float(doc["spread"]), bool(doc["learned"]),
                   np.asarray(doc["shrinkage"], float))


@dataclass(frozen=True)
class EMState:
    """A complete EM iterate: what :func:`baum_welch` starts from, reports and returns.

    Attributes
    ----------
    values : dict of str to ndarray
        Parameter values keyed by registry names, after the last M-step (or the start).
    monitor : ConvergenceMonitor
        History of the log-likelihoods so far; ``monitor.iter`` iterations are done.
    stats : tuple of dict, optional
        Per model, the sufficient statistics of the last E-step (None before the first).
    soft : tuple of SoftTieFit
        The soft ties after the last M-step (spread, centre, shrinkage); empty without soft
        ties or before the first M-step.
    """

    values: dict[str, np.ndarray]
    monitor: ConvergenceMonitor
    stats: tuple[dict[str, Any], ...] | None = None
    soft: tuple[SoftTieFit, ...] = ()


@dataclass(frozen=True)
class ModelBlocks:
    """How one registry holds one or several HMMs (the state offsets live here only).

    A single model declares ``startprob``, ``transmat`` and its emission parameters. Several
    models (a shared fit) declare ``m<i>.startprob`` and ``m<i>.transmat`` each and one emission
    block whose state axis stacks the states of every model: model ``i``'s states are rows
    ``offsets[i] : offsets[i] + sizes[i]``.

    Attributes
    ----------
    emission : emission family
        Shared by all models.
    sizes : tuple of int
        Number of states of each model.
    priors : dict
        Checked prior arrays (:mod:`tiedsci.hmm.priors`): ``startprob`` / ``transmat`` (under
        their registry names) hold Dirichlet concentrations; the emission's priors keep
        hmmlearn's names (``means_prior`` ...) with the stacked state axis first. Empty: the
        maximum-likelihood M-step.
    soft_positive : tuple of str
        Parameters whose learned soft-tie spreads are kept off 0 (``spread="positive"``:
        :func:`~tiedsci.core.softtie.learn_spread` with ``boundary_avoiding``).
    """

    emission: Any
    sizes: tuple[int, ...]
    priors: Mapping[str, np.ndarray] = field(default_factory=dict)
    soft_positive: tuple[str, ...] = ()

    @property
    def offsets(self) -> tuple[int, ...]:
        """First stacked state of each model."""
        return tuple(int(v) for v in np.cumsum((0,) + self.sizes[:-1]))

    @property
    def emission_names(self) -> tuple[str, ...]:
        return tuple(self.emission.letters.values())

    @property
    def emission_priors(self) -> dict[str, np.ndarray]:
        """The emission family's priors (hmmlearn names)."""
        bases = {self.name(i, b) for i in range(len(self.sizes))
                 for b in ("startprob", "transmat")}
        return {k: v for k, v in self.priors.items() if k not in bases}

    def name(self, i: int, base: str) -> str:
        """Registry name of model ``i``'s ``"startprob"`` or ``"transmat"``."""
        return base if len(self.sizes) == 1 else f"m{i}.{base}"

    def rows(self, i: int, states: Sequence[int]) -> list[int]:
        """Stacked emission rows of model ``i``'s local ``states``."""
        return [self.offsets[i] + int(s) for s in states]

    def view(self, values: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
        """Model ``i``'s values under the single-model names."""
        if len(self.sizes) == 1:
            return values
        lo, k = self.offsets[i], self.sizes[i]
        out = {b: values[self.name(i, b)] for b in ("startprob", "transmat")}
        out.update({n: values[n][lo:lo + k] for n in self.emission_names})
        return out

    def stack(self, per_model: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """Registry values from per-model values (the inverse of :meth:`view`)."""
        if len(per_model) == 1:
            return dict(per_model[0])
        out = {n: np.concatenate([v[n] for v in per_model], axis=0)
               for n in self.emission_names}
        for i, v in enumerate(per_model):
            out.update({self.name(i, b): v[b] for b in ("startprob", "transmat")})
        return out


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


class Pooling:
    """The ``pool`` callable handed to the emission M-steps (one per fit: caches group sizes).

    ``pool(name, stats, unit_axes=0)`` sums statistics over tie groups (registry
    ``pool_stats``; ``unit_axes=1`` for one statistic per vector of the last axis);
    ``pool.once(name, term)`` adds a prior term once per tie group (each member contributes
    ``term / group size``; see :mod:`tiedsci.hmm.priors`). A parameter without ties costs no
    pooling: ``Layout.pool_stats`` returns its statistics as they are. ``pool.soft(name, xbar,
    s2)`` applies the layout's soft ties (:mod:`tiedsci.core.softtie`) to the members' own
    M-step estimates: the families see soft ties only through it, as they see hard ties
    through ``pool``.
    """

    def __init__(self, layout: Layout, soft_positive: Sequence[str] = ()) -> None:
        self._layout = layout
        self._sizes: dict[tuple[str, int], np.ndarray] = {}
        self._soft: dict[str, SoftTieFit] = {}
        self._positive = frozenset(soft_positive)

    def has_soft(self, name: str) -> bool:
        """Whether any soft tie pulls elements of ``name``."""
        return any(m.name == name for t in self._layout.soft_ties for m in t.members)

    def soft(self, name: str, xbar: np.ndarray, s2: np.ndarray, unit_axes: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form MAP update of the soft-tied elements of ``name`` (partial pooling).

        The spread of a tie declared with ``spread=None`` is learned here, by type-II maximum
        likelihood on these statistics (never by the joint mode, which collapses to 0).

        Parameters
        ----------
        name : str
            The parameter (all members of each of its soft ties must belong to it).
        xbar : ndarray, shape of ``name``
            Each element's own (pooled over hard ties) M-step estimate.
        s2 : ndarray
            Sampling variance of each estimate, same shape, ``inf`` where an element has no
            data (``unit_axes=0``); or, with ``unit_axes=1``, sampling covariance matrices of
            the vectors along the last axis, shape ``xbar.shape + xbar.shape[-1:]`` (members
            must then be whole vectors).

        Returns
        -------
        values : ndarray, shape of ``xbar``
            ``xbar`` with the members replaced by their partially pooled estimates.
        touched : ndarray of bool, shape of ``xbar``
            The elements set here.
        """
        avoid = name in self._positive
        if unit_axes == 0:
            return self._apply(name, xbar,
                               lambda t, i: self._soft_elements(t, xbar, s2, i, avoid))
        return self._apply(name, xbar, lambda t, i: self._soft_vectors(t, xbar, s2, i, avoid))

    def soft_counts(self, name: str, counts: np.ndarray, exposure: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`soft` for Poisson rates: the exact MAP rates of each soft tie
        (:func:`~tiedsci.core.softtie.partial_pool_poisson`) from pooled expected counts and
        exposures (same shape as ``name``). A learned spread uses the normal approximation of
        each member's rate (``xbar = s / n``, ``s2 = xbar / n``) in the type-II search."""
        rates = np.asarray(counts, dtype=float) / np.maximum(exposure, MIN_POST)
        avoid = name in self._positive
        return self._apply(name, rates,
                           lambda t, i: self._soft_rates(t, counts, exposure, i, avoid))

    def _apply(self, name: str, current: np.ndarray, solve: Callable[[Any, np.ndarray], Any]
               ) -> tuple[np.ndarray, np.ndarray]:
        """Run ``solve(tie, member_element_indices)`` for every soft tie of ``name``; write the
        members' new values into a copy of ``current`` and record each tie's fit."""
        out = np.array(current, dtype=float, copy=True)
        touched = np.zeros(out.shape, dtype=bool)
        for tie in self._layout.soft_ties:
            names = {m.name for m in tie.members}
            if name not in names:
                continue
            if names != {name}:
                raise DeclarationError(f"a soft tie of the HMM must pull elements of one "
                                       f"parameter; {tie.describe()}")
            idx = np.stack([m.elements() for m in tie.members])
            fit = solve(tie, idx)
            out.reshape(-1)[idx] = fit[0]
            touched.reshape(-1)[idx] = True
            self._soft[tie.centre.name] = SoftTieFit(
                tie.centre.name, tuple(m.label for m in tie.members), fit[1], fit[2],
                tie.learned, fit[3])
        return out, touched

    @staticmethod
    def _soft_rates(tie: Any, counts: np.ndarray, exposure: np.ndarray, idx: np.ndarray,
                    avoid: bool) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        sk = np.asarray(counts, dtype=float).reshape(-1)[idx]
        nk = np.maximum(np.asarray(exposure, dtype=float).reshape(-1)[idx], MIN_POST)
        if tie.learned:
            xbar = sk / nk
            tau2 = learn_spread(xbar, np.maximum(xbar, 1e-12) / nk, boundary_avoiding=avoid)
        else:
            tau2 = float(tie.spread) ** 2
        pp = partial_pool_poisson(sk, nk, tau2)
        return pp.mean, pp.centre, float(np.sqrt(tau2)), pp.shrinkage

    @staticmethod
    def _soft_elements(tie: Any, xbar: np.ndarray, s2: np.ndarray, idx: np.ndarray,
                       avoid: bool) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        xs = np.asarray(xbar, dtype=float).reshape(-1)[idx]
        ss = np.broadcast_to(np.asarray(s2, dtype=float), np.shape(xbar)).reshape(-1)[idx]
        tau2 = (learn_spread(xs, ss, boundary_avoiding=avoid) if tie.learned
                else float(tie.spread) ** 2)
        pp = partial_pool(xs, ss, tau2)
        return pp.mean, pp.centre, float(np.sqrt(tau2)), pp.shrinkage

    @staticmethod
    def _soft_vectors(tie: Any, xbar: np.ndarray, cov: np.ndarray, idx: np.ndarray,
                      avoid: bool) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
        d = np.shape(xbar)[-1]
        rows = idx.reshape(len(idx), -1)
        if rows.shape[1] != d or np.any(rows != (rows[:, :1] // d) * d + np.arange(d)):
            raise DeclarationError(f"with full covariances a soft tie must pull whole mean "
                                   f"vectors; {tie.describe()}")
        xs = np.asarray(xbar, dtype=float).reshape(-1, d)[rows[:, 0] // d]
        cs = np.asarray(cov, dtype=float).reshape(-1, d, d)[rows[:, 0] // d]
        tau2 = (learn_spread_cov(xs, cs, boundary_avoiding=avoid) if tie.learned
                else float(tie.spread) ** 2)
        pp = partial_pool_cov(xs, cs, tau2)
        return pp.mean.reshape(idx.shape), pp.centre, float(np.sqrt(tau2)), pp.shrinkage

    def take_soft(self) -> tuple[SoftTieFit, ...]:
        """The soft ties' state after the last M-step (in declaration order), then cleared."""
        order = [t.centre.name for t in self._layout.soft_ties]
        out = tuple(self._soft[c] for c in order if c in self._soft)
        self._soft = {}
        return out

    def centres(self) -> dict[str, np.ndarray]:
        """Centre values set by the last M-step, by registry name."""
        return {c: np.asarray(f.value, dtype=float).reshape(self._layout.shapes[c])
                for c, f in self._soft.items()}

    def __call__(self, name: str, st: np.ndarray, unit_axes: int = 0) -> np.ndarray:
        return np.asarray(self._layout.pool_stats({name: st}, unit_axes=unit_axes)[name])

    def sizes(self, name: str, unit_axes: int = 0) -> np.ndarray:
        """Size of the tie group of every element (unit) of ``name``: shape ``lead + (1,)``."""
        key = (name, unit_axes)
        if key not in self._sizes:
            shape = self._layout.shapes[name]
            ones = np.ones(shape[:len(shape) - unit_axes] + (1,))
            self._sizes[key] = self(name, ones, unit_axes)
        return self._sizes[key]

    def once(self, name: str, term: Any, unit_axes: int = 0) -> np.ndarray:
        """A prior term pooled once per tie group of ``name``.

        Parameters
        ----------
        term : array, shape ``lead + stat_shape``
            Per element (unit) of ``name``; ``lead`` as in :meth:`Layout.pool_stats`.

        Returns
        -------
        ndarray, same shape
            Each element holds the mean of its group's terms (the sum of ``term / size``).
        """
        term = np.asarray(term, dtype=float)
        sizes = self.sizes(name, unit_axes)
        n_lead = sizes.ndim - 1
        sizes = sizes.reshape(sizes.shape[:n_lead] + (1,) * (term.ndim - n_lead))
        return self(name, term / sizes, unit_axes)


def pool_and_keep(layout: Layout, frozen: dict[str, np.ndarray],
                  soft_positive: Sequence[str] = ()
                  ) -> tuple[Pooling, Callable[..., np.ndarray]]:
    """The two callables handed to the emission M-steps.

    ``pool`` is a :class:`Pooling`; ``keep(name, new, old, valid)`` keeps old values where
    elements are fixed, have no posterior mass (``valid`` False) or came out non-finite.
    """

    def keep(name: str, new: np.ndarray, old: np.ndarray, valid: np.ndarray) -> np.ndarray:
        ok = valid & np.isfinite(new) & ~frozen[name]
        return np.where(ok, new, old)

    return Pooling(layout, soft_positive), keep


def m_step(values: dict[str, np.ndarray], stats: Sequence[dict[str, Any]], blocks: ModelBlocks,
           layout: Layout, frozen: dict[str, np.ndarray],
           pooling: tuple[Pooling, Callable[..., np.ndarray]] | None = None
           ) -> dict[str, np.ndarray]:
    """New parameter values from pooled statistics and the priors of ``blocks`` (MAP).

    Parameters
    ----------
    values : dict
        Current values, registry names.
    stats : sequence of dict
        One E-step result per model of ``blocks`` (see :func:`e_step`).
    pooling : (pool, keep), optional
        From :func:`pool_and_keep` (the EM loop builds it once per fit).
    """
    pool, keep = pooling if pooling is not None else pool_and_keep(layout, frozen,
                                                                   blocks.soft_positive)
    out = dict(values)
    for i, st in enumerate(stats):
        for base, key in (("startprob", "start"), ("transmat", "trans")):
            name = blocks.name(i, base)
            out[name] = simplex_mstep(name, st[key], values[name], pool, frozen[name],
                                      blocks.priors.get(name))
    names = blocks.emission_names
    emission_stats = stats[0] if len(stats) == 1 else {
        key: np.concatenate([st[key] for st in stats], axis=0)
        for key in stats[0] if key not in ("start", "trans")}
    out.update(blocks.emission.m_step({n: values[n] for n in names}, emission_stats, pool, keep,
                                      frozen, blocks.emission_priors))
    out.update(pool.centres())
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


EStep = Callable[[dict[str, np.ndarray]], tuple[dict[str, Any], float]]
OnIteration = Callable[[EMState], Any]


def _e_step_of(problem: Problem | Sequence[Problem] | ResidentShards, executor: Any) -> EStep:
    """The E-step of one model: local, or a map over shards through ``executor``."""
    if isinstance(problem, Problem) and executor is None:
        return lambda values: e_step(values, problem)
    if executor is None:
        raise ValueError("shards of sequences need an executor (tiedsci.parallel)")
    if isinstance(problem, ResidentShards):
        handles = list(problem.handles)
    else:
        handles = executor.put([problem] if isinstance(problem, Problem) else list(problem))
    return lambda values: executor.map_reduce(_shard_e_step, handles, values,
                                              combine=_add_e_results)


def _start_state(start: Mapping[str, np.ndarray] | EMState, n_iter: int, tol: float) -> EMState:
    if isinstance(start, EMState):
        mon = replace(start.monitor, tol=tol, n_iter=n_iter, history=list(start.monitor.history),
                      converged=False, interrupted=False)
        return replace(start, values=dict(start.values), monitor=mon)
    return EMState(dict(start), ConvergenceMonitor(tol=tol, n_iter=n_iter))


def _advance(state: EMState, values: dict[str, np.ndarray], ll: float,
             stats: tuple[dict[str, Any], ...], soft: tuple[SoftTieFit, ...] = ()) -> EMState:
    """The next complete iterate (built whole, so an interrupt never leaves half of one)."""
    mon = replace(state.monitor, history=[*state.monitor.history, ll],
                  iter=state.monitor.iter + 1)
    return EMState(values, mon, stats, soft)


def baum_welch(start: Mapping[str, np.ndarray] | EMState,
               problems: Sequence[Problem | Sequence[Problem] | ResidentShards],
               layout: Layout, blocks: ModelBlocks, n_iter: int, tol: float, *,
               on_iteration: OnIteration | None = None, executor: Any = None) -> EMState:
    """Run EM from ``start`` until the log-likelihood gain is below ``tol`` or ``n_iter``.

    As in hmmlearn, the history records the log-likelihood of the parameters entering each
    iteration and every iteration ends with an M-step.

    Parameters
    ----------
    start : dict or EMState
        Starting values (registry names), or a state to continue: its monitor's history counts
        towards ``n_iter`` and the stopping rule, so a run resumed from the state of iteration
        ``j`` repeats, bit for bit, iterations ``j+1, ...`` of the uninterrupted run.
    problems : sequence
        One entry per model of ``blocks``: a :class:`Problem`, or shards of it (a list of
        :class:`Problem` over some of the sequences, or :class:`ResidentShards`) run through
        ``executor`` (:mod:`tiedsci.parallel`): the E-step is a map over shards whose
        statistics are summed — a tie sums, so per-state statistics of any number of sequences
        stay one small message — and the M-step runs here.
    layout : Layout
        The compiled registry of all models (``blocks`` says how it holds them).
    blocks : ModelBlocks
    n_iter : int
        Total number of iterations, counting those of a continued ``start``.
    tol : float
    on_iteration : callable, optional
        ``on_iteration(state)`` after every iteration with the new :class:`EMState`; returning
        ``True`` (exactly; other return values are ignored) stops EM there (not converged, not
        interrupted).
    executor : optional
        Executor holding or running the shards.

    Returns
    -------
    EMState
        The last complete iterate. On KeyboardInterrupt (Ctrl-C, also raised from
        ``on_iteration``) EM stops and returns the last complete iterate with
        ``monitor.interrupted`` True: EM never lowers the likelihood, so it is the best so far.
    """
    state = _start_state(start, n_iter, tol)
    frozen = frozen_masks(layout)
    pooling = pool_and_keep(layout, frozen, blocks.soft_positive)
    steps = [_e_step_of(p, executor) for p in problems]
    try:
        while state.monitor.iter < n_iter and not state.monitor.gain_below_tol():
            results = [step(blocks.view(state.values, i)) for i, step in enumerate(steps)]
            stats = tuple(r[0] for r in results)
            values = m_step(state.values, stats, blocks, layout, frozen, pooling)
            state = _advance(state, values, float(sum(r[1] for r in results)), stats,
                             pooling[0].take_soft())
            if on_iteration is not None and on_iteration(state) is True:
                break
    except KeyboardInterrupt:
        state.monitor.interrupted = True
    mon = state.monitor
    mon.converged = not mon.interrupted and (mon.gain_below_tol()
                                             or (n_iter > 0 and mon.iter >= n_iter))
    for i, st in enumerate(state.stats or ()):
        _warn_empty_states(st, f"model {i}: " if len(blocks.sizes) > 1 else "")
    return state


def _warn_empty_states(stats: dict[str, Any], prefix: str = "") -> None:
    """Warn about states that the last E-step gave no posterior mass (their parameters were
    kept, or came from the states they are tied to)."""
    occupancy = np.asarray(stats["start"]) + np.asarray(stats["trans"]).sum(0)
    empty = [int(k) for k in np.flatnonzero(occupancy <= MIN_POST)]
    if empty:
        warnings.warn(f"{prefix}states {empty} received no posterior mass in the last EM "
                      "iteration: their emission parameters keep their previous values unless "
                      "tied to states with data (too many states, or unreachable states)",
                      DegenerateDataWarning, stacklevel=3)
