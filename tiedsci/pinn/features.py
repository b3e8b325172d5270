"""Input embeddings: exact periodic features, a C^k periodic variant, Fourier features for time.

:class:`PeriodicFeatures` maps each periodic input ``x`` (period ``L``) to
``[cos(2 pi k (x - a) / L), sin(2 pi k (x - a) / L)]``, ``k = 1..K``, so every network built on it
satisfies ``u(x + L) = u(x)`` (and the same for all derivatives) whatever its weights: the two
boundaries are tied by construction, not by a penalty. The phase ``(x - a) mod L`` is reduced
before the cosine, so the two ends of the interval give bit-identical features.

:class:`CkPeriodicFeatures` uses periodic cardinal B-splines of degree ``k + 1`` instead: still
exactly periodic, but only ``k`` times continuously differentiable, for solutions that are not
smooth (corners, fronts). :class:`FourierFeatures` embeds a non-periodic input (time).

Every encoder works on one input column and has ``forward(col)`` and ``jet(col_jet)``
(Taylor-mode derivatives, see :mod:`tiedsci.pinn.jets`); :class:`PeriodicFeatures` assembles
one encoder per input column.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tiedsci.errors import DataError
from tiedsci.pinn.jets import Jet, compose

__all__ = [
    "InputEmbedding",
    "PeriodicEncoder",
    "CkPeriodicEncoder",
    "FourierFeatures",
    "ScaledInput",
    "PeriodicFeatures",
    "CkPeriodicFeatures",
    "check_period",
]


def check_period(period: float, name: str = "period") -> float:
    """Validate a period: a finite number > 0 (raises :class:`~tiedsci.errors.DataError`)."""
    try:
        p = float(period)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be a number, got {period!r}") from None
    if not math.isfinite(p) or p <= 0:
        raise DataError(f"{name} must be finite and > 0, got {period!r}")
    return p


def _check_count(n: int, name: str, minimum: int = 1) -> int:
    if isinstance(n, bool) or int(n) != n or int(n) < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {n!r}")
    return int(n)


def _cos_derivs(theta: torch.Tensor, order: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    c, s = torch.cos(theta), torch.sin(theta)
    cos_d = [c, -s, -c, s, c][: order + 1]
    sin_d = [s, c, -s, -c, s][: order + 1]
    return cos_d, sin_d


class PeriodicEncoder(nn.Module):
    """``x -> [a_k cos(w_k r), a_k sin(w_k r)]``, ``r = (x - lower) mod L``, ``w_k = 2 pi k / L``.

    Parameters
    ----------
    period : float
        ``L > 0``.
    n_harmonics : int
        ``K >= 1``; the output has ``2 K`` columns.
    lower : float
        Left end ``a`` of the periodic interval (only a phase).
    trainable_amplitudes : bool
        Learn one amplitude ``a_k`` per harmonic (initialised to 1); periodicity is unaffected.
    decay : float
        Fixed factor ``k^-decay`` on harmonic ``k`` (0: none): a diagonal preconditioner for
        residuals with high x-derivatives, whose sensitivity to harmonic ``k`` grows like
        ``k^order`` (KdV: ``u_xxx``).
    """

    def __init__(self, period: float, n_harmonics: int = 8, lower: float = 0.0,
                 trainable_amplitudes: bool = False, decay: float = 0.0) -> None:
        super().__init__()
        self.period = check_period(period)
        self.n_harmonics = _check_count(n_harmonics, "n_harmonics")
        self.lower = float(lower)
        self.register_buffer(
            "omega", 2 * math.pi / self.period * torch.arange(1, self.n_harmonics + 1,
                                                               dtype=torch.float64)
        )
        self.amplitude = (nn.Parameter(torch.ones(self.n_harmonics, dtype=torch.float64))
                          if trainable_amplitudes else None)
        decay = float(decay)
        if not math.isfinite(decay) or decay < 0:
            raise DataError(f"decay must be finite and >= 0, got {decay!r}")
        k = torch.arange(1, self.n_harmonics + 1, dtype=torch.float64)
        # not saved: rebuilt from the spec, so bundles written before it still load
        self.register_buffer("decay_scale", (k ** -decay).repeat(2) if decay else None,
                             persistent=False)

    @property
    def n_out(self) -> int:
        return 2 * self.n_harmonics

    def _phase(self, x: torch.Tensor) -> torch.Tensor:
        return torch.remainder(x - self.lower, self.period)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x shape (N,) -> features shape (N, 2K)."""
        return self.jet((x,))[0]

    def jet(self, x: Jet) -> Jet:
        omega = self.omega.to(x[0].dtype)
        theta = (self._phase(x[0])[:, None] * omega,) + tuple(d[:, None] * omega for d in x[1:])
        cos_d, sin_d = _cos_derivs(theta[0], len(x) - 1)
        out = [torch.cat([c, s], dim=1) for c, s in zip(compose(cos_d, theta),
                                                        compose(sin_d, theta))]
        if self.amplitude is not None:
            amp = self.amplitude.to(x[0].dtype).repeat(2)
            out = [o * amp for o in out]
        if self.decay_scale is not None:
            out = [o * self.decay_scale.to(x[0].dtype) for o in out]
        return tuple(out)


class CkPeriodicEncoder(nn.Module):
    """Periodic cardinal B-splines of degree ``k + 1`` on ``n_basis`` uniform knots: C^k exactly.

    ``phi_j(x) = B(s - j mod n)``, ``s = n ((x - lower) mod L) / L``, with ``B`` the cardinal
    B-spline of degree ``p = k + 1`` (support ``[0, p + 1]``). Exactly periodic; derivatives of
    order ``<= k`` are continuous, order ``k + 1`` jumps at the knots.

    Parameters
    ----------
    period : float
    n_basis : int
        Number of knots/basis functions, ``>= k + 2``.
    k : int
        Continuity order (0: piecewise linear hats, 2: cubic splines, ...), ``0 <= k <= 5``.
    lower : float
    """

    def __init__(self, period: float, n_basis: int = 32, k: int = 2, lower: float = 0.0) -> None:
        super().__init__()
        self.period = check_period(period)
        self.k = _check_count(k, "k", minimum=0)
        if self.k > 5:
            raise DataError(f"k must be <= 5, got {k}")
        self.degree = self.k + 1
        self.n_basis = _check_count(n_basis, "n_basis", minimum=self.degree + 1)
        self.lower = float(lower)
        p = self.degree
        self._coef = [(-1) ** i * math.comb(p + 1, i) / math.factorial(p) for i in range(p + 2)]

    @property
    def n_out(self) -> int:
        return self.n_basis

    def _bspline_derivs(self, u: torch.Tensor, order: int) -> list[torch.Tensor]:
        p = self.degree
        out = []
        for m in range(order + 1):
            if m > p:
                out.append(torch.zeros_like(u))
                continue
            fall = math.factorial(p) / math.factorial(p - m)
            acc = torch.zeros_like(u)
            for i, c in enumerate(self._coef):
                d = u - i
                pos = torch.clamp(d, min=0.0)
                term = (d > 0).to(u.dtype) if p - m == 0 else pos ** (p - m)
                acc = acc + c * fall * term
            out.append(torch.where(u < p + 1, acc, torch.zeros_like(u)))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x shape (N,) -> features shape (N, n_basis)."""
        return self.jet((x,))[0]

    def jet(self, x: Jet) -> Jet:
        n, length = self.n_basis, self.period
        scale = n / length
        s = torch.remainder(x[0] - self.lower, length) * scale
        j = torch.arange(n, dtype=x[0].dtype, device=x[0].device)
        u = torch.remainder(s[:, None] - j, float(n))
        z = (u,) + tuple((d * scale)[:, None].expand_as(u) for d in x[1:])
        return compose(self._bspline_derivs(u, len(x) - 1), z)


class FourierFeatures(nn.Module):
    """Non-periodic input: ``[2 r - 1, cos(w_j r), sin(w_j r)]``, ``r = (t - lo) / (hi - lo)``.

    Parameters
    ----------
    lower, upper : float
        Range of the input (for scaling only).
    frequencies : sequence of float
        Angular frequencies ``w_j`` in units of the scaled input ``r`` (e.g. ``pi * j``); empty
        gives the scaled input alone.
    trainable : bool
        Learn the frequencies.
    """

    def __init__(self, lower: float, upper: float, frequencies: Sequence[float] = (),
                 trainable: bool = False) -> None:
        super().__init__()
        self.lower, self.upper = float(lower), float(upper)
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)) \
                or self.upper <= self.lower:
            raise DataError(f"FourierFeatures needs lower < upper, got ({lower}, {upper})")
        w = torch.as_tensor(np.asarray(frequencies, dtype=np.float64).reshape(-1))
        if not torch.all(torch.isfinite(w)):
            raise DataError("frequencies must be finite")
        if trainable:
            self.frequencies = nn.Parameter(w)
        else:
            self.register_buffer("frequencies", w)

    @property
    def n_out(self) -> int:
        return 1 + 2 * int(self.frequencies.numel())

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """t shape (N,) -> features shape (N, 1 + 2 n_freq)."""
        return self.jet((t,))[0]

    def jet(self, t: Jet) -> Jet:
        scale = 1.0 / (self.upper - self.lower)
        r = ((t[0] - self.lower) * scale,) + tuple(d * scale for d in t[1:])
        lin = (2 * r[0] - 1,) + tuple(2 * d for d in r[1:])
        if self.frequencies.numel() == 0:
            return tuple(v[:, None] for v in lin)
        w = self.frequencies.to(t[0].dtype)
        theta = tuple(v[:, None] * w for v in r)
        cos_d, sin_d = _cos_derivs(theta[0], len(t) - 1)
        return tuple(torch.cat([a[:, None], c, s], dim=1) for a, c, s in
                     zip(lin, compose(cos_d, theta), compose(sin_d, theta)))


class ScaledInput(nn.Module):
    """Plain input scaled to ``[-1, 1]``: ``2 (x - lower) / (upper - lower) - 1`` (not periodic)."""

    def __init__(self, lower: float, upper: float) -> None:
        super().__init__()
        self.lower, self.upper = float(lower), float(upper)
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)) \
                or self.upper <= self.lower:
            raise DataError(f"ScaledInput needs lower < upper, got ({lower}, {upper})")

    @property
    def n_out(self) -> int:
        return 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.jet((x,))[0]

    def jet(self, x: Jet) -> Jet:
        s = 2.0 / (self.upper - self.lower)
        first = (x[0] - self.lower) * s - 1
        return (first[:, None],) + tuple((d * s)[:, None] for d in x[1:])


class InputEmbedding(nn.Module):
    """One encoder per input column, outputs concatenated: ``X (N, n_inputs) -> (N, n_out)``.

    Parameters
    ----------
    n_inputs : int
    encoders : mapping column -> module
        Modules with ``n_out`` and ``jet(col_jet)``; a column without one passes through.
    """

    def __init__(self, n_inputs: int, encoders: Mapping[int, nn.Module] | None = None) -> None:
        super().__init__()
        n_inputs = _check_count(n_inputs, "n_inputs")
        encoders = dict(encoders or {})
        for axis in encoders:
            if not 0 <= int(axis) < n_inputs:
                raise DataError(f"encoder given for input {axis}, but there are {n_inputs} inputs")
        self.n_inputs = n_inputs
        self.encoders = nn.ModuleList()
        self._axis_of: list[int] = []
        for axis in range(n_inputs):
            if axis in encoders:
                self.encoders.append(encoders[axis])
                self._axis_of.append(axis)
        self._plain = [a for a in range(n_inputs) if a not in encoders]

    @property
    def n_out(self) -> int:
        return sum(int(e.n_out) for e in self.encoders) + len(self._plain)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x shape (N, n_inputs) -> features shape (N, n_out)."""
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise DataError(f"input must have shape (N, {self.n_inputs}), got {tuple(x.shape)}")
        return self.jet(x, axis=0, order=0)[0]

    def jet(self, x: torch.Tensor, axis: int, order: int) -> Jet:
        """Features and their first ``order`` derivatives along input column ``axis``.

        Parameters
        ----------
        x : tensor, shape (N, n_inputs)
        axis : int
        order : int

        Returns
        -------
        Jet of tensors of shape (N, n_out).
        """
        zero = torch.zeros_like(x[:, 0])
        one = torch.ones_like(x[:, 0])

        def col_jet(a: int) -> Jet:
            tangent = (one if a == axis else zero,) if order >= 1 else ()
            return (x[:, a],) + tangent + (zero,) * max(order - 1, 0)

        parts: list[Jet] = []
        for enc, a in zip(self.encoders, self._axis_of):
            parts.append(enc.jet(col_jet(a)))
        for a in self._plain:
            parts.append(tuple(c[:, None] for c in col_jet(a)))
        return tuple(torch.cat([p[m] for p in parts], dim=1) for m in range(order + 1))


def _check_axes(n_inputs: int, periods: Mapping[int, float]) -> None:
    if not periods:
        raise DataError("periods is empty: name at least one periodic input column")
    for axis in periods:
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not (
                0 <= int(axis) < n_inputs):
            raise DataError(
                f"periodic axis {axis!r} is not an input: the network has {n_inputs} input "
                f"column(s), 0..{n_inputs - 1}"
            )


def _merge(periodic: dict[int, nn.Module], others: Mapping[int, nn.Module] | None
           ) -> dict[int, nn.Module]:
    others = dict(others or {})
    for axis in others:
        if axis in periodic:
            raise DataError(f"input {axis} is periodic and cannot also have another encoder")
    return {**others, **periodic}


class PeriodicFeatures(InputEmbedding):
    """Exact periodic embedding of any subset of the input columns.

    Parameters
    ----------
    n_inputs : int
        Number of input columns (e.g. 2 for ``(x, t)``).
    periods : mapping int -> float
        Periodic input columns and their periods, e.g. ``{0: 2 * pi}``.
    n_harmonics : int or mapping int -> int
        Harmonics per periodic column.
    lower : mapping int -> float, optional
        Left ends of the periodic intervals (a phase; default 0).
    trainable_amplitudes : bool
        One learned amplitude per harmonic.
    decay : float
        Fixed factor ``k^-decay`` on harmonic ``k`` (see :class:`PeriodicEncoder`).
    others : mapping int -> module, optional
        Encoders of the non-periodic columns (e.g. ``{1: FourierFeatures(0, 1, [pi, 2 pi])}``);
        a column without one passes through unchanged.

    Notes
    -----
    ``features(X)[i]`` depends on ``X[i, j]`` for a periodic column ``j`` only through
    ``(X[i, j] - lower_j) mod period_j``: any network on top is exactly periodic in that column.
    """

    def __init__(self, n_inputs: int, periods: Mapping[int, float],
                 n_harmonics: int | Mapping[int, int] = 8,
                 lower: Mapping[int, float] | None = None,
                 trainable_amplitudes: bool = False,
                 others: Mapping[int, nn.Module] | None = None, decay: float = 0.0) -> None:
        n_inputs = _check_count(n_inputs, "n_inputs")
        _check_axes(n_inputs, periods)
        lower = dict(lower or {})
        periodic: dict[int, nn.Module] = {}
        for axis, period in periods.items():
            nh = n_harmonics[axis] if isinstance(n_harmonics, Mapping) else n_harmonics
            periodic[int(axis)] = PeriodicEncoder(check_period(period, f"period of input {axis}"),
                                                  nh, lower.get(axis, 0.0), trainable_amplitudes,
                                                  decay)
        super().__init__(n_inputs, _merge(periodic, others))
        self.periodic_axes = tuple(sorted(periodic))


class CkPeriodicFeatures(InputEmbedding):
    """:class:`PeriodicFeatures` with C^k periodic B-spline encoders (:class:`CkPeriodicEncoder`).

    Parameters
    ----------
    n_inputs : int
    periods : mapping int -> float
    n_basis : int
        Basis functions per periodic column.
    k : int
        Continuity order of the periodic columns.
    lower, others : as :class:`PeriodicFeatures`.
    """

    def __init__(self, n_inputs: int, periods: Mapping[int, float], n_basis: int = 32,
                 k: int = 2, lower: Mapping[int, float] | None = None,
                 others: Mapping[int, nn.Module] | None = None) -> None:
        n_inputs = _check_count(n_inputs, "n_inputs")
        _check_axes(n_inputs, periods)
        lower = dict(lower or {})
        periodic: dict[int, nn.Module] = {
            int(a): CkPeriodicEncoder(check_period(p, f"period of input {a}"), n_basis, k,
                                      lower.get(a, 0.0))
            for a, p in periods.items()
        }
        super().__init__(n_inputs, _merge(periodic, others))
        self.periodic_axes = tuple(sorted(periodic))
