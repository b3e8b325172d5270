"""Relations between parameters, as plain data (only ``Derived`` holds code)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tiedsci.core.refs import ParamRef

__all__ = ["Tie", "Linear", "Fixed", "Derived", "Restraint", "SoftTie"]


@dataclass(frozen=True)
class Tie:
    """``targets`` share the value of ``source`` element by element."""

    source: ParamRef
    targets: tuple[ParamRef, ...]


@dataclass(frozen=True)
class Linear:
    """``target = sum_i coef_i * ref_i + offset``, element by element (affine ties are one term)."""

    target: ParamRef
    terms: tuple[tuple[float, ParamRef], ...]
    offset: float = 0.0

    def describe(self) -> str:
        parts = []
        for coef, ref in self.terms:
            parts.append(ref.label if coef == 1.0 else f"{coef:g}*{ref.label}")
        text = " + ".join(parts) if parts else "0"
        if self.offset:
            text += f" {'+' if self.offset > 0 else '-'} {abs(self.offset):g}"
        return text


@dataclass(frozen=True)
class Fixed:
    """``target`` is held at ``value``."""

    target: ParamRef
    value: Any


@dataclass(frozen=True)
class Derived:
    """``target = fn(*deps)`` evaluated after the linear map, in dependency order.

    ``jac(*deps)``, if given, returns one array per dependency of shape
    ``target.shape + dep.shape`` (d target / d dep); otherwise ``pool_grad`` uses central
    differences.
    """

    target: str
    fn: Callable[..., Any]
    deps: tuple[str, ...]
    jac: Callable[..., Any] | None = None

    def describe(self) -> str:
        fn_name = getattr(self.fn, "__name__", "fn")
        return f"{fn_name}({', '.join(self.deps)})"


@dataclass(frozen=True)
class Restraint:
    """Soft tie: penalty ``strength * sum (x_i - mean)^2`` over ``refs`` (or ``(x - target)^2``)."""

    refs: tuple[ParamRef, ...]
    strength: float
    target: Any = None


@dataclass(frozen=True)
class SoftTie:
    """Partial pooling: every member is drawn around one free centre, ``x_k ~ N(c, spread^2)``.

    Element by element: member ``k``'s element ``i`` is pulled towards ``centre``'s element
    ``i``. ``spread -> 0`` is the hard tie (every member equals the centre), ``spread -> inf``
    the untied fit (the centre is then unseen). The domains realise it: a closed-form MAP
    M-step in Baum-Welch, restraint rows ``(x_k - c) / spread`` in least squares.

    Attributes
    ----------
    members : tuple of ParamRef
        Two or more selections of one shape (in the members' own units).
    centre : ParamRef
        The declared centre parameter (same shape, free), declared by
        :meth:`~tiedsci.core.Registry.soft_tie`.
    spread : float or None
        Standard deviation of the members around the centre, in the members' units;
        ``0.0`` and ``math.inf`` are the exact limits. ``None``: learned from the data by the
        domain (type-II maximum likelihood).
    """

    members: tuple[ParamRef, ...]
    centre: ParamRef
    spread: float | None = None

    @property
    def learned(self) -> bool:
        """Whether the spread is learned from the data."""
        return self.spread is None

    def describe(self) -> str:
        spread = "learned" if self.spread is None else f"{self.spread:g}"
        return (f"soft tie of {', '.join(m.label for m in self.members)} around "
                f"{self.centre.label} (spread {spread})")
