"""RefinementResult: everything a joint refinement produced, as a frozen record.

Values and standard uncertainties of every declared parameter, the covariance and correlation
of the free ones, agreement indices per dataset and overall, the stage history, and the
diagnostics (parameters at bounds, singularity, convergence). Exports: lmfit ``Parameters``
(:attr:`RefinementResult.params`), a text report, plots, and json that round-trips exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci._files import atomic_write_bytes
from tiedsci.errors import DataError
from tiedsci.refine.covariance import strongest
from tiedsci.refine.stats import Agreement

__all__ = ["DatasetFit", "StageSummary", "RefinementResult"]


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
        The layout of the last stage (not serialised; ``None`` after :meth:`from_json`).
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

    def to_dict(self) -> dict[str, Any]:
        """Plain-python (json-able) form; see :meth:`from_dict`."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "layout":
                continue
            v = getattr(self, f.name)
            out[f.name] = _encode(v)
        out["shapes"] = {k: list(np.shape(v)) for k, v in self.values.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefinementResult:
        shapes = {k: tuple(v) for k, v in data["shapes"].items()}

        def arrays(d: dict[str, Any]) -> dict[str, np.ndarray]:
            return {k: np.asarray(v, dtype=float).reshape(shapes[k]) for k, v in d.items()}

        n = len(data["free_names"])
        return cls(
            values=arrays(data["values"]),
            esd=arrays(data["esd"]),
            esd_unscaled=arrays(data["esd_unscaled"]),
            free_names=tuple(data["free_names"]),
            theta=np.asarray(data["theta"], dtype=float).reshape(n),
            covariance=np.asarray(data["covariance"], dtype=float).reshape(n, n),
            correlation=np.asarray(data["correlation"], dtype=float).reshape(n, n),
            datasets=tuple(
                DatasetFit(d["name"], *(np.asarray(d[k], dtype=float)
                                        for k in ("x", "y_obs", "y_calc", "weights")),
                           Agreement(**d["agreement"]))
                for d in data["datasets"]),
            overall=Agreement(**data["overall"]),
            redchi=data["redchi"],
            penalty=data["penalty"],
            n_obs=data["n_obs"],
            n_free=data["n_free"],
            n_restraint_rows=data["n_restraint_rows"],
            converged=data["converged"],
            message=data["message"],
            nfev=data["nfev"],
            njev=data["njev"],
            n_iter=data["n_iter"],
            at_bounds=tuple(tuple(x) for x in data["at_bounds"]),
            singular=tuple(tuple(x) for x in data["singular"]),
            stages=tuple(StageSummary(**{**s, "vary": tuple(s["vary"])})
                         for s in data["stages"]),
            optimizer=data["optimizer"],
            scale_covar=data["scale_covar"],
            warnings=tuple(data["warnings"]),
        )

    def to_json(self, path: str | Path | None = None, indent: int | None = None) -> str:
        """json text (floats written with full precision, so it round-trips exactly).

        With ``path`` the file is written atomically (temporary file, then renamed): a failed
        write leaves the previous file intact.
        """
        text = json.dumps(self.to_dict(), indent=indent)
        if path is not None:
            atomic_write_bytes(path, text.encode("utf-8"))
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> RefinementResult:
        """Read :meth:`to_json` output (a json string or a path to a file).

        Raises
        ------
        FileNotFoundError
            When ``source`` names a file that does not exist.
        DataError
            When the text is not json or not a refinement result (truncated, corrupt, other
            content); the message names the file.
        """
        text = str(source)
        where = "the json text"
        if not text.lstrip().startswith("{"):
            where = repr(str(source))
            try:
                text = Path(source).read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where} is not a text (json) file: {exc}") from None
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise DataError(f"{where} is not valid json ({exc}); truncated or not written by "
                            "RefinementResult.to_json") from None
        if not isinstance(data, dict):
            raise DataError(f"{where} does not hold a refinement result (a json object)")
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise DataError(f"{where} is not a complete refinement result "
                            f"({type(exc).__name__}: {exc})") from None


def _encode(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _encode(x) for k, x in v.items()}
    if isinstance(v, tuple | list):
        return [_encode(x) for x in v]
    if isinstance(v, Agreement | StageSummary):
        return {f.name: _encode(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, DatasetFit):
        return {f.name: _encode(getattr(v, f.name)) for f in fields(v)}
    if isinstance(v, np.generic):
        return v.item()
    return v
