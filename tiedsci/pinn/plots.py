"""Plots: solution, reference and error maps; loss curves. matplotlib with the Agg backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_solution", "plot_loss"]


def plot_solution(x: np.ndarray, t: np.ndarray, u: np.ndarray, u_ref: np.ndarray | None,
                  path: str | Path, title: str = "") -> Path:
    """Maps of the prediction ``u[i_t, i_x]``, the reference and their difference; PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    n = 1 if u_ref is None else 3
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    panels = [("prediction", u)]
    if u_ref is not None:
        panels += [("reference", u_ref), ("|error|", np.abs(u - u_ref))]
    extent = (float(t[0]), float(t[-1]), float(x[0]), float(x[-1]))
    for ax, (name, data) in zip(axes[0], panels):
        im = ax.imshow(np.asarray(data).T, origin="lower", aspect="auto", extent=extent,
                       cmap="magma" if name == "|error|" else "RdBu_r")
        ax.set_xlabel("t")
        ax.set_ylabel("x")
        ax.set_title(name)
        fig.colorbar(im, ax=ax)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Loss (and its terms) against the record index, Adam and L-BFGS phases marked; PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    keys = [k for k in ("loss", "residual", "boundary", "initial", "data")
            if any(k in h for h in history)]
    for k in keys:
        y = np.array([h.get(k, np.nan) for h in history], dtype=float)
        ax.semilogy(y, label=k, lw=1)
    lb = [i for i, h in enumerate(history) if h.get("phase") == "lbfgs"]
    if lb:
        ax.axvspan(lb[0], len(history) - 1, alpha=0.08, color="gray", label="L-BFGS records")
    ax.set_xlabel("record (every 10 Adam steps / each L-BFGS call)")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
