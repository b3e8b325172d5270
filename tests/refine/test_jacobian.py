"""Model Jacobians: pointwise reverse mode against forward mode (the layout's own
d values / d theta is tested in tests/core/test_layout_api.py)."""

import numpy as np
import pytest

from tiedsci.refine.jacobian import jacobian_pointwise, jacobian_torch

torch = pytest.importorskip("torch")


def test_pointwise_jacobian_equals_forward_mode():
    x = torch.linspace(-2, 2, 50, dtype=torch.float64)

    def model(v, xx):
        return v[0] * torch.exp(-((xx[:, None] - v[1:3]) ** 2)).sum(1) + v[3] * xx

    v = np.array([1.5, -0.3, 0.4, 0.2])
    a = jacobian_pointwise(model, v, x)
    b = jacobian_torch(lambda t: model(t, x), v)
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
