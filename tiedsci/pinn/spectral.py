"""Reference solver: Fourier pseudo-spectral in x, ETDRK4 in time, for 1-D periodic problems.

Solves ``u_t = L u + N(u)`` on a periodic interval, with ``L`` diagonal in Fourier space (the
stiff linear part) and ``N`` the nonlinear part, by the fourth-order exponential time
differencing Runge-Kutta scheme of Cox and Matthews (2002), with the phi-functions evaluated on
a complex contour as proposed by Kassam and Trefethen (2005, SIAM J. Sci. Comput. 26, 1214).

:func:`spectral_pde` builds the linear symbol and nonlinear term of the equations the PINN module
solves (advection, heat, viscous Burgers, Allen-Cahn, KdV); :func:`solve_periodic` integrates any
such pair. Pure NumPy; no torch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tiedsci.errors import DataError

__all__ = ["SpectralPDE", "SpectralSolution", "spectral_pde", "solve_periodic",
           "etdrk4_coefficients", "wavenumbers"]

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SPECTRAL_FORMAT = "tiedsci.pinn.spectral/1"
NonlinearFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SpectralPDE:
    """``u_t = L u + N(u)`` for a real field on a periodic interval.

    Attributes
    ----------
    linear : callable
        ``linear(k) -> symbol``: the Fourier symbol of ``L`` at angular wavenumbers ``k``
        (shape (n_modes,), complex or real).
    nonlinear : callable or None
        ``nonlinear(v_hat, k) -> N_hat``: the nonlinear term in Fourier space given the rfft
        coefficients ``v_hat`` (shape (n_modes,)); ``None`` for linear problems.
    name : str
        For messages.
    """

    linear: Callable[[np.ndarray], np.ndarray]
    nonlinear: NonlinearFn | None = None
    name: str = "pde"


@dataclass(frozen=True)
class SpectralSolution:
    """Solution on the periodic grid.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
        Grid points ``a + j L / n_x``, right end excluded.
    t : ndarray, shape (n_t,)
        Output times.
    u : ndarray, shape (n_t, n_x)
        ``u[i_t, i_x]``.
    """

    x: np.ndarray
    t: np.ndarray
    u: np.ndarray

    def report(self) -> str:
        """One line: the grid and the range of the field."""
        return (f"spectral solution: {self.x.size} points on [{self.x[0]:g}, "
                f"{self.x[0] + (self.x[1] - self.x[0]) * self.x.size:g}), {self.t.size} times in "
                f"[{self.t[0]:g}, {self.t[-1]:g}], u in [{self.u.min():.4g}, {self.u.max():.4g}]")

    def plot(self, *, path: str | os.PathLike[str] | None = None) -> Figure:
        """Map of ``u[i_t, i_x]`` (a :class:`matplotlib.figure.Figure`, Agg canvas)."""
        from tiedsci.pinn.plots import plot_solution

        return plot_solution(self.x, self.t, self.u, None, path, "spectral solution")

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save ``x``, ``t``, ``u`` as the bundle ``path`` (``.json`` + ``.npz``); read it with
        :func:`tiedsci.pinn.load`. Returns the JSON file."""
        from tiedsci.persist import write_bundle

        return write_bundle(path, SPECTRAL_FORMAT, {"kind": "spectral"},
                            arrays={"x": self.x, "t": self.t, "u": self.u})


def wavenumbers(n_x: int, length: float) -> np.ndarray:
    """Angular wavenumbers of ``numpy.fft.rfft`` on ``n_x`` points over a period ``length``.

    Returns
    -------
    ndarray, shape (n_x // 2 + 1,)
    """
    return 2.0 * np.pi / length * np.arange(n_x // 2 + 1, dtype=np.float64)


def _odd(k: np.ndarray, n_x: int) -> np.ndarray:
    """Wavenumbers for odd derivatives: the Nyquist mode of an even grid is set to zero."""
    k = k.copy()
    if n_x % 2 == 0:
        k[-1] = 0.0
    return k


def spectral_pde(name: str, n_x: int, **coefficients: float) -> SpectralPDE:
    """The linear symbol and nonlinear term of a named 1-D periodic equation.

    Parameters
    ----------
    name : {"advection", "heat", "burgers", "allen_cahn", "kdv"}
        ``advection``: ``u_t + speed u_x = 0``; ``heat``: ``u_t = nu u_xx``;
        ``burgers``: ``u_t + u u_x = nu u_xx``;
        ``allen_cahn``: ``u_t = eps u_xx + gamma (u - u^3)``;
        ``kdv``: ``u_t + lambda1 u u_x + lambda2 u_xxx = 0``.
    n_x : int
        Number of grid points (the Nyquist mode is dropped from odd derivatives).
    **coefficients
        ``speed``; ``nu``; ``nu``; ``eps``, ``gamma``; ``lambda1``, ``lambda2``.
    """
    for key, val in coefficients.items():
        if not np.isfinite(val):
            raise DataError(f"coefficient {key!r} of {name!r} is not finite: {val!r}")

    def need(*keys: str) -> list[float]:
        missing = [k for k in keys if k not in coefficients]
        extra = sorted(set(coefficients) - set(keys))
        if missing or extra:
            raise DataError(f"{name!r} needs coefficients {keys}; missing {missing}, "
                            f"unknown {extra}")
        return [float(coefficients[k]) for k in keys]

    def irfft(v: np.ndarray) -> np.ndarray:
        return np.fft.irfft(v, n=n_x)

    if name == "advection":
        (c,) = need("speed")
        return SpectralPDE(lambda k: -1j * c * _odd(k, n_x), None, name)
    if name == "heat":
        (nu,) = need("nu")
        return SpectralPDE(lambda k: -nu * k**2 + 0j, None, name)
    if name == "burgers":
        (nu,) = need("nu")
        return SpectralPDE(
            lambda k: -nu * k**2 + 0j,
            lambda v, k: -0.5j * _odd(k, n_x) * np.fft.rfft(irfft(v) ** 2),
            name,
        )
    if name == "allen_cahn":
        eps, gamma = need("eps", "gamma")
        return SpectralPDE(
            lambda k: -eps * k**2 + gamma + 0j,
            lambda v, k: -gamma * np.fft.rfft(irfft(v) ** 3),
            name,
        )
    if name == "kdv":
        lam1, lam2 = need("lambda1", "lambda2")
        return SpectralPDE(
            lambda k: 1j * lam2 * _odd(k, n_x) ** 3,
            lambda v, k: -0.5j * lam1 * _odd(k, n_x) * np.fft.rfft(irfft(v) ** 2),
            name,
        )
    raise DataError(
        f"unknown equation {name!r}; choose one of advection, heat, burgers, allen_cahn, kdv"
    )


def etdrk4_coefficients(symbol: np.ndarray, dt: float, n_contour: int = 64
                        ) -> tuple[np.ndarray, ...]:
    """ETDRK4 coefficients ``(E, E2, Q, f1, f2, f3)`` for a diagonal linear operator.

    The phi-functions are averaged over ``n_contour`` points on a unit circle around each
    ``dt * symbol`` (Kassam and Trefethen 2005), which avoids the cancellation of the direct
    formulas for small ``|dt * symbol|``. The full circle is used, so complex symbols
    (advection, KdV) are handled too.

    Parameters
    ----------
    symbol : ndarray, shape (n_modes,)
    dt : float
    n_contour : int

    Returns
    -------
    tuple of ndarray, each shape (n_modes,), complex
    """
    lin = dt * np.asarray(symbol, dtype=np.complex128)
    r = np.exp(2j * np.pi * (np.arange(1, n_contour + 1) - 0.5) / n_contour)
    lr = lin[:, None] + r[None, :]
    e_lr = np.exp(lr)
    q = dt * np.mean((np.exp(lr / 2) - 1) / lr, axis=1)
    f1 = dt * np.mean((-4 - lr + e_lr * (4 - 3 * lr + lr**2)) / lr**3, axis=1)
    f2 = dt * np.mean((2 + lr + e_lr * (lr - 2)) / lr**3, axis=1)
    f3 = dt * np.mean((-4 - 3 * lr - lr**2 + e_lr * (4 - lr)) / lr**3, axis=1)
    if np.isrealobj(symbol) or np.all(np.imag(symbol) == 0):
        q, f1, f2, f3 = (np.real(a) + 0j for a in (q, f1, f2, f3))
    return np.exp(lin), np.exp(lin / 2), q, f1, f2, f3


def solve_periodic(
    pde: SpectralPDE,
    u0: Callable[[np.ndarray], np.ndarray] | np.ndarray,
    domain: tuple[float, float],
    n_x: int,
    t_eval: np.ndarray,
    dt: float,
    n_contour: int = 64,
) -> SpectralSolution:
    """Integrate ``u_t = L u + N(u)`` with Fourier pseudo-spectral ETDRK4.

    Parameters
    ----------
    pde : SpectralPDE
        From :func:`spectral_pde` or user-built.
    u0 : callable or ndarray, shape (n_x,)
        Initial condition: a function of ``x`` or its values on the grid.
    domain : (a, b)
        Periodic interval; the period is ``b - a``.
    n_x : int
        Number of grid points (even recommended).
    t_eval : ndarray, shape (n_t,)
        Increasing output times, starting at or after 0; each gap must be a whole number of
        steps ``dt``.
    dt : float
        Time step.

    Returns
    -------
    SpectralSolution
    """
    a, b = float(domain[0]), float(domain[1])
    if not (np.isfinite(a) and np.isfinite(b)) or b <= a:
        raise DataError(f"domain must be finite with b > a, got {domain!r} (period <= 0)")
    if int(n_x) < 4:
        raise DataError(f"n_x must be >= 4, got {n_x}")
    if not (np.isfinite(dt) and dt > 0):
        raise DataError(f"dt must be a positive number, got {dt!r}")
    t_eval = np.asarray(t_eval, dtype=np.float64)
    if t_eval.ndim != 1 or t_eval.size == 0 or not np.all(np.isfinite(t_eval)):
        raise DataError("t_eval must be a non-empty finite 1-D array")
    if t_eval[0] < 0 or np.any(np.diff(t_eval) < 0):
        raise DataError("t_eval must be non-negative and non-decreasing")
    steps = np.diff(np.concatenate([[0.0], t_eval])) / dt
    n_steps = np.rint(steps).astype(np.int64)
    bad = np.flatnonzero(np.abs(steps - n_steps) > 1e-6 * np.maximum(1.0, steps))
    if bad.size:
        raise DataError(
            f"t_eval[{bad[0]}] = {t_eval[bad[0]]} is not a whole number of steps dt = {dt} "
            "from the previous output time"
        )
    length = b - a
    x = a + length * np.arange(n_x) / n_x
    u_init = np.asarray(u0(x) if callable(u0) else u0, dtype=np.float64)
    if u_init.shape != (n_x,):
        raise DataError(f"u0 must have shape ({n_x},), got {u_init.shape}")
    if not np.all(np.isfinite(u_init)):
        raise DataError(f"u0 is not finite at index {int(np.flatnonzero(~np.isfinite(u_init))[0])}")
    k = wavenumbers(n_x, length)
    e, e2, q, f1, f2, f3 = etdrk4_coefficients(pde.linear(k), dt, n_contour)
    v = np.fft.rfft(u_init)
    out = np.empty((t_eval.size, n_x))
    nl = pde.nonlinear
    for i, m in enumerate(n_steps):
        for _ in range(int(m)):
            if nl is None:
                v = e * v
                continue
            nv = nl(v, k)
            va = e2 * v + q * nv
            na = nl(va, k)
            vb = e2 * v + q * na
            nb = nl(vb, k)
            vc = e2 * va + q * (2 * nb - nv)
            nc = nl(vc, k)
            v = e * v + nv * f1 + 2 * (na + nb) * f2 + nc * f3
        out[i] = np.fft.irfft(v, n=n_x)
    if not np.all(np.isfinite(out)):
        raise DataError(f"{pde.name}: the spectral solution blew up; reduce dt or raise n_x")
    return SpectralSolution(x=x, t=t_eval.copy(), u=out)
