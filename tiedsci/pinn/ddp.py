"""Data-parallel PINN training with ``torch.distributed`` (one rank per process).

The existing solvers (:func:`~tiedsci.pinn.marching.solve_time_marching`,
:func:`~tiedsci.pinn.steady.solve_steady`) and their loop :func:`~tiedsci.pinn.train.optimize`
run unchanged on every rank; :class:`DDPHooks` (a :class:`~tiedsci.pinn.train.Parallel`) plugs
into them:

- every rank draws its **own** collocation points: its generator is seeded with
  :func:`rank_seed` (rank 0 keeps the solver's seed), so the global batch of one step is the
  union of the ranks' batches (``world_size`` times the per-rank ``n_x * n_t``);
- the loss is evaluated through ``DistributedDataParallel(..., static_graph=True)`` around a
  module that holds the trained parameters, so ``backward`` leaves on every rank the gradient
  averaged over the ranks, i.e. the gradient of the mean loss over the global batch.
  ``static_graph=True`` because a residual-only loss can leave parameters without gradient
  (e.g. the output bias of an MLP field with a hard initial condition when the residual holds
  only derivatives): plain DDP then fails with "Expected to have finished reduction in the prior
  iteration". ``find_unused_parameters=True`` copes with tiedsci's Taylor-mode derivatives
  (the bias is not in the loss graph) but not with residuals built by autograd double backward
  (the bias is in the graph and still gets no gradient), and it walks the graph every step;
  ``static_graph=True`` handles both;
- logged losses, the L-BFGS line-search values and the gradient norms of loss balancing are
  averaged over the ranks, wall-clock limits follow rank 0's clock, so every rank takes the same
  decisions and the parameters stay bitwise identical (checked at the end of :func:`solve_ddp`);
- only rank 0 writes checkpoints and outputs (checkpoint, model, prediction and metrics files
  atomically: written aside, then renamed); a checkpoint holds every rank's generator state
  and batch, so a job resumed with the same number of ranks repeats exactly the arithmetic of
  an uninterrupted one.

Entry points:

- ``torchrun --standalone --nproc_per_node=2 -m tiedsci.pinn.ddp run.toml --out DIR`` (the run
  file of ``tiedsci pinn solve``; see :func:`main`); ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR`` and ``MASTER_PORT`` come from the launcher (:func:`init_from_env`);
- :func:`solve_ddp` inside an initialised process group (your own launcher);
- :func:`spawn_solve`: ``n`` local ranks started with ``torch.multiprocessing.spawn`` (one box,
  tests), the solution returned to the caller;
- :class:`EmulatedRanks`: the same global batch in one process (a reference run).

Backends: gloo on CPU, nccl when the device is CUDA (each rank on ``cuda:LOCAL_RANK``).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import pickle
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from tiedsci.errors import DataError
from tiedsci.persist import read_bundle, write_bundle
from tiedsci.pinn.checkpoint import checkpoint_file, map_tensors
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.marching import Observations, TimeMarchingSolution
from tiedsci.pinn.problem import PDEProblem
from tiedsci.pinn.solvers import solve
from tiedsci.pinn.steady import SteadySolution
from tiedsci.pinn.train import LossFn, SampleFn, resolve_device

__all__ = ["DDPHooks", "EmulatedRanks", "DDPResult", "rank_seed", "init_from_env",
           "solve_ddp", "spawn_solve", "distributed_available", "main"]

Solution = TimeMarchingSolution | SteadySolution
_RUN_FORMAT = "tiedsci.pinn.spawn-run/1"
_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def distributed_available(backend: str = "gloo") -> bool:
    """True when ``torch.distributed`` and ``backend`` (``"gloo"`` / ``"nccl"``) are built in."""
    if not dist.is_available():
        return False
    return {"gloo": dist.is_gloo_available, "nccl": dist.is_nccl_available}[backend]()


def rank_seed(seed: int, rank: int) -> int:
    """Seed of rank ``rank``'s sampler derived from the solver's ``seed``.

    Rank 0 keeps ``seed`` (a one-rank job is the single-process run); other ranks get
    independent streams from ``numpy.random.SeedSequence(seed, spawn_key=(rank,))``.

    Returns
    -------
    int
        In ``[0, 2**63)``.
    """
    if rank == 0:
        return int(seed)
    words = np.random.SeedSequence(int(seed), spawn_key=(int(rank),)).generate_state(2)
    return (int(words[0]) << 31 ^ int(words[1])) & (2**63 - 1)


class _LossModule(nn.Module):
    """The trained parameters as one module whose ``forward`` is the solver's loss function."""

    def __init__(self, params: Sequence[nn.Parameter], loss_fn: LossFn) -> None:
        super().__init__()
        self.params = nn.ParameterList(params)  # the same Parameter objects, not copies
        self._loss_fn = loss_fn

    def forward(self, batch: Any) -> Any:
        return self._loss_fn(batch)


def _digest(obj: Any) -> str:
    """SHA-256 of the bytes of every tensor in ``obj`` (bitwise identity check)."""
    h = hashlib.sha256()

    def add(t: torch.Tensor) -> torch.Tensor:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
        return t

    map_tensors(obj, add)
    return h.hexdigest()[:16]


class DDPHooks:
    """:class:`~tiedsci.pinn.train.Parallel` hooks for an initialised ``torch.distributed`` group.

    Parameters
    ----------
    device_ids : list of int, optional
        ``[local_rank]`` when the parameters live on a CUDA device; None on CPU.
    check_sync : int
        Every this many loss evaluations, gather a digest of every rank's parameters and batch
        into :attr:`sync_log` and raise ``RuntimeError`` if the parameters differ (0: off; each
        check is one collective).

    Attributes
    ----------
    rank, world_size : int
    sync_log : list of dict
        ``{"call": n, "params": [digest per rank], "batch": [digest per rank]}``.
    """

    def __init__(self, device_ids: list[int] | None = None, check_sync: int = 0) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise RuntimeError("DDPHooks needs an initialised torch.distributed process group "
                               "(init_from_env(), torchrun, or spawn_solve)")
        if isinstance(check_sync, bool) or int(check_sync) != check_sync or check_sync < 0:
            raise DataError(f"check_sync must be an integer >= 0, got {check_sync!r}")
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.device_ids = device_ids
        self.check_sync = int(check_sync)
        self.sync_log: list[dict[str, Any]] = []
        self._calls = 0
        self._device = torch.device("cpu")
        self._comm = torch.device("cpu") if dist.get_backend() != "nccl" else torch.device(
            "cuda", torch.cuda.current_device())
        self.module: nn.parallel.DistributedDataParallel | None = None

    def setup(self, params: list[nn.Parameter], loss_fn: LossFn, sample: SampleFn,
              gen: torch.Generator) -> tuple[LossFn, SampleFn]:
        """Reseed ``gen`` for this rank and wrap the loss in ``DistributedDataParallel``."""
        gen.manual_seed(rank_seed(gen.initial_seed(), self.rank))
        self._device = params[0].device
        self.module = None  # drop the previous wrapper (and its gradient hooks) first
        ddp = nn.parallel.DistributedDataParallel(
            _LossModule(params, loss_fn), device_ids=self.device_ids, static_graph=True)
        self.module = ddp
        self._plain = loss_fn

        def loss(batch: Any) -> Any:
            self._calls += 1
            if self.check_sync and self._calls % self.check_sync == 0:
                self._check(params, batch)
            return ddp(batch)

        return loss, sample

    def plain_loss(self, batch: Any) -> Any:
        """This rank's loss outside ``DistributedDataParallel`` (local gradient only)."""
        return self._plain(batch)

    def _check(self, params: Sequence[torch.Tensor], batch: Any) -> None:
        mine = (_digest(list(params)), _digest(batch))
        every: list[Any] = [None] * self.world_size
        dist.all_gather_object(every, mine)
        entry = {"call": self._calls, "params": [e[0] for e in every],
                 "batch": [e[1] for e in every]}
        self.sync_log.append(entry)
        if len(set(entry["params"])) != 1:
            raise RuntimeError(f"data-parallel ranks out of sync at loss evaluation "
                               f"{self._calls}: parameter digests {entry['params']}")

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """Mean over the ranks (one all-reduce); the same bits on every rank."""
        v = value.detach().to(self._comm, copy=True)
        dist.all_reduce(v, op=dist.ReduceOp.SUM)
        return (v / self.world_size).to(value.device)

    def broadcast(self, value: float) -> float:
        """Rank 0's ``value``."""
        t = torch.tensor([float(value)], dtype=torch.float64, device=self._comm)
        dist.broadcast(t, src=0)
        return float(t.item())

    def snapshot(self, state: dict[str, Any]) -> dict[str, Any]:
        """Gather every rank's generator state and current batch into ``state["ranks"]``."""
        mine = {"gen": state["gen"], "batch": map_tensors(state["batch"], lambda t: t.cpu())}
        every: list[Any] = [None] * self.world_size
        dist.all_gather_object(every, mine)
        return {**state, "ranks": every, "world_size": self.world_size}

    def restore(self, state: dict[str, Any]) -> dict[str, Any]:
        """This rank's generator state and batch from a :meth:`snapshot`."""
        ranks = state.get("ranks")
        if ranks is None:
            raise DataError("resume: the checkpoint was written by a single-process run; a "
                            "data-parallel run can only resume from a data-parallel checkpoint")
        if len(ranks) != self.world_size:
            raise DataError(f"resume: the checkpoint was written by {len(ranks)} ranks, this job "
                            f"has world_size={self.world_size}; resume with the same number")
        own = ranks[self.rank]
        dev = self._device
        return {**state, "gen": own["gen"].cpu(),  # generators take CPU states
                "batch": map_tensors(own["batch"], lambda t: t.to(dev))}


class _Shards(list):
    """Batches of emulated ranks that cannot be concatenated (grids); the loss averages them."""


class EmulatedRanks:
    """``n_ranks`` data-parallel ranks emulated in one process (the single-process reference).

    Rank ``r`` draws its points from a generator seeded with :func:`rank_seed`, exactly as in a
    :class:`DDPHooks` job; the step's batch is the union of the ranks' batches: concatenated
    when the batches are point tensors (steady solver), otherwise (time-marching grids) the loss
    is the mean of the per-rank losses, which is the mean over the union for equal-size batches.

    Parameters
    ----------
    n_ranks : int
    """

    rank = 0

    def __init__(self, n_ranks: int) -> None:
        if isinstance(n_ranks, bool) or int(n_ranks) != n_ranks or n_ranks < 1:
            raise DataError(f"n_ranks must be an integer >= 1, got {n_ranks!r}")
        self.world_size = int(n_ranks)
        self._gens: list[torch.Generator] = []

    def setup(self, params: list[nn.Parameter], loss_fn: LossFn, sample: SampleFn,
              gen: torch.Generator) -> tuple[LossFn, SampleFn]:
        """Create the other ranks' generators and the union sampler / shard-averaging loss."""
        base = gen.initial_seed()
        self._gens = [gen] + [torch.Generator().manual_seed(rank_seed(base, r))
                              for r in range(1, self.world_size)]
        gens = self._gens

        def draw(_gen: torch.Generator, phase: str) -> Any:
            parts = [sample(g, phase) for g in gens]
            if all(isinstance(p, torch.Tensor) for p in parts):
                return torch.cat(parts)
            return _Shards(parts)

        def loss(batch: Any) -> Any:
            if not isinstance(batch, _Shards):
                return loss_fn(batch)
            outs = [loss_fn(b) for b in batch]
            n = len(outs)
            terms = {k: sum(o[0][k] for o in outs) / n for k in outs[0][0]}
            info = {k: sum(o[1][k] for o in outs) / n for k in outs[0][1]}
            return terms, info

        self._loss = loss
        return loss, draw

    def plain_loss(self, batch: Any) -> Any:
        """The global loss (nothing wraps it here)."""
        return self._loss(batch)

    def average(self, value: torch.Tensor) -> torch.Tensor:
        """Identity: the loss is already the global one."""
        return value

    def broadcast(self, value: float) -> float:
        """Identity (one clock)."""
        return value

    def snapshot(self, state: dict[str, Any]) -> dict[str, Any]:
        """Add the other emulated ranks' generator states."""
        return {**state, "shard_gens": [g.get_state() for g in self._gens[1:]]}

    def restore(self, state: dict[str, Any]) -> dict[str, Any]:
        """Restore the other emulated ranks' generator states."""
        states = state.get("shard_gens")
        if states is None or len(states) != self.world_size - 1:
            raise DataError(f"resume: the checkpoint was not written by EmulatedRanks"
                            f"({self.world_size})")
        for g, s in zip(self._gens[1:], states):
            g.set_state(s)
        return state


# ------------------------------------------------------------------ process group

def _backend_for(device: torch.device, backend: str | None) -> str:
    name = backend or ("nccl" if device.type == "cuda" else "gloo")
    if name not in ("gloo", "nccl"):
        raise DataError(f"backend must be 'gloo' or 'nccl', got {name!r}")
    if not distributed_available(name):
        raise RuntimeError(f"torch.distributed backend {name!r} is not available in this torch "
                           "build")
    if name == "nccl" and device.type != "cuda":
        raise DataError("backend 'nccl' needs device='cuda'; use 'gloo' on CPU")
    return name


def _local_device(device: str, local_rank: int) -> torch.device:
    """``device`` for this rank: a bare ``"cuda"`` becomes ``cuda:<local_rank>``."""
    dev = resolve_device(device)  # the clear error when CUDA is absent
    if dev.type == "cuda":
        index = local_rank if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise DataError(f"LOCAL_RANK {local_rank} has no CUDA device (device_count="
                            f"{torch.cuda.device_count()}); start at most one rank per GPU")
        dev = torch.device("cuda", index)
    return dev


def init_from_env(device: str = "cpu", backend: str | None = None,
                  timeout_s: float | None = None) -> tuple[int, int, int]:
    """Initialise the default process group from the launcher's environment (torchrun).

    Parameters
    ----------
    device : str
        ``"cpu"`` (gloo) or ``"cuda"`` (nccl, this rank on ``cuda:LOCAL_RANK``).
    backend : {"gloo", "nccl"}, optional
        Overrides the choice above.
    timeout_s : float, optional
        Collective timeout in seconds (torch's default when None).

    Returns
    -------
    (rank, world_size, local_rank) : tuple of int

    Raises
    ------
    DataError
        A variable among ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
        ``MASTER_PORT`` is missing or not an integer.
    RuntimeError
        CUDA asked for and absent, or the backend is not built in.
    """
    missing = [k for k in _ENV if k not in os.environ]
    if missing:
        raise DataError(f"environment variable(s) {missing} not set: start the job with torchrun "
                        "(or set RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)")
    ints = {}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
        try:
            ints[k] = int(os.environ[k])
        except ValueError:
            raise DataError(f"environment variable {k}={os.environ[k]!r} is not an integer"
                            ) from None
    rank, world, local = ints["RANK"], ints["WORLD_SIZE"], ints["LOCAL_RANK"]
    if not 0 <= rank < world:
        raise DataError(f"need 0 <= RANK < WORLD_SIZE, got RANK={rank}, WORLD_SIZE={world}")
    dev = _local_device(device, local)
    name = _backend_for(dev, backend)
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), local
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    kw: dict[str, Any] = {}
    if timeout_s is not None:
        kw["timeout"] = datetime.timedelta(seconds=float(timeout_s))
    dist.init_process_group(name, init_method="env://", rank=rank, world_size=world, **kw)
    return rank, world, local


# ------------------------------------------------------------------ solving

def solve_ddp(problem: PDEProblem, net: NetSpec | None = None, train: TrainConfig | None = None,
              *, dirichlet: Mapping[str, tuple[float, float]] | None = None,
              observations: Observations | None = None,
              resume: str | os.PathLike | None = None, max_steps: int | None = None,
              hooks: DDPHooks | None = None, local_rank: int | None = None) -> Solution:
    """Train ``problem`` as this rank of an initialised process group (call on every rank).

    Parameters
    ----------
    problem : PDEProblem
        An ``(x, t)`` problem (time marching) or a steady two-input problem.
    net, train : NetSpec, TrainConfig, optional
        As for the single-process solvers; ``n_x`` / ``n_t`` are **per rank** (the global batch
        is ``world_size`` times larger). ``device="cuda"`` puts rank ``r`` on
        ``cuda:LOCAL_RANK``. Only rank 0 writes ``checkpoint`` and shows ``progress``.
    dirichlet : mapping, optional
        Steady problems: hard Dirichlet values (see :func:`~tiedsci.pinn.steady.solve_steady`).
    observations : Observations, optional
        Time marching, inverse problems: every rank holds all observations (not sharded).
    resume : path, optional
        Time marching: a checkpoint written by a data-parallel run with as many ranks.
    max_steps : int, optional
        Time marching: stop after this many optimiser steps (checkpoint written first).
    hooks : DDPHooks, optional
        Custom hooks (e.g. ``DDPHooks(check_sync=1)`` to log per-rank digests).
    local_rank : int, optional
        Defaults to ``LOCAL_RANK`` from the environment, else the global rank.

    Returns
    -------
    TimeMarchingSolution or SteadySolution
        Identical on every rank (verified bitwise at the end; ``RuntimeError`` otherwise).
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("solve_ddp needs an initialised torch.distributed process group: run "
                           "under torchrun and call init_from_env(), or use spawn_solve")
    cfg = train or TrainConfig()
    rank = dist.get_rank()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = _local_device(cfg.device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    cfg = replace(cfg, device=str(dev))
    if rank != 0:
        cfg = replace(cfg, checkpoint=None, progress=False)
    if hooks is None:
        hooks = DDPHooks(device_ids=[dev.index] if dev.type == "cuda" else None)
    sol = solve(problem, net, cfg, observations=observations, dirichlet=dirichlet,
                resume=resume, max_steps=max_steps, parallel=hooks)
    if isinstance(sol, TimeMarchingSolution):
        params: list[torch.Tensor] = [p for w in sol.windows for p in w.field.parameters()]
    else:
        params = list(sol.field.parameters())
    mine = _digest(params + [torch.as_tensor(sol.theta)])
    every: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(every, mine)
    if len(set(every)) != 1:
        raise RuntimeError(f"data-parallel ranks finished with different parameters: {every}")
    return sol


@dataclass
class DDPResult:
    """What :func:`spawn_solve` returns.

    Attributes
    ----------
    solution : TimeMarchingSolution or SteadySolution
        Rank 0's trained solution, rebuilt in the calling process.
    world_size : int
    backend : str
    wall_s : float
        Rank 0's training time (without process start-up).
    sync_log : list of dict
        :attr:`DDPHooks.sync_log` of rank 0 (empty unless ``check_sync``).
    """

    solution: Solution
    world_size: int
    backend: str
    wall_s: float
    sync_log: list[dict[str, Any]] = field(default_factory=list)


def _spawn_worker(rank: int, world: int, store: str, backend: str,
                  factory: Callable[[], PDEProblem], net: NetSpec | None, train: TrainConfig,
                  kwargs: dict[str, Any], check_sync: int, out: str, timeout_s: float) -> None:
    dev = _local_device(train.device, rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(backend, init_method=store, rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=timeout_s))
    try:
        hooks = DDPHooks(device_ids=[dev.index] if dev.type == "cuda" else None,
                         check_sync=check_sync)
        start = time.perf_counter()
        sol = solve_ddp(factory(), net, train, hooks=hooks, local_rank=rank, **kwargs)
        wall = time.perf_counter() - start
        if rank == 0:
            sol.save(Path(out) / "rank0")
            write_bundle(Path(out) / "run", _RUN_FORMAT,
                         {"run_wall_s": wall, "sync_log": hooks.sync_log})
    finally:
        dist.destroy_process_group()


def spawn_solve(nprocs: int, problem: Callable[[], PDEProblem], net: NetSpec | None = None,
                train: TrainConfig | None = None, *,
                dirichlet: Mapping[str, tuple[float, float]] | None = None,
                observations: Observations | None = None,
                resume: str | os.PathLike | None = None, max_steps: int | None = None,
                check_sync: int = 0, timeout_s: float = 600.0) -> DDPResult:
    """Train with ``nprocs`` local ranks started by ``torch.multiprocessing.spawn``.

    Parameters
    ----------
    nprocs : int
        Number of ranks (processes). On CPU give each one core: ``train.threads`` (default 1)
        is the torch thread count of every rank.
    problem : callable
        A picklable zero-argument factory returning the :class:`PDEProblem`, e.g.
        ``functools.partial(advection, speed=2.0)`` (a problem object holds local functions and
        cannot be sent to the new processes). Every rank calls it.
    net, train : NetSpec, TrainConfig, optional
        ``n_x`` / ``n_t`` per rank. ``device="cuda"`` needs ``nprocs`` GPUs (nccl).
    dirichlet, observations, resume, max_steps
        As for :func:`solve_ddp`.
    check_sync : int
        See :class:`DDPHooks`.
    timeout_s : float
        Collective timeout of the ranks, seconds.

    Returns
    -------
    DDPResult
    """
    if isinstance(nprocs, bool) or int(nprocs) != nprocs or nprocs < 1:
        raise DataError(f"nprocs must be an integer >= 1, got {nprocs!r}")
    if isinstance(problem, PDEProblem) or not callable(problem):
        raise DataError("problem must be a picklable factory returning a PDEProblem, e.g. "
                        "functools.partial(tiedsci.pinn.advection, speed=2.0)")
    try:
        pickle.dumps(problem)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
        raise DataError(f"problem factory {problem!r} cannot be pickled for the spawned ranks "
                        f"({exc}); use a module-level function or functools.partial") from None
    cfg = train or TrainConfig()
    dev = resolve_device(cfg.device)
    if dev.type == "cuda" and torch.cuda.device_count() < nprocs:
        raise DataError(f"nprocs={nprocs} CUDA ranks need as many GPUs; "
                        f"{torch.cuda.device_count()} present")
    backend = _backend_for(dev, None)
    kwargs = {"dirichlet": dirichlet, "observations": observations, "resume": resume,
              "max_steps": max_steps}
    import torch.multiprocessing as mp

    tmp = tempfile.mkdtemp(prefix="tiedsci-ddp-")
    try:
        store = "file://" + str(Path(tmp) / "store")
        mp.spawn(_spawn_worker, nprocs=int(nprocs), join=True,
                 args=(int(nprocs), store, backend, problem, net, cfg, kwargs, int(check_sync),
                       tmp, float(timeout_s)))
        from tiedsci.pinn.io import load

        sol = load(Path(tmp) / "rank0", problem(), device=cfg.device)
        run = read_bundle(Path(tmp) / "run", _RUN_FORMAT).meta
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    sol.train = cfg
    return DDPResult(sol, int(nprocs), backend, float(run["run_wall_s"]), list(run["sync_log"]))


# ------------------------------------------------------------------ torchrun entry point

def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m tiedsci.pinn.ddp RUN.toml --out DIR``: a PINN run file on every rank.

    The run file is the one of ``tiedsci pinn solve`` (read by :mod:`tiedsci.pinn.runfile`);
    ``[train] n_x`` / ``n_t`` are per rank. Rank 0 computes the reference, writes the checkpoint
    (``DIR/checkpoint.json`` with its ``.npz`` / ``.pt`` unless ``[train] checkpoint`` is set)
    and the outputs, and prints the metrics as JSON. ``--resume`` continues from that checkpoint
    (same number of ranks; the files must be readable by every rank).
    """
    parser = argparse.ArgumentParser(prog="python -m tiedsci.pinn.ddp",
                                     description=main.__doc__.splitlines()[0])
    parser.add_argument("runfile", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="output folder (rank 0 writes)")
    parser.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                        help="default: nccl for device cuda, gloo otherwise")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint of an earlier data-parallel run")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after this many optimiser steps (checkpoint written)")
    parser.add_argument("--check-sync", type=int, default=0,
                        help="verify identical parameters every N loss evaluations")
    args = parser.parse_args(argv)
    from tiedsci._files import atomic_write_bytes
    from tiedsci.pinn import runfile
    from tiedsci.pinn.outputs import write_outputs

    rf = runfile.load(args.runfile)
    prob, net, train = runfile._prepare(rf, args.out, None)
    ckpt = checkpoint_file(str(train.checkpoint))
    resume = ckpt if args.resume and ckpt.exists() else None
    rank, world, local = init_from_env(train.device, args.backend)
    try:
        if args.resume and resume is None and rank == 0:
            print(f"nothing to resume ({ckpt} does not exist): starting from the beginning",
                  file=sys.stderr)
        reference = runfile._reference(rf, prob) if rank == 0 else None
        dev = _local_device(train.device, local)
        hooks = DDPHooks(device_ids=[dev.index] if dev.type == "cuda" else None,
                         check_sync=args.check_sync)
        sol = solve_ddp(prob, net, train, resume=resume, max_steps=args.max_steps,
                        hooks=hooks, local_rank=local)
        if rank == 0:
            result = write_outputs(sol, reference, args.out, plots=rf.data["output"]["plots"])
            result.update(checkpoint_file=str(ckpt), problem=prob.name, world_size=world,
                          backend=dist.get_backend())
            text = json.dumps(result, indent=2)
            atomic_write_bytes(result["metrics_file"], text.encode("utf-8"))
            print(text)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through torchrun
    sys.exit(main())
