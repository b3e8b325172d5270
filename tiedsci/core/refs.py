"""ParamRef: a handle on a declared parameter or a selection of its elements."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["ParamRef", "element_label"]


def _format_index(index: Any) -> str:
    """``means[0]``, ``means[:, 1]``, ``p[[0, 2]]``: the index as the user wrote it."""
    items = index if isinstance(index, tuple) else (index,)
    parts = []
    for it in items:
        if isinstance(it, slice):
            start = "" if it.start is None else str(it.start)
            stop = "" if it.stop is None else str(it.stop)
            step = "" if it.step is None else f":{it.step}"
            parts.append(f"{start}:{stop}{step}")
        elif it is Ellipsis:
            parts.append("...")
        elif isinstance(it, list | np.ndarray):
            parts.append(str(np.asarray(it).tolist()))
        else:
            parts.append(str(it))
    return "[" + ",".join(parts) + "]"


def element_label(name: str, shape: tuple[int, ...], flat_index: int) -> str:
    """Readable label of one element: ``"a"`` for a scalar, ``"means[1,0]"`` for an array."""
    if shape == ():
        return name
    idx = np.unravel_index(flat_index, shape)
    return f"{name}[{','.join(str(int(i)) for i in idx)}]"


@dataclass(frozen=True)
class ParamRef:
    """Reference to a parameter, or to some of its elements.

    Returned by :meth:`tiedsci.core.Registry.declare`; index it with numpy indexing
    (``means[0]``, ``means[:, 1]``, ``p[[0, 2]]``) to refer to elements.

    Attributes
    ----------
    name : str
        Declared (dotted) name of the parameter.
    param_shape : tuple of int
        Shape of the whole parameter.
    flat : tuple of int or None
        Flat (C-order) element indices selected; ``None`` means the whole parameter.
    sel_shape : tuple of int or None
        Shape of the selection (``None`` for the whole parameter).
    """

    name: str
    param_shape: tuple[int, ...]
    flat: tuple[int, ...] | None = None
    sel_shape: tuple[int, ...] | None = None
    text: str | None = field(default=None, compare=False)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the referenced selection."""
        return self.param_shape if self.flat is None else tuple(self.sel_shape or ())

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=int))

    def elements(self) -> np.ndarray:
        """Flat element indices of the selection, shaped like the selection."""
        if self.flat is None:
            return np.arange(int(np.prod(self.param_shape, dtype=int))).reshape(self.param_shape)
        return np.asarray(self.flat, dtype=np.intp).reshape(self.sel_shape or ())

    def __getitem__(self, index: Any) -> ParamRef:
        try:
            sel = np.asarray(self.elements()[index])
        except IndexError as exc:
            raise IndexError(f"index {index!r} is out of range for {self.label}: {exc}") from None
        text = (self.label if self.flat is not None else self.name) + _format_index(index)
        return ParamRef(self.name, self.param_shape, tuple(int(i) for i in sel.ravel()),
                        tuple(sel.shape), text)

    @property
    def label(self) -> str:
        """``name`` for the whole parameter, ``name[i,j]`` or ``name{n elements}`` otherwise."""
        if self.flat is None:
            return self.name
        if self.text is not None:
            return self.text
        if len(self.flat) == 1:
            return element_label(self.name, self.param_shape, self.flat[0])
        return f"{self.name}{{{len(self.flat)} elements}}"

    def __repr__(self) -> str:
        return f"ParamRef({self.label!r}, shape={self.shape})"
