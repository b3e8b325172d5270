"""Time-marching solver: exactness of the boundary tie, determinism, exact resume, errors."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.marching import Observations, solve_time_marching

TINY_NET = NetSpec(width=12, depth=2, rank=4, n_harmonics=2, time_frequencies=2)
TINY = TrainConfig(adam_steps=20, lbfgs_steps=6, lbfgs_chunk=3, n_x=32, n_t=8, n_x_lbfgs=32,
                   n_t_lbfgs=8, resample_every=5, n_windows=2, seed=3)


def _params(sol):
    return [p.detach().clone() for w in sol.windows for p in w.field.parameters()]


def test_periodic_boundary_mismatch_is_roundoff_and_penalty_is_not():
    prob = P.advection(5.0)
    t = np.linspace(0, 1, 11)
    sol = solve_time_marching(prob, TINY_NET, TINY)
    assert sol.boundary_mismatch(t) <= 1e-6
    assert sol.boundary_mismatch(t, order=1) <= 1e-5
    pen = solve_time_marching(prob, replace(TINY_NET, boundary="penalty"), TINY)
    sub = solve_time_marching(prob, replace(TINY_NET, boundary="shared_subnet"), TINY)
    assert pen.boundary_mismatch(t) > 1e-4
    assert sub.boundary_mismatch(t) > 1e-4
    assert any(h.get("boundary") is not None for h in pen.history)


def test_prediction_starts_from_initial_condition_and_is_continuous_across_windows():
    prob = P.allen_cahn()
    sol = solve_time_marching(prob, TINY_NET, replace(TINY, dtype="float64"))
    x = np.linspace(-1, 1, 33)
    u = sol.predict(x, np.array([0.0, 0.5 - 1e-12, 0.5, 0.5 + 1e-12]))
    assert_allclose(u[0], x**2 * np.cos(np.pi * x), atol=1e-12)
    assert_allclose(u[1], u[2], atol=1e-9)
    assert_allclose(u[3], u[2], atol=1e-9)


def test_training_reduces_the_residual():
    prob = P.advection(2.0)
    sol = solve_time_marching(prob, TINY_NET, replace(TINY, n_windows=1, adam_steps=60))
    losses = [h["loss"] for h in sol.history if h["phase"] == "adam"]
    assert losses[-1] < 0.5 * losses[0]


def test_same_seed_is_deterministic_and_seed_matters():
    prob = P.heat(0.2)
    a = solve_time_marching(prob, TINY_NET, TINY)
    b = solve_time_marching(prob, TINY_NET, TINY)
    c = solve_time_marching(prob, TINY_NET, replace(TINY, seed=4))
    for pa, pb in zip(_params(a), _params(b)):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(_params(a), _params(c)))


@pytest.mark.parametrize("stop", [7, 23, 31])  # inside Adam, inside L-BFGS, second window
def test_checkpoint_resume_is_exact(tmp_path, stop):
    prob = P.burgers(0.05)
    net = replace(TINY_NET, boundary="shared_subnet")
    cfg = replace(TINY, balance=True, balance_every=4, causal_eps=0.5, causal_chunks=4,
                  checkpoint=str(tmp_path / "ck.pt"), checkpoint_every=3)
    full = solve_time_marching(prob, net, replace(cfg, checkpoint=None))
    part = solve_time_marching(prob, net, cfg, max_steps=stop)
    assert not part.completed
    resumed = solve_time_marching(prob, net, cfg, resume=tmp_path / "ck.pt")
    assert resumed.completed
    for pa, pb in zip(_params(full), _params(resumed)):
        assert torch.equal(pa, pb)
    for wa, wb in zip(full.windows, resumed.windows):
        for pa, pb in zip(wa.boundary_net.parameters(), wb.boundary_net.parameters()):
            assert torch.equal(pa, pb)


def test_inverse_problem_learns_a_registry_coefficient():
    nu_true = 0.5
    prob = P.heat(0.2, trainable=True)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 2 * np.pi, 200)
    t = rng.uniform(0, 1, 200)
    obs = Observations(x, t, np.exp(-nu_true * t) * np.sin(x))
    cfg = TrainConfig(adam_steps=150, lbfgs_steps=60, lbfgs_chunk=20, lr=1e-2, n_x=32, n_t=16,
                      n_x_lbfgs=64, n_t_lbfgs=16, dtype="float64", seed=0)
    sol = solve_time_marching(prob, NetSpec(width=16, depth=2, rank=4, n_harmonics=2), cfg,
                              observations=obs)
    nu = float(sol.coefficients["heat.nu"])
    assert abs(nu - nu_true) < 0.05, nu


def test_observations_need_a_free_coefficient_and_finite_values():
    with pytest.raises(DataError, match="free coefficient"):
        solve_time_marching(P.heat(0.2), TINY_NET, TINY,
                            observations=Observations([0.1], [0.1], [0.0]))
    with pytest.raises(DataError, match="not finite"):
        Observations([0.1, math.nan], [0.1, 0.2], [0.0, 0.0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is present")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        solve_time_marching(P.heat(0.2), TINY_NET, replace(TINY, device="cuda"))


def test_bad_specs_raise():
    with pytest.raises(DataError, match="boundary"):
        NetSpec(boundary="soft")
    with pytest.raises(DataError, match="dtype"):
        TrainConfig(dtype="float16")
    with pytest.raises(DataError, match="harmonic_decay"):
        NetSpec(harmonic_decay=-1.0)
    with pytest.raises(DataError, match="x_depth"):
        NetSpec(x_depth=-1)
    with pytest.raises(DataError, match="steady"):
        solve_time_marching(P.poisson_2d(), TINY_NET, TINY)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_run_matches_cpu_closely():  # pragma: no cover - GPU only
    prob = P.heat(0.2)
    cfg = replace(TINY, dtype="float64")
    cpu = solve_time_marching(prob, TINY_NET, cfg)
    gpu = solve_time_marching(prob, TINY_NET, replace(cfg, device="cuda"))
    x, t = np.linspace(0, 6, 9), np.linspace(0, 1, 5)
    assert_allclose(cpu.predict(x, t), gpu.predict(x, t), atol=1e-6)


@pytest.mark.parametrize("net", [
    replace(TINY_NET, architecture="mlp", activation="sin"),
    replace(TINY_NET, ck=2, n_basis=8, activation="gelu"),
    replace(TINY_NET, trainable_amplitudes=True, weight_factorization=True),
    replace(TINY_NET, x_depth=0, n_harmonics=5, harmonic_decay=2.0),
])
def test_other_architectures_and_embeddings_keep_the_exact_tie(net):
    prob = P.kdv()  # third x-derivative through every embedding
    sol = solve_time_marching(prob, net, replace(TINY, adam_steps=5, lbfgs_steps=3))
    t = np.linspace(0, 1, 7)
    assert sol.boundary_mismatch(t) <= 1e-6
    x = np.linspace(-1, 1, 9)
    assert_allclose(sol.predict(x, np.array([0.0]))[0], np.cos(np.pi * x), atol=1e-6)


def test_soft_initial_condition_adds_a_loss_term_and_progress_bar_runs():
    prob = P.heat(0.2)
    sol = solve_time_marching(prob, replace(TINY_NET, ic="soft"),
                              replace(TINY, progress=True, adam_steps=40))
    ic = [h["initial"] for h in sol.history if "initial" in h]
    assert ic and ic[-1] < ic[0]
    assert not sol.windows[0].subtract and sol.windows[1].subtract


def test_linear_x_factor_is_a_truncated_fourier_series_with_exact_derivatives():
    """x_depth=0: each x-factor is a trig polynomial of degree n_harmonics (nothing above it
    in its DFT) and its jets are its spectral derivatives."""
    from tiedsci.pinn.marching import build_field

    prob, k_max, n = P.kdv(), 5, 64
    spec = replace(TINY_NET, x_depth=0, n_harmonics=k_max)
    fld, _ = build_field(prob, prob.registry.compile(), spec, 0.0, 0.1, seed=1)
    x = torch.linspace(-1, 1, n + 1, dtype=torch.float64)[:-1]
    f = [j.detach().numpy() for j in fld.x_jet(x, 3)]
    spec_f = np.fft.rfft(f[0], axis=0)
    assert np.abs(spec_f[k_max + 1:]).max() < 1e-10 * np.abs(spec_f).max()
    assert np.abs(spec_f[1:k_max + 1]).max() > 1e-3
    ik = 1j * np.pi * np.arange(spec_f.shape[0])[:, None]  # period 2: wavenumbers pi k
    for m in (1, 2, 3):
        assert_allclose(f[m], np.fft.irfft(ik**m * spec_f, n=n, axis=0), atol=1e-8)
    with pytest.raises(DataError, match="x_depth"):
        NetSpec(architecture="mlp", x_depth=0)
