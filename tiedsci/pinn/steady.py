"""Steady problems on boxes with periodic axes (2-D periodic Poisson / Helmholtz, ...).

One network ``N`` on the embedded inputs: the periodic axes declared in the problem's registry
go through :class:`~tiedsci.pinn.features.PeriodicFeatures`; a non-periodic axis with Dirichlet
values ``(g_lo, g_hi)`` gets the hard output transform

    u = g_lo + (g_hi - g_lo) s + 4 s (1 - s) N,     s = (y - lo) / (hi - lo),

which meets both boundary values exactly for any weights.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tiedsci.core import Layout
from tiedsci.errors import DataError
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.domain import periodic_features
from tiedsci.pinn.features import ScaledInput
from tiedsci.pinn.jets import Jet
from tiedsci.pinn.net import MLP, FieldNet
from tiedsci.pinn.problem import PDEProblem
from tiedsci.pinn.train import (
    Interrupted,
    Limits,
    Parallel,
    optimize,
    resolve_device,
    resolve_dtype,
    torch_threads,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["solve_steady", "SteadySolution", "DirichletTransform", "build_steady_field"]


@dataclass(frozen=True)
class DirichletTransform:
    """Hard Dirichlet values on a non-periodic input column (see the module docstring)."""

    axis: int
    lower: float
    upper: float
    value_lower: float = 0.0
    value_upper: float = 0.0

    def apply(self, x: torch.Tensor, n_jet: Jet, along: int) -> Jet:
        """Jet of ``u`` along input column ``along`` from the jet of ``N`` (each (N,))."""
        length = self.upper - self.lower
        s = (x[:, self.axis] - self.lower) / length
        phi = 4 * s * (1 - s)
        g = self.value_lower + (self.value_upper - self.value_lower) * s
        out = [g + phi * n_jet[0]]
        if along != self.axis:
            return tuple(out + [phi * d for d in n_jet[1:]])
        dphi = 4 * (1 - 2 * s) / length
        ddphi = -8.0 / length**2
        dg = (self.value_upper - self.value_lower) / length
        if len(n_jet) > 1:
            out.append(dg + dphi * n_jet[0] + phi * n_jet[1])
        if len(n_jet) > 2:
            out.append(ddphi * n_jet[0] + 2 * dphi * n_jet[1] + phi * n_jet[2])
        if len(n_jet) > 3:
            raise DataError("the Dirichlet transform supports derivatives up to order 2")
        return tuple(out)


@dataclass
class SteadySolution:
    """A trained steady field; ``predict(x0, x1)`` returns ``u[i_1, i_0]`` on a tensor grid.

    Attributes
    ----------
    problem : PDEProblem
    net : NetSpec
    train : TrainConfig
    field : FieldNet
    layout : Layout
    theta : ndarray, shape (layout.n_free,)
        Final free registry vector (trainable coefficients).
    transforms : tuple of DirichletTransform
    history : list of dict
        Loss records (``phase``, ``step``, ``loss``, terms).
    wall_s : float
    device : str
    completed : bool
    """

    problem: PDEProblem
    net: NetSpec
    train: TrainConfig
    field: FieldNet
    layout: Layout
    theta: np.ndarray
    transforms: tuple[DirichletTransform, ...] = ()
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    device: str = "cpu"
    completed: bool = True

    @property
    def coefficients(self) -> dict[str, np.ndarray]:
        """Registry values at the final ``theta`` (all parameters, by registry name)."""
        return {k: np.asarray(v) for k, v in self.layout.unpack(self.theta).items()}

    @property
    def dirichlet(self) -> dict[str, tuple[float, float]]:
        """The hard Dirichlet values by axis name (the ``dirichlet`` of :func:`solve_steady`)."""
        return {self.problem.inputs[tr.axis]: (tr.value_lower, tr.value_upper)
                for tr in self.transforms}

    def report(self) -> str:
        """A readable summary: problem, network, training, final loss, coefficients."""
        from tiedsci.pinn.io import report

        return report(self)

    def plot(self, reference: Any = None, *, what: str = "solution",
             path: str | os.PathLike[str] | None = None) -> Figure:
        """Figure of the field on a 128 x 128 grid (``what="solution"``) or of the loss.

        ``reference`` is not used by steady solutions (the exact solution, when the problem
        has one, is drawn with the error).
        """
        from tiedsci.pinn.io import plot

        return plot(self, reference, what=what, path=path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save as the bundle ``path`` (``.json``, ``.npz``, ``.pt``); read it with
        :func:`tiedsci.pinn.load`. Returns the JSON file."""
        from tiedsci.pinn.io import save

        return save(self, path)

    def predict(self, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
        """Field on the grid of the two inputs: shape (len(x1), len(x0)), ``u[i_1, i_0]``."""
        dev, dt = resolve_device(self.device), resolve_dtype(self.train.dtype)
        a = torch.as_tensor(np.asarray(x0, dtype=np.float64).reshape(-1), dtype=dt, device=dev)
        b = torch.as_tensor(np.asarray(x1, dtype=np.float64).reshape(-1), dtype=dt, device=dev)
        pts = _grid_points(a, b)
        with torch.no_grad():
            u = _field_jets(self.field, self.transforms, pts, 0, 0)[0]
        return u.reshape(b.numel(), a.numel()).cpu().double().numpy()


def _grid_points(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    aa = a[None, :].expand(b.numel(), a.numel()).reshape(-1)
    bb = b[:, None].expand(b.numel(), a.numel()).reshape(-1)
    return torch.stack([aa, bb], dim=1)


def _field_jets(net: FieldNet, transforms: tuple[DirichletTransform, ...], pts: torch.Tensor,
                axis: int, order: int) -> Jet:
    jet = tuple(j[:, 0] for j in net.jet(pts, axis, order))
    for tr in transforms:
        jet = tr.apply(pts, jet, axis)
    return jet


def build_steady_field(problem: PDEProblem, layout: Layout, net: NetSpec, cfg: TrainConfig,
                       dirichlet: Mapping[str, tuple[float, float]] | None,
                       dev: torch.device, dtype: torch.dtype
                       ) -> tuple[FieldNet, tuple[DirichletTransform, ...]]:
    """The untrained network of :func:`solve_steady` and its hard Dirichlet transforms."""
    inputs = problem.inputs
    dirichlet = dict(dirichlet or {})
    others: dict[int, nn.Module] = {}
    transforms = []
    for i, ax in enumerate(inputs):
        if ax in problem.periodic:
            if ax in dirichlet:
                raise DataError(f"axis {ax!r} is periodic; it cannot also carry Dirichlet values")
            continue
        lo, hi = problem.bounds[ax]
        others[i] = ScaledInput(lo, hi)
        if ax in dirichlet:
            vlo, vhi = dirichlet[ax]
            transforms.append(DirichletTransform(i, lo, hi, float(vlo), float(vhi)))
    unknown = set(dirichlet) - set(inputs)
    if unknown:
        raise DataError(f"Dirichlet values given for unknown axes {sorted(unknown)}")
    emb = periodic_features(layout, inputs, net.n_harmonics, others=others,
                            trainable_amplitudes=net.trainable_amplitudes, ck=net.ck,
                            n_basis=net.n_basis, decay=net.harmonic_decay)
    fnet = FieldNet(emb, MLP(emb.n_out, 1, width=net.width, depth=net.depth,
                             activation=net.activation,
                             weight_factorization=net.weight_factorization,
                             seed=cfg.seed * 7919 + 3)).to(dev, dtype)
    return fnet, tuple(transforms)


def solve_steady(problem: PDEProblem, net: NetSpec | None = None,
                 train: TrainConfig | None = None,
                 dirichlet: Mapping[str, tuple[float, float]] | None = None, *,
                 parallel: Parallel | None = None, reference: Any = None) -> SteadySolution:
    """Train a PINN for a steady problem with (at least one) periodic axis.

    Parameters
    ----------
    problem : PDEProblem
        Two inputs, e.g. :func:`~tiedsci.pinn.problem.poisson_2d`.
    net : NetSpec, optional
        ``architecture`` must be ``"mlp"`` and ``boundary`` ``"periodic"``.
    train : TrainConfig, optional
        The collocation grid is ``n_x`` by ``n_t`` points (second input uses ``n_t``).
    dirichlet : mapping axis -> (value at lower, value at upper), optional
        Hard Dirichlet values for non-periodic axes.
    parallel : Parallel, optional
        Train as one rank of a data-parallel job (use :func:`tiedsci.pinn.ddp.solve_ddp`).
    reference : Reference, optional
        A solution on the grid ``reference.x`` (first input) by ``reference.t`` (second
        input), ``u[i_1, i_0]``: the error is checked every ``train.monitor_every`` Adam steps
        and after every L-BFGS call (records ``phase="monitor"`` in the history, time to each
        decade by :func:`tiedsci.pinn.budget.time_to_decades`), and the solve stops at
        ``train.target_error``.
    """
    net = net or NetSpec(architecture="mlp", width=32, depth=3, n_harmonics=4)
    cfg = train or TrainConfig()
    if problem.is_evolution or len(problem.inputs) != 2:
        raise DataError(f"solve_steady needs a steady problem with two inputs, got "
                        f"{problem.inputs}")
    if net.architecture != "mlp" or net.boundary != "periodic":
        raise DataError("solve_steady supports architecture='mlp' with boundary='periodic'")
    dev, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    layout = problem.registry.compile()
    inputs = problem.inputs
    fnet, trs = build_steady_field(problem, layout, net, cfg, dirichlet, dev, dtype)
    theta = nn.Parameter(torch.as_tensor(layout.theta0, dtype=dtype, device=dev))
    params = list(fnet.parameters()) + ([theta] if layout.n_free else [])
    (lo0, hi0), (lo1, hi1) = problem.bounds[inputs[0]], problem.bounds[inputs[1]]
    o0, o1 = int(problem.orders.get(inputs[0], 2)), int(problem.orders.get(inputs[1], 2))

    def sample(gen: torch.Generator, phase: str) -> torch.Tensor:
        n0, n1 = (cfg.n_x, cfg.n_t) if phase == "adam" else (cfg.n_x_lbfgs, cfg.n_t_lbfgs)
        r0 = torch.rand(n0, generator=gen, dtype=torch.float64)
        r1 = torch.rand(n1, generator=gen, dtype=torch.float64)
        a = lo0 + (hi0 - lo0) * (torch.arange(n0, dtype=torch.float64) + r0) / n0
        b = lo1 + (hi1 - lo1) * (torch.arange(n1, dtype=torch.float64) + r1) / n1
        return _grid_points(a, b).to(dev, dtype)

    def loss_fn(pts: torch.Tensor) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        p = problem.coefficient_values(layout.unpack(theta))
        j0 = _field_jets(fnet, trs, pts, 0, o0)
        j1 = _field_jets(fnet, trs, pts, 1, o1)
        d = {"u": j0[0]}
        for m in range(1, o0 + 1):
            d[f"u_{inputs[0] * m}"] = j0[m]
        for m in range(1, o1 + 1):
            d[f"u_{inputs[1] * m}"] = j1[m]
        coords = {inputs[0]: pts[:, 0], inputs[1]: pts[:, 1]}
        terms = {"residual": (problem.residual(d, coords, p) ** 2).mean()}
        if problem.gauge:
            terms["gauge"] = j0[0].mean() ** 2
        return terms, {}

    history: list[dict[str, Any]] = []
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003)
    budget = cfg.budget_s
    limits = Limits(cfg.adam_steps, cfg.lbfgs_steps,
                    None if budget is None else budget * cfg.adam_fraction,
                    None if budget is None else budget * (1 - cfg.adam_fraction))
    start = time.perf_counter()
    monitor = None
    if reference is not None:
        from tiedsci.pinn.budget import reference_monitor

        def predict(x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
            return SteadySolution(problem, net, cfg, fnet, layout,
                                  theta.detach().cpu().double().numpy(), trs).predict(x0, x1)

        monitor = reference_monitor(predict, reference, clock0=start)
    completed = True
    try:
        with torch_threads(cfg.threads):
            optimize(params, loss_fn, sample, cfg, gen, limits, history, parallel=parallel,
                     monitor=monitor)
    except Interrupted:  # pragma: no cover - no allowance is passed here
        completed = False
    return SteadySolution(problem, net, cfg, fnet, layout,
                          theta.detach().cpu().double().numpy(), trs, history,
                          time.perf_counter() - start, str(dev), completed)
