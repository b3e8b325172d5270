"""Exact periodicity of the embeddings, C^k continuity, and input validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose

from tiedsci.core import Registry
from tiedsci.errors import DataError
from tiedsci.pinn.domain import declare_periodic_axis, periodic_axes, periodic_features
from tiedsci.pinn.features import (
    CkPeriodicEncoder,
    CkPeriodicFeatures,
    FourierFeatures,
    PeriodicFeatures,
)
from tiedsci.pinn.net import MLP, FieldNet


def _net(features, seed, activation="tanh", wf=False):
    return FieldNet(features, MLP(features.n_out, 3, width=16, depth=2, activation=activation,
                                  weight_factorization=wf, seed=seed)).double()


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("activation", ["tanh", "sin", "gelu"])
def test_periodic_features_network_is_periodic_to_roundoff(seed, activation):
    period = 2.7
    feats = PeriodicFeatures(2, {0: period}, n_harmonics=6, lower={0: -0.4},
                             trainable_amplitudes=True,
                             others={1: FourierFeatures(0.0, 1.0, [math.pi, 2 * math.pi])},
                             decay=1.5 if seed == 1 else 0.0)
    net = _net(feats, seed, activation, wf=seed == 2)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # random weights everywhere, amplitudes included
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype))
    x = torch.rand(200, 2, generator=gen, dtype=torch.float64) * 4 - 2
    shifted = x.clone()
    shifted[:, 0] += period * torch.randint(-3, 4, (200,), generator=gen).double()
    with torch.no_grad():
        u, v = net(x), net(shifted)
    assert float((u - v).abs().max()) <= 1e-12 * max(1.0, float(u.abs().max()))
    # the two ends of the interval agree as well, derivatives included
    ends = torch.tensor([[-0.4, 0.3], [-0.4 + period, 0.3]], dtype=torch.float64)
    jet = net.jet(ends, 0, 3)
    for d in jet:
        d = d.detach()
        assert float((d[0] - d[1]).abs().max()) <= 1e-10 * max(1.0, float(d.abs().max()))


def test_harmonic_decay_scales_harmonic_k_by_k_to_the_minus_p_and_is_not_saved():
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    plain = PeriodicFeatures(1, {0: 2.0}, n_harmonics=5, lower={0: -1.0})
    decayed = PeriodicFeatures(1, {0: 2.0}, n_harmonics=5, lower={0: -1.0}, decay=2.0)
    k = torch.arange(1, 6, dtype=torch.float64).repeat(2)
    for a, b in zip(plain.jet(x[:, None], 0, 3), decayed.jet(x[:, None], 0, 3)):
        assert_allclose(b.numpy(), (a / k**2).numpy(), rtol=1e-14, atol=1e-14)
    assert set(decayed.state_dict()) == set(plain.state_dict())
    with pytest.raises(DataError, match="decay"):
        PeriodicFeatures(1, {0: 2.0}, decay=-1.0)


def test_two_periodic_axes():
    feats = PeriodicFeatures(2, {0: 1.0, 1: 3.0}, n_harmonics={0: 3, 1: 5})
    assert feats.n_out == 16
    net = _net(feats, 0)
    x = torch.rand(50, 2, dtype=torch.float64)
    assert_allclose(net(x).detach(), net(x + torch.tensor([2.0, -3.0])).detach(), atol=1e-12)


def test_non_periodic_input_is_not_periodic():
    feats = PeriodicFeatures(2, {0: 1.0}, n_harmonics=2)
    net = _net(feats, 0)
    x = torch.rand(20, 2, dtype=torch.float64)
    with torch.no_grad():
        assert float((net(x) - net(x + torch.tensor([0.0, 1.0]))).abs().max()) > 1e-3


@pytest.mark.parametrize("k", [0, 1, 2, 3])
def test_ck_features_periodic_and_exactly_k_times_continuous(k):
    enc = CkPeriodicEncoder(period=2.0, n_basis=8, k=k, lower=-1.0)
    # partition of unity of cardinal B-splines
    x = torch.linspace(-1, 1, 101, dtype=torch.float64)
    assert_allclose(enc(x).sum(1), 1.0, atol=1e-12)
    assert_allclose(enc(x + 2.0), enc(x), atol=1e-12)
    # derivatives across a knot (x = -1 + 2 * 3 / 8): order <= k continuous, order k + 1 jumps
    knot = -1 + 2 * 3 / 8
    h = 1e-9
    left = torch.tensor([knot - h], dtype=torch.float64)
    right = torch.tensor([knot + h], dtype=torch.float64)

    def jet(v):
        return enc.jet((v, torch.ones_like(v)) + (torch.zeros_like(v),) * k)

    jl, jr = jet(left), jet(right)
    for m in range(k + 1):
        assert float((jl[m] - jr[m]).abs().max()) < 1e-5 * (8 / 2) ** m
    jump = CkPeriodicEncoder(2.0, 8, k, -1.0).jet(
        (left, torch.ones_like(left)) + (torch.zeros_like(left),) * k)
    # the (k+1)-th derivative (= derivative of order degree) is piecewise constant and jumps
    deg_l = _degree_derivative(enc, left)
    deg_r = _degree_derivative(enc, right)
    assert float((deg_l - deg_r).abs().max()) > 0.1
    assert jump[0].shape == (1, 8)


def _degree_derivative(enc, x):
    order = enc.degree
    return enc.jet((x, torch.ones_like(x)) + (torch.zeros_like(x),) * (order - 1))[order]


def test_ck_features_jets_match_finite_differences():
    feats = CkPeriodicFeatures(1, {0: 2.0}, n_basis=10, k=3, lower={0: -1.0})
    x = torch.tensor([[0.123], [-0.77]], dtype=torch.float64)
    j = feats.jet(x, 0, 2)
    h = 1e-5
    fp, fm = feats(x + h), feats(x - h)
    assert_allclose(j[1], (fp - fm) / (2 * h), atol=1e-7)
    assert_allclose(j[2], (fp - 2 * feats(x) + fm) / h**2, atol=1e-3)


@pytest.mark.parametrize("period", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_period_raises(period):
    with pytest.raises(DataError, match="period"):
        PeriodicFeatures(1, {0: period})
    with pytest.raises(DataError, match="period"):
        CkPeriodicFeatures(1, {0: period})


def test_periodic_axis_not_an_input_raises():
    with pytest.raises(DataError, match="not an input"):
        PeriodicFeatures(2, {2: 1.0})
    with pytest.raises(DataError, match="not an input"):
        PeriodicFeatures(1, {-1: 1.0})
    reg = Registry()
    declare_periodic_axis(reg, "z", 0.0, 1.0)
    with pytest.raises(DataError, match="not an input"):
        periodic_axes(reg.compile(), ("x", "t"))


def test_registry_declared_axis_compiles_into_features():
    reg = Registry()
    declare_periodic_axis(reg, "x", -1.0, 1.0)
    layout = reg.compile()
    assert layout.n_free == 0  # the period is fixed: a structural tie, not a fit parameter
    assert periodic_axes(layout, ("x", "t")) == {0: (-1.0, 2.0)}
    feats = periodic_features(layout, ("x", "t"), n_harmonics=4)
    assert feats.periodic_axes == (0,)
    x = torch.tensor([[-1.0, 0.2], [1.0, 0.2]], dtype=torch.float64)
    f = feats(x)
    assert_allclose(f[0], f[1], atol=0)
    assert_allclose(f[0, :4], np.cos(0.0), atol=0)
    with pytest.raises(DataError, match="period"):
        declare_periodic_axis(Registry(), "x", 1.0, 1.0)


def test_fourier_features_need_increasing_range():
    with pytest.raises(DataError):
        FourierFeatures(1.0, 0.0, [1.0])
    with pytest.raises(DataError):
        FourierFeatures(0.0, 1.0, [float("nan")])
