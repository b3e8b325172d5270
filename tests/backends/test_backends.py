"""The backend seam: selection, inference and op parity between numpy and torch."""

import numpy as np
import pytest
import torch

from tiedsci.backends import NumpyBackend, backend_of, get_backend, namespace_of


def test_selection_and_inference():
    assert isinstance(get_backend(), NumpyBackend)
    tb = get_backend("torch", dtype="float32")
    assert tb.dtype == torch.float32 and tb.device.type == "cpu"
    assert backend_of(np.zeros(2)).name == "numpy"
    b = backend_of(torch.zeros(2, dtype=torch.float32))
    assert b.name == "torch" and b.dtype == torch.float32
    assert get_backend(tb) is tb
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        get_backend("jax")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message when CUDA is absent")
def test_cuda_requested_without_cuda_is_a_clear_error():
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        get_backend("torch", device="cuda")


def test_ops_agree_between_backends():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 3))
    idx = np.array([0, 2, 2, 1, 0])
    nb, tb = get_backend("numpy"), get_backend("torch")
    xt = tb.asarray(x)
    pairs = [
        (nb.index_add(3, idx, x), tb.index_add(3, idx, xt)),
        (nb.take(x, [4, 0]), tb.take(xt, [4, 0])),
        (nb.softmax(x, axis=1), tb.softmax(xt, axis=1)),
        (nb.logsumexp(x, axis=0), tb.logsumexp(xt, axis=0)),
        (nb.sigmoid(x), tb.sigmoid(xt)),
        (nb.concat([x, x], axis=1), tb.concat([xt, xt], axis=1)),
    ]
    for a, b in pairs:
        np.testing.assert_allclose(tb.to_numpy(b), a, rtol=1e-12, atol=1e-14)
    # index_add really sums duplicates (a tie sums)
    np.testing.assert_allclose(nb.index_add(3, idx, x)[0], x[0] + x[4])


def test_namespace_of_numpy_and_torch():
    assert namespace_of(np.zeros(3)).module is np
    assert namespace_of(1.5).module is np
    assert namespace_of(torch.zeros(3)).module is torch
    assert namespace_of(torch.nn.Parameter(torch.zeros(2))).module is torch


def _every_function(xp, x):
    """One expression over the namespace's functions, scalars mixed in as users write them."""
    return (xp.sin(x) + xp.cos(x) + xp.tan(x) + xp.arctan(x) + xp.arctan2(x, 2.0)
            + xp.pow(x, 2.5) + xp.power(x, 0.5) + xp.erf(x) + xp.erfc(x) + xp.tanh(x)
            + xp.where(x > 1.0, x, 0.0) + xp.maximum(x, 1.0) + xp.minimum(x, 1.0)
            + xp.exp(-x) + xp.log(x) + xp.sqrt(x) * xp.pi + xp.abs(x - 1.0))


def test_math_namespace_same_values_and_torch_gradient():
    x = np.linspace(0.1, 2.0, 7)
    xt = torch.tensor(x, requires_grad=True)
    y_np = _every_function(namespace_of(x), x)
    y_t = _every_function(namespace_of(xt), xt)
    assert isinstance(y_np, np.ndarray) and isinstance(y_t, torch.Tensor)
    np.testing.assert_allclose(y_t.detach().numpy(), y_np, rtol=1e-13)
    y_t.sum().backward()
    h = 1e-6
    fd = (_every_function(namespace_of(x), x + h) - _every_function(namespace_of(x), x - h)) / (
        2 * h)
    np.testing.assert_allclose(xt.grad.numpy(), fd, rtol=1e-6)
