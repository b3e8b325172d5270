"""Soft ties in least squares: restraint rows around a free centre, with a learned spread.

A soft tie (:meth:`tiedsci.core.Registry.soft_tie`) of members ``x_k`` around a centre ``c``
adds the restraint rows ``(x_k - c) / tau`` to the weighted residuals (the core's
:meth:`~tiedsci.core.Layout.restraint_residuals`), so the one Levenberg-Marquardt loop fits
it as it fits any restraint; ``c`` is a free parameter, refined and reported with its esd.
``tau = 0`` compiles as the hard tie (members tied to the centre) and ``tau = inf`` as the
untied fit (the centre, which no data see, becomes the members' mean), both exactly.

A spread declared ``None`` is learned here by type-II (REML) maximum likelihood of the
problem linearised at the penalised optimum (Laplace; exact for linear models), never by the
joint mode (which collapses to ``tau = 0``; shared/notes/discovery.md, section 2b)::

    -2 l(tau) = chi2 + sum_k (x_k - c)^2 / tau^2 + log det(J'WJ + P_tau) + R log tau^2

with ``J'WJ + P_tau`` the normal matrix of the augmented residuals (in the free values) and
``R`` the number of soft-tie rows. Two searches: ``"search"`` (default) minimises it over
``log tau`` by a bounded Brent search with one warm refit per trial and compares the
boundary ``tau = 0`` (the hard tie); ``"mackay"`` iterates MacKay's (1992) fixed point
``1/tau^2 = gamma / sum_k (x_k - c)^2``, ``gamma = R - tr[(J'WJ + P)^-1 P]``, one warm refit
per step. Both report ``tau``, the profile they evaluated and the number of refits.

The effective number of parameters (Hodges & Sargent 2001) is
``n_eff = tr[(J'WJ + P)^-1 J'WJ] = n_free - tr[(J'WJ + P)^-1 P]``, between the hard-tie and
the untied counts; the reduced chi-square of a soft-tied fit uses ``dof = n_obs - n_eff``
(plus the rows of ordinary restraints, as before).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize_scalar

from tiedsci.core import Layout, Registry
from tiedsci.core.softtie import is_active, soft_rows, with_spreads

if TYPE_CHECKING:
    from tiedsci.refine.joint import JointRefinement
    from tiedsci.refine.result import RefinementResult

__all__ = ["SoftStats", "soft_statistics", "learn_spreads", "marginal_deviance",
           "SPREAD_METHODS"]

SPREAD_METHODS = ("search", "mackay")


# ---------------------------------------------------------------------- statistics of one fit
@dataclass(frozen=True)
class SoftStats:
    """Degrees of freedom of a fit with active soft ties.

    Attributes
    ----------
    n_eff : float
        ``tr[(J'WJ + P)^-1 J'WJ]``: effective number of free parameters.
    dof : float
        ``n_obs + (ordinary restraint rows) - n_eff``.
    redchi : float
        ``(chi2 + ordinary restraint penalty) / dof``.
    penalty : float
        Sum of squares of the soft-tie rows, ``sum_k (x_k - c)^2 / tau^2``.
    """

    n_eff: float
    dof: float
    redchi: float
    penalty: float


def _soft_jacobian(layout: Layout, theta: np.ndarray) -> sp.csr_matrix:
    """``d (soft-tie rows) / d theta``, shape (R, n_free): rows ``(e_x - e_c) / tau`` in the
    values, times the core's ``d values / d theta``."""
    rows, cols, vals = [], [], []
    r = 0
    for tie in layout.soft_ties:
        if not is_active(tie):
            continue
        c_el = layout.flat_slice(tie.centre.name).start + np.ravel(tie.centre.elements())
        for m in tie.members:
            m_el = layout.flat_slice(m.name).start + np.ravel(m.elements())
            for xe, ce in zip(m_el, c_el):
                rows += [r, r]
                cols += [int(xe), int(ce)]
                vals += [1.0 / tie.spread, -1.0 / tie.spread]
                r += 1
    s = sp.csr_matrix((vals, (rows, cols)), shape=(r, layout.n_values))
    return sp.csr_matrix(s @ layout.jacobian(theta))


def soft_statistics(layout: Layout, theta: np.ndarray, restraint_resids: np.ndarray | None,
                    cov_theta: np.ndarray | None, n_obs: int, chi2: float) -> SoftStats | None:
    """``n_eff``, ``dof`` and reduced chi-square of a fit with active soft ties.

    Parameters
    ----------
    layout : Layout
    theta : ndarray, shape (n_free,)
    restraint_resids : ndarray or None
        The restraint block's residuals (ordinary restraints, then the soft-tie rows).
    cov_theta : ndarray, shape (n_free, n_free), or None
        Unscaled ``(J'WJ + P)^-1`` in theta space.
    n_obs : int
    chi2 : float
        Data chi-square.

    Returns
    -------
    SoftStats or None
        None without active soft ties or without a covariance.
    """
    n_soft = soft_rows(layout.soft_ties)
    if not n_soft or cov_theta is None or restraint_resids is None:
        return None
    js = _soft_jacobian(layout, theta)
    trace_cp = float(np.sum((js @ cov_theta) * js.toarray()))
    n_eff = layout.n_free - trace_cp
    soft_pen = float(np.sum(restraint_resids[-n_soft:] ** 2))
    other_pen = float(np.sum(restraint_resids[:-n_soft] ** 2))
    dof = n_obs + (restraint_resids.size - n_soft) - n_eff
    redchi = (chi2 + other_pen) / dof if dof > 0 else float("nan")
    return SoftStats(n_eff, dof, redchi, soft_pen)


# ---------------------------------------------------------------------- learning the spread
def marginal_deviance(result: RefinementResult) -> float:
    """``-2 l(tau)`` of a fit (up to a constant): chi2 + penalty + log det(J'WJ + P) in the
    free values + ``R log tau^2`` over the active soft ties.

    At ``tau = 0`` (the hard-tie compile) the same expression (without soft rows) is the
    limit of the soft-tied one, so the boundary is compared on one scale. Uses the
    unscaled covariance (``result.covariance / factor`` when the fit scaled it).
    """
    cov = result.covariance
    if result.scale_covar and np.isfinite(result.redchi) and result.redchi > 0:
        cov = cov / result.redchi
    if cov.size == 0:
        logdet_h = 0.0
    else:
        sign, logdet_c = np.linalg.slogdet(cov)
        if sign <= 0 or not np.isfinite(logdet_c):
            return math.inf
        logdet_h = -logdet_c
    layout = result.layout
    log_tau = sum(len(t.members) * t.centre.size * 2.0 * math.log(t.spread)
                  for t in layout.soft_ties if is_active(t))
    return float(result.chi2 + result.penalty + logdet_h + log_tau)


@dataclass
class _Search:
    """Warm refits of one refinement at trial spreads, with their deviances."""

    jr: JointRefinement
    base: Registry  # the start fit's declaration (frozen parameters of a staged fit fixed)
    fit_kwargs: dict[str, Any]
    spreads: dict[str, float]
    current: RefinementResult
    profile: list[tuple[str, float, float]]
    refits: int = 0
    done: dict[tuple[tuple[str, float], ...], Any] = field(default_factory=dict)

    def at(self, name: str, spread: float) -> RefinementResult:
        """Warm refit with ``name``'s spread set (others as they stand)."""
        spreads = {**self.spreads, name: spread}
        key = tuple(sorted(spreads.items()))
        if key in self.done:
            return self.done[key]
        reg = with_spreads(self.base, spreads)
        reg.set_values(self.current.values)
        res = self.jr.with_registry(reg).fit(**self.fit_kwargs)
        self.refits += 1
        dev = marginal_deviance(res)
        self.profile.append((name, float(spread), dev))
        self.done[key] = res
        if np.isfinite(dev):
            self.current = res
        return res


def _bounds(result: RefinementResult, tie: Any) -> tuple[float, float]:
    """Search range of ``tau``: members' esds (untied) and their spread set its scale."""
    xs = np.array([np.ravel(result.values[m.name])[np.ravel(m.elements())]
                   for m in tie.members])
    sd = np.array([np.ravel(result.esd_unscaled[m.name])[np.ravel(m.elements())]
                   for m in tie.members])
    sd = sd[np.isfinite(sd) & (sd > 0)]
    s = float(np.min(sd)) if sd.size else 1.0
    top = max(float(np.ptp(xs, axis=0).max()), float(np.max(sd)) if sd.size else 1.0)
    return 1e-3 * s, 1e2 * top


class _AtHardTie(Exception):
    """The deviance is flat at the hard-tie value: the search stops at ``tau = 0``."""


def _search_one(search: _Search, tie: Any, xatol: float, flat: float = 1e-3) -> float:
    """Brent on ``log tau`` over :func:`_bounds`, after the ``tau = 0`` boundary.

    Stops early at ``tau = 0`` once a trial lies within ``flat`` of the boundary's deviance
    while no trial has beaten it (the deviance falls continuously to its ``tau = 0`` value,
    so Brent would only walk down to the lower bound).
    """
    name = tie.centre.name
    lo, hi = _bounds(search.current, tie)
    start = search.current
    at_zero = marginal_deviance(search.at(name, 0.0))
    search.current = start
    best = [math.inf]

    def dev(u: float) -> float:
        d = marginal_deviance(search.at(name, math.exp(u)))
        best[0] = min(best[0], d)
        if abs(d - at_zero) < flat and best[0] >= at_zero - flat:
            raise _AtHardTie
        return d

    try:
        opt = minimize_scalar(dev, bounds=(math.log(lo), math.log(hi)), method="bounded",
                              options={"xatol": xatol})
    except _AtHardTie:
        return 0.0
    return 0.0 if at_zero <= float(opt.fun) else math.exp(opt.x)


def _mackay_one(search: _Search, tie: Any, rtol: float, max_iter: int) -> float:
    """MacKay's fixed point ``tau^2 <- sum (x_k - c)^2 / gamma``; 0 when it heads there."""
    name = tie.centre.name
    lo, hi = _bounds(search.current, tie)
    tau = math.sqrt(lo * hi)
    for _ in range(max_iter):
        res = search.at(name, tau)
        stats = res.soft
        rows = len(tie.members) * tie.centre.size
        gamma = rows - (res.n_free - stats["n_eff"]) if stats else 0.0
        sumsq = _tie_sumsq(res, tie)
        if gamma <= 1e-9 or sumsq <= 0:
            break
        new = math.sqrt(sumsq / gamma)
        if new < lo:
            tau = 0.0
            break
        done = abs(new - tau) <= rtol * tau
        tau = new
        if done:
            break
    if tau == 0.0:
        search.at(name, 0.0)
    return tau


def _tie_sumsq(res: RefinementResult, tie: Any) -> float:
    """``sum_k (x_k - c)^2`` of one soft tie at ``res``."""
    c = np.ravel(res.values[tie.centre.name])[np.ravel(tie.centre.elements())]
    return sum(float(np.sum((np.ravel(res.values[m.name])[np.ravel(m.elements())] - c) ** 2))
               for m in tie.members)


def learn_spreads(jr: JointRefinement, *, spread_method: str = "search", xatol: float = 0.05,
                  rtol: float = 1e-3, max_iter: int = 100, **fit_kwargs: Any
                  ) -> RefinementResult:
    """Fit ``jr`` with its learned soft-tie spreads set by type-II (REML) likelihood.

    Parameters
    ----------
    jr : JointRefinement
        With one or more soft ties declared with ``spread=None``.
    spread_method : "search" or "mackay"
        Bounded Brent search on ``log tau`` (absolute tolerance ``xatol``, i.e. about
        ``100 xatol`` percent on tau) plus the ``tau = 0`` boundary, or MacKay's fixed point
        (relative tolerance ``rtol``, at most ``max_iter`` refits). Several learned ties are
        searched one after the other, twice.
    **fit_kwargs
        Passed to every refit (:meth:`JointRefinement.fit`); no checkpoint is written and
        ``resume`` is refused.

    Returns
    -------
    RefinementResult
        The fit at the learned spreads; ``result.soft`` holds ``tau`` per centre, the
        profile of ``-2 l`` evaluated, ``n_eff``, the method and the number of refits.
    """
    method = spread_method
    if method not in SPREAD_METHODS:
        raise ValueError(f"spread method must be one of {SPREAD_METHODS}, got {method!r}")
    if fit_kwargs.get("resume") is not None:
        raise ValueError("resume does not combine with learned soft-tie spreads")
    fit_kwargs = {**fit_kwargs, "checkpoint": None}  # refits are short: none is written
    t0 = time.perf_counter()
    learned = [t for t in jr.registry.soft_ties if t.learned]
    # start untied (tau = inf): every member's own estimate and esd set the search range
    spreads = {t.centre.name: math.inf for t in learned}
    start = jr.with_registry(with_spreads(jr.registry, spreads)).fit(**fit_kwargs)
    inner = {k: v for k, v in fit_kwargs.items() if k != "stages"}
    base = start.layout.to_registry() if start.layout is not None else jr.registry
    search = _Search(jr, base, inner, spreads, start, [], 1)
    step: Callable[[_Search, Any], float] = (
        (lambda s, t: _search_one(s, t, xatol)) if method == "search"
        else (lambda s, t: _mackay_one(s, t, rtol, max_iter)))
    for _ in range(2 if len(learned) > 1 else 1):
        for t in learned:
            search.spreads[t.centre.name] = step(search, t)
    final = search.at(learned[0].centre.name, search.spreads[learned[0].centre.name])
    info = {"method": method, "refits": search.refits,
            "seconds": time.perf_counter() - t0,
            "tau": {k: float(v) for k, v in search.spreads.items()},
            "profile": [[n, s, d if np.isfinite(d) else None] for n, s, d in search.profile]}
    return _with_soft(final, {**final.soft, "learned": info})


def _with_soft(res: RefinementResult, soft: Mapping[str, Any]) -> RefinementResult:
    from dataclasses import replace

    return replace(res, soft=dict(soft))


def describe_ties(layout: Layout, values: Mapping[str, np.ndarray],
                  esd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Per soft tie: spread, centre value and esd (JSON-able)."""
    out = {}
    for t in layout.soft_ties:
        sel = np.ravel(t.centre.elements())
        spread = t.spread
        out[t.centre.name] = {
            "members": [m.label for m in t.members],
            "spread": None if spread is None or math.isinf(spread) else float(spread),
            "untied": spread is not None and math.isinf(spread),
            "centre": np.ravel(values[t.centre.name])[sel].tolist(),
            "centre_esd": np.ravel(esd[t.centre.name])[sel].tolist()}
    return out


def learned_ties(reg: Registry) -> bool:
    """Whether ``reg`` declares a soft tie whose spread is to be learned."""
    return any(t.learned for t in reg.soft_ties)


def soft_summary(layout: Layout, stats: SoftStats | None, values: Mapping[str, np.ndarray],
                 esd: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """``RefinementResult.soft``: the ties, ``n_eff`` and ``dof`` (``n_eff = n_free`` when no
    tie is active: every spread at a limit)."""
    out: dict[str, Any] = {"ties": describe_ties(layout, values, esd),
                           "n_eff": float(layout.n_free)}
    if stats is not None:
        out.update(n_eff=stats.n_eff, dof=stats.dof, soft_penalty=stats.penalty)
    return out


def soft_lines(soft: Mapping[str, Any]) -> list[str]:
    """The report's soft-tie section (from ``RefinementResult.soft``)."""
    lines = ["", f"soft ties (n_eff = {soft['n_eff']:.4g}; reduced chi2 on n_obs - n_eff):"]
    learned = soft.get("learned", {})
    for name, t in soft["ties"].items():
        tau = learned.get("tau", {}).get(name)
        spread = ("inf (untied; centre = members' mean)" if t["untied"] else
                  f"{tau:.6g} (learned, REML)" if tau is not None else f"{t['spread']:.6g}")
        centre = ", ".join(f"{c:.6g} +- {e:.2g}" for c, e in zip(t["centre"], t["centre_esd"]))
        lines.append(f"  soft tie of {', '.join(t['members'])}: spread {spread}; "
                     f"centre {name} = {centre}")
    if learned:
        lines.append(f"  spread learned by {learned['method']}: {learned['refits']} refits, "
                     f"{learned['seconds']:.2f} s")
    return lines
