"""Joint inverse problems: coverage of the esds, pooling across experiments, periodicity."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.inverse import Experiment, load_inverse, solve_inverse
from tiedsci.pinn.marching import Observations

NU = 0.2
TINY_NET = NetSpec(width=10, depth=2, rank=4, n_harmonics=3, time_frequencies=1)
TINY = TrainConfig(adam_steps=150, lbfgs_steps=60, lbfgs_chunk=20, lr=1e-2, n_x=24, n_t=12,
                   n_x_lbfgs=32, n_t_lbfgs=16, dtype="float64")
MODES = ((1, 1.0), (2, 0.8), (3, 0.6))


def _sine(k: int, amp: float):
    def u0(v):
        return amp * (torch if isinstance(v, torch.Tensor) else np).sin(k * v)
    return u0


def _experiments(seed: int, modes=MODES, n_obs: int = 30, sigma: float = 0.03,
                 offsets: bool = True) -> list[Experiment]:
    """Heat-equation data ``A exp(-nu k^2 t) sin(k x) + offset + noise``, one mode each."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (k, amp) in enumerate(modes):
        x = rng.uniform(0, 2 * np.pi, n_obs)
        t = rng.uniform(0, 1, n_obs)
        off = 0.1 * (i + 1) if offsets else 0.0
        y = amp * np.exp(-NU * k * k * t) * np.sin(k * x) + off + sigma * rng.normal(size=n_obs)
        out.append(Experiment(f"e{k}", _sine(k, amp), Observations(x, t, y), sigma=sigma,
                              nuisance=("offset",) if offsets else ()))
    return out


def _fit(exps, seed=0, **train):
    return solve_inverse(P.heat(nu=0.15, trainable=True), exps, TINY_NET,
                         replace(TINY, seed=seed, **train), covariance_grid=(24, 12))


def test_known_coefficient_is_recovered_within_3_esd_on_10_seeds():
    z = []
    for seed in range(10):
        sol = _fit(_experiments(seed, modes=MODES[1:2], n_obs=25, sigma=0.05), seed,
                   adam_steps=80, lbfgs_steps=30, n_x=16, n_t=8)
        value, esd = sol.coefficients["nu"]
        assert 0 < esd < 0.05
        z.append((value - NU) / esd)
    z = np.asarray(z)
    print("z-scores", np.round(z, 2), "coverage(3 esd)", np.mean(np.abs(z) < 3))
    assert np.all(np.abs(z) < 3)
    assert 0.3 < np.std(z) < 2.0  # the esd is neither far too large nor far too small


def test_shared_coefficient_has_smaller_esd_than_any_single_experiment():
    exps = _experiments(7)
    joint = _fit(exps).coefficients["nu"][1]
    single = [_fit([e]).coefficients["nu"][1] for e in exps]
    assert joint < min(single)
    # independent information adds: 1/esd^2 of the joint fit is near the sum of the singles'
    assert 1 / joint**2 == pytest.approx(sum(1 / s**2 for s in single), rel=0.3)


def test_esd_matches_the_gauss_newton_esd_of_the_exact_solution():
    """Along the PDE, d u / d nu = -k^2 t u for one heat mode: the esd is known in closed form."""
    for (k, amp), e in zip(MODES, _experiments(7)):
        sol = _fit([e])
        nu = sol.coefficients["nu"][0]
        o = e.observations
        g = np.stack([-k * k * o.t * amp * np.exp(-nu * k * k * o.t) * np.sin(k * o.x),
                      np.ones_like(o.t)], 1) / e.sigma
        exact = math.sqrt(np.linalg.inv(g.T @ g)[0, 0])
        assert sol.coefficients["nu"][1] == pytest.approx(exact, rel=0.05)


def test_nuisance_is_local_and_exact_periodicity_holds(tmp_path):
    exps = _experiments(3, modes=MODES[:2])
    sol = _fit(exps)
    assert set(sol.layout.free_names) == {"heat.nu", "e1.offset", "e2.offset"}
    for e, off in ((0, 0.1), (1, 0.2)):
        name = sol.experiments[e].name + ".offset"
        assert abs(sol.values[name] - off) < 4 * sol.esd[name]
        t = np.linspace(0, 1, 7)
        u = sol.predict(e, np.array([0.0, 2 * math.pi]), t)
        np.testing.assert_allclose(u[:, 0], u[:, 1], atol=1e-12)
    assert "heat.nu" in sol.report()
    fit = sol.fitted(0)
    assert np.sqrt(np.mean((exps[0].observations.u - fit) ** 2)) == pytest.approx(sol.rms[0])
    assert len(sol.plot(tmp_path / "fit.png").axes) == 2 and (tmp_path / "fit.png").exists()
    sol.save(tmp_path / "inv")
    again = load_inverse(tmp_path / "inv", P.heat(nu=0.15, trainable=True), exps)
    x, t = np.linspace(0, 6, 9), np.linspace(0, 1, 5)
    np.testing.assert_array_equal(again.predict(1, x, t), sol.predict(1, x, t))
    assert again.coefficients == sol.coefficients
    with pytest.raises(DataError, match="experiments"):
        load_inverse(tmp_path / "inv", P.heat(nu=0.15, trainable=True), exps[:1])


def test_errors_are_named():
    exps = _experiments(0, modes=MODES[:1])
    with pytest.raises(DataError, match="distinct"):
        solve_inverse(P.heat(trainable=True), exps * 2, TINY_NET, TINY)
    with pytest.raises(DataError, match="nuisance"):
        Experiment("a", _sine(1, 1.0), exps[0].observations, nuisance=("bias",))
    with pytest.raises(DataError, match="free"):
        solve_inverse(P.heat(), [Experiment("a", _sine(1, 1.0), exps[0].observations)],
                      TINY_NET, TINY)


def test_gain_and_offset_of_the_sensor_are_recovered():
    rng = np.random.default_rng(11)
    x, t = rng.uniform(0, 2 * np.pi, 40), rng.uniform(0, 1, 40)
    y = 1.3 * 0.8 * np.exp(-4 * NU * t) * np.sin(2 * x) - 0.1 + 0.02 * rng.normal(size=40)
    exp = Experiment("cam", _sine(2, 0.8), Observations(x, t, y), sigma=0.02,
                     nuisance=("gain", "offset"))
    sol = _fit([exp])
    for name, truth in (("cam.gain", 1.3), ("cam.offset", -0.1), ("heat.nu", NU)):
        assert abs(sol.values[name] - truth) < 4 * sol.esd[name], name
