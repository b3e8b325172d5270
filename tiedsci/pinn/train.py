"""The optimisation loop: Adam (decaying learning rate, resampling, loss balancing) then L-BFGS.

:func:`optimize` is generic: it takes the parameters, a loss function returning named loss terms
for a batch of collocation points, and a sampler. The PDE solvers
(:mod:`tiedsci.pinn.marching`, :mod:`tiedsci.pinn.steady`) call it once per time window.

Determinism: every random draw uses the ``torch.Generator`` passed in; the weights are drawn from
seeded generators; two runs with the same seed and step counts give identical parameters
(wall-clock budgets make the step counts, hence the result, depend on the machine load).

Exact resume: the loop state (step counters, optimiser states, learning-rate schedule, current
batch, generator state, loss weights, history) is handed to ``save`` and can be passed back as
``resume``; the continued run then performs exactly the same arithmetic as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from tiedsci.backends.torch_backend import resolve_device
from tiedsci.pinn.config import TrainConfig

__all__ = ["optimize", "Limits", "LossOutput", "Interrupted", "resolve_device", "resolve_dtype",
           "torch_threads"]

LossOutput = tuple[dict[str, torch.Tensor], dict[str, float]]


class Interrupted(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raised inside :func:`optimize` when the caller's step allowance is used up."""


@dataclass(frozen=True)
class Limits:
    """Per-call caps: Adam steps, L-BFGS iterations and wall-clock seconds for each phase."""

    adam_steps: int
    lbfgs_steps: int
    adam_s: float | None = None
    lbfgs_s: float | None = None


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run a block with ``n`` torch intra-op threads, restoring the previous number after."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_dtype(dtype: str) -> torch.dtype:
    """``"float32"`` / ``"float64"`` -> torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[dtype]


def _grad_norm(loss: torch.Tensor, params: Sequence[torch.Tensor]) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    sq = sum(float((g.detach() ** 2).sum()) for g in grads if g is not None)
    return math.sqrt(sq)


def optimize(
    params: Sequence[torch.nn.Parameter],
    loss_fn: Callable[[Any], LossOutput],
    sample: Callable[[torch.Generator, str], Any],
    cfg: TrainConfig,
    gen: torch.Generator,
    limits: Limits,
    history: list[dict[str, Any]],
    *,
    tag: dict[str, Any] | None = None,
    resume: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    step_allowance: list[int] | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Minimise ``sum_k w_k L_k`` over ``params``: Adam, then L-BFGS (strong Wolfe).

    Parameters
    ----------
    params : sequence of Parameter
    loss_fn : callable
        ``loss_fn(batch) -> (terms, info)``: named scalar loss terms and float diagnostics.
    sample : callable
        ``sample(gen, phase) -> batch`` with ``phase`` ``"adam"`` or ``"lbfgs"``.
    cfg : TrainConfig
    gen : torch.Generator
        Source of every random draw of the sampler.
    limits : Limits
    history : list
        Receives ``{"phase", "step", "loss", "time", **terms, **info, **tag}`` records.
    resume : dict, optional
        A state given earlier to ``save``.
    save : callable, optional
        Called with the loop state every ``cfg.checkpoint_every`` Adam steps, after every
        L-BFGS call and at the end.
    step_allowance : list of one int, optional
        Remaining optimiser steps for this process; at zero the state is saved and
        :class:`Interrupted` is raised.
    progress : tqdm, optional

    Returns
    -------
    dict
        The final loop state (what ``save`` receives).
    """
    params = list(params)
    tag = dict(tag or {})
    adam = torch.optim.Adam(params, lr=cfg.lr)
    gamma = cfg.lr_decay ** (1.0 / cfg.decay_steps)
    sched = torch.optim.lr_scheduler.ExponentialLR(adam, gamma)
    lbfgs = torch.optim.LBFGS(params, lr=1.0, max_iter=cfg.lbfgs_chunk,
                              history_size=cfg.lbfgs_history, line_search_fn="strong_wolfe",
                              tolerance_grad=1e-12, tolerance_change=1e-16)
    state: dict[str, Any] = {"phase": "adam", "step": 0, "lbfgs_iter": 0, "lbfgs_calls": 0,
                             "weights": None, "batch": None}
    if resume is not None:
        state.update({k: resume[k] for k in ("phase", "step", "lbfgs_iter", "lbfgs_calls",
                                             "weights", "batch")})
        adam.load_state_dict(resume["adam"])
        sched.load_state_dict(resume["sched"])
        if resume.get("lbfgs") is not None:
            lbfgs.load_state_dict(resume["lbfgs"])
        gen.set_state(resume["gen"])

    def snapshot() -> dict[str, Any]:
        return {**state, "adam": adam.state_dict(), "sched": sched.state_dict(),
                "lbfgs": lbfgs.state_dict() if state["phase"] != "adam" else None,
                "gen": gen.get_state()}

    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        w = state["weights"] or {}
        return sum(w.get(k, 1.0) * v for k, v in terms.items())

    def spend(n: int) -> None:
        if step_allowance is None:
            return
        step_allowance[0] -= n
        if step_allowance[0] <= 0:
            if save is not None:
                save(snapshot())
            raise Interrupted

    # ---------------------------------------------------------------- Adam
    start = time.perf_counter()
    if state["phase"] == "adam":
        while state["step"] < limits.adam_steps:
            if limits.adam_s is not None and time.perf_counter() - start > limits.adam_s:
                break
            if state["batch"] is None or state["step"] % cfg.resample_every == 0:
                state["batch"] = sample(gen, "adam")
            terms, info = loss_fn(state["batch"])
            if cfg.balance and (state["weights"] is None
                                or state["step"] % cfg.balance_every == 0) and len(terms) > 1:
                norms = {k: _grad_norm(v, params) for k, v in terms.items()}
                s = sum(norms.values())
                new = {k: s / max(n, 1e-12) for k, n in norms.items()}
                old = state["weights"] or new
                state["weights"] = {k: 0.9 * old[k] + 0.1 * new[k] for k in new}
            loss = total(terms)
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
            sched.step()
            state["step"] += 1
            if state["step"] % 10 == 0 or state["step"] == 1:
                history.append({"phase": "adam", "step": state["step"], "loss": loss.item(),
                                "time": time.perf_counter() - start,
                                **{k: float(v.detach()) for k, v in terms.items()}, **info, **tag})
            if progress is not None:
                progress.update(1)
                if state["step"] % 50 == 0:
                    progress.set_postfix(loss=f"{loss.item():.3e}", **{k: str(v) for k, v in
                                                                        tag.items()})
            if cfg.checkpoint_every and save is not None and \
                    state["step"] % cfg.checkpoint_every == 0:
                save(snapshot())
            spend(1)
        state["phase"] = "lbfgs"
        state["batch"] = None

    # ---------------------------------------------------------------- L-BFGS
    start = time.perf_counter()
    if state["phase"] == "lbfgs":
        while state["lbfgs_iter"] < limits.lbfgs_steps:
            if limits.lbfgs_s is not None and time.perf_counter() - start > limits.lbfgs_s:
                break
            if state["batch"] is None or (cfg.lbfgs_resample_every and state["lbfgs_calls"]
                                          % cfg.lbfgs_resample_every == 0):
                state["batch"] = sample(gen, "lbfgs")
            batch = state["batch"]
            backup = [p.detach().clone() for p in params]

            def closure(batch: Any = batch) -> torch.Tensor:
                lbfgs.zero_grad(set_to_none=True)
                terms, _ = loss_fn(batch)
                loss = total(terms)
                loss.backward()
                return loss

            if limits.lbfgs_s is not None:  # size the call to the time left
                left = limits.lbfgs_s - (time.perf_counter() - start)
                per_iter = (time.perf_counter() - start) / max(state["lbfgs_iter"], 1)
                n_iter = cfg.lbfgs_chunk if state["lbfgs_iter"] else min(cfg.lbfgs_chunk, 3)
                if state["lbfgs_iter"]:
                    n_iter = int(min(cfg.lbfgs_chunk, max(1, left // max(per_iter, 1e-9))))
                lbfgs.param_groups[0]["max_iter"] = n_iter
                lbfgs.param_groups[0]["max_eval"] = n_iter * 5 // 4 + 1
            before = lbfgs.state[params[0]].get("n_iter", 0)
            loss = lbfgs.step(closure)
            done = lbfgs.state[params[0]].get("n_iter", 0) - before
            state["lbfgs_calls"] += 1
            bad = not all(torch.isfinite(p).all() for p in params) or not math.isfinite(
                float(loss.detach()))
            if bad:  # a failed line search: restore and stop this phase
                with torch.no_grad():
                    for p, b in zip(params, backup):
                        p.copy_(b)
                history.append({"phase": "lbfgs", "step": state["lbfgs_iter"],
                                "loss": float("nan"), "time": time.perf_counter() - start,
                                "note": "non-finite loss; parameters restored", **tag})
                break
            state["lbfgs_iter"] += max(int(done), 1)
            with torch.no_grad():
                terms, info = loss_fn(batch)
            history.append({"phase": "lbfgs", "step": state["lbfgs_iter"],
                            "loss": float(total(terms)), "time": time.perf_counter() - start,
                            **{k: float(v.detach()) for k, v in terms.items()}, **info, **tag})
            if progress is not None:
                progress.update(max(int(done), 1))
                progress.set_postfix(loss=f"{float(total(terms)):.3e}", **{k: str(v) for k, v in
                                                                            tag.items()})
            if save is not None and cfg.checkpoint_every:
                save(snapshot())
            if done == 0:
                break  # converged to the tolerance
            spend(max(int(done), 1))
        state["phase"] = "done"
    return snapshot()
