"""Periodic-feature physics-informed neural networks (torch).

Exact periodicity by construction: a periodic input ``x`` of period ``L`` enters the network
only through ``cos(2 pi k x / L)``, ``sin(2 pi k x / L)`` (:class:`PeriodicFeatures`), so every
network is periodic whatever its weights. The periodic axes and the physical coefficients live
in the core :class:`~tiedsci.core.Registry` (coefficients trainable for inverse problems, tied
across equations when shared).

Quick start::

    from tiedsci import pinn
    sol = pinn.solve(pinn.allen_cahn(), pinn.NetSpec(),
                     pinn.TrainConfig(n_windows=10, budget_s=300))
    metrics, u = pinn.evaluate(sol, pinn.load_reference("allen_cahn"))
    print(sol.report())
    sol.plot(pinn.load_reference("allen_cahn"), path="ac.png")
    sol.save("ac")                   # ac.json + ac.npz + ac.pt
    again = pinn.load("ac")          # predicts bit for bit what sol predicts

Joint inverse problems (several experiments, coefficients shared in the registry, esds):
:func:`solve_inverse`. Budgets: ``solve(..., time_budget=, steps=, reference=)``,
``TrainConfig(target_error=, plateau_steps=)``, :func:`time_to_decades`.

Every solver (:func:`solve`, :func:`solve_time_marching`, :func:`solve_steady`,
:func:`solve_ddp`) returns a solution with ``report()``, ``plot()`` and ``save(path)``;
:func:`load` reads one back.

This package imports torch; ``import tiedsci`` does not import it.
"""

from tiedsci.pinn.autodiff import derivatives_1d, grad, laplacian, partial
from tiedsci.pinn.budget import time_to_decades
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.domain import declare_periodic_axis, periodic_axes, periodic_features
from tiedsci.pinn.evaluate import Metrics, evaluate, relative_l2
from tiedsci.pinn.features import (
    CkPeriodicEncoder,
    CkPeriodicFeatures,
    FourierFeatures,
    InputEmbedding,
    PeriodicEncoder,
    PeriodicFeatures,
    ScaledInput,
)
from tiedsci.pinn.inverse import Experiment, InverseSolution, load_inverse, solve_inverse
from tiedsci.pinn.io import load
from tiedsci.pinn.marching import Observations, TimeMarchingSolution, solve_time_marching
from tiedsci.pinn.net import MLP, FactorizedLinear, FieldNet, MLPField, SeparableField
from tiedsci.pinn.problem import (
    PDEProblem,
    advection,
    allen_cahn,
    burgers,
    custom,
    heat,
    helmholtz_2d,
    kdv,
    poisson_2d,
)
from tiedsci.pinn.reference import Reference, load_reference, spectral_reference
from tiedsci.pinn.solvers import solve
from tiedsci.pinn.spectral import SpectralPDE, SpectralSolution, solve_periodic, spectral_pde
from tiedsci.pinn.steady import DirichletTransform, SteadySolution, solve_steady

__all__ = [
    "PeriodicFeatures", "CkPeriodicFeatures", "PeriodicEncoder", "CkPeriodicEncoder",
    "FourierFeatures", "ScaledInput", "InputEmbedding",
    "MLP", "FactorizedLinear", "FieldNet", "SeparableField", "MLPField",
    "NetSpec", "TrainConfig",
    "PDEProblem", "advection", "heat", "burgers", "allen_cahn", "kdv", "poisson_2d",
    "helmholtz_2d", "custom",
    "declare_periodic_axis", "periodic_axes", "periodic_features",
    "solve", "load",
    "solve_time_marching", "TimeMarchingSolution", "Observations",
    "solve_steady", "SteadySolution", "DirichletTransform",
    "solve_ddp", "spawn_solve", "DDPHooks", "EmulatedRanks",
    "grad", "partial", "laplacian", "derivatives_1d",
    "Reference", "load_reference", "spectral_reference",
    "SpectralPDE", "spectral_pde", "solve_periodic", "SpectralSolution",
    "Metrics", "evaluate", "relative_l2",
    "Experiment", "InverseSolution", "solve_inverse", "load_inverse", "time_to_decades",
]

_DDP = ("solve_ddp", "spawn_solve", "DDPHooks", "EmulatedRanks")


def __getattr__(name: str) -> object:
    """The DDP names load lazily (``python -m tiedsci.pinn.ddp`` must not find ddp imported)."""
    if name in _DDP:
        from tiedsci.pinn import ddp

        return getattr(ddp, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
