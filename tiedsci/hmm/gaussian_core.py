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
from typing import Any

import numpy as np

from tiedsci.hmm.engines import Engine

__all__ = ["log_density", "accumulate", "mstep_means", "mstep_covars", "LOG_2PI", "MIN_POST"]

LOG_2PI = float(np.log(2 * np.pi))
MIN_POST = 1e-10  # pooled posterior mass below which a component keeps its parameters

Pool = Callable[..., np.ndarray]  # pool(name, stats, unit_axes=0): Layout.pool_stats
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


def mstep_means(name: str, means: np.ndarray, covars: np.ndarray, kind: str,
                stats: dict[str, np.ndarray], pool: Pool, keep: Keep) -> np.ndarray:
    """Pooled, precision-weighted update of the means (shape ``means.shape``)."""
    shape = means.shape
    d = shape[-1]
    comp = shape[:-1]
    n_comp = int(np.prod(comp, dtype=int))
    post = stats["post"].reshape(n_comp)
    obs = stats["obs"].reshape(n_comp, d)
    if kind in ("spherical", "diag"):
        prec = 1.0 / _diag_var(covars, kind, n_comp, d)
        st = np.stack([post[:, None] * prec, obs * prec], axis=-1).reshape(shape + (2,))
        pooled = pool(name, st).reshape(n_comp, d, 2)
        den = pooled[..., 0]
        valid = (pooled[..., 0] / prec > MIN_POST)
        new = pooled[..., 1] / np.where(valid, den, 1.0)
        return keep(name, new.reshape(shape), means, valid.reshape(shape))
    prec = np.linalg.inv(covars.reshape(n_comp, d, d))
    g = np.einsum("cij,cj->ci", prec, obs)
    h = post[:, None, None] * prec
    row = np.concatenate([g, h.reshape(n_comp, d * d), post[:, None]], axis=1)
    # one statistic per mean vector: the precision couples its coordinates
    pooled = pool(name, row.reshape(comp + (row.shape[1],)), unit_axes=1).reshape(n_comp, -1)
    p_post = pooled[:, -1]
    valid = p_post > MIN_POST
    h_p = pooled[:, d:d + d * d].reshape(n_comp, d, d)
    h_p[~valid] = np.eye(d)
    new = np.linalg.solve(h_p, pooled[:, :d][..., None])[..., 0]
    valid_el = np.repeat(valid[:, None], d, axis=1).reshape(shape)
    return keep(name, new.reshape(shape), means, valid_el)


def mstep_covars(name: str, means: np.ndarray, covars: np.ndarray, kind: str,
                 stats: dict[str, np.ndarray], pool: Pool, keep: Keep, *, min_covar: float,
                 prior: float = 0.0, weight: float = 1.0) -> np.ndarray:
    """Pooled covariance update given the (new) means.

    ``prior`` and ``weight`` follow hmmlearn's GaussianHMM ``covars_prior`` / ``covars_weight``
    (applied once per tie group); ``prior=0, weight=1`` is maximum likelihood. Variances are
    floored at ``min_covar`` (full: the smallest eigenvalue).
    """
    d = means.shape[-1]
    n_comp = int(np.prod(means.shape[:-1], dtype=int))
    post = stats["post"].reshape(n_comp)
    obs = stats["obs"].reshape(n_comp, d)
    mu = means.reshape(n_comp, d)
    if kind in ("spherical", "diag"):
        c = stats["obs2"].reshape(n_comp, d) - 2 * mu * obs + mu * mu * post[:, None]
        if kind == "spherical":
            st = np.stack([c.mean(1), post], axis=-1)
        else:
            st = np.stack([c, np.repeat(post[:, None], d, axis=1)], axis=-1)
        st = st.reshape(covars.shape + (2,))
        pooled = pool(name, st)
        den = np.maximum(max(weight - 1.0, 0.0) + pooled[..., 1], 1e-5)
        new = np.maximum((prior + pooled[..., 0]) / den, min_covar)
        # a zero variance (no spread, min_covar = 0) would make the next E-step infinite
        return keep(name, new, covars, (pooled[..., 1] > MIN_POST) & (new > 0))
    outer = stats["obs2"].reshape(n_comp, d, d)
    om = obs[:, :, None] * mu[:, None, :]
    mm = mu[:, :, None] * mu[:, None, :]
    c = outer - om - np.transpose(om, (0, 2, 1)) + post[:, None, None] * mm
    st = np.stack([c, np.broadcast_to(post[:, None, None], c.shape)], axis=-1)
    # covars is declared symmetric (Registry.symmetric): pool_stats counts each pair once
    pooled = pool(name, st.reshape(covars.shape + (2,))).reshape(n_comp, d, d, 2)
    den = max(weight - d, 0.0) + pooled[..., 1]
    valid = pooled[:, 0, 0, 1] > MIN_POST
    new = (prior + pooled[..., 0]) / np.where(valid[:, None, None], den, 1.0)
    new = 0.5 * (new + np.transpose(new, (0, 2, 1)))
    eig_min = np.linalg.eigvalsh(np.where(valid[:, None, None], new, np.eye(d))).min(1)
    low = eig_min < min_covar
    new[low] += (min_covar - eig_min[low])[:, None, None] * np.eye(d)
    valid &= np.maximum(eig_min, min_covar) > 0  # singular (min_covar = 0): keep the old one
    valid_el = np.broadcast_to(valid[:, None, None], new.shape).reshape(covars.shape)
    return keep(name, new.reshape(covars.shape), covars, valid_el)
