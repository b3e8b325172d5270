"""Budgets as users give them: error checks against a reference, time to each decade of error.

A solver given a reference (``solve(..., reference=...)``) calls a monitor every
``TrainConfig.monitor_every`` Adam steps and after every L-BFGS call; each check is a history
record ``{"phase": "monitor", "error": relative L2, "wall": seconds since the solve started}``.
:func:`time_to_decades` reads those records back; ``TrainConfig.target_error`` stops the solve
at a target, ``TrainConfig.plateau_steps`` ends a phase whose loss has stopped falling, and
``TrainConfig.budget_s`` / ``max_steps`` bound the time / steps.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tiedsci.errors import DataError
from tiedsci.pinn.config import TrainConfig
from tiedsci.pinn.evaluate import relative_l2

__all__ = ["time_to_decades", "reference_monitor", "single_phase_steps"]


def reference_monitor(predict: Callable[[np.ndarray, np.ndarray], np.ndarray], reference: Any,
                      t_max: Callable[[], float] | None = None, clock0: float | None = None
                      ) -> Callable[[], dict[str, float]]:
    """A monitor: relative L2 error of ``predict(x, t)`` against ``reference`` (x, t, u).

    Parameters
    ----------
    predict : callable
        ``predict(x, t) -> u[i_t, i_x]``.
    reference : Reference
    t_max : callable, optional
        Only reference times ``<= t_max()`` are compared (the trained part of a time-marching
        run); the record says how far (``t_max``).
    clock0 : float, optional
        ``time.perf_counter()`` at the start of the solve (default: now).
    """
    start = time.perf_counter() if clock0 is None else clock0
    x, t, u = (np.asarray(a, dtype=np.float64) for a in (reference.x, reference.t, reference.u))

    def monitor() -> dict[str, float]:
        wall = time.perf_counter() - start
        rows = np.arange(t.size) if t_max is None else np.flatnonzero(t <= t_max() + 1e-12)
        err = relative_l2(predict(x, t[rows]), u[rows]) if rows.size else math.inf
        return {"error": err, "wall": wall,
                "t_max": float(t[rows[-1]]) if rows.size else float("nan")}

    return monitor


def time_to_decades(history: Sequence[dict[str, Any]], full_t: float | None = None,
                    ) -> dict[str, float]:
    """Seconds from the start of the solve until the error first reached each decade.

    Parameters
    ----------
    history : sequence of dict
        A solution's history (its ``phase="monitor"`` records).
    full_t : float, optional
        Only count checks that covered the reference up to this time (time marching: the whole
        interval, i.e. after the last window has started).

    Returns
    -------
    dict
        ``{"1e-1": s, "1e-2": s, ...}`` for every decade reached, in order.
    """
    out: dict[str, float] = {}
    for h in history:
        if h.get("phase") != "monitor" or not math.isfinite(h.get("error", math.inf)):
            continue
        if full_t is not None and h.get("t_max", full_t) < full_t - 1e-12:
            continue
        k = 1
        while h["error"] <= 10.0**-k and k <= 12:
            out.setdefault(f"1e-{k}", round(float(h["wall"]), 3))
            k += 1
    return out


def single_phase_steps(cfg: TrainConfig, time_budget: float | None, steps: int | None
                       ) -> TrainConfig:
    """``cfg`` with a wall-clock budget and a cap on the total optimiser steps of a solve that
    runs Adam then L-BFGS once (steady and inverse problems): Adam takes its share
    ``adam_fraction`` of ``steps``, L-BFGS the rest."""
    if time_budget is not None:
        cfg = replace(cfg, budget_s=time_budget)
    if steps is not None:
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise DataError(f"steps must be an integer >= 1, got {steps!r}")
        adam = min(cfg.adam_steps, int(round(steps * cfg.adam_fraction)))
        cfg = replace(cfg, adam_steps=adam, lbfgs_steps=min(cfg.lbfgs_steps, int(steps) - adam))
    return cfg
