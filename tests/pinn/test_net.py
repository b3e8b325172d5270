"""Taylor-mode jets against reverse-mode autograd; seeded construction; fields."""

from __future__ import annotations

import math

import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.errors import DataError
from tiedsci.pinn.autodiff import partial
from tiedsci.pinn.features import FourierFeatures, PeriodicFeatures
from tiedsci.pinn.net import MLP, FieldNet, MLPField, SeparableField


@pytest.mark.parametrize("activation", ["tanh", "sin", "gelu"])
@pytest.mark.parametrize("wf", [False, True])
def test_mlp_jets_match_autograd_up_to_fourth_order(activation, wf):
    feats = PeriodicFeatures(2, {0: 2.0}, n_harmonics=3,
                             others={1: FourierFeatures(0, 1, [math.pi])})
    net = FieldNet(feats, MLP(feats.n_out, 1, width=12, depth=3, activation=activation,
                              weight_factorization=wf, seed=3)).double()
    x = torch.rand(7, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    for axis in (0, 1):
        jet = net.jet(x, axis, 4)
        xr = x.clone().requires_grad_(True)
        u = net(xr)[:, 0]
        for m in range(5):
            assert_allclose(jet[m][:, 0].detach(), partial(u, xr, axis, m).detach(),
                            rtol=1e-9, atol=1e-9)


def test_same_seed_same_weights_and_different_seed_differs():
    a, b, c = MLP(3, 2, seed=5), MLP(3, 2, seed=5), MLP(3, 2, seed=6)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters()))


def test_separable_and_mlp_fields_grid_matches_points():
    xf = PeriodicFeatures(1, {0: 2.0}, n_harmonics=2)
    tf = PeriodicFeatures(1, {0: 5.0}, n_harmonics=1)  # any embedding works for t
    sep = SeparableField(FieldNet(xf, MLP(xf.n_out, 4, width=8, depth=1, seed=0)),
                         FieldNet(tf, MLP(tf.n_out, 4, width=8, depth=1, seed=1))).double()
    emb = PeriodicFeatures(2, {0: 2.0}, n_harmonics=2)
    mlp = MLPField(FieldNet(emb, MLP(emb.n_out, 1, width=8, depth=1, seed=0))).double()
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)
    t = torch.linspace(0, 1, 3, dtype=torch.float64)
    for fld in (sep, mlp):
        g = fld.grid(x, t, 0.2, 2)
        xx, tt = x[None, :].expand(3, 5).reshape(-1), t[:, None].expand(3, 5).reshape(-1)
        p = fld.points(xx, tt, 0.2, 2)
        for k in ("u", "u_x", "u_xx", "u_t"):
            assert_allclose(g[k].reshape(-1).detach(), p[k].detach(), atol=1e-12)
        # the increment vanishes at t0 and u_t is the derivative of u in t (finite differences)
        assert_allclose(fld.grid(x, torch.tensor([0.2], dtype=torch.float64), 0.2, 0)["u"]
                        .detach(), 0.0, atol=1e-14)
        h = 1e-6
        up = fld.grid(x, t + h, 0.2, 0)["u"]
        um = fld.grid(x, t - h, 0.2, 0)["u"]
        assert_allclose(g["u_t"].detach(), ((up - um) / (2 * h)).detach(), atol=1e-7)


def test_bad_network_arguments_raise():
    with pytest.raises(DataError, match="activation"):
        MLP(2, 1, activation="relu")
    with pytest.raises(DataError, match="width"):
        MLP(2, 1, width=0)
