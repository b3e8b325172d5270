"""The normal-normal model behind a soft tie: partial pooling and a learned spread.

A soft tie (:meth:`tiedsci.core.Registry.soft_tie`) says that members ``k = 1..m`` are drawn
around one centre, ``x_k ~ N(c, tau^2)`` element by element. Given each member's own estimate
``xbar_k`` and its sampling variance ``s2_k`` (for an HMM mean: ``sigma^2 / N_k``; for a
least-squares parameter: its variance from the data alone), the posterior mode is

    B_k  = s2_k / (s2_k + tau^2)                   shrinkage factor in [0, 1]
    c    = sum_k w_k xbar_k / sum_k w_k,  w_k = 1 / (s2_k + tau^2)
    mu_k = (1 - B_k) xbar_k + B_k c

(Efron & Morris 1973). ``tau^2 = 0`` gives every ``mu_k = c``, the precision-weighted pooled
estimate of a hard tie; ``tau^2 = inf`` gives ``mu_k = xbar_k`` (untied). Both limits are exact
values here, not approximations.

``tau^2`` is learned by type-II maximum likelihood: ``mu`` integrated out,
``xbar_k ~ N(c, s2_k + tau^2)``, ``c`` profiled. The joint mode over ``(mu, c, tau)`` must not be
used: it is unbounded at ``tau -> 0`` and collapses every group to a hard tie
(shared/notes/discovery.md, section 2a). ``tau^2 = 0`` is a legitimate answer ("the data cannot
tell the members apart").
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from scipy.optimize import minimize_scalar

from tiedsci.core.constraints import SoftTie

if TYPE_CHECKING:
    from tiedsci.core.registry import Registry

__all__ = ["PartialPool", "partial_pool", "spread_loglik", "learn_spread", "partial_pool_cov",
           "spread_loglik_cov", "learn_spread_cov", "log_prior", "partial_pool_poisson",
           "is_active", "exact_limits", "with_spreads", "soft_rows"]


@dataclass(frozen=True)
class PartialPool:
    """Posterior mode of a soft tie.

    Attributes
    ----------
    mean : ndarray, shape (m, ...)
        Pooled estimate of every member.
    centre : ndarray, shape (...)
        The centre ``c``.
    shrinkage : ndarray, shape (m, ...)
        ``B_k``: 0 untied, 1 hard tie.
    """

    mean: np.ndarray
    centre: np.ndarray
    shrinkage: np.ndarray


def _checked(xbar: np.ndarray, s2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xbar = np.asarray(xbar, dtype=float)
    s2 = np.broadcast_to(np.asarray(s2, dtype=float), xbar.shape)
    if xbar.ndim == 0 or xbar.shape[0] < 2:
        raise ValueError(f"a soft tie needs two or more members on axis 0, got shape {xbar.shape}")
    if not np.all(np.isfinite(xbar)):
        raise ValueError("member estimates of a soft tie must be finite")
    if np.any(np.isnan(s2)) or np.any(s2 <= 0):
        raise ValueError("sampling variances of a soft tie must be > 0 "
                         "(inf: a member without data)")
    if np.all(np.isinf(s2), axis=0).any():
        raise ValueError("every member of a soft tie is without data (all sampling variances inf)")
    return xbar, s2


def partial_pool(xbar: np.ndarray, s2: np.ndarray, tau2: float | np.ndarray) -> PartialPool:
    """Posterior mode of members and centre under a soft tie of spread ``sqrt(tau2)``.

    Parameters
    ----------
    xbar : array, shape (m, ...)
        Each member's own estimate (members on axis 0).
    s2 : array, broadcastable to ``xbar``
        Sampling variance of each estimate, > 0; ``inf`` for a member without data.
    tau2 : float or array broadcastable to ``xbar.shape[1:]``
        Squared spread, >= 0; ``0`` and ``inf`` are exact (hard tie, untied).

    Returns
    -------
    PartialPool
    """
    xbar, s2 = _checked(xbar, s2)
    tau2 = np.broadcast_to(np.asarray(tau2, dtype=float), xbar.shape[1:])
    if np.any(np.isnan(tau2)) or np.any(tau2 < 0):
        raise ValueError(f"squared spread must be >= 0, got {tau2!r}")
    with np.errstate(invalid="ignore", divide="ignore"):
        total = s2 + tau2
        weight = np.where(np.isinf(total), 0.0, 1.0 / total)
        untied = np.isinf(tau2)
        # tau -> inf: every weight equal (the plain mean of the members with data)
        has = np.isfinite(s2).astype(float)
        weight = np.where(untied, has, weight)
        centre = (weight * np.where(weight > 0, xbar, 0.0)).sum(0) / weight.sum(0)
        shrink = np.where(untied, 0.0, np.where(np.isinf(s2), 1.0, s2 / total))
    mean = (1.0 - shrink) * xbar + shrink * centre
    return PartialPool(mean=mean, centre=centre, shrinkage=shrink)


def spread_loglik(xbar: np.ndarray, s2: np.ndarray, tau2: float) -> float:
    """Marginal log-likelihood of one squared spread, ``c`` profiled (up to a constant).

    ``l(tau^2) = -1/2 sum_k sum_i [log(s2_ki + tau^2) + (xbar_ki - c_i)^2 / (s2_ki + tau^2)]``;
    members without data (``s2 = inf``) do not contribute.
    """
    xbar, s2 = _checked(xbar, s2)
    centre = partial_pool(xbar, s2, tau2).centre
    seen = np.isfinite(s2)
    total = np.where(seen, s2 + tau2, 1.0)
    terms = np.log(total) + (xbar - centre) ** 2 / total
    return float(-0.5 * np.where(seen, terms, 0.0).sum())


def learn_spread(xbar: np.ndarray, s2: np.ndarray, *, boundary_avoiding: bool = False
                 ) -> float:
    """Type-II maximum-likelihood squared spread (one for all elements of the group).

    A bounded search on ``log tau^2`` over ``[1e-10, 1e6] x`` the members' sampling variances,
    compared with the boundary ``tau^2 = 0``; ties go to the boundary.

    Parameters
    ----------
    xbar : array, shape (m, ...)
    s2 : array, broadcastable to ``xbar``
    boundary_avoiding : bool
        Add ``log tau`` (a gamma(2, rate -> 0) prior on ``tau``, Chung et al. 2013): the
        estimate stays about one standard error off 0 where maximum likelihood gives 0. Use it
        where ``tau = 0`` would be absorbing (inside EM, equal members stay equal).

    Returns
    -------
    float
        ``tau^2 >= 0`` (``0.0`` when the data cannot tell the members apart; > 0 with
        ``boundary_avoiding``).
    """
    xbar, s2 = _checked(xbar, s2)
    extra = (lambda t: 0.5 * math.log(t) if t > 0 else -math.inf) if boundary_avoiding \
        else (lambda t: 0.0)
    return _search_spread(lambda t: spread_loglik(xbar, s2, t) + extra(t), xbar,
                          s2[np.isfinite(s2)])


def _search_spread(loglik: Callable[[float], float], xbar: np.ndarray,
                   finite_s2: np.ndarray) -> float:
    """Bounded search of ``loglik(tau2)`` on ``log tau2``, compared with ``tau2 = 0``."""
    spread_x = float(np.ptp(xbar, axis=0).max()) if xbar.size else 0.0
    lo = math.log(1e-10 * float(finite_s2.min()))
    hi = math.log(1e6 * max(float(finite_s2.max()), spread_x ** 2))
    res = minimize_scalar(lambda u: -loglik(math.exp(u)), bounds=(lo, hi),
                          method="bounded", options={"xatol": 1e-6})
    at_zero = loglik(0.0)
    if math.isfinite(at_zero) and -res.fun <= at_zero + 1e-12 * max(1.0, abs(at_zero)):
        return 0.0
    return float(math.exp(res.x))


def _checked_cov(xbar: np.ndarray, cov: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xbar = np.asarray(xbar, dtype=float)
    cov = np.asarray(cov, dtype=float)
    if xbar.ndim != 2 or xbar.shape[0] < 2:
        raise ValueError(f"a soft tie of vectors needs members on axis 0 of an (m, D) array, "
                         f"got shape {xbar.shape}")
    m, d = xbar.shape
    if cov.shape != (m, d, d):
        raise ValueError(f"sampling covariances must have shape {(m, d, d)}, got {cov.shape}")
    if not (np.all(np.isfinite(xbar)) and np.all(np.isfinite(cov))):
        raise ValueError("member estimates and sampling covariances of a soft tie must be "
                         "finite")
    return xbar, cov


def partial_pool_cov(xbar: np.ndarray, cov: np.ndarray, tau2: float) -> PartialPool:
    """:func:`partial_pool` for vector members with full sampling covariances.

    ``mu_k = (I - B_k) xbar_k + B_k c`` with the matrix shrinkage ``B_k = S_k (S_k + tau2 I)^-1``
    and ``c = (sum W_k)^-1 sum W_k xbar_k``, ``W_k = (S_k + tau2 I)^-1`` (the members'
    coordinates are coupled through ``S_k``; the prior is isotropic, ``N(c, tau2 I)``).

    Parameters
    ----------
    xbar : array, shape (m, D)
    cov : array, shape (m, D, D)
        Sampling covariance of each estimate (positive definite).
    tau2 : float
        ``0`` and ``inf`` are exact (hard tie: the precision-weighted pooled vector; untied).

    Returns
    -------
    PartialPool
        ``shrinkage`` holds the matrices ``B_k``, shape (m, D, D).
    """
    xbar, cov = _checked_cov(xbar, cov)
    tau2 = float(tau2)
    if math.isnan(tau2) or tau2 < 0:
        raise ValueError(f"squared spread must be >= 0, got {tau2!r}")
    m, d = xbar.shape
    eye = np.broadcast_to(np.eye(d), (m, d, d))
    if math.isinf(tau2):
        return PartialPool(xbar.copy(), xbar.mean(0), np.zeros((m, d, d)))
    w = np.linalg.inv(cov + tau2 * eye)
    centre = np.linalg.solve(w.sum(0), np.einsum("kij,kj->i", w, xbar))
    shrink = eye.copy() if tau2 == 0 else cov @ w
    mean = xbar + np.einsum("kij,kj->ki", shrink, centre[None, :] - xbar)
    return PartialPool(mean, centre, shrink)


def spread_loglik_cov(xbar: np.ndarray, cov: np.ndarray, tau2: float) -> float:
    """:func:`spread_loglik` for vector members with full sampling covariances:
    ``-1/2 sum_k [log det(S_k + tau2 I) + (xbar_k - c)' (S_k + tau2 I)^-1 (xbar_k - c)]``."""
    xbar, cov = _checked_cov(xbar, cov)
    centre = partial_pool_cov(xbar, cov, tau2).centre
    total = cov + tau2 * np.eye(xbar.shape[1])
    r = xbar - centre
    quad = np.einsum("ki,ki->k", r, np.linalg.solve(total, r[..., None])[..., 0])
    return float(-0.5 * (np.linalg.slogdet(total)[1] + quad).sum())


def learn_spread_cov(xbar: np.ndarray, cov: np.ndarray, *, boundary_avoiding: bool = False
                     ) -> float:
    """:func:`learn_spread` for vector members with full sampling covariances."""
    xbar, cov = _checked_cov(xbar, cov)
    extra = (lambda t: 0.5 * math.log(t) if t > 0 else -math.inf) if boundary_avoiding \
        else (lambda t: 0.0)
    return _search_spread(lambda t: spread_loglik_cov(xbar, cov, t) + extra(t), xbar,
                          np.diagonal(cov, axis1=1, axis2=2).ravel())


def log_prior(members: np.ndarray, centre: np.ndarray, tau2: float) -> float:
    """``sum_k log N(x_k; c, tau2)`` element by element (the soft tie's penalty term).

    ``tau2 = inf`` gives 0 (a flat prior); ``tau2 = 0`` gives 0 when every member equals the
    centre and ``-inf`` otherwise.
    """
    diff = np.asarray(members, dtype=float) - np.asarray(centre, dtype=float)
    if math.isinf(tau2):
        return 0.0
    if tau2 == 0:
        return 0.0 if np.all(diff == 0) else -math.inf
    return float(-0.5 * (np.log(2 * math.pi * tau2) + diff * diff / tau2).sum())


def partial_pool_poisson(s: np.ndarray, n: np.ndarray, tau2: float) -> PartialPool:
    """Posterior mode of Poisson rates under a soft tie ``lambda_k ~ N(c, tau2)``.

    Maximises ``sum_k [s_k log lambda_k - n_k lambda_k] - sum_k (lambda_k - c)^2 / (2 tau2)``
    (concave). Given ``c`` each rate is the positive root of
    ``lambda^2 + (n tau2 - c) lambda - s tau2 = 0``; ``c`` solves the profile equation
    ``sum_k (s_k / lambda_k(c) - n_k) = 0`` (Brent, per element; it lies between the
    smallest and largest ``s_k / n_k``). ``tau2 = 0`` gives the hard tie ``sum s / sum n`` and
    ``tau2 = inf`` the untied ``s / n``, both exactly.

    Parameters
    ----------
    s : array, shape (m, ...)
        Expected counts of each member (members on axis 0), >= 0, not all 0.
    n : array, broadcastable to ``s``
        Expected exposures (occupancies), > 0.
    tau2 : float
        Squared spread in rate units, >= 0.

    Returns
    -------
    PartialPool
        ``shrinkage`` is the normal approximation ``B_k = v_k / (v_k + tau2)``,
        ``v_k = lambda_k / n_k``.
    """
    from scipy.optimize import brentq

    s = np.asarray(s, dtype=float)
    n = np.broadcast_to(np.asarray(n, dtype=float), s.shape)
    if s.ndim == 0 or s.shape[0] < 2 or np.any(s < 0) or np.any(n <= 0) \
            or np.any(s.sum(0) <= 0):
        raise ValueError("a Poisson soft tie needs two or more members on axis 0, counts >= 0 "
                         "(not all 0) and exposures > 0")
    tau2 = float(tau2)
    if math.isnan(tau2) or tau2 < 0:
        raise ValueError(f"squared spread must be >= 0, got {tau2!r}")
    if tau2 == 0:
        c = s.sum(0) / n.sum(0)
        return PartialPool(np.broadcast_to(c, s.shape).copy(), c, np.ones(s.shape))
    if math.isinf(tau2):
        lam = s / n
        return PartialPool(lam, lam.mean(0), np.zeros(s.shape))
    m = s.shape[0]
    sf, nf = s.reshape(m, -1), n.reshape(m, -1)
    lam = np.empty_like(sf)
    for j in range(sf.shape[1]):
        sj, nj = sf[:, j], nf[:, j]
        rates = sj / nj
        lo, hi = max(float(rates.min()), 1e-300), float(rates.max())
        if hi - lo <= 1e-15 * hi:
            c = hi
        else:
            c = brentq(_poisson_profile, lo, hi, args=(sj, nj, tau2), xtol=1e-15 * hi,
                       rtol=4 * np.finfo(float).eps)
        lam[:, j] = _poisson_root(sj, nj, c, tau2)
    lam = lam.reshape(s.shape)
    v = lam / n
    return PartialPool(lam, lam.mean(0), v / (v + tau2))


def _poisson_profile(c: float, s: np.ndarray, n: np.ndarray, tau2: float) -> float:
    """``sum_k (s_k / lambda_k(c) - n_k)``: zero at the centre (no cancellation at small
    ``tau2``, unlike ``sum_k (lambda_k - c)``)."""
    return float((s / _poisson_root(s, n, c, tau2) - n).sum())


def _poisson_root(s: np.ndarray, n: np.ndarray, c: float, tau2: float) -> np.ndarray:
    """Positive root of ``lambda^2 + b lambda - s tau2 = 0``, ``b = n tau2 - c``, computed
    without cancellation for either sign of ``b``."""
    b = n * tau2 - c
    root = np.sqrt(b * b + 4 * s * tau2)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, 2 * s * tau2 / (b + root), 0.5 * (root - b))


# ---------------------------------------------------------------------- registry side
def is_active(tie: SoftTie) -> bool:
    """Whether ``tie`` becomes restraint rows ``(x_k - c) / spread`` (a finite spread > 0)."""
    return tie.spread is not None and 0.0 < tie.spread < math.inf


def exact_limits(reg: Registry) -> Registry:
    """A copy of ``reg`` in which the soft ties at their limits are compiled exactly.

    ``spread = 0``: every member is hard-tied to the centre (members take its value).
    ``spread = inf``: the centre, which no data see, becomes the members' mean
    (``Registry.linear``), the limit of the penalised optimum ``c = mean_k x_k``; it is then
    reported with the propagated esd and does not count in ``n_free``. Ties of finite
    positive or learned spread are left as declared (restraint rows, or the domain's search).
    """
    limits = [t for t in reg._soft_ties if t.spread is not None and not is_active(t)]
    if not limits:
        return reg
    out = reg.copy()
    for t in limits:
        if t.spread == 0.0:
            out.tie(t.centre, *t.members)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.linear(t.centre, [(1.0 / len(t.members), m) for m in t.members])
    return out


def with_spreads(reg: Registry, spreads: Mapping[str, float | None]) -> Registry:
    """A copy of ``reg`` whose soft ties named by centre (``{"soft0.centre": 0.1}``) get
    these spreads (``None``: learned again). Unknown centre names raise ``KeyError``."""
    by_centre = {t.centre.name: k for k, t in enumerate(reg._soft_ties)}
    unknown = sorted(set(spreads) - set(by_centre))
    if unknown:
        raise KeyError(f"no soft tie with centre {unknown}; centres: {sorted(by_centre)}")
    out = reg.copy()
    for name, spread in spreads.items():
        k = by_centre[name]
        s = None if spread is None else float(spread)
        out._soft_ties[k] = replace(out._soft_ties[k], spread=s)
    return out


def soft_rows(ties: Sequence[SoftTie]) -> int:
    """Number of restraint rows the active soft ties add (one per member element)."""
    return sum(len(t.members) * t.centre.size for t in ties if is_active(t))
