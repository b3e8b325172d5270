"""The small set of array operations tiedsci's generic code needs (the backend seam)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

Array = Any  # numpy.ndarray or torch.Tensor

__all__ = ["Array", "Backend"]


@runtime_checkable
class Backend(Protocol):
    """Array operations shared by the numpy and torch backends.

    Generic code receives a backend object and calls it; it never branches on a backend's name.
    """

    name: str

    def asarray(self, x: Any) -> Array:
        """Convert to this backend's array type, dtype and device."""
        ...

    def to_numpy(self, x: Array) -> Any:
        """Return a numpy copy (detached, on the CPU)."""
        ...

    def zeros(self, shape: tuple[int, ...]) -> Array: ...

    def exp(self, x: Array) -> Array: ...

    def log(self, x: Array) -> Array: ...

    def sigmoid(self, x: Array) -> Array: ...

    def logsumexp(self, x: Array, axis: int) -> Array: ...

    def softmax(self, x: Array, axis: int) -> Array: ...

    def matmul(self, a: Array, b: Array) -> Array: ...

    def concat(self, xs: list[Array], axis: int = 0) -> Array: ...

    def take(self, x: Array, index: Any) -> Array:
        """``x[index]`` along the first axis with an integer index array."""
        ...

    def index_add(self, out_size: int, index: Any, values: Array) -> Array:
        """Sum ``values`` (shape (n, ...)) into a new (out_size, ...) array at ``index``."""
        ...

    def sum(self, x: Array, axis: int | None = None) -> Array: ...

    def reshape(self, x: Array, shape: tuple[int, ...]) -> Array: ...
