"""Compile a :class:`~tiedsci.core.registry.Registry` into a :class:`~tiedsci.core.layout.Layout`.

:func:`build_layout` runs named steps, each small and pure over the registry's state:

1. :func:`_element_kinds` — tie root, kind (free / fixed / linear / derived), label per element;
2. :func:`_simplex_rows` — which free tie groups share a simplex row, and each row's free mass;
3. :func:`_z_slots` — one slot of ``z`` per free tie group, in order of first element;
4. :func:`_free_slots` — the free vector ``theta``: transform kind and bounds per slot, simplex
   blocks, labels and representative elements;
5. :func:`_linear_map` — the sparse ``phi = A z + b`` (ties, linear relations, fixed values);
6. :func:`_derived_order` — derived relations in dependency order;
7. :func:`_status_text` — the status and bounds column of :meth:`Layout.describe`.

Everything here is private to the core.
"""

from __future__ import annotations

import contextlib
import graphlib
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tiedsci.core.constraints import Derived
from tiedsci.core.layout import DERIVED, FIXED, FREE, LINEAR, Layout, _Block
from tiedsci.core.softtie import exact_limits
from tiedsci.core.transforms import Identity, Interval, Simplex
from tiedsci.errors import ConflictError

if TYPE_CHECKING:
    from tiedsci.core.registry import ParamSpec, Registry

__all__ = ["build_layout"]

_SCALAR_KINDS = ("identity", "lower", "upper", "interval")


@dataclass(frozen=True)
class _Elements:
    """Element-level facts, shape (n_elements,) each."""

    root: np.ndarray
    kind: np.ndarray
    vals: np.ndarray
    labels: tuple[str, ...]


@dataclass(frozen=True)
class _Slots:
    """The free vector: per-kind theta/z slots with bounds, simplex blocks, labels."""

    theta: dict[str, np.ndarray]
    z: dict[str, np.ndarray]
    lo: dict[str, np.ndarray]
    hi: dict[str, np.ndarray]
    blocks: tuple[_Block, ...]
    free_names: tuple[str, ...]
    free_rep: np.ndarray
    z_theta: tuple[tuple[int, ...], ...]
    z_perm_inverse: np.ndarray


def _element_kinds(reg: Registry, specs: list[ParamSpec]) -> _Elements:
    n = reg._n_elements
    root = np.array([reg._find(e) for e in range(n)], dtype=np.intp)
    vals = np.concatenate([s.value.ravel() for s in specs]) if specs else np.zeros(0)
    owner = reg._elem_owner
    kind = np.full(n, FREE, dtype=np.int8)
    for e in range(n):
        if owner[e] in reg._derived:
            kind[e] = DERIVED
        elif e in reg._linear:
            kind[e] = LINEAR
        elif reg._fixed[root[e]]:
            kind[e] = FIXED
    labels = tuple(reg._elabel(e) for e in range(n))
    return _Elements(root, kind, vals, labels)


def _simplex_rows(specs: list[ParamSpec], el: _Elements
                  ) -> tuple[dict[int, tuple[int, ...]], dict[tuple[int, ...], float]]:
    """Simplex blocks keyed by the tuple of free roots they contain, and their free mass."""
    block_of_root: dict[int, tuple[int, ...]] = {}
    block_mass: dict[tuple[int, ...], float] = {}
    for s in specs:
        if not isinstance(s.transform, Simplex):
            continue
        ax = s.transform.axis
        idx = np.moveaxis(np.arange(s.size).reshape(s.shape), ax, -1).reshape(-1, s.shape[ax])
        for row in idx + s.offset:
            free_roots = tuple(int(el.root[e]) for e in row if el.kind[e] == FREE)
            if len(set(free_roots)) != len(free_roots):
                raise ConflictError(f"elements of one simplex row of {s.name} are tied to each "
                                    f"other ({el.labels[row[0]]}...); tie whole rows instead")
            mass = 1.0 - float(sum(el.vals[e] for e in row if el.kind[e] == FIXED))
            for r in free_roots:
                if r in block_of_root and block_of_root[r] != free_roots:
                    raise ConflictError(
                        f"{el.labels[r]} belongs to two different simplex rows; ties between "
                        "simplex-bounded parameters must tie whole rows"
                    )
                block_of_root[r] = free_roots
            if free_roots:
                block_mass[free_roots] = mass
    return block_of_root, block_mass


def _z_slots(el: _Elements) -> tuple[np.ndarray, dict[int, int], dict[int, int]]:
    """z slot per element (-1 unless free), slot per free root, first element per free root."""
    n = el.root.size
    zslot = np.full(n, -1, dtype=np.intp)
    slot_of_root: dict[int, int] = {}
    first_elem: dict[int, int] = {}
    for e in range(n):
        if el.kind[e] == FREE:
            r = int(el.root[e])
            if r not in slot_of_root:
                slot_of_root[r] = len(slot_of_root)
                first_elem[r] = e
            zslot[e] = slot_of_root[r]
    return zslot, slot_of_root, first_elem


def _group_bound(reg: Registry, r: int) -> Any:
    """The interval bound of tie group ``r`` (carried by any member), or None."""
    for m in reg._groups[r]:
        bnd = reg._elem_bound(m)
        if isinstance(bnd, Interval):
            return bnd
    return None


def _free_slots(reg: Registry, el: _Elements, slot_of_root: dict[int, int],
                first_elem: dict[int, int], block_of_root: dict[int, tuple[int, ...]],
                block_mass: dict[tuple[int, ...], float]) -> _Slots:
    theta: dict[str, list[int]] = {k: [] for k in _SCALAR_KINDS}
    z_of: dict[str, list[int]] = {k: [] for k in _SCALAR_KINDS}
    lo: dict[str, list[float]] = {k: [] for k in _SCALAR_KINDS}
    hi: dict[str, list[float]] = {k: [] for k in _SCALAR_KINDS}
    blocks_by_k: dict[int, list[tuple[list[int], list[int], float]]] = {}
    free_rep: list[int] = []
    z_theta: list[tuple[int, ...]] = [()] * len(slot_of_root)
    done_blocks: set[tuple[int, ...]] = set()
    for r, z in slot_of_root.items():
        if r in block_of_root:
            key = block_of_root[r]
            if key in done_blocks:
                continue
            done_blocks.add(key)
            zs = [slot_of_root[x] for x in key]
            th = list(range(len(free_rep), len(free_rep) + len(key) - 1))
            free_rep.extend(first_elem[x] for x in key[:-1])
            blocks_by_k.setdefault(len(key), []).append((th, zs, block_mass[key]))
            for zz in zs:
                z_theta[zz] = tuple(th)
            continue
        bnd = _group_bound(reg, r)
        k = "identity" if bnd is None else bnd.kind
        t = len(free_rep)
        free_rep.append(first_elem[r])
        theta[k].append(t)
        z_of[k].append(z)
        lo[k].append(bnd.lo if bnd is not None else -np.inf)
        hi[k].append(bnd.hi if bnd is not None else np.inf)
        z_theta[z] = (t,)
    blocks = tuple(
        _Block(k, np.array([b[0] for b in bl], dtype=np.intp).reshape(len(bl), k - 1),
               np.array([b[1] for b in bl], dtype=np.intp).reshape(len(bl), k),
               np.array([b[2] for b in bl], dtype=float))
        for k, bl in sorted(blocks_by_k.items())
    )
    order = np.concatenate(
        [np.asarray(z_of[k], dtype=np.intp) for k in _SCALAR_KINDS]
        + [blk.z_idx.ravel() for blk in blocks]
    ) if slot_of_root else np.zeros(0, dtype=np.intp)
    return _Slots(
        theta={k: np.asarray(v, dtype=np.intp) for k, v in theta.items()},
        z={k: np.asarray(v, dtype=np.intp) for k, v in z_of.items()},
        lo={k: np.asarray(v, dtype=float) for k, v in lo.items()},
        hi={k: np.asarray(v, dtype=float) for k, v in hi.items()},
        blocks=blocks,
        free_names=tuple(el.labels[e] for e in free_rep),
        free_rep=np.asarray(free_rep, dtype=np.intp),
        z_theta=tuple(z_theta),
        z_perm_inverse=np.argsort(order, kind="stable"),
    )


def _linear_map(reg: Registry, el: _Elements, zslot: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``phi = A z + b`` as COO triplets ``(rows, cols, vals)`` and the offset ``b``."""
    n = el.root.size
    memo: dict[int, tuple[dict[int, float], float]] = {}

    def expand(e: int) -> tuple[dict[int, float], float]:
        if e in memo:
            return memo[e]
        if el.kind[e] == FREE:
            res: tuple[dict[int, float], float] = ({int(zslot[e]): 1.0}, 0.0)
        elif el.kind[e] == FIXED:
            res = ({}, float(el.vals[e]))
        elif el.kind[e] == LINEAR:
            terms, off = reg._linear[e]
            acc: dict[int, float] = {}
            const = off
            for c, s_el in terms:
                sub, sub_off = expand(s_el)
                for zz, cc in sub.items():
                    acc[zz] = acc.get(zz, 0.0) + c * cc
                const += c * sub_off
            res = (acc, const)
        else:  # derived: evaluated after the linear stage
            res = ({}, 0.0)
        memo[e] = res
        return res

    rows, cols, coefs = [], [], []
    b = np.zeros(n)
    for e in range(n):
        coef, const = expand(e)
        b[e] = const
        for zz, c in coef.items():
            rows.append(e)
            cols.append(zz)
            coefs.append(c)
    return (np.asarray(rows, dtype=np.intp), np.asarray(cols, dtype=np.intp),
            np.asarray(coefs, dtype=float), b)


def _derived_order(reg: Registry) -> tuple[Derived, ...]:
    graph = {name: set(rel.deps) for name, rel in reg._derived.items()}
    order = [x for x in graphlib.TopologicalSorter(graph).static_order() if x in reg._derived]
    return tuple(reg._derived[x] for x in order)


def _linear_text(reg: Registry, e: int, labels: tuple[str, ...]) -> str:
    terms, off = reg._linear[e]
    parts = [labels[s_el] if c == 1.0 else f"{c:g}*{labels[s_el]}" for c, s_el in terms]
    text = " + ".join(parts) if parts else ""
    if off or not parts:
        text = f"{text} + {off:g}" if parts else f"{off:g}"
    return "= " + text


def _status_text(reg: Registry, el: _Elements) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Per element: status (free / tied to ... / fixed / = ... / derived) and bounds text."""
    n = el.root.size
    first = {}
    for e in range(n):
        first.setdefault(int(el.root[e]), e)
    status, bounds_text = [], []
    for e in range(n):
        spec = reg._specs[reg._elem_owner[e]]
        r = int(el.root[e])
        if el.kind[e] == DERIVED:
            status.append("derived: " + reg._derived[spec.name].describe())
        elif el.kind[e] == LINEAR:
            status.append(_linear_text(reg, e, el.labels))
        elif el.kind[e] == FIXED:
            status.append("fixed" if first[r] == e else f"fixed, tied to {el.labels[first[r]]}")
        elif first[r] != e:
            status.append(f"tied to {el.labels[first[r]]}")
        elif len(reg._groups[r]) > 1:
            status.append(f"free (shared by {len(reg._groups[r])})")
        else:
            status.append("free")
        bnd = reg._elem_bound(e) if el.kind[e] == FREE else None
        if isinstance(spec.transform, Simplex) and el.kind[e] != LINEAR:
            bounds_text.append(spec.transform.describe())
        elif bnd is not None and not isinstance(bnd, Identity):
            bounds_text.append(bnd.describe())
        else:
            bounds_text.append("")
    return tuple(status), tuple(bounds_text)


def _copy_weights(reg: Registry, n: int) -> np.ndarray:
    """1 per element, ``1/2`` for each element of a mirror pair (see Registry.symmetric)."""
    w = np.ones(n)
    for e, m in reg._mirror.items():
        if e != m:
            w[e] = 0.5
    return w


def _csr_by_rows(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 shape: tuple[int, int]) -> sp.csr_matrix:
    """CSR matrix of triplets already in row order without duplicates (what
    :func:`_linear_map` yields), built directly: no COO sort or duplicate sum, which for
    the small layouts of everyday fits costs more than the compile itself."""
    indptr = np.zeros(shape[0] + 1, dtype=np.intp)
    np.cumsum(np.bincount(rows, minlength=shape[0]), out=indptr[1:])
    return sp.csr_matrix((vals, cols, indptr), shape=shape)


STRUCTURE_CACHE_SIZE = 64
"""How many compiled structures :func:`build_layout` keeps (least recently used dropped)."""

STRUCTURE_CACHE_MAX_ELEMENTS = 50_000
"""Registries with more elements are compiled afresh each time (bounds the cache's memory;
their compile time is dominated by work a cache would not save anyway)."""

_STRUCTURES: OrderedDict[tuple[Any, ...], tuple[Layout, np.ndarray, np.ndarray]] = OrderedDict()


def _structure_key(reg: Registry) -> tuple[Any, ...] | None:
    """What a compiled layout depends on apart from the values: names, shapes, transforms,
    ties, fixes, linear relations, bounds, mirrors. ``None`` (no caching) for registries with
    derived relations, restraints or soft ties, whose objects are not hashable as declared
    (those compile afresh)."""
    if reg._derived or reg._restraints or reg._soft_ties or \
            reg._n_elements > STRUCTURE_CACHE_MAX_ELEMENTS:
        return None
    roots = tuple(reg._find(e) for e in range(reg._n_elements))  # compresses the paths
    key = (tuple((sp_.name, sp_.shape, sp_.offset, sp_.transform, sp_.unit, sp_.description)
                 for sp_ in reg._specs.values()),
           roots, tuple(reg._fixed), tuple(reg._elem_owner),
           tuple((e, tuple(terms), off) for e, (terms, off) in reg._linear.items()),
           tuple(reg._elem_bounds.items()), tuple(reg._mirror.items()))
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _element_values(reg: Registry) -> np.ndarray:
    specs = list(reg._specs.values())
    return np.concatenate([s.value.ravel() for s in specs]) if specs else np.zeros(0)


def _set_start(layout: Layout, vals: np.ndarray, first_elem: np.ndarray) -> Layout:
    """Set (in place) ``theta0`` from the free groups' values (``vals`` per element, the first
    element of each group standing for it) and ``values0`` re-evaluated from it, so that
    relations hold exactly; returns ``layout``."""
    theta0 = layout._inverse_transform(vals[first_elem])
    object.__setattr__(layout, "theta0", theta0)
    values0 = layout.unpack(theta0, backend="numpy")
    object.__setattr__(layout, "_values0", {k: np.asarray(v) for k, v in values0.items()})
    return layout


def _first_element_of_slots(layout: Layout) -> np.ndarray:
    """The first element of each free group (z slot), whose value is the group's value."""
    free = np.flatnonzero(layout._zslot >= 0)
    _, first = np.unique(layout._zslot[free], return_index=True)
    return free[first]


def build_layout(reg: Registry) -> Layout:
    """Compile a registry (called by :meth:`Registry.compile`).

    Compiled structures are kept (:data:`STRUCTURE_CACHE_SIZE`): a registry with the same
    declarations and fixed values as one compiled before (a refit, a new start, a new fit
    of the same model) reuses that compilation with its own values.
    """
    key = _structure_key(reg)
    if key is None:
        return _build(reg)
    vals = _element_values(reg)
    hit = _STRUCTURES.get(key)
    if hit is not None:
        layout, first_elem, fixed = hit
        if np.array_equal(vals[fixed], layout._b[fixed]):  # fixed values enter A z + b
            with contextlib.suppress(KeyError):  # (dropped meanwhile by another thread)
                _STRUCTURES.move_to_end(key)
            # same structure, this registry's values (and a copy of it, for freeze())
            return _set_start(replace(layout, _registry=reg.copy(), _cache={}), vals,
                              first_elem)
    layout = _build(reg, structure=object())
    _STRUCTURES[key] = (layout, _first_element_of_slots(layout),
                        np.flatnonzero(layout._kind == FIXED))
    while len(_STRUCTURES) > STRUCTURE_CACHE_SIZE:
        with contextlib.suppress(KeyError):
            _STRUCTURES.popitem(last=False)
    return layout


def _build(reg: Registry, structure: object | None = None) -> Layout:
    declared = reg
    reg = exact_limits(reg)  # soft ties of spread 0 / inf compile as a tie / as untied
    specs = list(reg._specs.values())
    n = reg._n_elements
    el = _element_kinds(reg, specs)
    block_of_root, block_mass = _simplex_rows(specs, el)
    zslot, slot_of_root, first_elem = _z_slots(el)
    slots = _free_slots(reg, el, slot_of_root, first_elem, block_of_root, block_mass)
    a_rows, a_cols, a_vals, b = _linear_map(reg, el, zslot)
    n_z = len(slot_of_root)
    status, bounds_text = _status_text(reg, el)
    layout = Layout(
        names=tuple(s.name for s in specs),
        shapes={s.name: s.shape for s in specs},
        n_free=len(slots.free_names),
        free_names=slots.free_names,
        theta0=np.zeros(len(slots.free_names)),
        units={s.name: s.unit for s in specs},
        descriptions={s.name: s.description for s in specs},
        restraints=tuple(reg._restraints),
        soft_ties=tuple(declared._soft_ties),
        _offsets={s.name: s.offset for s in specs},
        _n_elements=n,
        _kind=el.kind,
        _root=el.root,
        _zslot=zslot,
        _labels=el.labels,
        _status=status,
        _bounds_text=bounds_text,
        _a_rows=a_rows,
        _a_cols=a_cols,
        _a_vals=a_vals,
        _b=b,
        _n_z=n_z,
        _slot_theta=slots.theta,
        _slot_z=slots.z,
        _slot_lo=slots.lo,
        _slot_hi=slots.hi,
        _blocks=slots.blocks,
        _z_perm_inverse=slots.z_perm_inverse,
        _z_theta=slots.z_theta,
        _free_rep=slots.free_rep,
        _copy_weight=_copy_weights(reg, n),
        _derived=_derived_order(reg),
        _restraint_elements=tuple(
            tuple(np.asarray(ref.elements(), dtype=np.intp).ravel() for ref in rst.refs)
            for rst in reg._restraints),
        _a_csr=_csr_by_rows(a_rows, a_cols, a_vals, (n, n_z)),
        _values0={s.name: s.value.copy() for s in specs},
        _registry=declared.copy(),
        structure=structure,
    )
    return _set_start(layout, el.vals, _first_element_of_slots(layout))
