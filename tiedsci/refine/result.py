"""RefinementResult: everything a joint refinement produced, as a frozen record.

Values and standard uncertainties of every declared parameter, the covariance and correlation
of the free ones, agreement indices per dataset and overall, the stage history, and the
diagnostics (parameters at bounds, singularity, convergence). Exports: lmfit ``Parameters``
(:attr:`RefinementResult.params`), a text report, plots, and a saved bundle (JSON + npz) that
:func:`load` reads back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import DataError
from tiedsci.persist import jsonable, read_bundle, write_bundle
from tiedsci.refine.covariance import strongest
from tiedsci.refine.stats import Agreement

__all__ = ["DatasetFit", "StageSummary", "RefinementResult", "load", "RESULT_FORMAT"]


@dataclass(frozen=True, eq=False)
class DatasetFit:
    """One dataset at the optimum (used points only).

    Attributes
    ----------
    name : str
    x, y_obs, y_calc, weights : ndarray, shape (n_obs,)
    agreement : Agreement
        ``chi2``, ``rwp``, ``rp``, ``rexp``, ``gof`` of this dataset.
    """

    name: str
    x: np.ndarray
    y_obs: np.ndarray
    y_calc: np.ndarray
    weights: np.ndarray
    agreement: Agreement

    @property
    def difference(self) -> np.ndarray:
        """``y_obs - y_calc``."""
        return self.y_obs - self.y_calc


@dataclass(frozen=True)
class StageSummary:
    """Outcome of one stage of a staged refinement."""

    name: str
    vary: tuple[str, ...]
    n_free: int
    chi2: float
    redchi: float
    rwp: float
    nfev: int
    converged: bool
    message: str


@dataclass(frozen=True, eq=False)
class RefinementResult:
    """Result of :meth:`tiedsci.refine.JointRefinement.fit`.

    Attributes
    ----------
    values : dict
        ``name -> ndarray`` for every declared parameter (free, tied, fixed, derived).
    esd : dict
        ``name -> ndarray``: standard uncertainties, scaled by the reduced chi-square when
        ``scale_covar`` (the default; 0 for fixed elements, NaN when the matrix is singular).
    esd_unscaled : dict
        The same from ``(J^T W J)^-1`` without scaling.
    free_names : tuple of str
        Labels of the free parameters (one per entry of ``theta``).
    theta : ndarray, shape (n_free,)
        Free vector at the optimum (unconstrained coordinates).
    covariance : ndarray, shape (n_free, n_free)
        Covariance of the free parameters' values (scaled like ``esd``).
    correlation : ndarray, shape (n_free, n_free)
    datasets : tuple of DatasetFit
    overall : Agreement
        Whole fit; ``chi2`` is the data part, ``gof = sqrt(redchi)``.
    redchi : float
        ``(chi2 + restraint penalty) / (n_obs + n_restraint_rows - n_free)``.
    penalty : float
        Sum of squared restraint residuals.
    n_obs, n_free, n_restraint_rows : int
    converged : bool
    message : str
    nfev, njev, n_iter : int
        Residual evaluations, Jacobian evaluations, accepted steps (all stages).
    at_bounds : tuple of (label, side)
    singular : tuple of tuple of str
        Groups of free parameters found linearly dependent (empty when fine).
    stages : tuple of StageSummary
    optimizer : str
        "tiedsci" (the block Levenberg-Marquardt) or "lmfit".
    scale_covar : bool
    warnings : tuple of str
    layout : Layout or None
        The layout of the last stage (not saved; ``None`` after :func:`load`).
    soft : dict
        With soft ties (:mod:`tiedsci.refine.softtie`): ``ties`` (per centre: members,
        spread, centre value and esd), ``n_eff``, ``dof`` (the reduced chi-square uses
        ``n_obs - n_eff``) and, for learned spreads, ``learned`` (tau, profile, refits).
        Empty without soft ties.
    """

    values: dict[str, np.ndarray]
    esd: dict[str, np.ndarray]
    esd_unscaled: dict[str, np.ndarray]
    free_names: tuple[str, ...]
    theta: np.ndarray
    covariance: np.ndarray
    correlation: np.ndarray
    datasets: tuple[DatasetFit, ...]
    overall: Agreement
    redchi: float
    penalty: float
    n_obs: int
    n_free: int
    n_restraint_rows: int
    converged: bool
    message: str
    nfev: int
    njev: int
    n_iter: int
    at_bounds: tuple[tuple[str, str], ...]
    singular: tuple[tuple[str, ...], ...]
    stages: tuple[StageSummary, ...]
    optimizer: str
    scale_covar: bool
    warnings: tuple[str, ...]
    layout: Any = field(default=None, repr=False)
    soft: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ convenience
    @property
    def success(self) -> bool:
        """Converged and with a regular normal matrix."""
        return self.converged and not self.singular

    @property
    def chi2(self) -> float:
        """Data chi-square of all datasets together."""
        return self.overall.chi2

    @property
    def rwp(self) -> float:
        return self.overall.rwp

    @property
    def gof(self) -> float:
        return self.overall.gof

    def dataset(self, name: str) -> DatasetFit:
        """The :class:`DatasetFit` called ``name``."""
        for d in self.datasets:
            if d.name == name:
                return d
        raise KeyError(f"no dataset {name!r}; have {[d.name for d in self.datasets]}")

    def strongest_correlations(self, n: int = 10, threshold: float = 0.5
                               ) -> list[tuple[str, str, float]]:
        """The ``n`` largest ``|r|`` among the free parameters (above ``threshold``)."""
        return strongest(self.correlation, self.free_names, n, threshold)

    @property
    def params(self) -> Any:
        """lmfit ``Parameters`` with the refined values and ``stderr`` (ties as ``expr``)."""
        if self.layout is not None:
            return self.layout.to_lmfit(self.values, self.esd)
        import lmfit

        from tiedsci.core.lmfit_interop import lmfit_name
        from tiedsci.core.refs import element_label

        params = lmfit.Parameters()
        free = set(self.free_names)
        for name, val in self.values.items():
            arr = np.asarray(val)
            for i in range(arr.size):
                label = element_label(name, arr.shape, i)
                params.add(lmfit_name(label), value=float(arr.ravel()[i]),
                           vary=label in free)
                params[lmfit_name(label)].stderr = float(np.ravel(self.esd[name])[i])
        return params

    # ------------------------------------------------------------------ exports
    def report(self, n_correlations: int = 10) -> str:
        """A plain-text report (agreement, parameters, correlations, diagnostics)."""
        from tiedsci.refine.report import format_report

        return format_report(self, n_correlations)

    def __str__(self) -> str:
        return self.report()

    def plot(self, path: str | Path | None = None, datasets: list[str] | None = None) -> Any:
        """Observed, calculated and difference curves, one panel per dataset.

        Uses matplotlib's Agg canvas (no display needed). Returns the figure; saves it when
        ``path`` is given.
        """
        from tiedsci.refine.plot import plot_result

        return plot_result(self, path, datasets)

    def save(self, path: str | Path) -> Path:
        """Write the result as a bundle (:mod:`tiedsci.persist`); :func:`load` reads it back.

        ``<path>.json`` holds the scalars, names, messages, agreement indices and stage
        summaries (floats exactly), ``<path>.npz`` every array (bit for bit). The files are
        written atomically: a failed save leaves an earlier one intact. The layout is not
        saved (``load(path).layout`` is None).

        Returns
        -------
        Path
            The JSON file.
        """
        meta: dict[str, Any] = {}
        arrays: dict[str, np.ndarray] = {}
        for f in fields(self):
            if f.name == "layout":
                continue
            v = getattr(self, f.name)
            if f.name in _ARRAY_FIELDS:
                arrays[f.name] = v
            elif f.name in _DICT_FIELDS:
                arrays.update({f"{f.name}/{k}": x for k, x in v.items()})
                meta[f.name] = list(v)
            elif f.name == "datasets":
                meta[f.name] = [{"name": d.name, "agreement": _fields(d.agreement)} for d in v]
                arrays.update({f"datasets/{i}/{k}": getattr(d, k)
                               for i, d in enumerate(v) for k in _DATASET_ARRAYS})
            else:
                meta[f.name] = _encode(v)
        meta["interrupted"] = self.message == "interrupted"
        return write_bundle(path, RESULT_FORMAT, meta, arrays=arrays)


RESULT_FORMAT = "tiedsci.refine.result/1"
_ARRAY_FIELDS = ("theta", "covariance", "correlation")
_DICT_FIELDS = ("values", "esd", "esd_unscaled")
_DATASET_ARRAYS = ("x", "y_obs", "y_calc", "weights")


def load(path: str | Path) -> RefinementResult:
    """Read a :class:`RefinementResult` written by :meth:`RefinementResult.save`.

    Every array comes back bit-identical and every float equal.

    Raises
    ------
    FileNotFoundError
        No ``<path>.json``.
    DataError
        The files are truncated, altered, of another kind or incomplete; the message names
        the file.
    """
    bundle = read_bundle(path, RESULT_FORMAT)
    try:
        return _decode(bundle.meta, bundle.arrays)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{str(bundle.path.with_suffix('.json'))!r} is not a complete "
                        f"refinement result ({type(exc).__name__}: {exc})") from None


def _decode(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> RefinementResult:
    kw: dict[str, Any] = {k: arrays[k] for k in _ARRAY_FIELDS}
    kw.update({f: {k: arrays[f"{f}/{k}"] for k in meta[f]} for f in _DICT_FIELDS})
    kw["datasets"] = tuple(
        DatasetFit(d["name"], *(arrays[f"datasets/{i}/{k}"] for k in _DATASET_ARRAYS),
                   Agreement(**d["agreement"]))
        for i, d in enumerate(meta["datasets"]))
    kw["overall"] = Agreement(**meta["overall"])
    kw["stages"] = tuple(StageSummary(**{**s, "vary": tuple(s["vary"])})
                         for s in meta["stages"])
    kw["free_names"] = tuple(meta["free_names"])
    kw["warnings"] = tuple(meta["warnings"])
    kw["at_bounds"] = tuple(tuple(x) for x in meta["at_bounds"])
    kw["singular"] = tuple(tuple(x) for x in meta["singular"])
    plain = ("redchi", "penalty", "n_obs", "n_free", "n_restraint_rows", "converged",
             "message", "nfev", "njev", "n_iter", "optimizer", "scale_covar")
    kw.update({k: meta[k] for k in plain})
    kw["soft"] = meta.get("soft", {})
    if not isinstance(kw["message"], str) or np.shape(kw["theta"]) != (len(kw["free_names"]),):
        raise ValueError("the message or theta does not fit the free parameters")
    return RefinementResult(**kw)


def _fields(v: Any) -> dict[str, Any]:
    return {f.name: _encode(getattr(v, f.name)) for f in fields(v)}


def _encode(v: Any) -> Any:
    if isinstance(v, Agreement | StageSummary):
        return _fields(v)
    if isinstance(v, tuple | list):
        return [_encode(x) for x in v]
    return jsonable(v)
