"""Corner modes: the jumps of u0's derivatives across the periodic boundary get their own
learned time amplitude; the field's value stays exactly periodic."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci import pinn
from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.autodiff import derivatives_1d
from tiedsci.pinn.marching import corner_modes
from tiedsci.pinn.net import CornerModes

NET = pinn.NetSpec(width=10, depth=2, rank=4, n_harmonics=2, time_frequencies=2,
                   corner_orders=1)
CFG = pinn.TrainConfig(adam_steps=30, lbfgs_steps=6, lbfgs_chunk=3, n_x=32, n_t=8,
                       n_x_lbfgs=32, n_t_lbfgs=8, n_windows=2, seed=1, dtype="float64")


def _jumps(jets):
    return [float(j[0] - j[1]) for j in jets]


@pytest.mark.parametrize("a,b", [(-1.0, 1.0), (0.0, 2 * math.pi), (0.5, 1.7)])
@pytest.mark.parametrize("jumps", [[4.0], [0.3, -1.2, 2.5], [0.0, 5.0]])
def test_modes_are_periodic_in_value_and_jump_only_at_their_order(a, b, jumps):
    modes = CornerModes(a, b, jumps)
    x = torch.tensor([a, b, a + 0.37 * (b - a)], dtype=torch.float64)
    k = modes.jet(x, len(jumps) + 1)
    assert k[0].shape == (3, len(jumps))
    assert torch.equal(k[0][0], k[0][1])  # x = b is x = a: exactly the same value
    assert_allclose((k[len(jumps)][0] - k[len(jumps)][1]).numpy()[-1], jumps[-1], atol=1e-9)
    x_left = torch.tensor([a, b - 1e-13 * (b - a)], dtype=torch.float64)
    kl = modes.jet(x_left, len(jumps))
    for order in range(len(jumps) + 1):
        got = (kl[order][0] - kl[order][1]).numpy()
        want = [m if order == j + 1 else 0.0 for j, m in enumerate(jumps)]
        assert_allclose(got, want, atol=1e-9 * (1 + max(abs(v) for v in jumps)))


def test_mode_derivatives_match_finite_differences():
    modes = CornerModes(-1.0, 1.0, [4.0, -2.0, 7.0])
    x = torch.tensor([-0.6, 0.1, 0.8], dtype=torch.float64)
    h = 1e-6
    k, kp = modes.jet(x, 3), modes.jet(x + h, 3)
    for m in range(3):
        assert_allclose(((kp[m] - k[m]) / h).numpy(), k[m + 1].numpy(), rtol=1e-4, atol=1e-4)


def test_allen_cahn_initial_slope_jump_is_removed_by_its_mode():
    prob = P.allen_cahn()
    modes = corner_modes(prob, 2)
    x = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    u0 = derivatives_1d(prob.initial, x, 2)
    assert_allclose(modes.jumps.numpy(), [4.0, 0.0], atol=1e-9)  # slopes +2 / -2, curvature equal
    k = modes.jet(torch.tensor([-1.0, 1.0 - 1e-13], dtype=torch.float64), 2)
    rest = [u0[m] - k[m].sum(1) for m in range(3)]
    assert_allclose(_jumps(rest), 0.0, atol=1e-9)


def test_solution_keeps_exact_value_periodicity_and_the_initial_condition():
    prob = P.allen_cahn()
    sol = pinn.solve(prob, NET, CFG)
    t = np.linspace(0, 1, 11)
    assert sol.boundary_mismatch(t) <= 1e-12
    x = np.linspace(-1, 1, 41)
    assert_allclose(sol.predict(x, np.array([0.0]))[0], x**2 * np.cos(np.pi * x), atol=1e-12)
    # one-sided slopes at t = 0 keep u0's jump of 4 (the mode's amplitude starts at 0)
    with torch.no_grad():
        d = sol.windows[0].field.grid(torch.tensor([-1.0, 1.0 - 1e-13], dtype=torch.float64),
                                      torch.tensor([0.0, 0.5], dtype=torch.float64), 0.0, 1)
    u0x = derivatives_1d(prob.initial, torch.tensor([-1.0, 1.0], dtype=torch.float64), 1)[1]
    slope = d["u_x"] + u0x[None, :]
    assert float(slope[0, 0] - slope[0, 1]) == pytest.approx(4.0, abs=1e-9)
    assert float(slope[1, 0] - slope[1, 1]) != pytest.approx(4.0, abs=1e-6)  # it can fade


def test_corner_solution_round_trips(tmp_path):
    sol = pinn.solve(P.allen_cahn(), NET, replace(CFG, adam_steps=5, lbfgs_steps=0))
    again = pinn.load(sol.save(tmp_path / "m"))
    x, t = np.linspace(-1, 1, 17), np.linspace(0, 1, 5)
    assert again.net.corner_orders == 1
    assert np.array_equal(again.predict(x, t), sol.predict(x, t))


def test_corner_orders_are_checked():
    with pytest.raises(DataError, match="separable"):
        pinn.NetSpec(architecture="mlp", corner_orders=1)
    with pytest.raises(DataError, match="<= 3"):
        pinn.NetSpec(corner_orders=4)
    with pytest.raises(DataError, match="orders 1..3"):
        CornerModes(-1.0, 1.0, [])


def test_linearized_corner_amplitude_decays_at_the_boundary_rate(tmp_path):
    from tiedsci.pinn.marching import boundary_decay_rate

    prob = P.allen_cahn()
    assert boundary_decay_rate(prob, prob.registry.compile()) == pytest.approx(-10.0)
    assert boundary_decay_rate(P.heat(0.2), P.heat(0.2).registry.compile()) == 0.0
    net = replace(NET, corner_amplitude="linearized")
    sol = pinn.solve(prob, net, CFG)
    t = np.linspace(0, 1, 11)
    assert sol.boundary_mismatch(t) <= 1e-12
    x = np.linspace(-1, 1, 41)
    assert_allclose(sol.predict(x, np.array([0.0]))[0], x**2 * np.cos(np.pi * x), atol=1e-12)
    # the one-sided slope jump is 4 exp(-10 t), whatever the weights
    xb = torch.tensor([-1.0, 1.0 - 1e-13], dtype=torch.float64)
    for w in sol.windows:
        tt = torch.tensor([w.t_start, 0.5 * (w.t_start + w.t_end)], dtype=torch.float64)
        with torch.no_grad():
            c = sol.state_jets(xb, sol.windows.index(w), 1)[1]
            d = w.field.grid(xb, tt, w.t_start, 1)
        slope = d["u_x"] + c[None, :]
        jump = (slope[:, 0] - slope[:, 1]).numpy()
        assert_allclose(jump, 4.0 * np.exp(-10.0 * tt.numpy()), rtol=1e-9)
    assert sol.boundary_mismatch(np.array([0.3]), order=1) == pytest.approx(
        4.0 * np.exp(-3.0), rel=1e-9)
    again = pinn.load(sol.save(tmp_path / "lin"))
    assert np.array_equal(again.predict(x, t), sol.predict(x, t))
    with pytest.raises(DataError, match="corner_amplitude"):
        pinn.NetSpec(corner_amplitude="fixed")
