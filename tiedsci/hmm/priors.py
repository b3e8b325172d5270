"""Prior hyperparameters for the MAP M-step: checking, broadcasting, and the tie rule.

A prior is data given to the M-step. Each estimator holds hmmlearn's prior attributes
(``startprob_prior``, ``transmat_prior``, ``means_prior``, ``covars_weight`` ...); before EM they
are checked and broadcast to full arrays with the state axis first (:func:`broadcast`,
:func:`dirichlet`), and every M-step receives them in a dict keyed by hmmlearn's names.

The tie rule: a tie group is one parameter, so its prior counts once. The M-steps add a prior
term through ``pool.once(name, term)`` (:class:`tiedsci.hmm.em.Pooling`), which sums
``term / group size`` over the group: the group's prior is the mean of its members' priors,
counted once. A tie of ``k`` states under a prior therefore equals one state seeing the pooled
data under that prior.

Dirichlet concentrations below 1 are legal (hmmlearn allows them) but the MAP problem then has
no interior optimum: an entry whose ``prior - 1 + expected count`` is negative is set to 0
(hmmlearn's rule; the boundary maximiser), and a zero probability collects no counts afterwards,
so it stays 0. :func:`dirichlet` warns with :class:`~tiedsci.errors.PriorWarning` when this can
happen; a concentration <= 0 is a :class:`~tiedsci.errors.PriorError`.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from tiedsci.errors import PriorError, PriorWarning

__all__ = ["broadcast", "dirichlet", "per_state", "nonnegative", "psd"]


def broadcast(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a finite float array of ``shape`` (numpy broadcasting), or ``PriorError``.

    Parameters
    ----------
    name : str
        The prior's attribute name, for messages.
    value : scalar or array-like
    shape : tuple of int
        Full shape, state axis first.
    """
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PriorError(f"{name} must be a number or an array of numbers: {exc}") from None
    try:
        out = np.broadcast_to(arr, shape).copy()
    except ValueError:
        raise PriorError(f"{name} has shape {arr.shape}, which does not broadcast to {shape}"
                         ) from None
    if not np.all(np.isfinite(out)):
        raise PriorError(f"{name} contains NaN or inf")
    return out


def per_state(name: str, value: Any, n_states: int, shape: tuple[int, ...]) -> np.ndarray:
    """A per-state prior (scalar or shape ``(n_states,)``) broadcast to ``shape``.

    ``shape[0]`` is the state axis; a ``(n_states,)`` array is aligned with it (not with the
    last axis, as plain numpy broadcasting would do).
    """
    arr = np.asarray(value, dtype=float) if np.ndim(value) else value
    if np.ndim(arr) == 1 and np.shape(arr)[0] == n_states and len(shape) > 1:
        arr = np.reshape(arr, (n_states,) + (1,) * (len(shape) - 1))
    return broadcast(name, arr, shape)


def nonnegative(name: str, arr: np.ndarray) -> np.ndarray:
    """``arr`` unchanged if every entry is >= 0, else ``PriorError``."""
    if np.any(arr < 0):
        raise PriorError(f"{name} must be >= 0, got {float(arr.min())!r}")
    return arr


def psd(name: str, mats: np.ndarray) -> np.ndarray:
    """``mats`` (``(..., D, D)``) unchanged if every matrix is symmetric positive
    semi-definite, else ``PriorError``."""
    flat = mats.reshape((-1,) + mats.shape[-2:])
    if not np.allclose(flat, np.transpose(flat, (0, 2, 1)), rtol=1e-10, atol=1e-12):
        raise PriorError(f"{name} must be symmetric")
    scale = max(1.0, float(np.abs(flat).max(initial=0.0)))
    if np.any(np.linalg.eigvalsh(flat).min(-1) < -1e-10 * scale):
        raise PriorError(f"{name} must be positive semi-definite")
    return mats


def dirichlet(name: str, value: Any, shape: tuple[int, ...]) -> np.ndarray:
    """A Dirichlet concentration broadcast to ``shape``; ``PriorError`` if any entry is <= 0,
    :class:`~tiedsci.errors.PriorWarning` if any is below 1 (see the module docstring)."""
    arr = broadcast(name, value, shape)
    if np.any(arr <= 0):
        raise PriorError(f"{name} is a Dirichlet concentration and must be > 0, got "
                         f"{float(arr.min())!r}")
    if np.any(arr < 1):
        warnings.warn(f"{name} has entries below 1 (min {float(arr.min())!r}): the MAP estimate "
                      "has no interior optimum there; a probability whose prior - 1 + expected "
                      "count is negative is set to 0 and stays 0 (hmmlearn's rule)",
                      PriorWarning, stacklevel=4)
    return arr
