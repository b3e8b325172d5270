"""Jacobians: of the layout map (values w.r.t. theta) and of one model (y w.r.t. its values).

The chain rule is split in two so that each part stays small:

* ``d values / d theta`` for the whole layout, by forward-mode autodiff through
  :meth:`Layout.unpack` with *coloured* tangents: free parameters that no declared parameter
  depends on jointly share one tangent, so the cost is set by the widest parameter (e.g. 20
  shared intensities), not by the number of datasets. Central differences (same colouring)
  when the layout holds numpy-only derived relations.
* ``d y_calc / d values`` per dataset, only for the values the model reads, by
  ``torch.func.jacfwd`` (exact), central differences, or the model's analytic Jacobian.

torch is imported inside the functions only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from tiedsci.core import Layout

__all__ = [
    "LayoutJacobian",
    "flat_values",
    "jacobian_torch",
    "jacobian_pointwise",
    "jacobian_fd",
]


def flat_values(layout: Layout, values: dict[str, Any]) -> Any:
    """Concatenate ``values`` in the layout's element order, shape (n_elements,)."""
    first = values[layout.names[0]]
    if hasattr(first, "detach"):
        import torch

        return torch.cat([values[n].reshape(-1) for n in layout.names])
    return np.concatenate([np.asarray(values[n], dtype=float).ravel() for n in layout.names])


def _greedy_colors(name_deps: Sequence[np.ndarray], n_free: int) -> np.ndarray:
    """Colour theta so that no parameter depends on two entries of one colour."""
    neighbours: list[set[int]] = [set() for _ in range(n_free)]
    for d in name_deps:
        if d.size > 1:
            ds = set(int(i) for i in d)
            for i in d:
                neighbours[int(i)] |= ds
    colors = np.full(n_free, -1, dtype=np.intp)
    order = np.argsort([-len(nb) for nb in neighbours], kind="stable")
    for j in order:
        taken = {int(colors[k]) for k in neighbours[j] if colors[k] >= 0}
        c = 0
        while c in taken:
            c += 1
        colors[j] = c
    return colors


@dataclass(frozen=True, eq=False)
class LayoutJacobian:
    """``d flat_values / d theta`` of a layout, shape (n_elements, n_free), as a CSR matrix.

    Build with :meth:`build`; call with ``theta``.
    """

    layout: Layout
    colors: np.ndarray
    n_colors: int
    rows: np.ndarray
    cols: np.ndarray
    mode: str

    @classmethod
    def build(cls, layout: Layout) -> LayoutJacobian:
        name_deps = [layout.depends_on(n) for n in layout.names]
        colors = _greedy_colors(name_deps, layout.n_free)
        rows, cols = [], []
        for name, deps in zip(layout.names, name_deps):
            size = int(np.prod(layout.shapes[name], dtype=int))
            el = layout.offsets[name] + np.arange(size)
            rows.append(np.repeat(el, deps.size))
            cols.append(np.tile(deps, size))
        rows_a = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
        cols_a = np.concatenate(cols) if cols else np.zeros(0, dtype=np.intp)
        n_colors = int(colors.max()) + 1 if colors.size else 0
        jac = cls(layout, colors, n_colors, rows_a, cols_a, "torch")
        theta = layout.theta0
        try:
            jac._compressed_torch(theta)
        except Exception:  # numpy-only derived relation: use differences
            object.__setattr__(jac, "mode", "fd")
        return jac

    def _seed(self) -> np.ndarray:
        seed = np.zeros((self.layout.n_free, self.n_colors))
        seed[np.arange(self.layout.n_free), self.colors] = 1.0
        return seed

    def _compressed_torch(self, theta: np.ndarray) -> np.ndarray:
        import torch

        lay = self.layout
        th = torch.as_tensor(np.asarray(theta, dtype=float))
        seed = torch.as_tensor(self._seed())

        def g(c: Any) -> Any:
            return flat_values(lay, lay.unpack(th + seed @ c))

        jc = torch.func.jacfwd(g)(torch.zeros(self.n_colors, dtype=torch.float64))
        return jc.detach().numpy()

    def _compressed_fd(self, theta: np.ndarray) -> np.ndarray:
        lay = self.layout
        h = 1e-6 * np.maximum(1.0, np.abs(theta))
        out = np.zeros((lay.n_elements, self.n_colors))
        for c in range(self.n_colors):
            step = np.where(self.colors == c, h, 0.0)
            fp = flat_values(lay, lay.unpack(theta + step))
            fm = flat_values(lay, lay.unpack(theta - step))
            out[:, c] = (fp - fm) / 2.0
        return out

    def __call__(self, theta: np.ndarray) -> sp.csr_matrix:
        lay = self.layout
        if lay.n_free == 0:
            return sp.csr_matrix((lay.n_elements, 0))
        if self.mode == "torch":
            jc = self._compressed_torch(theta)
            vals = jc[self.rows, self.colors[self.cols]]
        else:
            jc = self._compressed_fd(theta)
            h = 1e-6 * np.maximum(1.0, np.abs(theta))
            vals = jc[self.rows, self.colors[self.cols]] / h[self.cols]
        return sp.csr_matrix((vals, (self.rows, self.cols)), shape=(lay.n_elements, lay.n_free))


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
    xt = torch.as_tensor(x).reshape(-1, 1)
    jac = torch.func.vmap(torch.func.jacrev(fn), in_dims=(None, 0))(vt, xt)
    return jac.detach().numpy().reshape(xt.shape[0], vt.shape[0])


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
