"""Array engines for the HMM numerics: the one seam between numpy and torch.

:func:`get_engine` is the only place that chooses an implementation. The inference and emission
code receive an engine object and call it (plus the Python operators ``@``, ``*``, ``/`` and
slicing, which numpy arrays and torch tensors share); they never branch on its name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from scipy.special import gammaln

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


@dataclass(frozen=True)
class NumpyEngine:
    """numpy arrays (float64 by default)."""

    dtype: Any = np.float64
    name: str = "numpy"

    @property
    def tiny(self) -> float:
        return float(np.finfo(self.dtype).tiny)

    def asarray(self, x: Any) -> np.ndarray:
        return np.asarray(x, dtype=self.dtype)

    def asindex(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.intp)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x)

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.empty(shape, dtype=self.dtype)

    def ones(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.ones(shape, dtype=self.dtype)

    def exp(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def log(self, x: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(x)

    def lgamma(self, x: np.ndarray) -> np.ndarray:
        return gammaln(x)

    def rowsum(self, x: np.ndarray) -> np.ndarray:
        return x.sum(axis=1)

    def rowmax(self, x: np.ndarray) -> np.ndarray:
        return x.max(axis=1)

    def max_argmax(self, x: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
        idx = x.argmax(axis=axis)
        return np.take_along_axis(x, np.expand_dims(idx, axis), axis).squeeze(axis), idx

    def argmax(self, x: np.ndarray, axis: int) -> np.ndarray:
        return x.argmax(axis=axis)

    def where(self, cond: np.ndarray, a: np.ndarray, b: Any) -> np.ndarray:
        return np.where(cond, a, b)

    def isfinite(self, x: np.ndarray) -> np.ndarray:
        return np.isfinite(x)

    def maximum(self, x: np.ndarray, value: float) -> np.ndarray:
        return np.maximum(x, value)

    def index_add(self, size: int, index: np.ndarray, values: np.ndarray) -> np.ndarray:
        if values.ndim == 1:
            return np.bincount(index, weights=values, minlength=size).astype(self.dtype)
        flat = values.reshape(values.shape[0], -1)
        out = np.stack([np.bincount(index, weights=flat[:, j], minlength=size)
                        for j in range(flat.shape[1])], axis=1).astype(self.dtype)
        return out.reshape((size,) + values.shape[1:])

    def take(self, x: np.ndarray, index: np.ndarray) -> np.ndarray:
        return x[index]


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
        return NumpyEngine() if dtype is None else NumpyEngine(dtype=np.dtype(dtype).type)
    if engine == "torch":
        from tiedsci.hmm.torch_engine import TorchEngine

        kwargs: dict[str, Any] = {}
        if device is not None:
            kwargs["device"] = device
        if dtype is not None:
            kwargs["dtype"] = dtype
        return TorchEngine(**kwargs)
    if hasattr(engine, "asarray") and hasattr(engine, "max_argmax"):
        return engine
    raise ValueError(f"unknown engine {engine!r}; use 'numpy', 'torch' or an engine instance")
