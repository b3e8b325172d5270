"""Layout: the frozen map between a free vector ``theta`` and full parameter values.

Compiled from a :class:`~tiedsci.core.registry.Registry`. With ``z = t(theta)`` the bounded
values of the free tie groups (``t`` a smooth bijection per slot, softmax per simplex block),
the full flat vector is ``phi = A z + b``: ``A`` holds a 1 for every member of a tie group and
the coefficients of linear relations, ``b`` the fixed values and offsets. Derived parameters are
then evaluated in dependency order. The transpose ``A^T`` is the one pooling map of the library:
it sums per-element gradients (:meth:`Layout.pool_grad`) and per-element sufficient statistics
(:meth:`Layout.pool_stats`) over each tie group — *a tie sums*.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tiedsci.backends import backend_of, get_backend, is_torch
from tiedsci.core.constraints import Derived, Restraint, SoftTie
from tiedsci.errors import (
    NotPoolableError,
    PackingError,
    ShapeMismatchError,
    UnknownParameterError,
)

if TYPE_CHECKING:
    from tiedsci.core.refs import ParamRef
    from tiedsci.core.registry import Registry

__all__ = ["Layout"]

FREE, FIXED, LINEAR, DERIVED = 0, 1, 2, 3
_TINY = 1e-300


@dataclass(frozen=True)
class _Block:
    """Simplex blocks of one size ``k``: theta indices (nb, k-1), z indices (nb, k), mass (nb,)."""

    k: int
    theta_idx: np.ndarray
    z_idx: np.ndarray
    mass: np.ndarray


@dataclass(frozen=True, eq=False)
class Layout:
    """Frozen result of :meth:`Registry.compile`; see the module docstring for the maps.

    The public surface is the attributes below and the methods; every field with a leading
    underscore is private to :mod:`tiedsci.core` (a test enforces it).

    Attributes
    ----------
    names : tuple of str
        Declared parameter names, in declaration order.
    shapes : dict
        ``name -> shape``.
    n_free : int
        True number of free parameters (length of ``theta``), for AIC/BIC and reduced chi^2.
    theta0 : ndarray, shape (n_free,)
        Free vector of the declared (initial) values.
    free_names : tuple of str
        Label of the element each entry of ``theta`` stands for (its representative).
    units, descriptions : dict
        ``name -> str`` as declared.
    restraints : tuple of Restraint
        The restraints (penalties of fixed strength), as declared.
    soft_ties : tuple of SoftTie
        The partial-pooling groups (members around a free centre, spread given or learned),
        as declared by :meth:`~tiedsci.core.Registry.soft_tie`.
    structure : object or None
        A token shared by every layout compiled from the same declarations and fixed values
        (whatever the free values): what a domain may key its own per-structure caches on.
        ``None`` when the structure is not cached (derived relations, restraints, soft ties).
    """

    names: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    n_free: int
    free_names: tuple[str, ...]
    theta0: np.ndarray
    units: dict[str, str]
    descriptions: dict[str, str]
    restraints: tuple[Restraint, ...]
    soft_ties: tuple[SoftTie, ...]
    # ---- private: element level, shape (n_elements,)
    _offsets: dict[str, int] = field(repr=False)
    _n_elements: int = field(repr=False)
    _kind: np.ndarray = field(repr=False)
    _root: np.ndarray = field(repr=False)
    _zslot: np.ndarray = field(repr=False)  # z slot of the element's group (-1 unless free)
    _labels: tuple[str, ...] = field(repr=False)
    _status: tuple[str, ...] = field(repr=False)
    _bounds_text: tuple[str, ...] = field(repr=False)
    # ---- private: linear map phi = A z + b
    _a_rows: np.ndarray = field(repr=False)
    _a_cols: np.ndarray = field(repr=False)
    _a_vals: np.ndarray = field(repr=False)
    _b: np.ndarray = field(repr=False)
    _n_z: int = field(repr=False)
    # ---- private: transforms z = t(theta)
    _slot_theta: dict[str, np.ndarray] = field(repr=False)
    _slot_z: dict[str, np.ndarray] = field(repr=False)
    _slot_lo: dict[str, np.ndarray] = field(repr=False)
    _slot_hi: dict[str, np.ndarray] = field(repr=False)
    _blocks: tuple[_Block, ...] = field(repr=False)
    _z_perm_inverse: np.ndarray = field(repr=False)
    _z_theta: tuple[tuple[int, ...], ...] = field(repr=False)  # theta indices of each z slot
    _free_rep: np.ndarray = field(repr=False)  # element each theta entry stands for
    _copy_weight: np.ndarray = field(repr=False)  # 1/2 for mirror copies, else 1
    _derived: tuple[Derived, ...] = field(repr=False)  # in dependency order
    _restraint_elements: tuple[tuple[np.ndarray, ...], ...] = field(repr=False)
    _a_csr: Any = field(repr=False)
    _values0: dict[str, np.ndarray] = field(repr=False)
    _registry: Any = field(repr=False)  # a private copy of the declaration, for freeze()
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)
    structure: object | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ basic info
    @property
    def values0(self) -> dict[str, np.ndarray]:
        """Full values at ``theta0`` (copies)."""
        return {k: v.copy() for k, v in self._values0.items()}

    @property
    def groups(self) -> list[list[str]]:
        """Hard-tie groups with two or more elements, as element labels."""
        out: dict[int, list[str]] = {}
        for e in range(self._n_elements):
            if self._kind[e] in (FREE, FIXED):
                out.setdefault(int(self._root[e]), []).append(self._labels[e])
        return [g for g in out.values() if len(g) > 1]

    @property
    def n_values(self) -> int:
        """Length of the flat value vector: every element of every parameter."""
        return self._n_elements

    def size(self, name: str) -> int:
        """Number of elements of parameter ``name``."""
        self._check_name(name)
        return int(math.prod(self.shapes[name]))

    def flat_slice(self, name: str) -> slice:
        """Where ``name`` sits in the flat value vector (declaration order, C order inside)."""
        n = self.size(name)  # checks the name
        return slice(self._offsets[name], self._offsets[name] + n)

    def flatten(self, values: Mapping[str, Any]) -> Any:
        """Concatenate ``values`` (every name) into the flat vector, shape (n_values,).

        numpy arrays give a float64 numpy vector; torch tensors a (differentiable) tensor.
        """
        first = values[self.names[0]]
        if not is_torch(first):
            return np.concatenate([np.asarray(values[n], dtype=float).ravel()
                                   for n in self.names])
        be = backend_of(first)
        return be.concat([be.reshape(values[n], (-1,)) for n in self.names])

    def unflatten(self, flat: Any, names: Sequence[str] | None = None) -> dict[str, Any]:
        """Split a flat vector into ``name -> array`` of the declared shapes.

        With ``names``, ``flat`` holds only those parameters, concatenated in that order.
        """
        out: dict[str, Any] = {}
        start = 0
        for name in self.names if names is None else names:
            n = self.size(name)
            out[name] = flat[start:start + n].reshape(self.shapes[name])
            start += n
        return out

    def fixed_mask(self, name: str) -> np.ndarray:
        """Elements of ``name`` held fixed (alone or through a fixed tie group); param shape."""
        return (self._kind[self.flat_slice(name)] == FIXED).reshape(self.shapes[name])

    def free_mask(self, name: str) -> np.ndarray:
        """Elements of ``name`` that carry a free value (their own or their tie group's).

        Neither fixed nor defined by a linear or derived relation; param shape.
        """
        return (self._kind[self.flat_slice(name)] == FREE).reshape(self.shapes[name])

    def unbounded_mask(self) -> np.ndarray:
        """Free parameters without a bound transform (``theta`` is the value itself), shape
        (n_free,); False for bounded ones and for simplex coordinates."""
        out = np.zeros(self.n_free, dtype=bool)
        out[self._slot_theta["identity"]] = True
        return out

    @property
    def has_derived(self) -> bool:
        """Whether any parameter is defined by a derived (non-linear) relation; without one,
        the values are affine in the free values and ``jacobian`` is ``A dz/dtheta``."""
        return bool(self._derived)

    def depends_on(self, name: str) -> np.ndarray:
        """Indices of ``theta`` that influence parameter ``name`` (sorted)."""
        self._check_name(name)
        deps: set[int] = set()
        todo = [name]
        seen = set()
        derived = {d.target: d for d in self._derived}
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in derived:
                todo.extend(derived[n].deps)
                continue
            off, size = self._offsets[n], math.prod(self.shapes[n])
            ptr = self._a_csr.indptr  # the rows' column indices, without slicing the matrix
            for z in np.unique(self._a_csr.indices[ptr[off]:ptr[off + size]]):
                deps.update(self._z_theta[int(z)])
        return np.array(sorted(deps), dtype=np.intp)

    # ------------------------------------------------------------------ maps
    def unpack(self, theta: Any, backend: Any = None) -> dict[str, Any]:
        """Free vector -> full values.

        Parameters
        ----------
        theta : array, shape (n_free,)
            numpy array or torch tensor; with torch the result is differentiable and stays on
            ``theta``'s device and dtype.
        backend : optional
            Force a backend (``"numpy"``, ``"torch"`` or an instance); default: that of ``theta``.

        Returns
        -------
        dict
            ``name -> array`` of the declared shape, for every parameter.
        """
        be = get_backend(backend) if backend is not None else backend_of(theta)
        theta = be.asarray(theta)
        if tuple(theta.shape) != (self.n_free,):
            raise ShapeMismatchError(
                f"theta has shape {tuple(theta.shape)}, expected ({self.n_free},) "
                f"(the layout's n_free)"
            )
        flat = self._flat_values(theta, be)
        values: dict[str, Any] = {}
        for name in self.names:
            off, shape = self._offsets[name], self.shapes[name]
            values[name] = be.reshape(flat[off:off + math.prod(shape)], shape)
        for rel in self._derived:
            out = rel.fn(*(values[d] for d in rel.deps))
            values[rel.target] = be.asarray(out) + be.zeros(self.shapes[rel.target])
        return values

    def _z(self, theta: Any, be: Any) -> Any:
        pieces = []
        if self._slot_theta["identity"].size:
            pieces.append(be.take(theta, self._slot_theta["identity"]))
        if self._slot_theta["lower"].size:
            t = be.take(theta, self._slot_theta["lower"])
            pieces.append(be.asarray(self._slot_lo["lower"]) + be.exp(t))
        if self._slot_theta["upper"].size:
            t = be.take(theta, self._slot_theta["upper"])
            pieces.append(be.asarray(self._slot_hi["upper"]) - be.exp(t))
        if self._slot_theta["interval"].size:
            t = be.take(theta, self._slot_theta["interval"])
            lo = be.asarray(self._slot_lo["interval"])
            hi = be.asarray(self._slot_hi["interval"])
            pieces.append(lo + (hi - lo) * be.sigmoid(t))
        for blk in self._blocks:
            nb = blk.z_idx.shape[0]
            if blk.k > 1:
                t = be.reshape(be.take(theta, blk.theta_idx.ravel()), (nb, blk.k - 1))
                u = be.concat([t, be.zeros((nb, 1))], axis=1)
            else:
                u = be.zeros((nb, 1))
            p = be.softmax(u, axis=1) * be.reshape(be.asarray(blk.mass), (nb, 1))
            pieces.append(be.reshape(p, (nb * blk.k,)))
        if not pieces:
            return be.zeros((0,))
        return be.take(be.concat(pieces), self._z_perm_inverse)

    def _flat_values(self, theta: Any, be: Any) -> Any:
        b = be.asarray(self._b)
        if self._n_z == 0 or self._a_rows.size == 0:
            return b
        z = self._z(theta, be)
        contrib = be.asarray(self._a_vals) * be.take(z, self._a_cols)
        return b + be.index_add(self._n_elements, self._a_rows, contrib)

    def pack(self, values: Mapping[str, Any], *, atol: float = 1e-8, rtol: float = 1e-8) -> Any:
        """Full values -> free vector (the inverse of :meth:`unpack`).

        Parameters
        ----------
        values : mapping
            ``name -> array``; names not given keep their current (``theta0``) values. Fixed and
            derived entries are ignored.
        atol, rtol : float
            Tolerance within which tied members and linear relations must agree.

        Raises
        ------
        PackingError
            When tied members disagree, a linear relation is broken, a value is outside its
            bounds or a simplex row does not sum to its free mass.
        """
        flat = np.concatenate([self._values0[n].ravel() for n in self.names])
        given = np.zeros(self._n_elements, dtype=bool)
        as_torch = None
        for name, val in values.items():
            self._check_name(name)
            if is_torch(val):
                as_torch = val
            arr = get_backend("numpy").asarray(val)
            if arr.shape != self.shapes[name]:
                raise ShapeMismatchError(f"value for {name!r} has shape {arr.shape}, expected "
                                         f"{self.shapes[name]}")
            if not np.all(np.isfinite(arr)):
                idx = np.argwhere(~np.isfinite(arr))[0]
                raise PackingError(f"value for {name!r} is not finite at index {tuple(idx)}")
            off = self._offsets[name]
            flat[off:off + arr.size] = arr.ravel()
            given[off:off + arr.size] = True
        free = (self._kind == FREE)
        # every tie group must agree: compare each given member with its group's first one
        z = np.full(self._n_z, np.nan)
        z_src = np.full(self._n_z, -1)
        for e in np.flatnonzero(free & given):
            s = self._zslot[e]
            if z_src[s] < 0:
                z[s], z_src[s] = flat[e], e
            elif abs(flat[e] - z[s]) > atol + rtol * abs(z[s]):
                raise PackingError(
                    f"tied members disagree: {self._labels[z_src[s]]} = {float(z[s])!r} but "
                    f"{self._labels[e]} = {float(flat[e])!r} (they share one free value)"
                )
        missing = np.isnan(z)
        if missing.any():
            z0 = self._z(self.theta0, get_backend("numpy"))
            z[missing] = z0[missing]
        theta = self._inverse_transform(z)
        if missing.all() and not given.any():
            theta = self.theta0.copy()
        # linear relations and simplex normalisation: recompute and compare what was given
        check = np.flatnonzero(given & (self._kind != FIXED) & (self._kind != DERIVED))
        if check.size:
            recomputed = self._flat_values(theta, get_backend("numpy"))
            bad = np.abs(recomputed[check] - flat[check]) > atol + rtol * np.abs(flat[check])
            if bad.any():
                e = int(check[np.argmax(bad)])
                raise PackingError(
                    f"{self._labels[e]} = {float(flat[e])!r} breaks its constraint "
                    f"({self._status[e]}"
                    f"{', ' + self._bounds_text[e] if self._bounds_text[e] else ''}): "
                    f"the packed value gives {float(recomputed[e])!r}"
                )
        if as_torch is not None:
            return backend_of(as_torch).asarray(theta)
        return theta

    def _inverse_transform(self, z: np.ndarray) -> np.ndarray:
        theta = np.zeros(self.n_free)
        st, sz = self._slot_theta, self._slot_z
        theta[st["identity"]] = z[sz["identity"]]
        for kind in ("lower", "upper", "interval"):
            if not st[kind].size:
                continue
            v = z[sz[kind]]
            lo, hi = self._slot_lo[kind], self._slot_hi[kind]
            outside = (v < lo) | (v > hi)
            if outside.any():
                i = int(np.argmax(outside))
                e = int(np.flatnonzero(self._zslot == sz[kind][i])[0])
                raise PackingError(f"{self._labels[e]} = {float(v[i])!r} is outside its bounds "
                                   f"{self._bounds_text[e]}")
            if kind == "lower":
                theta[st[kind]] = np.log(np.maximum(v - lo, _TINY))
            elif kind == "upper":
                theta[st[kind]] = np.log(np.maximum(hi - v, _TINY))
            else:
                u = np.clip((v - lo) / (hi - lo), 1e-15, 1 - 1e-15)
                theta[st[kind]] = np.log(u) - np.log1p(-u)
        for blk in self._blocks:
            p = z[blk.z_idx]
            total = p.sum(axis=1)
            off = np.abs(total - blk.mass) > 1e-6 * np.maximum(1, blk.mass)
            bad = (p < -1e-10).any(axis=1) | off
            if bad.any():
                i = int(np.argmax(bad))
                e = int(np.flatnonzero(self._zslot == blk.z_idx[i, 0])[0])
                raise PackingError(
                    f"simplex row starting at {self._labels[e]} is not a probability vector: "
                    f"entries {p[i]} sum to {float(total[i])!r}, expected {float(blk.mass[i])!r}"
                )
            if blk.k > 1:
                p = np.maximum(p, _TINY)
                t = np.log(p[:, :-1]) - np.log(p[:, -1:])
                theta[blk.theta_idx.ravel()] = t.ravel()
        return theta

    # ------------------------------------------------------------------ pooling
    def pool_grad(self, grads: Mapping[str, Any], theta: Any = None) -> np.ndarray:
        """Chain rule from per-parameter gradients to the free vector.

        Parameters
        ----------
        grads : mapping
            ``name -> dL/d value`` (the parameter's shape); missing names count as zero.
        theta : array, shape (n_free,), optional
            Where to evaluate (default ``theta0``).

        Returns
        -------
        ndarray, shape (n_free,)
            ``dL/dtheta``: derived parameters pulled back through their Jacobian (user ``jac`` or
            central differences), then ``A^T`` (a tie sums), then the transforms' derivatives.
        """
        np_be = get_backend("numpy")
        theta = self.theta0 if theta is None else np_be.asarray(theta)
        g = {n: np.zeros(self.shapes[n]) for n in self.names}
        for name, val in grads.items():
            self._check_name(name)
            arr = np_be.asarray(val)
            if arr.shape != self.shapes[name]:
                raise ShapeMismatchError(f"gradient for {name!r} has shape {arr.shape}, "
                                         f"expected {self.shapes[name]}")
            g[name] = g[name] + arr
        if self._derived:
            values = self.unpack(theta, backend="numpy")
            for rel in reversed(self._derived):
                g_t = g[rel.target]
                if np.any(g_t):
                    for dep, jac in zip(rel.deps, _derived_jacobians(rel, values)):
                        g[dep] = g[dep] + np.tensordot(g_t, jac, axes=g_t.ndim)
                g[rel.target] = np.zeros(self.shapes[rel.target])
        g_phi = np.concatenate([g[n].ravel() for n in self.names])
        g_z = self._a_csr.T @ g_phi
        return self._transform_vjp(theta, g_z)

    def _transform_vjp(self, theta: np.ndarray, g_z: np.ndarray) -> np.ndarray:
        out = np.zeros(self.n_free)
        st, sz = self._slot_theta, self._slot_z
        out[st["identity"]] = g_z[sz["identity"]]
        t = theta[st["lower"]]
        out[st["lower"]] = g_z[sz["lower"]] * np.exp(t)
        t = theta[st["upper"]]
        out[st["upper"]] = -g_z[sz["upper"]] * np.exp(t)
        t = theta[st["interval"]]
        s = 1.0 / (1.0 + np.exp(-t))
        span = self._slot_hi["interval"] - self._slot_lo["interval"]
        out[st["interval"]] = g_z[sz["interval"]] * span * s * (1 - s)
        for blk in self._blocks:
            if blk.k == 1:
                continue
            p = _block_softmax(blk, theta)
            gz = g_z[blk.z_idx]
            gu = blk.mass[:, None] * p * (gz - (p * gz).sum(axis=1, keepdims=True))
            out[blk.theta_idx.ravel()] = gu[:, :-1].ravel()
        return out

    def pool_stats(self, stats: Mapping[str, Any], *, unit_axes: int = 0) -> dict[str, Any]:
        """Sum sufficient statistics over each hard-tie group (the transpose of the tie map).

        Parameters
        ----------
        stats : mapping
            ``name -> array`` of shape ``lead + stat_shape``, where ``lead`` is the parameter's
            shape without its last ``unit_axes`` axes (one ``stat_shape`` for all entries),
            numpy or torch. Every member of a tie group touched must be included.
        unit_axes : int
            ``0``: one statistic per element. ``k > 0``: one statistic per *unit*, a sub-array
            over the parameter's last ``k`` axes (e.g. ``1`` for a whole mean vector, when its
            M-step couples the coordinates). The ties must then map whole units onto whole
            units, position by position; otherwise :class:`NotPoolableError`.

        Returns
        -------
        dict
            Same keys and shapes; each element (or unit) holds the sum of its group's
            statistics, so an unchanged per-element M-step gives every member the pooled
            estimate.
            When no element of the given parameters is tied (nor a mirror copy), pooling is the
            identity and the given arrays are returned as they are (not copied).

        Notes
        -----
        Mirror copies declared with :meth:`Registry.symmetric` (``[..., i, j]`` and
        ``[..., j, i]``) are one quantity, not two members: each contributes half, so the
        statistics of a symmetric matrix are counted once per matrix.

        Raises
        ------
        NotPoolableError
            For elements defined by a linear (scaled) or derived relation, when a group
            member's statistics are missing, or (``unit_axes > 0``) when ties split a unit.
        """
        if not stats:
            return {}
        items = list(stats.items())
        be = backend_of(items[0][1])
        stat_shape = None
        checked = []
        for name, val in items:
            val, lead, rest = self._stat_shapes(name, be.asarray(val), unit_axes)
            if stat_shape is None:
                stat_shape = rest
            elif rest != stat_shape:
                raise ShapeMismatchError(f"statistics for {name!r} have trailing shape {rest}, "
                                         f"other entries {stat_shape}; pool one kind per call")
            checked.append((name, val, lead))
        if all(self._untied(name) for name, _, _ in checked):
            return {name: val for name, val, _ in checked}  # every group has one member
        flats, units = [], []
        for name, val, lead in checked:
            el = self._poolable_elements(name).reshape(int(np.prod(lead, dtype=int)), -1)
            flat = be.reshape(val, (el.shape[0],) + stat_shape)
            w = self._copy_weight[el[:, 0]]
            if el.shape[1] == 1 and np.any(w != 1.0):
                flat = flat * be.reshape(be.asarray(w), (-1,) + (1,) * len(stat_shape))
            flats.append(flat)
            units.append(el)
        gid, n_groups = self._unit_groups(np.concatenate(units), [n for n, _ in items])
        pooled = be.take(be.index_add(n_groups, gid, be.concat(flats, axis=0)), gid)
        out: dict[str, Any] = {}
        start = 0
        for (name, val), el in zip(items, units):
            lead = tuple(val.shape[:len(self.shapes[name]) - unit_axes])
            out[name] = be.reshape(pooled[start:start + el.shape[0]], lead + stat_shape)
            start += el.shape[0]
        return out

    def _stat_shapes(self, name: str, val: Any, unit_axes: int
                     ) -> tuple[Any, tuple[int, ...], tuple[int, ...]]:
        """Check ``val`` against ``name``'s shape less ``unit_axes``; (val, lead, stat_shape)."""
        self._check_name(name)
        shape = self.shapes[name]
        if not 0 <= unit_axes <= len(shape):
            raise ShapeMismatchError(f"unit_axes={unit_axes} is out of range for {name!r} of "
                                     f"shape {shape}")
        lead = shape[:len(shape) - unit_axes]
        if tuple(val.shape[:len(lead)]) != lead:
            what = "parameter's shape" if not unit_axes else f"shape less its last {unit_axes} axes"
            raise ShapeMismatchError(f"statistics for {name!r} have shape {tuple(val.shape)}; "
                                     f"they must start with the {what} {lead}")
        return val, lead, tuple(val.shape[len(lead):])

    def _untied(self, name: str) -> bool:
        """True when every element of ``name`` is poolable and alone in its group (no tie, no
        mirror copy): pooling its statistics is the identity (cached per name)."""
        key = ("untied", name)
        if key not in self._cache:
            el = self._poolable_elements(name).ravel()
            self._cache[key] = bool(np.all(self._group_sizes()[self._root[el]] == 1)
                                    and np.all(self._copy_weight[el] == 1.0))
        return self._cache[key]

    def _group_sizes(self) -> np.ndarray:
        """Number of elements in each element's tie group, indexed by root (cached)."""
        if "group_size" not in self._cache:
            self._cache["group_size"] = np.bincount(self._root, minlength=self._n_elements)
        return self._cache["group_size"]

    def _poolable_elements(self, name: str) -> np.ndarray:
        """Element indices of ``name`` (param shape); none may be linear or derived."""
        sl = self.flat_slice(name)
        el = np.arange(sl.start, sl.stop).reshape(self.shapes[name])
        bad = (self._kind[el] == LINEAR) | (self._kind[el] == DERIVED)
        if bad.any():
            e = int(el[np.unravel_index(int(np.argmax(bad)), el.shape)])
            raise NotPoolableError(
                f"{self._labels[e]} is {self._status[e]!r}: statistics cannot be pooled "
                "through a scaled or derived relation (no closed-form M-step); use a gradient "
                "M-step")
        return el

    def _soft_centre_elements(self) -> set[int]:
        """Element ids of the soft-tie centres (tied to their members at spread 0)."""
        key = "soft_centre_elements"
        if key not in self._cache:
            self._cache[key] = {self._offsets[t.centre.name] + int(e)
                                for t in self.soft_ties for e in t.centre.elements().ravel()}
        return self._cache[key]

    def _unit_groups(self, units: np.ndarray, names: list[str]) -> tuple[np.ndarray, int]:
        """Group id of each unit (rows of element indices) and the number of groups."""
        roots = self._root[units]
        if units.shape[1] == 1:  # per element: the fast 1-D path
            uniq, gid, counts = np.unique(roots[:, 0], return_inverse=True, return_counts=True)
            uniq = uniq[:, None]
        else:
            uniq, gid, counts = np.unique(roots, axis=0, return_inverse=True, return_counts=True)
        gid = np.asarray(gid).reshape(-1)
        if units.shape[1] > 1 and np.unique(uniq).size != uniq.size:
            raise NotPoolableError(
                f"the ties of {names} do not map whole units (sub-arrays over the last "
                "axes) onto whole units, position by position; pool per element "
                "(unit_axes=0) or tie whole units")
        group_size = self._group_sizes()[uniq]
        short = np.any(group_size != counts[:, None], axis=1)
        if short.any():
            given = set(units.ravel().tolist())
            centres = self._soft_centre_elements()
            for i in np.flatnonzero(short):
                for k in np.flatnonzero(group_size[i] != counts[i]):
                    members = np.flatnonzero(self._root == uniq[i, k])
                    missing = [int(m) for m in members if int(m) not in given]
                    if all(m in centres for m in missing):
                        continue  # a soft-tie centre (spread 0) has no data of its own
                    raise NotPoolableError(
                        f"tie group {[self._labels[m] for m in members]} is only partly "
                        f"given: statistics for {[self._labels[m] for m in missing]} are "
                        "missing")
        return gid, len(uniq)

    # ------------------------------------------------------------------ derivatives
    def jacobian(self, theta: Any, *, method: str | None = None, dense: bool = False
                 ) -> Any:
        """``d flat values / d theta``, exactly, as a sparse matrix (or dense).

        Parameters
        ----------
        theta : array, shape (n_free,)
        method : {None, "torch", "fd"}
            ``None``: without derived relations the exact product ``A dz/dtheta`` of the
            affine tie map and the bound transforms' derivative (numpy, no autodiff); with
            them forward-mode autodiff (torch) with coloured tangents, or central
            differences when a derived relation runs on numpy only. The colouring (free
            parameters no parameter depends on jointly share a tangent) is built once per
            layout.
        dense : bool
            Return a dense array (for small layouts, where building a sparse matrix costs
            more than the numbers in it).

        Returns
        -------
        scipy.sparse.csr_matrix or ndarray, shape (n_values, n_free)
            Row ``e`` of parameter ``name`` is ``flat_slice(name).start + i``.
        """
        from tiedsci.core.jacobian import JacobianPlan

        if method is None and not self._derived:
            # values = A z(theta) + b: the exact map is A dz/dtheta, no autodiff needed
            theta = np.asarray(theta, dtype=float)
            if self._blocks:
                jac = sp.csr_matrix(self._a_csr @ self._dz_dtheta(theta))
                return jac.toarray() if dense else jac
            # one theta entry per z slot: scale A's entries and relabel its columns
            rows, cols, vals = self._dz_entries(theta)
            col, val = np.zeros(self._n_z, dtype=np.intp), np.zeros(self._n_z)
            for r, c, v in zip(rows, cols, vals):
                col[r], val[r] = c, v
            if dense:  # each (row, z) once, and z -> theta one to one: plain assignment
                out = np.zeros((self._n_elements, self.n_free))
                out[self._a_rows, col[self._a_cols]] = self._a_vals * val[self._a_cols]
                return out
            a = self._a_csr
            return sp.csr_matrix((a.data * val[a.indices], col[a.indices], a.indptr),
                                 shape=(self._n_elements, self.n_free))
        key = f"jacobian:{method}"
        if key not in self._cache:
            self._cache[key] = JacobianPlan.build(self, method)
        jac = self._cache[key](np.asarray(theta, dtype=float))
        return jac.toarray() if dense else jac

    def _dz_entries(self, theta: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray],
                                                      list[np.ndarray]]:
        """``(rows, cols, vals)`` of ``dz/dtheta`` for the element-wise transforms."""
        st, sz = self._slot_theta, self._slot_z
        t = {k: theta[st[k]] for k in st}
        s = 1.0 / (1.0 + np.exp(-t["interval"]))
        rows = [sz["identity"], sz["lower"], sz["upper"], sz["interval"]]
        cols = [st["identity"], st["lower"], st["upper"], st["interval"]]
        vals = [np.ones(st["identity"].size), np.exp(t["lower"]), -np.exp(t["upper"]),
                (self._slot_hi["interval"] - self._slot_lo["interval"]) * s * (1 - s)]
        return rows, cols, vals

    def _dz_dtheta(self, theta: np.ndarray) -> sp.csr_matrix:
        """Derivative of the free group values ``z`` w.r.t. theta, shape (n_z, n_free)."""
        rows, cols, vals = self._dz_entries(theta)
        for blk in self._blocks:
            if blk.k == 1:
                continue
            p = _block_softmax(blk, theta)
            # dz_a / dtheta_b = mass p_a (delta_ab - p_b), b < k - 1
            d = blk.mass[:, None, None] * p[:, :, None] * (
                np.eye(blk.k)[None, :, :blk.k - 1] - p[:, None, :blk.k - 1])
            rows.append(np.repeat(blk.z_idx, blk.k - 1, axis=1).ravel())
            cols.append(np.tile(blk.theta_idx, (1, blk.k)).ravel())
            vals.append(d.ravel())
        return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(self._n_z, self.n_free))

    def transform_derivative(self, theta: Any) -> sp.csr_matrix:
        """Derivative of each free parameter's value w.r.t. theta (the bound transforms).

        Entry ``(i, j)`` is ``d value(free_names[i]) / d theta[j]``: diagonal for unbounded and
        interval-bounded parameters (``1``, ``exp``, a scaled logistic), a dense block per
        simplex row. A covariance of theta maps to the free values as ``T C T^T``.

        Returns
        -------
        scipy.sparse.csr_matrix, shape (n_free, n_free)
        """
        dz = self._dz_dtheta(np.asarray(theta, dtype=float))
        return dz[self._zslot[self._free_rep]]

    def transform_diagonal(self, theta: Any) -> np.ndarray:
        """The diagonal of :meth:`transform_derivative`, shape (n_free,).

        Without simplex blocks the derivative is diagonal and this is all of it, computed
        without building the sparse matrix (which, for the few parameters of an everyday
        fit, costs far more than the numbers: LM asks for it at every step).
        """
        theta = np.asarray(theta, dtype=float)
        if theta.shape != (self.n_free,):
            raise ShapeMismatchError(f"theta has shape {theta.shape}, expected ({self.n_free},) "
                                     "(the layout's n_free)")
        if self._blocks:
            return np.asarray(self.transform_derivative(theta).diagonal())
        out = np.ones(self.n_free)
        _, cols, vals = self._dz_entries(theta)
        for c, v in zip(cols, vals):
            out[c] = v
        return out

    def at_bounds(self, theta: Any, tol: float = 1e-6) -> np.ndarray:
        """Which free parameters sit on (within ``tol`` of) a bound.

        A half-bounded parameter is at its bound when ``exp(theta) < tol * max(1, |bound|)``;
        an interval-bounded one when its logistic is below ``tol`` or above ``1 - tol``.

        Returns
        -------
        ndarray of int8, shape (n_free,)
            ``-1`` at the lower bound, ``+1`` at the upper bound, ``0`` inside.
        """
        theta = np.asarray(theta, dtype=float)
        out = np.zeros(self.n_free, dtype=np.int8)
        st = self._slot_theta
        for kind, side in (("lower", -1), ("upper", 1)):
            ref = np.maximum(1.0, np.abs(self._slot_lo[kind] if side < 0 else
                                         self._slot_hi[kind]))
            out[st[kind][np.exp(theta[st[kind]]) < tol * ref]] = side
        u = 1.0 / (1.0 + np.exp(-theta[st["interval"]]))
        out[st["interval"][u < tol]] = -1
        out[st["interval"][u > 1 - tol]] = 1
        return out

    def propagate_covariance(self, cov_theta: np.ndarray | None, theta: Any
                             ) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Covariance of theta -> variances of every value and covariance of the free values.

        Parameters
        ----------
        cov_theta : ndarray, shape (n_free, n_free), or None
            ``None`` (e.g. a singular normal matrix) gives NaN except 0 for fixed elements.
        theta : array, shape (n_free,)

        Returns
        -------
        variances : dict
            ``name -> array`` (param shape): ``diag(J C J^T)`` with ``J`` = :meth:`jacobian`,
            so tied members, linear and derived parameters get their propagated variance.
        cov_free : ndarray, shape (n_free, n_free)
            Covariance among the values of the free parameters (``free_names``).
        """
        n = self.n_free
        if cov_theta is None:
            var = np.full(self._n_elements, np.nan)
            var[self._kind == FIXED] = 0.0
            cov_free = np.full((n, n), np.nan)
        else:
            # small: dense products are cheaper
            dv = self.jacobian(theta, dense=self._n_elements * n <= 4096)
            a = dv @ cov_theta
            prod = dv * a if isinstance(dv, np.ndarray) else dv.multiply(a)
            var = np.clip(np.asarray(prod.sum(axis=1)).ravel(), 0.0, None)
            sub = dv[self._free_rep]
            cov_rows = np.asarray(sub @ (sub @ cov_theta).T)
            cov_free = 0.5 * (cov_rows + cov_rows.T)
        return {name: var[self.flat_slice(name)].reshape(self.shapes[name])
                for name in self.names}, cov_free

    # ------------------------------------------------------------------ staging
    def freeze(self, vary: Iterable[str | ParamRef],
               values: Mapping[str, Any] | None = None) -> Layout:
        """A new layout in which only the tie groups touched by ``vary`` stay free.

        Every other free tie group is fixed at ``values``; ties, bounds and relations are
        kept, so a tie group varies when any of its members is selected and fixed members of
        a group stay exactly equal. For staged fits.

        Parameters
        ----------
        vary : iterable of str or ParamRef
            Whole parameters (names) or element selections (``ref[0]``).
        values : mapping, optional
            Current values (``name -> array``); names not given keep ``values0``.

        Returns
        -------
        Layout
            With ``n_free`` the number of selected free tie groups (simplex rows count
            ``k - 1``).
        """
        vals = self.values0
        vals.update({k: np.asarray(v, dtype=float) for k, v in (values or {}).items()})
        reg = self._registry.copy()
        selected = self._selected_roots(vary)
        self._set_free_values(reg, vals)
        fixed_roots: set[int] = set()
        for name in self.names:
            shape = self.shapes[name]
            off = self._offsets[name]
            for i in range(self.size(name)):
                r = int(self._root[off + i])
                if self._kind[off + i] != FREE or r in selected or r in fixed_roots:
                    continue
                reg.fix(reg[name] if shape == () else reg[name][np.unravel_index(i, shape)])
                fixed_roots.add(r)
        return reg.compile()

    def to_registry(self, values: Mapping[str, Any] | None = None) -> Registry:
        """A copy of the declaration this layout was compiled from, free values set.

        For a layout made by :meth:`freeze` the frozen parameters stay fixed, so the
        registry compiles to this layout's ``n_free`` (e.g. to derive a candidate model from
        the last stage of a staged fit). ``values`` (``name -> array``, e.g. fitted ones) are
        written into every free element (:meth:`Registry.set_values`).
        """
        reg = self._registry.copy()
        if values is not None:
            reg.set_values(values)
        return reg

    def _selected_roots(self, vary: Iterable[str | ParamRef]) -> set[int]:
        out: set[int] = set()
        for item in vary:
            name = item if isinstance(item, str) else item.name
            off = self.flat_slice(name).start
            el = (np.arange(self.size(name)) if isinstance(item, str)
                  else np.asarray(item.elements(), dtype=np.intp).ravel()) + off
            out.update(int(self._root[e]) for e in el if self._kind[e] == FREE)
        return out

    def _set_free_values(self, reg: Registry, values: Mapping[str, np.ndarray]) -> None:
        """Write ``values`` into ``reg`` for every free tie group (once per group)."""
        done: set[int] = set()
        for name in self.names:
            shape = self.shapes[name]
            sl = self.flat_slice(name)
            kinds, roots = self._kind[sl], self._root[sl]
            val = np.asarray(values[name], dtype=float)
            if np.all(kinds == FREE) and all(int(r) not in done for r in roots):
                reg.set_value(name, val)
                done.update(int(r) for r in roots)
            for i in np.flatnonzero(kinds == FREE):
                if int(roots[i]) in done:
                    continue
                ref = reg[name] if shape == () else reg[name][np.unravel_index(int(i), shape)]
                reg.set_value(ref, val.ravel()[i])
                done.add(int(roots[i]))

    # ------------------------------------------------------------------ restraints
    def restraint_residuals(self, values: Mapping[str, Any]) -> Any:
        """Weighted residuals of the restraints, ``sqrt(strength) * (x - mean or target)``,
        then of the soft ties with a finite spread > 0, ``(x_k - centre) / spread``.

        Their sum of squares is :meth:`penalty`. Empty when there are none.
        """
        first = next(iter(values.values()))
        be = backend_of(first)
        res = []
        for rst, elements in zip(self.restraints, self._restraint_elements):
            xs = []
            for ref, el in zip(rst.refs, elements):
                v = be.reshape(be.asarray(values[ref.name]), (-1,))
                xs.append(be.take(v, el))
            w = float(np.sqrt(rst.strength))
            if rst.target is not None:
                tgt = be.asarray(np.ravel(rst.target))
                res.extend(w * (x - tgt) for x in xs)
            else:
                mean = sum(xs) / len(xs)
                res.extend(w * (x - mean) for x in xs)
        res.extend(self._soft_tie_residuals(values, be))
        if not res:
            return be.zeros((0,))
        return be.concat(res)

    def _soft_tie_residuals(self, values: Mapping[str, Any], be: Any) -> list[Any]:
        """Rows ``(x_k - c) / spread`` of the soft ties with a finite spread > 0 (after the
        restraints' rows, member by member, element by element)."""
        from tiedsci.core.softtie import is_active

        res = []
        for tie in self.soft_ties:
            if not is_active(tie):
                continue
            c = be.take(be.reshape(be.asarray(values[tie.centre.name]), (-1,)),
                        np.asarray(tie.centre.elements(), dtype=np.intp).ravel())
            for m in tie.members:
                x = be.take(be.reshape(be.asarray(values[m.name]), (-1,)),
                            np.asarray(m.elements(), dtype=np.intp).ravel())
                res.append((x - c) / tie.spread)
        return res

    def restrained_names(self) -> tuple[str, ...]:
        """Names of the parameters that :meth:`restraint_residuals` reads (restraints, then
        the members and centres of active soft ties), each once."""
        from tiedsci.core.softtie import is_active

        names = [ref.name for rst in self.restraints for ref in rst.refs]
        for tie in self.soft_ties:
            if is_active(tie):
                names += [m.name for m in tie.members] + [tie.centre.name]
        return tuple(dict.fromkeys(names))

    def penalty(self, values: Mapping[str, Any]) -> Any:
        """Total soft-tie penalty: ``sum_i strength * (x_i - mean or target)^2``."""
        r = self.restraint_residuals(values)
        return (r * r).sum()

    # ------------------------------------------------------------------ display
    def describe(self, values: Mapping[str, Any] | None = None,
                 stderr: Mapping[str, Any] | None = None, max_elements: int = 200) -> str:
        """A readable table of every parameter element: value, status, bounds, stderr."""
        from tiedsci.core.table import format_table

        return format_table(self, values, stderr, max_elements)

    def element_rows(self, values: Mapping[str, Any] | None = None,
                     stderr: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """:meth:`describe`'s table as records, one per element in flat order.

        Keys ``param``, ``label``, ``value``, ``stderr`` (floats, NaN when unknown),
        ``status``, ``bounds``, ``unit``.
        """
        from tiedsci.core.table import element_rows

        return element_rows(self, values, stderr)

    def __str__(self) -> str:
        return self.describe()

    def to_lmfit(self, values: Mapping[str, Any] | None = None,
                 stderr: Mapping[str, Any] | None = None) -> Any:
        """lmfit ``Parameters`` with one parameter per element, ties as ``expr``."""
        from tiedsci.core.lmfit_interop import layout_to_lmfit

        return layout_to_lmfit(self, values, stderr)

    def _check_name(self, name: str) -> None:
        if name not in self.shapes:
            import difflib

            guess = difflib.get_close_matches(name, list(self.names), n=1)
            hint = f"; did you mean {guess[0]!r}?" if guess else ""
            raise UnknownParameterError(f"no parameter {name!r}{hint}")


def _block_softmax(blk: _Block, theta: np.ndarray) -> np.ndarray:
    """Unit-mass probabilities of a simplex block at ``theta``, shape (n_blocks, k)."""
    u = np.concatenate([theta[blk.theta_idx], np.zeros((blk.z_idx.shape[0], 1))], axis=1)
    p = np.exp(u - u.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def _derived_jacobians(rel: Derived, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """d target / d dep for each dependency: the user's ``jac`` or central differences."""
    deps = [np.asarray(values[d], dtype=float) for d in rel.deps]
    target_shape = np.shape(values[rel.target])
    if rel.jac is not None:
        jacs = rel.jac(*deps)
        if len(rel.deps) == 1 and not isinstance(jacs, list | tuple):
            jacs = [jacs]
        return [np.broadcast_to(np.asarray(j, float), target_shape + d.shape)
                for j, d in zip(jacs, deps)]
    out = []
    for i, d in enumerate(deps):
        jac = np.zeros(target_shape + d.shape)
        for j in range(d.size):
            h = 1e-6 * max(1.0, abs(float(d.flat[j])))
            args_p = [x.copy() for x in deps]
            args_m = [x.copy() for x in deps]
            args_p[i].flat[j] += h
            args_m[i].flat[j] -= h
            fp = np.broadcast_to(np.asarray(rel.fn(*args_p), float), target_shape)
            fm = np.broadcast_to(np.asarray(rel.fn(*args_m), float), target_shape)
            jac[(..., *np.unravel_index(j, d.shape))] = (fp - fm) / (2 * h)
        out.append(jac)
    return out

