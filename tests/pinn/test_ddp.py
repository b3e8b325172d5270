"""Data-parallel PINN training (torch.distributed, gloo on CPU).

One 2-rank job is spawned for the whole module (starting two torch processes dominates the
cost); the other checks run in this process, with a one-rank gloo group where DDP is needed.

The 2-rank job must reproduce a single process trained on the same global batch, i.e. the
union of both ranks' points (:class:`EmulatedRanks`), but not bit for bit: DDP evaluates each
rank's loss and gradient on its half of the points and averages the two gradients by an
all-reduce, the single process differentiates the mean over the union (time-marching grids:
the mean of the two grid means); the roundings differ in the last bits and Adam / L-BFGS
carry them along. Measured on this job: losses and parameters agree to < 1e-14 relative in
float64 (to ~1e-7 over Adam and ~4e-6 after the L-BFGS sweeps in float32), hence float64 and
``rtol=1e-9``.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.checkpoint import read_checkpoint
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.ddp import (
    EmulatedRanks,
    distributed_available,
    init_from_env,
    rank_seed,
    solve_ddp,
    spawn_solve,
)
from tiedsci.pinn.marching import solve_time_marching
from tiedsci.pinn.steady import solve_steady

pytestmark = pytest.mark.skipif(not distributed_available("gloo"),
                                reason="torch.distributed with gloo is not available")

# Advection with an MLP field and the hard initial condition: the residual u_t + c u_x holds only
# derivatives, so the output bias gets no gradient (the case that needs static_graph=True).
NET = NetSpec(architecture="mlp", width=12, depth=2, n_harmonics=2, time_frequencies=1)
CFG = TrainConfig(adam_steps=30, lbfgs_steps=6, lbfgs_chunk=3, n_x=16, n_t=8, n_x_lbfgs=16,
                  n_t_lbfgs=8, resample_every=5, lr=1e-2, dtype="float64", seed=1)
SWEEPS = replace(CFG, n_sweeps=2)  # the 2-rank job: a second (L-BFGS) sweep re-wraps the net
ADVECTION = functools.partial(P.advection, speed=2.0)


def _flat(sol) -> np.ndarray:
    fields = [w.field for w in sol.windows] if hasattr(sol, "windows") else [sol.field]
    return torch.cat([p.detach().reshape(-1) for f in fields for p in f.parameters()]).numpy()


def _losses(sol) -> np.ndarray:
    return np.array([h["loss"] for h in sol.history])


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    ck = tmp_path_factory.mktemp("ddp") / "checkpoint.pt"
    return spawn_solve(2, ADVECTION, NET, replace(SWEEPS, checkpoint=str(ck), checkpoint_every=10),
                       check_sync=1), ck


def test_two_ranks_match_one_process_on_the_global_batch(two_ranks):
    res, _ = two_ranks
    assert res.world_size == 2 and res.backend == "gloo" and res.solution.completed
    union = solve_time_marching(ADVECTION(), NET, SWEEPS, parallel=EmulatedRanks(2))
    assert [(h["phase"], h["step"]) for h in res.solution.history] == \
        [(h["phase"], h["step"]) for h in union.history]
    assert_allclose(_losses(res.solution), _losses(union), rtol=1e-9)
    assert_allclose(_flat(res.solution), _flat(union), rtol=1e-9, atol=1e-12)
    # the comparison can tell the global batch from one rank's half of it
    half = solve_time_marching(ADVECTION(), NET, SWEEPS)
    n = CFG.adam_steps // 10 + 1  # the Adam records
    assert np.max(np.abs(_losses(half)[:n] / _losses(union)[:n] - 1)) > 1e-3


def test_ranks_draw_their_own_points_and_keep_identical_parameters(two_ranks):
    res, _ = two_ranks
    log = res.sync_log
    assert len(log) >= CFG.adam_steps + 2 * CFG.lbfgs_steps  # one check per loss evaluation
    assert all(len(e["params"]) == 2 and e["params"][0] == e["params"][1] for e in log)
    assert all(e["batch"][0] != e["batch"][1] for e in log)
    assert len({e["params"][0] for e in log}) > CFG.adam_steps  # the parameters did move
    assert len({e["batch"][0] for e in log}) > 1  # and the points were resampled


def test_rank0_writes_the_checkpoint_atomically(two_ranks):
    _, ck = two_ranks
    files = sorted(p.name for p in ck.parent.iterdir())
    assert files == ["checkpoint.json", "checkpoint.npz", "checkpoint.pt"]  # no temporary file
    data = read_checkpoint(ck)
    assert data.window == 0 and data.sweep == 2 and data.inner is None  # finished


def test_one_emulated_rank_is_the_plain_solver_bit_for_bit():
    prob = P.helmholtz_2d(kappa=1.0)
    cfg = replace(CFG, adam_steps=12, lbfgs_steps=3)
    a = solve_steady(prob, NET, cfg)
    b = solve_steady(prob, NET, cfg, parallel=EmulatedRanks(1))
    assert np.array_equal(_flat(a), _flat(b))
    assert np.array_equal(_losses(a), _losses(b))


def test_emulated_ranks_concatenate_point_batches():
    prob = P.helmholtz_2d(kappa=1.0)
    cfg = replace(CFG, adam_steps=1, lbfgs_steps=0)
    seen = []

    class Spy(EmulatedRanks):
        def setup(self, params, loss_fn, sample, gen):
            loss, draw = super().setup(params, loss_fn, sample, gen)

            def spy(g, phase):
                seen.append(draw(g, phase))
                return seen[-1]
            return loss, spy

    solve_steady(prob, NET, cfg, parallel=Spy(2))
    pts = seen[0]
    n = cfg.n_x * cfg.n_t
    assert pts.shape == (2 * n, 2)
    assert not torch.equal(pts[:n], pts[n:])  # two ranks, two different draws
    gen = torch.Generator().manual_seed(rank_seed(cfg.seed * 1_000_003, 1))
    x = (torch.arange(cfg.n_x, dtype=torch.float64)
         + torch.rand(cfg.n_x, generator=gen, dtype=torch.float64)) * (2 * np.pi / cfg.n_x)
    assert torch.allclose(pts[n:n + cfg.n_x, 0], x)  # rank 1's stratified x draw


def test_rank_seeds_keep_rank0_and_differ():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r) for r in range(1, 6)} | {rank_seed(8, 1)}
    assert len(seeds) == 6 and all(0 <= s < 2**63 for s in seeds)


@pytest.fixture
def one_rank_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_one_rank_ddp_is_the_plain_solver_and_resumes_exactly(one_rank_group, tmp_path):
    prob, net = P.burgers(0.05), replace(NET, boundary="penalty")
    cfg = replace(CFG, n_windows=2, adam_steps=10, lbfgs_steps=3)
    assert np.array_equal(_flat(solve_time_marching(prob, net, cfg)),
                          _flat(solve_ddp(prob, net, cfg)))
    steady = replace(CFG, adam_steps=5, lbfgs_steps=2)
    assert np.array_equal(_flat(solve_steady(P.helmholtz_2d(kappa=1.0), NET, steady)),
                          _flat(solve_ddp(P.helmholtz_2d(kappa=1.0), NET, steady)))
    # exact resume (loss balancing on: its gradient norms go through the rank average)
    cfg = replace(cfg, balance=True, balance_every=4, checkpoint=str(tmp_path / "ck.pt"),
                  checkpoint_every=3)
    full = solve_ddp(prob, net, replace(cfg, checkpoint=None))
    part = solve_ddp(prob, net, cfg, max_steps=16)
    assert not part.completed
    inner = read_checkpoint(tmp_path / "ck.pt").inner
    assert inner["world_size"] == 1 and len(inner["ranks"]) == 1
    resumed = solve_ddp(prob, net, cfg, resume=tmp_path / "ck.pt")
    assert resumed.completed
    assert np.array_equal(_flat(full), _flat(resumed))


def test_one_rank_ddp_refuses_a_single_process_checkpoint(one_rank_group, tmp_path):
    cfg = replace(CFG, adam_steps=10, lbfgs_steps=0, checkpoint=str(tmp_path / "ck.pt"),
                  checkpoint_every=2)
    solve_time_marching(ADVECTION(), NET, cfg, max_steps=5)
    with pytest.raises(DataError, match="single-process"):
        solve_ddp(ADVECTION(), NET, cfg, resume=tmp_path / "ck.pt")


def test_bad_inputs_raise_precise_errors(monkeypatch):
    with pytest.raises(DataError, match="nprocs"):
        spawn_solve(0, ADVECTION, NET, CFG)
    with pytest.raises(DataError, match="factory"):
        spawn_solve(2, ADVECTION(), NET, CFG)
    with pytest.raises(DataError, match="pickled"):
        spawn_solve(2, lambda: P.advection(2.0), NET, CFG)
    with pytest.raises(DataError, match="n_ranks"):
        EmulatedRanks(0)
    with pytest.raises(RuntimeError, match="process group"):
        solve_ddp(ADVECTION(), NET, CFG)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(DataError, match="RANK"):
        init_from_env()
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "x"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(DataError, match="MASTER_PORT"):
        init_from_env()
    monkeypatch.setenv("MASTER_PORT", "29500")
    monkeypatch.setenv("RANK", "3")
    with pytest.raises(DataError, match="RANK < WORLD_SIZE"):
        init_from_env()


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_without_cuda_is_the_clear_error(monkeypatch):
    env = {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": "29500"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        init_from_env(device="cuda")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        spawn_solve(2, ADVECTION, NET, replace(CFG, device="cuda"))


def test_the_test_problem_leaves_a_parameter_without_gradient(monkeypatch):
    """The premise of the 2-rank test: plain DDP would fail on it, static_graph=True does not."""
    import tiedsci.pinn.marching as marching

    unused = []

    def spy(params, loss_fn, sample, cfg, gen, *args, **kwargs):
        terms, _ = loss_fn(sample(gen, "adam"))
        grads = torch.autograd.grad(sum(terms.values()), params, allow_unused=True)
        unused.extend(tuple(p.shape) for p, g in zip(params, grads) if g is None)
        return {}

    monkeypatch.setattr(marching, "optimize", spy)
    solve_time_marching(ADVECTION(), NET, CFG)
    assert unused == [(1,)]  # the output bias
