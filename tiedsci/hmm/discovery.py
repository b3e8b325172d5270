"""Tie discovery for HMMs: which states, blocks or transition rows should be tied?

:func:`discover` walks the lattice of tie structures bottom-up (shared/notes/discovery.md,
sections 2c-4): starting from a fitted model (its declared ties, often none), every step ranks
the candidate merges from the E-step statistics alone (:meth:`TiedHMM.suff_stats`), merges the
pair whose predicted criterion change ``2 cost + dk penalty`` is smallest, and refits the child
warm from its parent. ``cost`` is the drop of the best expected complete-data log-likelihood
when the two classes share their parameters (HTK's / Kaldi's clustering distance), ``dk`` the
change of the *compiled* registry's ``n_free``. Every path point is refitted and scored with the
criterion on its refitted likelihood (the statistics bound is loose when free states
re-organise, so it only ranks). The result is a :class:`tiedsci.discovery.DiscoveryPath` whose
models are the fitted estimators.

A structure is a partition of the states per block: the emission's blocks (``means`` and
``covars`` of a Gaussian HMM, ``lambdas`` of a Poisson HMM) and ``transmat`` (transition rows).
Candidates: ``"state"`` (two classes share their whole emission), a block name (that block
only), ``"transmat"`` (two transition rows). A merge that would make two states lumpable
(whole emission *and* transition row shared: the likelihood then sees only the sum of their
incoming probabilities) is not offered. :func:`split_test` is the reverse test of a declared
tie: split each tie group, refit, and let the criterion say whether the data want it split.

The untied start decides what bottom-up merging can find (it can only merge): ``start="split"``
grows it by splitting smaller fitted models (:func:`split_grown_start`, the default of the
notes' best runs), ``start="kmeans"`` takes the best of several k-means-started fits,
``start="model"`` the given fitted model.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.discovery import DiscoveryPath, PathStep, check_criterion, criterion_value
from tiedsci.errors import DeclarationError, NotFittedError, UnknownParameterError

__all__ = ["discover", "split_test", "split_grown_start", "kmeans_start", "Structure",
           "candidate_kinds", "planted_recovery", "sticky_gaussian_hmm"]

FLOOR = 1e-12  # warm-started probabilities are floored here: a zero would become structural
_EMISSION_BLOCKS = {"gaussian": ("means", "covars"), "poisson": ("lambdas",)}


# ---------------------------------------------------------------------- structures
@dataclass(frozen=True)
class Structure:
    """A tie structure: per block, a partition of the states into classes.

    Attributes
    ----------
    parts : dict of str to tuple of tuple of int
        Block name -> classes (sorted state tuples, sorted), covering every state once.
    emission : tuple of str
        The emission's block names (the others are ``"transmat"``).
    """

    parts: Mapping[str, tuple[tuple[int, ...], ...]]
    emission: tuple[str, ...]

    @classmethod
    def from_model(cls, model: Any, emission: tuple[str, ...]) -> Structure:
        """The structure a model declares (``tie_states`` and ``ties``)."""
        k = int(model.n_components)
        groups: dict[str, list[list[int]]] = {b: [] for b in (*emission, "transmat")}
        for g in model.tie_states or ():
            for b in emission:
                groups[b].append([int(i) for i in g])
        for name, gs in (model.ties or {}).items():
            if name not in groups:
                raise DeclarationError(f"discover: ties on {name!r} are not searched; blocks "
                                       f"{sorted(groups)}")
            groups[name].extend([int(i) for i in g] for g in gs)
        return cls({b: _partition(k, gs) for b, gs in groups.items()}, emission)

    @property
    def n_states(self) -> int:
        return sum(len(c) for c in next(iter(self.parts.values())))

    def emission_classes(self) -> tuple[tuple[int, ...], ...]:
        """Classes of states sharing their whole emission (the meet of the emission blocks)."""
        key = {s: tuple(_class_of(self.parts[b], s) for b in self.emission)
               for s in range(self.n_states)}
        out: dict[tuple[Any, ...], list[int]] = {}
        for s in range(self.n_states):
            out.setdefault(key[s], []).append(s)
        return tuple(sorted(tuple(v) for v in out.values()))

    def merged(self, blocks: Sequence[str], states: Sequence[int]) -> Structure:
        """Every class of ``blocks`` touching ``states`` merged into one."""
        parts = dict(self.parts)
        for b in blocks:
            touch = [c for c in parts[b] if set(c) & set(states)]
            rest = [c for c in parts[b] if not set(c) & set(states)]
            parts[b] = tuple(sorted([*rest, tuple(sorted(itertools.chain(*touch)))]))
        return Structure(parts, self.emission)

    def ties(self) -> dict[str, list[list[int]]]:
        """The estimator's ``ties=`` argument (groups of two or more states)."""
        return {b: [list(c) for c in cs if len(c) > 1] for b, cs in self.parts.items()
                if any(len(c) > 1 for c in cs)}

    def split(self, block: str, cls: tuple[int, ...]) -> Structure:
        """``cls`` split into single states in ``block`` (``"state"``: every emission block;
        then each block's classes lose the states of ``cls``)."""
        parts = dict(self.parts)
        for b in (self.emission if block == "state" else (block,)):
            rest = [tuple(t for t in c if t not in cls) for c in parts[b]]
            parts[b] = tuple(sorted([c for c in rest if c] + [(t,) for t in cls]))
        return Structure(parts, self.emission)

    def splits(self) -> list[tuple[str, tuple[int, ...]]]:
        """The reverse-test candidates: every tied class of every block, and every class of
        states sharing their whole emission (``"state"``)."""
        out = [(b, c) for b, cs in self.parts.items() for c in cs if len(c) > 1]
        if len(self.emission) > 1:
            out += [("state", c) for c in self.emission_classes() if len(c) > 1]
        return out

    def lumpable(self, states: Sequence[int]) -> bool:
        """Would ``states`` share their whole emission and transition row?"""
        em = self.emission_classes()
        return (any(set(states) <= set(c) for c in em)
                and any(set(states) <= set(c) for c in self.parts["transmat"]))


def _partition(k: int, groups: Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    parent = list(range(k))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for g in groups:
        for a, b in zip(g, g[1:]):
            parent[find(int(a))] = find(int(b))
    out: dict[int, list[int]] = {}
    for s in range(k):
        out.setdefault(find(s), []).append(s)
    return tuple(sorted(tuple(v) for v in out.values()))


def _class_of(part: Sequence[tuple[int, ...]], s: int) -> int:
    return next(i for i, c in enumerate(part) if s in c)


def _label(states: Sequence[int]) -> str:
    return "{" + ",".join(str(s) for s in states) + "}"


# ---------------------------------------------------------------------- statistics M-step
def _family(model: Any) -> str:
    from tiedsci.hmm.emissions import GaussianEmission, PoissonEmission

    em = model._emission()
    if isinstance(em, GaussianEmission) and em.kind in ("diag", "spherical"):
        return "gaussian"
    if isinstance(em, PoissonEmission):
        return "poisson"
    raise DeclarationError(f"discover supports Gaussian (diag, spherical) and Poisson HMMs; "
                           f"got {type(model).__name__} with {em!r}")


def candidate_kinds(model: Any) -> tuple[str, ...]:
    """The candidate kinds :func:`discover` accepts for ``model``."""
    return ("state", *_EMISSION_BLOCKS[_family(model)], "transmat")


def _stat_mstep(st: Any, s: Structure, family: str, kind: str, min_covar: float,
                sweeps: int = 8) -> tuple[dict[str, np.ndarray], float]:
    """Tied M-step on fixed statistics: the warm start of a child and its expected
    complete-data log-likelihood (emission and transitions; start counts omitted)."""
    n = np.maximum(st.n, 1e-300)
    values: dict[str, np.ndarray] = {}
    if family == "poisson":
        lam = np.empty_like(st.s1)
        for c in s.parts["lambdas"]:
            lam[list(c)] = np.maximum(st.s1[list(c)].sum(0) / n[list(c)].sum(), FLOOR)
        values["lambdas"] = lam
        q = float((st.s1 * np.log(lam) - n[:, None] * lam).sum())
    else:
        mu, var, q = _gaussian_q(st, s, kind, n, min_covar, sweeps)
        values["means"] = mu
        values["covars"] = var if kind == "diag" else var[:, 0]
    trans = np.empty_like(st.trans)
    for c in s.parts["transmat"]:
        row = st.trans[list(c)].sum(0)
        trans[list(c)] = row / max(row.sum(), 1e-300)
    with np.errstate(divide="ignore"):
        q += float(np.where(st.trans > 0, st.trans * np.log(np.maximum(trans, 1e-300)),
                            0.0).sum())
    values["transmat"] = trans
    values["startprob"] = st.start / st.start.sum()
    return values, q


def _gaussian_q(st: Any, s: Structure, kind: str, n: np.ndarray, min_covar: float,
                sweeps: int) -> tuple[np.ndarray, np.ndarray, float]:
    """ECM on statistics for tied means / covariances: means given variances, then
    variances given means (exact in one sweep when the two partitions agree)."""
    mu = st.s1 / n[:, None]
    var = np.ones_like(mu)
    for _ in range(sweeps):
        scatter = st.s2 - 2 * mu * st.s1 + mu * mu * n[:, None]
        for c in s.parts["covars"]:
            v = scatter[list(c)].sum(0) / n[list(c)].sum()
            var[list(c)] = np.maximum(v.mean() if kind == "spherical" else v, min_covar)
        for c in s.parts["means"]:
            w = n[list(c), None] / var[list(c)]
            mu[list(c)] = (st.s1[list(c)] / var[list(c)]).sum(0) / w.sum(0)
    scatter = st.s2 - 2 * mu * st.s1 + mu * mu * n[:, None]
    q = -0.5 * float((n[:, None] * np.log(2 * np.pi * var) + scatter / var).sum())
    return mu, var, q


def _floored(p: np.ndarray, zeros: np.ndarray | None = None) -> np.ndarray:
    """Probabilities floored at :data:`FLOOR` except at the structural ``zeros``."""
    p = np.maximum(np.asarray(p, dtype=float), FLOOR)
    if zeros is not None:
        p = np.where(zeros, 0.0, p)
    return p / p.sum(-1, keepdims=True)


# ---------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class _Candidate:
    kind: str
    states: tuple[tuple[int, ...], tuple[int, ...]]
    child: Structure

    @property
    def label(self) -> tuple[str, ...]:
        return tuple(_label(c) for c in self.states)


def _candidates(s: Structure, kinds: Sequence[str]) -> list[_Candidate]:
    out = []
    for kind in kinds:
        blocks = s.emission if kind == "state" else (kind,)
        classes = s.emission_classes() if kind == "state" else s.parts[kind]
        for a, b in itertools.combinations(classes, 2):
            union = (*a, *b)
            child = s.merged(blocks, union)
            if child == s or child.lumpable(union):
                continue
            out.append(_Candidate(kind, (a, b), child))
    return out


def _child(template: Any, s: Structure, n_iter: int, tol: float) -> Any:
    est = type(template)(**template.get_params())
    est.set_params(tie_states=None, ties=s.ties() or None, n_iter=n_iter, tol=tol,
                   init_params="")
    if "soft_ties" in est.get_params():
        est.set_params(soft_ties=None)
    return est


def _n_free(template: Any, s: Structure, values: Mapping[str, np.ndarray]) -> int | None:
    """``n_free`` of the compiled child registry; None when the merge cannot be declared
    (e.g. transition rows with structural zeros in different places)."""
    try:
        reg = _child(template, s, 1, 0.0).build_registry(dict(values))
    except DeclarationError:
        return None
    return int(reg.compile().n_free)


@dataclass(frozen=True)
class _Ranked:
    cand: _Candidate
    cost: float
    dk: int
    predicted: float
    values: dict[str, np.ndarray]


def _rank(model: Any, st: Any, s: Structure, kinds: Sequence[str], family: str,
          penalty: float, n_free: int) -> list[_Ranked]:
    """Every candidate with its statistics cost, compiled dk and predicted change."""
    kind = getattr(model._emission(), "kind", "")
    min_covar = float(getattr(model, "min_covar", 1e-3))
    _, q0 = _stat_mstep(st, s, family, kind, min_covar)
    out = []
    for cand in _candidates(s, kinds):
        values, q = _stat_mstep(st, cand.child, family, kind, min_covar)
        values = _warm(model, values)
        k = _n_free(model, cand.child, values)
        if k is None:
            continue
        cost = max(q0 - q, 0.0)
        out.append(_Ranked(cand, cost, k - n_free, 2.0 * cost + (k - n_free) * penalty,
                           values))
    return sorted(out, key=lambda r: (r.predicted, r.cand.label))


# ---------------------------------------------------------------------- refits
@dataclass(frozen=True)
class _Fit:
    model: Any
    seconds: float
    iterations: int


def _refit_task(task: tuple[Any, dict[str, np.ndarray], Any, Any]) -> _Fit:
    """Fit one child from its warm start (an executor task)."""
    est, values, x, lengths = task
    t0 = time.perf_counter()
    est.fit(x, lengths, start=values)
    n_free = est.n_free
    if n_free != est.layout_.n_free:  # pragma: no cover - the registry is the only count
        raise AssertionError("n_free differs from the compiled registry")
    return _Fit(est, time.perf_counter() - t0, int(est.monitor_.iter))


def _refit_all(tasks: list[tuple[Any, dict[str, np.ndarray], Any, Any]],
               executor: Any) -> list[_Fit]:
    if executor is None or len(tasks) < 2:
        return [_refit_task(t) for t in tasks]
    return list(executor.map(_refit_task, executor.put(tasks)))


def _warm(parent: Any, stat_values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The child's start: the tied M-step on the parent's statistics, probabilities floored
    (a warm start must not turn a vanished probability into a structural zero) except where
    the parent has structural zeros (fixed at 0: they stay)."""
    values = {k: v for k, v in parent.em_state().values.items()
              if k in ("startprob", "transmat", *parent._emission().letters.values())}
    values.update({k: np.array(v, dtype=float) for k, v in stat_values.items()})
    layout = parent.layout_
    for name in ("startprob", "transmat"):
        zeros = layout.fixed_mask(name) & (np.asarray(parent.em_state().values[name]) == 0)
        values[name] = _floored(values[name], zeros)
    return values


# ---------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class _Scorer:
    criterion: str
    x: np.ndarray
    lengths: Any
    heldout: tuple[Any, Any] | None

    @property
    def n_obs(self) -> int:
        return int(self.x.shape[0])

    @property
    def penalty(self) -> float:
        return 2.0 if self.criterion == "aic" else math.log(self.n_obs)

    def step(self, index: int, kind: str, merged: tuple[str, ...], fit: _Fit, parent_k: int,
             predicted: float, seconds: float) -> PathStep:
        est = fit.model
        ll = float(est.score(self.x, self.lengths))
        held = math.nan if self.heldout is None else float(est.score(*self.heldout))
        n_free = int(est.layout_.n_free)
        crit = criterion_value(self.criterion, loglik=ll, n_free=n_free, n_obs=self.n_obs,
                               heldout=None if math.isnan(held) else held)
        return PathStep(index, kind, merged, n_free, n_free - parent_k if index else 0, ll,
                        crit, predicted if self.criterion != "heldout" else math.nan,
                        fit.iterations, seconds, held)


def _checked(model: Any, candidates: Sequence[str] | str, criterion: str,
             heldout: Any) -> tuple[str, tuple[str, ...]]:
    check_criterion(criterion)
    family = _family(model)
    if getattr(model, "soft_ties", None):
        raise DeclarationError("discover and split_test search hard ties; the model declares "
                               "soft_ties (fit it without them, or compare spreads instead)")
    kinds = (candidates,) if isinstance(candidates, str) else tuple(candidates)
    valid = candidate_kinds(model)
    unknown = [k for k in kinds if k not in valid]
    if unknown or not kinds:
        raise UnknownParameterError(f"discover: unknown candidate kinds {unknown or kinds!r} "
                                    f"for {type(model).__name__}; use some of {list(valid)}")
    if criterion == "heldout" and heldout is None:
        from tiedsci.errors import CriterionError

        raise CriterionError("criterion 'heldout' needs held-out data: "
                             "discover(..., heldout=(X_heldout, lengths_heldout))")
    return family, kinds


def _fitted(model: Any) -> Any:
    try:
        model._values()
    except NotFittedError:
        raise NotFittedError(f"discover needs a fitted {type(model).__name__} (the starting "
                             "point of the search): call fit first, or pass "
                             "start='split' / 'kmeans'") from None
    if getattr(model, "layout_", None) is None:
        raise NotFittedError(f"discover needs a fitted {type(model).__name__}: call fit first")
    return model


# ---------------------------------------------------------------------- starts
def _untied(model: Any, n_components: int, n_iter: int, tol: float, seed: Any) -> Any:
    est = type(model)(**model.get_params())
    est.set_params(n_components=n_components, tie_states=None, ties=None, fixed=None,
                   n_iter=n_iter, tol=tol, random_state=seed,
                   init_params="st" + "".join(est._emission().letters))
    if "soft_ties" in est.get_params():
        est.set_params(soft_ties=None, spread=None)
    return est


def kmeans_start(model: Any, X: Any, lengths: Any = None, *, n_init: int = 4,
                 n_iter: int = 300, tol: float = 1e-4, random_state: int = 0) -> Any:
    """Best (by log-likelihood) of ``n_init`` untied fits from the estimator's own
    (k-means) initialisation, with ``model``'s configuration and number of states."""
    fits = [_untied(model, int(model.n_components), n_iter, tol, random_state + i)
            .fit(X, lengths) for i in range(n_init)]
    return max(fits, key=lambda f: f.monitor_.history[-1])


def split_grown_start(model: Any, X: Any, lengths: Any = None, *, n_init: int = 2,
                      n_iter: int = 300, tol: float = 1e-4, random_state: int = 0) -> Any:
    """An untied start grown by splitting (shared/notes/discovery.md, section 3).

    Fits untied models of ``M = 1 .. K`` states (``n_init`` starts each), keeps the BIC-best
    ``M``, gives the ``K - M`` spare states to the emissions with the largest occupancy per
    copy (copies share their parent's emission, slightly perturbed, and split its incoming
    transitions at random), then runs untied EM with ``K`` states. The allocation is
    recorded in ``info_`` of the returned estimator (``{"M": ..., "copies": [...]}``).
    """
    k = int(model.n_components)
    rng = np.random.default_rng(random_state)
    best, best_bic = None, math.inf
    for m in range(1, k + 1):
        fits = [_untied(model, m, n_iter, tol, random_state + 1000 * m + i).fit(X, lengths)
                for i in range(n_init)]
        fit = max(fits, key=lambda f: f.monitor_.history[-1])
        bic = fit.bic(X, lengths)
        if bic < best_bic:
            best, best_bic = fit, bic
    assert best is not None
    st = best.suff_stats(X, lengths)
    copies = np.ones(int(best.n_components), dtype=int)
    for _ in range(k - int(best.n_components)):
        copies[int(np.argmax(st.n / copies))] += 1
    values = _split_values(best, copies, rng)
    out = _untied(model, k, n_iter, tol, random_state)
    out.set_params(init_params="")
    out.fit(X, lengths, start=values)
    out.info_ = {"M": int(best.n_components), "copies": copies.tolist(),
                 "bic_M": float(best_bic)}
    return out


def _split_values(fit: Any, copies: np.ndarray, rng: np.random.Generator
                  ) -> dict[str, np.ndarray]:
    """Values of the grown model: state ``m`` repeated ``copies[m]`` times."""
    v = fit.em_state().values
    src = np.repeat(np.arange(len(copies)), copies)
    share = np.empty(len(src))
    for m in range(len(copies)):
        share[src == m] = rng.dirichlet(np.full(copies[m], 5.0))
    out = {"startprob": _floored(v["startprob"][src] * share),
           "transmat": _floored(v["transmat"][src][:, src] * share[None, :])}
    for name in fit._emission().letters.values():
        arr = np.asarray(v[name], dtype=float)[src].copy()
        if name == "means":
            scale = np.sqrt(np.asarray(v["covars"], dtype=float)[src])
            scale = scale if scale.ndim == arr.ndim else scale[:, None]
            arr += 0.05 * scale * rng.standard_normal(arr.shape)
        elif name == "lambdas":
            arr *= np.exp(0.05 * rng.standard_normal(arr.shape))
        out[name] = arr
    return out


def _start_model(model: Any, start: str, X: Any, lengths: Any, n_iter: int, tol: float,
                 random_state: int) -> tuple[Any, dict[str, Any]]:
    if start == "model":
        return _fitted(model), {"method": "model"}
    if start == "kmeans":
        fit = kmeans_start(model, X, lengths, n_iter=n_iter, tol=tol, random_state=random_state)
        return fit, {"method": "kmeans"}
    if start == "split":
        fit = split_grown_start(model, X, lengths, n_iter=n_iter, tol=tol,
                                random_state=random_state)
        return fit, {"method": "split", **fit.info_}
    raise DeclarationError(f"start must be 'model', 'split' or 'kmeans', got {start!r}")


# ---------------------------------------------------------------------- the search
def discover(model: Any, X: Any, lengths: Any = None, *, criterion: str = "bic",
             candidates: Sequence[str] | str = "state", start: str = "model",
             heldout: tuple[Any, Any] | None = None, max_steps: int | None = None,
             n_iter: int = 100, tol: float = 1e-4, final_iter: int = 300,
             start_iter: int | None = None, rescore: int = 0, short_iter: int = 10,
             executor: Any = None, random_state: int = 0) -> DiscoveryPath:
    """Greedy bottom-up tie discovery (see the module docstring).

    Parameters
    ----------
    model : GaussianHMM (diag, spherical) or PoissonHMM
        Fitted (``start="model"``): the starting point, its declared ties the starting
        structure; otherwise its configuration (class, states, covariance type, priors).
    X, lengths : arrays
        Training sequences (``n_obs`` of BIC is the number of frames).
    criterion : {"bic", "aic", "heldout"}
        Chooses the path point (lower is better), on refitted likelihoods.
    candidates : str or sequence of str
        Kinds of merges: ``"state"`` (whole emissions), emission block names (``"means"``,
        ``"covars"`` or ``"lambdas"``), ``"transmat"`` (transition rows).
    start : {"model", "split", "kmeans"}
        The untied start (see :func:`split_grown_start`, :func:`kmeans_start`).
    heldout : (X, lengths), optional
        Held-out sequences; their log-likelihood is reported on every step and is the
        criterion ``"heldout"``.
    max_steps : int, optional
        Stop after this many merges (default: until nothing is left to merge).
    n_iter, tol : int, float
        EM of every path refit (scoring: a few dozen iterations warm from the parent).
    final_iter : int
        Further EM iterations for the chosen model only (its row is updated; 0: none).
    start_iter : int, optional
        EM iterations of the fits building the start (default ``3 * n_iter``).
    rescore : int
        Refit the best ``rescore`` candidates (by predicted change) for ``short_iter``
        iterations and merge the one with the best refitted criterion (0: the predicted
        ranking decides). These short refits run through ``executor``.
    executor : optional
        A :mod:`tiedsci.parallel` executor for the candidate refits (``rescore``).

    Returns
    -------
    DiscoveryPath
        ``models`` are the fitted estimators of every step; ``info`` holds the start
        (method, occupancy per state, the split-grown allocation), the candidate kinds and the
        total time.
    """
    t_all = time.perf_counter()
    family, kinds = _checked(model, candidates, criterion, heldout)
    x = model._validated(X)
    scorer = _Scorer(criterion, x, lengths, heldout)
    t0 = time.perf_counter()
    parent, info = _start_model(model, start, x, lengths,
                                start_iter if start_iter is not None else 3 * n_iter, tol,
                                random_state)
    structure = Structure.from_model(parent, _EMISSION_BLOCKS[family])
    st = parent.suff_stats(x, lengths)
    info.update({"occupancy": np.round(st.n, 3).tolist(), "candidates": list(kinds),
                 "start_seconds": time.perf_counter() - t0})
    first = _Fit(parent, time.perf_counter() - t0, int(parent.monitor_.iter))
    path = DiscoveryPath(criterion, scorer.n_obs, info=info)
    path.steps.append(scorer.step(0, "start", (), first, 0, math.nan, first.seconds))
    path.models.append(parent)
    while max_steps is None or len(path.steps) <= max_steps:
        t0 = time.perf_counter()
        ranked = _rank(parent, st, structure, kinds, family, scorer.penalty,
                       int(parent.layout_.n_free))
        if not ranked:
            break
        chosen = _choose(parent, ranked, rescore, short_iter, scorer, x, lengths, executor)
        fit = _refit_task((_child(parent, chosen.cand.child, n_iter, tol), chosen.values, x,
                           lengths))
        expected = int(parent.layout_.n_free) + chosen.dk
        if fit.model.layout_.n_free != expected:
            raise AssertionError(f"n_free {fit.model.layout_.n_free} after a merge, "
                                 f"expected {expected}: the warm start changed the structure")
        step = scorer.step(len(path.steps), chosen.cand.kind, chosen.cand.label, fit,
                           int(parent.layout_.n_free), chosen.predicted,
                           time.perf_counter() - t0)
        path.steps.append(step)
        path.models.append(fit.model)
        parent, structure = fit.model, chosen.cand.child
        st = parent.suff_stats(x, lengths)
    if final_iter > 0 and path.best > 0:
        _final_refit(path, scorer, final_iter, tol)
    path.info["seconds"] = time.perf_counter() - t_all
    path.info["structures"] = [m.ties or {} for m in path.models]
    return path


def _final_refit(path: DiscoveryPath, scorer: _Scorer, final_iter: int, tol: float) -> None:
    """Continue EM on the chosen model (a copy) and update its row."""
    from dataclasses import replace

    i = path.best
    chosen = path.models[i]
    est = type(chosen)(**chosen.get_params())
    state = chosen.em_state()
    est.set_params(n_iter=int(state.monitor.iter) + final_iter, tol=tol)
    t0 = time.perf_counter()
    est.fit(scorer.x, scorer.lengths, start=state)
    seconds = time.perf_counter() - t0
    old = path.steps[i]
    fit = _Fit(est, old.seconds + seconds, int(est.monitor_.iter))
    new = scorer.step(old.step, old.kind, old.merged, fit, old.n_free - old.dk, old.predicted,
                      old.seconds + seconds)
    path.steps[i] = replace(new, dk=old.dk)
    path.models[i] = est
    path.info["final"] = {"step": old.step, "iterations": int(est.monitor_.iter),
                          "loglik_before": old.loglik, "loglik": new.loglik,
                          "seconds": seconds}


def _choose(parent: Any, ranked: list[_Ranked], rescore: int, short_iter: int,
            scorer: _Scorer, x: np.ndarray, lengths: Any, executor: Any) -> _Ranked:
    if rescore <= 1:
        return ranked[0]
    top = ranked[:rescore]
    tasks = [(_child(parent, r.cand.child, short_iter, -math.inf), r.values, x, lengths)
             for r in top]
    fits = _refit_all(tasks, executor)
    k0 = int(parent.layout_.n_free)
    scores = [scorer.step(1, r.cand.kind, r.cand.label, f, k0, r.predicted, 0.0).criterion
              for r, f in zip(top, fits)]
    return top[int(np.argmin(scores))]


def _jitter(values: dict[str, np.ndarray], states: Sequence[int], rng: np.random.Generator
            ) -> dict[str, np.ndarray]:
    """Move the means (log-rates) of ``states`` apart by 0.1 standard deviation."""
    rows = list(states)
    if "means" in values:
        sd = np.sqrt(np.asarray(values["covars"], dtype=float)[rows])
        sd = sd if sd.ndim == values["means"].ndim else sd[:, None]
        values["means"][rows] += 0.1 * sd * rng.standard_normal(sd.shape)
    if "lambdas" in values:
        values["lambdas"][rows] *= np.exp(0.1 * rng.standard_normal(values["lambdas"][rows]
                                                                    .shape))
    return values


def split_test(model: Any, X: Any, lengths: Any = None, *, criterion: str = "bic",
               heldout: tuple[Any, Any] | None = None, n_iter: int = 300,
               tol: float = 1e-4, executor: Any = None,
               random_state: int = 0) -> DiscoveryPath:
    """The reverse test of a declared tie: does the criterion want it split?

    Step 0 is the fitted ``model`` as declared; every further step splits one tie group of
    one block, or one group of states sharing their whole emission (``merged`` names it:
    ``"means{0,1}"``, ``"state{0,1}"``), and refits warm from ``model`` (the splits are
    independent: they run through ``executor`` when given). ``path.best == 0`` keeps every
    declared tie.
    """
    family, _ = _checked(model, "state", criterion, heldout)
    _fitted(model)
    x = model._validated(X)
    scorer = _Scorer(criterion, x, lengths, heldout)
    structure = Structure.from_model(model, _EMISSION_BLOCKS[family])
    path = DiscoveryPath(criterion, scorer.n_obs, info={"method": "split_test"})
    path.steps.append(scorer.step(0, "declared", (), _Fit(model, 0.0, int(model.monitor_.iter)),
                                  0, math.nan, 0.0))
    path.models.append(model)
    splits = structure.splits()
    st = model.suff_stats(x, lengths)
    kind = getattr(model._emission(), "kind", "")
    min_covar = float(getattr(model, "min_covar", 1e-3))
    rng = np.random.default_rng(random_state)
    # each split starts from the split structure's M-step on the declared model's statistics,
    # the split members moved apart a little (members equal at the start are a saddle of EM)
    starts = [_jitter(_warm(model, _stat_mstep(st, structure.split(b, c), family, kind,
                                               min_covar)[0]), c, rng) for b, c in splits]
    tasks = [(_child(model, structure.split(b, c), n_iter, tol), v, x, lengths)
             for (b, c), v in zip(splits, starts)]
    k0 = int(model.layout_.n_free)
    for (b, c), v, fit in zip(splits, starts, _refit_all(tasks, executor)):
        expected = _n_free(model, structure.split(b, c), v)
        if fit.model.layout_.n_free != expected:  # pragma: no cover - guarded by _warm
            raise AssertionError("a split changed the structure beyond the split tie")
        path.steps.append(scorer.step(len(path.steps), "split", (f"{b}{_label(c)}",), fit, k0,
                                      math.nan, fit.seconds))
        path.models.append(fit.model)
    return path


def planted_recovery(model: Any, X: Any, lengths: Any, states: np.ndarray,
                     groups: Sequence[Sequence[int]]) -> dict[str, Any]:
    """Does a fitted model recover a planted tie structure? (for simulation studies)

    Parameters
    ----------
    model : fitted estimator
    X, lengths : the data
    states : array of int, shape (n_samples,)
        The true hidden state of every frame.
    groups : list of lists of int
        The planted groups of true states sharing one emission.

    Returns
    -------
    dict
        ``emission``: every class of states sharing one emission in ``model`` holds states of
        one planted group (by majority posterior mass) and the classes match the groups one to
        one (the right set of distinct emissions); ``strict``: the model's emission partition
        equals the planted one under a one-to-one (Hungarian) matching of fitted to true
        states; ``classes``: the model's emission classes; ``majority``: planted group of
        each fitted state.
    """
    from scipy.optimize import linear_sum_assignment

    gamma = model.predict_proba(X, lengths)
    k_true = int(max(max(g) for g in groups)) + 1
    onehot = np.eye(k_true)[np.asarray(states, dtype=int)]
    overlap = gamma.T @ onehot  # (fitted, true)
    group_of = np.empty(k_true, dtype=int)
    for i, g in enumerate(groups):
        group_of[list(g)] = i
    by_group = overlap @ np.eye(len(groups))[group_of]
    majority = by_group.argmax(1)
    fam = _EMISSION_BLOCKS[_family(model)]
    classes = Structure.from_model(model, fam).emission_classes()
    labels = [{int(majority[s]) for s in c} for c in classes]
    emission = (all(len(lb) == 1 for lb in labels) and len(classes) == len(groups)
                and {next(iter(lb)) for lb in labels} == set(range(len(groups))))
    strict = False
    if overlap.shape[0] == k_true:
        rows, cols = linear_sum_assignment(-overlap)
        to_true = dict(zip(rows.tolist(), cols.tolist()))
        mapped = {frozenset(to_true[s] for s in c) for c in classes}
        strict = mapped == {frozenset(g) for g in groups}
    return {"emission": bool(emission), "strict": bool(strict),
            "classes": [list(c) for c in classes], "majority": majority.tolist()}


def sticky_gaussian_hmm(means: Any, covars: Any, *, stay: float = 0.7,
                        concentration: float = 0.5, seed: int = 0) -> Any:
    """A diagonal Gaussian HMM for simulation studies (planted structure).

    Uniform start; transition rows ``stay * I + (1 - stay) * Dirichlet(concentration)`` drawn
    with ``numpy.random.default_rng(seed)``. ``means`` (K, D) and ``covars`` (K, D) as
    hmmlearn's diagonal ``means_`` / ``covars_``; equal rows plant states with identical
    emissions (the tied-truth set-up of the tests: 8 states in 4 pairs, ``stay=0.7``,
    ``concentration=0.5``).
    """
    from tiedsci.hmm.estimators import GaussianHMM

    means = np.asarray(means, dtype=float)
    k = means.shape[0]
    rng = np.random.default_rng(seed)
    m = GaussianHMM(k, "diag", init_params="")
    m.startprob_ = np.full(k, 1.0 / k)
    trans = rng.dirichlet(np.full(k, concentration), size=k) * (1 - stay) + np.eye(k) * stay
    m.transmat_ = trans / trans.sum(1, keepdims=True)
    m.means_ = means
    m.covars_ = np.asarray(covars, dtype=float)
    return m
