"""torch engine for the HMM numerics (imported only when ``engine="torch"`` is asked for)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["TorchEngine"]


@dataclass(frozen=True)
class TorchEngine:
    """torch tensors on ``device`` in ``dtype`` (float64 by default)."""

    device: Any = "cpu"
    dtype: Any = torch.float64
    name: str = "torch"

    def __post_init__(self) -> None:
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device={str(self.device)!r} was requested but CUDA is not "
                               "available here (torch.cuda.is_available() is False); use 'cpu'")
        object.__setattr__(self, "device", dev)
        if isinstance(self.dtype, str):
            object.__setattr__(self, "dtype", getattr(torch, self.dtype))
        if isinstance(self.dtype, type) and issubclass(self.dtype, np.floating):
            object.__setattr__(self, "dtype", getattr(torch, np.dtype(self.dtype).name))

    @property
    def tiny(self) -> float:
        return float(torch.finfo(self.dtype).tiny)

    def asarray(self, x: Any) -> torch.Tensor:
        if isinstance(x, torch.Tensor):
            return x.to(device=self.device, dtype=self.dtype)
        return torch.as_tensor(np.asarray(x), device=self.device, dtype=self.dtype)

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
