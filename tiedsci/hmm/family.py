"""The contract every emission family implements (:class:`EmissionFamily`).

A family is a frozen dataclass holding configuration only; parameter values travel in a dict
keyed by registry names (``"means"``, ``"covars"``, ``"emissionprob"``, ``"lambdas"``,
``"weights"``), every array with the state axis first. Shapes below use ``K`` states, ``N``
frames (samples, packed), ``D`` features, ``M`` mixture components or symbols. The M-step receives
two callables from the EM driver, so no family knows anything about ties:
``pool(name, stats, unit_axes=0)`` (the registry's ``Layout.pool_stats``: a tie sums the
statistics of its members; mirror copies of a symmetric matrix count once; ``unit_axes=1`` pools
one statistic per vector of the last axis; ``pool.once(name, term)`` adds a prior term once per
tie group, :class:`tiedsci.hmm.em.Pooling`) and
``keep(name, new, old, valid)`` (restores fixed elements and elements without posterior mass).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tiedsci.core import Registry

__all__ = ["EmissionFamily", "Pool", "Keep", "Frames", "Values"]

Pool = Any  # tiedsci.hmm.em.Pooling: pool(name, stats, unit_axes=0), pool.once, pool.sizes
Keep = Callable[[str, np.ndarray, np.ndarray, np.ndarray], np.ndarray]
Frames = dict[str, Any]
Values = dict[str, np.ndarray]


@runtime_checkable
class EmissionFamily(Protocol):
    """What :class:`~tiedsci.hmm.model.TiedHMM` and the EM driver ask of an emission family.

    Attributes
    ----------
    letters : mapping of str to str
        hmmlearn letter code -> registry name of each emission parameter, e.g.
        ``{"m": "means", "c": "covars"}``; the names are also the keys of ``values``.
    prior_defaults : mapping of str to object
        hmmlearn's prior attribute names for this family and their defaults (e.g.
        ``{"means_prior": 0.0, "means_weight": 0.0, ...}``); the estimator reads these
        attributes and hands them to :meth:`check_priors`.
    """

    letters: Mapping[str, str]
    prior_defaults: Mapping[str, Any]

    def check(self) -> None:
        """Validate the configuration; raise ``ValueError`` naming the bad field."""
        ...

    def validate(self, x: Any) -> np.ndarray:
        """Check and convert observations.

        Parameters
        ----------
        x : array-like, shape (n_samples, D)

        Returns
        -------
        ndarray, shape (n_samples, n_columns)
            Float (or integer symbols); ``DataError`` naming row and column when invalid.
        """
        ...

    def init(self, x: np.ndarray, n_states: int, rng: np.random.Generator,
             which: set[str]) -> Values:
        """Initial values of the parameters named in ``which`` (a subset of ``letters``' names).

        Parameters
        ----------
        x : ndarray, shape (n_samples, n_columns)
            Validated observations (all sequences).
        n_states : int
            ``K``.
        rng : numpy Generator
        which : set of str

        Returns
        -------
        dict
            ``name -> array`` with the state axis first (length ``K``).
        """
        ...

    def declare(self, reg: Registry, values: Values) -> None:
        """Declare every emission parameter at ``values`` in ``reg``, with the family's own
        constraints (bounds, symmetric covariances, codebooks); the state axis is axis 0."""
        ...

    def prepare(self, x: np.ndarray, eng: Any, values: Values) -> Frames:
        """Per-frame data on the array engine ``eng``, computed once per fit.

        Parameters
        ----------
        x : ndarray, shape (N, n_columns)
            Packed observations.
        eng : Engine
            Array engine (:mod:`tiedsci.hmm.engines`).
        values : dict
            Current values (e.g. the number of symbols).
        """
        ...

    def log_prob(self, values: Values, frames: Frames, eng: Any) -> Any:
        """Log-density of every frame under every state: engine array, shape (N, K)."""
        ...

    def accumulate(self, values: Values, frames: Frames, gamma: Any, eng: Any) -> Values:
        """Sufficient statistics (numpy) from the state posteriors.

        Parameters
        ----------
        gamma : engine array, shape (N, K)
            Posterior state probabilities of each frame.

        Returns
        -------
        dict
            ``key -> array`` with the state axis first (shape (K, ...)), summable over shards
            of sequences and over models (stacked along axis 0).
        """
        ...

    def check_priors(self, raw: Mapping[str, Any], values: Values) -> Values:
        """Checked prior arrays (state axis first) from the raw attributes named in
        ``prior_defaults``; :class:`~tiedsci.errors.PriorError` naming a bad one (shape, sign,
        NaN). See :mod:`tiedsci.hmm.priors`."""
        ...

    def m_step(self, values: Values, stats: Values, pool: Pool, keep: Keep,
               frozen: Values, priors: Values) -> Values:
        """New emission values (MAP) from statistics pooled over tie groups.

        Parameters
        ----------
        values : dict
            Current emission values (registry names, state axis first).
        stats : dict
            As returned by :meth:`accumulate` (stacked over models in a shared fit).
        pool, keep : callables
            See the module docstring.
        frozen : dict
            ``name -> bool array`` (the parameter's shape): elements the M-step must not change.
        priors : dict
            As returned by :meth:`check_priors` (stacked over models); each prior term is added
            once per tie group through ``pool.once``. Empty: maximum likelihood.
        """
        ...

    def to_public(self, values: Values) -> dict[str, np.ndarray]:
        """hmmlearn attributes (``means_``, ``covars_`` ...) from internal values (copies)."""
        ...

    def from_public(self, attrs: Mapping[str, Any], n_states: int) -> Values:
        """Internal values of the parameters present in ``attrs`` (inverse of
        :meth:`to_public`, bit-exact)."""
        ...

    def n_features_of(self, values: Values) -> int:
        """hmmlearn's ``n_features``: dimensions ``D`` (categorical: number of symbols)."""
        ...

    def n_columns(self, values: Values) -> int:
        """Number of columns ``X`` must have (categorical: 1)."""
        ...

    def sample(self, values: Values, state: int, rng: np.random.Generator) -> np.ndarray:
        """One observation drawn from ``state``'s emission: shape (n_columns,)."""
        ...
