"""Jacobians of one model: ``d y_calc / d values`` for the values the model reads.

The chain rule is split in two. ``d values / d theta`` belongs to the core
(:meth:`tiedsci.core.Layout.jacobian`: coloured forward-mode autodiff through the tie map);
this module computes the other factor per dataset, by ``torch.func.jacfwd`` (exact), reverse
mode per point for pointwise models, the complex step on numpy (exact to rounding, small
models), or central differences. torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "jacobian_torch",
    "jacobian_pointwise",
    "jacobian_copies",
    "jacobian_fd",
    "jacobian_complex",
    "jacobian_complex_stacked",
    "value_and_jacobian_complex_stacked",
    "complex_step_agrees",
    "COMPLEX_STEP",
]

COMPLEX_STEP = 1e-20
"""Relative step of :func:`jacobian_complex` (its error is of order ``step**2``: none)."""


def jacobian_torch(fn: Callable[[Any], Any], v: np.ndarray) -> np.ndarray:
    """``d fn / d v`` by forward-mode autodiff; ``fn`` maps a float64 tensor to a tensor.

    Returns
    -------
    ndarray, shape (n_out, v.size)
    """
    import torch

    vt = torch.as_tensor(np.asarray(v, dtype=float))
    try:
        jac = torch.func.jacfwd(fn)(vt)
    except Exception:  # an op without a batching rule: one forward pass per column
        cols = []
        for i in range(vt.shape[0]):
            e = torch.zeros_like(vt)
            e[i] = 1.0
            cols.append(torch.func.jvp(fn, (vt,), (e,))[1])
        jac = torch.stack(cols, dim=-1)
    return jac.detach().numpy().reshape(-1, vt.shape[0])


def jacobian_pointwise(fn: Callable[[Any, Any], Any], v: np.ndarray, x: Any) -> np.ndarray:
    """Jacobian of a *pointwise* model: reverse mode per point, vectorised over the points.

    ``fn(v, x)`` maps values (tensor, shape (m,)) and abscissae (shape (k,)) to shape (k,),
    with ``y[i]`` depending on ``x[i]`` only. Each point then needs one small backward pass,
    batched with ``torch.func.vmap``: the cost is a few primal evaluations instead of the
    ``m`` tangents of forward mode.

    Returns
    -------
    ndarray, shape (n_points, m)
    """
    import torch

    vt = torch.as_tensor(np.asarray(v, dtype=float))
    xt = torch.as_tensor(x)
    xt = xt.reshape(-1, 1) if xt.ndim == 1 else xt  # one row per point (columns kept)
    jac = torch.func.vmap(torch.func.jacrev(fn), in_dims=(None, 0))(vt, xt)
    return jac.detach().numpy().reshape(xt.shape[0], vt.shape[0])


def jacobian_copies(fn: Callable[[Any, Any], Any], v: np.ndarray, x: Any) -> np.ndarray:
    """Jacobian of a pointwise model of scalar values by one reverse pass over per-point copies.

    ``fn(vb, x)`` takes ``vb`` of shape (n_points, m), column ``k`` the copies of value ``k``
    (one per point), and returns shape (n_points,), ``y[i]`` depending on ``vb[i]`` and
    ``x[i]`` only. Then ``d sum(y) / d vb[i, k] = d y[i] / d v_k``: the whole Jacobian from
    one backward pass of plain reverse-mode autograd (no ``torch.func`` transform).

    Returns
    -------
    ndarray, shape (n_points, m)
    """
    import torch

    vt = torch.as_tensor(np.asarray(v, dtype=float))
    xt = torch.as_tensor(x)
    n = int(xt.shape[0])
    vb = vt.expand(n, vt.shape[0]).clone().requires_grad_(True)
    y = fn(vb, xt)
    if not y.requires_grad:  # the model reads none of the values
        return np.zeros((n, vt.shape[0]))
    (grad,) = torch.autograd.grad(y.sum(), vb, allow_unused=True)
    if grad is None:
        return np.zeros((n, vt.shape[0]))
    return grad.detach().numpy()


def jacobian_fd(fn: Callable[[np.ndarray], np.ndarray], v: np.ndarray) -> np.ndarray:
    """Central differences of a numpy function, step ``1e-6 * max(1, |v_i|)`` (rel. err ~1e-10).

    Returns
    -------
    ndarray, shape (n_out, v.size)
    """
    v = np.asarray(v, dtype=float)
    cols = []
    for i in range(v.size):
        h = 1e-6 * max(1.0, abs(float(v[i])))
        vp, vm = v.copy(), v.copy()
        vp[i] += h
        vm[i] -= h
        cols.append((np.asarray(fn(vp), float) - np.asarray(fn(vm), float)) / (2.0 * h))
    if not cols:
        return np.zeros((np.asarray(fn(v)).size, 0))
    return np.stack(cols, axis=-1)


def jacobian_complex(fn: Callable[[np.ndarray], Any], v: np.ndarray, n_out: int) -> np.ndarray:
    """Complex-step Jacobian of a numpy function (Squire & Trapp 1998).

    ``d fn / d v_i = Im fn(v + i h e_i) / h`` has no subtractive cancellation, so with
    ``h = COMPLEX_STEP * max(1, |v_i|)`` it is exact to rounding for a model analytic in its
    values (exp, sin, powers, erf, where on real conditions...). It is *wrong* for operations
    that are not (abs, real parts, casts to float): the caller checks it once against
    differences before relying on it (:func:`complex_step_agrees`).

    Parameters
    ----------
    fn : callable
        ``values (complex ndarray, shape (m,)) -> ndarray``, broadcastable to ``(n_out,)``.
    v : ndarray, shape (m,)
    n_out : int

    Returns
    -------
    ndarray, shape (n_out, m)
    """
    v = np.asarray(v, dtype=float)
    vc = v.astype(complex)
    out = np.empty((n_out, v.size))
    for i in range(v.size):
        h = COMPLEX_STEP * max(1.0, abs(float(v[i])))
        vc[i] = complex(v[i], h)
        out[:, i] = np.broadcast_to(np.imag(fn(vc)), (n_out,)) / h
        vc[i] = v[i]
    return out


def jacobian_complex_stacked(fn: Callable[[np.ndarray], Any], v: np.ndarray,
                             n_out: int) -> np.ndarray:
    """:func:`jacobian_complex` in one model call: all ``m`` complex steps stacked.

    ``fn`` maps a stack of value vectors (complex, shape (m, m), row ``i`` the values with
    step ``i``) to shape (m, n_out) (a model of scalar values that broadcasts: each value a
    column of shape (m, 1)).

    Returns
    -------
    ndarray, shape (n_out, m)
    """
    return value_and_jacobian_complex_stacked(fn, v, n_out)[1]


def value_and_jacobian_complex_stacked(fn: Callable[[np.ndarray], Any], v: np.ndarray,
                                       n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`jacobian_complex_stacked` and the model's value from the same call.

    ``Re fn(v + i h e_j) = fn(v) - h^2 fn''/2 + ...``: with ``h`` of order ``1e-20 |v|`` the
    real part is the value to rounding (the same operations on the same real parts; the
    imaginary parts enter it only as ``h^2``), so one call gives both.

    Returns
    -------
    value : ndarray, shape (n_out,)
    jacobian : ndarray, shape (n_out, m)
    """
    v = np.asarray(v, dtype=float)
    h = COMPLEX_STEP * np.maximum(1.0, np.abs(v))
    out = np.asarray(fn(v + np.diag(1j * h)))
    if out.shape != (v.size, n_out):
        out = np.broadcast_to(out, (v.size, n_out))
    return out[0].real.astype(float, copy=True), (out.imag / h[:, None]).T


def complex_step_agrees(j_complex: np.ndarray, j_fd: np.ndarray, y: np.ndarray,
                        v: np.ndarray) -> bool:
    """Whether a complex-step Jacobian matches central differences (:func:`jacobian_fd`).

    Per column ``j``: ``|Jc - Jfd| <= 1e-6 max|J_j| + 1e-12 max|y| / h_j`` (``h_j`` the
    difference step: the second term covers the differences' rounding). A non-analytic
    operation (abs, a cast to float) loses the imaginary part and fails this by the whole
    column.
    """
    if j_complex.shape != j_fd.shape or not np.all(np.isfinite(j_complex)):
        return False
    h = 1e-6 * np.maximum(1.0, np.abs(np.asarray(v, dtype=float)))
    colmax = np.maximum(np.abs(j_complex).max(axis=0, initial=0.0),
                        np.abs(j_fd).max(axis=0, initial=0.0))
    tol = 1e-6 * colmax + 1e-12 * float(np.abs(y).max(initial=0.0)) / h
    return bool(np.all(np.abs(j_complex - j_fd) <= tol))
