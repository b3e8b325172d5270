"""Jacobians of one model: ``d y_calc / d values`` for the values the model reads.

The chain rule is split in two. ``d values / d theta`` belongs to the core
(:meth:`tiedsci.core.Layout.jacobian`: coloured forward-mode autodiff through the tie map);
this module computes the other factor per dataset, by ``torch.func.jacfwd`` (exact), reverse
mode per point for pointwise models, or central differences. torch is imported inside the
functions only.
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
]


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
