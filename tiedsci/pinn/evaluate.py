"""Metrics against a reference: relative L2 error, max error, boundary mismatch."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from tiedsci.errors import DataError
from tiedsci.pinn.reference import Reference, check_reference

__all__ = ["Metrics", "evaluate", "relative_l2", "Predictor"]


class Predictor(Protocol):
    """Anything with ``predict(x, t) -> u[i_t, i_x]`` and ``boundary_mismatch(t)``."""

    def predict(self, x: np.ndarray, t: np.ndarray) -> np.ndarray: ...

    def boundary_mismatch(self, t: np.ndarray, order: int = 0) -> float: ...


@dataclass(frozen=True)
class Metrics:
    """Errors of a prediction on the reference grid.

    Attributes
    ----------
    rel_l2 : float
        ``||u - u_ref||_2 / ||u_ref||_2`` over the whole grid.
    max_abs : float
        ``max |u - u_ref|``.
    boundary_mismatch : float
        ``max_t |u(a, t) - u(b, t)|`` of the model at the two ends of the periodic interval.
    boundary_mismatch_dx : float
        The same for ``u_x``. With a hard initial condition imposed by subtraction
        (``u = u0 + N - N(t0)``) this equals ``|u0'(a) - u0'(b)|`` whenever the initial state
        has a corner at the boundary (Allen-Cahn's ``x^2 cos(pi x)``: slopes +2 and -2, so 4):
        the network part is exactly periodic, the corner of ``u0`` is carried along.
    """

    rel_l2: float
    max_abs: float
    boundary_mismatch: float
    boundary_mismatch_dx: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def relative_l2(u: np.ndarray, u_ref: np.ndarray) -> float:
    """Relative L2 error; shapes must match (raises DataError naming them otherwise)."""
    u = np.asarray(u, dtype=np.float64)
    u_ref = np.asarray(u_ref, dtype=np.float64)
    if u.shape != u_ref.shape:
        raise DataError(f"prediction has shape {u.shape} but the reference has {u_ref.shape}")
    if not np.all(np.isfinite(u)):
        raise DataError("prediction is not finite")
    return float(np.linalg.norm(u - u_ref) / np.linalg.norm(u_ref))


def evaluate(model: Predictor, reference: Reference) -> tuple[Metrics, np.ndarray]:
    """Predict on the reference grid and compare (a reference of another problem, or of a
    grid outside the model's domain, is refused: :func:`~tiedsci.pinn.reference.check_reference`).

    Returns
    -------
    metrics : Metrics
    u : ndarray, shape (n_t, n_x)
        The prediction on the reference grid.
    """
    problem = getattr(model, "problem", None)
    if problem is not None:
        check_reference(problem, reference)
    u = model.predict(reference.x, reference.t)
    if u.shape != reference.u.shape:
        raise DataError(f"prediction has shape {u.shape} but the reference has "
                        f"{reference.u.shape}")
    return Metrics(
        rel_l2=relative_l2(u, reference.u),
        max_abs=float(np.max(np.abs(u - reference.u))),
        boundary_mismatch=float(model.boundary_mismatch(reference.t)),
        boundary_mismatch_dx=float(model.boundary_mismatch(reference.t, 1)),
    ), u
