"""torch implementation of the backend seam; the only backend module that imports torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

__all__ = ["TorchBackend", "TorchEngine", "resolve_device", "torch_dtype"]


def resolve_device(device: Any) -> torch.device:
    """Return a ``torch.device``; a clear error when CUDA is asked for and absent."""
    try:
        dev = torch.device(device if device is not None else "cpu")
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device={device!r} is not a torch device such as 'cpu' or "
                         f"'cuda:0' ({str(exc).splitlines()[0][:120]})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device={str(device)!r} was requested but CUDA is not available on this machine "
            "(torch.cuda.is_available() is False); use device='cpu'"
        )
    return dev


def torch_dtype(dtype: Any) -> torch.dtype:
    """A torch dtype from a torch dtype, its name (``"float32"``) or a numpy float type."""
    if isinstance(dtype, str):
        return getattr(torch, dtype)
    if isinstance(dtype, type) and issubclass(dtype, np.floating):
        return getattr(torch, np.dtype(dtype).name)
    return dtype


@dataclass(frozen=True)
class TorchBackend:
    """torch tensors on ``device`` with ``dtype`` (float64 by default)."""

    device: Any = "cpu"
    dtype: Any = torch.float64
    name: str = "torch"

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", resolve_device(self.device))
        object.__setattr__(self, "dtype", torch_dtype(self.dtype))

    def asarray(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(x), device=self.device, dtype=self.dtype)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy().copy()
        return np.array(x, copy=True)

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, device=self.device, dtype=self.dtype)

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)

    def log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    def sigmoid(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)

    def logsumexp(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.logsumexp(x, dim=axis)

    def softmax(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return torch.softmax(x, dim=axis)

    def matmul(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b

    def concat(self, xs: list[torch.Tensor], axis: int = 0) -> torch.Tensor:
        return torch.cat(xs, dim=axis)

    def take(self, x: torch.Tensor, index: Any) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=x.device)
        return x.index_select(0, idx)

    def index_add(self, out_size: int, index: Any, values: torch.Tensor) -> torch.Tensor:
        idx = torch.as_tensor(np.asarray(index, dtype=np.int64), device=values.device)
        out = torch.zeros((out_size,) + tuple(values.shape[1:]), device=values.device,
                          dtype=values.dtype)
        return out.index_add(0, idx, values)

    def sum(self, x: torch.Tensor, axis: int | None = None) -> torch.Tensor:
        return torch.sum(x) if axis is None else torch.sum(x, dim=axis)

    def reshape(self, x: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.reshape(x, shape)


# ----------------------------------------------------------------------------- HMM engine
@dataclass(frozen=True)
class TorchEngine:
    """The HMM numerics' operations on the tensors of a :class:`TorchBackend` (its device and
    dtype, float64 by default); see :class:`tiedsci.hmm.engines.Engine`."""

    backend: TorchBackend = field(default_factory=TorchBackend)
    name: str = "torch"

    @property
    def device(self) -> torch.device:
        return self.backend.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backend.dtype

    @property
    def tiny(self) -> float:
        return float(torch.finfo(self.dtype).tiny)

    def asarray(self, x: Any) -> torch.Tensor:
        return self.backend.asarray(x)

    def asindex(self, x: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(np.asarray(x, dtype=np.int64), device=self.device)

    def to_numpy(self, x: Any) -> np.ndarray:
        if isinstance(x, torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def empty(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.empty(shape, device=self.device, dtype=self.dtype)

    def ones(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.ones(shape, device=self.device, dtype=self.dtype)

    def exp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(x)

    def log(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(x)

    def lgamma(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x)

    def rowsum(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=1)

    def rowmax(self, x: torch.Tensor) -> torch.Tensor:
        return x.amax(dim=1)

    def max_argmax(self, x: torch.Tensor, axis: int) -> tuple[torch.Tensor, torch.Tensor]:
        out = x.max(dim=axis)
        return out.values, out.indices

    def argmax(self, x: torch.Tensor, axis: int) -> torch.Tensor:
        return x.argmax(dim=axis)

    def where(self, cond: torch.Tensor, a: torch.Tensor, b: Any) -> torch.Tensor:
        if not isinstance(b, torch.Tensor):
            b = torch.as_tensor(b, device=a.device, dtype=a.dtype)
        return torch.where(cond, a, b)

    def isfinite(self, x: torch.Tensor) -> torch.Tensor:
        return torch.isfinite(x)

    def maximum(self, x: torch.Tensor, value: float) -> torch.Tensor:
        return torch.clamp_min(x, value)

    def index_add(self, size: int, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros((size,) + tuple(values.shape[1:]), device=values.device,
                          dtype=values.dtype)
        return out.index_add(0, index, values)

    def take(self, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return x.index_select(0, index)
