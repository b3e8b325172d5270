"""d(values)/d(theta) of a layout as a sparse matrix, by coloured forward-mode autodiff.

Free parameters that no declared parameter depends on jointly share one tangent (a greedy
colouring of the "appear in one parameter together" graph), so the cost is set by the widest
parameter (e.g. 20 shared intensities), not by the number of free parameters. The tangents are
pushed through :meth:`Layout.unpack` with ``torch.func.jacfwd`` (exact, derived relations
included); a layout holding numpy-only derived relations falls back to central differences with
the same colouring. Private to the core: use :meth:`Layout.jacobian`. torch is imported inside
the functions only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

if TYPE_CHECKING:
    from tiedsci.core.layout import Layout

__all__ = ["JacobianPlan", "greedy_colors"]

MODES = ("torch", "fd")


def greedy_colors(name_deps: Sequence[np.ndarray], n_free: int) -> np.ndarray:
    """Colour theta so that no parameter depends on two entries of one colour.

    Parameters
    ----------
    name_deps : sequence of int arrays
        Per parameter, the theta indices it depends on.
    n_free : int

    Returns
    -------
    ndarray of int, shape (n_free,)
    """
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
class JacobianPlan:
    """Sparsity pattern, colouring and mode of one layout's ``d values / d theta``.

    Attributes
    ----------
    colors : ndarray of int, shape (n_free,)
    n_colors : int
    rows, cols : ndarray of int
        Structural non-zeros (element index, theta index).
    mode : {"torch", "fd"}
    """

    layout: Layout
    colors: np.ndarray
    n_colors: int
    rows: np.ndarray
    cols: np.ndarray
    mode: str

    @classmethod
    def build(cls, layout: Layout, mode: str | None = None) -> JacobianPlan:
        """Plan for ``layout``; ``mode=None`` tries torch and falls back to differences."""
        name_deps = [layout.depends_on(n) for n in layout.names]
        colors = greedy_colors(name_deps, layout.n_free)
        rows, cols = [], []
        for name, deps in zip(layout.names, name_deps):
            sl = layout.flat_slice(name)
            el = np.arange(sl.start, sl.stop)
            rows.append(np.repeat(el, deps.size))
            cols.append(np.tile(deps, el.size))
        rows_a = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
        cols_a = np.concatenate(cols) if cols else np.zeros(0, dtype=np.intp)
        n_colors = int(colors.max()) + 1 if colors.size else 0
        if mode is not None and mode not in MODES:
            raise ValueError(f"method must be one of {MODES} or None, got {mode!r}")
        plan = cls(layout, colors, n_colors, rows_a, cols_a, mode or "torch")
        if mode is None:
            try:
                plan._compressed_torch(layout.theta0)
            except Exception:  # numpy-only derived relation: use differences
                object.__setattr__(plan, "mode", "fd")
        return plan

    def _seed(self) -> np.ndarray:
        seed = np.zeros((self.layout.n_free, self.n_colors))
        seed[np.arange(self.layout.n_free), self.colors] = 1.0
        return seed

    def _compressed_torch(self, theta: np.ndarray) -> np.ndarray:
        import torch

        lay = self.layout
        th = torch.as_tensor(np.asarray(theta, dtype=float))
        seed = torch.as_tensor(self._seed())

        def g(c: torch.Tensor) -> torch.Tensor:
            return lay.flatten(lay.unpack(th + seed @ c))

        jc = torch.func.jacfwd(g)(torch.zeros(self.n_colors, dtype=torch.float64))
        return jc.detach().numpy()

    def _compressed_fd(self, theta: np.ndarray, h: np.ndarray) -> np.ndarray:
        lay = self.layout
        out = np.zeros((lay.n_values, self.n_colors))
        for c in range(self.n_colors):
            step = np.where(self.colors == c, h, 0.0)
            fp = lay.flatten(lay.unpack(theta + step))
            fm = lay.flatten(lay.unpack(theta - step))
            out[:, c] = (fp - fm) / 2.0
        return out

    def __call__(self, theta: np.ndarray) -> sp.csr_matrix:
        """``d flat values / d theta`` at ``theta``, CSR of shape (n_values, n_free)."""
        lay = self.layout
        theta = np.asarray(theta, dtype=float)
        shape = (lay.n_values, lay.n_free)
        if lay.n_free == 0:
            return sp.csr_matrix(shape)
        if self.mode == "torch":
            jc = self._compressed_torch(theta)
            vals = jc[self.rows, self.colors[self.cols]]
        else:
            h = 1e-6 * np.maximum(1.0, np.abs(theta))
            jc = self._compressed_fd(theta, h)
            vals = jc[self.rows, self.colors[self.cols]] / h[self.cols]
        return sp.csr_matrix((vals, (self.rows, self.cols)), shape=shape)

