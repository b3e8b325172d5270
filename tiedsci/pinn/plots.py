"""Figures of PINN solutions: solution, reference and error maps; loss curves.

Every function draws on its own :class:`matplotlib.figure.Figure` with an Agg canvas and
returns it (saved to ``path`` when one is given): no pyplot state, no backend switch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["plot_solution", "plot_loss"]


def _figure(figsize: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
    return fig


def _finish(fig: Figure, path: str | os.PathLike[str] | None) -> Figure:
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(str(path), dpi=110)
    return fig


def plot_solution(x: np.ndarray, t: np.ndarray, u: np.ndarray, u_ref: np.ndarray | None = None,
                  path: str | os.PathLike[str] | None = None, title: str = "",
                  labels: Sequence[str] = ("x", "t")) -> Figure:
    """Maps of the prediction ``u[i_t, i_x]``, the reference and their difference.

    Parameters
    ----------
    x : ndarray, shape (n_x,)
        Vertical axis.
    t : ndarray, shape (n_t,)
        Horizontal axis.
    u, u_ref : ndarray, shape (n_t, n_x)
        Prediction and (optional) reference; with a reference, ``|u - u_ref|`` is drawn too.
    path : path-like, optional
        Also save the figure (PNG).
    title : str
    labels : (str, str)
        Names of the ``x`` and ``t`` axes (``("x", "y")`` for a steady problem).

    Returns
    -------
    matplotlib.figure.Figure
    """
    n = 1 if u_ref is None else 3
    fig = _figure((4.2 * n, 3.4))
    axes = fig.subplots(1, n, squeeze=False)
    panels = [("prediction", u)]
    if u_ref is not None:
        panels += [("reference", u_ref), ("|error|", np.abs(u - u_ref))]
    extent = (float(t[0]), float(t[-1]), float(x[0]), float(x[-1]))
    for ax, (name, data) in zip(axes[0], panels):
        im = ax.imshow(np.asarray(data).T, origin="lower", aspect="auto", extent=extent,
                       cmap="magma" if name == "|error|" else "RdBu_r")
        ax.set_xlabel(labels[1])
        ax.set_ylabel(labels[0])
        ax.set_title(name)
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def plot_loss(history: Sequence[dict[str, Any]], path: str | os.PathLike[str] | None = None,
              title: str = "") -> Figure:
    """Loss (and its terms) against the record index, the L-BFGS records shaded.

    Parameters
    ----------
    history : sequence of dict
        Loss records of a solution (``phase``, ``loss`` and the terms).
    path : path-like, optional
        Also save the figure (PNG).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure((6.4, 3.6))
    ax = fig.subplots()
    keys = [k for k in ("loss", "residual", "boundary", "initial", "data", "gauge")
            if any(k in h for h in history)]
    for k in keys:
        y = np.array([h.get(k, np.nan) for h in history], dtype=float)
        ax.semilogy(y, label=k, lw=1)
    lb = [i for i, h in enumerate(history) if h.get("phase") == "lbfgs"]
    if lb:
        ax.axvspan(lb[0], len(history) - 1, alpha=0.08, color="gray", label="L-BFGS records")
    ax.set_xlabel("record (every 10 Adam steps / each L-BFGS call)")
    ax.set_ylabel("loss")
    if keys:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return _finish(fig, path)
