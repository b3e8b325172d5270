"""Figures of fitted HMMs on an Agg canvas (no pyplot, no global matplotlib state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_model"]


def _figure(n_rows: int, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, height * n_rows))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(n_rows, 1, squeeze=False)[:, 0]


def _plot_data(model: Any, x: np.ndarray, lengths: Any, feature: int, fig: Any,
               axes: Any, labels: tuple[str, str]) -> None:
    """Feature ``feature`` coloured by the decoded state; state posteriors below."""
    states = model.predict(x, lengths)
    gamma = model.predict_proba(x, lengths)
    t = np.arange(x.shape[0])
    k = int(model.n_components)
    axes[0].plot(t, x[:, feature], color="0.6", lw=0.8)
    for s in range(k):
        on = states == s
        axes[0].scatter(t[on], x[on, feature], s=10, color=f"C{s % 10}", label=f"state {s}")
    axes[0].set_ylabel(labels[1])
    axes[0].set_title("decoded states (Viterbi)", fontsize=10)
    axes[0].sharex(axes[1])
    axes[1].stackplot(t, gamma.T, labels=[f"state {s}" for s in range(k)],
                      colors=[f"C{s % 10}" for s in range(k)])
    axes[1].set_ylim(0, 1)
    axes[1].set_ylabel("posterior")
    axes[1].set_xlabel(labels[0])
    axes[1].legend(fontsize=7, loc="upper right", ncol=min(k, 5))


def _plot_fit(model: Any, fig: Any, axes: Any) -> None:
    """EM log-likelihood history and the transition matrix."""
    monitor = getattr(model, "monitor_", None)
    history = np.asarray(monitor.history if monitor is not None else [], dtype=float)
    axes[0].plot(np.arange(1, history.size + 1), history, "o-", ms=3)
    axes[0].set_xlabel("EM iteration")
    axes[0].set_ylabel("log-likelihood")
    im = axes[1].imshow(np.asarray(model.transmat_), vmin=0, vmax=1, cmap="viridis")
    axes[1].set_xlabel("to state")
    axes[1].set_ylabel("from state")
    fig.colorbar(im, ax=axes[1], label="transition probability")


def plot_model(model: Any, X: Any = None, lengths: Any = None, *, feature: int = 0,
               path: str | Path | None = None, labels: tuple[str, str] | None = None) -> Any:
    """Figure of a fitted HMM.

    Parameters
    ----------
    model : fitted estimator
    X : array, shape (n_samples, n_features), optional
        Data to show: column ``feature`` coloured by the Viterbi states, and the state
        posteriors (shape (n_samples, n_components)) stacked below. Without ``X``: the EM
        log-likelihood per iteration and the transition matrix.
    lengths : array of int, optional
        Sequence lengths of ``X``.
    feature : int
        Column of ``X`` to draw.
    path : path-like, optional
        Also write the figure there (PNG at 110 dpi).
    labels : (str, str), optional
        Axis labels with ``X``: the time axis and the quantity in column ``feature``
        (default ``("time step (row of X)", "feature <feature>")``).

    Returns
    -------
    matplotlib.figure.Figure
    """
    fig, axes = _figure(2, 3.2)
    if X is None:
        _plot_fit(model, fig, axes)
    else:
        x = model._validated(X)
        names = labels or ("time step (row of X)", f"feature {feature}")
        _plot_data(model, x, lengths, feature, fig, axes, (str(names[0]), str(names[1])))
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=110)
    return fig
