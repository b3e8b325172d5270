"""Periodic axes as registry declarations, compiled into the exact periodic embedding.

A periodic axis ``x`` on ``[a, a + L)`` is declared in the core registry as two fixed parameters
``domain.x.lower = a`` and ``domain.x.period = L`` (bounded positive). The registry is the one
place that records which boundaries are tied: ``u(a) == u(a + L)`` for the field and all its
derivatives. :func:`periodic_axes` reads them back from a compiled layout and checks them against
the network inputs; :func:`periodic_features` turns them into a
:class:`~tiedsci.pinn.features.PeriodicFeatures` embedding, so the tie is realised by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from tiedsci.core import Layout, Positive, Registry
from tiedsci.errors import DataError
from tiedsci.pinn.features import CkPeriodicFeatures, PeriodicFeatures, check_period

__all__ = ["declare_periodic_axis", "periodic_axes", "periodic_features", "NAMESPACE"]

NAMESPACE = "domain"


def declare_periodic_axis(registry: Registry, axis: str, lower: float, upper: float) -> None:
    """Declare that input ``axis`` is periodic on ``[lower, upper)``.

    Parameters
    ----------
    registry : Registry
        Receives ``domain.<axis>.lower`` and ``domain.<axis>.period`` (both fixed).
    axis : str
        Input name, e.g. ``"x"``.
    lower, upper : float
        The period is ``upper - lower`` and must be > 0.
    """
    if not isinstance(axis, str) or not axis.isidentifier():
        raise DataError(f"axis must be an identifier such as 'x', got {axis!r}")
    lo, hi = float(lower), float(upper)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise DataError(f"bounds of periodic axis {axis!r} must be finite, got ({lower}, {upper})")
    period = check_period(hi - lo, f"period of axis {axis!r} (upper - lower)")
    registry.declare(f"{NAMESPACE}.{axis}.lower", lo, fixed=True,
                     description=f"left end of periodic axis {axis}")
    registry.declare(f"{NAMESPACE}.{axis}.period", period, bounds=Positive(), fixed=True,
                     description=f"period of axis {axis}: u({axis}) == u({axis} + period)")


def periodic_axes(layout: Layout, inputs: Sequence[str]) -> dict[int, tuple[float, float]]:
    """Periodic input columns declared in ``layout``: ``{column: (lower, period)}``.

    Raises
    ------
    DataError
        When a declared periodic axis is not one of ``inputs``.
    """
    values = layout.values0
    out: dict[int, tuple[float, float]] = {}
    for name in layout.names:
        parts = name.split(".")
        if len(parts) != 3 or parts[0] != NAMESPACE or parts[2] != "period":
            continue
        axis = parts[1]
        if axis not in inputs:
            raise DataError(
                f"periodic axis {axis!r} is declared in the registry but is not an input of the "
                f"network (inputs: {tuple(inputs)})"
            )
        period = check_period(float(np.asarray(values[name])), f"period of axis {axis!r}")
        lower = float(np.asarray(values.get(f"{NAMESPACE}.{axis}.lower", 0.0)))
        out[list(inputs).index(axis)] = (lower, period)
    return out


def periodic_features(layout: Layout, inputs: Sequence[str], n_harmonics: int = 8,
                      others: Mapping[int, nn.Module] | None = None,
                      trainable_amplitudes: bool = False, ck: int | None = None,
                      n_basis: int = 32, decay: float = 0.0) -> PeriodicFeatures:
    """The embedding realising the registry's periodic axes.

    Parameters
    ----------
    layout : Layout
    inputs : sequence of str
        Names of the network's input columns, in order.
    n_harmonics : int
        Harmonics per periodic axis (Fourier variant).
    others : mapping column -> module, optional
        Encoders of the non-periodic columns.
    trainable_amplitudes : bool
    ck : int, optional
        Use the C^k B-spline variant with this continuity order (``n_basis`` functions per axis).
    decay : float
        Fourier variant: fixed factor ``k^-decay`` on harmonic ``k``.
    """
    axes = periodic_axes(layout, inputs)
    if not axes:
        raise DataError("the registry declares no periodic axis (use declare_periodic_axis)")
    periods = {c: p for c, (_, p) in axes.items()}
    lower = {c: lo for c, (lo, _) in axes.items()}
    if ck is not None:
        return CkPeriodicFeatures(len(inputs), periods, n_basis=n_basis, k=ck, lower=lower,
                                  others=others)
    return PeriodicFeatures(len(inputs), periods, n_harmonics, lower=lower,
                            trainable_amplitudes=trainable_amplitudes, others=others,
                            decay=decay)
