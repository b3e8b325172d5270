"""numpy implementation of the backend seam (the default)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import expit, gammaln, logsumexp, softmax

__all__ = ["NumpyBackend", "NumpyEngine"]


@dataclass(frozen=True)
class NumpyBackend:
    """numpy arrays in float64 (or ``dtype``)."""

    dtype: Any = np.float64
    name: str = "numpy"

    def asarray(self, x: Any) -> np.ndarray:
        if type(x).__module__.startswith("torch"):
            x = x.detach().cpu().numpy()
        return np.asarray(x, dtype=self.dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        return np.array(x, dtype=self.dtype, copy=True)

    def zeros(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape, dtype=self.dtype)

    def exp(self, x: np.ndarray) -> np.ndarray:
        return np.exp(x)

    def log(self, x: np.ndarray) -> np.ndarray:
        return np.log(x)

    def sigmoid(self, x: np.ndarray) -> np.ndarray:
        return expit(x)

    def logsumexp(self, x: np.ndarray, axis: int) -> np.ndarray:
        return logsumexp(x, axis=axis)

    def softmax(self, x: np.ndarray, axis: int) -> np.ndarray:
        return softmax(x, axis=axis)

    def matmul(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a @ b

    def concat(self, xs: list[np.ndarray], axis: int = 0) -> np.ndarray:
        return np.concatenate(xs, axis=axis)

    def take(self, x: np.ndarray, index: Any) -> np.ndarray:
        return x[np.asarray(index, dtype=np.intp)]

    def index_add(self, out_size: int, index: Any, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values)
        out = np.zeros((out_size,) + values.shape[1:], dtype=np.result_type(values, self.dtype))
        np.add.at(out, np.asarray(index, dtype=np.intp), values)
        return out

    def sum(self, x: np.ndarray, axis: int | None = None) -> np.ndarray:
        return np.sum(x, axis=axis)

    def reshape(self, x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        return np.reshape(x, shape)


# ----------------------------------------------------------------------------- HMM engine
@dataclass(frozen=True)
class NumpyEngine:
    """The HMM numerics' operations on the arrays of a :class:`NumpyBackend` (float64 by
    default); see :class:`tiedsci.hmm.engines.Engine`."""

    backend: NumpyBackend = field(default_factory=NumpyBackend)
    name: str = "numpy"

    @property
    def dtype(self) -> Any:
        return self.backend.dtype

    @property
    def tiny(self) -> float:
        return float(np.finfo(self.dtype).tiny)

    def sequence_kernels(self) -> Any:
        """Compiled scaled forward / backward / xi-sum kernels for one float64 sequence
        (hmmlearn's ``_hmmc`` extension: ``forward_scaling``, ``backward_scaling``,
        ``compute_scaling_xi_sum``), or None when absent or not float64. A recursion over
        time in Python costs microseconds per step, whatever the model size; these do not."""
        if np.dtype(self.dtype) != np.float64:
            return None
        try:
            from hmmlearn import _hmmc
        except ImportError:  # pragma: no cover - hmmlearn is a dependency
            return None
        needed = ("forward_scaling", "backward_scaling", "compute_scaling_xi_sum")
        return _hmmc if all(hasattr(_hmmc, n) for n in needed) else None

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
