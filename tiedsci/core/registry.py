"""Registry: the mutable builder where a model declares its parameters and how they relate.

Every call validates at once (unknown names, shapes, cycles, conflicting relations, bounds),
so an error points at the line that caused it. :meth:`Registry.compile` freezes everything
into a :class:`~tiedsci.core.layout.Layout`.
"""

from __future__ import annotations

import difflib
import graphlib
import math
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tiedsci.core.constraints import Derived, Fixed, Linear, Restraint, SoftTie, Tie
from tiedsci.core.refs import ParamRef, element_label
from tiedsci.core.transforms import Identity, Interval, Simplex, Transform, as_transform
from tiedsci.errors import (
    ConflictError,
    CycleError,
    DeclarationError,
    RelationOverrideWarning,
    ShapeMismatchError,
    UnknownParameterError,
)

if TYPE_CHECKING:
    from tiedsci.core.layout import Layout

__all__ = ["Registry", "ParamSpec"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")

RefLike = ParamRef | str


@dataclass
class ParamSpec:
    """Declaration of one named parameter (mutable while the registry is being built)."""

    name: str
    value: np.ndarray
    offset: int
    transform: Transform = field(default_factory=Identity)
    unit: str = ""
    description: str = ""

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.value.shape)

    @property
    def size(self) -> int:
        return int(self.value.size)


def _checked_transform(bounds: Any, label: str) -> Transform:
    """``as_transform(bounds)`` with errors that name the parameter."""
    try:
        return as_transform(bounds)
    except (TypeError, ValueError) as exc:
        raise DeclarationError(f"invalid bounds {bounds!r} for {label!r}: {exc}") from None


class Registry:
    """Declare named parameters and tie / fix / bound / relate them.

    Examples
    --------
    >>> import numpy as np
    >>> reg = Registry()
    >>> means = reg.declare("means", np.zeros((4, 2)))
    >>> reg.tie_groups("means", [[0, 1], [2, 3]])
    >>> reg.compile().n_free
    4
    """

    def __init__(self) -> None:
        self._specs: dict[str, ParamSpec] = {}
        self._n_elements = 0
        # element-level state, indexed by global element number
        self._parent: list[int] = []  # union-find of hard ties
        self._fixed: list[bool] = []  # element is held fixed
        self._elem_owner: list[str] = []  # parameter owning each element
        self._linear: dict[int, tuple[tuple[tuple[float, int], ...], float]] = {}
        # parameter-level state
        self._derived: dict[str, Derived] = {}
        self._relations: list[Tie | Linear | Fixed | Derived] = []
        self._restraints: list[Restraint] = []
        self._soft_ties: list[SoftTie] = []
        self._elem_bounds: dict[int, Transform] = {}  # bounds on selected elements only
        self._groups: dict[int, list[int]] = {}  # union-find root -> members
        self._mirror: dict[int, int] = {}  # element -> its mirror copy (symmetric())

    # ------------------------------------------------------------------ declaration
    def declare(
        self,
        name: str,
        value: Any,
        *,
        bounds: Any = None,
        fixed: bool = False,
        unit: str = "",
        description: str = "",
    ) -> ParamRef:
        """Declare a parameter and return a reference to it.

        Parameters
        ----------
        name : str
            Dotted name, e.g. ``"xray.zero_shift"`` or ``"structure.a"``; must be new.
        value : float or array_like
            Initial value; its shape is the parameter's shape. Must be finite.
        bounds : None, (lo, hi), Interval, Positive() or Simplex(axis)
            Constraint on the values, realised by a smooth bijection in the free vector.
        fixed : bool
            Hold the whole parameter at ``value``.
        unit, description : str
            Shown by :meth:`Layout.describe`.
        """
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise DeclarationError(
                f"invalid parameter name {name!r}: use dotted identifiers such as 'xray.scale'"
            )
        if name in self._specs:
            raise DeclarationError(f"parameter {name!r} is already declared (redefinition)")
        try:
            arr = np.array(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise DeclarationError(f"value of {name!r} is not numeric: {exc}") from None
        if not np.all(np.isfinite(arr)):
            bad = np.argwhere(~np.isfinite(arr))
            where = f" at index {tuple(int(i) for i in bad[0])}" if arr.ndim else ""
            raise DeclarationError(f"initial value of {name!r} is not finite{where}: {value!r}")
        if arr.size == 0:
            raise DeclarationError(f"parameter {name!r} has no elements (shape {arr.shape})")
        transform = _checked_transform(bounds, name)
        spec = ParamSpec(name, arr, self._n_elements, unit=unit, description=description)
        self._specs[name] = spec
        for _ in range(arr.size):
            self._groups[len(self._parent)] = [len(self._parent)]
            self._parent.append(len(self._parent))
            self._fixed.append(False)
            self._elem_owner.append(name)
        self._n_elements += arr.size
        ref = ParamRef(name, spec.shape)
        try:
            if not isinstance(transform, Identity):
                self.bound(ref, transform)
            if fixed:
                self.fix(ref)
        except Exception:
            self._undeclare(name)  # a failed declaration leaves nothing behind
            raise
        return ref

    def _undeclare(self, name: str) -> None:
        """Remove the most recently declared parameter ``name`` (rollback of declare)."""
        spec = self._specs.pop(name)
        start = spec.offset
        for e in range(start, self._n_elements):
            self._groups.pop(e, None)
            self._elem_bounds.pop(e, None)
            self._mirror.pop(e, None)
        del self._parent[start:], self._fixed[start:], self._elem_owner[start:]
        self._n_elements = start
        self._relations = [r for r in self._relations
                           if getattr(getattr(r, "target", None), "name", None) != name]

    def __getitem__(self, name: str) -> ParamRef:
        return ParamRef(name, self._spec(name).shape)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    @property
    def names(self) -> list[str]:
        """Declared parameter names, in declaration order."""
        return list(self._specs)

    def value(self, name: str) -> np.ndarray:
        """Current (initial) value of a parameter (a copy)."""
        return self._spec(name).value.copy()

    def set_value(self, ref: RefLike, value: Any) -> None:
        """Change the initial value of a free parameter (or elements); tied members follow."""
        ref = self._ref(ref)
        try:
            vals = np.broadcast_to(np.asarray(value, dtype=float), ref.shape)
        except (TypeError, ValueError) as exc:
            raise DeclarationError(f"value for {ref.label} must be numeric with shape "
                                   f"{ref.shape}: {exc}") from None
        if not np.all(np.isfinite(vals)):
            raise DeclarationError(f"value for {ref.label} is not finite")
        pairs = list(zip(self._global(ref).ravel(), vals.ravel()))
        for e, v in pairs:  # check everything first: a failed call changes nothing
            if self._fixed[self._find(e)]:
                raise ConflictError(f"{self._elabel(e)} is fixed; use fix(ref, value) instead")
            if int(e) in self._linear or self._elem_owner[int(e)] in self._derived:
                raise ConflictError(f"{self._elabel(e)} is related or derived; set its sources")
            self._check_bound_value(e, float(v))
        for e, v in pairs:
            for m in self._members(e):
                self._write(m, float(v))

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Write fitted values into every free element named in ``values`` (a warm start).

        Fixed, related and derived elements are skipped (they follow their sources), and so
        are values on or outside an element's bounds. Unknown names are ignored.
        """
        for name, value in values.items():
            if name not in self._specs or name in self._derived:
                continue
            spec = self._specs[name]
            flat = np.broadcast_to(np.asarray(value, dtype=float), spec.shape).ravel()
            for i, v in enumerate(flat):
                e = spec.offset + i
                if self._fixed[self._find(e)] or e in self._linear or not math.isfinite(v):
                    continue
                bound = self._elem_bound(e)
                if isinstance(bound, Interval) and not bound.lo < v < bound.hi:
                    continue
                self._write(e, float(v))

    # ------------------------------------------------------------------ relations
    def tie(self, source: RefLike, *targets: RefLike) -> None:
        """Hard tie: every target shares the source's value, element by element.

        Targets take the source's current value. Shapes must match. Tying a fixed parameter to a
        free one is allowed only when their values agree.
        """
        src = self._ref(source)
        if not targets:
            raise DeclarationError(f"tie({src.label}) needs at least one target")
        tgts = tuple(self._ref(t) for t in targets)
        src_el = self._global(src)
        for tgt in tgts:
            if tgt.shape != src.shape:
                raise ShapeMismatchError(
                    f"cannot tie {tgt.label} (shape {tgt.shape}) to {src.label} "
                    f"(shape {src.shape}): shapes differ"
                )
        for ref in (src, *tgts):
            self._check_not_dependent(ref, "tie")
        journal: list[Any] = []
        try:
            for tgt in tgts:
                for s, t in zip(src_el.ravel(), self._global(tgt).ravel()):
                    self._union(int(s), int(t), journal)
        except Exception:
            self._undo_unions(journal)  # a failed tie changes nothing
            raise
        self._relations.append(Tie(src, tgts))

    def tie_groups(self, name: RefLike, groups: Iterable[Sequence[int]], axis: int = 0) -> None:
        """Tie sub-arrays of one parameter along ``axis``, group by group.

        ``reg.tie_groups("means", [[0, 1], [2, 3]])`` ties rows 0 and 1, and rows 2 and 3.
        """
        ref = self._ref(name)
        shape = ref.shape
        if not shape:
            raise DeclarationError(f"tie_groups needs an array parameter; {ref.label} is scalar")
        ax = axis if axis >= 0 else axis + len(shape)
        if not 0 <= ax < len(shape):
            raise DeclarationError(f"axis {axis} is out of range for {ref.label} of shape {shape}")
        n = shape[ax]
        groups = [list(g) for g in groups]
        for group in groups:
            group = [int(i) for i in group]
            for i in group:
                if not -n <= i < n:
                    raise DeclarationError(
                        f"tie group {group} names index {i}, but {ref.label} has {n} entries "
                        f"along axis {ax} (valid 0..{n - 1})"
                    )
            if len(set(i % n for i in group)) != len(group):
                raise DeclarationError(f"tie group {group} repeats an index")
        saved = self._save_state()
        try:
            for group in groups:
                group = [int(i) for i in group]
                if len(group) < 2:
                    continue
                index = [(slice(None),) * ax + (i,) for i in group]
                self.tie(ref[index[0]], *(ref[ix] for ix in index[1:]))
        except Exception:
            self._restore_state(saved)  # all groups or none
            raise

    def symmetric(self, name: RefLike) -> None:
        """Declare a parameter symmetric in its last two axes, e.g. covariance matrices.

        Element ``[..., i, j]`` is tied to ``[..., j, i]`` (one free value per pair, the upper
        one's value wins). Unlike two tied members, the pair are *copies* of one quantity: the
        layout counts their statistics once in :meth:`Layout.pool_stats` (each copy of an
        off-diagonal pair contributes half), so an M-step on symmetric statistics needs no
        correction for the mirror.
        """
        ref = self._ref(name)
        if ref.flat is not None:
            raise DeclarationError(f"symmetric() needs a whole parameter, got {ref.label}")
        shape = ref.shape
        if len(shape) < 2 or shape[-1] != shape[-2]:
            raise ShapeMismatchError(f"symmetric() needs square trailing axes; {ref.label} has "
                                     f"shape {shape}")
        d = shape[-1]
        saved = self._save_state()
        try:
            for idx in np.ndindex(*shape[:-2]):
                for i in range(d):
                    for j in range(i + 1, d):
                        upper, lower = ref[idx + (i, j)], ref[idx + (j, i)]
                        self.tie(upper, lower)
                        eu, el = (int(self._global(r).ravel()[0]) for r in (upper, lower))
                        self._mirror[eu], self._mirror[el] = el, eu
        except Exception:
            self._restore_state(saved)  # all pairs or none
            raise

    def affine(self, target: RefLike, source: RefLike, scale: float = 1.0,
               offset: float = 0.0) -> None:
        """``target = scale * source + offset``, element by element."""
        self.linear(target, [(scale, source)], offset=offset)

    def linear(self, target: RefLike, terms: Iterable[tuple[float, RefLike]],
               offset: Any = 0.0) -> None:
        """``target = sum_i c_i * ref_i + offset``, element by element.

        Each ``ref_i`` must have the target's shape (or be a scalar element, broadcast).
        Crystallographic special positions are this: ``x = y``, ``z = 1/4`` (no terms),
        ``Uiso(H) = 1.2 * Uiso(C)``.
        """
        tgt = self._ref(target)
        terms = [(float(c), self._ref(r)) for c, r in terms]
        for c, r in terms:
            if not math.isfinite(c):
                raise DeclarationError(f"coefficient of {r.label} in relation for {tgt.label} is "
                                       f"not finite: {c}")
            if r.shape != tgt.shape and r.size != 1:
                raise ShapeMismatchError(
                    f"cannot relate {tgt.label} (shape {tgt.shape}) to {r.label} "
                    f"(shape {r.shape}): shapes differ"
                )
            if r.name in self._derived:
                raise DeclarationError(
                    f"{r.label} is derived (non-linear); express {tgt.label} with derive() instead"
                )
        offsets = np.broadcast_to(np.asarray(offset, dtype=float), tgt.shape)
        if not np.all(np.isfinite(offsets)):
            raise DeclarationError(f"offset of relation for {tgt.label} is not finite")
        self._check_not_dependent(tgt, "relate")
        tgt_el = self._global(tgt).ravel()
        for e in tgt_el:
            e = int(e)
            if len(self._members(e)) > 1:
                raise ConflictError(f"{self._elabel(e)} is already tied; relate its source instead")
            if self._fixed[self._find(e)]:
                raise ConflictError(f"{self._elabel(e)} is fixed and cannot also be related")
            if self._elem_bound(e) is not None:
                raise ConflictError(
                    f"{self._elabel(e)} has bounds; a related parameter cannot also be bounded"
                )
        new: dict[int, tuple[tuple[tuple[float, int], ...], float]] = {}
        for k, e in enumerate(tgt_el):
            elem_terms = []
            for c, r in terms:
                r_el = self._global(r).ravel()
                elem_terms.append((c, int(r_el[0] if r.size == 1 else r_el[k])))
            new[int(e)] = (tuple(elem_terms), float(offsets.ravel()[k]))
        # cycle check at element level: no source may resolve to a target element
        for e, (elem_terms, _) in new.items():
            for _, s in elem_terms:
                if self._reaches(s, set(new), new):
                    raise CycleError(
                        f"relation {tgt.label} <- ... would make {self._elabel(e)} depend on "
                        f"itself (through {self._elabel(s)})"
                    )
        self._linear.update(new)
        relation = Linear(tgt, tuple((c, r) for c, r in terms), float(offsets.ravel()[0]))
        self._relations.append(relation)
        vals = self._resolve_values(tgt_el)
        self._warn_overrides(tgt_el, vals)
        for e, v in zip(tgt_el, vals):
            self._write(int(e), v)

    def _warn_overrides(self, elements: np.ndarray, values: Sequence[float]) -> None:
        """Warn (naming both values) when a relation replaces a declared value that differs
        beyond rounding; a declared 0 counts as a placeholder and is replaced silently."""
        changed = [(int(e), self._read(int(e)), float(v)) for e, v in zip(elements, values)]
        changed = [(e, old, new) for e, old, new in changed
                   if old != 0.0 and not math.isclose(old, new, rel_tol=1e-9, abs_tol=1e-12)]
        if not changed:
            return
        shown = "; ".join(f"{self._elabel(e)} declared {old:.10g}, the relation gives {new:.10g}"
                          for e, old, new in changed[:3])
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        warnings.warn(f"relation overrides a declared value: {shown}{more}; the related value "
                      "is used (declare it equal, or 0, to silence this)",
                      RelationOverrideWarning, stacklevel=3)

    def derive(self, target: RefLike, fn: Callable[..., Any], deps: Sequence[RefLike],
               jac: Callable[..., Any] | None = None) -> None:
        """``target = fn(*dep_values)``: a non-linear relation to whole parameters.

        ``fn`` receives the dependencies' full values (numpy arrays or torch tensors, so write it
        with operations both support, e.g. ``a * b``) and returns the target's value (its shape).
        ``jac(*dep_values)``, optional, returns ``d target / d dep`` for each dependency with
        shape ``target.shape + dep.shape``.
        """
        tgt = self._ref(target)
        if tgt.flat is not None:
            raise DeclarationError(f"derive() needs a whole parameter, got {tgt.label}")
        dep_names = []
        for d in deps:
            dref = self._ref(d)
            if dref.flat is not None:
                raise DeclarationError(f"derive() dependencies are whole parameters, got "
                                       f"{dref.label}")
            dep_names.append(dref.name)
        if not callable(fn):
            raise DeclarationError(f"derive({tgt.label}) needs a callable, got {fn!r}")
        self._check_not_dependent(tgt, "derive")
        for e in self._global(tgt).ravel():
            e = int(e)
            if len(self._members(e)) > 1 or self._fixed[self._find(e)]:
                raise ConflictError(f"{self._elabel(e)} is tied or fixed and cannot be derived")
            if self._elem_bound(e) is not None:
                raise ConflictError(
                    f"{tgt.label} has bounds; a derived parameter cannot be bounded")
        for e, (terms, _) in self._linear.items():
            if any(self._elem_owner[s] == tgt.name for _, s in terms):
                raise DeclarationError(
                    f"{self._elabel(e)} is a linear function of {tgt.name}; a linearly used "
                    f"parameter cannot be derived"
                )
        relation = Derived(tgt.name, fn, tuple(dep_names), jac)
        graph = self._derived_graph()
        graph[tgt.name] = set(dep_names)
        try:
            order = list(graphlib.TopologicalSorter(graph).static_order())
        except graphlib.CycleError as exc:
            cycle = " -> ".join(exc.args[1]) if len(exc.args) > 1 else str(exc)
            raise CycleError(f"derive({tgt.name}) creates a cycle: {cycle}") from None
        self._derived[tgt.name] = relation
        self._relations.append(relation)
        try:
            values = {n: s.value for n, s in self._specs.items()}
            for name in order:
                if name in self._derived:
                    rel = self._derived[name]
                    values[name] = np.asarray(rel.fn(*(values[d] for d in rel.deps)), float)
            try:
                out = np.broadcast_to(values[tgt.name], tgt.shape)
            except ValueError:
                raise ShapeMismatchError(
                    f"derive({tgt.name}): the function returns shape {values[tgt.name].shape}, "
                    f"but {tgt.name} has shape {tgt.shape}") from None
            if not np.all(np.isfinite(out)):
                raise DeclarationError(f"derive({tgt.name}) gives non-finite initial values")
        except Exception:
            del self._derived[tgt.name]
            self._relations.pop()
            raise
        self._specs[tgt.name].value = np.array(out, dtype=float)

    def fix(self, ref: RefLike, value: Any = None) -> None:
        """Hold a parameter (or elements) at its current value, or at ``value``."""
        ref = self._ref(ref)
        el = self._global(ref).ravel()
        if value is not None:
            try:
                vals = np.broadcast_to(np.asarray(value, dtype=float), ref.shape).ravel()
            except (TypeError, ValueError) as exc:
                raise DeclarationError(f"fixed value for {ref.label} must be numeric with shape "
                                       f"{ref.shape}: {exc}") from None
            if not np.all(np.isfinite(vals)):
                raise DeclarationError(f"fixed value for {ref.label} is not finite")
        else:
            vals = np.array([self._read(int(e)) for e in el])
        pending: dict[int, float] = {}  # root -> value; checked in full before any change
        for e, v in zip(el, vals):
            e = int(e)
            if e in self._linear or self._elem_owner[e] in self._derived:
                raise ConflictError(f"{self._elabel(e)} is related or derived; it cannot be fixed")
            root = self._find(e)
            current = pending.get(root, self._read(e))
            if (self._fixed[root] or root in pending) and \
                    not np.isclose(current, v, rtol=1e-12, atol=0.0):
                raise ConflictError(f"{self._elabel(e)} is already fixed at {current!r}"
                                    if root not in pending else
                                    f"{self._elabel(e)} is tied to an element fixed here at "
                                    f"{current!r}; it cannot also be fixed at {float(v)!r}")
            pending[root] = float(v)
        for root, v in pending.items():
            for m in self._members(root):
                self._write(m, v)
            self._fixed[root] = True
        self._relations.append(Fixed(ref, None if value is None else np.asarray(value)))

    def free(self, ref: RefLike) -> None:
        """Undo :meth:`fix` for these elements (their tie groups become free again)."""
        ref = self._ref(ref)
        for e in self._global(ref).ravel():
            self._fixed[self._find(int(e))] = False
        self._relations = [r for r in self._relations
                           if not (isinstance(r, Fixed) and r.target == ref)]

    def bound(self, ref: RefLike, bounds: Any) -> None:
        """Bound a parameter: ``(lo, hi)``, ``Interval``, ``Positive()`` or ``Simplex(axis)``."""
        ref = self._ref(ref)
        transform = _checked_transform(bounds, ref.label)
        spec = self._specs[ref.name]
        if isinstance(transform, Simplex):
            if ref.flat is not None:
                raise DeclarationError(
                    f"Simplex bounds apply to a whole parameter, got {ref.label}")
            if not spec.shape:
                raise DeclarationError(f"Simplex needs an array parameter; {ref.name} is scalar")
            ax = transform.axis if transform.axis >= 0 else transform.axis + len(spec.shape)
            if not 0 <= ax < len(spec.shape):
                raise DeclarationError(f"Simplex axis {transform.axis} out of range for "
                                       f"{ref.name} of shape {spec.shape}")
            v = spec.value
            sums = v.sum(axis=ax)
            if np.any(v < 0) or not np.allclose(sums, 1.0, atol=1e-8):
                raise DeclarationError(
                    f"initial value of {ref.name!r} is not a probability vector along axis "
                    f"{transform.axis} (entries >= 0 summing to 1); sums: {np.round(sums, 6)}"
                )
            transform = Simplex(ax)
        elif isinstance(transform, Interval):
            own = set(int(x) for x in self._global(ref).ravel())
            for e in self._global(ref).ravel():
                e = int(e)
                if e in self._linear or self._elem_owner[e] in self._derived:
                    raise ConflictError(f"{self._elabel(e)} is related or derived; bound its "
                                        "sources instead")
                v = self._read(e)
                if not transform.contains(np.array(v)):
                    raise DeclarationError(
                        f"bounds {transform.describe()} of {self._elabel(e)} exclude its initial "
                        f"value {v!r}"
                    )
                for m in self._members(e):
                    other = self._elem_bound(m) if m not in own else None
                    if other is not None and other != transform:
                        raise ConflictError(
                            f"{self._elabel(e)} is tied to {self._elabel(m)}, which has the "
                            f"bounds {other.describe()}; tied elements share one bound")
        if ref.flat is not None and not isinstance(transform, Identity):
            # element-wise bounds on part of an array are stored per element
            self._elem_bounds.update({int(e): transform for e in self._global(ref).ravel()})
        else:
            spec.transform = transform
            for e in self._global(ref).ravel():
                self._elem_bounds.pop(int(e), None)

    def restrain(self, refs: RefLike | Sequence[RefLike], strength: float,
                 target: Any = None) -> None:
        """Soft tie (a restraint), added to the objective as a penalty.

        With several ``refs`` (same shape): ``strength * sum_i (x_i - mean)^2``, pulling them
        together. With ``target``: ``strength * sum (x - target)^2`` (``strength = 1/sigma^2``
        for a restraint with standard uncertainty sigma).
        """
        if isinstance(refs, ParamRef | str):
            refs = [refs]
        rs = tuple(self._ref(r) for r in refs)
        if not math.isfinite(strength) or strength <= 0:
            raise DeclarationError(
                f"restraint strength must be positive and finite, got {strength}")
        if target is None and len(rs) < 2:
            raise DeclarationError("a soft tie needs two or more refs, or a target value")
        for r in rs[1:]:
            if r.shape != rs[0].shape:
                raise ShapeMismatchError(f"restrained {r.label} (shape {r.shape}) and "
                                         f"{rs[0].label} (shape {rs[0].shape}) differ in shape")
        tgt = None
        if target is not None:
            tgt = np.broadcast_to(np.asarray(target, dtype=float), rs[0].shape).copy()
            if not np.all(np.isfinite(tgt)):
                raise DeclarationError(f"restraint target for {rs[0].label} is not finite")
        self._restraints.append(Restraint(rs, float(strength), tgt))

    def soft_tie(self, refs: Sequence[RefLike], spread: float | None = None, *,
                 centre: str | None = None) -> ParamRef:
        """Partially pool ``refs`` around a new free centre: ``x_k ~ N(centre, spread^2)``.

        Between a hard tie (``spread = 0``) and no tie (``spread = inf``): the data of every
        member inform the centre, and the centre pulls each member as much as its own data
        leave it uncertain (see :class:`~tiedsci.core.constraints.SoftTie`).

        Parameters
        ----------
        refs : sequence of ParamRef or str
            Two or more free selections of one shape, no element twice.
        spread : float or None
            Standard deviation of the members around the centre, in their units (``0`` and
            ``math.inf`` are the exact limits); ``None`` (default) learns it from the data.
        centre : str, optional
            Name of the centre parameter to declare (default ``"soft<k>.centre"``). Its initial
            value is the members' mean.

        Returns
        -------
        ParamRef
            The centre.
        """
        if isinstance(refs, ParamRef | str):
            raise DeclarationError("a soft tie needs a sequence of two or more parameters")
        members = tuple(self._ref(r) for r in refs)
        if len(members) < 2:
            raise DeclarationError(
                f"a soft tie needs two or more parameters, got {len(members)}")
        for m in members[1:]:
            if m.shape != members[0].shape:
                raise ShapeMismatchError(
                    f"soft tie of {m.label} (shape {m.shape}) and {members[0].label} "
                    f"(shape {members[0].shape}): members must have one shape")
        seen: set[int] = set()
        for m in members:
            self._check_not_dependent(m, "soft_tie")
            for e in self._global(m).ravel():
                e = int(e)
                if e in seen:
                    raise DeclarationError(
                        f"{self._elabel(e)} appears twice in one soft tie")
                if self._fixed[self._find(e)]:
                    raise ConflictError(
                        f"{self._elabel(e)} is fixed; a soft tie pulls free parameters only")
                seen.add(e)
        if spread is not None:
            spread = float(spread)
            if math.isnan(spread) or spread < 0:
                raise DeclarationError(
                    f"soft-tie spread of {members[0].label} must be >= 0 (or None to learn "
                    f"it), got {spread}")
        name = centre if centre is not None else f"soft{len(self._soft_ties)}.centre"
        start = np.mean([self._resolved(m) for m in members], axis=0)
        ref = self.declare(name, start, description="soft-tie centre of "
                           + ", ".join(m.label for m in members))
        self._soft_ties.append(SoftTie(members, ref, spread))
        return ref

    @property
    def soft_ties(self) -> tuple[SoftTie, ...]:
        """The soft ties declared so far (see :meth:`soft_tie`)."""
        return tuple(self._soft_ties)

    def _resolved(self, ref: ParamRef) -> np.ndarray:
        """Current values of a selection, shaped like it."""
        return np.reshape([self._read(int(e)) for e in self._global(ref).ravel()], ref.shape)

    # ------------------------------------------------------------------ compile
    def compile(self) -> Layout:
        """Freeze the declarations into a :class:`~tiedsci.core.layout.Layout`."""
        from tiedsci.core.build import build_layout

        return build_layout(self)

    def copy(self) -> Registry:
        """An independent copy (relations and values), e.g. to stage a refinement."""
        new = Registry.__new__(Registry)
        new._specs = {n: ParamSpec(s.name, s.value.copy(), s.offset, s.transform, s.unit,
                                   s.description) for n, s in self._specs.items()}
        new._n_elements = self._n_elements
        new._parent = list(self._parent)
        new._fixed = list(self._fixed)
        new._elem_owner = list(self._elem_owner)
        new._linear = dict(self._linear)
        new._derived = dict(self._derived)
        new._relations = list(self._relations)
        new._restraints = list(self._restraints)
        new._soft_ties = list(self._soft_ties)
        new._elem_bounds = dict(self._elem_bounds)
        new._groups = {r: list(m) for r, m in self._groups.items()}
        new._mirror = dict(self._mirror)
        return new

    @classmethod
    def from_lmfit(cls, params: Any) -> Registry:
        """Build a registry from lmfit ``Parameters`` (see :mod:`tiedsci.core.lmfit_interop`)."""
        from tiedsci.core.lmfit_interop import registry_from_lmfit

        return registry_from_lmfit(params)

    # ------------------------------------------------------------------ internals
    def _spec(self, name: str) -> ParamSpec:
        try:
            return self._specs[name]
        except KeyError:
            guess = difflib.get_close_matches(name, list(self._specs), n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            known = ", ".join(list(self._specs)[:20]) or "none"
            raise UnknownParameterError(
                f"no parameter {name!r}{hint} (declared: {known})"
            ) from None

    def _ref(self, ref: RefLike) -> ParamRef:
        if isinstance(ref, str):
            return self[ref]
        if isinstance(ref, ParamRef):
            spec = self._spec(ref.name)
            if spec.shape != ref.param_shape:
                raise ShapeMismatchError(f"{ref.label} refers to shape {ref.param_shape} but "
                                         f"{ref.name} has shape {spec.shape}")
            return ref
        raise TypeError(f"expected a ParamRef or a parameter name, got {ref!r}")

    def _global(self, ref: ParamRef) -> np.ndarray:
        return ref.elements() + self._specs[ref.name].offset

    def _find(self, e: int) -> int:
        parent = self._parent
        root = e
        while parent[root] != root:
            root = parent[root]
        while parent[e] != root:
            parent[e], e = root, parent[e]
        return root

    def _members(self, e: int) -> list[int]:
        return self._groups[self._find(e)]

    def _union(self, src: int, tgt: int, journal: list[Any] | None = None) -> None:
        rs, rt = self._find(src), self._find(tgt)
        if rs == rt:
            return
        vs, vt = self._read(src), self._read(tgt)
        fs, ft = self._fixed[rs], self._fixed[rt]
        if (fs or ft) and not np.isclose(vs, vt, rtol=1e-12, atol=0.0):
            which = self._elabel(src) if fs else self._elabel(tgt)
            raise ConflictError(
                f"cannot tie {self._elabel(tgt)} (= {vt!r}) to {self._elabel(src)} (= {vs!r}): "
                f"{which} is fixed and the values differ"
            )
        # the bounds of the two whole groups (a member may carry them), not just these elements
        bs, bt = self._group_bound(rs), self._group_bound(rt)
        if bs is not None and bt is not None and bs != bt:
            raise ConflictError(
                f"cannot tie {self._elabel(tgt)} to {self._elabel(src)}: different bounds "
                f"{bt.describe()} and {bs.describe()}"
            )
        bound = bs if bs is not None else bt
        if isinstance(bound, Interval) and not bound.contains(np.array(vs)):
            raise ConflictError(f"tying {self._elabel(tgt)} to {self._elabel(src)} = {vs!r} "
                                f"breaks the bounds {bound.describe()} of {self._elabel(tgt)}")
        if journal is not None:
            members = self._groups[rs] + self._groups[rt]
            journal.append((rs, rt, list(self._groups[rs]), list(self._groups[rt]),
                            self._fixed[rs], [(m, self._parent[m]) for m in members],
                            [(m, self._read(m)) for m in self._groups[rt]]))
        for m in self._members(tgt):
            self._write(m, vs)
        self._parent[rt] = rs
        self._groups[rs] = self._groups[rs] + self._groups.pop(rt)
        self._fixed[rs] = fs or ft

    def _undo_unions(self, journal: list[Any]) -> None:
        """Reverse the unions recorded by :meth:`_union` (last first)."""
        for rs, rt, g_rs, g_rt, fixed_rs, parents, values in reversed(journal):
            for m, p in parents:
                self._parent[m] = p
            self._groups[rs] = g_rs
            self._groups[rt] = g_rt
            self._fixed[rs] = fixed_rs
            for m, v in values:
                self._write(m, v)

    def _save_state(self) -> Registry:
        return self.copy()

    def _restore_state(self, saved: Registry) -> None:
        self.__dict__.update(saved.__dict__)

    def _group_bound(self, root: int) -> Transform | None:
        """The bound carried by any member of the tie group of ``root`` (None if unbounded)."""
        for m in self._groups[root]:
            b = self._elem_bound(m)
            if b is not None:
                return b
        return None

    def _elem_bound(self, e: int) -> Transform | None:
        if e in self._elem_bounds:
            return self._elem_bounds[e]
        t = self._specs[self._elem_owner[e]].transform
        return None if isinstance(t, Identity) else t

    def _check_bound_value(self, e: int, v: float) -> None:
        for m in self._members(e):
            b = self._elem_bound(m)
            if isinstance(b, Interval) and not b.contains(np.array(v)):
                raise DeclarationError(f"value {v!r} is outside the bounds {b.describe()} of "
                                       f"{self._elabel(m)}")

    def _check_not_dependent(self, ref: ParamRef, what: str) -> None:
        if ref.name in self._derived:
            raise ConflictError(f"{ref.label} is derived; it cannot also be used in {what}()")
        for e in self._global(ref).ravel():
            if int(e) in self._linear:
                raise ConflictError(
                    f"{self._elabel(int(e))} is already defined by a linear relation; "
                    f"it cannot also be used in {what}()"
                )

    def _reaches(self, e: int, targets: set[int],
                 pending: Mapping[int, tuple[tuple[tuple[float, int], ...], float]]) -> bool:
        stack, seen = [e], set()
        while stack:
            x = stack.pop()
            if x in targets:
                return True
            if x in seen:
                continue
            seen.add(x)
            for m in self._members(x):
                for table in (self._linear, pending):
                    if m in table and m not in targets:
                        stack.extend(s for _, s in table[m][0])
        return False

    def _resolve_values(self, elements: Iterable[int]) -> list[float]:
        out = []
        for e in elements:
            terms, off = self._linear[int(e)]
            out.append(sum(c * self._read(s) for c, s in terms) + off)
        return out

    def _derived_graph(self) -> dict[str, set[str]]:
        return {name: set(rel.deps) for name, rel in self._derived.items()}

    def _read(self, e: int) -> float:
        spec = self._specs[self._elem_owner[e]]
        return float(spec.value.reshape(-1)[e - spec.offset])

    def _write(self, e: int, v: float) -> None:
        spec = self._specs[self._elem_owner[e]]
        flat = spec.value.reshape(-1)
        flat[e - spec.offset] = v

    def _elabel(self, e: int) -> str:
        spec = self._specs[self._elem_owner[e]]
        return element_label(spec.name, spec.shape, e - spec.offset)

    def __repr__(self) -> str:
        return f"Registry({len(self._specs)} parameters, {self._n_elements} elements)"
