"""Save, load, report and plot PINN solutions (the verbs every tiedsci result has).

A saved solution is a bundle of :mod:`tiedsci.persist` named by a stem ``path``:

* ``<path>.json`` — the problem's recipe (factory and arguments), the specs
  (:class:`~tiedsci.pinn.config.NetSpec`, :class:`~tiedsci.pinn.config.TrainConfig`), the free
  parameter names, the loss history, wall time, device and status;
* ``<path>.npz`` — the free registry vector ``theta``;
* ``<path>.pt`` — the network weights (state dicts), read with ``weights_only=True``.

:func:`load` rebuilds the networks with the solver's own builders and loads the weights, so a
loaded solution predicts bit for bit what the saved one predicted (same device and dtype).
Problems built from user functions (:func:`~tiedsci.pinn.problem.custom`, a user forcing, a
shared registry) cannot be written down: pass the same problem again as ``load(path, problem)``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tiedsci.errors import DataError
from tiedsci.persist import read_bundle, write_bundle
from tiedsci.pinn.checkpoint import load_window_states, window_states
from tiedsci.pinn.config import NetSpec, TrainConfig, from_dict
from tiedsci.pinn.marching import TimeMarchingSolution, build_windows
from tiedsci.pinn.problem import PDEProblem, rebuild
from tiedsci.pinn.spectral import SPECTRAL_FORMAT, SpectralSolution
from tiedsci.pinn.steady import SteadySolution, build_steady_field
from tiedsci.pinn.train import resolve_device, resolve_dtype

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from tiedsci.pinn.reference import Reference

__all__ = ["save", "load", "report", "plot", "SOLUTION_FORMAT", "Solution"]

SOLUTION_FORMAT = "tiedsci.pinn.solution/1"
Solution = TimeMarchingSolution | SteadySolution


def _kind(solution: Solution) -> str:
    return "time_marching" if isinstance(solution, TimeMarchingSolution) else "steady"


def save(solution: Solution, path: str | os.PathLike[str]) -> Path:
    """Write ``solution`` as the bundle ``path`` (atomically); returns its JSON file.

    Parameters
    ----------
    solution : TimeMarchingSolution or SteadySolution
    path : path-like
        Stem; ``model``, ``model.json`` and ``model.pt`` all write ``model.{json,npz,pt}``.
    """
    sol = solution
    meta: dict[str, Any] = {
        "kind": _kind(sol), "problem": sol.problem.name, "recipe": sol.problem.recipe,
        "net": asdict(sol.net), "train": asdict(sol.train),
        "free_names": list(sol.layout.free_names), "history": sol.history,
        "wall_s": float(sol.wall_s), "device": sol.device, "completed": bool(sol.completed),
    }
    if isinstance(sol, TimeMarchingSolution):
        meta.update(interrupted=sol.interrupted, stopped_at=sol.stopped_at)
        weights = {"windows": window_states(sol.windows)}
    else:
        meta["dirichlet"] = {k: list(v) for k, v in sol.dirichlet.items()}
        weights = {"field": sol.field.state_dict()}
    return write_bundle(path, SOLUTION_FORMAT, meta,
                        arrays={"theta": np.asarray(sol.theta, dtype=np.float64)},
                        weights=weights)


def load(path: str | os.PathLike[str], problem: PDEProblem | None = None, *,
         device: str | None = None) -> Solution | SpectralSolution:
    """Read a solution written by ``save``: :meth:`TimeMarchingSolution.save`,
    :meth:`SteadySolution.save` or :meth:`~tiedsci.pinn.spectral.SpectralSolution.save`.

    Parameters
    ----------
    path : path-like
        The bundle's stem or one of its files.
    problem : PDEProblem, optional
        The problem the solution was trained on; needed when it was built from user functions
        (then it has no recipe), otherwise rebuilt from the saved recipe.
    device : str, optional
        torch device of the networks; default: the saved one when available, else ``"cpu"``.

    Returns
    -------
    TimeMarchingSolution, SteadySolution or SpectralSolution
        Equal to the saved one: same weights, ``theta``, specs, history and status (or the
        same arrays).

    Raises
    ------
    FileNotFoundError, DataError
        Missing or damaged files (:func:`tiedsci.persist.read_bundle`), a problem that does not
        match the saved free parameters, or no problem for a solution without a recipe.
    """
    bundle = read_bundle(path, (SOLUTION_FORMAT, SPECTRAL_FORMAT))
    if bundle.format == SPECTRAL_FORMAT:
        return SpectralSolution(**{k: bundle.arrays[k] for k in ("x", "t", "u")})
    meta = bundle.meta
    where = repr(str(bundle.path.with_suffix(".json")))
    problem = _problem(meta, problem, where)
    net = from_dict(NetSpec, meta["net"])
    train = from_dict(TrainConfig, meta["train"])
    dev = resolve_device(device or _saved_device(meta["device"]))
    dtype = resolve_dtype(train.dtype)
    layout = problem.registry.compile()
    if list(layout.free_names) != list(meta["free_names"]):
        raise DataError(f"{where} was trained with the free parameters {meta['free_names']}; "
                        f"this problem has {list(layout.free_names)}")
    theta = np.asarray(bundle.arrays["theta"], dtype=np.float64)
    common = dict(problem=problem, net=net, train=train, layout=layout, theta=theta,
                  history=list(meta["history"]), wall_s=float(meta["wall_s"]), device=str(dev),
                  completed=bool(meta["completed"]))
    weights = bundle.weights or {}
    try:
        if meta["kind"] == "time_marching":
            windows = build_windows(problem, layout, net, train, dev, dtype)
            load_window_states(windows, weights["windows"])
            return TimeMarchingSolution(windows=windows, interrupted=bool(meta["interrupted"]),
                                        stopped_at=meta["stopped_at"], **common)
        dirichlet = {k: tuple(v) for k, v in meta["dirichlet"].items()}
        fnet, transforms = build_steady_field(problem, layout, net, train, dirichlet, dev, dtype)
        fnet.load_state_dict(weights["field"])
        return SteadySolution(field=fnet, transforms=transforms, **common)
    except (RuntimeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"the networks in {where} do not match its specs and problem "
                        f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None


def _saved_device(saved: str) -> str:
    import torch

    return saved if not saved.startswith("cuda") or torch.cuda.is_available() else "cpu"


def _problem(meta: dict[str, Any], problem: PDEProblem | None, where: str) -> PDEProblem:
    if problem is not None:
        if problem.name != meta["problem"]:
            raise DataError(f"{where} holds a solution of problem {meta['problem']!r}, not "
                            f"{problem.name!r}")
        return problem
    if meta.get("recipe") is None:
        raise DataError(f"{where} holds a solution of the user problem {meta['problem']!r}, "
                        "which cannot be rebuilt from the file: pass it, load(path, problem)")
    return rebuild(meta["recipe"])


# ---------------------------------------------------------------------- report

def report(solution: Solution) -> str:
    """A readable summary of a solution: problem, network, training, final loss, coefficients.

    Returns
    -------
    str
        Several lines, ending with the registry table of the final values
        (:meth:`~tiedsci.core.Layout.describe`).
    """
    sol = solution
    prob = sol.problem
    box = ", ".join(f"{a} in [{lo:g}, {hi:g}]{' periodic' if a in prob.periodic else ''}"
                    for a, (lo, hi) in prob.bounds.items())
    status = "completed" if sol.completed else "incomplete"
    if isinstance(sol, TimeMarchingSolution):
        if sol.interrupted:
            status = "interrupted (state of the last checkpoint)"
        if sol.stopped_at is not None:
            status += (f", stopped in window {sol.stopped_at['window']} sweep "
                       f"{sol.stopped_at['sweep']}")
        shape = f"{len(sol.windows)} time window(s), {sol.net.architecture} field"
        if sol.net.x_depth == 0:
            shape += f", Fourier-series x-factors ({sol.net.n_harmonics} harmonics)"
    else:
        shape = "one mlp field" + (f", Dirichlet {sol.dirichlet}" if sol.transforms else "")
    last = next((h for h in reversed(sol.history) if np.isfinite(h.get("loss", np.nan))), None)
    lines = [
        f"PINN solution of {prob.name!r} ({_kind(sol).replace('_', ' ')}): {box}",
        f"  network: {shape}, width {sol.net.width}, depth {sol.net.depth}, "
        f"boundary {sol.net.boundary!r}",
        f"  training: {len(sol.history)} loss records, {sol.wall_s:.1f} s on {sol.device}, "
        f"{status}",
        "  final loss: " + ("n/a" if last is None else
                            ", ".join(f"{k} {last[k]:.3e}" for k in
                                      ("loss", "residual", "boundary", "initial", "data", "gauge")
                                      if k in last)),
        "",
        sol.layout.describe(sol.layout.unpack(sol.theta)),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------- plot

def plot(solution: Solution, reference: Reference | None = None, *, what: str = "solution",
         path: str | os.PathLike[str] | None = None) -> Figure:
    """Figure of a solution: the field (``what="solution"``) or the loss (``what="loss"``).

    Parameters
    ----------
    solution : TimeMarchingSolution or SteadySolution
    reference : Reference, optional
        Time marching: the grid and reference field, drawn with the absolute error.
    what : {"solution", "loss"}
    path : path-like, optional
        Also save the figure there.

    Returns
    -------
    matplotlib.figure.Figure
        On an Agg canvas; no pyplot state is touched.
    """
    from tiedsci.pinn.plots import plot_loss, plot_solution

    if what == "loss":
        return plot_loss(solution.history, path, solution.problem.name)
    if what != "solution":
        raise DataError(f"what must be 'solution' or 'loss', got {what!r}")
    prob = solution.problem
    if isinstance(solution, SteadySolution):
        (a0, b0), (a1, b1) = (prob.bounds[k] for k in prob.inputs)
        x0, x1 = np.linspace(a0, b0, 128), np.linspace(a1, b1, 128)
        u = solution.predict(x0, x1)
        exact = None
        if prob.exact is not None:
            g0, g1 = np.meshgrid(x0, x1)
            exact = np.asarray(prob.exact({prob.inputs[0]: g0, prob.inputs[1]: g1}))
        return plot_solution(x0, x1, u, exact, path, prob.name, labels=prob.inputs)
    if reference is not None:
        x, t, u_ref = reference.x, reference.t, reference.u
    else:
        (a, b), (t0, t1) = prob.bounds["x"], prob.bounds["t"]
        x, t, u_ref = np.linspace(a, b, 256, endpoint=False), np.linspace(t0, t1, 101), None
    return plot_solution(x, t, solution.predict(x, t), u_ref, path, prob.name)

