"""Readable parameter tables (what :meth:`Layout.describe` prints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tiedsci.core.layout import Layout

__all__ = ["format_table"]


def _flat(values: Mapping[str, Any] | None, layout: Layout, fill: float) -> np.ndarray:
    out = np.full(layout._n_elements, fill)
    if values is None:
        return out
    from tiedsci.backends import get_backend

    be = get_backend("numpy")
    for name, val in values.items():
        if name in layout._offsets:
            arr = be.asarray(val).ravel()
            off = layout._offsets[name]
            out[off:off + arr.size] = arr
    return out


def format_table(layout: Layout, values: Mapping[str, Any] | None = None,
                 stderr: Mapping[str, Any] | None = None, max_elements: int = 200) -> str:
    """One row per parameter element: name, value, stderr, status (free / tied / fixed / = ...),
    bounds and unit. Arrays longer than ``max_elements`` are cut with a count of what is left."""
    vals = _flat(values if values is not None else layout.values0, layout, np.nan)
    errs = _flat(stderr, layout, np.nan)
    rows = [("name", "value", "stderr", "status", "bounds", "unit")]
    for name in layout.names:
        off = layout._offsets[name]
        size = int(np.prod(layout.shapes[name], dtype=int))
        for i in range(min(size, max_elements)):
            e = off + i
            err = "" if np.isnan(errs[e]) else f"{errs[e]:.4g}"
            rows.append((layout._labels[e], f"{vals[e]:.6g}", err, layout._status[e],
                         layout._bounds_text[e], layout.units.get(name, "")))
        if size > max_elements:
            rows.append((f"{name}[...]", f"({size - max_elements} more)", "", "", "", ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    n_tied = sum(len(g) - 1 for g in layout.groups)
    lines.append(f"{layout._n_elements} elements, {layout.n_free} free parameters "
                 f"({n_tied} elements tied to others)")
    return "\n".join(lines)
