"""Readable parameter tables (what :meth:`Layout.describe` prints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tiedsci.core.layout import Layout

__all__ = ["format_table", "element_rows"]


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


def element_rows(layout: Layout, values: Mapping[str, Any] | None = None,
                 stderr: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """One record per parameter element, in flat order (what :meth:`Layout.describe` prints).

    Keys: ``param`` (the parameter's name), ``label`` (``means[1,0]``), ``value`` and
    ``stderr`` (float, NaN when unknown), ``status`` (``free``, ``tied to ...``, ``fixed``,
    ``= relation``, ``derived: ...``), ``bounds`` and ``unit`` (str).
    """
    vals = _flat(values if values is not None else layout.values0, layout, np.nan)
    errs = _flat(stderr, layout, np.nan)
    rows = []
    for name in layout.names:
        sl = layout.flat_slice(name)
        for e in range(sl.start, sl.stop):
            rows.append({"param": name, "label": layout._labels[e], "value": float(vals[e]),
                         "stderr": float(errs[e]), "status": layout._status[e],
                         "bounds": layout._bounds_text[e], "unit": layout.units.get(name, "")})
    return rows


def format_table(layout: Layout, values: Mapping[str, Any] | None = None,
                 stderr: Mapping[str, Any] | None = None, max_elements: int = 200) -> str:
    """One row per parameter element: name, value, stderr, status (free / tied / fixed / = ...),
    bounds and unit. Arrays longer than ``max_elements`` are cut with a count of what is left."""
    rows = [("name", "value", "stderr", "status", "bounds", "unit")]
    shown: dict[str, int] = {}
    for r in element_rows(layout, values, stderr):
        k = shown[r["param"]] = shown.get(r["param"], 0) + 1
        if k <= max_elements:
            err = "" if np.isnan(r["stderr"]) else f"{r['stderr']:.4g}"
            rows.append((r["label"], f"{r['value']:.6g}", err, r["status"], r["bounds"],
                         r["unit"]))
        elif k == max_elements + 1:
            left = layout.size(r["param"]) - max_elements
            rows.append((f"{r['param']}[...]", f"({left} more)", "", "", "", ""))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    n_tied = sum(len(g) - 1 for g in layout.groups)
    lines.append(f"{layout.n_values} elements, {layout.n_free} free parameters "
                 f"({n_tied} elements tied to others)")
    return "\n".join(lines)
