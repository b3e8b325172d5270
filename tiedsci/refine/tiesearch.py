"""Tie discovery for joint refinement: which per-dataset parameters do the data want shared?

:func:`discover` starts from a fitted refinement and walks the registry's lattice of tie
structures greedily, bottom-up (shared/notes/discovery.md, sections 2c and 4):

- *merge* candidates: per-dataset local parameters (``d0.zero``, ``d1.zero``, ...) whose
  groups could be tied, over all datasets or over subsets. Each pair of groups is scored
  by the Wald statistic from the current covariance, ``(x_A - x_B)' (M C M')^-1 (x_A - x_B)``
  (the predicted rise of chi^2; exact for linear models), plus the criterion's penalty of the
  ``dk`` the compiled candidate registry gives (never a hand count);
- *offset* candidates: parameters whose value 0 means "no difference between datasets" (a
  per-dataset lattice strain, a zero-shift difference): fixing one at 0 is a tie of the
  datasets it separates, scored by its Wald statistic the same way;
- *split* candidates (the reverse test): a shared parameter re-declared once per dataset
  (``<dataset>.<name>``, which the models' scoped look-up then read); scored by a refit.

The cheapest candidate by predicted criterion change is applied, the child is refitted warm
from its parent's values, and the step is recorded (chi^2 as ``-2 loglik``, ``n_free`` from
the compiled registry, LM evaluations and seconds); the search continues until nothing is
left to merge (or ``max_steps``). Every model on the path is a
:class:`~tiedsci.refine.RefinementResult`; the chosen one (lowest criterion) is
``path.best_model``, its registry printed by ``best_model.layout.describe()`` and saved by
``best_model.save(path)``. Splits are scored from the start model (their ``dk`` is relative
to it) and listed before the merges.
"""

from __future__ import annotations

import difflib
import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tiedsci.core import Layout, Registry
from tiedsci.discovery import DiscoveryPath, PathStep, check_criterion, criterion_value
from tiedsci.errors import NotFittedError, UnknownParameterError

if TYPE_CHECKING:
    from tiedsci.refine.joint import JointRefinement
    from tiedsci.refine.result import RefinementResult

__all__ = ["discover", "wald", "local_families"]


@dataclass
class _Node:
    """One model on the path: its registry, fit, and the tie structure it stands for."""

    registry: Registry
    result: RefinementResult
    groups: dict[str, list[tuple[str, ...]]]  # family -> groups of full names
    zeroed: tuple[str, ...] = ()
    splits: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Candidate:
    kind: str
    family: str
    merged: tuple[str, ...]
    registry: Registry
    layout: Layout
    wald: float
    dk: int
    groups: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    zeroed: tuple[str, ...] = ()


# ---------------------------------------------------------------------- candidates
def local_families(jr: JointRefinement, names: Sequence[str] | None = None
                   ) -> dict[str, tuple[str, ...]]:
    """``short name -> per-dataset full names`` of the local parameters to search over.

    Parameters
    ----------
    jr : JointRefinement
    names : sequence of str, optional
        Short names (``"zero"``) or full names (``"d0.zero"``, meaning its short name);
        default: every short name declared for two or more datasets.

    Raises
    ------
    UnknownParameterError
        A name that is no dataset's local parameter (with the closest names).
    """
    declared = jr.registry.names
    datasets = jr.dataset_names
    by_short: dict[str, list[str]] = {}
    for ds in datasets:
        for n in declared:
            if n.startswith(f"{ds}."):
                by_short.setdefault(n[len(ds) + 1:], []).append(n)
    if names is None:
        return {k: tuple(v) for k, v in by_short.items() if len(v) >= 2}
    out = {}
    for name in names:
        short = next((name[len(ds) + 1:] for ds in datasets if name.startswith(f"{ds}.")),
                     name)
        if len(by_short.get(short, ())) < 2:
            pool = list(by_short) + list(declared)
            close = difflib.get_close_matches(name, pool, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownParameterError(
                f"candidate {name!r} is not a local parameter of two or more datasets "
                f"(locals: {sorted(k for k, v in by_short.items() if len(v) >= 2)}){hint}")
        out[short] = tuple(by_short[short])
    return out


def _check_names(jr: JointRefinement, names: Sequence[str], what: str) -> None:
    declared = jr.registry.names
    for n in names:
        if n not in declared:
            close = difflib.get_close_matches(n, declared, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownParameterError(f"{what} candidate {n!r} is not declared{hint}")


def _value_map(result: RefinementResult) -> sp.csr_matrix:
    """``d values / d free values`` (elements x n_free) at the fit: the tie map."""
    layout = result.layout
    t = layout.transform_diagonal(result.theta)
    with np.errstate(divide="ignore"):
        inv = np.where(t != 0, 1.0 / t, 0.0)
    return sp.csr_matrix(layout.jacobian(result.theta) @ sp.diags(inv))


def _elements(layout: Layout, name: str) -> np.ndarray:
    s = layout.flat_slice(name)
    return np.arange(s.start, s.stop)


def wald(result: RefinementResult, rows: np.ndarray, diff: np.ndarray) -> float:
    """``diff' (M C M')^+ diff``: predicted chi^2 rise of the constraint ``M values = 0``.

    Parameters
    ----------
    result : RefinementResult
        With its layout and covariance.
    rows : ndarray, shape (r, n_free)
        ``M`` in the free values (rows of the tie map).
    diff : ndarray, shape (r,)
        The constrained contrasts at the fit.
    """
    cov = result.covariance
    if result.scale_covar and np.isfinite(result.redchi) and result.redchi > 0:
        cov = cov / result.redchi  # chi^2 rises by the unscaled statistic (known sigma)
    v = rows @ cov @ rows.T
    return float(diff @ np.linalg.pinv(np.atleast_2d(v), rcond=1e-12) @ diff)


def _contrast(result: RefinementResult, amap: sp.csr_matrix, a: str, b: str
              ) -> tuple[np.ndarray, np.ndarray]:
    layout = result.layout
    ea, eb = _elements(layout, a), _elements(layout, b)
    rows = (amap[ea] - amap[eb]).toarray()
    diff = np.ravel(result.values[a]) - np.ravel(result.values[b])
    return rows, diff


def _initial_groups(result: RefinementResult, members: Sequence[str]) -> list[tuple[str, ...]]:
    """Members grouped by the free values they share at the start (existing ties)."""
    amap = _value_map(result)
    layout = result.layout
    keys: dict[tuple[int, ...], list[str]] = {}
    for m in members:
        e = _elements(layout, m)[0]
        keys.setdefault(tuple(amap[e].indices.tolist()), []).append(m)
    return [tuple(g) for g in keys.values()]


def _merge_candidates(node: _Node) -> list[_Candidate]:
    res = node.result
    amap = _value_map(res)
    out = []
    for fam, groups in node.groups.items():
        for ga, gb in itertools.combinations(groups, 2):
            rows, diff = _contrast(res, amap, ga[0], gb[0])
            reg = node.registry.copy()
            reg.set_values(res.values)
            reg.tie(ga[0], *gb)
            layout = reg.compile()
            new = [g for g in groups if g not in (ga, gb)] + [ga + gb]
            out.append(_Candidate("local->shared", fam, (_label(ga), _label(gb)), reg, layout,
                                  wald(res, rows, diff), layout.n_free - res.n_free,
                                  {**node.groups, fam: new}, node.zeroed))
    return out


def _offset_candidates(node: _Node, offsets: Sequence[str]) -> list[_Candidate]:
    res = node.result
    amap = _value_map(res)
    out = []
    for name in offsets:
        if name in node.zeroed:
            continue
        rows = amap[_elements(res.layout, name)].toarray()
        reg = node.registry.copy()
        reg.set_values(res.values)
        reg.fix(name, np.zeros(res.layout.shapes[name]))
        layout = reg.compile()
        out.append(_Candidate("offset=0", name, (name,), reg, layout,
                              wald(res, rows, np.ravel(res.values[name])),
                              layout.n_free - res.n_free, node.groups,
                              node.zeroed + (name,)))
    return out


def _label(group: Sequence[str]) -> str:
    return "{" + ", ".join(group) + "}"


# ---------------------------------------------------------------------- the search
@dataclass
class _Scorer:
    criterion: str
    n_obs: int
    heldout: Callable[[RefinementResult], float] | None

    def penalty(self, dk: int) -> float:
        """Criterion change of ``dk`` more free parameters (0 for held-out scoring)."""
        if self.criterion == "heldout":
            return float("nan")
        per = np.log(self.n_obs) if self.criterion == "bic" else 2.0
        return float(dk * per)

    def score(self, res: RefinementResult) -> tuple[float, float]:
        """``(criterion, held-out loglik)`` of a fitted model."""
        held = self.heldout(res) if self.heldout is not None else None
        crit = criterion_value(self.criterion, loglik=-0.5 * res.chi2, n_free=res.n_free,
                               n_obs=self.n_obs, heldout=held)
        return crit, float("nan") if held is None else float(held)


def discover(jr: JointRefinement, start: RefinementResult | None,
             candidates: Sequence[str] | None = None, *, offsets: Sequence[str] = (),
             splits: Sequence[str] = (), criterion: str = "bic",
             heldout: Callable[[RefinementResult], float] | None = None,
             max_steps: int | None = None, fit_kwargs: Mapping[str, Any] | None = None
             ) -> DiscoveryPath:
    """Greedy bottom-up tie discovery over a fitted joint refinement.

    Parameters
    ----------
    jr : JointRefinement
        The refinement whose registry ``start`` was fitted from.
    start : RefinementResult
        Its fit (``jr.fit()``): the covariance ranks the first candidates and the values
        warm-start the first refits.
    candidates : sequence of str, optional
        Local parameters that may become shared: short names (``"zero"``: every dataset's
        ``<dataset>.zero``) or full names; default: every local declared for two or more
        datasets. Pass ``[]`` for none.
    offsets : sequence of str
        Parameters whose value 0 ties datasets together (e.g. ``"neutron.dij"``, a strain
        of one dataset's lattice against the shared one); a candidate step fixes one at 0.
    splits : sequence of str
        Shared parameters to test for a split per dataset (refitted from ``start``).
    criterion : {"bic", "aic", "heldout"}
        Lower is better; BIC (default) uses ``n_obs`` data points and the compiled
        ``n_free``. ``"heldout"`` needs ``heldout``.
    heldout : callable, optional
        ``heldout(result) -> log-likelihood`` of held-out data.
    max_steps : int, optional
        Stop after this many merges (default: until nothing is left).
    fit_kwargs : mapping, optional
        Passed to every refit (:meth:`JointRefinement.fit`).

    Returns
    -------
    DiscoveryPath
        ``models`` are the RefinementResults; ``info["groups"]`` the tie structure of each
        step, ``info["candidates"]`` what was searched.

    Raises
    ------
    NotFittedError
        ``start`` is not a fit of ``jr`` (None, or without its layout).
    UnknownParameterError
        A candidate, offset or split that is not declared (or not a local of two datasets).
    CriterionError
        An unknown criterion, or ``"heldout"`` without ``heldout``.
    """
    check_criterion(criterion)
    if start is None or getattr(start, "layout", None) is None:
        raise NotFittedError("tie discovery starts from a fitted refinement: pass "
                             "start=jr.fit() (a result read back by load() has no layout)")
    if set(start.layout.names) != set(jr.registry.names):
        raise NotFittedError("start is not a fit of this refinement (its parameters differ)")
    families = local_families(jr, candidates) if candidates != [] else {}
    _check_names(jr, offsets, "offset")
    _check_names(jr, splits, "split")
    kw = dict(fit_kwargs or {})
    scorer = _Scorer(criterion, start.n_obs, heldout)
    # the start's own declaration: after a staged fit, parameters no stage varied stay fixed
    root = _Node(start.layout.to_registry(start.values), start,
                 {f: _initial_groups(start, m) for f, m in families.items()})
    path = DiscoveryPath(criterion, start.n_obs, info={
        "candidates": {"merge": {f: list(m) for f, m in families.items()},
                       "offsets": list(offsets), "splits": list(splits)},
        "groups": [], "wald": []})
    _record(path, scorer, root, PathStep(0, "start", (), start.n_free, 0, -0.5 * start.chi2,
                                         0.0, iterations=start.nfev), None)
    for name in splits:
        t0 = time.perf_counter()
        res = _split(jr, root, name, kw)
        _record(path, scorer, _Node(root.registry, res, root.groups, splits=(name,)),
                PathStep(len(path.steps), "split", (name,), res.n_free,
                         res.n_free - start.n_free, -0.5 * res.chi2, 0.0,
                         iterations=res.nfev, seconds=time.perf_counter() - t0), None)
    node = root
    while max_steps is None or len(path.steps) - 1 - len(splits) < max_steps:
        t0 = time.perf_counter()
        cands = _merge_candidates(node) + _offset_candidates(node, offsets)
        if not cands:
            break
        pen = [scorer.penalty(c.dk) for c in cands]
        order = [c.wald + (p if np.isfinite(p) else 0.0) for c, p in zip(cands, pen)]
        best = int(np.argmin(order))
        c = cands[best]
        res = jr.with_registry(c.registry).fit(**kw)
        node = _Node(c.registry, res, c.groups, c.zeroed)
        _record(path, scorer, node, PathStep(
            len(path.steps), c.kind, c.merged, res.n_free, c.dk, -0.5 * res.chi2, 0.0,
            predicted=c.wald + pen[best], iterations=res.nfev,
            seconds=time.perf_counter() - t0), c.wald)
    return path


def _record(path: DiscoveryPath, scorer: _Scorer, node: _Node, step: PathStep,
            wald_stat: float | None) -> None:
    from dataclasses import replace

    crit, held = scorer.score(node.result)
    path.steps.append(replace(step, criterion=crit, heldout=held))
    path.models.append(node.result)
    path.info["groups"].append({
        **{f: [list(g) for g in gs] for f, gs in node.groups.items()},
        "zeroed": list(node.zeroed), "split": list(node.splits)})
    path.info["wald"].append(wald_stat)


def _split(jr: JointRefinement, root: _Node, name: str, kw: Mapping[str, Any]
           ) -> RefinementResult:
    """Refit with ``name`` re-declared per dataset (the shared one fixed and unused)."""
    reg = root.registry.copy()
    reg.set_values(root.result.values)
    value = root.result.values[name]
    for ds in jr.dataset_names:
        reg.declare(f"{ds}.{name}", value, unit=root.result.layout.units.get(name, ""))
    reg.fix(name)
    return jr.with_registry(reg, same_names=False).fit(**kw)
