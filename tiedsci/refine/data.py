"""Dataset: one measured curve ``y(x)`` with its uncertainties and the points to use.

A frozen, validated container: every array is copied, made read-only and checked once at
construction (NaN/inf, non-positive sigma, negative weights, shape mismatches), so the solver
never meets bad numbers. Errors name the dataset and the first offending index.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiedsci.errors import DataError

__all__ = ["Dataset", "Columns", "model_x"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _as_1d(name: str, arg: str, value: Any, n: int | None) -> np.ndarray:
    if np.iscomplexobj(value):
        raise DataError(f"dataset {name!r}: {arg} is complex; give real values")
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"dataset {name!r}: {arg} is not numeric ({exc})") from None
    if arr.ndim == 0 and n is not None and arg in ("sigma", "weights"):
        arr = np.full(n, float(arr))  # one value for every point
    if arr.ndim != 1:
        raise DataError(f"dataset {name!r}: {arg} must be 1-D, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise DataError(f"dataset {name!r}: {arg} has {arr.shape[0]} points but x has {n}")
    bad = ~np.isfinite(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"dataset {name!r}: {arg} is not finite at index {i} ({float(arr[i])!r})")
    arr.setflags(write=False)
    return arr


class Columns(Mapping[str, Any]):
    """Named columns of a multi-column abscissa, as a model sees them: ``x["t"]``.

    Wraps a 2-D array or tensor of shape (..., n_columns) (numpy or torch); each column is
    ``data[..., j]``, of the same kind. ``len(x)`` is the number of points.
    """

    def __init__(self, data: Any, names: tuple[str, ...]) -> None:
        self.data = data
        self.names = names

    def __getitem__(self, key: str) -> Any:
        try:
            j = self.names.index(key)
        except ValueError:
            raise KeyError(f"no column {key!r}; the dataset's columns are "
                           f"{list(self.names)}") from None
        return self.data[..., j]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one column (``(n_points,)``)."""
        return tuple(self.data.shape[:-1])


def model_x(x: Any, columns: tuple[str, ...] | None) -> Any:
    """What a model receives as ``x``: the array itself, or :class:`Columns` over it."""
    return x if columns is None else Columns(x, columns)


def _columns(name: str, x: Any, columns: Any) -> tuple[Any, tuple[str, ...] | None]:
    """``(x as an array of shape (n,) or (n, k), column names or None)``."""
    if isinstance(x, Mapping):
        if columns is not None:
            raise DataError(f"dataset {name!r}: give columns= or a mapping for x, not both")
        names = tuple(str(k) for k in x)
        cols = [_as_1d(name, f"x[{k!r}]", v, None) for k, v in x.items()]
        if not cols:
            raise DataError(f"dataset {name!r}: x has no column")
        n = cols[0].shape[0]
        for k, c in zip(names, cols):
            if c.shape[0] != n:
                raise DataError(f"dataset {name!r}: column x[{k!r}] has {c.shape[0]} points "
                                f"but x[{names[0]!r}] has {n}")
        return np.column_stack(cols), names
    if columns is None:
        return x, None
    names = tuple(str(c) for c in columns)
    arr = np.array(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise DataError(f"dataset {name!r}: x with columns={list(names)} must have shape "
                        f"(n_points, {len(names)}), got {arr.shape}")
    return arr, names


@dataclass(frozen=True, eq=False)
class Dataset:
    """One observed curve.

    Parameters
    ----------
    x : array_like, shape (n_points,) or (n_points, n_columns), or mapping
        Abscissa (2theta in degrees, time of flight, q, ...). Several independent variables:
        a mapping ``{"t": ..., "T": ...}`` of equally long columns, or a 2-D array with
        ``columns``; the model then receives ``x`` as :class:`Columns` (``x["t"]``), and
        ``limits`` apply to the first column.
    y : array_like, shape (n_points,)
        Observed values.
    sigma : float or array_like, shape (n_points,), optional
        Standard uncertainties (> 0; one number for all points); the weights are
        ``1 / sigma**2``.
    weights : array_like, shape (n_points,), optional
        Least-squares weights (>= 0), instead of ``sigma``. With neither, all weights are 1.
    mask : array_like of bool, shape (n_points,), optional
        ``True`` marks points to EXCLUDE (the ``numpy.ma`` convention), e.g. impurity peaks.
    limits : (float, float), optional
        Use only points with ``limits[0] <= x <= limits[1]``.
    name : str
        Identifier; local parameters are declared under it (``"xray"`` -> ``"xray.scale"``).
    columns : sequence of str, optional
        Names of the columns of a 2-D ``x``.

    Attributes
    ----------
    weights : ndarray, shape (n_points,)
        The effective weights (``1/sigma**2``, the given weights, or ones).
    used : ndarray of bool, shape (n_points,)
        Points entering the fit (inside ``limits``, not masked, non-zero weight).
    """

    x: Any
    y: Any
    sigma: Any = None
    weights: Any = None
    mask: Any = None
    limits: tuple[float, float] | None = None
    name: str = "data"
    columns: tuple[str, ...] | None = None
    used: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise DataError(f"dataset name {name!r} must be an identifier such as 'xray' "
                            "(it prefixes the local parameter names)")
        x, columns = _columns(name, self.x, self.columns)
        if columns is None:
            x = _as_1d(name, "x", x, None)
        else:
            bad = ~np.isfinite(x)
            if bad.any():
                i, j = (int(v) for v in np.argwhere(bad)[0])
                raise DataError(f"dataset {name!r}: x[{columns[j]!r}] is not finite at index "
                                f"{i} ({float(x[i, j])!r})")
            x.setflags(write=False)
        object.__setattr__(self, "columns", columns)
        n = x.shape[0]
        if n == 0:
            raise DataError(f"dataset {name!r}: x is empty")
        y = _as_1d(name, "y", self.y, n)
        if self.sigma is not None and self.weights is not None:
            raise DataError(f"dataset {name!r}: give sigma or weights, not both")
        if self.sigma is not None:
            sigma = _as_1d(name, "sigma", self.sigma, n)
            bad = sigma <= 0
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"dataset {name!r}: sigma must be > 0, got {float(sigma[i])!r} at "
                                f"index {i}")
            w = 1.0 / sigma**2
        elif self.weights is not None:
            sigma = None
            w = _as_1d(name, "weights", self.weights, n).copy()
            bad = w < 0
            if bad.any():
                i = int(np.argmax(bad))
                raise DataError(f"dataset {name!r}: weights must be >= 0, got {float(w[i])!r} at "
                                f"index {i}")
        else:
            sigma = None
            w = np.ones(n)
        w.setflags(write=False)
        used = w > 0
        if self.mask is not None:
            m = np.asarray(self.mask)
            if m.shape != (n,):
                raise DataError(f"dataset {name!r}: mask has shape {m.shape}, expected ({n},)")
            if m.dtype != bool:
                raise DataError(f"dataset {name!r}: mask must be boolean (True = excluded), "
                                f"got dtype {m.dtype}")
            m = m.copy()
            m.setflags(write=False)
            object.__setattr__(self, "mask", m)
            used &= ~m
        limits = self.limits
        if limits is not None:
            try:
                lo, hi = (float(v) for v in limits)
            except (TypeError, ValueError):
                raise DataError(f"dataset {name!r}: limits must be (xmin, xmax), got "
                                f"{limits!r}") from None
            if not lo < hi:
                raise DataError(f"dataset {name!r}: limits {limits!r} need xmin < xmax")
            limits = (lo, hi)
            first = x if columns is None else x[:, 0]
            used &= (first >= lo) & (first <= hi)
        if not used.any():
            raise DataError(f"dataset {name!r}: no point is left to fit (check limits, mask and "
                            "weights)")
        used.setflags(write=False)
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "sigma", sigma)
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "limits", limits)
        object.__setattr__(self, "used", used)

    @property
    def n_points(self) -> int:
        """Number of points stored (used or not)."""
        return int(self.x.shape[0])

    @property
    def n_obs(self) -> int:
        """Number of points entering the fit."""
        return int(self.used.sum())

    def with_limits(self, limits: tuple[float, float] | None) -> Dataset:
        """A copy with other limits (the mask and weights are kept)."""
        return Dataset(self.x, self.y, sigma=self.sigma,
                       weights=None if self.sigma is not None else self.weights,
                       mask=self.mask, limits=limits, name=self.name, columns=self.columns)
