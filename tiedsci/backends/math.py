"""One math namespace for numpy and torch: models written once, differentiated by torch.

:func:`tiedsci.backends.namespace_of` returns a :class:`MathNamespace` whose functions have the
same names and meaning on numpy arrays and on torch tensors (numpy spellings: ``arctan``,
``power`` / ``pow``, ``erf`` from scipy.special for numpy). Scalars mixed with tensors are
converted to tensors of the matching dtype and device where torch needs it (``where``,
``maximum``, ``minimum``, ``arctan2``, ``pow``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

__all__ = ["MathNamespace", "numpy_math", "torch_math"]

_SHARED = ("exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tan", "arcsin", "arccos",
           "arctan", "sinh", "cosh", "tanh", "abs", "sign", "square", "clip", "sum", "prod",
           "floor", "ceil", "round", "isfinite", "stack", "concatenate", "asarray")


@dataclass(frozen=True)
class MathNamespace:
    """Elementwise math on one array kind (see the module docstring).

    Attributes
    ----------
    module : module
        ``numpy`` or ``torch``; unknown names are looked up there.
    erf, erfc, pow, arctan2, where, maximum, minimum : callable
        The functions whose spelling or scalar handling differs between numpy and torch.
    pi : float
    """

    module: ModuleType
    erf: Callable[..., Any]
    erfc: Callable[..., Any]
    pow: Callable[..., Any]
    arctan2: Callable[..., Any]
    where: Callable[..., Any]
    maximum: Callable[..., Any]
    minimum: Callable[..., Any]
    pi: float = 3.141592653589793

    @property
    def power(self) -> Callable[..., Any]:
        """Alias of :attr:`pow` (numpy's name)."""
        return self.pow

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.module, name)


@functools.cache
def numpy_math() -> MathNamespace:
    """The numpy :class:`MathNamespace` (``erf``/``erfc`` from scipy.special)."""
    import numpy as np
    import scipy.special as sp

    return MathNamespace(np, sp.erf, sp.erfc, np.power, np.arctan2, np.where, np.maximum,
                         np.minimum)


def _tensor_args(fn: Callable[..., Any], torch: Any) -> Callable[..., Any]:
    """``fn`` with plain numbers among its arguments turned into tensors like the others."""

    def wrapped(*args: Any) -> Any:
        ref = next((a for a in args if isinstance(a, torch.Tensor)), None)
        if ref is None:
            args = tuple(torch.as_tensor(a, dtype=torch.float64) for a in args)
        else:
            args = tuple(a if isinstance(a, torch.Tensor) else
                         torch.as_tensor(a, dtype=ref.dtype if not isinstance(a, bool) else
                                         torch.bool, device=ref.device) for a in args)
        return fn(*args)

    wrapped.__name__ = getattr(fn, "__name__", "wrapped")
    return wrapped


@functools.cache
def torch_math() -> MathNamespace:
    """The torch :class:`MathNamespace` (imports torch)."""
    import torch

    def where(cond: Any, a: Any, b: Any) -> Any:
        cond = torch.as_tensor(cond, dtype=torch.bool)
        ref = next((t for t in (a, b) if isinstance(t, torch.Tensor)), None)
        dtype = ref.dtype if ref is not None else torch.float64
        device = ref.device if ref is not None else cond.device
        return torch.where(cond, torch.as_tensor(a, dtype=dtype, device=device),
                           torch.as_tensor(b, dtype=dtype, device=device))

    return MathNamespace(torch, torch.erf, torch.erfc, _tensor_args(torch.pow, torch),
                         _tensor_args(torch.arctan2, torch), where,
                         _tensor_args(torch.maximum, torch), _tensor_args(torch.minimum, torch))
