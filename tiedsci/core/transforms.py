"""Smooth bijections between the unconstrained free vector and bounded values.

``Interval(lo, hi)`` covers both one-sided (``hi = inf`` or ``lo = -inf``) and two-sided bounds;
``Positive()`` is ``Interval(0, inf)``. ``Simplex(axis)`` makes every 1-D slice along ``axis``
a probability vector (``k`` elements, ``k - 1`` free values, additive log-ratio map).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Transform", "Identity", "Interval", "Positive", "Simplex", "as_transform"]


@dataclass(frozen=True)
class Identity:
    """No bound: the value is the free variable."""

    def contains(self, x: np.ndarray) -> np.ndarray:
        return np.isfinite(x)

    def describe(self) -> str:
        return ""


@dataclass(frozen=True)
class Interval:
    """Bounds ``lo <= x <= hi`` (either may be infinite).

    Maps: two-sided ``x = lo + (hi - lo) * sigmoid(t)``; lower only ``x = lo + exp(t)``;
    upper only ``x = hi - exp(t)``. Values exactly on a bound pack to a large finite ``|t|``.
    """

    lo: float = -math.inf
    hi: float = math.inf

    def __post_init__(self) -> None:
        lo, hi = float(self.lo), float(self.hi)
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"bounds must not be NaN, got ({self.lo}, {self.hi})")
        if not lo < hi:
            raise ValueError(f"lower bound {lo} must be below upper bound {hi}")
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    @property
    def kind(self) -> str:
        lo_finite, hi_finite = math.isfinite(self.lo), math.isfinite(self.hi)
        if lo_finite and hi_finite:
            return "interval"
        if lo_finite:
            return "lower"
        if hi_finite:
            return "upper"
        return "identity"

    def contains(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return (x >= self.lo) & (x <= self.hi)

    def describe(self) -> str:
        if self.kind == "identity":
            return ""
        return f"[{self.lo:g}, {self.hi:g}]"


def Positive() -> Interval:  # noqa: N802 - reads as a type in declarations
    """``x > 0`` (``Interval(0, inf)``)."""
    return Interval(0.0, math.inf)


@dataclass(frozen=True)
class Simplex:
    """Every 1-D slice along ``axis`` is a probability vector (non-negative, sums to one).

    Elements of a slice that are fixed (e.g. structural zeros of a left-right transition matrix)
    keep their value; the free ones share the remaining mass.
    """

    axis: int = -1

    def describe(self) -> str:
        return f"simplex(axis={self.axis})"


Transform = Identity | Interval | Simplex


def as_transform(bounds: Any) -> Transform:
    """Normalise a ``bounds`` argument: None, ``(lo, hi)`` or a transform instance."""
    if bounds is None:
        return Identity()
    if isinstance(bounds, Identity | Interval | Simplex):
        return bounds
    if isinstance(bounds, tuple | list) and len(bounds) == 2:
        lo = -math.inf if bounds[0] is None else bounds[0]
        hi = math.inf if bounds[1] is None else bounds[1]
        t = Interval(lo, hi)
        return Identity() if t.kind == "identity" else t
    raise TypeError(
        f"bounds must be None, a (lo, hi) pair or Interval/Positive()/Simplex(), got {bounds!r}"
    )
