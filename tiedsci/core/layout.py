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

import graphlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from tiedsci.backends import backend_of, get_backend, is_torch
from tiedsci.core.constraints import Derived, Restraint
from tiedsci.core.transforms import Identity, Interval, Simplex
from tiedsci.errors import (
    ConflictError,
    NotPoolableError,
    PackingError,
    ShapeMismatchError,
    UnknownParameterError,
)

if TYPE_CHECKING:
    from tiedsci.core.registry import Registry

__all__ = ["Layout", "build_layout", "FREE", "FIXED", "LINEAR", "DERIVED"]

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
        Label of the element each entry of ``theta`` stands for.
    """

    names: tuple[str, ...]
    shapes: dict[str, tuple[int, ...]]
    offsets: dict[str, int]
    n_elements: int
    n_free: int
    free_names: tuple[str, ...]
    theta0: np.ndarray
    units: dict[str, str]
    descriptions: dict[str, str]
    # element level, shape (n_elements,)
    kind: np.ndarray
    root: np.ndarray
    zslot: np.ndarray  # z slot of the element's group (-1 if fixed/linear/derived)
    labels: tuple[str, ...]
    status: tuple[str, ...]
    bounds_text: tuple[str, ...]
    # linear map phi = A z + b
    a_rows: np.ndarray
    a_cols: np.ndarray
    a_vals: np.ndarray
    b: np.ndarray
    n_z: int
    # transforms z = t(theta)
    slot_theta: dict[str, np.ndarray]
    slot_z: dict[str, np.ndarray]
    slot_lo: dict[str, np.ndarray]
    slot_hi: dict[str, np.ndarray]
    blocks: tuple[_Block, ...]
    z_perm_inverse: np.ndarray
    z_theta: tuple[tuple[int, ...], ...]  # theta indices influencing each z slot
    derived: tuple[Derived, ...]  # in dependency order
    restraints: tuple[Restraint, ...]
    restraint_elements: tuple[tuple[np.ndarray, ...], ...]
    _a_csr: Any = field(repr=False)
    _values0: dict[str, np.ndarray] = field(repr=False)

    # ------------------------------------------------------------------ basic info
    @property
    def values0(self) -> dict[str, np.ndarray]:
        """Full values at ``theta0`` (copies)."""
        return {k: v.copy() for k, v in self._values0.items()}

    @property
    def groups(self) -> list[list[str]]:
        """Hard-tie groups with two or more elements, as element labels."""
        out: dict[int, list[str]] = {}
        for e in range(self.n_elements):
            if self.kind[e] in (FREE, FIXED):
                out.setdefault(int(self.root[e]), []).append(self.labels[e])
        return [g for g in out.values() if len(g) > 1]

    def depends_on(self, name: str) -> np.ndarray:
        """Indices of ``theta`` that influence parameter ``name`` (sorted)."""
        self._check_name(name)
        deps: set[int] = set()
        todo = [name]
        seen = set()
        derived = {d.target: d for d in self.derived}
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in derived:
                todo.extend(derived[n].deps)
                continue
            off, size = self.offsets[n], int(np.prod(self.shapes[n], dtype=int))
            rows = self._a_csr[off:off + size]
            for z in np.unique(rows.indices):
                deps.update(self.z_theta[int(z)])
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
            off = self.offsets[name]
            size = int(np.prod(self.shapes[name], dtype=int))
            values[name] = be.reshape(flat[off:off + size], self.shapes[name])
        for rel in self.derived:
            out = rel.fn(*(values[d] for d in rel.deps))
            values[rel.target] = be.asarray(out) + be.zeros(self.shapes[rel.target])
        return values

    def _z(self, theta: Any, be: Any) -> Any:
        pieces = []
        if self.slot_theta["identity"].size:
            pieces.append(be.take(theta, self.slot_theta["identity"]))
        if self.slot_theta["lower"].size:
            t = be.take(theta, self.slot_theta["lower"])
            pieces.append(be.asarray(self.slot_lo["lower"]) + be.exp(t))
        if self.slot_theta["upper"].size:
            t = be.take(theta, self.slot_theta["upper"])
            pieces.append(be.asarray(self.slot_hi["upper"]) - be.exp(t))
        if self.slot_theta["interval"].size:
            t = be.take(theta, self.slot_theta["interval"])
            lo = be.asarray(self.slot_lo["interval"])
            hi = be.asarray(self.slot_hi["interval"])
            pieces.append(lo + (hi - lo) * be.sigmoid(t))
        for blk in self.blocks:
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
        return be.take(be.concat(pieces), self.z_perm_inverse)

    def _flat_values(self, theta: Any, be: Any) -> Any:
        b = be.asarray(self.b)
        if self.n_z == 0 or self.a_rows.size == 0:
            return b
        z = self._z(theta, be)
        contrib = be.asarray(self.a_vals) * be.take(z, self.a_cols)
        return b + be.index_add(self.n_elements, self.a_rows, contrib)

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
        given = np.zeros(self.n_elements, dtype=bool)
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
            off = self.offsets[name]
            flat[off:off + arr.size] = arr.ravel()
            given[off:off + arr.size] = True
        free = (self.kind == FREE)
        # every tie group must agree: compare each given member with its group's first one
        z = np.full(self.n_z, np.nan)
        z_src = np.full(self.n_z, -1)
        for e in np.flatnonzero(free & given):
            s = self.zslot[e]
            if z_src[s] < 0:
                z[s], z_src[s] = flat[e], e
            elif abs(flat[e] - z[s]) > atol + rtol * abs(z[s]):
                raise PackingError(
                    f"tied members disagree: {self.labels[z_src[s]]} = {float(z[s])!r} but "
                    f"{self.labels[e]} = {float(flat[e])!r} (they share one free value)"
                )
        missing = np.isnan(z)
        if missing.any():
            z0 = self._z(self.theta0, get_backend("numpy"))
            z[missing] = z0[missing]
        theta = self._inverse_transform(z)
        if missing.all() and not given.any():
            theta = self.theta0.copy()
        # linear relations and simplex normalisation: recompute and compare what was given
        check = np.flatnonzero(given & (self.kind != FIXED) & (self.kind != DERIVED))
        if check.size:
            recomputed = self._flat_values(theta, get_backend("numpy"))
            bad = np.abs(recomputed[check] - flat[check]) > atol + rtol * np.abs(flat[check])
            if bad.any():
                e = int(check[np.argmax(bad)])
                raise PackingError(
                    f"{self.labels[e]} = {float(flat[e])!r} breaks its constraint ({self.status[e]}"
                    f"{', ' + self.bounds_text[e] if self.bounds_text[e] else ''}): "
                    f"the packed value gives {float(recomputed[e])!r}"
                )
        if as_torch is not None:
            return backend_of(as_torch).asarray(theta)
        return theta

    def _inverse_transform(self, z: np.ndarray) -> np.ndarray:
        theta = np.zeros(self.n_free)
        st, sz = self.slot_theta, self.slot_z
        theta[st["identity"]] = z[sz["identity"]]
        for kind in ("lower", "upper", "interval"):
            if not st[kind].size:
                continue
            v = z[sz[kind]]
            lo, hi = self.slot_lo[kind], self.slot_hi[kind]
            outside = (v < lo) | (v > hi)
            if outside.any():
                i = int(np.argmax(outside))
                e = int(np.flatnonzero(self.zslot == sz[kind][i])[0])
                raise PackingError(f"{self.labels[e]} = {float(v[i])!r} is outside its bounds "
                                   f"{self.bounds_text[e]}")
            if kind == "lower":
                theta[st[kind]] = np.log(np.maximum(v - lo, _TINY))
            elif kind == "upper":
                theta[st[kind]] = np.log(np.maximum(hi - v, _TINY))
            else:
                u = np.clip((v - lo) / (hi - lo), 1e-15, 1 - 1e-15)
                theta[st[kind]] = np.log(u) - np.log1p(-u)
        for blk in self.blocks:
            p = z[blk.z_idx]
            total = p.sum(axis=1)
            off = np.abs(total - blk.mass) > 1e-6 * np.maximum(1, blk.mass)
            bad = (p < -1e-10).any(axis=1) | off
            if bad.any():
                i = int(np.argmax(bad))
                e = int(np.flatnonzero(self.zslot == blk.z_idx[i, 0])[0])
                raise PackingError(
                    f"simplex row starting at {self.labels[e]} is not a probability vector: "
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
        if self.derived:
            values = self.unpack(theta, backend="numpy")
            for rel in reversed(self.derived):
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
        st, sz = self.slot_theta, self.slot_z
        out[st["identity"]] = g_z[sz["identity"]]
        t = theta[st["lower"]]
        out[st["lower"]] = g_z[sz["lower"]] * np.exp(t)
        t = theta[st["upper"]]
        out[st["upper"]] = -g_z[sz["upper"]] * np.exp(t)
        t = theta[st["interval"]]
        s = 1.0 / (1.0 + np.exp(-t))
        span = self.slot_hi["interval"] - self.slot_lo["interval"]
        out[st["interval"]] = g_z[sz["interval"]] * span * s * (1 - s)
        for blk in self.blocks:
            if blk.k == 1:
                continue
            nb = blk.z_idx.shape[0]
            u = np.concatenate([theta[blk.theta_idx], np.zeros((nb, 1))], axis=1)
            p = np.exp(u - u.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            gz = g_z[blk.z_idx]
            gu = blk.mass[:, None] * p * (gz - (p * gz).sum(axis=1, keepdims=True))
            out[blk.theta_idx.ravel()] = gu[:, :-1].ravel()
        return out

    def pool_stats(self, stats: Mapping[str, Any]) -> dict[str, Any]:
        """Sum per-element sufficient statistics over each hard-tie group.

        Parameters
        ----------
        stats : mapping
            ``name -> array`` of shape ``param.shape + stat_shape`` (one ``stat_shape`` for all
            entries), numpy or torch. Every member of a tie group touched must be included.

        Returns
        -------
        dict
            Same keys and shapes; each element holds the sum of its group's statistics, so an
            unchanged per-element M-step gives every member the pooled estimate.

        Raises
        ------
        NotPoolableError
            For elements defined by a linear (scaled) or derived relation, or when a group
            member's statistics are missing.
        """
        if not stats:
            return {}
        items = list(stats.items())
        be = backend_of(items[0][1])
        stat_shape = None
        flats, elems = [], []
        for name, val in items:
            self._check_name(name)
            val = be.asarray(val)
            shape = self.shapes[name]
            if tuple(val.shape[:len(shape)]) != shape:
                raise ShapeMismatchError(f"statistics for {name!r} have shape {tuple(val.shape)}; "
                                         f"they must start with the parameter's shape {shape}")
            rest = tuple(val.shape[len(shape):])
            if stat_shape is None:
                stat_shape = rest
            elif rest != stat_shape:
                raise ShapeMismatchError(f"statistics for {name!r} have trailing shape {rest}, "
                                         f"other entries {stat_shape}; pool one kind per call")
            off = self.offsets[name]
            size = int(np.prod(shape, dtype=int))
            el = np.arange(off, off + size)
            bad = (self.kind[el] == LINEAR) | (self.kind[el] == DERIVED)
            if bad.any():
                e = int(el[np.argmax(bad)])
                raise NotPoolableError(
                    f"{self.labels[e]} is {self.status[e]!r}: statistics cannot be pooled through "
                    "a scaled or derived relation (no closed-form M-step); use a gradient M-step"
                )
            flats.append(be.reshape(val, (size,) + stat_shape))
            elems.append(el)
        el = np.concatenate(elems)
        roots = self.root[el]
        uniq, gid, counts = np.unique(roots, return_inverse=True, return_counts=True)
        group_size = self._group_size[uniq]
        if np.any(counts != group_size):
            i = int(np.argmax(counts != group_size))
            members = [self.labels[m] for m in np.flatnonzero(self.root == uniq[i])]
            given = {self.labels[e] for e in el}
            missing = [m for m in members if m not in given]
            raise NotPoolableError(
                f"tie group {members} is only partly given: statistics for {missing} are missing"
            )
        sums = be.index_add(len(uniq), gid, be.concat(flats, axis=0))
        pooled = be.take(sums, gid)
        out: dict[str, Any] = {}
        start = 0
        for name, _ in items:
            size = int(np.prod(self.shapes[name], dtype=int))
            out[name] = be.reshape(pooled[start:start + size], self.shapes[name] + stat_shape)
            start += size
        return out

    @property
    def _group_size(self) -> np.ndarray:
        return np.bincount(self.root, minlength=self.n_elements)

    # ------------------------------------------------------------------ restraints
    def restraint_residuals(self, values: Mapping[str, Any]) -> Any:
        """Weighted residuals of the soft ties, ``sqrt(strength) * (x - mean or target)``.

        Their sum of squares is :meth:`penalty`. Empty when there are no restraints.
        """
        first = next(iter(values.values()))
        be = backend_of(first)
        res = []
        for rst, elements in zip(self.restraints, self.restraint_elements):
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
        if not res:
            return be.zeros((0,))
        return be.concat(res)

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


def build_layout(reg: Registry) -> Layout:
    """Compile a registry (called by :meth:`Registry.compile`)."""
    specs = list(reg._specs.values())
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

    # simplex blocks, keyed by the tuple of free roots they contain
    block_of_root: dict[int, tuple[int, ...]] = {}
    block_mass: dict[tuple[int, ...], float] = {}
    for s in specs:
        if not isinstance(s.transform, Simplex):
            continue
        ax = s.transform.axis
        idx = np.moveaxis(np.arange(s.size).reshape(s.shape), ax, -1).reshape(-1, s.shape[ax])
        for row in idx + s.offset:
            free_roots = tuple(int(root[e]) for e in row if kind[e] == FREE)
            if len(set(free_roots)) != len(free_roots):
                raise ConflictError(f"elements of one simplex row of {s.name} are tied to each "
                                    f"other ({labels[row[0]]}...); tie whole rows instead")
            mass = 1.0 - float(sum(vals[e] for e in row if kind[e] == FIXED))
            for r in free_roots:
                if r in block_of_root and block_of_root[r] != free_roots:
                    raise ConflictError(
                        f"{labels[r]} belongs to two different simplex rows; ties between "
                        "simplex-bounded parameters must tie whole rows"
                    )
                block_of_root[r] = free_roots
            if free_roots:
                block_mass[free_roots] = mass

    # z slots: one per free group, in order of first element
    zslot = np.full(n, -1, dtype=np.intp)
    slot_of_root: dict[int, int] = {}
    for e in range(n):
        if kind[e] == FREE:
            r = int(root[e])
            if r not in slot_of_root:
                slot_of_root[r] = len(slot_of_root)
            zslot[e] = slot_of_root[r]
    n_z = len(slot_of_root)

    # group bound (elementwise) per root
    def group_bound(r: int) -> Any:
        for m in reg._groups[r]:
            bnd = reg._elem_bound(m)
            if isinstance(bnd, Interval):
                if r in block_of_root:
                    raise ConflictError(f"{labels[m]} has interval bounds but is tied into a "
                                        "simplex row")
                return bnd
        return None

    # theta slots
    slot_theta: dict[str, list[int]] = {k: [] for k in ("identity", "lower", "upper", "interval")}
    slot_z: dict[str, list[int]] = {k: [] for k in slot_theta}
    slot_lo: dict[str, list[float]] = {k: [] for k in slot_theta}
    slot_hi: dict[str, list[float]] = {k: [] for k in slot_theta}
    blocks_by_k: dict[int, list[tuple[list[int], list[int], float]]] = {}
    free_names: list[str] = []
    z_theta: list[tuple[int, ...]] = [()] * n_z
    done_blocks: set[tuple[int, ...]] = set()
    first_elem = {r: int(np.flatnonzero(root == r)[0]) for r in slot_of_root}
    for r, z in slot_of_root.items():
        if r in block_of_root:
            key = block_of_root[r]
            if key in done_blocks:
                continue
            done_blocks.add(key)
            zs = [slot_of_root[x] for x in key]
            th = list(range(len(free_names), len(free_names) + len(key) - 1))
            free_names.extend(labels[first_elem[x]] for x in key[:-1])
            blocks_by_k.setdefault(len(key), []).append((th, zs, block_mass[key]))
            for zz in zs:
                z_theta[zz] = tuple(th)
            continue
        bnd = group_bound(r)
        k = "identity" if bnd is None else bnd.kind
        t = len(free_names)
        free_names.append(labels[first_elem[r]])
        slot_theta[k].append(t)
        slot_z[k].append(z)
        slot_lo[k].append(bnd.lo if bnd is not None else -np.inf)
        slot_hi[k].append(bnd.hi if bnd is not None else np.inf)
        z_theta[z] = (t,)
    n_free = len(free_names)
    blocks = tuple(
        _Block(k, np.array([b[0] for b in bl], dtype=np.intp).reshape(len(bl), k - 1),
               np.array([b[1] for b in bl], dtype=np.intp).reshape(len(bl), k),
               np.array([b[2] for b in bl], dtype=float))
        for k, bl in sorted(blocks_by_k.items())
    )
    order = np.concatenate(
        [np.asarray(slot_z[k], dtype=np.intp) for k in ("identity", "lower", "upper", "interval")]
        + [blk.z_idx.ravel() for blk in blocks]
    ) if n_z else np.zeros(0, dtype=np.intp)
    z_perm_inverse = np.argsort(order, kind="stable")

    # linear map phi = A z + b
    rows, cols, coefs = [], [], []
    b = np.zeros(n)
    memo: dict[int, tuple[dict[int, float], float]] = {}

    def expand(e: int) -> tuple[dict[int, float], float]:
        if e in memo:
            return memo[e]
        if kind[e] == FREE:
            res: tuple[dict[int, float], float] = ({int(zslot[e]): 1.0}, 0.0)
        elif kind[e] == FIXED:
            res = ({}, float(vals[e]))
        elif kind[e] == LINEAR:
            terms, off = reg._linear[e]
            acc: dict[int, float] = {}
            const = off
            for c, s_el in terms:
                sub, sub_off = expand(s_el)
                for zz, cc in sub.items():
                    acc[zz] = acc.get(zz, 0.0) + c * cc
                const += c * sub_off
            res = (acc, const)
        else:  # derived: filled after the linear stage
            res = ({}, 0.0)
        memo[e] = res
        return res

    for e in range(n):
        coef, const = expand(e)
        b[e] = const
        for zz, c in coef.items():
            rows.append(e)
            cols.append(zz)
            coefs.append(c)
    a_rows = np.asarray(rows, dtype=np.intp)
    a_cols = np.asarray(cols, dtype=np.intp)
    a_vals = np.asarray(coefs, dtype=float)
    a_csr = sp.csr_matrix((a_vals, (a_rows, a_cols)), shape=(n, n_z))

    # derived in dependency order
    graph = {name: set(rel.deps) for name, rel in reg._derived.items()}
    order_names = [x for x in graphlib.TopologicalSorter(graph).static_order() if x in reg._derived]
    derived = tuple(reg._derived[x] for x in order_names)

    # status text and bounds text per element
    status, bounds_text = [], []
    for e in range(n):
        spec = reg._specs[owner[e]]
        if kind[e] == DERIVED:
            status.append("derived: " + reg._derived[owner[e]].describe())
        elif kind[e] == LINEAR:
            terms, off = reg._linear[e]
            parts = [labels[s_el] if c == 1.0 else f"{c:g}*{labels[s_el]}" for c, s_el in terms]
            text = " + ".join(parts) if parts else ""
            if off or not parts:
                text = f"{text} + {off:g}" if parts else f"{off:g}"
            status.append("= " + text)
        elif kind[e] == FIXED:
            first = first_of_root(root, e)
            status.append("fixed" if first == e else f"fixed, tied to {labels[first]}")
        else:
            first = first_elem[int(root[e])]
            size = len(reg._groups[int(root[e])])
            if first != e:
                status.append(f"tied to {labels[first]}")
            elif size > 1:
                status.append(f"free (shared by {size})")
            else:
                status.append("free")
        bnd = reg._elem_bound(e) if kind[e] == FREE else None
        if isinstance(spec.transform, Simplex) and kind[e] != LINEAR:
            bounds_text.append(spec.transform.describe())
        elif bnd is not None and not isinstance(bnd, Identity):
            bounds_text.append(bnd.describe())
        else:
            bounds_text.append("")

    restraint_elements = tuple(
        tuple(np.asarray(ref.elements(), dtype=np.intp).ravel() for ref in rst.refs)
        for rst in reg._restraints
    )
    layout = Layout(
        names=tuple(s.name for s in specs),
        shapes={s.name: s.shape for s in specs},
        offsets={s.name: s.offset for s in specs},
        n_elements=n,
        n_free=n_free,
        free_names=tuple(free_names),
        theta0=np.zeros(n_free),
        units={s.name: s.unit for s in specs},
        descriptions={s.name: s.description for s in specs},
        kind=kind,
        root=root,
        zslot=zslot,
        labels=labels,
        status=tuple(status),
        bounds_text=tuple(bounds_text),
        a_rows=a_rows,
        a_cols=a_cols,
        a_vals=a_vals,
        b=b,
        n_z=n_z,
        slot_theta={k: np.asarray(v, dtype=np.intp) for k, v in slot_theta.items()},
        slot_z={k: np.asarray(v, dtype=np.intp) for k, v in slot_z.items()},
        slot_lo={k: np.asarray(v, dtype=float) for k, v in slot_lo.items()},
        slot_hi={k: np.asarray(v, dtype=float) for k, v in slot_hi.items()},
        blocks=blocks,
        z_perm_inverse=z_perm_inverse,
        z_theta=tuple(z_theta),
        derived=derived,
        restraints=tuple(reg._restraints),
        restraint_elements=restraint_elements,
        _a_csr=a_csr,
        _values0={s.name: s.value.copy() for s in specs},
    )
    # theta0 from the declared values; values0 re-evaluated so relations hold exactly
    z0 = np.zeros(n_z)
    for r, z in slot_of_root.items():
        z0[z] = vals[first_elem[r]]
    theta0 = layout._inverse_transform(z0)
    object.__setattr__(layout, "theta0", theta0)
    values0 = layout.unpack(theta0, backend="numpy")
    object.__setattr__(layout, "_values0", {k: np.asarray(v) for k, v in values0.items()})
    return layout


def first_of_root(root: np.ndarray, e: int) -> int:
    """First element (in declaration order) of ``e``'s tie group."""
    return int(np.flatnonzero(root == root[e])[0])
