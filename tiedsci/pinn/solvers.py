"""``solve``: one entry point for every PINN problem (time marching or steady)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from tiedsci.errors import DataError
from tiedsci.pinn.budget import single_phase_steps
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.marching import Observations, TimeMarchingSolution, solve_time_marching
from tiedsci.pinn.problem import PDEProblem
from tiedsci.pinn.reference import Reference
from tiedsci.pinn.steady import SteadySolution, solve_steady
from tiedsci.pinn.train import Parallel

__all__ = ["solve"]


def solve(problem: PDEProblem, net: NetSpec | None = None, train: TrainConfig | None = None, *,
          observations: Observations | None = None,
          dirichlet: Mapping[str, tuple[float, float]] | None = None,
          resume: str | os.PathLike | None = None, max_steps: int | None = None,
          parallel: Parallel | None = None, time_budget: float | None = None,
          steps: int | None = None, reference: Reference | None = None,
          ) -> TimeMarchingSolution | SteadySolution:
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
    time_budget : float, optional
        Wall-clock seconds for the whole solve (sets ``train.budget_s``).
    steps : int, optional
        Total optimiser steps of the solve (time marching: as ``max_steps``; steady: split
        between Adam and L-BFGS by ``train.adam_fraction``).
    reference : Reference, optional
        Check the error while training, record the time to each decade
        (:func:`tiedsci.pinn.budget.time_to_decades`) and stop at ``train.target_error``
        (steady: ``reference.x`` / ``reference.t`` are the grids of the first / second input).

    Returns
    -------
    TimeMarchingSolution or SteadySolution
        With ``report()``, ``plot()``, ``save(path)``; :func:`tiedsci.pinn.load` reads it back.
    """
    if steps is not None and max_steps is not None:
        raise DataError("give steps or max_steps, not both")
    if problem.is_evolution:
        if dirichlet:
            raise DataError("dirichlet values apply to steady problems only")
        train = single_phase_steps(train or TrainConfig(), time_budget, None)
        return solve_time_marching(problem, net, train, observations, resume=resume,
                                   max_steps=steps if steps is not None else max_steps,
                                   parallel=parallel, reference=reference)
    train = single_phase_steps(train or TrainConfig(), time_budget, steps)
    for name, val in (("observations", observations), ("resume", resume),
                      ("max_steps", max_steps)):
        if val is not None:
            raise DataError(f"{name} is supported for time-marching problems only")
    return solve_steady(problem, net, train, dirichlet, parallel=parallel, reference=reference)
