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

__all__ = ["plot_solution", "plot_loss", "optimizer_steps"]


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
    fig = _figure((3.4 * n + 0.6, 3.2))
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


def optimizer_steps(history: Sequence[dict[str, Any]]) -> np.ndarray:
    """Cumulative optimizer steps (Adam steps + L-BFGS iterations, over all windows and
    sweeps) at each loss record, shape (len(history),)."""
    last: dict[tuple[Any, ...], float] = {}
    x, n = [], 0.0
    for h in history:
        key = (h.get("window"), h.get("sweep"), h.get("phase"))
        step = float(h.get("step", last.get(key, 0.0) + 1))
        n += max(step - last.get(key, 0.0), 0.0)
        last[key] = step
        x.append(n)
    return np.asarray(x)


def _lbfgs_spans(history: Sequence[dict[str, Any]], x: np.ndarray) -> list[tuple[float, float]]:
    spans: list[tuple[float, float]] = []
    for i, h in enumerate(history):
        if h.get("phase") != "lbfgs":
            continue
        lo = x[i - 1] if i else x[i]
        if spans and spans[-1][1] == lo:
            spans[-1] = (spans[-1][0], x[i])
        else:
            spans.append((lo, x[i]))
    return spans


def plot_loss(history: Sequence[dict[str, Any]], path: str | os.PathLike[str] | None = None,
              title: str = "") -> Figure:
    """Training loss and its terms against cumulative optimizer steps, L-BFGS shaded.

    The total loss is drawn thick and dark; a term is drawn only when it differs from the
    total (with one term, the legend says the total is that term).

    Parameters
    ----------
    history : sequence of dict
        Loss records of a solution (``phase``, ``step``, ``loss`` and the terms).
    path : path-like, optional
        Also save the figure (PNG).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig = _figure((7.5, 3.8))
    ax = fig.subplots()
    x = optimizer_steps(history)
    terms = [k for k in ("residual", "boundary", "initial", "data", "gauge")
             if any(h.get(k) is not None for h in history)]
    total = np.array([h.get("loss", np.nan) for h in history], dtype=float)
    label = "total loss" + (f" (= {terms[0]}, the only term)" if len(terms) == 1 else "")
    ax.semilogy(x, total, color="k", lw=1.8, label=label)
    if len(terms) > 1:
        for k in terms:
            y = np.array([np.nan if h.get(k) is None else h[k] for h in history], dtype=float)
            ax.semilogy(x, y, lw=1, ls="--", label=k)
    for i, (lo, hi) in enumerate(_lbfgs_spans(history, x)):
        ax.axvspan(lo, hi, alpha=0.12, color="tab:blue", lw=0,
                   label="L-BFGS" if i == 0 else None)
    ax.set_xlabel("optimizer steps (Adam steps + L-BFGS iterations, all windows)")
    ax.set_ylabel("loss (mean squared residual)")
    if len(x):
        ax.legend(fontsize=9, loc="best", framealpha=0.9)
    if title:
        ax.set_title(title)
    return _finish(fig, path)
