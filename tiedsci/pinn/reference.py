"""Reference solutions on grids: the bundled Raissi data and the spectral solver.

A :class:`Reference` holds ``x`` (n_x,), ``t`` (n_t,) and ``u`` (n_t, n_x), ``u[i_t, i_x]``,
validated on construction. :func:`load_reference` reads the bundled ``AC.mat`` / ``KdV.mat``
(Raissi et al., MIT licence, see ``tiedsci/data/pinn/SOURCE.txt``); :func:`spectral_reference`
solves a problem with :mod:`tiedsci.pinn.spectral`.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from tiedsci.errors import DataError
from tiedsci.pinn.problem import PDEProblem
from tiedsci.pinn.spectral import solve_periodic, spectral_pde

__all__ = ["check_reference", "Reference", "load_reference", "spectral_reference", "DATASETS",
           "data_path"]

DATASETS = {"allen_cahn": "AC.mat", "kdv": "KdV.mat"}


@dataclass(frozen=True)
class Reference:
    """A solution on a tensor grid.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
    t : ndarray, shape (n_t,)
    u : ndarray, shape (n_t, n_x)
        ``u[i_t, i_x]``.
    name : str
    """

    x: np.ndarray
    t: np.ndarray
    u: np.ndarray
    name: str = "reference"

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float64)
        t = np.asarray(self.t, dtype=np.float64)
        u = np.asarray(self.u, dtype=np.float64)
        if x.ndim != 1 or t.ndim != 1:
            raise DataError(f"reference {self.name!r}: x and t must be 1-D, got shapes "
                            f"{x.shape} and {t.shape}")
        if u.shape != (t.size, x.size):
            raise DataError(
                f"reference {self.name!r}: u must have shape (len(t), len(x)) = "
                f"({t.size}, {x.size}) (u[i_t, i_x]), got {u.shape}"
            )
        for label, arr in (("x", x), ("t", t), ("u", u)):
            if not np.all(np.isfinite(arr)):
                idx = np.argwhere(~np.isfinite(arr))[0]
                raise DataError(f"reference {self.name!r}: {label} is not finite at index "
                                f"{tuple(int(i) for i in idx)}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "t", t)
        object.__setattr__(self, "u", u)


def data_path(filename: str) -> Path:
    """Path of a bundled data file under ``tiedsci/data/pinn``."""
    path = Path(str(resources.files("tiedsci") / "data" / "pinn" / filename))
    if not path.exists():
        raise DataError(f"bundled file {filename!r} not found at {path}")
    return path


def load_reference(name: str) -> Reference:
    """Load a bundled reference: ``"allen_cahn"`` (AC.mat) or ``"kdv"`` (KdV.mat).

    The files store ``uu[i_x, i_t]``; the result is transposed to ``u[i_t, i_x]``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown reference {name!r}; bundled: {sorted(DATASETS)}")
    from scipy.io import loadmat

    data = loadmat(data_path(DATASETS[name]))
    return Reference(x=data["x"].ravel(), t=data["tt"].ravel(), u=data["uu"].T, name=name)


def spectral_reference(problem: PDEProblem, n_x: int = 512, n_t: int = 201,
                       dt: float = 1e-4) -> Reference:
    """Solve ``problem`` with the Fourier pseudo-spectral ETDRK4 solver (declared coefficients).

    Parameters
    ----------
    problem : PDEProblem
        A built-in 1-D problem (advection, heat, burgers, allen_cahn, kdv).
    n_x, n_t : int
        Grid sizes; ``t`` is ``linspace(t0, t1, n_t)``, ``x`` the periodic grid.
    dt : float
        Time step; rounded down so that the output spacing is a whole number of steps.
    """
    if problem.spectral is None:
        raise DataError(f"problem {problem.name!r} has no spectral description")
    eq, coeffs = problem.spectral
    values = problem.registry.compile().values0
    coeffs = {k: float(values[problem.coefficients[k]]) for k in coeffs}
    t0, t1 = problem.bounds["t"]
    a, b = problem.bounds["x"]
    t = np.linspace(t0, t1, n_t)
    spacing = (t1 - t0) / (n_t - 1)
    n_sub = max(1, int(np.ceil(spacing / dt - 1e-9)))
    step = spacing / n_sub
    sol = solve_periodic(spectral_pde(eq, n_x, **coeffs), problem.initial, (a, b), n_x,
                         t - t0, step)
    return Reference(x=sol.x, t=t, u=sol.u, name=f"{problem.name} (spectral)")


def check_reference(problem: PDEProblem, reference: Reference) -> None:
    """Refuse a reference that cannot be a solution of ``problem``.

    Raises :class:`~tiedsci.errors.DataError` when the reference is bundled data of another
    problem, bundled data of the same problem with other coefficients, or a grid outside the
    problem's domain (``x`` in its periodic interval, ``t`` in its time interval).
    """
    if reference.name in DATASETS:
        if reference.name != problem.name:
            raise DataError(f"reference {reference.name!r} is the bundled solution of another "
                            f"problem; this problem is {problem.name!r}")
        from tiedsci.pinn import problem as problems

        default = getattr(problems, problem.name)()
        if problem.spectral is not None and default.spectral != problem.spectral:
            raise DataError(f"the bundled {problem.name!r} reference was solved with the "
                            f"coefficients {default.spectral[1]}; this problem has "
                            f"{problem.spectral[1]} (use a spectral reference)")
    for axis, grid in (("x", reference.x), ("t", reference.t)):
        lo, hi = problem.bounds[axis]
        tol = 1e-9 * max(1.0, abs(hi - lo))
        if grid.min() < lo - tol or grid.max() > hi + tol:
            raise DataError(f"reference {reference.name!r}: its {axis} grid spans "
                            f"[{grid.min():.6g}, {grid.max():.6g}], outside the problem's "
                            f"{axis} interval [{lo:.6g}, {hi:.6g}]")

