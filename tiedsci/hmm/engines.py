"""Array engines for the HMM numerics, implemented in :mod:`tiedsci.backends`.

The engines live with the backends (:class:`~tiedsci.backends.numpy_backend.NumpyEngine`,
:class:`~tiedsci.backends.torch_backend.TorchEngine`: the one module importing torch for arrays
and the one device check); this module states what the HMM numerics need (:class:`Engine`) and
:func:`get_engine` is the only place that chooses an implementation. The inference and emission
code receive an engine object and call it (plus the Python operators ``@``, ``*``, ``/`` and
slicing, which numpy arrays and torch tensors share); they never branch on its name.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from tiedsci.backends import get_backend
from tiedsci.backends.numpy_backend import NumpyEngine

__all__ = ["Engine", "NumpyEngine", "get_engine"]

Array = Any


class Engine(Protocol):
    """Operations the HMM numerics need beyond Python operators and slicing."""

    name: str
    tiny: float

    def asarray(self, x: Any) -> Array: ...

    def asindex(self, x: np.ndarray) -> Array: ...

    def to_numpy(self, x: Array) -> np.ndarray: ...

    def empty(self, shape: tuple[int, ...]) -> Array: ...

    def ones(self, shape: tuple[int, ...]) -> Array: ...

    def exp(self, x: Array) -> Array: ...

    def log(self, x: Array) -> Array: ...

    def lgamma(self, x: Array) -> Array: ...

    def rowsum(self, x: Array) -> Array: ...

    def rowmax(self, x: Array) -> Array: ...

    def max_argmax(self, x: Array, axis: int) -> tuple[Array, Array]: ...

    def argmax(self, x: Array, axis: int) -> Array: ...

    def where(self, cond: Array, a: Array, b: Any) -> Array: ...

    def isfinite(self, x: Array) -> Array: ...

    def maximum(self, x: Array, value: float) -> Array: ...

    def index_add(self, size: int, index: Array, values: Array) -> Array: ...

    def take(self, x: Array, index: Array) -> Array: ...


def get_engine(engine: Any = "numpy", *, device: Any = None, dtype: Any = None) -> Engine:
    """Return the array engine for the HMM numerics.

    Parameters
    ----------
    engine : "numpy", "torch" or an engine instance
        ``"numpy"`` runs on the CPU in float64 (or ``dtype``); ``"torch"`` runs batched on
        ``device`` (``"cpu"``, ``"cuda"``, ...) in float64 unless ``dtype="float32"``.
    device, dtype : optional
        Placement and precision; ``device`` only applies to torch.
    """
    if engine is None or engine == "numpy":
        if device not in (None, "cpu"):
            raise ValueError(f"engine='numpy' runs on the CPU only, got device={device!r}; "
                             "use engine='torch'")
        return NumpyEngine(get_backend("numpy", dtype=None if dtype is None
                                       else np.dtype(dtype).type))
    if engine == "torch":
        from tiedsci.backends.torch_backend import TorchEngine

        return TorchEngine(get_backend("torch", device=device, dtype=dtype))
    if hasattr(engine, "asarray") and hasattr(engine, "max_argmax"):
        return engine
    raise ValueError(f"unknown engine {engine!r}; use 'numpy', 'torch' or an engine instance")
