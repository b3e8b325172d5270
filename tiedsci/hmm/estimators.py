"""hmmlearn-compatible faces over :class:`~tiedsci.hmm.model.TiedHMM`.

Same constructor names, fitted attributes and methods as hmmlearn's ``GaussianHMM``,
``CategoricalHMM``, ``PoissonHMM`` and ``GMMHMM``, plus ``TiedMixtureHMM`` (one shared codebook of
Gaussians, per-state weights), and the tying arguments ``tie_states``, ``ties``, ``fixed``.
Each class only builds its emission family; all behaviour lives in ``TiedHMM``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tiedsci.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    PoissonEmission,
)
from tiedsci.hmm.model import TiedHMM

__all__ = ["GaussianHMM", "CategoricalHMM", "PoissonHMM", "GMMHMM", "TiedMixtureHMM"]

Groups = Sequence[Sequence[int]] | None
TieMap = Mapping[str, Sequence[Sequence[int]]] | None


class GaussianHMM(TiedHMM):
    """HMM with Gaussian emissions (``covariance_type`` spherical, diag, full or tied).

    ``covars_prior`` / ``covars_weight`` act as in hmmlearn (defaults 1e-2 / 1, hmmlearn's), once
    per tie group; ``covars_prior=0`` is maximum likelihood. ``min_covar`` floors variances.
    """

    def __init__(self, n_components: int = 1, covariance_type: str = "diag",
                 min_covar: float = 1e-3, covars_prior: float = 1e-2, covars_weight: float = 1,
                 algorithm: str = "viterbi", random_state: Any = None, n_iter: int = 10,
                 tol: float = 1e-2, verbose: bool = False, params: Any = "stmc",
                 init_params: Any = "stmc", *, tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(None, n_components, tie_states=tie_states, ties=ties, fixed=fixed,
                         params=params, init_params=init_params, n_iter=n_iter, tol=tol,
                         algorithm=algorithm, engine=engine, device=device, dtype=dtype,
                         random_state=random_state, verbose=verbose)
        self.covariance_type = covariance_type
        self.min_covar = min_covar
        self.covars_prior = covars_prior
        self.covars_weight = covars_weight

    def _emission(self) -> GaussianEmission:
        em = GaussianEmission(self.covariance_type, float(self.min_covar),
                              float(self.covars_prior), float(self.covars_weight))
        em.check()
        return em


class CategoricalHMM(TiedHMM):
    """HMM with categorical emissions; X holds integer symbols, shape (n_samples, 1)."""

    def __init__(self, n_components: int = 1, n_features: int | None = None,
                 algorithm: str = "viterbi", random_state: Any = None, n_iter: int = 10,
                 tol: float = 1e-2, verbose: bool = False, params: Any = "ste",
                 init_params: Any = "ste", *, tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(None, n_components, tie_states=tie_states, ties=ties, fixed=fixed,
                         params=params, init_params=init_params, n_iter=n_iter, tol=tol,
                         algorithm=algorithm, engine=engine, device=device, dtype=dtype,
                         random_state=random_state, verbose=verbose)
        self.n_features = n_features

    def _emission(self) -> CategoricalEmission:
        n = self.n_features
        e = getattr(self, "emissionprob_", None)
        if n is None and e is not None:
            n = int(e.shape[1])
        return CategoricalEmission(None if n is None else int(n))


class PoissonHMM(TiedHMM):
    """HMM with independent Poisson counts per feature (``lambdas_``)."""

    def __init__(self, n_components: int = 1, algorithm: str = "viterbi",
                 random_state: Any = None, n_iter: int = 10, tol: float = 1e-2,
                 verbose: bool = False, params: Any = "stl", init_params: Any = "stl", *,
                 tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(None, n_components, tie_states=tie_states, ties=ties, fixed=fixed,
                         params=params, init_params=init_params, n_iter=n_iter, tol=tol,
                         algorithm=algorithm, engine=engine, device=device, dtype=dtype,
                         random_state=random_state, verbose=verbose)

    def _emission(self) -> PoissonEmission:
        return PoissonEmission()


class GMMHMM(TiedHMM):
    """HMM with a Gaussian mixture per state (``weights_``, ``means_``, ``covars_``).

    Maximum-likelihood M-step; equals hmmlearn's defaults for diag, full and tied covariances.
    """

    def __init__(self, n_components: int = 1, n_mix: int = 1, min_covar: float = 1e-3,
                 covariance_type: str = "diag", algorithm: str = "viterbi",
                 random_state: Any = None, n_iter: int = 10, tol: float = 1e-2,
                 verbose: bool = False, params: Any = "stmcw", init_params: Any = "stmcw", *,
                 tie_states: Groups = None, ties: TieMap = None,
                 fixed: Mapping[str, Any] | None = None, engine: str = "numpy",
                 device: Any = None, dtype: Any = None) -> None:
        super().__init__(None, n_components, tie_states=tie_states, ties=ties, fixed=fixed,
                         params=params, init_params=init_params, n_iter=n_iter, tol=tol,
                         algorithm=algorithm, engine=engine, device=device, dtype=dtype,
                         random_state=random_state, verbose=verbose)
        self.n_mix = n_mix
        self.min_covar = min_covar
        self.covariance_type = covariance_type

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
