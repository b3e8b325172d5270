"""Time-marching solver for 1-D periodic evolution problems (the design that meets the targets).

``[t0, t1]`` is cut into ``n_windows`` windows. In window ``w`` the field is

    u_w(x, t) = c_w(x) + N_w(x, t) - N_w(x, t_w),

where ``c_w`` is the state at the window's start, carried *exactly* (values and x-derivatives)
from the previous windows: ``c_0 = u0`` and ``c_{w+1}(x) = u_w(x, t_{w+1})``. Each window's
network starts from the previous one's weights and is trained by
:func:`~tiedsci.pinn.train.optimize` (Adam with resampled stratified collocation grids, then
L-BFGS on a larger grid). With ``n_windows = 1`` this is a single global PINN with a hard
initial condition.

The periodic axis comes from the problem's registry (``domain.x.*``) and is compiled into the
x-embedding (``boundary="periodic"``), or left to a soft penalty / a shared boundary sub-network
for comparison (same API, :class:`~tiedsci.pinn.config.NetSpec` ``boundary``). Physical
coefficients are unpacked from the registry at every loss evaluation, so free ones are learned
(inverse problems, with ``observations``) and tied ones share one value.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tiedsci.core import Layout
from tiedsci.errors import CheckpointError, DataError
from tiedsci.pinn.autodiff import derivatives_1d
from tiedsci.pinn.checkpoint import (
    CheckpointState,
    load_window_states,
    map_tensors,
    read_checkpoint,
    write_checkpoint,
)
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.domain import periodic_axes, periodic_features
from tiedsci.pinn.features import FourierFeatures, InputEmbedding, ScaledInput
from tiedsci.pinn.net import MLP, CornerModes, FieldNet, MLPField, SeparableField
from tiedsci.pinn.problem import PDEProblem, ResidualInputs
from tiedsci.pinn.train import (
    Interrupted,
    Limits,
    Parallel,
    optimize,
    resolve_device,
    resolve_dtype,
    torch_threads,
)
from tiedsci.progress import ProgressBar, progress_bar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tiedsci.pinn.reference import Reference

__all__ = ["solve_time_marching", "TimeMarchingSolution", "Window", "build_field",
           "build_windows", "Observations", "field_residual", "stratified"]


@dataclass(frozen=True)
class Observations:
    """Measured values for inverse problems: ``u(x_i, t_i) = u_i``; arrays of shape (n_obs,)."""

    x: np.ndarray
    t: np.ndarray
    u: np.ndarray

    def __post_init__(self) -> None:
        arrs = [np.asarray(a, dtype=np.float64).reshape(-1) for a in (self.x, self.t, self.u)]
        if len({a.size for a in arrs}) != 1 or arrs[0].size == 0:
            raise DataError("observations x, t and u must be non-empty and of equal length")
        for name, a in zip("xtu", arrs):
            bad = np.flatnonzero(~np.isfinite(a))
            if bad.size:
                raise DataError(f"observations.{name} is not finite at index {bad[0]}")
            object.__setattr__(self, name, a)


@dataclass
class Window:
    """One time window: its field ``N_w`` and, for the shared-subnet variant, ``h_w(t)``."""

    t_start: float
    t_end: float
    field: nn.Module
    subtract: bool = True
    boundary_net: nn.Module | None = None


def _t_embedding(t0: float, t1: float, spec: NetSpec) -> InputEmbedding:
    freqs = [math.pi * j for j in range(1, spec.time_frequencies + 1)]
    return InputEmbedding(1, {0: FourierFeatures(t0, t1, freqs)})


def build_field(problem: PDEProblem, layout: Layout, spec: NetSpec, t0: float, t1: float,
                seed: int) -> tuple[nn.Module, nn.Module | None]:
    """The field network of one window and, if asked for, its boundary sub-network.

    The x-embedding realises the registry's periodic axis (``boundary="periodic"``) or is the
    plain scaled coordinate (the penalty and shared-subnet alternatives).
    """
    a, b = problem.bounds["x"]
    if spec.boundary == "periodic":
        def x_embedding(n_inputs: int, others: Mapping[int, nn.Module] | None) -> nn.Module:
            return periodic_features(layout, ("x", "t")[:n_inputs], spec.n_harmonics,
                                     others=others, trainable_amplitudes=spec.trainable_amplitudes,
                                     ck=spec.ck, n_basis=spec.n_basis,
                                     decay=spec.harmonic_decay)
    else:
        periodic_axes(layout, ("x", "t"))  # still validate the declaration

        def x_embedding(n_inputs: int, others: Mapping[int, nn.Module] | None) -> nn.Module:
            return InputEmbedding(n_inputs, {0: ScaledInput(a, b), **dict(others or {})})

    kw = dict(width=spec.width, depth=spec.depth, activation=spec.activation,
              weight_factorization=spec.weight_factorization)
    if spec.architecture == "separable":
        xf = x_embedding(1, None)
        tf = _t_embedding(t0, t1, spec)
        corner = corner_modes(problem, spec.corner_orders) if spec.corner_orders else None
        rate = None
        if corner is not None and spec.corner_amplitude == "linearized":
            rate = boundary_decay_rate(problem, layout)
        n_t_out = spec.rank + (corner.n_modes if corner is not None and rate is None else 0)
        x_kw = kw if spec.x_depth is None else {**kw, "depth": spec.x_depth}
        fld: nn.Module = SeparableField(
            FieldNet(xf, MLP(xf.n_out, spec.rank, seed=seed, **x_kw)),
            FieldNet(tf, MLP(tf.n_out, n_t_out, seed=seed + 1, **kw)),
            corner, rate,
        )
    else:
        freqs = [math.pi * j for j in range(1, spec.time_frequencies + 1)]
        emb = x_embedding(2, {1: FourierFeatures(t0, t1, freqs)})
        fld = MLPField(FieldNet(emb, MLP(emb.n_out, 1, seed=seed, **kw)))
    bnet = None
    if spec.boundary == "shared_subnet":
        tf = _t_embedding(t0, t1, spec)
        bnet = FieldNet(tf, MLP(tf.n_out, 2, width=spec.width, depth=max(1, spec.depth - 1),
                                activation=spec.activation, seed=seed + 2))
    return fld, bnet


def corner_modes(problem: PDEProblem, orders: int) -> CornerModes:
    """:class:`~tiedsci.pinn.net.CornerModes` for the jumps of ``problem.initial``'s
    derivatives of orders ``1..orders`` across the periodic x-boundary."""
    a, b = problem.bounds["x"]
    jets = derivatives_1d(problem.initial, torch.tensor([a, b], dtype=torch.float64), orders)
    return CornerModes(a, b, [float(j[0] - j[1]) for j in jets[1:]])


def boundary_decay_rate(problem: PDEProblem, layout: Layout) -> float:
    """``lambda = -(dR/du) / (dR/du_t)`` at ``u0``'s state at the lower x-bound (its value and
    x-derivatives, ``u_t = 0``, the registry's initial coefficient values): the rate at which a
    small perturbation there grows (> 0) or decays (< 0) under the linearised PDE."""
    a = problem.bounds["x"][0]
    x = torch.tensor([a], dtype=torch.float64)
    jets = derivatives_1d(problem.initial, x, int(problem.orders.get("x", 2)))
    d = {name: j.clone() for name, j in zip(_names(len(jets) - 1), jets)}
    d["u"].requires_grad_(True)
    d["u_t"] = torch.zeros_like(x, requires_grad=True)
    values = {k: torch.as_tensor(v, dtype=torch.float64)
              for k, v in layout.unpack(layout.theta0).items()}
    coords = {"x": x, "t": torch.tensor([problem.bounds["t"][0]], dtype=torch.float64)}
    with torch.enable_grad():
        r = problem.residual(d, coords, problem.coefficient_values(values)).sum()
        r_u, r_t = torch.autograd.grad(r, [d["u"], d["u_t"]], allow_unused=True)
    if r_t is None or float(r_t) == 0.0:
        raise DataError(f"problem {problem.name!r}: the residual does not depend on u_t, so "
                        "the corner modes cannot be given a linearised decay rate")
    return 0.0 if r_u is None else -float(r_u) / float(r_t)


def _names(order: int) -> list[str]:
    return ["u"] + ["u_" + "x" * m for m in range(1, order + 1)]


@dataclass
class TimeMarchingSolution:
    """Trained windows and what is needed to evaluate them.

    Attributes
    ----------
    problem : PDEProblem
    net : NetSpec
    train : TrainConfig
    windows : list of Window
    layout : Layout
    theta : ndarray, shape (layout.n_free,)
        Final free registry vector (trainable coefficients).
    history : list of dict
        Loss records (``phase``, ``step``, ``loss``, terms, ``window``, ``sweep``).
    wall_s : float
    device : str
    completed : bool
        False when the run stopped early (``max_steps`` or Ctrl-C) after writing its checkpoint.
    interrupted : bool
        True when Ctrl-C stopped the run: the solution is the state of the last checkpoint.
    stopped_at : dict or None
        Where an incomplete run stopped: ``{"window", "sweep", "in_window"}``.
    """

    problem: PDEProblem
    net: NetSpec
    train: TrainConfig
    windows: list[Window]
    layout: Layout
    theta: np.ndarray
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0
    device: str = "cpu"
    completed: bool = True
    interrupted: bool = False
    stopped_at: dict[str, Any] | None = None

    @property
    def coefficients(self) -> dict[str, np.ndarray]:
        """Registry values at the final ``theta`` (all parameters, by registry name)."""
        return {k: np.asarray(v) for k, v in self.layout.unpack(self.theta).items()}

    def report(self) -> str:
        """A readable summary: problem, network, training, final loss, coefficients."""
        from tiedsci.pinn.io import report

        return report(self)

    def plot(self, reference: Reference | None = None, *, what: str = "solution",
             path: str | os.PathLike[str] | None = None) -> Figure:
        """Figure of the field (with ``reference`` and the error when given) or of the loss.

        Parameters
        ----------
        reference : Reference, optional
            Grid and reference field; without it the prediction on a 256 x 101 grid.
        what : {"solution", "loss"}
        path : path-like, optional
            Also write the figure there (PNG).
        """
        from tiedsci.pinn.io import plot

        return plot(self, reference, what=what, path=path)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Save as the bundle ``path`` (``.json``, ``.npz``, ``.pt``); read it with
        :func:`tiedsci.pinn.load`. Returns the JSON file."""
        from tiedsci.pinn.io import save

        return save(self, path)

    def _dtype(self) -> torch.dtype:
        return resolve_dtype(self.train.dtype)

    def state_jets(self, x: torch.Tensor, w: int, order: int) -> tuple[torch.Tensor, ...]:
        """The state at the start of window ``w`` and its x-derivatives at ``x`` (each (n,))."""
        return _state_jets(self.problem, self.windows[:w], x, order,
                           subtract_first=self.windows[0].subtract)

    def predict(self, x: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Field on the grid ``u[i_t, i_x]``; shape (len(t), len(x)).

        Times outside ``[t0, t1]`` use the first / last window (extrapolation).
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        for name, arr in (("x", x), ("t", t)):
            if not np.all(np.isfinite(arr)):
                i = int(np.argmax(~np.isfinite(arr)))
                raise DataError(f"predict: {name} is not finite at index {i} ({arr[i]!r})")
        dev = resolve_device(self.device)
        dt = self._dtype()
        xt = torch.as_tensor(x, dtype=dt, device=dev)
        out = np.empty((t.size, x.size))
        edges = np.array([w.t_end for w in self.windows[:-1]])
        which = np.searchsorted(edges, t, side="left")
        with torch.no_grad():
            for w in np.unique(which):
                rows = np.flatnonzero(which == w)
                win = self.windows[int(w)]
                c = self.state_jets(xt, int(w), 0)[0]
                tt = torch.as_tensor(t[rows], dtype=dt, device=dev)
                d = win.field.grid(xt, tt, win.t_start if win.subtract else None, 0)
                out[rows] = (d["u"] + c[None, :]).cpu().double().numpy()
        return out

    def boundary_mismatch(self, t: np.ndarray, order: int = 0) -> float:
        """``max_t |d^k u(a, t) - d^k u(b, t)|`` (``k = order``) at the given times."""
        a, b = self.problem.bounds["x"]
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        if order == 0:
            u = self.predict(np.array([a, b]), t)
            return float(np.max(np.abs(u[:, 0] - u[:, 1])))
        dev, dt = resolve_device(self.device), self._dtype()
        xt = torch.as_tensor([a, b], dtype=dt, device=dev)
        edges = np.array([w.t_end for w in self.windows[:-1]])
        which = np.searchsorted(edges, t, side="left")
        worst = 0.0
        with torch.no_grad():
            for w in np.unique(which):
                win = self.windows[int(w)]
                c = self.state_jets(xt, int(w), order)[order]
                tt = torch.as_tensor(t[which == w], dtype=dt, device=dev)
                d = win.field.grid(xt, tt, win.t_start if win.subtract else None, order)
                u = d[_names(order)[order]] + c[None, :]
                worst = max(worst, float((u[:, 0] - u[:, 1]).abs().max()))
        return worst


def _state_jets(problem: PDEProblem, done: list[Window], x: torch.Tensor, order: int,
                subtract_first: bool) -> tuple[torch.Tensor, ...]:
    """Exact state at the end of the windows ``done`` (u0 when empty), with x-derivatives."""
    if subtract_first:
        c = list(derivatives_1d(problem.initial, x, order))
    else:
        c = [torch.zeros_like(x) for _ in range(order + 1)]
    with torch.no_grad():
        for win in done:
            d = win.field.grid(x, x.new_tensor([win.t_end]),
                               win.t_start if win.subtract else None, order)
            c = [ci + d[name][0] for ci, name in zip(c, _names(order))]
    return tuple(c)


def field_residual(problem: PDEProblem, fld: nn.Module, x: torch.Tensor, t: torch.Tensor,
                   t0: float | None, c: torch.Tensor | tuple[torch.Tensor, ...],
                   p: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """PDE residual of ``u = c(x) + N(x, t) - N(x, t0)`` on the grid ``t x x``; (n_t, n_x).

    ``c`` holds the carried state and its x-derivatives up to the problem's x-order (each
    (n_x,)); ``p`` the coefficient values by local name.
    """
    x_order = int(problem.orders.get("x", 2))
    d = fld.grid(x, t, t0, x_order)
    for m, name in enumerate(_names(x_order)):
        d[name] = d[name] + c[m][None, :]
    d = ResidualInputs(d, "field derivative", problem.name,
                       f" (x-derivatives up to the problem's order {x_order})")
    return problem.residual(d, {"x": x[None, :], "t": t[:, None]}, p)


def stratified(gen: torch.Generator, n: int, lo: float, hi: float, dtype: torch.dtype,
                device: torch.device) -> torch.Tensor:
    r = torch.rand(n, generator=gen, dtype=torch.float64)
    pts = lo + (hi - lo) * (torch.arange(n, dtype=torch.float64) + r) / n
    return pts.to(dtype=dtype, device=device)


def _check_problem(problem: PDEProblem) -> None:
    if problem.inputs != ("x", "t"):
        raise DataError(f"solve_time_marching needs an (x, t) problem, got inputs {problem.inputs}"
                        " (use solve_steady for steady problems)")
    if problem.initial is None:
        raise DataError(f"problem {problem.name!r} has no initial condition")
    if "x" not in problem.periodic:
        raise DataError(f"problem {problem.name!r} does not declare x periodic in its registry")
    a, b = problem.bounds["x"]
    xs = torch.linspace(a, b, 33, dtype=torch.float64)
    jets = derivatives_1d(problem.initial, xs, int(problem.orders.get("x", 2)))
    for order, jet in enumerate(jets):
        bad = ~torch.isfinite(jet)
        if bool(bad.any()):
            x_bad = float(xs[int(torch.nonzero(bad)[0])])
            what = "value" if order == 0 else f"x-derivative of order {order}"
            raise DataError(f"the initial condition of problem {problem.name!r} is not finite "
                            f"at x = {x_bad!r} ({what})")


def solve_time_marching(
    problem: PDEProblem,
    net: NetSpec | None = None,
    train: TrainConfig | None = None,
    observations: Observations | None = None,
    *,
    resume: str | os.PathLike | None = None,
    max_steps: int | None = None,
    parallel: Parallel | None = None,
    reference: Reference | None = None,
) -> TimeMarchingSolution:
    """Train a periodic PINN on ``problem`` window by window.

    Parameters
    ----------
    problem : PDEProblem
        An ``(x, t)`` problem with x periodic (e.g. :func:`~tiedsci.pinn.problem.allen_cahn`).
    net : NetSpec, optional
    train : TrainConfig, optional
        ``n_windows``, step counts, grids, ``budget_s``, ``dtype``, ``device``, ``seed``,
        ``threads``, ``checkpoint`` (the stem of the checkpoint bundle
        ``<stem>.json/.npz/.pt``, see :mod:`tiedsci.pinn.checkpoint`) ...
    observations : Observations, optional
        Data for inverse problems (free registry coefficients are learned).
    resume : path, optional
        Checkpoint written by an earlier call with the same problem and specs; training
        continues exactly where it stopped.
    max_steps : int, optional
        Stop after this many optimiser steps in this call (the checkpoint is written first; the
        returned solution has ``completed=False``). For time-sliced jobs and for testing resume.
    parallel : Parallel, optional
        Train as one rank of a data-parallel job (use :func:`tiedsci.pinn.ddp.solve_ddp`).
    reference : Reference, optional
        Check the error against it while training (once every window has started: the last
        window of the first sweep, then every sweep), record it in the history
        (:func:`tiedsci.pinn.budget.time_to_decades` reads it) and stop at
        ``train.target_error``.

    Returns
    -------
    TimeMarchingSolution
        On Ctrl-C (``KeyboardInterrupt``) after a checkpoint was written (or when resuming),
        the solution at the last checkpoint, with ``interrupted=True``; resuming from that
        checkpoint finishes the run exactly. Before any checkpoint (and in data-parallel runs)
        the interrupt propagates.
    """
    cfg = train or TrainConfig()
    written: list[Path] = []
    wall0 = time.perf_counter()
    with torch_threads(cfg.threads):
        try:
            return _solve_time_marching(problem, net, cfg, observations, resume, max_steps,
                                        parallel, written, reference)
        except KeyboardInterrupt:
            source = written[-1] if written else resume
            if source is None or parallel is not None:
                raise
            return _at_checkpoint(problem, net, cfg, observations, source, wall0)


def _at_checkpoint(problem: PDEProblem, net: NetSpec | None, cfg: TrainConfig,
                   observations: Observations | None, source: str | os.PathLike,
                   wall0: float) -> TimeMarchingSolution:
    """The solution in the state of checkpoint ``source`` (a run with no step left)."""
    replay = replace(cfg, adam_steps=0, lbfgs_steps=0, checkpoint=None, progress=False,
                     budget_s=None, checkpoint_every=0)
    sol = _solve_time_marching(problem, net, replay, observations, source, None)
    ck = read_checkpoint(source)
    return replace(sol, train=cfg, completed=False, interrupted=True,
                   wall_s=time.perf_counter() - wall0,
                   stopped_at={"window": ck.window, "sweep": ck.sweep,
                               "in_window": ck.inner is not None})


def build_windows(problem: PDEProblem, layout: Layout, net: NetSpec, cfg: TrainConfig,
                  dev: torch.device, dtype: torch.dtype) -> list[Window]:
    """The untrained windows of a run (``cfg.n_windows`` equal slices of the time interval)."""
    t_lo, t_hi = problem.bounds["t"]
    edges = np.linspace(t_lo, t_hi, cfg.n_windows + 1)
    windows: list[Window] = []
    for w in range(cfg.n_windows):
        fld, bnet = build_field(problem, layout, net, float(edges[w]), float(edges[w + 1]),
                                cfg.seed * 7919 + 3)
        windows.append(Window(float(edges[w]), float(edges[w + 1]), fld.to(dev, dtype),
                              subtract=(net.ic == "subtract" or w > 0),
                              boundary_net=None if bnet is None else bnet.to(dev, dtype)))
    return windows


def _solve_time_marching(
    problem: PDEProblem,
    net: NetSpec | None,
    train: TrainConfig,
    observations: Observations | None,
    resume: str | os.PathLike | None,
    max_steps: int | None,
    parallel: Parallel | None = None,
    written: list[Path] | None = None,
    reference: Reference | None = None,
) -> TimeMarchingSolution:
    net = net or NetSpec()
    cfg = train or TrainConfig()
    _check_problem(problem)
    dev = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype)
    layout = problem.registry.compile()
    a, b = problem.bounds["x"]
    x_order = int(problem.orders.get("x", 2))
    theta = nn.Parameter(torch.as_tensor(layout.theta0, dtype=dtype, device=dev))
    trainable = [theta] if layout.n_free else []

    obs = None
    if observations is not None:
        obs = {k: torch.as_tensor(getattr(observations, k), dtype=dtype, device=dev)
               for k in "xtu"}
        if not trainable:
            raise DataError("observations were given but the registry has no free coefficient")

    windows = build_windows(problem, layout, net, cfg, dev, dtype)
    history: list[dict[str, Any]] = []
    ckpt_path = Path(cfg.checkpoint) if cfg.checkpoint else None
    start_w, start_sweep, inner = 0, 0, None
    stopped_at = None
    if resume is not None:
        ck = _read_checkpoint(resume, windows, theta, dev)
        start_w, start_sweep, inner, history = ck.window, ck.sweep, ck.inner, ck.history
    allowance = [int(max_steps)] if max_steps is not None else None

    def checkpoint(w: int, sweep: int, state: dict[str, Any] | None) -> None:
        if ckpt_path is not None:
            write_checkpoint(ckpt_path, windows, theta, w, sweep, state, history)
            if written is not None:
                written.append(ckpt_path)

    budget = cfg.budget_s
    ends = _unit_ends(cfg)
    progress = progress_bar(ends[-1][-1], problem.name, enabled=bool(cfg.progress),
                            unit="step" if cfg.budget_s is None else "s")
    if start_w or start_sweep:  # resumed: the windows already done count as done
        progress.advance_to(ends[start_sweep][start_w - 1] if start_w else
                            ends[start_sweep - 1][-1])
    wall0 = time.perf_counter()
    completed = True
    monitor = _monitor(problem, net, cfg, windows, layout, theta, dev, reference, wall0)
    try:
        for sweep in range(start_sweep, cfg.n_sweeps):
            for w in range(start_w if sweep == start_sweep else 0, cfg.n_windows):
                win = windows[w]
                if sweep == 0 and w > 0 and inner is None:  # warm start
                    win.field.load_state_dict(windows[w - 1].field.state_dict())
                    if win.boundary_net is not None:
                        win.boundary_net.load_state_dict(windows[w - 1].boundary_net.state_dict())
                share = _sweep_share(cfg, sweep)
                win_budget = None if budget is None else budget * share / cfg.n_windows
                if sweep == 0:
                    limits = Limits(
                        cfg.adam_steps, cfg.lbfgs_steps,
                        None if win_budget is None else win_budget * cfg.adam_fraction,
                        None if win_budget is None else win_budget * (1 - cfg.adam_fraction))
                else:
                    limits = Limits(0, cfg.lbfgs_steps, None, win_budget)
                gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7 * w + 13 * sweep)
                loss_fn, sample = _window_objective(problem, layout, net, cfg, windows, w, theta,
                                                    obs, dev, dtype, x_order, (a, b))
                params = list(win.field.parameters()) + trainable
                if win.boundary_net is not None:
                    params += list(win.boundary_net.parameters())

                def save(state: dict[str, Any], w: int = w, sweep: int = sweep) -> None:
                    checkpoint(w, sweep, state)

                stopped_at = {"window": w, "sweep": sweep, "in_window": True}
                state = optimize(params, loss_fn, sample, cfg, gen, limits, history,
                                 tag={"window": w, "sweep": sweep}, resume=inner, save=save,
                                 step_allowance=allowance,
                                 progress=_WindowBar(progress, ends, sweep, w, cfg),
                                 parallel=parallel,
                                 monitor=monitor if w == cfg.n_windows - 1 or sweep else None)
                inner = None
                progress.advance_to(ends[sweep][w])  # a window that stopped early is done
                nxt = (w + 1, sweep) if w + 1 < cfg.n_windows else (0, sweep + 1)
                checkpoint(nxt[0], nxt[1], None)
                if state.get("target_met"):
                    progress.advance_to(ends[-1][-1])  # the run is done: the bar ends at 100 %
                    break
            else:
                continue
            break  # the target error is met
        stopped_at = None
    except Interrupted:
        completed = False
    finally:
        progress.close()
    return TimeMarchingSolution(
        problem=problem, net=net, train=cfg, windows=windows, layout=layout,
        theta=theta.detach().cpu().double().numpy(), history=history,
        wall_s=time.perf_counter() - wall0, device=str(dev), completed=completed,
        stopped_at=stopped_at,
    )


def _sweep_share(cfg: TrainConfig, sweep: int) -> float:
    """Fraction of the time budget given to ``sweep`` (the first gets 70 % when there are more)."""
    first = 1.0 if cfg.n_sweeps == 1 else 0.7
    return first if sweep == 0 else (1 - first) / (cfg.n_sweeps - 1)


def _unit_ends(cfg: TrainConfig) -> list[list[float]]:
    """``ends[sweep][window]``: the progress bar's position at the end of that window of that
    sweep. With a time budget the bar counts seconds of the budget (each window's share);
    without, optimizer steps (sweep 0: Adam + L-BFGS steps, later sweeps: L-BFGS only)."""
    ends, n = [], 0.0
    for sweep in range(cfg.n_sweeps):
        share = _sweep_share(cfg, sweep)
        row = []
        for _ in range(cfg.n_windows):
            if cfg.budget_s is not None:
                n += cfg.budget_s * share / cfg.n_windows
            else:
                n += cfg.lbfgs_steps + (cfg.adam_steps if sweep == 0 else 0)
            row.append(n)
        ends.append(row)
    return ends


class _WindowBar:
    """The progress bar as one window's optimizer sees it: step updates (or, with a time
    budget, the time spent) move it within the window's share, never past its end."""

    def __init__(self, bar: ProgressBar, ends: list[list[float]], sweep: int, w: int,
                 cfg: TrainConfig) -> None:
        flat = [e for row in ends for e in row]
        i = sweep * cfg.n_windows + w
        self.bar, self.start, self.end = bar, (flat[i - 1] if i else 0.0), flat[i]
        self.timed = cfg.budget_s is not None
        self.t0 = time.perf_counter()
        bar.advance_to(self.start)

    def update(self, k: float = 1) -> None:
        pos = (self.start + time.perf_counter() - self.t0) if self.timed else self.bar.n + k
        self.bar.advance_to(min(pos, self.end))

    def set_postfix(self, **values: Any) -> None:
        self.bar.set_postfix(**values)


def _monitor(problem: PDEProblem, net: NetSpec, cfg: TrainConfig, windows: list[Window],
             layout: Layout, theta: torch.Tensor, dev: torch.device,
             reference: Reference | None, wall0: float) -> Any:
    """The error monitor of a run with a reference (None without one)."""
    if reference is None:
        return None
    from tiedsci.pinn.budget import reference_monitor

    def predict(x: np.ndarray, t: np.ndarray) -> np.ndarray:
        sol = TimeMarchingSolution(problem, net, cfg, windows, layout,
                                   theta.detach().cpu().double().numpy(), device=str(dev))
        return sol.predict(x, t)

    return reference_monitor(predict, reference, clock0=wall0)


def _read_checkpoint(path: str | os.PathLike, windows: list[Window], theta: torch.Tensor,
                     dev: torch.device) -> CheckpointState:
    """Load a checkpoint into ``windows`` and ``theta``; check it belongs to this run.

    Returns the :class:`~tiedsci.pinn.checkpoint.CheckpointState` (the loop state's batch on
    ``dev``). Raises ``FileNotFoundError`` for a missing file and
    :class:`~tiedsci.errors.CheckpointError` (naming the file) for one that is truncated,
    corrupt, or written by a run with other windows, network or coefficients. Nothing in the
    files is executed: JSON, npz without pickles, weights read with ``weights_only=True``.
    """
    ck = read_checkpoint(path, map_location=dev)
    where = repr(str(ck.path))
    if len(ck.windows) != len(windows):
        raise CheckpointError(f"checkpoint {where} holds {len(ck.windows)} windows, this run "
                              f"has n_windows={len(windows)}")
    if tuple(ck.theta.shape) != tuple(theta.shape):
        raise CheckpointError(f"checkpoint {where} holds {ck.theta.numel()} free registry "
                              f"values, this problem has {theta.numel()} free coefficients")
    try:
        load_window_states(windows, ck.windows)
    except (RuntimeError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CheckpointError(f"the network in checkpoint {where} does not match this NetSpec "
                              f"(another architecture or boundary treatment): "
                              f"{str(exc).splitlines()[0][:200]}") from None
    with torch.no_grad():
        theta.copy_(ck.theta)
    if ck.inner is not None:
        ck.inner["batch"] = map_tensors(ck.inner.get("batch"), lambda t: t.to(dev))
    return ck


def _window_objective(problem: PDEProblem, layout: Layout, spec: NetSpec, cfg: TrainConfig,
                      windows: list[Window], w: int, theta: torch.Tensor,
                      obs: dict[str, torch.Tensor] | None, dev: torch.device,
                      dtype: torch.dtype, x_order: int, box: tuple[float, float]) -> tuple:
    """Loss function and sampler of window ``w`` (the previous windows are frozen)."""
    win = windows[w]
    a, b = box
    t0 = win.t_start if win.subtract else None
    subtract_first = windows[0].subtract
    done = windows[:w]
    boundary = spec.boundary
    need_ic = (w == 0 and not win.subtract)
    obs_rows = None
    if obs is not None:
        lo_ok = obs["t"] >= win.t_start if w > 0 else obs["t"] >= -math.inf
        mask = lo_ok & (obs["t"] <= win.t_end)
        obs_rows = torch.nonzero(mask).reshape(-1)
        if obs_rows.numel() == 0:
            obs_rows = None
    xb = torch.tensor([a, b], dtype=dtype, device=dev)
    cb = _state_jets(problem, done, xb, 1, subtract_first) if boundary != "periodic" else None
    obs_c = None
    if obs_rows is not None:
        obs_c = _state_jets(problem, done, obs["x"][obs_rows], 0, subtract_first)[0]

    def sample(gen: torch.Generator, phase: str) -> dict[str, torch.Tensor]:
        nx, nt = (cfg.n_x, cfg.n_t) if phase == "adam" else (cfg.n_x_lbfgs, cfg.n_t_lbfgs)
        x = stratified(gen, nx, a, b, dtype, dev)
        t = stratified(gen, nt, win.t_start, win.t_end, dtype, dev)
        batch = {"x": x, "t": t, "c": torch.stack(_state_jets(problem, done, x, x_order,
                                                              subtract_first))}
        if need_ic:
            batch["u0"] = problem.initial(x)
        return batch

    def loss_fn(batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor],
                                                             dict[str, float]]:
        values = layout.unpack(theta)
        p = problem.coefficient_values(values)
        x, t, c = batch["x"], batch["t"], batch["c"]
        r = field_residual(problem, win.field, x, t, t0, c, p)
        terms: dict[str, torch.Tensor] = {}
        info: dict[str, float] = {}
        r2 = (r**2).mean(dim=1)
        if cfg.causal_eps > 0:
            chunks = torch.stack([ch.mean() for ch in torch.tensor_split(r2, cfg.causal_chunks)])
            cum = torch.cat([chunks.new_zeros(1), torch.cumsum(chunks, 0)[:-1]])
            weights = torch.exp(-cfg.causal_eps * cum).detach()
            terms["residual"] = (weights * chunks).mean()
            info["causal_min_weight"] = float(weights.min())
        else:
            terms["residual"] = r2.mean()
        if boundary != "periodic":
            db = win.field.grid(xb, t, t0, 1)
            u_b = db["u"] + cb[0][None, :]
            ux_b = db["u_x"] + cb[1][None, :]
            if boundary == "penalty":
                pen = ((u_b[:, 0] - u_b[:, 1]) ** 2 + (ux_b[:, 0] - ux_b[:, 1]) ** 2).mean()
            else:
                h = win.boundary_net(t[:, None])
                pen = ((u_b - h[:, :1]) ** 2 + (ux_b - h[:, 1:]) ** 2).mean() * 2
            terms["boundary"] = cfg.boundary_weight * pen
        if need_ic:
            u_init = win.field.grid(x, t.new_tensor([win.t_start]), None, 0)["u"][0]
            terms["initial"] = ((u_init - batch["u0"]) ** 2).mean()
        if obs_rows is not None:
            dp = win.field.points(obs["x"][obs_rows], obs["t"][obs_rows], t0, 0)
            terms["data"] = ((dp["u"] + obs_c - obs["u"][obs_rows]) ** 2).mean()
        return terms, info

    return loss_fn, sample
