"""Layout Jacobian (coloured autodiff) against differences; pointwise against jacfwd."""

import numpy as np
import pytest

from tiedsci.core import Positive, Registry, Simplex
from tiedsci.refine.jacobian import (
    LayoutJacobian,
    flat_values,
    jacobian_pointwise,
    jacobian_torch,
)

torch = pytest.importorskip("torch")


def _registry():
    reg = Registry()
    reg.declare("a", 2.0, bounds=(1.0, 3.0))
    reg.declare("b", np.array([0.5, 1.5, 2.5]), bounds=Positive())
    reg.declare("p", np.array([0.2, 0.3, 0.5]), bounds=Simplex())
    for k in range(4):
        reg.declare(f"d{k}.s", 1.0 + k)
        reg.declare(f"d{k}.z", 0.1 * k)
    reg.tie("d0.s", "d1.s")
    reg.affine("d2.z", "d3.z", scale=2.0, offset=0.5)
    reg.declare("c", 0.0)
    reg.derive("c", lambda a, b: a * b[0] + b[2] ** 2, deps=("a", "b"))
    return reg


def test_layout_jacobian_matches_central_differences():
    layout = _registry().compile()
    rng = np.random.default_rng(0)
    theta = layout.theta0 + 0.1 * rng.standard_normal(layout.n_free)
    lj = LayoutJacobian.build(layout)
    assert lj.mode == "torch"
    # colouring: datasets' parameters share tangents; fewer colours than free parameters
    assert lj.n_colors < layout.n_free
    dv = lj(theta).toarray()
    ref = np.zeros_like(dv)
    for j in range(layout.n_free):
        h = 1e-6
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        ref[:, j] = (flat_values(layout, layout.unpack(tp))
                     - flat_values(layout, layout.unpack(tm))) / (2 * h)
    np.testing.assert_allclose(dv, ref, atol=1e-7)
    fd = LayoutJacobian(layout, lj.colors, lj.n_colors, lj.rows, lj.cols, "fd")
    np.testing.assert_allclose(fd(theta).toarray(), dv, atol=1e-7)


def test_pointwise_jacobian_equals_forward_mode():
    x = torch.linspace(-2, 2, 50, dtype=torch.float64)

    def model(v, xx):
        return v[0] * torch.exp(-((xx[:, None] - v[1:3]) ** 2)).sum(1) + v[3] * xx

    v = np.array([1.5, -0.3, 0.4, 0.2])
    a = jacobian_pointwise(model, v, x)
    b = jacobian_torch(lambda t: model(t, x), v)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
