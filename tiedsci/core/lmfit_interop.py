"""Conversion between a Layout / Registry and lmfit ``Parameters``.

Each element becomes one lmfit parameter. Names are made lmfit-safe: dots become ``__`` and an
element index becomes a suffix (``means[1,0]`` -> ``means_1_0``). Ties and linear relations become
``expr`` strings; derived parameters, whose code lmfit cannot hold, are exported with their value
and ``vary=False``. On the way back, ``expr`` that is a name or a linear combination of names maps
onto a tie or a linear relation; any other expression becomes a derived parameter evaluated by
lmfit's own (asteval) interpreter.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from tiedsci.core.layout import Layout
    from tiedsci.core.registry import Registry

__all__ = ["lmfit_name", "layout_to_lmfit", "registry_from_lmfit"]


def lmfit_name(label: str) -> str:
    """lmfit-safe name of an element label (``xray.scale`` -> ``xray__scale``)."""
    name = label.replace(".", "__")
    if "[" in name:
        base, idx = name[:-1].split("[", 1)
        name = base + "_" + "_".join(idx.split(","))
    return name


def layout_to_lmfit(layout: Layout, values: Mapping[str, Any] | None = None,
                    stderr: Mapping[str, Any] | None = None) -> Any:
    """lmfit ``Parameters`` for a layout (see the module docstring)."""
    import lmfit

    from tiedsci.core.layout import DERIVED, FIXED, LINEAR
    from tiedsci.core.table import _flat

    vals = _flat(values if values is not None else layout.values0, layout, np.nan)
    errs = _flat(stderr, layout, np.nan)
    params = lmfit.Parameters()
    names = [lmfit_name(lab) for lab in layout._labels]
    first: dict[int, int] = {}
    for e in range(layout._n_elements):
        first.setdefault(int(layout._root[e]), e)
    # free and fixed first, then expressions (lmfit needs the sources to exist)
    for e in range(layout._n_elements):
        if layout._kind[e] in (LINEAR, DERIVED) or first[int(layout._root[e])] != e:
            continue
        lo, hi = -np.inf, np.inf
        text = layout._bounds_text[e]
        if text.startswith("["):
            lo, hi = (float(x) for x in text[1:-1].split(","))
        elif text.startswith("simplex"):
            lo, hi = 0.0, 1.0
        params.add(names[e], value=float(vals[e]), vary=bool(layout._kind[e] != FIXED),
                   min=lo, max=hi)
    for e in range(layout._n_elements):
        k = layout._kind[e]
        if k == DERIVED:
            params.add(names[e], value=float(vals[e]), vary=False)
        elif k == LINEAR:
            expr = _linear_expr(layout, e, names)
            params.add(names[e], expr=expr)
        elif first[int(layout._root[e])] != e:
            params.add(names[e], expr=names[first[int(layout._root[e])]])
    for e in range(layout._n_elements):
        if not np.isnan(errs[e]):
            params[names[e]].stderr = float(errs[e])
    return params


def _linear_expr(layout: Layout, e: int, names: list[str]) -> str:
    row = layout._a_csr[e]
    parts = []
    first_of_slot: dict[int, int] = {}
    for el in range(layout._n_elements):
        z = int(layout._zslot[el])
        if z >= 0:
            first_of_slot.setdefault(z, el)
    for z, c in zip(row.indices, row.data):
        parts.append(f"{float(c)!r}*{names[first_of_slot[int(z)]]}")
    const = float(layout._b[e])
    if const or not parts:
        parts.append(repr(const))
    return " + ".join(parts)


def _linear_terms(expr: str) -> tuple[dict[str, float], float] | None:
    """Parse ``expr`` as ``sum c_i * name_i + d``; ``None`` when it is not linear."""
    try:
        tree = ast.parse(expr, mode="eval").body
    except SyntaxError:
        return None

    def walk(node: ast.AST) -> tuple[dict[str, float], float] | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return {}, float(node.value)
        if isinstance(node, ast.Name):
            return {node.id: 1.0}, 0.0
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = walk(node.operand)
            if inner is None:
                return None
            sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
            return {k: sign * v for k, v in inner[0].items()}, sign * inner[1]
        if isinstance(node, ast.BinOp):
            left, right = walk(node.left), walk(node.right)
            if left is None or right is None:
                return None
            if isinstance(node.op, ast.Add | ast.Sub):
                sign = 1.0 if isinstance(node.op, ast.Add) else -1.0
                terms = dict(left[0])
                for k, v in right[0].items():
                    terms[k] = terms.get(k, 0.0) + sign * v
                return terms, left[1] + sign * right[1]
            if isinstance(node.op, ast.Mult):
                if not left[0]:
                    return {k: left[1] * v for k, v in right[0].items()}, left[1] * right[1]
                if not right[0]:
                    return {k: right[1] * v for k, v in left[0].items()}, right[1] * left[1]
                return None
            if isinstance(node.op, ast.Div) and not right[0] and right[1] != 0:
                return {k: v / right[1] for k, v in left[0].items()}, left[1] / right[1]
        return None

    return walk(tree)


def _names_in(expr: str) -> list[str]:
    return sorted({n.id for n in ast.walk(ast.parse(expr, mode="eval")) if isinstance(n, ast.Name)})


def registry_from_lmfit(params: Any) -> Registry:
    """Registry from lmfit ``Parameters``: one scalar per lmfit parameter.

    ``__`` in an lmfit name becomes a dot. ``min``/``max`` become bounds, ``vary=False`` fixes,
    an ``expr`` that is a name becomes a tie, a linear ``expr`` a linear relation, and anything
    else a derived parameter evaluated with lmfit's asteval interpreter.
    """
    from tiedsci.core.registry import Registry

    reg = Registry()
    dotted = {name: name.replace("__", ".") for name in params}
    for name, par in params.items():
        lo = -math.inf if par.min is None else par.min
        hi = math.inf if par.max is None else par.max
        bounds = None if (lo == -math.inf and hi == math.inf) or par.expr else (lo, hi)
        reg.declare(dotted[name], float(par.value), bounds=bounds,
                    fixed=(not par.vary and not par.expr))
    for name, par in params.items():
        if not par.expr:
            continue
        lin = _linear_terms(par.expr)
        if lin is not None and all(k in dotted for k in lin[0]):
            terms, const = lin
            if len(terms) == 1 and const == 0.0 and next(iter(terms.values())) == 1.0:
                reg.tie(dotted[next(iter(terms))], dotted[name])
            else:
                reg.linear(dotted[name], [(c, dotted[k]) for k, c in terms.items()], offset=const)
            continue
        deps = [d for d in _names_in(par.expr) if d in dotted]
        reg.derive(dotted[name], _asteval_fn(par.expr, deps), deps=[dotted[d] for d in deps])
    return reg


def _asteval_fn(expr: str, deps: list[str]) -> Any:
    from asteval import Interpreter

    interp = Interpreter()
    code = interp.parse(expr)

    def fn(*args: Any) -> Any:
        for dep, val in zip(deps, args):
            interp.symtable[dep] = np.asarray(val, dtype=float)
        return interp.run(code)

    fn.__name__ = f"lmfit_expr[{expr}]"
    return fn
