"""Emission families: log-probabilities, sufficient statistics and pooled M-steps.

Each family is a frozen dataclass holding configuration only. Parameter values travel in a dict
keyed by registry names (``"means"``, ``"covars"``, ``"emissionprob"``, ``"lambdas"``,
``"weights"``), every array with the state axis first. Every family implements
:class:`~tiedsci.hmm.family.EmissionFamily` (the contract, with shapes); the M-steps receive
``pool`` and ``keep`` from the EM driver, so no family knows anything about ties.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.core import Positive, Registry, Simplex
from tiedsci.errors import DataError
from tiedsci.hmm import gaussian_core as gc
from tiedsci.hmm import priors as pr
from tiedsci.hmm.engines import Engine
from tiedsci.hmm.family import Frames, Keep, Pool

__all__ = ["GaussianEmission", "CategoricalEmission", "MultinomialEmission", "PoissonEmission",
           "GMMEmission",
           "simplex_mstep", "compact_covars", "COVARIANCE_TYPES"]

COVARIANCE_TYPES = ("spherical", "diag", "full", "tied")


def simplex_mstep(name: str, counts: np.ndarray, old: np.ndarray, pool: Pool,
                  frozen: np.ndarray, prior: np.ndarray | None = None) -> np.ndarray:
    """Row-normalised (MAP) update of a probability table (rows along the last axis).

    ``prior`` (Dirichlet concentrations, shape of ``old``) adds ``prior - 1`` to the pooled
    counts once per tie group; entries left negative are set to 0 (hmmlearn's rule, see
    :mod:`tiedsci.hmm.priors`). Fixed entries keep their values; the free entries of a row share
    the remaining mass in proportion to their pooled counts. Rows without counts keep their old
    values.
    """
    pooled = pool(name, counts)
    if prior is not None:
        pooled = pooled + pool.once(name, prior - 1.0)
    free = ~frozen
    fixed_mass = np.where(frozen, old, 0.0).sum(-1, keepdims=True)
    free_counts = np.where(free, np.maximum(pooled, 0.0), 0.0)
    total = free_counts.sum(-1, keepdims=True)
    valid = total > 0
    new = (1.0 - fixed_mass) * free_counts / np.where(valid, total, 1.0)
    return np.where(free & valid, new, old)


def _as_matrix(x: Any) -> np.ndarray:
    """``X`` as a float matrix (n_samples, n_features); clear errors for what is not one."""
    try:
        arr = np.asarray(x)
    except ValueError as exc:  # ragged nested sequences
        raise DataError(f"X must be an array of shape (n_samples, n_features): {exc}") from None
    if arr.dtype.kind == "c":
        raise DataError("X is complex; tiedsci HMMs take real-valued observations")
    if arr.dtype.kind not in "biuf":
        try:
            arr = arr.astype(float)
        except (TypeError, ValueError) as exc:
            raise DataError(f"X must be numeric, got dtype {arr.dtype} ({exc})") from None
    arr = np.asarray(arr, dtype=float)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise DataError(f"X must have shape (n_samples, n_features), got {arr.shape}")
    if arr.shape[1] == 0:
        raise DataError(f"X has no feature (shape {arr.shape}); it needs at least one column")
    return arr


def _data_cov(x: np.ndarray, min_covar: float) -> np.ndarray:
    """Covariance of the data plus ``min_covar`` on the diagonal, for initial covariances.

    One sample has no spread: its covariance is taken as zero (not NaN). A feature without
    spread and ``min_covar = 0`` would give a singular start, which is an error.
    """
    d = x.shape[1]
    cv = np.atleast_2d(np.cov(x.T)) if x.shape[0] > 1 else np.zeros((d, d))
    cv = cv + min_covar * np.eye(d)
    if np.any(np.diagonal(cv) <= 0):
        j = int(np.argmax(np.diagonal(cv) <= 0))
        raise DataError(f"X has no variance in feature {j} and min_covar={min_covar}: the "
                        "initial covariance would be singular; use min_covar > 0")
    return cv


def _check_finite(x: np.ndarray, what: str) -> None:
    if not np.all(np.isfinite(x)):
        row = int(np.argwhere(~np.isfinite(x))[0][0])
        raise DataError(f"{what} contains NaN or inf (first at row {row}); remove or impute it")


def _check_nonnegative(name: str, value: float) -> None:
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _mean_prior(priors: dict[str, np.ndarray]) -> gc.MeanPrior | None:
    """The means prior of ``priors`` (None without one or when its weight is 0)."""
    w = priors.get("means_weight")
    if w is None or not np.any(w):
        return None
    return gc.MeanPrior(priors["means_prior"], w)


KMEANS_MAX_ROWS = 100_000


def _kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 20) -> np.ndarray:
    """Initial means by k-means++ seeding and Lloyd iterations (scipy), shape (k, D).

    A cluster left empty keeps its seed (scipy's ``missing="warn"`` behaviour, silenced): the
    means only start EM. Beyond :data:`KMEANS_MAX_ROWS` frames the clustering runs on a random
    subset of that size (drawn from ``rng``): the starting means of a 10^6-frame corpus do not
    need every frame, and on a cluster this step runs on the client before any EM iteration.
    """
    import warnings

    from scipy.cluster.vq import kmeans2

    if x.shape[0] > KMEANS_MAX_ROWS:
        x = x[np.sort(rng.choice(x.shape[0], KMEANS_MAX_ROWS, replace=False))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty"
        centers, _ = kmeans2(np.asarray(x, dtype=float), k, iter=n_iter, minit="++",
                             missing="warn", seed=rng, check_finite=False)
    return np.asarray(centers, dtype=float)


def _nested_kmeans(x: np.ndarray, n_states: int, n_mix: int, rng: np.random.Generator,
                   min_covar: float) -> np.ndarray:
    """Initial mixture means, shape (n_states, n_mix, D): k-means into ``n_states`` clusters,
    then each cluster into ``n_mix`` (a state's components start near each other, so EM starts
    from coherent states and does not depend on how the frames are split into sequences). A
    cluster with fewer than ``n_mix`` frames draws its components around the data mean."""
    centers = _kmeans(x, n_states, rng)
    labels = np.argmin(((x[:, None, :] - centers[None]) ** 2).sum(-1), axis=1)
    out = []
    for k in range(n_states):
        xk = x[labels == k]
        if xk.shape[0] >= n_mix:
            out.append(_kmeans(xk, n_mix, rng))
        else:
            out.append(rng.multivariate_normal(x.mean(0), _data_cov(x, min_covar), size=n_mix))
    return np.stack(out)


def _declare_covars(reg: Registry, name: str, value: np.ndarray, kind: str,
                    tie_axis_all: int | None) -> None:
    """Declare covariances; full matrices get their symmetry as registry ties."""
    if kind in ("spherical", "diag"):
        reg.declare(name, value, bounds=Positive())
        return
    reg.declare(name, value)
    reg.symmetric(name)
    if tie_axis_all is not None:
        n = value.shape[tie_axis_all]
        reg.tie_groups(name, [list(range(n))], axis=tie_axis_all)


def compact_covars(c: Any, covariance_type: str) -> np.ndarray:
    """hmmlearn's compact ``covars_`` for the type; full matrices (what the getter returns)
    are converted when they have the type's form (diagonal, multiples of the identity, equal
    across states), so ``b.covars_ = a.covars_`` works; other shapes pass unchanged."""
    c = np.array(c, dtype=float)
    if c.ndim != 3 or c.shape[-1] != c.shape[-2] or covariance_type == "full":
        return c
    if covariance_type == "tied":
        if not np.all(c == c[:1]):
            raise DataError("covars_ for covariance_type='tied': per-state matrices given, but "
                            "they differ")
        return c[0].copy()
    d = c.shape[-1]
    diag = np.diagonal(c, axis1=-2, axis2=-1)
    if not np.array_equal(c, diag[..., :, None] * np.eye(d)):
        raise DataError(f"covars_ for covariance_type={covariance_type!r}: full matrices "
                        "given, but they are not diagonal")
    if covariance_type == "diag":
        return diag.copy()
    if not np.all(diag == diag[..., :1]):
        raise DataError("covars_ for covariance_type='spherical': full matrices given, but "
                        "they are not multiples of the identity")
    return diag[..., 0].copy()


def _to_internal_cov(c: np.ndarray, kind: str, comp: tuple[int, ...], d: int) -> np.ndarray:
    """hmmlearn's covars_ shape for ``kind`` -> internal storage (tied -> full per comp).

    The full matrices of hmmlearn's getter are accepted too (:func:`compact_covars`).
    """
    c = np.asarray(c, dtype=float)
    if kind == "tied":
        return np.broadcast_to(c, comp + (d, d)).copy()
    if len(comp) == 1:
        c = compact_covars(c, kind)
    if kind == "spherical" and c.shape != comp and c.size == int(np.prod(comp, dtype=int)):
        c = c.reshape(comp)  # hmmlearn ravels spherical covariances of any shape
    want = {"spherical": comp, "diag": comp + (d,), "full": comp + (d, d)}[kind]
    if c.shape != want:
        raise DataError(f"covars_ for covariance_type={kind!r} must have shape {want}, "
                        f"got {c.shape}")
    return c.copy()


@dataclass(frozen=True)
class GaussianEmission:
    """One Gaussian per state; ``covariance_type`` as in hmmlearn.

    ``"tied"`` is stored as a full covariance per state tied across all states through the
    registry (so it is charged once in ``n_free`` and its M-step pools all states).
    """

    covariance_type: str = "diag"
    min_covar: float = 1e-3

    letters = {"m": "means", "c": "covars"}
    prior_defaults = {"means_prior": 0.0, "means_weight": 0.0, "covars_prior": 1e-2,
                      "covars_weight": 1.0}

    @property
    def kind(self) -> str:
        return "full" if self.covariance_type == "tied" else self.covariance_type

    def check(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got "
                             f"{self.covariance_type!r}")
        _check_nonnegative("min_covar", self.min_covar)

    def validate(self, x: np.ndarray) -> np.ndarray:
        x = _as_matrix(x)
        _check_finite(x, "X")
        return x

    def init(self, x: np.ndarray, n_states: int, rng: np.random.Generator,
             which: set[str]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if "means" in which:
            out["means"] = _kmeans(x, n_states, rng)
        if "covars" in which:
            cv = _data_cov(x, self.min_covar)
            out["covars"] = {"spherical": np.full(n_states, cv.diagonal().mean()),
                             "diag": np.tile(cv.diagonal(), (n_states, 1)),
                             "full": np.tile(cv, (n_states, 1, 1))}[self.kind]
        return out

    def declare(self, reg: Registry, values: dict[str, np.ndarray]) -> None:
        reg.declare("means", values["means"])
        _declare_covars(reg, "covars", values["covars"], self.kind,
                        0 if self.covariance_type == "tied" else None)

    def prepare(self, x: np.ndarray, eng: Engine, values: dict[str, np.ndarray]) -> Frames:
        return {"x": eng.asarray(x), "x2": eng.asarray(x * x)}

    def log_prob(self, values: dict[str, np.ndarray], frames: Frames, eng: Engine) -> Any:
        return gc.log_density(values["means"], values["covars"], self.kind, frames["x"],
                              frames["x2"], eng)

    def accumulate(self, values: dict[str, np.ndarray], frames: Frames, gamma: Any,
                   eng: Engine) -> dict[str, np.ndarray]:
        return gc.accumulate(gamma, frames["x"], frames["x2"], self.kind, eng)

    def check_priors(self, raw: dict[str, Any], values: dict[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """hmmlearn's GaussianHMM priors as full arrays (see :mod:`tiedsci.hmm.priors`).

        ``means_prior`` broadcasts to (K, D); ``means_weight`` (>= 0), ``covars_weight`` are
        scalars or per state (K,); ``covars_prior`` (>= 0) takes ``covars_``'s compact shape
        for the type (spherical (K,), diag (K, D), full (K, D, D), tied (D, D)) or a scalar
        (full/tied: added to every entry, as hmmlearn does) and must then be positive
        semi-definite. The update (Huang, Acero & Hon, as hmmlearn) is
        ``means = (w mu0 + obs) / (w + post)`` and ``covars = (covars_prior + scatter +
        w (mu - mu0)^2) / (max(covars_weight - 1, 0) + post)`` (full/tied:
        ``max(covars_weight - D, 0)``).
        """
        means, cov = values["means"], values["covars"]
        k = means.shape[0]
        out = {"means_prior": pr.broadcast("means_prior", raw["means_prior"], means.shape),
               "means_weight": pr.nonnegative("means_weight", pr.per_state(
                   "means_weight", raw["means_weight"], k, (k,)))}
        cp = raw["covars_prior"]
        if self.covariance_type == "tied" and np.ndim(cp) == 2:
            cp = np.asarray(cp)[None]
        cp = pr.per_state("covars_prior", cp, k, cov.shape)
        out["covars_prior"] = (pr.psd("covars_prior", cp) if self.kind == "full"
                               else pr.nonnegative("covars_prior", cp))
        out["covars_weight"] = pr.per_state("covars_weight", raw["covars_weight"], k, cov.shape)
        return out

    def m_step(self, values: dict[str, np.ndarray], stats: dict[str, np.ndarray], pool: Pool,
               keep: Keep, frozen: dict[str, np.ndarray],
               priors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        mean_prior = _mean_prior(priors)
        means = gc.mstep_means("means", values["means"], values["covars"], self.kind, stats,
                               pool, keep, mean_prior)
        covars = gc.mstep_covars("covars", means, values["covars"], self.kind, stats, pool,
                                 keep, min_covar=self.min_covar,
                                 prior=self._covar_prior(pool, means, priors, mean_prior))
        return {"means": means, "covars": covars}

    def _covar_prior(self, pool: Pool, means: np.ndarray, priors: dict[str, np.ndarray],
                     mean_prior: gc.MeanPrior | None) -> gc.CovarPrior | None:
        if not priors:
            return None
        d = means.shape[-1]
        dof = 1.0 if self.kind in ("spherical", "diag") else float(d)
        den = np.maximum(priors["covars_weight"] - dof, 0.0)
        return gc.covar_prior(pool, "means", "covars", means, den.shape, self.kind, mean_prior,
                              priors["covars_prior"], den)

    def to_public(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cov = values["covars"]
        return {"means_": values["means"].copy(),
                "covars_": cov[0].copy() if self.covariance_type == "tied" else cov.copy()}

    def from_public(self, attrs: dict[str, Any], n_states: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if attrs.get("means_") is not None:
            out["means"] = np.asarray(attrs["means_"], dtype=float).copy()
        if attrs.get("covars_") is not None:
            d = out["means"].shape[1] if "means" in out else np.shape(attrs["covars_"])[-1]
            out["covars"] = _to_internal_cov(attrs["covars_"], self.covariance_type,
                                             (n_states,), d)
        return out

    def n_features_of(self, values: dict[str, np.ndarray]) -> int:
        return int(values["means"].shape[1])

    def n_columns(self, values: dict[str, np.ndarray]) -> int:
        return self.n_features_of(values)

    def sample(self, values: dict[str, np.ndarray], state: int,
               rng: np.random.Generator) -> np.ndarray:
        mu = values["means"][state]
        cov = values["covars"][state]
        if self.kind == "spherical":
            return mu + np.sqrt(cov) * rng.standard_normal(mu.shape)
        if self.kind == "diag":
            return mu + np.sqrt(cov) * rng.standard_normal(mu.shape)
        return rng.multivariate_normal(mu, cov)


@dataclass(frozen=True)
class CategoricalEmission:
    """Discrete symbols ``0..n_features-1``; X of shape (n_samples, 1) integers."""

    n_features: int | None = None

    letters = {"e": "emissionprob"}
    prior_defaults = {"emissionprob_prior": 1.0}

    def check(self) -> None:
        n = self.n_features
        if n is not None and (isinstance(n, bool) or int(n) != n or n < 1):
            raise ValueError(f"n_features (number of symbols) must be an integer >= 1, got {n!r}")

    def validate(self, x: np.ndarray) -> np.ndarray:
        self.check()
        try:
            x = np.asarray(x)
        except ValueError as exc:  # ragged nested sequences
            raise DataError(f"X must be an array of shape (n_samples, 1): {exc}") from None
        if x.ndim == 2 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 1:
            raise DataError(f"X must have shape (n_samples, 1) of integer symbols, got {x.shape}")
        if x.dtype.kind == "f":
            _check_finite(x, "X")
            if np.any(x != np.round(x)):
                raise DataError("X must contain integer symbols; found non-integer values")
        elif x.dtype.kind not in "iub":
            raise DataError(f"X must contain integer symbols, got dtype {x.dtype}")
        x = x.astype(np.int64)
        if x.size and x.min() < 0:
            row = int(np.argmax(x < 0))
            raise DataError(f"X contains negative symbol {x[row]} at row {row}; symbols are "
                            "0..n_features-1")
        if self.n_features is not None and x.size and x.max() >= self.n_features:
            row = int(np.argmax(x >= self.n_features))
            raise DataError(f"X contains symbol {x[row]} at row {row}, out of range for "
                            f"n_features={self.n_features} (symbols 0..{self.n_features - 1})")
        return x[:, None]

    def symbols(self, x: np.ndarray, values: dict[str, np.ndarray] | None) -> int:
        if self.n_features is not None:
            return int(self.n_features)
        if values is not None and "emissionprob" in values:
            return int(values["emissionprob"].shape[1])
        return int(x.max()) + 1

    def init(self, x: np.ndarray, n_states: int, rng: np.random.Generator,
             which: set[str]) -> dict[str, np.ndarray]:
        if "emissionprob" not in which:
            return {}
        m = self.symbols(x, None)
        return {"emissionprob": rng.dirichlet(np.ones(m), size=n_states)}

    def declare(self, reg: Registry, values: dict[str, np.ndarray]) -> None:
        e = values["emissionprob"]
        ref = reg.declare("emissionprob", e, bounds=Simplex(axis=-1))
        for i, j in zip(*np.nonzero(e == 0)):
            reg.fix(ref[int(i), int(j)])

    def prepare(self, x: np.ndarray, eng: Engine, values: dict[str, np.ndarray]) -> Frames:
        n_symbols = int(values["emissionprob"].shape[1])
        sym = x[:, 0]
        if sym.size and sym.max() >= n_symbols:
            row = int(np.argmax(sym >= n_symbols))
            raise DataError(f"X contains symbol {sym[row]} at row {row}, out of range for "
                            f"n_features={n_symbols} (symbols 0..{n_symbols - 1})")
        return {"sym": eng.asindex(sym), "n_symbols": n_symbols}

    def log_prob(self, values: dict[str, np.ndarray], frames: Frames, eng: Engine) -> Any:
        with np.errstate(divide="ignore"):
            log_e = np.log(values["emissionprob"])
        return eng.take(eng.asarray(np.ascontiguousarray(log_e.T)), frames["sym"])

    def accumulate(self, values: dict[str, np.ndarray], frames: Frames, gamma: Any,
                   eng: Engine) -> dict[str, np.ndarray]:
        counts = eng.index_add(frames["n_symbols"], frames["sym"], gamma)  # (M, K)
        return {"counts": np.asarray(eng.to_numpy(counts), dtype=float).T.copy()}

    def check_priors(self, raw: dict[str, Any], values: dict[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """``emissionprob_prior``: Dirichlet concentrations per row, shape (K, n_features)."""
        return {"emissionprob_prior": pr.dirichlet(
            "emissionprob_prior", raw["emissionprob_prior"], values["emissionprob"].shape)}

    def m_step(self, values: dict[str, np.ndarray], stats: dict[str, np.ndarray], pool: Pool,
               keep: Keep, frozen: dict[str, np.ndarray],
               priors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        new = simplex_mstep("emissionprob", stats["counts"], values["emissionprob"], pool,
                            frozen["emissionprob"], priors.get("emissionprob_prior"))
        return {"emissionprob": new}

    def to_public(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"emissionprob_": values["emissionprob"].copy()}

    def n_features_of(self, values: dict[str, np.ndarray]) -> int:
        return int(values["emissionprob"].shape[1])

    def n_columns(self, values: dict[str, np.ndarray]) -> int:
        return 1

    def from_public(self, attrs: dict[str, Any], n_states: int) -> dict[str, np.ndarray]:
        e = attrs.get("emissionprob_")
        return {} if e is None else {"emissionprob": np.asarray(e, dtype=float).copy()}

    def sample(self, values: dict[str, np.ndarray], state: int,
               rng: np.random.Generator) -> np.ndarray:
        p = values["emissionprob"][state]
        return np.array([rng.choice(p.shape[0], p=p)])


@dataclass(frozen=True)
class MultinomialEmission:
    """Counts of ``n_features`` categories in ``n_trials`` draws per sample (hmmlearn's
    MultinomialHMM); X of shape (n_samples, n_features), non-negative integers.

    ``n_trials`` is an int, a tuple of per-sample totals, or None (taken from the row sums);
    rows whose sum differs from it are a :class:`~tiedsci.errors.DataError`. The statistics
    and M-step are the categorical ones with counts weighted by the draws.
    """

    n_trials: int | tuple[int, ...] | None = None

    letters = {"e": "emissionprob"}
    prior_defaults = {"emissionprob_prior": 1.0}

    def check(self) -> None:
        n = self.n_trials
        if n is not None and np.any(np.asarray(n) < 0):
            raise ValueError(f"n_trials must be >= 0, got {n!r}")

    def validate(self, x: Any) -> np.ndarray:
        x = _as_matrix(x)
        _check_finite(x, "X")
        if np.any(x < 0) or np.any(x != np.round(x)):
            row = int(np.argwhere((x < 0) | (x != np.round(x)))[0][0])
            raise DataError(f"X row {row}: multinomial counts must be non-negative integers")
        if self.n_trials is not None:
            want = np.asarray(self.n_trials)
            sums = x.sum(1)
            if want.ndim and want.shape != sums.shape:
                raise DataError(f"n_trials has {want.size} entries but X has {sums.size} rows")
            bad = np.flatnonzero(sums != want)
            if bad.size:
                r = int(bad[0])
                raise DataError(f"X row {r} sums to {int(sums[r])} counts, inconsistent with "
                                f"n_trials={int(np.broadcast_to(want, sums.shape)[r])}")
        return x

    def init(self, x: np.ndarray, n_states: int, rng: np.random.Generator,
             which: set[str]) -> dict[str, np.ndarray]:
        if "emissionprob" not in which:
            return {}
        return {"emissionprob": rng.dirichlet(np.ones(x.shape[1]), size=n_states)}

    declare = CategoricalEmission.declare
    check_priors = CategoricalEmission.check_priors
    m_step = CategoricalEmission.m_step
    to_public = CategoricalEmission.to_public
    from_public = CategoricalEmission.from_public
    n_features_of = CategoricalEmission.n_features_of
    n_columns = CategoricalEmission.n_features_of

    def prepare(self, x: np.ndarray, eng: Engine, values: dict[str, np.ndarray]) -> Frames:
        from scipy.special import gammaln

        const = gammaln(x.sum(1) + 1) - gammaln(x + 1).sum(1)
        return {"x": eng.asarray(x), "const": eng.asarray(const)}

    def log_prob(self, values: dict[str, np.ndarray], frames: Frames, eng: Engine) -> Any:
        log_e = np.log(np.maximum(values["emissionprob"], 1e-300))
        return frames["x"] @ eng.asarray(log_e.T) + frames["const"][:, None]

    def accumulate(self, values: dict[str, np.ndarray], frames: Frames, gamma: Any,
                   eng: Engine) -> dict[str, np.ndarray]:
        return {"counts": np.asarray(eng.to_numpy(gamma.T @ frames["x"]), dtype=float)}

    def sample(self, values: dict[str, np.ndarray], state: int,
               rng: np.random.Generator) -> np.ndarray:
        n = np.unique(np.asarray(self.n_trials)) if self.n_trials is not None else ()
        if len(n) != 1:
            raise ValueError("For sampling, a single n_trials must be given (set n_trials)")
        return rng.multinomial(int(n[0]), values["emissionprob"][state]).astype(float)


@dataclass(frozen=True)
class PoissonEmission:
    """Independent Poisson counts per feature; ``lambdas`` shape (n_states, n_features)."""

    letters = {"l": "lambdas"}
    prior_defaults = {"lambdas_prior": 0.0, "lambdas_weight": 0.0}

    def check(self) -> None:
        pass

    def check_priors(self, raw: dict[str, Any], values: dict[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """Gamma prior (shape ``lambdas_prior``, rate ``lambdas_weight``, both >= 0; scalars,
        per state (K,) or (K, n_features)).

        The update is the posterior mean ``(lambdas_prior + obs) / (lambdas_weight + post)``
        per state, summed over a tie group with the prior once. hmmlearn 0.3.3 writes it with
        ``n`` the posterior mass of *all* states; the two agree for one state and for the
        default (no) prior.
        """
        lam = values["lambdas"]
        k = lam.shape[0]
        return {n: pr.nonnegative(n, pr.per_state(n, raw[n], k, lam.shape))
                for n in ("lambdas_prior", "lambdas_weight")}

    def validate(self, x: np.ndarray) -> np.ndarray:
        x = _as_matrix(x)
        _check_finite(x, "X")
        if np.any(x < 0):
            row = int(np.argwhere(x < 0)[0][0])
            raise DataError(f"X contains a negative count at row {row}; Poisson data are "
                            "counts >= 0")
        if np.any(x != np.round(x)):
            row = int(np.argwhere(x != np.round(x))[0][0])
            raise DataError(f"X contains a non-integer count at row {row}")
        return x

    def init(self, x: np.ndarray, n_states: int, rng: np.random.Generator,
             which: set[str]) -> dict[str, np.ndarray]:
        if "lambdas" not in which:
            return {}
        mean = np.maximum(x.mean(0), 1e-3)
        return {"lambdas": mean[None, :] * rng.gamma(4.0, 0.25, size=(n_states, x.shape[1]))}

    def declare(self, reg: Registry, values: dict[str, np.ndarray]) -> None:
        reg.declare("lambdas", values["lambdas"], bounds=Positive())

    def prepare(self, x: np.ndarray, eng: Engine, values: dict[str, np.ndarray]) -> Frames:
        from scipy.special import gammaln

        return {"x": eng.asarray(x), "const": eng.asarray(-gammaln(x + 1).sum(1))}

    def log_prob(self, values: dict[str, np.ndarray], frames: Frames, eng: Engine) -> Any:
        lam = np.maximum(values["lambdas"], 1e-300)
        return (frames["x"] @ eng.asarray(np.log(lam).T) - eng.asarray(lam.sum(1))[None, :]
                + frames["const"][:, None])

    def accumulate(self, values: dict[str, np.ndarray], frames: Frames, gamma: Any,
                   eng: Engine) -> dict[str, np.ndarray]:
        return {"post": np.asarray(eng.to_numpy(gamma.sum(0)), dtype=float),
                "obs": np.asarray(eng.to_numpy(gamma.T @ frames["x"]), dtype=float)}

    def m_step(self, values: dict[str, np.ndarray], stats: dict[str, np.ndarray], pool: Pool,
               keep: Keep, frozen: dict[str, np.ndarray],
               priors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        lam = values["lambdas"]
        st = np.stack([stats["obs"], np.broadcast_to(stats["post"][:, None], lam.shape)], -1)
        pooled = pool("lambdas", st)
        if priors and (np.any(priors["lambdas_prior"]) or np.any(priors["lambdas_weight"])):
            pooled = pooled + pool.once("lambdas", np.stack(
                [priors["lambdas_prior"], priors["lambdas_weight"]], -1))
        valid = pooled[..., 1] > gc.MIN_POST
        new = pooled[..., 0] / np.where(valid, pooled[..., 1], 1.0)
        if pool.has_soft("lambdas"):
            new, touched = pool.soft_counts("lambdas", pooled[..., 0], pooled[..., 1])
            valid = valid | touched
        return {"lambdas": keep("lambdas", new, lam, valid)}

    def to_public(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"lambdas_": values["lambdas"].copy()}

    def from_public(self, attrs: dict[str, Any], n_states: int) -> dict[str, np.ndarray]:
        lam = attrs.get("lambdas_")
        return {} if lam is None else {"lambdas": np.asarray(lam, dtype=float).copy()}

    def n_features_of(self, values: dict[str, np.ndarray]) -> int:
        return int(values["lambdas"].shape[1])

    def n_columns(self, values: dict[str, np.ndarray]) -> int:
        return self.n_features_of(values)

    def sample(self, values: dict[str, np.ndarray], state: int,
               rng: np.random.Generator) -> np.ndarray:
        return rng.poisson(values["lambdas"][state]).astype(float)


@dataclass(frozen=True)
class GMMEmission:
    """A mixture of ``n_mix`` Gaussians per state (hmmlearn's GMMHMM).

    ``covariance_type="tied"`` ties the covariances of the mixture components within each state
    (hmmlearn's convention). ``shared_codebook=True`` ties means and covariances of every state's
    mixture across all states through the registry: a tied-mixture (semi-continuous) model in
    which only the weights are per state.
    """

    n_mix: int = 1
    covariance_type: str = "diag"
    min_covar: float = 1e-3
    shared_codebook: bool = False

    letters = {"w": "weights", "m": "means", "c": "covars"}
    prior_defaults = {"weights_prior": 1.0, "means_prior": 0.0, "means_weight": 0.0,
                      "covars_prior": None, "covars_weight": None}

    @property
    def kind(self) -> str:
        return "full" if self.covariance_type == "tied" else self.covariance_type

    def check(self) -> None:
        if self.covariance_type not in COVARIANCE_TYPES:
            raise ValueError(f"covariance_type must be one of {COVARIANCE_TYPES}, got "
                             f"{self.covariance_type!r}")
        if int(self.n_mix) < 1:
            raise ValueError(f"n_mix must be >= 1, got {self.n_mix}")
        _check_nonnegative("min_covar", self.min_covar)

    validate = GaussianEmission.validate

    def init(self, x: np.ndarray, n_states: int, rng: np.random.Generator,
             which: set[str]) -> dict[str, np.ndarray]:
        m = int(self.n_mix)
        out: dict[str, np.ndarray] = {}
        if "weights" in which:
            out["weights"] = np.full((n_states, m), 1.0 / m)
        if "means" in which:
            if self.shared_codebook:
                out["means"] = np.tile(_kmeans(x, m, rng)[None], (n_states, 1, 1))
            else:
                out["means"] = _nested_kmeans(x, n_states, m, rng, self.min_covar)
        if "covars" in which:
            cv = _data_cov(x, self.min_covar)
            out["covars"] = {"spherical": np.full((n_states, m), cv.diagonal().mean()),
                             "diag": np.tile(cv.diagonal(), (n_states, m, 1)),
                             "full": np.tile(cv, (n_states, m, 1, 1))}[self.kind]
        return out

    def declare(self, reg: Registry, values: dict[str, np.ndarray]) -> None:
        k = values["weights"].shape[0]
        reg.declare("weights", values["weights"], bounds=Simplex(axis=-1))
        reg.declare("means", values["means"])
        cov = values["covars"]
        if self.covariance_type == "tied":  # tie the components within each state
            _declare_covars(reg, "covars", cov, "full", None)
            ref = reg["covars"]
            for s in range(k):
                for j in range(1, cov.shape[1]):
                    reg.tie(ref[s, 0], ref[s, j])
        else:
            _declare_covars(reg, "covars", cov, self.kind, None)
        if self.shared_codebook:
            reg.tie_groups("means", [list(range(k))], axis=0)
            if self.covariance_type != "tied":
                reg.tie_groups("covars", [list(range(k))], axis=0)
            else:
                for s in range(1, k):
                    reg.tie(reg["covars"][0, 0], reg["covars"][s, 0])

    prepare = GaussianEmission.prepare

    def _components(self, values: dict[str, np.ndarray], frames: Frames,
                    eng: Engine) -> tuple[Any, Any]:
        k, m = values["weights"].shape
        logc = gc.log_density(values["means"], values["covars"], self.kind, frames["x"],
                              frames["x2"], eng)
        with np.errstate(divide="ignore"):
            logw = np.log(values["weights"]).reshape(1, k * m)
        logc = logc + eng.asarray(np.maximum(logw, -1e300))
        n = logc.shape[0]
        flat = logc.reshape(n * k, m)
        mx = eng.rowmax(flat)
        mx = eng.where(eng.isfinite(mx), mx, 0.0)
        lse = eng.log(eng.rowsum(eng.exp(flat - mx[:, None]))) + mx
        return logc, lse.reshape(n, k)

    def log_prob(self, values: dict[str, np.ndarray], frames: Frames, eng: Engine) -> Any:
        return self._components(values, frames, eng)[1]

    def accumulate(self, values: dict[str, np.ndarray], frames: Frames, gamma: Any,
                   eng: Engine) -> dict[str, np.ndarray]:
        k, m = values["weights"].shape
        logc, lse = self._components(values, frames, eng)
        n = logc.shape[0]
        resp = eng.exp(logc.reshape(n, k, m) - lse[:, :, None])
        g = (resp * gamma[:, :, None]).reshape(n, k * m)
        return gc.accumulate(g, frames["x"], frames["x2"], self.kind, eng)

    def check_priors(self, raw: dict[str, Any], values: dict[str, np.ndarray]
                     ) -> dict[str, np.ndarray]:
        """hmmlearn's GMMHMM priors, as full arrays plus the covariance update's terms.

        ``weights_prior`` (K, M) Dirichlet; ``means_prior`` (K, M, D), ``means_weight`` (K, M)
        >= 0; ``covars_prior`` / ``covars_weight`` in hmmlearn's parameterisation per type
        (diag and spherical: inverse-gamma ``alpha`` / ``beta``; full and tied:
        inverse-Wishart ``psi`` / ``nu``, tied per state). ``None`` (the default) is maximum
        likelihood; for spherical that is ``alpha = -(D + 2) / 2`` where hmmlearn 0.3.3 uses
        ``-(n_mix + 2) / 2`` (maximum likelihood only when ``n_mix == D``).
        The update is ``covars = (covars_num + scatter + w (mu - mu0)^2) / (covars_den +
        post)`` with the terms returned as ``covars_num`` / ``covars_den``.
        """
        k, m, d = values["means"].shape
        cov_shape = values["covars"].shape
        out = {"weights_prior": pr.dirichlet("weights_prior", raw["weights_prior"], (k, m)),
               "means_prior": pr.broadcast("means_prior", raw["means_prior"], (k, m, d)),
               "means_weight": pr.nonnegative("means_weight", pr.broadcast(
                   "means_weight", raw["means_weight"], (k, m)))}
        a, b = raw["covars_prior"], raw["covars_weight"]
        ct = self.covariance_type
        if ct == "diag":
            a = pr.broadcast("covars_prior", -1.5 if a is None else a, cov_shape)
            b = pr.broadcast("covars_weight", 0.0 if b is None else b, cov_shape)
            num, den = 2 * b, 2 * a + 3
        elif ct == "spherical":
            a = pr.broadcast("covars_prior", -(d + 2) / 2 if a is None else a, cov_shape)
            b = pr.broadcast("covars_weight", 0.0 if b is None else b, cov_shape)
            num, den = 2 * b / d, 1 + (2 * a + 2) / d
        else:
            lead = (k, m) if ct == "full" else (k,)
            psi = pr.broadcast("covars_prior", 0.0 if a is None else a, lead + (d, d))
            nu = pr.broadcast("covars_weight", (-(d + 2) if ct == "full" else -(m + d + 1))
                              if b is None else b, lead)
            plus = d + 2 if ct == "full" else m + d + 1
            if ct == "tied":
                psi = np.repeat(psi[:, None], m, axis=1)
                nu = np.repeat(nu[:, None], m, axis=1)
            num = np.swapaxes(psi, -1, -2)
            den = np.broadcast_to((nu + plus)[..., None, None], cov_shape)
        out["covars_num"] = np.ascontiguousarray(num, dtype=float)
        out["covars_den"] = np.ascontiguousarray(den, dtype=float)
        return out

    def m_step(self, values: dict[str, np.ndarray], stats: dict[str, np.ndarray], pool: Pool,
               keep: Keep, frozen: dict[str, np.ndarray],
               priors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        k, m = values["weights"].shape
        weights = simplex_mstep("weights", stats["post"].reshape(k, m), values["weights"], pool,
                                frozen["weights"], priors.get("weights_prior"))
        mean_prior = _mean_prior(priors)
        # hmmlearn's GMMHMM: the scatter about the current means, the means prior's term about
        # the new ones; then the means given the new covariances (exact conditional steps)
        cp = None
        if priors:
            centre = values["means"] if mean_prior is None else gc.mstep_means(
                "means", values["means"], values["covars"], self.kind, stats, pool, keep,
                mean_prior)
            cp = gc.covar_prior(pool, "means", "covars", centre, values["covars"].shape,
                                self.kind, mean_prior, priors["covars_num"],
                                priors["covars_den"])
        covars = gc.mstep_covars("covars", values["means"], values["covars"], self.kind, stats,
                                 pool, keep, min_covar=self.min_covar, prior=cp)
        means = gc.mstep_means("means", values["means"], covars, self.kind, stats, pool, keep,
                               mean_prior)
        return {"weights": weights, "means": means, "covars": covars}

    def to_public(self, values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cov = values["covars"]
        return {"weights_": values["weights"].copy(), "means_": values["means"].copy(),
                "covars_": cov[:, 0].copy() if self.covariance_type == "tied" else cov.copy()}

    def from_public(self, attrs: dict[str, Any], n_states: int) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        if attrs.get("weights_") is not None:
            out["weights"] = np.asarray(attrs["weights_"], dtype=float).copy()
        if attrs.get("means_") is not None:
            out["means"] = np.asarray(attrs["means_"], dtype=float).copy()
        if attrs.get("covars_") is not None:
            c = np.asarray(attrs["covars_"], dtype=float)
            d = c.shape[-1] if self.kind == "full" else (
                out["means"].shape[-1] if "means" in out else c.shape[-1])
            m = int(self.n_mix)
            if self.covariance_type == "tied":
                out["covars"] = np.repeat(c[:, None], m, axis=1).copy()
            else:
                out["covars"] = _to_internal_cov(c, self.covariance_type, (n_states, m), d)
        return out

    def n_features_of(self, values: dict[str, np.ndarray]) -> int:
        return int(values["means"].shape[-1])

    def n_columns(self, values: dict[str, np.ndarray]) -> int:
        return self.n_features_of(values)

    def sample(self, values: dict[str, np.ndarray], state: int,
               rng: np.random.Generator) -> np.ndarray:
        j = rng.choice(values["weights"].shape[1], p=values["weights"][state])
        mu = values["means"][state, j]
        cov = values["covars"][state, j]
        if self.kind in ("spherical", "diag"):
            return mu + np.sqrt(cov) * rng.standard_normal(mu.shape)
        return rng.multivariate_normal(mu, cov)
