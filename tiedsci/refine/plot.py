"""Observed / calculated / difference plots, one panel per dataset (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tiedsci.refine.result import RefinementResult

__all__ = ["plot_result"]


def plot_result(res: RefinementResult, path: str | Path | None = None,
                datasets: list[str] | None = None) -> Any:
    """Figure with observed (points), calculated (line) and difference (offset) per dataset.

    Uses an Agg canvas directly, so no global pyplot state or display is touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    chosen = [d for d in res.datasets if datasets is None or d.name in datasets]
    n = max(1, len(chosen))
    fig = Figure(figsize=(8, 3.0 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 1, squeeze=False)[:, 0]
    for ax, d in zip(axes, chosen):
        diff = d.difference
        offset = min(d.y_obs.min(), d.y_calc.min()) - 1.1 * max(diff.max(), 0.0)
        x = d.x if d.x.ndim == 1 else d.x[:, 0]  # several columns: against the first
        ax.plot(x, d.y_obs, "+", ms=3, color="tab:red", label="observed")
        ax.plot(x, d.y_calc, "-", lw=1, color="tab:green", label="calculated")
        ax.plot(x, diff + offset, "-", lw=0.8, color="tab:blue", label="obs - calc")
        a = d.agreement
        ax.set_title(f"{d.name}: Rwp {100 * a.rwp:.2f} %, GOF {a.gof:.3f}", fontsize=10)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("x")
    fig.tight_layout()
    if path is not None:
        fig.savefig(str(path), dpi=110)
    return fig
