"""numpy implementation of the backend seam (the default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit, logsumexp, softmax

__all__ = ["NumpyBackend"]


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
