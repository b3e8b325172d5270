"""Joint inverse problems: several experiments, one PDE, coefficients shared in the registry.

Each experiment ``e`` has its own initial condition ``u0_e``, its own sparse noisy measurements
and, optionally, local nuisance parameters of the observation model

    y_ei = gain_e * u_e(x_i, t_i) + offset_e + noise,

declared in the registry as ``<experiment>.gain`` / ``<experiment>.offset``. The physical
coefficients are the problem's registry parameters (declared once, e.g. ``allen_cahn.eps``), so
every experiment's residual reads the same values and their gradients sum: the pooling of
:mod:`tiedsci.refine` on a PDE. Each experiment gets its own network (one window, hard initial
condition ``u_e = u0_e + N_e(x, t) - N_e(x, t0)``, exact periodic x-embedding); all networks and
the free registry vector are trained together by :func:`~tiedsci.pinn.train.optimize`.

Uncertainty: Gauss-Newton in the coefficient subspace. The networks are eliminated by implicit
differentiation of their PDE residual ``R_e(w_e, theta) = 0`` (on a fixed grid): the
sensitivity of the weights to the free registry vector is ``S_e = -R_w^+ R_theta`` (truncated
SVD), so the data Jacobian *along the PDE* is ``G_e = (D_theta + D_w S_e) / sigma_e``; the
covariance of ``theta`` is ``(sum_e G_e^T G_e)^-1``, propagated to the values by
:meth:`~tiedsci.core.Layout.propagate_covariance`. This is the Laplace approximation of the
coefficient posterior with the PDE held as a constraint (flat prior); its coverage is tested on
synthetic data (``tests/pinn/test_inverse.py``).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tiedsci.core import Layout
from tiedsci.errors import DataError
from tiedsci.persist import read_bundle, write_bundle
from tiedsci.pinn.autodiff import derivatives_1d
from tiedsci.pinn.budget import single_phase_steps
from tiedsci.pinn.config import NetSpec, TrainConfig, from_dict
from tiedsci.pinn.marching import (
    Observations,
    _check_problem,
    build_field,
    field_residual,
    stratified,
)
from tiedsci.pinn.problem import PDEProblem
from tiedsci.pinn.train import Limits, optimize, resolve_device, resolve_dtype, torch_threads

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["Experiment", "InverseSolution", "solve_inverse", "load_inverse", "NUISANCE",
           "INVERSE_FORMAT"]

INVERSE_FORMAT = "tiedsci.pinn.inverse/1"

NUISANCE = {"offset": 0.0, "gain": 1.0}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Experiment:
    """One experiment of a joint inverse problem.

    Attributes
    ----------
    name : str
        Identifier; the registry namespace of its nuisance parameters.
    initial : callable
        ``u0(x)``, elementwise on numpy and torch arrays.
    observations : Observations
        Measurements ``y_i`` at ``(x_i, t_i)``, shape (n_obs,) each.
    sigma : float or None
        Noise standard deviation of ``y`` (same units). ``None``: estimated from the data
        residuals after the fit.
    nuisance : tuple of str
        Local parameters of the observation model, a subset of ``("offset", "gain")``.
    """

    name: str
    initial: Callable[[Any], Any]
    observations: Observations
    sigma: float | None = None
    nuisance: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise DataError(f"experiment name {self.name!r} must be an identifier")
        if not callable(self.initial):
            raise DataError(f"experiment {self.name!r}: initial must be callable")
        if not isinstance(self.observations, Observations):
            raise DataError(f"experiment {self.name!r}: observations must be an Observations")
        unknown = sorted(set(self.nuisance) - set(NUISANCE))
        if unknown:
            raise DataError(f"experiment {self.name!r}: unknown nuisance {unknown}; known: "
                            f"{sorted(NUISANCE)}")
        object.__setattr__(self, "nuisance", tuple(self.nuisance))
        if self.sigma is not None and not (math.isfinite(self.sigma) and self.sigma > 0):
            raise DataError(f"experiment {self.name!r}: sigma must be > 0, got {self.sigma!r}")

    def names(self) -> dict[str, str]:
        """Nuisance kind -> registry name (``<name>.<kind>``)."""
        return {k: f"{self.name}.{k}" for k in self.nuisance}


@dataclass
class InverseSolution:
    """Trained networks, the fitted registry vector and its covariance.

    Attributes
    ----------
    problem : PDEProblem
    experiments : tuple of Experiment
    net : NetSpec
    train : TrainConfig
    fields : list of nn.Module
        One field network per experiment.
    layout : Layout
    theta : ndarray, shape (n_free,)
    cov_theta : ndarray, shape (n_free, n_free), or None
        Covariance of ``theta`` (None when the normal matrix is singular).
    sigma : ndarray, shape (n_experiments,)
        Noise level used per experiment (given, or estimated from the residuals).
    rms : ndarray, shape (n_experiments,)
        Root-mean-square data residual per experiment.
    history : list of dict
    wall_s : float
        Training time; ``covariance_s`` the time of the covariance.
    """

    problem: PDEProblem
    experiments: tuple[Experiment, ...]
    net: NetSpec
    train: TrainConfig
    fields: list[nn.Module]
    layout: Layout
    theta: np.ndarray
    cov_theta: np.ndarray | None
    sigma: np.ndarray
    rms: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    covariance_s: float = 0.0
    device: str = "cpu"

    @property
    def values(self) -> dict[str, np.ndarray]:
        """Registry values at ``theta`` (every parameter, by registry name)."""
        return {k: np.asarray(v) for k, v in self.layout.unpack(self.theta).items()}

    @property
    def esd(self) -> dict[str, np.ndarray]:
        """Estimated standard deviation of every registry value (0 for fixed, NaN if singular)."""
        var, _ = self.layout.propagate_covariance(self.cov_theta, self.theta)
        return {k: np.sqrt(v) for k, v in var.items()}

    @property
    def coefficients(self) -> dict[str, tuple[float, float]]:
        """The problem's coefficients by local name: ``(value, esd)``."""
        vals, esd = self.values, self.esd
        return {k: (float(vals[n]), float(esd[n])) for k, n in self.problem.coefficients.items()}

    def _index(self, experiment: int | str) -> int:
        names = [e.name for e in self.experiments]
        if isinstance(experiment, str):
            if experiment not in names:
                raise DataError(f"unknown experiment {experiment!r}; known: {names}")
            return names.index(experiment)
        return int(experiment)

    def predict(self, experiment: int | str, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Field ``u`` of one experiment on the grid, ``u[i_t, i_x]`` (no nuisance applied)."""
        e = self._index(experiment)
        dev, dt = resolve_device(self.device), resolve_dtype(self.train.dtype)
        xt = torch.as_tensor(np.asarray(x, dtype=np.float64).reshape(-1), dtype=dt, device=dev)
        tt = torch.as_tensor(np.asarray(t, dtype=np.float64).reshape(-1), dtype=dt, device=dev)
        t0 = self.problem.bounds["t"][0]
        with torch.no_grad():
            u0 = derivatives_1d(self.experiments[e].initial, xt, 0)[0]
            u = self.fields[e].grid(xt, tt, t0, 0)["u"] + u0[None, :]
        return u.cpu().double().numpy()

    def fitted(self, experiment: int | str) -> np.ndarray:
        """Model of the observations ``gain * u + offset`` of one experiment, shape (n_obs,)."""
        e = self._index(experiment)
        dev, dt = resolve_device(self.device), resolve_dtype(self.train.dtype)
        ex = _tensors(self.experiments[e], dt, dev)
        values = self.layout.unpack(torch.as_tensor(self.theta, dtype=dt, device=dev))
        with torch.no_grad():
            m = _model(self.fields[e], ex, values, self.problem.bounds["t"][0])
        return m.cpu().double().numpy()

    def plot(self, path: str | Path | None = None) -> Figure:
        """Normalised data residuals ``(y - model) / sigma`` against time, per experiment."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 1.8 * len(self.experiments) + 0.6))
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(self.experiments), 1, squeeze=False)[:, 0]
        for e, (ax, exp, s) in enumerate(zip(axes, self.experiments, self.sigma)):
            o = exp.observations
            ax.plot(o.t, (o.u - self.fitted(e)) / s, ".", ms=3)
            ax.axhline(0.0, color="gray", lw=0.8)
            ax.set_ylabel(f"{exp.name}\n(y - fit) / sigma")
        axes[-1].set_xlabel("t")
        fig.suptitle(", ".join(f"{k} = {v:.5g} +- {d:.2g}"
                               for k, (v, d) in self.coefficients.items()))
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig

    def save(self, path: str | Path) -> Path:
        """Write the bundle ``path`` (JSON values and metadata, npz arrays, network weights);
        :func:`load_inverse` reads it back given the problem and experiments. Returns the JSON."""
        meta = {"problem": self.problem.name, "net": asdict(self.net),
                "train": asdict(self.train), "free_names": list(self.layout.free_names),
                "experiments": [e.name for e in self.experiments], "history": self.history,
                "wall_s": self.wall_s, "covariance_s": self.covariance_s, "device": self.device,
                "coefficients": self.coefficients}
        arrays = {"theta": self.theta, "sigma": self.sigma, "rms": self.rms}
        if self.cov_theta is not None:
            arrays["cov_theta"] = self.cov_theta
        return write_bundle(path, INVERSE_FORMAT, meta, arrays=arrays,
                            weights={"fields": [f.state_dict() for f in self.fields]})

    def report(self) -> str:
        """Coefficients with esds, nuisance parameters, per-experiment fit, timing."""
        vals, esd = self.values, self.esd
        lines = [f"joint inverse problem {self.problem.name!r}: {len(self.experiments)} "
                 f"experiments, {self.layout.n_free} free registry values, "
                 f"train {self.wall_s:.1f} s, covariance {self.covariance_s:.1f} s"]
        for name in self.layout.free_names:
            lines.append(f"  {name:<28} {float(vals[name]):>12.6g} +- {float(esd[name]):.3g}")
        for e, s, r in zip(self.experiments, self.sigma, self.rms):
            lines.append(f"  {e.name:<20} n_obs {e.observations.u.size:>5}  rms {r:.3g}  "
                         f"sigma {s:.3g}")
        return "\n".join(lines)


def declare_nuisance(problem: PDEProblem, experiments: Sequence[Experiment]) -> None:
    """Declare each experiment's nuisance parameters (free) in the problem's registry."""
    reg = problem.registry
    for exp in experiments:
        for kind, name in exp.names().items():
            if name not in reg:
                reg.declare(name, NUISANCE[kind], description=f"{exp.name} {kind} (nuisance)")


def _check(problem: PDEProblem, experiments: Sequence[Experiment]) -> None:
    if not experiments:
        raise DataError("solve_inverse needs at least one experiment")
    names = [e.name for e in experiments]
    if len(set(names)) != len(names):
        raise DataError(f"experiment names must be distinct, got {names}")
    t0, t1 = problem.bounds["t"]
    for e in experiments:
        _check_problem(replace(problem, initial=e.initial))
        t = e.observations.t
        if t.min() < t0 or t.max() > t1:
            raise DataError(f"experiment {e.name!r}: observation times must lie in "
                            f"[{t0}, {t1}]")


@dataclass
class _Exp:
    """Tensors of one experiment on the training device."""

    xo: torch.Tensor
    to: torch.Tensor
    yo: torch.Tensor
    u0o: torch.Tensor
    nuisance: dict[str, str]


def _model(fld: nn.Module, ex: _Exp, values: dict[str, torch.Tensor], t0: float
           ) -> torch.Tensor:
    """Predicted observations ``gain * u + offset`` of one experiment, shape (n_obs,)."""
    u = fld.points(ex.xo, ex.to, t0, 0)["u"] + ex.u0o
    if "gain" in ex.nuisance:
        u = values[ex.nuisance["gain"]].reshape(()) * u
    if "offset" in ex.nuisance:
        u = u + values[ex.nuisance["offset"]].reshape(())
    return u


def solve_inverse(problem: PDEProblem, experiments: Sequence[Experiment],
                  net: NetSpec | None = None, train: TrainConfig | None = None, *,
                  data_weight: float = 1.0, covariance_grid: tuple[int, int] = (64, 32),
                  rcond: float = 1e-5, time_budget: float | None = None,
                  steps: int | None = None) -> InverseSolution:
    """Fit several experiments of one PDE with shared coefficients, and their covariance.

    Parameters
    ----------
    problem : PDEProblem
        An ``(x, t)`` problem with x periodic whose coefficients to learn are declared free
        (``trainable=...``); its own ``initial`` is ignored (each experiment has one).
    experiments : sequence of Experiment
    net : NetSpec, optional
        One network of this spec per experiment (default: separable, width 32, rank 16,
        8 harmonics, 4 time frequencies).
    train : TrainConfig, optional
        Adam then L-BFGS on all networks and the free registry vector together;
        ``n_windows`` must be 1; ``budget_s`` bounds the training time.
    data_weight : float
        Weight of the data misfit (mean square, summed over experiments) against the PDE
        residual (mean square, summed over experiments).
    covariance_grid : (n_x, n_t)
        Grid on which the PDE residual is linearised for the covariance.
    rcond : float
        Relative cut-off of the singular values of the residual Jacobian in the weights
        (1e-10 keeps near-null directions that made the esds 2.5 times too small in the
        closed-form heat test; 1e-6 to 1e-4 agree with the closed form within 1.5 %).
    time_budget : float, optional
        Training seconds (sets ``train.budget_s``).
    steps : int, optional
        Total optimiser steps (Adam's share ``train.adam_fraction``, then L-BFGS).

    Returns
    -------
    InverseSolution
    """
    net = net or NetSpec(width=32, rank=16, n_harmonics=8, time_frequencies=4)
    cfg = single_phase_steps(train or TrainConfig(dtype="float64"), time_budget, steps)
    if cfg.n_windows != 1:
        raise DataError("solve_inverse trains one window per experiment (n_windows=1)")
    if not (math.isfinite(data_weight) and data_weight > 0):
        raise DataError(f"data_weight must be > 0, got {data_weight!r}")
    experiments = tuple(experiments)
    _check(problem, experiments)
    declare_nuisance(problem, experiments)
    layout = problem.registry.compile()
    if layout.n_free == 0:
        raise DataError("the registry has no free parameter to infer")
    dev, dtype = resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    (a, b), (t0, t1) = problem.bounds["x"], problem.bounds["t"]
    x_order = int(problem.orders.get("x", 2))
    theta = nn.Parameter(torch.as_tensor(layout.theta0, dtype=dtype, device=dev))
    fields = [build_field(problem, layout, net, t0, t1, cfg.seed * 7919 + 3 + 101 * i)[0]
              .to(dev, dtype) for i in range(len(experiments))]
    exps = [_tensors(e, dtype, dev) for e in experiments]
    history: list[dict[str, Any]] = []
    wall0 = time.perf_counter()
    with torch_threads(cfg.threads):
        def sample(gen: torch.Generator, phase: str) -> dict[str, Any]:
            nx, nt = (cfg.n_x, cfg.n_t) if phase == "adam" else (cfg.n_x_lbfgs, cfg.n_t_lbfgs)
            x = stratified(gen, nx, a, b, dtype, dev)
            t = stratified(gen, nt, t0, t1, dtype, dev)
            cs = [torch.stack(derivatives_1d(e.initial, x, x_order)) for e in experiments]
            return {"x": x, "t": t, "c": cs}

        def loss_fn(batch: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
            values = layout.unpack(theta)
            p = problem.coefficient_values(values)
            res = sum((field_residual(problem, f, batch["x"], batch["t"], t0, c, p) ** 2).mean()
                      for f, c in zip(fields, batch["c"]))
            data = sum(((_model(f, ex, values, t0) - ex.yo) ** 2).mean()
                       for f, ex in zip(fields, exps))
            return {"residual": res, "data": data_weight * data}, {}

        params = [p for f in fields for p in f.parameters()] + [theta]
        budget = cfg.budget_s
        limits = Limits(cfg.adam_steps, cfg.lbfgs_steps,
                        None if budget is None else budget * cfg.adam_fraction,
                        None if budget is None else budget * (1 - cfg.adam_fraction))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003)
        optimize(params, loss_fn, sample, cfg, gen, limits, history)
        wall = time.perf_counter() - wall0
        cov0 = time.perf_counter()
        cov, sigma, rms = _covariance(problem, experiments, fields, exps, layout, theta,
                                      covariance_grid, rcond)
    return InverseSolution(problem, experiments, net, cfg, fields, layout,
                           theta.detach().cpu().double().numpy(), cov, sigma, rms, history,
                           wall, time.perf_counter() - cov0, str(dev))


def _tensors(e: Experiment, dtype: torch.dtype, dev: torch.device) -> _Exp:
    o = e.observations
    xo, to, yo = (torch.as_tensor(v, dtype=dtype, device=dev) for v in (o.x, o.t, o.u))
    return _Exp(xo, to, yo, derivatives_1d(e.initial, xo, 0)[0], e.names())


def jacobian_rows(out: torch.Tensor, leaves: Sequence[torch.Tensor], chunk: int = 256
                  ) -> torch.Tensor:
    """Dense Jacobian of ``out`` (flattened, n) in the flattened ``leaves``: (n, sum sizes).

    Reverse mode, ``chunk`` rows per batched backward pass; leaves ``out`` does not depend
    on give zero columns.
    """
    out = out.reshape(-1)
    n = out.numel()
    blocks = []
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        seed = out.new_zeros(m, n)
        seed[torch.arange(m), i + torch.arange(m)] = 1.0
        grads = torch.autograd.grad(out, list(leaves), seed, retain_graph=True,
                                    is_grads_batched=True, allow_unused=True)
        blocks.append(torch.cat([out.new_zeros(m, leaf.numel()) if g is None
                                 else g.reshape(m, -1) for g, leaf in zip(grads, leaves)], 1))
    return torch.cat(blocks, 0).detach().double()


def _sensitivity(r_w: torch.Tensor, r_theta: torch.Tensor, rcond: float) -> torch.Tensor:
    """``S = -R_w^+ R_theta`` by truncated SVD: (n_w, n_theta)."""
    u, s, vh = torch.linalg.svd(r_w, full_matrices=False)
    keep = s > rcond * s[0]
    return -(vh[keep].T / s[keep]) @ (u[:, keep].T @ r_theta)


def _covariance(problem: PDEProblem, experiments: Sequence[Experiment], fields: list[nn.Module],
                exps: list[_Exp], layout: Layout, theta: torch.Tensor,
                grid: tuple[int, int], rcond: float
                ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray]:
    """Gauss-Newton covariance of ``theta`` with the networks eliminated along the PDE."""
    (a, b), (t0, t1) = problem.bounds["x"], problem.bounds["t"]
    n_x, n_t = int(grid[0]), int(grid[1])
    x = a + (b - a) * (torch.arange(n_x, dtype=theta.dtype, device=theta.device) + 0.5) / n_x
    t = t0 + (t1 - t0) * (torch.arange(n_t, dtype=theta.dtype, device=theta.device) + 0.5) / n_t
    x_order = int(problem.orders.get("x", 2))
    blocks, sigma, rms = [], [], []
    for e, f, ex in zip(experiments, fields, exps):
        w = list(f.parameters())
        n_w = sum(p.numel() for p in w)
        with torch.enable_grad():
            values = layout.unpack(theta)
            c = torch.stack(derivatives_1d(e.initial, x, x_order))
            r = field_residual(problem, f, x, t, t0, c, problem.coefficient_values(values))
            jr = jacobian_rows(r, w + [theta])
            m = _model(f, ex, values, t0)
            jd = jacobian_rows(m, w + [theta])
        resid = (m - ex.yo).detach().double().cpu().numpy()
        rms.append(float(np.sqrt(np.mean(resid**2))))
        dof = max(resid.size - len(e.nuisance), 1)
        sigma.append(e.sigma if e.sigma is not None else float(np.sqrt(resid @ resid / dof)))
        s = _sensitivity(jr[:, :n_w], jr[:, n_w:], rcond)
        blocks.append((jd[:, n_w:] + jd[:, :n_w] @ s) / sigma[-1])
    g = torch.cat(blocks, 0).cpu().numpy()
    normal = g.T @ g
    try:
        cov = np.linalg.inv(normal)
        if not np.all(np.isfinite(cov)) or np.any(np.diag(cov) < 0):
            cov = None
    except np.linalg.LinAlgError:
        cov = None
    return cov, np.asarray(sigma), np.asarray(rms)


def load_inverse(path: str | Path, problem: PDEProblem, experiments: Sequence[Experiment], *,
                 device: str = "cpu") -> InverseSolution:
    """Read an :class:`InverseSolution` written by :meth:`InverseSolution.save`.

    ``problem`` and ``experiments`` are the ones it was fitted with (initial conditions are
    functions, so they are not stored); the experiment names and free parameters are checked.
    """
    bundle = read_bundle(path, INVERSE_FORMAT)
    meta, arrays = bundle.meta, bundle.arrays
    experiments = tuple(experiments)
    where = repr(str(bundle.path))
    if [e.name for e in experiments] != list(meta["experiments"]):
        raise DataError(f"{where} holds experiments {meta['experiments']}, not "
                        f"{[e.name for e in experiments]}")
    declare_nuisance(problem, experiments)
    layout = problem.registry.compile()
    if list(layout.free_names) != list(meta["free_names"]):
        raise DataError(f"{where} was fitted with the free parameters {meta['free_names']}; "
                        f"this problem has {list(layout.free_names)}")
    net, cfg = from_dict(NetSpec, meta["net"]), from_dict(TrainConfig, meta["train"])
    dev, dtype = resolve_device(device), resolve_dtype(cfg.dtype)
    t0, t1 = problem.bounds["t"]
    fields = []
    for state in (bundle.weights or {})["fields"]:
        fld = build_field(problem, layout, net, t0, t1, 0)[0].to(dev, dtype)
        fld.load_state_dict(state)
        fields.append(fld)
    return InverseSolution(problem, experiments, net, cfg, fields, layout,
                           np.asarray(arrays["theta"]), arrays.get("cov_theta"),
                           np.asarray(arrays["sigma"]), np.asarray(arrays["rms"]),
                           list(meta["history"]), float(meta["wall_s"]),
                           float(meta["covariance_s"]), str(dev))
