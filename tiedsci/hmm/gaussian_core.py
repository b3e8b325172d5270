"""Gaussian densities, statistics and pooled M-steps shared by Gaussian and mixture emissions.

"Components" are the leading axes of a parameter (``(n_states,)`` for a Gaussian HMM,
``(n_states, n_mix)`` for a mixture); the numerics flatten them to ``n_comp`` rows. Covariance
storage per ``kind``: ``"spherical"`` ``comp``, ``"diag"`` ``comp + (D,)``, ``"full"``
``comp + (D, D)`` (a tied covariance is a full one tied across components by the registry).

The M-step is exact conditional maximisation (ECM): means given the current covariances, then
covariances given the new means. Means use precision-weighted statistics, so that a tie pools
``sum_k post_k / var_k`` and ``sum_k obs_k / var_k`` — the exact maximiser of a shared mean even
when the members' variances differ; without a tie it is ``obs / post`` (hmmlearn's update).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.hmm.engines import Engine

__all__ = ["log_density", "accumulate", "mstep_means", "mstep_covars", "covar_prior",
           "MeanPrior", "CovarPrior", "LOG_2PI", "MIN_POST"]

LOG_2PI = float(np.log(2 * np.pi))
MIN_POST = 1e-10  # pooled posterior mass below which a component keeps its parameters

Pool = Any  # tiedsci.hmm.em.Pooling: pool(name, stats, unit_axes=0), pool.once, pool.sizes
Keep = Callable[[str, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _diag_var(covars: np.ndarray, kind: str, n_comp: int, d: int) -> np.ndarray:
    if kind == "spherical":
        return np.repeat(covars.reshape(n_comp, 1), d, axis=1)
    return covars.reshape(n_comp, d)


def log_density(means: np.ndarray, covars: np.ndarray, kind: str, x: Any, x2: Any,
                eng: Engine) -> Any:
    """Log-density of every frame under every component.

    Parameters
    ----------
    means : ndarray, shape comp + (D,)
    covars : ndarray, see module docstring
    kind : {"spherical", "diag", "full"}
    x, x2 : engine arrays, shape (n_frames, D)
        Frames and their squares (``x2`` unused for ``"full"``).

    Returns
    -------
    engine array, shape (n_frames, n_comp)
    """
    d = means.shape[-1]
    mu = means.reshape(-1, d)
    n_comp = mu.shape[0]
    if kind in ("spherical", "diag"):
        var = _diag_var(covars, kind, n_comp, d)
        prec = 1.0 / var
        const = -0.5 * (d * LOG_2PI + np.log(var).sum(1) + (mu * mu * prec).sum(1))
        return (eng.asarray(const)[None, :] - 0.5 * (x2 @ eng.asarray(prec.T))
                + x @ eng.asarray((mu * prec).T))
    cov = covars.reshape(n_comp, d, d)
    chol = np.linalg.cholesky(cov)
    inv_chol = np.linalg.inv(chol)  # (C, D, D), lower triangular
    log_det = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(1)
    # z = (x - mu) L^-T for all components at once: x @ W - (mu @ L^-T)
    w = np.transpose(inv_chol, (2, 0, 1)).reshape(d, n_comp * d)  # [j, c*d + i] = Linv[c,i,j]
    shift = np.einsum("cij,cj->ci", inv_chol, mu).reshape(1, n_comp * d)
    z = x @ eng.asarray(w) - eng.asarray(shift)
    n = z.shape[0]
    quad = (z * z).reshape(n, n_comp, d).sum(2)
    return eng.asarray(-0.5 * (d * LOG_2PI + log_det))[None, :] - 0.5 * quad


def accumulate(g: Any, x: Any, x2: Any, kind: str, eng: Engine) -> dict[str, np.ndarray]:
    """Sufficient statistics ``post`` (C,), ``obs`` (C, D), ``obs2`` (C, D) or (C, D, D).

    ``g`` has shape (n_frames, n_comp): posterior weight of each component at each frame.
    """
    gt = g.T
    out = {"post": eng.to_numpy(g.sum(0)), "obs": eng.to_numpy(gt @ x)}
    if kind in ("spherical", "diag"):
        out["obs2"] = eng.to_numpy(gt @ x2)
    else:
        n_comp = g.shape[1]
        out["obs2"] = np.stack([eng.to_numpy((x * g[:, c:c + 1]).T @ x) for c in range(n_comp)])
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


@dataclass(frozen=True)
class MeanPrior:
    """Normal prior of the means (hmmlearn's ``means_prior`` / ``means_weight``).

    Attributes
    ----------
    centre : ndarray, shape comp + (D,)
    weight : ndarray, shape comp
        Prior precision in units of the component's precision (a pseudo-count).
    """

    centre: np.ndarray
    weight: np.ndarray


def mstep_means(name: str, means: np.ndarray, covars: np.ndarray, kind: str,
                stats: dict[str, np.ndarray], pool: Pool, keep: Keep,
                prior: MeanPrior | None = None) -> np.ndarray:
    """Pooled, precision-weighted (MAP) update of the means (shape ``means.shape``).

    With ``prior`` a tie group's update is ``(w mu0 + sum obs) / (w + sum post)`` in
    precision-weighted form, the prior counted once per group (``pool.once``).
    """
    shape = means.shape
    d = shape[-1]
    comp = shape[:-1]
    n_comp = int(np.prod(comp, dtype=int))
    post = stats["post"].reshape(n_comp)
    obs = stats["obs"].reshape(n_comp, d)
    if prior is not None:
        w = prior.weight.reshape(n_comp)
        mu0 = prior.centre.reshape(n_comp, d)
    if kind in ("spherical", "diag"):
        prec = 1.0 / _diag_var(covars, kind, n_comp, d)
        st = np.stack([post[:, None] * prec, obs * prec], axis=-1).reshape(shape + (2,))
        pooled = pool(name, st).reshape(n_comp, d, 2)
        if prior is not None:
            pst = np.stack([w[:, None] * prec, w[:, None] * mu0 * prec], axis=-1)
            pooled = pooled + pool.once(name, pst.reshape(shape + (2,))).reshape(n_comp, d, 2)
        den = pooled[..., 0]
        valid = (pooled[..., 0] / prec > MIN_POST)
        new = pooled[..., 1] / np.where(valid, den, 1.0)
        new, valid = _soft(pool, name, means, new.reshape(shape), valid.reshape(shape),
                           np.where(valid, 1.0 / np.where(valid, den, 1.0), np.inf))
        return keep(name, new, means, valid)
    prec = np.linalg.inv(covars.reshape(n_comp, d, d))
    g = np.einsum("cij,cj->ci", prec, obs)
    h = post[:, None, None] * prec
    row = np.concatenate([g, h.reshape(n_comp, d * d), post[:, None]], axis=1)
    # one statistic per mean vector: the precision couples its coordinates
    pooled = pool(name, row.reshape(comp + (row.shape[1],)), unit_axes=1).reshape(n_comp, -1)
    if prior is not None:
        prow = np.concatenate([w[:, None] * np.einsum("cij,cj->ci", prec, mu0),
                               (w[:, None, None] * prec).reshape(n_comp, d * d), w[:, None]], 1)
        pooled = pooled + pool.once(name, prow.reshape(comp + (row.shape[1],)),
                                    unit_axes=1).reshape(n_comp, -1)
    p_post = pooled[:, -1]
    valid = p_post > MIN_POST
    h_p = pooled[:, d:d + d * d].reshape(n_comp, d, d)
    h_p[~valid] = np.eye(d)
    new = np.linalg.solve(h_p, pooled[:, :d][..., None])[..., 0]
    valid_el = np.repeat(valid[:, None], d, axis=1).reshape(shape)
    if pool.has_soft(name):
        # sampling covariance of each mean vector: the inverse pooled precision; a component
        # without data gets a vague one (the centre then sets its mean)
        cov = np.linalg.inv(h_p)
        cov[~valid] = np.eye(d) * 1e12 * max(1.0, float(np.abs(cov[valid]).max(initial=1.0)))
        new, valid_el = _soft(pool, name, means, new.reshape(shape), valid_el,
                              cov.reshape(comp + (d, d)), unit_axes=1)
    return keep(name, new.reshape(shape), means, valid_el)


def _soft(pool: Pool, name: str, old: np.ndarray, new: np.ndarray, valid: np.ndarray,
          s2: np.ndarray, unit_axes: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Soft ties of ``name`` (``pool.soft``) applied to the members' own estimates ``new``;
    an element without data enters with its old value and infinite sampling variance."""
    if not pool.has_soft(name):
        return new, valid
    xbar = np.where(valid, new, old)
    pooled, touched = pool.soft(name, xbar, s2, unit_axes)
    return pooled, valid | touched


@dataclass(frozen=True)
class CovarPrior:
    """Prior terms of a covariance update ``(num + scatter) / (den + post)``.

    Attributes
    ----------
    num : ndarray, shape of the covariances
        Added to the pooled scatter (hmmlearn's ``covars_prior`` and the means prior's
        ``w (mu - mu0)^2`` term), already counted once per tie group.
    den : ndarray, shape of the covariances
        Added to the pooled posterior mass (pseudo-counts), once per tie group.
    """

    num: np.ndarray
    den: np.ndarray


def covar_prior(pool: Pool, means_name: str, covars_name: str, means: np.ndarray,
                covars_shape: tuple[int, ...], kind: str, mean_prior: MeanPrior | None,
                num: np.ndarray, den: np.ndarray) -> CovarPrior:
    """Assemble :class:`CovarPrior` for a tie layout.

    ``num`` and ``den`` (covariance shape) count once per covariance group; the means prior's
    term ``w (mu - mu0)^2`` (``w (mu - mu0)(mu - mu0)^T`` for full, its feature mean for
    spherical) counts once per *means* group and is summed into the covariance groups.
    """
    out_num = pool.once(covars_name, num)
    if mean_prior is not None and np.any(mean_prior.weight):
        diff = means - mean_prior.centre
        w = mean_prior.weight[..., None]
        share = 1.0 / pool.sizes(means_name)[..., 0]  # comp + (D,)
        if kind == "spherical":
            term = (w * diff * diff * share).mean(-1)
        elif kind == "diag":
            term = w * diff * diff * share
        else:
            term = (w * share[..., :1])[..., None] * diff[..., :, None] * diff[..., None, :]
        out_num = out_num + pool(covars_name, term.reshape(covars_shape))
    return CovarPrior(out_num, pool.once(covars_name, den))


def mstep_covars(name: str, means: np.ndarray, covars: np.ndarray, kind: str,
                 stats: dict[str, np.ndarray], pool: Pool, keep: Keep, *, min_covar: float,
                 prior: CovarPrior | None = None) -> np.ndarray:
    """Pooled covariance update given ``means`` (the centre of the scatter).

    ``prior`` (see :func:`covar_prior`) makes it MAP: ``(num + scatter) / (den + post)``;
    ``None`` is maximum likelihood. Variances are floored at ``min_covar`` (full: the smallest
    eigenvalue); spherical and diagonal denominators at 1e-5 (hmmlearn's guard).
    """
    d = means.shape[-1]
    n_comp = int(np.prod(means.shape[:-1], dtype=int))
    post = stats["post"].reshape(n_comp)
    obs = stats["obs"].reshape(n_comp, d)
    mu = means.reshape(n_comp, d)
    num = 0.0 if prior is None else prior.num
    extra = 0.0 if prior is None else prior.den
    if kind in ("spherical", "diag"):
        c = stats["obs2"].reshape(n_comp, d) - 2 * mu * obs + mu * mu * post[:, None]
        if kind == "spherical":
            st = np.stack([c.mean(1), post], axis=-1)
        else:
            st = np.stack([c, np.repeat(post[:, None], d, axis=1)], axis=-1)
        st = st.reshape(covars.shape + (2,))
        pooled = pool(name, st)
        den = np.maximum(extra + pooled[..., 1], 1e-5)
        new = np.maximum((num + pooled[..., 0]) / den, min_covar)
        # a zero variance (no spread, min_covar = 0) would make the next E-step infinite
        return keep(name, new, covars, (pooled[..., 1] > MIN_POST) & (new > 0))
    outer = stats["obs2"].reshape(n_comp, d, d)
    om = obs[:, :, None] * mu[:, None, :]
    mm = mu[:, :, None] * mu[:, None, :]
    c = outer - om - np.transpose(om, (0, 2, 1)) + post[:, None, None] * mm
    st = np.stack([c, np.broadcast_to(post[:, None, None], c.shape)], axis=-1)
    # covars is declared symmetric (Registry.symmetric): pool_stats counts each pair once
    pooled = pool(name, st.reshape(covars.shape + (2,))).reshape(n_comp, d, d, 2)
    num = np.reshape(num, (-1, d, d)) if prior is not None else 0.0
    den = (np.reshape(extra, (-1, d, d)) if prior is not None else 0.0) + pooled[..., 1]
    valid = (pooled[:, 0, 0, 1] > MIN_POST) & (den[:, 0, 0] > 0)
    new = (num + pooled[..., 0]) / np.where(valid[:, None, None], den, 1.0)
    new = 0.5 * (new + np.transpose(new, (0, 2, 1)))
    eig_min = np.linalg.eigvalsh(np.where(valid[:, None, None], new, np.eye(d))).min(1)
    low = eig_min < min_covar
    new[low] += (min_covar - eig_min[low])[:, None, None] * np.eye(d)
    valid &= np.maximum(eig_min, min_covar) > 0  # singular (min_covar = 0): keep the old one
    valid_el = np.broadcast_to(valid[:, None, None], new.shape).reshape(covars.shape)
    return keep(name, new.reshape(covars.shape), covars, valid_el)
