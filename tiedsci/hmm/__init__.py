"""Tied hidden Markov models trained by Baum-Welch with pooled statistics.

hmmlearn-compatible estimators (:class:`GaussianHMM`, :class:`CategoricalHMM`,
:class:`MultinomialHMM`, :class:`PoissonHMM`, :class:`GMMHMM`) plus :class:`TiedMixtureHMM`,
all accepting ``tie_states=``, ``ties=`` and ``fixed=``; every tie goes through the core registry
(``model.layout_``). numpy engine by default, torch with ``engine="torch"``.

The same verbs as every tiedsci domain: ``est.fit(X, lengths) -> est`` (sklearn; ``start=``
and ``on_iteration=`` drive the one EM loop, :func:`tiedsci.hmm.em.baum_welch`),
``est.report()``, ``est.plot(X)``, ``est.save(path)`` and :func:`load`.

Which states should be tied? :func:`discover` searches (greedy merging scored by BIC with the
registry's ``n_free``), :func:`split_test` asks whether declared ties should be split, and
``soft_ties=`` partially pools means around learned centres.
"""

from tiedsci.hmm.discovery import discover, split_test
from tiedsci.hmm.em import ConvergenceMonitor, EMState, SoftTieFit
from tiedsci.hmm.emissions import (
    CategoricalEmission,
    GaussianEmission,
    GMMEmission,
    MultinomialEmission,
    PoissonEmission,
)
from tiedsci.hmm.estimators import (
    GMMHMM,
    CategoricalHMM,
    GaussianHMM,
    MultinomialHMM,
    PoissonHMM,
    TiedMixtureHMM,
)
from tiedsci.hmm.family import EmissionFamily
from tiedsci.hmm.interop import from_hmmlearn, to_hmmlearn
from tiedsci.hmm.io import load, save
from tiedsci.hmm.model import SuffStats, TiedHMM
from tiedsci.hmm.shared import SharedFit, fit_shared

__all__ = [
    "TiedHMM",
    "GaussianHMM",
    "CategoricalHMM",
    "MultinomialHMM",
    "PoissonHMM",
    "GMMHMM",
    "TiedMixtureHMM",
    "GaussianEmission",
    "CategoricalEmission",
    "MultinomialEmission",
    "PoissonEmission",
    "GMMEmission",
    "EmissionFamily",
    "EMState",
    "ConvergenceMonitor",
    "save",
    "load",
    "to_hmmlearn",
    "from_hmmlearn",
    "fit_shared",
    "SharedFit",
    "discover",
    "split_test",
    "SuffStats",
    "SoftTieFit",
]
