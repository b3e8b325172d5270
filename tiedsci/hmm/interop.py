"""Convert between tiedsci and hmmlearn estimators (parameters copied, ties expanded)."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_hmmlearn", "from_hmmlearn"]


def _hmmlearn() -> Any:
    from hmmlearn import hmm

    return hmm


def to_hmmlearn(model: Any) -> Any:
    """An hmmlearn estimator with the same parameters (ties become equal copies).

    A :class:`~tiedsci.hmm.TiedMixtureHMM` becomes a ``GMMHMM`` whose states hold copies of the
    codebook. Arguments hmmlearn lacks (``tie_states``, ``ties``, ``fixed``, engine) are dropped.
    """
    hmm = _hmmlearn()
    cls = type(model).__name__
    common = dict(n_components=model.n_components, n_iter=model.n_iter, tol=model.tol,
                  algorithm=model.algorithm, init_params="", **_priors(model, model))
    if cls == "GaussianHMM":
        out = hmm.GaussianHMM(covariance_type=model.covariance_type, min_covar=model.min_covar,
                              **common)
        names = ("startprob_", "transmat_", "means_", "covars_")
    elif cls == "CategoricalHMM":
        out = hmm.CategoricalHMM(n_features=int(model.emissionprob_.shape[1]), **common)
        names = ("startprob_", "transmat_", "emissionprob_")
    elif cls == "PoissonHMM":
        out = hmm.PoissonHMM(**common)
        names = ("startprob_", "transmat_", "lambdas_")
    elif cls in ("GMMHMM", "TiedMixtureHMM"):
        out = hmm.GMMHMM(n_mix=model.n_mix, covariance_type=model.covariance_type,
                         min_covar=model.min_covar, **common)
        names = ("startprob_", "transmat_", "weights_", "means_", "covars_")
    else:
        raise TypeError(f"to_hmmlearn does not know {cls}")
    for n in names:
        setattr(out, n, np.array(model._stored(n), dtype=float))
    if cls != "CategoricalHMM":
        out.n_features = int(np.shape(model.means_ if hasattr(model, "means_")
                                      else model.lambdas_)[-1])
    return out


def from_hmmlearn(hm: Any, **kwargs: Any) -> Any:
    """A tiedsci estimator with an hmmlearn model's configuration and parameters.

    ``kwargs`` are passed to the tiedsci constructor (e.g. ``tie_states=...``).
    """
    from tiedsci.hmm import estimators as est

    cls = type(hm).__name__
    common = dict(n_components=hm.n_components, n_iter=hm.n_iter, tol=hm.tol,
                  algorithm=hm.algorithm)
    common.update(kwargs)
    if cls == "GaussianHMM":
        out = est.GaussianHMM(covariance_type=hm.covariance_type, min_covar=hm.min_covar,
                              **common)
        cov = hm._covars_
        if hm.covariance_type == "spherical":
            cov = cov[:, 0] if np.ndim(cov) == 2 else cov
        out.means_, out.covars_ = np.array(hm.means_, float), np.array(cov, float)
    elif cls == "CategoricalHMM":
        out = est.CategoricalHMM(n_features=int(hm.emissionprob_.shape[1]), **common)
        out.emissionprob_ = np.array(hm.emissionprob_, float)
    elif cls == "PoissonHMM":
        out = est.PoissonHMM(**common)
        out.lambdas_ = np.array(hm.lambdas_, float)
    elif cls == "GMMHMM":
        out = est.GMMHMM(n_mix=hm.n_mix, covariance_type=hm.covariance_type,
                         min_covar=hm.min_covar, **common)
        out.weights_ = np.array(hm.weights_, float)
        out.means_ = np.array(hm.means_, float)
        out.covars_ = np.array(hm.covars_, float)
    else:
        raise TypeError(f"from_hmmlearn does not know {cls}")
    out.set_params(**_priors(out, hm))
    out.startprob_ = np.array(hm.startprob_, float)
    out.transmat_ = np.array(hm.transmat_, float)
    return out


def _priors(model: Any, source: Any) -> dict[str, Any]:
    """The prior attributes of ``model``'s family (hmmlearn names), read from ``source``."""
    names = ["startprob_prior", "transmat_prior", *model._emission().prior_defaults]
    return {n: getattr(source, n) for n in names if hasattr(source, n)}
