"""hmmlearn-compatible faces over :class:`~tiedsci.hmm.model.TiedHMM`.

Same constructor names, fitted attributes and methods as hmmlearn's ``GaussianHMM``,
``CategoricalHMM``, ``PoissonHMM`` and ``GMMHMM``, plus ``TiedMixtureHMM`` (one shared codebook of
Gaussians, per-state weights), and the tying arguments ``tie_states``, ``ties``, ``fixed``.
Each class only builds its emission family; all behaviour lives in ``TiedHMM``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tiedsci.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    MultinomialEmission,
    PoissonEmission,
    compact_covars,
)
from tiedsci.hmm.model import TiedHMM

__all__ = ["GaussianHMM", "CategoricalHMM", "MultinomialHMM", "PoissonHMM", "GMMHMM",
           "TiedMixtureHMM"]

Groups = Sequence[Sequence[int]] | None
TieMap = Mapping[str, Sequence[Sequence[int]]] | None


def full_covariances(c: Any, covariance_type: str, n_components: int,
                     n_features: int) -> np.ndarray:
    """hmmlearn's ``fill_covars``: compact covariances -> (n_components, D, D) matrices."""
    c = np.asarray(c, dtype=float)
    if covariance_type == "full":
        return c.copy()
    if covariance_type == "tied":
        return np.tile(c, (n_components, 1, 1))
    if covariance_type == "diag":
        return c[:, :, None] * np.eye(c.shape[1])
    return np.reshape(c, (n_components, -1))[:, :1, None] * np.eye(n_features)


def _base(self: TiedHMM, n_components: int, startprob_prior: Any, transmat_prior: Any,
          algorithm: str, random_state: Any, n_iter: int, tol: float, verbose: bool,
          params: Any, init_params: Any, implementation: str, tie_states: Groups,
          ties: TieMap, fixed: Mapping[str, Any] | None, engine: str, device: Any,
          dtype: Any) -> None:
    """The constructor arguments every face shares (hmmlearn's, then tiedsci's)."""
    TiedHMM.__init__(self, None, n_components, tie_states=tie_states, ties=ties, fixed=fixed,
                     params=params, init_params=init_params, n_iter=n_iter, tol=tol,
                     algorithm=algorithm, engine=engine, device=device, dtype=dtype,
                     random_state=random_state, verbose=verbose,
                     startprob_prior=startprob_prior, transmat_prior=transmat_prior)
    self.implementation = implementation


class GaussianHMM(TiedHMM):
    """HMM with Gaussian emissions (``covariance_type`` spherical, diag, full or tied).

    hmmlearn's constructor, argument for argument (``implementation`` is accepted and has no
    effect: one engine serves both). Priors as hmmlearn's (MAP M-step, each prior counted once
    per tie group; see :meth:`GaussianEmission.check_priors`): ``covars_prior=0`` with the other
    defaults is maximum likelihood. ``min_covar`` floors variances. ``soft_ties`` /
    ``spread``: means partially pooled around learned centres (see
    :class:`~tiedsci.hmm.model.TiedHMM`).
    """

    def __init__(self, n_components: int = 1, covariance_type: str = "diag",
                 min_covar: float = 1e-3, startprob_prior: Any = 1.0, transmat_prior: Any = 1.0,
                 means_prior: Any = 0, means_weight: Any = 0, covars_prior: Any = 1e-2,
                 covars_weight: Any = 1, algorithm: str = "viterbi", random_state: Any = None,
                 n_iter: int = 10, tol: float = 1e-2, verbose: bool = False,
                 params: Any = "stmc", init_params: Any = "stmc", implementation: str = "log",
                 *, tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None, soft_ties: TieMap = None,
                 spread: Any = None) -> None:
        _base(self, n_components, startprob_prior, transmat_prior, algorithm, random_state,
              n_iter, tol, verbose, params, init_params, implementation, tie_states, ties,
              fixed, engine, device, dtype)
        self.soft_ties = soft_ties
        self.spread = spread
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    def _emission(self) -> GaussianEmission:
        em = GaussianEmission(self.covariance_type, float(self.min_covar))
        em.check()
        return em

    @property
    def covars_(self) -> np.ndarray:
        """Covariance matrices, shape (n_components, n_features, n_features), for every
        ``covariance_type`` (hmmlearn's getter); set it in the compact form of the type:
        spherical (n_components,), diag (n_components, n_features), full
        (n_components, n_features, n_features), tied (n_features, n_features)."""
        c = self.__dict__.get("_covars_")
        if c is None:
            raise AttributeError("covars_ is not set (fit the model or assign covars_)")
        return full_covariances(c, self.covariance_type, int(self.n_components),
                                self._covariance_dims(c))

    @covars_.setter
    def covars_(self, value: Any) -> None:
        self._covars_ = compact_covars(value, self.covariance_type)

    def _covariance_dims(self, c: np.ndarray) -> int:
        """``n_features`` for the getter: from the means, else ``n_features``, else 1."""
        if np.ndim(c) > 1:
            return int(np.shape(c)[-1])
        means = self.__dict__.get("means_")
        if means is not None:
            return int(np.shape(means)[-1])
        return int(getattr(self, "n_features", None) or 1)

    def _stored(self, name: str) -> Any:
        return self.__dict__.get("_covars_") if name == "covars_" else super()._stored(name)


class CategoricalHMM(TiedHMM):
    """HMM with categorical emissions; X holds integer symbols, shape (n_samples, 1).

    ``emissionprob_prior``: Dirichlet concentrations (hmmlearn's).
    """

    def __init__(self, n_components: int = 1, startprob_prior: Any = 1.0,
                 transmat_prior: Any = 1.0, *, emissionprob_prior: Any = 1.0,
                 n_features: int | None = None, algorithm: str = "viterbi",
                 random_state: Any = None, n_iter: int = 10, tol: float = 1e-2,
                 verbose: bool = False, params: Any = "ste", init_params: Any = "ste",
                 implementation: str = "log", tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None) -> None:
        _base(self, n_components, startprob_prior, transmat_prior, algorithm, random_state,
              n_iter, tol, verbose, params, init_params, implementation, tie_states, ties,
              fixed, engine, device, dtype)
        self.emissionprob_prior = emissionprob_prior
        self.n_features = n_features

    def _emission(self) -> CategoricalEmission:
        n = self.n_features
        e = getattr(self, "emissionprob_", None)
        if n is None and e is not None:
            n = int(np.shape(e)[1])
        return CategoricalEmission(None if n is None else int(n))


class MultinomialHMM(TiedHMM):
    """HMM with multinomial emissions: each sample counts ``n_features`` categories over
    ``n_trials`` draws (hmmlearn's MultinomialHMM; ``n_trials=1`` is a one-hot categorical).

    ``n_trials``: int, per-sample array, or None (taken from the data's row sums; sampling then
    needs it set). ``emissionprob_prior`` (Dirichlet, default 1: maximum likelihood) is a
    tiedsci addition.
    """

    def __init__(self, n_components: int = 1, n_trials: Any = None,
                 startprob_prior: Any = 1.0, transmat_prior: Any = 1.0,
                 algorithm: str = "viterbi", random_state: Any = None, n_iter: int = 10,
                 tol: float = 1e-2, verbose: bool = False, params: Any = "ste",
                 init_params: Any = "ste", implementation: str = "log", *,
                 emissionprob_prior: Any = 1.0, tie_states: Groups = None,
                 ties: TieMap = None, fixed: Mapping[str, Any] | None = None,
                 engine: str = "numpy", device: Any = None, dtype: Any = None) -> None:
        _base(self, n_components, startprob_prior, transmat_prior, algorithm, random_state,
              n_iter, tol, verbose, params, init_params, implementation, tie_states, ties,
              fixed, engine, device, dtype)
        self.n_trials = n_trials
        self.emissionprob_prior = emissionprob_prior

    def _emission(self) -> MultinomialEmission:
        n = self.n_trials
        if n is not None and np.ndim(n):
            n = tuple(int(v) for v in np.ravel(n))
        elif n is not None:
            n = int(n)
        em = MultinomialEmission(n)
        em.check()
        return em


class PoissonHMM(TiedHMM):
    """HMM with independent Poisson counts per feature (``lambdas_``); gamma prior
    ``lambdas_prior`` / ``lambdas_weight`` (see :meth:`PoissonEmission.check_priors`).
    ``soft_ties={"lambdas": groups}`` / ``spread``: rates partially pooled around a centre,
    ``lambda_k ~ N(c, spread^2)`` in rate units, exact MAP M-step
    (:func:`tiedsci.core.softtie.partial_pool_poisson`)."""

    def __init__(self, n_components: int = 1, startprob_prior: Any = 1.0,
                 transmat_prior: Any = 1.0, lambdas_prior: Any = 0.0, lambdas_weight: Any = 0.0,
                 algorithm: str = "viterbi", random_state: Any = None, n_iter: int = 10,
                 tol: float = 1e-2, verbose: bool = False, params: Any = "stl",
                 init_params: Any = "stl", implementation: str = "log", *,
                 tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None, soft_ties: TieMap = None,
                 spread: Any = None) -> None:
        _base(self, n_components, startprob_prior, transmat_prior, algorithm, random_state,
              n_iter, tol, verbose, params, init_params, implementation, tie_states, ties,
              fixed, engine, device, dtype)
        self.soft_ties = soft_ties
        self.spread = spread
        self.lambdas_prior = lambdas_prior
        self.lambdas_weight = lambdas_weight

    def _emission(self) -> PoissonEmission:
        return PoissonEmission()


class GMMHMM(TiedHMM):
    """HMM with a Gaussian mixture per state (``weights_``, ``means_``, ``covars_``).

    hmmlearn's constructor and priors (see :meth:`GMMEmission.check_priors`); the defaults
    (``covars_prior=None``) are maximum likelihood for every covariance type.
    """

    def __init__(self, n_components: int = 1, n_mix: int = 1, min_covar: float = 1e-3,
                 startprob_prior: Any = 1.0, transmat_prior: Any = 1.0,
                 weights_prior: Any = 1.0, means_prior: Any = 0.0, means_weight: Any = 0.0,
                 covars_prior: Any = None, covars_weight: Any = None,
                 algorithm: str = "viterbi", covariance_type: str = "diag",
                 random_state: Any = None, n_iter: int = 10, tol: float = 1e-2,
                 verbose: bool = False, params: Any = "stmcw", init_params: Any = "stmcw",
                 implementation: str = "log", *, tie_states: Groups = None,
                 ties: TieMap = None, fixed: Mapping[str, Any] | None = None,
                 engine: str = "numpy", device: Any = None, dtype: Any = None) -> None:
        _base(self, n_components, startprob_prior, transmat_prior, algorithm, random_state,
              n_iter, tol, verbose, params, init_params, implementation, tie_states, ties,
              fixed, engine, device, dtype)
        self.n_mix = n_mix
        self.min_covar = min_covar
        self.covariance_type = covariance_type
        self.weights_prior = weights_prior
        self.means_prior = means_prior
        self.means_weight = means_weight
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    def _emission(self) -> GMMEmission:
        em = GMMEmission(int(self.n_mix), self.covariance_type, float(self.min_covar), False)
        em.check()
        return em


class TiedMixtureHMM(GMMHMM):
    """Tied-mixture (semi-continuous) HMM: every state mixes one shared codebook of Gaussians.

    The codebook (``means_[k]`` and ``covars_[k]`` equal for all states ``k``) is declared once
    per state and tied across states in the registry, so its statistics pool over all states and
    ``n_free`` counts it once; only ``weights_`` are per state.
    """

    def _emission(self) -> GMMEmission:
        em = GMMEmission(int(self.n_mix), self.covariance_type, float(self.min_covar), True)
        em.check()
        return em
