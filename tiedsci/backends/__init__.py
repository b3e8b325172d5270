"""Backend seam: pick numpy or torch explicitly, or infer it from an array.

``get_backend("numpy")``, ``get_backend("torch", device="cuda", dtype="float32")`` or
``backend_of(array)``. torch is imported only when a torch backend is asked for.
"""

from __future__ import annotations

from typing import Any

from tiedsci.backends.base import Array, Backend
from tiedsci.backends.numpy_backend import NumpyBackend

__all__ = ["Array", "Backend", "NumpyBackend", "get_backend", "backend_of", "is_torch",
           "namespace_of"]


def is_torch(x: Any) -> bool:
    """True when ``x`` is a torch tensor (checked without importing torch)."""
    return type(x).__module__.startswith("torch")


def get_backend(spec: Any = None, *, device: Any = None, dtype: Any = None) -> Backend:
    """Return a backend object.

    Parameters
    ----------
    spec : None, "numpy", "torch" or a Backend instance
        ``None`` means numpy.
    device, dtype : optional
        For torch: device (``"cpu"``, ``"cuda"``, ...) and dtype (``"float32"``/``"float64"``
        or a torch dtype). For numpy only ``dtype`` is used.
    """
    if spec is None or spec == "numpy":
        return NumpyBackend() if dtype is None else NumpyBackend(dtype=dtype)
    if spec == "torch":
        from tiedsci.backends.torch_backend import TorchBackend

        kwargs: dict[str, Any] = {}
        if device is not None:
            kwargs["device"] = device
        if dtype is not None:
            kwargs["dtype"] = dtype
        return TorchBackend(**kwargs)
    if isinstance(spec, Backend):
        return spec
    raise ValueError(f"unknown backend {spec!r}; use 'numpy', 'torch' or a Backend instance")


def backend_of(x: Any) -> Backend:
    """The backend matching an array: torch (same device and dtype) for tensors, else numpy."""
    if is_torch(x):
        from tiedsci.backends.torch_backend import TorchBackend

        return TorchBackend(device=x.device, dtype=x.dtype)
    return NumpyBackend()


# ---------------------------------------------------------------- math namespace (numpy or torch)
def namespace_of(x: Any) -> Any:
    """The math namespace matching ``x``: torch operations for a tensor, else numpy ones.

    Write a model once with ``xp = namespace_of(x)`` and ``xp.sin``, ``xp.cos``, ``xp.arctan``,
    ``xp.arctan2``, ``xp.pow``, ``xp.erf``, ``xp.erfc``, ``xp.where``, ``xp.exp``, ``xp.log``,
    ``xp.sqrt``, ``xp.abs``, ``xp.tanh``, ``xp.maximum``, ``xp.minimum``, ``xp.clip``,
    ``xp.pi`` ...: the same names work on numpy arrays and on torch tensors (torch autodiff
    differentiates them). Names not listed in :class:`~tiedsci.backends.math.MathNamespace`
    are looked up in the array module itself (``numpy`` or ``torch``). torch is imported
    only when ``x`` is a tensor.
    """
    from tiedsci.backends.math import numpy_math, torch_math

    return torch_math() if is_torch(x) else numpy_math()
