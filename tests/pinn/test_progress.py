"""The PINN solve's progress bar counts what the run really does and ends at exactly 100 %."""

from __future__ import annotations

import io
import re
from dataclasses import replace

import pytest

from tiedsci.pinn import problem as P
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.marching import solve_time_marching

TINY_NET = NetSpec(width=8, depth=2, rank=2, n_harmonics=1, time_frequencies=1)
TINY = TrainConfig(adam_steps=12, lbfgs_steps=4, lbfgs_chunk=2, n_x=16, n_t=4, n_x_lbfgs=16,
                   n_t_lbfgs=4, resample_every=5, n_windows=2, seed=1, progress=True)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("budget", [None, 0.3])
def test_pinn_progress_bar_reaches_exactly_100_percent(monkeypatch, budget):
    """Steps (no budget) or seconds of the budget: either way the last draw is 100 %, also when
    windows stop early on their share of a time budget (with 10^5 nominal steps)."""
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    cfg = TINY if budget is None else replace(TINY, adam_steps=100_000, lbfgs_steps=100_000,
                                              budget_s=budget)
    sol = solve_time_marching(P.advection(2.0), TINY_NET, cfg)
    assert sol.completed
    percents = [int(p) for p in re.findall(r"(\d+)%", term.getvalue())]
    assert percents[-1] == 100
    assert percents == sorted(percents)  # never goes back; 100 % only at the end (and redraws)


def test_progress_is_silent_when_stderr_is_not_a_terminal(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    solve_time_marching(P.advection(2.0), TINY_NET, replace(TINY, n_windows=1))
    assert pipe.getvalue() == ""
