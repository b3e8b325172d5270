"""Tied hidden Markov models trained by Baum-Welch with pooled statistics.

hmmlearn-compatible estimators (:class:`GaussianHMM`, :class:`CategoricalHMM`,
:class:`PoissonHMM`, :class:`GMMHMM`) plus :class:`TiedMixtureHMM`, all accepting
``tie_states=``, ``ties=`` and ``fixed=``; every tie goes through the core registry
(``model.layout_``). numpy engine by default, torch with ``engine="torch"``.
"""

from tiedsci.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    PoissonEmission,
)
from tiedsci.hmm.estimators import (
    GMMHMM,
    CategoricalHMM,
    GaussianHMM,
    PoissonHMM,
    TiedMixtureHMM,
)
from tiedsci.hmm.interop import from_hmmlearn, to_hmmlearn
from tiedsci.hmm.io import load, save
from tiedsci.hmm.model import TiedHMM
from tiedsci.hmm.shared import SharedFit, fit_shared

__all__ = [
    "TiedHMM",
    "GaussianHMM",
    "CategoricalHMM",
    "PoissonHMM",
    "GMMHMM",
    "TiedMixtureHMM",
    "GaussianEmission",
    "CategoricalEmission",
    "PoissonEmission",
    "GMMEmission",
    "save",
    "load",
    "to_hmmlearn",
    "from_hmmlearn",
    "fit_shared",
    "SharedFit",
]
