"""``solve``: one entry point for every PINN problem (time marching or steady)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from tiedsci.errors import DataError
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.marching import Observations, TimeMarchingSolution, solve_time_marching
from tiedsci.pinn.problem import PDEProblem
from tiedsci.pinn.steady import SteadySolution, solve_steady
from tiedsci.pinn.train import Parallel

__all__ = ["solve"]


def solve(problem: PDEProblem, net: NetSpec | None = None, train: TrainConfig | None = None, *,
          observations: Observations | None = None,
          dirichlet: Mapping[str, tuple[float, float]] | None = None,
          resume: str | os.PathLike | None = None, max_steps: int | None = None,
          parallel: Parallel | None = None) -> TimeMarchingSolution | SteadySolution:
    """Train a PINN on ``problem``: :func:`~tiedsci.pinn.marching.solve_time_marching` for an
    ``(x, t)`` problem, :func:`~tiedsci.pinn.steady.solve_steady` for a steady one.

    Parameters
    ----------
    problem : PDEProblem
    net : NetSpec, optional
    train : TrainConfig, optional
        ``train.checkpoint`` names the checkpoint bundle (time marching).
    observations : Observations, optional
        Time marching: data for inverse problems.
    dirichlet : mapping axis -> (value at lower, value at upper), optional
        Steady: hard Dirichlet values on non-periodic axes.
    resume : path, optional
        Time marching: continue from this checkpoint.
    max_steps : int, optional
        Time marching: stop after this many optimiser steps (checkpoint written).
    parallel : Parallel, optional
        Run as one rank of a data-parallel job (see :mod:`tiedsci.pinn.ddp`).

    Returns
    -------
    TimeMarchingSolution or SteadySolution
        With ``report()``, ``plot()``, ``save(path)``; :func:`tiedsci.pinn.load` reads it back.
    """
    if problem.is_evolution:
        if dirichlet:
            raise DataError("dirichlet values apply to steady problems only")
        return solve_time_marching(problem, net, train, observations, resume=resume,
                                   max_steps=max_steps, parallel=parallel)
    for name, val in (("observations", observations), ("resume", resume),
                      ("max_steps", max_steps)):
        if val is not None:
            raise DataError(f"{name} is supported for time-marching problems only")
    return solve_steady(problem, net, train, dirichlet, parallel=parallel)
