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

Data parallelism: ``parallel`` (a :class:`Parallel`, e.g. :class:`tiedsci.pinn.ddp.DDPHooks`)
lets the same loop run as one rank of a torch.distributed job: it wraps the loss and the sampler
(each rank draws its own points; the gradients are averaged), averages the logged and L-BFGS
loss values over the ranks, makes rank 0's clock decide the wall-clock limits, and stores every
rank's generator state and batch in the loop state.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from tiedsci.backends.torch_backend import resolve_device
from tiedsci.errors import ModelError
from tiedsci.pinn.config import TrainConfig

__all__ = ["optimize", "Limits", "LossOutput", "Interrupted", "Parallel", "resolve_device",
           "resolve_dtype", "torch_threads"]

LossOutput = tuple[dict[str, torch.Tensor], dict[str, float]]
LossFn = Callable[[Any], LossOutput]
SampleFn = Callable[[torch.Generator, str], Any]


class Parallel(Protocol):
    """Hooks through which :func:`optimize` runs as one rank of a data-parallel job.

    Every method is called at the same point of the loop on every rank, so an implementation
    may use collectives in any of them. Implementations: :class:`tiedsci.pinn.ddp.DDPHooks`
    (torch.distributed) and :class:`tiedsci.pinn.ddp.EmulatedRanks` (one process).
    """

    def setup(self, params: list[torch.nn.Parameter], loss_fn: LossFn, sample: SampleFn,
              gen: torch.Generator) -> tuple[LossFn, SampleFn]:
        """Return the loss and sampler this rank uses (e.g. a DDP-wrapped loss, own seed)."""
        ...

    def plain_loss(self, batch: Any) -> LossOutput:
        """This rank's loss without the gradient-averaging wrapper (for gradient norms)."""
        ...

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """Mean of ``value`` (any shape) over the ranks, identical on every rank."""
        ...

    def broadcast(self, value: float) -> float:
        """Rank 0's ``value`` (wall-clock decisions must agree across ranks)."""
        ...

    def snapshot(self, state: dict[str, Any]) -> dict[str, Any]:
        """Add what the other ranks need to resume (their generator states and batches)."""
        ...

    def restore(self, state: dict[str, Any]) -> dict[str, Any]:
        """The inverse of :meth:`snapshot` on this rank (its own generator state and batch)."""
        ...


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


def _non_finite(lv: list[float], terms: dict[str, torch.Tensor], step: int,
                tag: dict[str, Any]) -> None:
    """Stop at a NaN/inf loss (it would turn every weight into NaN), naming the culprit."""
    bad = [k for k, v in zip(terms, lv[1:]) if not math.isfinite(v)] or ["total"]
    where = ", ".join(f"{k} {v}" for k, v in tag.items())
    raise ModelError(f"loss term(s) {bad} not finite at Adam step {step}"
                     f"{f' ({where})' if where else ''}: check the residual function, the "
                     "initial condition and the coefficients")


def _grad_norm(loss: torch.Tensor, params: Sequence[torch.Tensor],
               parallel: Parallel | None = None) -> float:
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    if parallel is not None:  # the norm of the rank-averaged (global) gradient
        flat = torch.cat([(torch.zeros_like(p) if g is None else g.detach()).reshape(-1)
                          for g, p in zip(grads, params)])
        return math.sqrt(float((parallel.average(flat) ** 2).sum()))
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
    parallel: Parallel | None = None,
    monitor: Callable[[], dict[str, float]] | None = None,
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
    parallel : Parallel, optional
        Run as one rank of a data-parallel job (see :mod:`tiedsci.pinn.ddp`).
    monitor : callable, optional
        ``monitor() -> {"error": e, ...}``, called every ``cfg.monitor_every`` Adam steps and
        after every L-BFGS call; the record goes to ``history`` (``phase="monitor"``) and the
        loop ends (``state["target_met"] = True``) once ``e <= cfg.target_error``.

    Returns
    -------
    dict
        The final loop state (what ``save`` receives).

    Plateau stops (``cfg.plateau_steps``) are tracked from the start of this call (a resumed
    run starts counting afresh).
    """
    params = list(params)
    tag = dict(tag or {})
    if parallel is not None:
        loss_fn, sample = parallel.setup(params, loss_fn, sample, gen)
        if resume is not None:
            resume = parallel.restore(resume)
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
        snap = {**state, "adam": adam.state_dict(), "sched": sched.state_dict(),
                "lbfgs": lbfgs.state_dict() if state["phase"] != "adam" else None,
                "gen": gen.get_state()}
        return snap if parallel is None else parallel.snapshot(snap)

    def over(limit: float | None, since: float) -> bool:
        if limit is None:
            return False
        late = time.perf_counter() - since > limit
        return late if parallel is None else bool(parallel.broadcast(float(late)))

    def values(loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> list[float]:
        """Loss and terms as floats (averaged over the ranks when data-parallel)."""
        v = torch.stack([loss.detach().reshape(())]
                        + [t.detach().reshape(()).to(loss.dtype) for t in terms.values()])
        return (v if parallel is None else parallel.average(v)).tolist()

    def total(terms: dict[str, torch.Tensor]) -> torch.Tensor:
        w = state["weights"] or {}
        return sum(w.get(k, 1.0) * v for k, v in terms.items())

    plateau = {"best": math.inf, "at": 0}

    def stalled(loss: float, at: int, patience: int) -> bool:
        """True when ``loss`` has not improved by ``plateau_rtol`` for ``patience`` units."""
        if loss < plateau["best"] * (1 - cfg.plateau_rtol):
            plateau["best"], plateau["at"] = loss, at
        return bool(cfg.plateau_steps) and at - plateau["at"] >= patience

    def target_met() -> bool:
        if monitor is None:
            return False
        record = {"phase": "monitor", "step": state["step"], "lbfgs_iter": state["lbfgs_iter"],
                  **monitor(), **tag}
        history.append(record)
        met = cfg.target_error is not None and record["error"] <= cfg.target_error
        state["target_met"] = met
        return met

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
            if over(limits.adam_s, start):
                break
            if state["batch"] is None or state["step"] % cfg.resample_every == 0:
                state["batch"] = sample(gen, "adam")
            terms, info = loss_fn(state["batch"])
            if cfg.balance and (state["weights"] is None
                                or state["step"] % cfg.balance_every == 0) and len(terms) > 1:
                if parallel is None:
                    norms = {k: _grad_norm(v, params) for k, v in terms.items()}
                else:  # a second backward through the DDP wrapper would upset its reducer
                    plain, _ = parallel.plain_loss(state["batch"])
                    norms = {k: _grad_norm(v, params, parallel) for k, v in plain.items()}
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
            stop = False
            if state["step"] % 10 == 0 or state["step"] == 1:
                lv = values(loss, terms)
                if not all(math.isfinite(v) for v in lv):
                    _non_finite(lv, terms, state["step"], tag)
                history.append({"phase": "adam", "step": state["step"], "loss": lv[0],
                                "time": time.perf_counter() - start,
                                **dict(zip(terms, lv[1:])), **info, **tag})
                stop = stalled(lv[0], state["step"], cfg.plateau_steps)
            if state["step"] % cfg.monitor_every == 0 and target_met():
                return snapshot()
            if progress is not None:
                progress.update(1)
                if state["step"] % 50 == 0:
                    progress.set_postfix(loss=f"{loss.item():.3e}", **{k: str(v) for k, v in
                                                                        tag.items()})
            if cfg.checkpoint_every and save is not None and \
                    state["step"] % cfg.checkpoint_every == 0:
                save(snapshot())
            spend(1)
            if stop:
                break
        state["phase"] = "lbfgs"
        state["batch"] = None
        plateau.update(best=math.inf, at=0)

    # ---------------------------------------------------------------- L-BFGS
    start = time.perf_counter()
    if state["phase"] == "lbfgs":
        while state["lbfgs_iter"] < limits.lbfgs_steps:
            if over(limits.lbfgs_s, start):
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
                # the line search must see the same (global) value on every rank
                return loss if parallel is None else parallel.average(loss.detach())

            if limits.lbfgs_s is not None:  # size the call to the time left
                left = limits.lbfgs_s - (time.perf_counter() - start)
                per_iter = (time.perf_counter() - start) / max(state["lbfgs_iter"], 1)
                n_iter = cfg.lbfgs_chunk if state["lbfgs_iter"] else min(cfg.lbfgs_chunk, 3)
                if state["lbfgs_iter"]:
                    n_iter = int(min(cfg.lbfgs_chunk, max(1, left // max(per_iter, 1e-9))))
                if parallel is not None:
                    n_iter = int(parallel.broadcast(float(n_iter)))
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
            lv = values(total(terms), terms)
            history.append({"phase": "lbfgs", "step": state["lbfgs_iter"],
                            "loss": lv[0], "time": time.perf_counter() - start,
                            **dict(zip(terms, lv[1:])), **info, **tag})
            if progress is not None:
                progress.update(max(int(done), 1))
                progress.set_postfix(loss=f"{lv[0]:.3e}", **{k: str(v) for k, v in tag.items()})
            if save is not None and cfg.checkpoint_every:
                save(snapshot())
            if done == 0:
                break  # converged to the tolerance
            spend(max(int(done), 1))
            if target_met() or stalled(lv[0], state["lbfgs_calls"],
                                       max(1, cfg.plateau_steps // cfg.lbfgs_chunk)):
                break
        state["phase"] = "done"
    return snapshot()
