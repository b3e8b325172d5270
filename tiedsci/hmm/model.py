"""TiedHMM: the estimator (sklearn contract, hmmlearn names) over an emission family.

Configuration lives in ``__init__`` (stored as given); ``fit`` validates, declares every parameter
in a :class:`~tiedsci.core.Registry` (start probabilities and transition rows as simplices, the
emission's parameters), applies the ties, fixed parameters and structural zeros
(:mod:`tiedsci.hmm.declare`), compiles the layout (``layout_``) and runs the one Baum-Welch loop
with pooled statistics (:func:`tiedsci.hmm.em.baum_welch`). Fitted values are exposed under
hmmlearn's attribute names (``startprob_``, ``transmat_``, ``means_``, ``covars_``, ...); setting
them and fitting with ``init_params=""`` starts EM there. ``report()``, ``plot()``, ``save()`` and
:func:`tiedsci.hmm.load` are the verbs every tiedsci domain has.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.core import Layout, Registry
from tiedsci.errors import DataError, DeclarationError, DegenerateDataWarning, NotFittedError
from tiedsci.hmm import inference
from tiedsci.hmm.chunked import make_chunking, should_chunk
from tiedsci.hmm.declare import ALL_LETTERS, declare_hmms, letters_to_names
from tiedsci.hmm.em import (
    ConvergenceMonitor,
    EMState,
    Problem,
    ResidentShards,
    baum_welch,
    e_step,
)
from tiedsci.hmm.engines import get_engine
from tiedsci.hmm.packing import make_packing

__all__ = ["TiedHMM", "SuffStats", "check_lengths", "STORED_ATTRIBUTES"]

_log = logging.getLogger(__name__)
_BASE_LETTERS = {"s": "startprob", "t": "transmat"}
STORED_ATTRIBUTES = ("startprob_", "transmat_", "means_", "covars_", "emissionprob_", "lambdas_",
                     "weights_")


def check_lengths(lengths: Any, n_samples: int) -> np.ndarray:
    """Validate sequence lengths against the number of samples; ``None`` means one sequence."""
    if lengths is None:
        if n_samples < 1:
            raise DataError("X has no samples")
        return np.array([n_samples], dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim != 1 or arr.size == 0:
        raise DataError(f"lengths must be a non-empty 1-D sequence of ints, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise DataError("lengths must be integers")
    elif arr.dtype.kind not in "iu":
        raise DataError(f"lengths must be integers, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if np.any(arr < 1):
        i = int(np.argmax(arr < 1))
        raise DataError(f"lengths[{i}] = {arr[i]}: every sequence needs at least one sample")
    if int(arr.sum()) != n_samples:
        raise DataError(f"lengths sum to {int(arr.sum())} but X has {n_samples} samples; "
                        "lengths must partition X exactly")
    return arr


def _check_covars(covars: np.ndarray, kind: str) -> None:
    """Covariances must be usable: variances > 0; full matrices symmetric positive definite."""
    c = np.asarray(covars, dtype=float)
    if kind in ("spherical", "diag"):
        if np.any(c <= 0):
            idx = tuple(int(i) for i in np.argwhere(c <= 0)[0])
            raise DataError(f"covars_ must be > 0 (variances); got {float(c[idx])!r} at "
                            f"index {idx}")
        return
    mats = c.reshape(-1, c.shape[-2], c.shape[-1])
    for i, m in enumerate(mats):
        if not np.allclose(m, m.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(m).max()))):
            raise DataError(f"covars_: covariance matrix {i} is not symmetric")
        try:
            np.linalg.cholesky(m)
        except np.linalg.LinAlgError:
            raise DataError(f"covars_: covariance matrix {i} is not positive definite "
                            f"(eigenvalues {np.round(np.linalg.eigvalsh(m), 6)})") from None


def _shard_sequences(x: np.ndarray, lengths: Any, n_shards: int | None, client: Any
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split concatenated sequences into contiguous shards of whole sequences."""
    lens = check_lengths(lengths, x.shape[0])
    if n_shards is not None and (isinstance(n_shards, bool) or not isinstance(
            n_shards, int | np.integer) or n_shards < 1):
        raise ValueError(f"n_shards must be None or an integer >= 1, got {n_shards!r}")
    if n_shards is None:
        n_workers = len(client.scheduler_info()["workers"]) if client is not None else 1
        n_shards = 4 * n_workers if client is not None else 1
    n_shards = max(1, min(int(n_shards), len(lens)))
    bounds = np.concatenate([[0], np.cumsum(lens)])
    groups = np.array_split(np.arange(len(lens)), n_shards)
    return [(x[bounds[g[0]]:bounds[g[-1] + 1]], lens[g]) for g in groups if len(g)]


def _prepare_shard(piece: tuple[np.ndarray, np.ndarray], model: TiedHMM,
                   values: dict[str, np.ndarray]) -> Problem:
    """A shard's :class:`Problem` from its raw sequences (a task of a distributed fit)."""
    xs, lengths = piece
    return model._prepare(xs, lengths, values)


@dataclass(frozen=True)
class SuffStats:
    """Expected sufficient statistics of one E-step (per state; states on axis 0).

    Attributes
    ----------
    n : ndarray, shape (K,)
        Occupancy ``N_k = sum_t gamma_tk`` (expected frames in each state).
    s1 : ndarray, shape (K, D), or None
        ``sum_t gamma_tk x_t`` (Gaussian and Poisson emissions; GMM: per component).
    s2 : ndarray, shape (K, D) or (K, D, D), or None
        ``sum_t gamma_tk x_t^2`` (diagonal / spherical) or ``x_t x_t'`` (full, tied); Gaussian.
    start : ndarray, shape (K,)
        Expected initial-state counts.
    trans : ndarray, shape (K, K)
        Expected transition counts ``sum_t xi_t(i, j)``.
    log_likelihood : float
        Log-likelihood of the data under the parameters used.
    emission : dict
        The emission family's own statistics (e.g. ``counts`` for categorical emissions).
    """

    n: np.ndarray
    s1: np.ndarray | None
    s2: np.ndarray | None
    start: np.ndarray
    trans: np.ndarray
    log_likelihood: float
    emission: dict[str, np.ndarray]

    @classmethod
    def from_e_step(cls, stats: Mapping[str, Any], log_likelihood: float) -> SuffStats:
        """From :func:`tiedsci.hmm.em.e_step`'s statistics."""
        start = np.asarray(stats["start"], dtype=float)
        trans = np.asarray(stats["trans"], dtype=float)
        em = {k: np.asarray(v, dtype=float) for k, v in stats.items()
              if k not in ("start", "trans")}
        return cls(start + trans.sum(0), em.get("obs"), em.get("obs2"), start, trans,
                   float(log_likelihood), em)


class TiedHMM:
    """Hidden Markov model whose states, parameter blocks and transition rows can be tied.

    Parameters
    ----------
    emission : EmissionFamily
        Any :class:`~tiedsci.hmm.family.EmissionFamily`:
        :class:`~tiedsci.hmm.emissions.GaussianEmission`, ``CategoricalEmission``,
        ``PoissonEmission`` or ``GMMEmission``.
    n_components : int
        Number of hidden states.
    tie_states : list of lists of int, optional
        Groups of states sharing every emission parameter, e.g. ``[[0, 1], [2, 3]]``.
    ties : dict, optional
        Per-parameter state groups, e.g. ``{"means": [[0, 1]], "covars": [[0, 1, 2, 3]],
        "transmat": [[2, 3]]}`` (transition rows of states 2 and 3 are shared).
    fixed : dict, optional
        ``{name: True}`` holds a whole parameter, ``{name: [states]}`` the rows of those states,
        at their initial values.
    soft_ties : dict, optional
        Per-parameter state groups partially pooled around a free centre (soft ties,
        :meth:`Registry.soft_tie <tiedsci.core.Registry.soft_tie>`), e.g.
        ``{"means": [[0, 1], [2, 3]]}``: each member ``mu_k ~ N(c, spread^2)`` element by
        element, and the M-step is the closed-form MAP update (precision-weighted pooling of
        each member's statistics with the centre). Gaussian ``means`` and Poisson
        ``lambdas``.
    spread : float, "positive", dict or None
        Standard deviation of the members around the centre, in their units (one value, or a
        dict by parameter name); ``0`` is the hard tie, ``math.inf`` the untied fit. ``None``
        (default) learns it at every M-step by type-II maximum likelihood on the current
        statistics; ``0`` is then a legitimate answer but absorbing inside EM (members made
        equal stay equal: from a diffuse start the first M-step can collapse a group for
        good). ``"positive"`` learns it with Chung et al.'s boundary-avoiding ``log tau``
        term added (about one standard error off 0 where maximum likelihood gives 0). After
        ``fit``, ``soft_ties_`` holds each tie's spread, centre and
        shrinkage (:class:`~tiedsci.hmm.em.SoftTieFit`).
    params, init_params : str or iterable of names
        hmmlearn letter codes (``"stmc"``) or parameter names: which parameters EM updates and
        which are initialised by ``fit`` (the others are taken from the attributes).
    n_iter, tol : int, float
        EM stops after ``n_iter`` iterations or when the gain is below ``tol``.
    algorithm : {"viterbi", "map"}
        Decoder used by :meth:`predict` and :meth:`decode`.
    engine : {"numpy", "torch"}, device, dtype
        Where the E-step runs. ``dtype`` defaults to float64.
    random_state : int, Generator or None
    verbose : bool
    startprob_prior, transmat_prior : float or array
        Dirichlet concentrations (hmmlearn's names and defaults; 1 is maximum likelihood).
        The emission family's priors (``emission.prior_defaults``, e.g. ``means_prior``) are
        read from attributes of the same names. EM is then MAP: each prior counts once per tie
        group (:mod:`tiedsci.hmm.priors`); ``monitor_`` and ``score`` report the
        log-likelihood, as hmmlearn does.

    Notes
    -----
    Zeros of the initial ``startprob_`` / ``transmat_`` (and ``emissionprob_``) are structural:
    they are declared fixed, stay exactly zero and are not counted in ``n_free``.
    """

    _emission_letters: Mapping[str, str] = {}

    def __init__(self, emission: Any = None, n_components: int = 1, *,
                 tie_states: Sequence[Sequence[int]] | None = None,
                 ties: Mapping[str, Sequence[Sequence[int]]] | None = None,
                 fixed: Mapping[str, Any] | None = None,
                 params: Any = None, init_params: Any = None, n_iter: int = 10,
                 tol: float = 1e-2, algorithm: str = "viterbi", engine: str = "numpy",
                 device: Any = None, dtype: Any = None, random_state: Any = None,
                 verbose: bool = False, startprob_prior: Any = 1.0,
                 transmat_prior: Any = 1.0,
                 soft_ties: Mapping[str, Sequence[Sequence[int]]] | None = None,
                 spread: float | Mapping[str, float | None] | None = None) -> None:
        self.emission = emission
        self.soft_ties = soft_ties
        self.spread = spread
        self.startprob_prior = startprob_prior
        self.transmat_prior = transmat_prior
        # hmmlearn creates the monitor with the estimator (a user may replace it, see fit)
        self.monitor_ = ConvergenceMonitor(tol=tol, n_iter=n_iter, verbose=verbose)
        self.n_components = n_components
        self.tie_states = tie_states
        self.ties = ties
        self.fixed = fixed
        self.params = params
        self.init_params = init_params
        self.n_iter = n_iter
        self.tol = tol
        self.algorithm = algorithm
        self.engine = engine
        self.device = device
        self.dtype = dtype
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ configuration
    def _emission(self) -> Any:
        if self.emission is None:
            raise DeclarationError("TiedHMM needs an emission family, e.g. GaussianEmission()")
        self.emission.check()
        return self.emission

    def _letters(self) -> dict[str, str]:
        return {**_BASE_LETTERS, **self._emission().letters}

    def _param_names(self) -> list[str]:
        return ["startprob", "transmat", *self._emission().letters.values()]

    def _public_names(self) -> dict[str, str]:
        return {n: n + "_" for n in self._param_names()}

    def _check_config(self) -> None:
        """Validate the constructor arguments that ``fit`` relies on (sklearn: at fit time)."""
        k = self.n_components
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise DeclarationError(f"n_components must be an integer >= 1, got {k!r}")
        n = self.n_iter
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise DeclarationError(f"n_iter must be an integer >= 0, got {n!r}")
        try:
            tol = float(self.tol)
        except (TypeError, ValueError):
            tol = math.nan
        if math.isnan(tol):
            raise DeclarationError(f"tol must be a number, got {self.tol!r}")

    def _rng(self, rs: Any = None) -> np.random.Generator:
        """A Generator from ``rs`` (default: ``random_state``): None, an int seed, a numpy
        ``Generator``, ``RandomState`` or ``SeedSequence`` (what hmmlearn and numpy accept)."""
        rs = self.random_state if rs is None else rs
        if isinstance(rs, np.random.Generator):
            return rs
        if isinstance(rs, np.random.RandomState):
            return np.random.default_rng(rs.randint(2**31))
        return np.random.default_rng(rs)

    # ------------------------------------------------------------------ values <-> attributes
    def _attribute_values(self, x: np.ndarray | None = None) -> dict[str, np.ndarray]:
        em = self._emission()
        attrs = {k: self._stored(k) for k in STORED_ATTRIBUTES if self._stored(k) is not None}
        if x is not None:
            attrs = _broadcast_scalars(attrs, em, x, int(self.n_components))
        out: dict[str, np.ndarray] = {}
        if "startprob_" in attrs:
            out["startprob"] = np.asarray(attrs["startprob_"], dtype=float).copy()
        if "transmat_" in attrs:
            out["transmat"] = np.asarray(attrs["transmat_"], dtype=float).copy()
        out.update(em.from_public(attrs, int(self.n_components)))
        for fit in getattr(self, "soft_ties_", ()):
            out[fit.centre] = np.asarray(fit.value, dtype=float).copy()
        return out

    def _stored(self, name: str) -> Any:
        """The fitted attribute ``name`` as stored (hmmlearn's compact form; None if unset)."""
        return getattr(self, name, None)

    def _set_attributes(self, values: Mapping[str, np.ndarray]) -> None:
        self.startprob_ = np.asarray(values["startprob"]).copy()
        self.transmat_ = np.asarray(values["transmat"]).copy()
        for k, v in self._emission().to_public(dict(values)).items():
            setattr(self, k, v)

    def _values(self) -> dict[str, np.ndarray]:
        values = self._attribute_values()
        missing = [n for n in self._param_names() if n not in values]
        if missing:
            raise NotFittedError(f"{type(self).__name__} is not fitted: "
                                 f"{', '.join(m + '_' for m in missing)} not set; call fit first")
        return values

    # ------------------------------------------------------------------ registry
    def _check_groups(self, what: str, groups: Any) -> list[list[int]]:
        k = int(self.n_components)
        out = []
        for g in groups:
            g = [int(i) for i in g]
            for i in g:
                if not 0 <= i < k:
                    raise DeclarationError(
                        f"{what}: tie group {g} names state {i}, which does not exist "
                        f"(n_components={k}, states 0..{k - 1})")
            out.append(g)
        return out

    def _check_values(self, values: dict[str, np.ndarray]) -> None:
        k = int(self.n_components)
        sp, tm = values["startprob"], values["transmat"]
        if sp.shape != (k,) or tm.shape != (k, k):
            raise DataError(f"startprob_ must have shape ({k},) and transmat_ ({k}, {k}); got "
                            f"{sp.shape} and {tm.shape}")
        for name in self._param_names():
            v = values[name]
            if not np.all(np.isfinite(v)):
                raise DataError(f"{name}_ contains NaN or inf")
            if v.shape[0] != k:
                raise DataError(f"{name}_ has {v.shape[0]} rows, expected n_components={k}")
        for name in ("startprob", "transmat", "emissionprob", "weights"):
            if name in values:
                v = values[name]
                if np.any(v < 0) or not np.allclose(v.sum(-1), 1.0, atol=1e-6):
                    raise DataError(f"{name}_ must hold probabilities summing to 1 along its "
                                    "last axis")
                values[name] = v / v.sum(-1, keepdims=True)
        if "covars" in values:
            _check_covars(values["covars"], getattr(self._emission(), "kind", "diag"))

    def build_registry(self, values: Mapping[str, np.ndarray]) -> Registry:
        """Declare all parameters at ``values`` with this model's ties and fixed parts."""
        return declare_hmms([self], [values])[0]

    def _init_values(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        em = self._emission()
        k = int(self.n_components)
        init = letters_to_names("stmcewl" if self.init_params is None else self.init_params,
                                 ALL_LETTERS)
        current = self._attribute_values(x)
        for name in sorted(init & set(current), key=self._param_names().index):
            letter = next(c for c, n in ALL_LETTERS.items() if n == name)
            _log.warning("Even though the %r attribute is set, it will be overwritten during "
                         "initialization because 'init_params' contains %r", name + "_", letter)
        values: dict[str, np.ndarray] = {}
        if "startprob" in init or "startprob" not in current:
            values["startprob"] = np.full(k, 1.0 / k)
        if "transmat" in init or "transmat" not in current:
            values["transmat"] = 0.5 / k + 0.5 * rng.dirichlet(np.full(k, 5.0), size=k)
            values["transmat"] /= values["transmat"].sum(1, keepdims=True)
        need = {n for n in em.letters.values() if n in init or n not in current}
        values.update(em.init(x, k, rng, need))
        for n, v in current.items():
            values.setdefault(n, v)
        return values

    # ------------------------------------------------------------------ data
    def _prepare(self, X: Any, lengths: Any, values: dict[str, np.ndarray],
                 allow_chunks: bool = True) -> Problem:
        em = self._emission()
        x = em.validate(X)
        if x.shape[1] != em.n_columns(values):
            raise DataError(f"X has {x.shape[1]} features (columns) but the model has "
                            f"n_features={em.n_features_of(values)}")
        lens = check_lengths(lengths, x.shape[0])
        chunking = make_chunking(lens) if allow_chunks and should_chunk(lens) else None
        pk = chunking.packing if chunking is not None else make_packing(lens)
        eng = get_engine(self.engine, device=self.device, dtype=self.dtype)
        frames = em.prepare(pk.pack(x), eng, values)
        return Problem(em, frames, inference.index_on(pk, eng, chunking), eng)

    def _validated(self, X: Any) -> np.ndarray:
        return self._emission().validate(X)

    # ------------------------------------------------------------------ fitting
    def fit(self, X: Any, lengths: Any = None, *,
            start: Mapping[str, np.ndarray] | EMState | None = None,
            on_iteration: Callable[[EMState], Any] | None = None, executor: Any = None,
            client: Any = None, n_shards: int | None = None) -> TiedHMM:
        """Estimate the parameters with Baum-Welch (pooled statistics for tied parts).

        Parameters
        ----------
        X : array, shape (n_samples, n_features)
            Concatenated sequences.
        lengths : array of int, shape (n_sequences,), optional
            Lengths of the sequences in ``X``; they must sum to ``n_samples``.
        start : dict or EMState, optional
            Where EM starts instead of the initialisation: values (internal names, e.g. from
            :meth:`em_state`) or a state to continue (its history counts towards ``n_iter``);
            ``model.fit(X, start=load(checkpoint).em_state())`` resumes an interrupted fit and
            gives, bit for bit, the uninterrupted result.
        on_iteration : callable, optional
            ``on_iteration(state)`` after every EM iteration (:class:`~tiedsci.hmm.em.EMState`),
            the fitted attributes already set to that iterate (so ``self.save(path)`` writes a
            checkpoint); returning ``True`` stops EM.
        executor, client : optional
            Run the E-step as a map over shards of sequences (:mod:`tiedsci.parallel`):
            ``client=`` a ``dask.distributed.Client``, or any executor. Default: one process.
        n_shards : int, optional
            Number of shards (default: 4 per Dask worker, or 1 per executor otherwise); the
            result depends on the sharding only through summation order.

        Returns
        -------
        self
            Ctrl-C (KeyboardInterrupt) during EM stops it: the attributes hold the last
            completed iteration and ``monitor_.interrupted`` is True.
        """
        self._check_config()
        x = self._validated(X)
        check_lengths(lengths, x.shape[0])
        if self.algorithm not in ("viterbi", "map"):
            raise ValueError(f"algorithm must be 'viterbi' or 'map', got {self.algorithm!r}")
        if start is None:
            values = self._init_values(x, self._rng())
        else:
            values = dict(start.values if isinstance(start, EMState) else start)
        reg, blocks = declare_hmms([self], [values])
        layout = reg.compile()
        if start is None:
            values = layout.values0
        if layout.n_free > x.size:
            warnings.warn(f"fitting {layout.n_free} free parameters to {x.size} observed "
                          f"values: the estimate is degenerate (more free parameters than "
                          f"data); fewer states or more ties would help",
                          DegenerateDataWarning, stacklevel=2)
        problem, runner = self._problem(x, lengths, values, executor, client, n_shards)
        watcher = self._user_monitor()

        def step(state: EMState) -> Any:
            if self.verbose:
                print(f"iteration {state.monitor.iter:4d}  log-likelihood "
                      f"{state.monitor.history[-1]:.6f}")
            stop = None
            if on_iteration is not None:
                self._publish(layout, state)
                stop = on_iteration(state)
            if watcher is not None:
                watcher.report(state.monitor.history[-1])
                stop = True if watcher.converged else stop
            return stop

        state = baum_welch(values if start is None else start, [problem], layout, blocks,
                           int(self.n_iter), float(self.tol), on_iteration=step,
                           executor=runner)
        self._publish(layout, state)
        if watcher is not None:
            self.monitor_ = watcher
        return self

    def _user_monitor(self) -> Any:
        """A monitor the user put in ``monitor_`` before ``fit`` (hmmlearn's pattern: a
        ``ConvergenceMonitor`` subclass), reset; EM reports every log-likelihood to it and
        stops when its ``converged`` says so, and it stays ``monitor_``. None for tiedsci's
        own monitor."""
        mon = self.__dict__.get("monitor_")
        if mon is None or isinstance(mon, ConvergenceMonitor):
            return None
        if hasattr(mon, "_reset"):
            mon._reset()
        return mon

    def _problem(self, x: np.ndarray, lengths: Any, values: dict[str, np.ndarray],
                 executor: Any, client: Any, n_shards: int | None) -> tuple[Any, Any]:
        """The E-step's data: one :class:`Problem`, or shards and the executor running them."""
        if executor is None and client is None:
            return self._prepare(x, lengths, values), None
        from tiedsci.parallel import StatefulExecutor, as_executor

        runner = as_executor(executor, client)
        pieces = _shard_sequences(x, lengths, n_shards, client)
        if isinstance(runner, StatefulExecutor):
            # ship the raw sequences and prepare each shard where it will run: less to send
            # (the packed frames and indices are larger than the data) and done in parallel
            return ResidentShards(
                runner.map_persist(_prepare_shard, runner.put(pieces), self, values),
                self._emission()), runner
        return [self._prepare(xs, ls, values) for xs, ls in pieces], runner

    def _publish(self, layout: Layout, state: EMState) -> None:
        """Set the fitted attributes to an EM iterate."""
        self.layout_ = layout
        self.monitor_ = state.monitor
        if state.soft or not layout.soft_ties:
            self.soft_ties_ = state.soft
        self._set_attributes(state.values)
        self.n_features = self._n_features(state.values)

    def em_state(self) -> EMState:
        """The fitted parameters and monitor as an EM state (``fit(X, start=...)`` resumes)."""
        from copy import deepcopy

        return EMState(self._values(), deepcopy(self._own_monitor()))

    def _own_monitor(self) -> ConvergenceMonitor:
        """``monitor_`` as tiedsci's :class:`ConvergenceMonitor` (a user's hmmlearn-style
        monitor is converted from its ``history``)."""
        mon = self.__dict__.get("monitor_")
        if isinstance(mon, ConvergenceMonitor):
            return mon
        own = ConvergenceMonitor(tol=float(self.tol), n_iter=int(self.n_iter))
        history = list(getattr(mon, "history", []) or [])
        own.history, own.iter = [float(h) for h in history], len(history)
        return own

    def _n_features(self, values: Mapping[str, np.ndarray]) -> int:
        return int(self._emission().n_features_of(dict(values)))

    # ------------------------------------------------------------------ inference
    def suff_stats(self, X: Any, lengths: Any = None) -> SuffStats:
        """E-step sufficient statistics of ``X`` under the fitted parameters.

        One forward-backward pass, the statistics Baum-Welch's M-step pools (tie discovery
        ranks candidate merges from them, :func:`tiedsci.hmm.discover`).

        Returns
        -------
        SuffStats
        """
        values = self._values()
        self._check_values(dict(values))
        problem = self._prepare(X, lengths, values)
        stats, ll = e_step(values, problem)
        return SuffStats.from_e_step(stats, ll)

    def _log_frames(self, X: Any, lengths: Any, allow_chunks: bool = True
                    ) -> tuple[Problem, Any, dict[str, np.ndarray]]:
        values = self._values()
        self._check_values(dict(values))
        problem = self._prepare(X, lengths, values, allow_chunks)
        return problem, self._emission().log_prob(values, problem.frames, problem.eng), values

    def score_samples(self, X: Any, lengths: Any = None) -> tuple[float, np.ndarray]:
        """Log-likelihood and state posteriors, shape (n_samples, n_components)."""
        problem, log_frame, values = self._log_frames(X, lengths)
        post = inference.forward_backward(values["startprob"], values["transmat"], log_frame,
                                          problem.idx, problem.eng)
        gamma = problem.idx.packing.unpack(problem.eng.to_numpy(post.gamma))
        return float(post.log_likelihood.sum()), np.asarray(gamma, dtype=float)

    def score(self, X: Any, lengths: Any = None) -> float:
        """Total log-likelihood of the sequences."""
        problem, log_frame, values = self._log_frames(X, lengths)
        ll = inference.log_likelihood(values["startprob"], values["transmat"], log_frame,
                                      problem.idx, problem.eng)
        return float(ll.sum())

    def score_sequences(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Log-likelihood of each sequence, shape (n_sequences,), in the given order."""
        problem, log_frame, values = self._log_frames(X, lengths)
        ll = inference.log_likelihood(values["startprob"], values["transmat"], log_frame,
                                      problem.idx, problem.eng)
        return ll

    def predict_proba(self, X: Any, lengths: Any = None) -> np.ndarray:
        """State posteriors, shape (n_samples, n_components)."""
        return self.score_samples(X, lengths)[1]

    def decode(self, X: Any, lengths: Any = None,
               algorithm: str | None = None) -> tuple[float, np.ndarray]:
        """Most likely states: ``"viterbi"`` (best path) or ``"map"`` (per-frame argmax).

        Returns ``(log_prob, states)``: the best path's log-probability for Viterbi; for
        ``"map"``, hmmlearn's convention, the sum over frames of the largest posterior.
        """
        algorithm = algorithm or self.algorithm
        if algorithm == "map":
            _, gamma = self.score_samples(X, lengths)
            return float(gamma.max(1).sum()), gamma.argmax(1)
        if algorithm != "viterbi":
            raise ValueError(f"algorithm must be 'viterbi' or 'map', got {algorithm!r}")
        problem, log_frame, values = self._log_frames(X, lengths)
        lp, states = inference.viterbi(values["startprob"], values["transmat"], log_frame,
                                       problem.idx, problem.eng)
        return float(lp.sum()), problem.idx.packing.unpack(states)

    def predict(self, X: Any, lengths: Any = None) -> np.ndarray:
        """Most likely state of every sample, shape (n_samples,)."""
        return self.decode(X, lengths)[1]

    def sample(self, n_samples: int = 1, random_state: Any = None,
               currstate: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Draw ``(X, states)`` from the model."""
        values = self._values()
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) \
                or n_samples < 0:
            raise ValueError(f"n_samples must be an integer >= 0, got {n_samples!r}")
        rng = self._rng(random_state)
        em = self._emission()
        k = int(self.n_components)
        if currstate is not None and not (isinstance(currstate, int | np.integer)
                                          and 0 <= currstate < k):
            raise ValueError(f"currstate must be a state 0..{k - 1}, got {currstate!r}")
        states = np.empty(n_samples, dtype=np.int64)
        s = int(rng.choice(k, p=values["startprob"])) if currstate is None else int(currstate)
        rows = []
        for t in range(n_samples):
            if t > 0:
                s = int(rng.choice(k, p=values["transmat"][s]))
            states[t] = s
            rows.append(em.sample(values, s, rng))
        width = em.n_columns(values)
        x = np.asarray(rows) if rows else np.empty((0, width))
        return (x.astype(np.int64) if "emissionprob" in values else x), states

    # ------------------------------------------------------------------ model selection
    @property
    def n_free(self) -> int:
        """True number of free parameters (ties, fixed parts and structural zeros removed)."""
        return int(self._layout().n_free)

    def _layout(self) -> Layout:
        layout = getattr(self, "layout_", None)
        if layout is not None:
            return layout
        return self.build_registry(self._values()).compile()

    def aic(self, X: Any, lengths: Any = None) -> float:
        """Akaike information criterion, charged for ``n_free`` parameters."""
        return -2 * self.score(X, lengths) + 2 * self.n_free

    def bic(self, X: Any, lengths: Any = None) -> float:
        """Bayesian information criterion, charged for ``n_free`` parameters."""
        n = self._validated(X).shape[0]
        return -2 * self.score(X, lengths) + self.n_free * np.log(n)

    def report(self) -> str:
        """Human summary: model size, EM outcome, and the parameter table.

        The table lists every parameter element with its tie / fixed status and fitted value
        (the registry's view: a tied element names the element it is tied to).
        """
        lines = [f"{type(self).__name__}: {self.n_components} states, {self.n_free} free "
                 "parameters"]
        mon = getattr(self, "monitor_", None)
        if mon is not None and mon.history:
            outcome = ("interrupted (Ctrl-C)" if mon.interrupted
                       else "converged (gain < tol)" if mon.gain_below_tol()
                       else "stopped at n_iter" if mon.iter >= mon.n_iter
                       else "stopped early")
            lines.append(f"EM: {mon.iter} iterations, {outcome}; log-likelihood entering the "
                         f"last iteration {mon.history[-1]:.10g}")
        for fit in getattr(self, "soft_ties_", ()):
            how = "learned" if fit.learned else "given"
            b = np.asarray(fit.shrinkage, dtype=float)
            lines.append(f"soft tie of {', '.join(fit.members)} around {fit.centre}: spread "
                         f"{fit.spread:.6g} ({how}), shrinkage {b.min():.3g}..{b.max():.3g}")
        return "\n".join(lines) + "\n\n" + self._parameter_table()

    def plot(self, X: Any = None, lengths: Any = None, *, feature: int = 0,
             path: Any = None, labels: tuple[str, str] | None = None) -> Any:
        """Figure of the fit: decoded states and posteriors over ``X``, or, without ``X``, the
        EM history and the transition matrix (see :func:`tiedsci.hmm.plots.plot_model`;
        ``labels``: the time axis and the plotted quantity).

        Returns a ``matplotlib.figure.Figure`` on an Agg canvas (no global state touched).
        """
        from tiedsci.hmm.plots import plot_model

        return plot_model(self, X, lengths, feature=feature, path=path, labels=labels)

    def _parameter_table(self) -> str:
        """Table of every parameter element with its tie / fixed status and fitted value."""
        layout = self._layout()
        values = {k: v for k, v in self._values().items() if k in layout.shapes}
        return layout.describe(values)

    def save(self, path: Any, *, extra: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
        """Write ``<path>.json`` + ``<path>.npz``; ``tiedsci.hmm.load(path)`` reads them back
        exactly (see :mod:`tiedsci.hmm.io`). Returns both paths."""
        from tiedsci.hmm.io import save

        return save(self, path, extra=extra)

    def to_hmmlearn(self) -> Any:
        """An equivalent hmmlearn estimator (see :mod:`tiedsci.hmm.interop`)."""
        from tiedsci.hmm.interop import to_hmmlearn

        return to_hmmlearn(self)

    @staticmethod
    def from_hmmlearn(hm: Any, **kwargs: Any) -> Any:
        """The tiedsci estimator matching an hmmlearn model (``kwargs`` add ties etc.)."""
        from tiedsci.hmm.interop import from_hmmlearn

        return from_hmmlearn(hm, **kwargs)

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor arguments (sklearn contract)."""
        import inspect

        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        return {n: getattr(self, n) for n in names}

    def set_params(self, **params: Any) -> TiedHMM:
        """Set constructor arguments (sklearn contract); an unknown name is a ``ValueError``
        listing the valid ones, and nothing is set."""
        valid = self.get_params()
        unknown = sorted(set(params) - set(valid))
        if unknown:
            raise ValueError(f"Invalid parameter(s) {unknown} for {type(self).__name__}; "
                             f"valid parameters: {sorted(valid)}")
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items()
                         if v is not None and k != "emission")
        return f"{type(self).__name__}({args})"


def _broadcast_scalars(attrs: dict[str, Any], em: Any, x: np.ndarray, k: int) -> dict[str, Any]:
    """Scalar emission attributes (``means_ = 1.0``, ``covars_ = 1.0``) broadcast to their
    shapes for data ``x``: a variance ``c`` becomes ``c`` times the identity for full and tied
    covariances, ``c`` everywhere otherwise; any other scalar fills its array."""
    scalars = {n for n, v in attrs.items() if np.ndim(v) == 0 and n not in
               ("startprob_", "transmat_")}
    if not scalars:
        return attrs
    names = set(em.letters.values())
    template = em.to_public(em.init(x, k, np.random.default_rng(0), names))
    out = dict(attrs)
    for n in scalars & template.keys():
        shape, value = np.shape(template[n]), float(attrs[n])
        square = n == "covars_" and getattr(em, "covariance_type", "") in ("full", "tied")
        out[n] = value * np.broadcast_to(np.eye(shape[-1]), shape) if square else \
            np.full(shape, value)
    return out

