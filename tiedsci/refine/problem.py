"""The compiled refinement problem: contributions bound to a layout, as residual blocks.

:func:`compile_problem` resolves which parameters each model reads, decides how its Jacobian
is computed (torch autodiff, differences, analytic), and splits theta into shared and local
parts (:func:`tiedsci.refine.solver.partition_blocks`). :class:`Problem` then evaluates the
weighted residual blocks ``sqrt(w) * (y_calc - y)`` and their Jacobians with respect to the
theta entries each block depends on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.core import Layout
from tiedsci.errors import DeclarationError, ModelError
from tiedsci.refine.contribution import Contribution, ScopedValues, resolve_name
from tiedsci.refine.data import model_x
from tiedsci.refine.jacobian import (
    jacobian_copies,
    jacobian_fd,
    jacobian_pointwise,
    jacobian_torch,
)
from tiedsci.refine.solver import Partition, partition_blocks

__all__ = ["ModelBlock", "Problem", "compile_problem"]


@dataclass(frozen=True, eq=False)
class ModelBlock:
    """One contribution compiled against a layout.

    Attributes
    ----------
    names : tuple of str
        Full names of the parameters the model reads.
    elem_idx : ndarray of int, shape (m,)
        Their flat element indices in the layout, concatenated.
    deps : ndarray of int
        theta indices influencing them.
    x, y, sqrt_w : ndarray, shape (n_obs,)
        The used points and ``sqrt(weight * w)``.
    mode : str
        ``"torch"``, ``"fd"`` or ``"analytic"``.
    """

    contribution: Contribution
    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    elem_idx: np.ndarray
    deps: np.ndarray
    x: np.ndarray
    y: np.ndarray
    sqrt_w: np.ndarray
    mode: str
    all_names: tuple[str, ...]
    pointwise: bool = False
    copies: bool = False
    columns: tuple[str, ...] | None = None  # names of the columns of a 2-D x
    tie_map: np.ndarray | None = None  # constant d values[elem] / d free values[deps]

    @property
    def name(self) -> str:
        return self.contribution.name

    def _split(self, v: Any) -> dict[str, Any]:
        out, o = {}, 0
        for n, shp in zip(self.names, self.shapes):
            size = int(np.prod(shp, dtype=int))
            out[n] = v[o:o + size].reshape(shp)
            o += size
        return out

    def _call(self, v: Any, x: Any) -> Any:
        scoped = ScopedValues(self._split(v), self.name, self.all_names)
        return self.contribution.model(scoped, model_x(x, self.columns))

    def _call_copies(self, vb: Any, x: Any) -> Any:
        """The model on per-point copies of scalar values, ``vb`` of shape (n_points, m)."""
        parts = {n: vb[:, k] for k, n in enumerate(self.names)}
        return self.contribution.model(ScopedValues(parts, self.name, self.all_names),
                                       model_x(x, self.columns))

    def x_text(self, i: int) -> str:
        """The abscissa of used point ``i``, for messages."""
        if self.columns is None:
            return f"x = {float(self.x[i])!r}"
        return ", ".join(f"{c} = {float(v)!r}" for c, v in zip(self.columns, self.x[i]))

    def y_calc(self, v: np.ndarray) -> np.ndarray:
        """Model values at the used points for the block's value vector ``v`` (numpy out)."""
        if self.mode == "torch":
            import torch

            with torch.no_grad():
                out = self._call(torch.as_tensor(v), torch.as_tensor(self.x))
            return _to_numpy(out, self.y.shape, self.name)
        return _to_numpy(self._call(v, self.x), self.y.shape, self.name)

    def value_jacobian(self, v: np.ndarray) -> np.ndarray:
        """``d y_calc / d v``, shape (n_obs, m)."""
        if self.mode == "torch":
            import torch

            xt = torch.as_tensor(self.x)
            if self.copies:
                return jacobian_copies(self._call_copies, v, xt)
            if self.pointwise:
                return jacobian_pointwise(self._call, v, xt)
            return jacobian_torch(lambda vt: self._call(vt, xt), v)
        if self.mode == "fd":
            return jacobian_fd(lambda vv: self._call(vv, self.x), v)
        parts = self._split(v)
        scoped = ScopedValues(parts, self.name, self.all_names)
        given = self.contribution.jac(scoped, model_x(self.x, self.columns))
        cols = []
        full = {resolve_name(k, self.name, self.all_names): np.asarray(g, float)
                for k, g in given.items()}
        n = self.x.shape[0]
        for name, shp in zip(self.names, self.shapes):
            size = int(np.prod(shp, dtype=int))
            if name in full:
                cols.append(np.broadcast_to(full[name], (n,) + shp).reshape(n, size))
            else:
                cols.append(np.zeros((n, size)))
        return np.concatenate(cols, axis=1) if cols else np.zeros((n, 0))


def _to_numpy(out: Any, shape: tuple[int, ...], name: str) -> np.ndarray:
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    try:
        arr = np.asarray(out, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"model of dataset {name!r} returned {type(out).__name__}, not an array "
                         f"of numbers ({exc})") from None
    if arr.shape != shape:
        try:
            arr = np.broadcast_to(arr, shape)
        except ValueError:
            raise ModelError(f"model of dataset {name!r} returned shape {arr.shape}, expected "
                            f"{shape} (one value per used point)") from None
    return arr


@dataclass(frozen=True, eq=False)
class Problem:
    """Residual blocks over one layout (datasets first, restraints last if any)."""

    layout: Layout
    blocks: tuple[ModelBlock, ...]
    restraint_deps: np.ndarray
    restraint_elem: np.ndarray
    restraint_names: tuple[str, ...]
    restraint_jac: np.ndarray  # d restraint residuals / d restrained elements (constant)
    partition: Partition
    tie_map: TieMap | None = None  # constant d values / d free values (no derived relation)

    def _value_maps(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per block (then restraints) dense ``d values[elem] / d theta[deps]``: the core's
        tie map, or, without derived relations, constant maps times the bound transforms'
        derivative (no autodiff through the layout, no sparse slicing per step)."""
        rows = [(b.elem_idx, b.deps) for b in self.blocks]
        if self.n_restraint_rows:
            rows.append((self.restraint_elem, self.restraint_deps))
        tm = self.tie_map
        if tm is None:
            dv = self.layout.jacobian(theta)
            return [dv[e][:, d].toarray() for e, d in rows]
        maps = [b.tie_map for b in self.blocks] + (
            [tm.restraint] if self.n_restraint_rows else [])
        if tm.identity:
            return maps
        t = self.layout.transform_derivative(theta).diagonal()
        return [a * t[d] for a, (_, d) in zip(maps, rows)]

    @property
    def n_restraint_rows(self) -> int:
        return int(self.restraint_jac.shape[0])

    def values(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Full numpy values at ``theta``."""
        return self.layout.unpack(np.asarray(theta, dtype=float))

    def y_calcs(self, theta: np.ndarray) -> list[np.ndarray]:
        """Model curves at the used points of each dataset."""
        flat = self.layout.flatten(self.values(theta))
        return [b.y_calc(flat[b.elem_idx]) for b in self.blocks]

    def residuals(self, theta: np.ndarray) -> list[np.ndarray]:
        """Weighted residual blocks ``sqrt(w) (y_calc - y)`` (+ restraint residuals)."""
        values = self.values(theta)
        flat = self.layout.flatten(values)
        out = [b.sqrt_w * (b.y_calc(flat[b.elem_idx]) - b.y) for b in self.blocks]
        if self.n_restraint_rows:
            out.append(np.asarray(self.layout.restraint_residuals(values), dtype=float))
        return out

    def jacobians(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per block ``d r_k / d theta[deps_k]``, shape (n_k, len(deps_k))."""
        theta = np.asarray(theta, dtype=float)
        maps = self._value_maps(theta)  # d values / d theta: the core's tie map
        flat = self.layout.flatten(self.values(theta))
        out = []
        for b, sub in zip(self.blocks, maps):
            jv = b.value_jacobian(flat[b.elem_idx])
            _check_jacobian(b, jv, flat[b.elem_idx])
            out.append(b.sqrt_w[:, None] * (jv @ sub))
        if self.n_restraint_rows:
            out.append(self.restraint_jac @ maps[-1])
        return out


def _check_jacobian(block: ModelBlock, jv: np.ndarray, v: np.ndarray) -> None:
    """A non-finite derivative would poison the normal equations: name where it comes from."""
    bad = ~np.isfinite(jv)
    if not bad.any():
        return
    i, j = (int(k) for k in np.argwhere(bad)[0])
    o = 0
    for name, shp in zip(block.names, block.shapes):
        size = int(np.prod(shp, dtype=int))
        if j < o + size:
            idx = ",".join(str(int(q)) for q in np.unravel_index(j - o, shp))
            label = f"{name}[{idx}]" if shp else name
            scalars, k = [], 0
            for n, s in zip(block.names, block.shapes):
                if not s:
                    scalars.append(f"{n} = {float(v[k])!r}")
                k += int(np.prod(s, dtype=int))
            used = ", ".join(scalars)
            raise ModelError(
                f"model of dataset {block.name!r}: the derivative with respect to {label} is "
                f"not finite at used point {i} ({block.x_text(i)}); the model is "
                f"singular at these values (e.g. a zero width): {used}")
        o += size


def _probe(contribution: Contribution, layout: Layout, values0: dict[str, np.ndarray]
           ) -> tuple[tuple[str, ...], str | None]:
    """The full names a model reads and, when found on the way, its Jacobian mode.

    Without ``uses``, the model is run once on torch tensors (unless ``jac`` is ``"fd"`` or a
    callable) and the names it reads are recorded; a model that cannot run on tensors is run
    on numpy arrays instead (mode ``"fd"``). Returns ``(names, mode or None)``; None leaves the
    mode to :func:`_pick_mode`.
    """
    prefix = contribution.name
    if contribution.uses is not None:
        return tuple(dict.fromkeys(resolve_name(k, prefix, layout.names)
                                   for k in contribution.uses)), None
    ds = contribution.dataset
    x = ds.x[ds.used]
    cols = ds.columns
    jac = contribution.jac
    if not callable(jac) and jac != "fd":
        names = _record_torch(contribution, layout, values0, x, cols)
        if names is not None:
            return names, "torch"
        if jac == "torch":
            _pick_mode_failed(contribution.name, "it did not return a tensor on tensor inputs")
    record: set[str] = set()
    contribution.model(ScopedValues(values0, prefix, layout.names, record), model_x(x, cols))
    return tuple(n for n in layout.names if n in record), (
        "analytic" if callable(jac) else "fd")


def _record_torch(contribution: Contribution, layout: Layout, values0: dict[str, np.ndarray],
                  x: np.ndarray, columns: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Names read by a model run on torch tensors, or None when it cannot run on them."""
    import torch

    record: set[str] = set()
    tvals = _LazyTensors(values0)
    try:
        with torch.no_grad():
            out = contribution.model(ScopedValues(tvals, contribution.name, layout.names,
                                                  record),
                                     model_x(torch.as_tensor(x), columns))
    except Exception:
        return None
    if not isinstance(out, torch.Tensor):
        return None
    return tuple(n for n in layout.names if n in record)


class _LazyTensors(Mapping[str, Any]):
    """``name -> torch tensor`` view of numpy values, converted on first read."""

    def __init__(self, values: Mapping[str, np.ndarray]) -> None:
        self._values = values

    def __getitem__(self, key: str) -> Any:
        import torch

        return torch.as_tensor(np.asarray(self._values[key], dtype=float))

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)


def _pick_mode_failed(name: str, why: str) -> None:
    raise DeclarationError(
        f"model of dataset {name!r} cannot run on torch tensors ({why}); write it with "
        "torch-compatible operations (tiedsci.backends.namespace_of(x) gives them for numpy "
        "and torch alike) or use jac='fd'")


def _pick_mode(block: ModelBlock, v0: np.ndarray) -> str:
    jac = block.contribution.jac
    if callable(jac):
        return "analytic"
    if jac == "fd":
        return "fd"
    try:
        import torch

        with torch.no_grad():
            out = block._call(torch.as_tensor(v0), torch.as_tensor(block.x))
        if not isinstance(out, torch.Tensor):
            raise TypeError("model did not return a tensor")
        ok = True
    except Exception as exc:
        if jac == "torch":
            _pick_mode_failed(block.name, str(exc))
        ok = False
    return "torch" if ok else "fd"


def _reference_jacobian(block: ModelBlock, v0: np.ndarray, sub: Any) -> np.ndarray:
    """``d y_calc / d v`` on a few points by plain reverse mode (one backward per point)."""
    import torch

    vt = torch.as_tensor(np.asarray(v0, dtype=float)).clone().requires_grad_(True)
    y = block._call(vt, sub).reshape(-1)
    rows = []
    for i in range(int(y.shape[0])):
        (g,) = torch.autograd.grad(y[i], vt, retain_graph=True, allow_unused=True)
        rows.append(torch.zeros_like(vt) if g is None else g)
    return torch.stack(rows).detach().numpy()


def _pointwise_kind(block: ModelBlock, v0: np.ndarray) -> tuple[bool, bool]:
    """``(pointwise, copies)``: does ``y_calc[i]`` depend on ``x[i]`` only (split test and a
    Jacobian check on 4 points), and can its Jacobian come from per-point copies of its
    (scalar) values (:func:`~tiedsci.refine.jacobian.jacobian_copies`)?"""
    import torch

    flag = block.contribution.pointwise
    if flag is not None and not flag:
        return False, False
    n = block.x.shape[0]
    try:
        vt = torch.as_tensor(v0)
        xt = torch.as_tensor(block.x)
        if flag is None and n >= 3:
            k = max(1, n // 3)
            with torch.no_grad():
                whole = block._call(vt, xt)
                parts = torch.cat([block._call(vt, xt[:k]).reshape(-1),
                                   block._call(vt, xt[k:]).reshape(-1)])
            if not torch.allclose(whole.reshape(-1), parts, rtol=1e-12, atol=0.0):
                return False, False
        sub = xt[: min(n, 4)]
        j_ref = _reference_jacobian(block, v0, sub)
        if all(shp == () for shp in block.shapes) and _close(
                jacobian_copies(block._call_copies, v0, sub), j_ref):
            return True, True
        return _close(jacobian_pointwise(block._call, v0, sub), j_ref), False
    except Exception:
        if flag:
            raise
        return False, False


def _close(j: np.ndarray, ref: np.ndarray) -> bool:
    return bool(j.shape == ref.shape and np.allclose(j, ref, rtol=1e-9, atol=1e-12 * max(
        1.0, float(np.abs(ref).max(initial=0.0)))))


def compile_problem(layout: Layout, contributions: Sequence[Contribution],
                    cache: dict[Any, Any] | None = None) -> Problem:
    """Bind contributions to a layout; check the model outputs at the initial values.

    ``cache`` (a dict owned by the caller, e.g. a :class:`JointRefinement`) keeps what was
    found out about each model (names read, Jacobian mode, pointwise) between compilations of
    the same declarations: a refit, a new stage or a new start does not probe again.

    Raises
    ------
    DataError
        When a model returns the wrong shape or non-finite values at the start.
    """
    if not contributions:
        raise DeclarationError("no contribution: add at least one dataset with its model")
    if not layout.names:
        raise DeclarationError("no parameter is declared: declare the models' parameters "
                               "(shared(), local() or the registry) before fitting")
    names = [c.name for c in contributions]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise DeclarationError(f"dataset names must be unique; repeated: {sorted(dup)}")
    values0 = layout.values0
    flat0 = layout.flatten(values0)
    blocks = []
    seen: dict[Any, Any] = {} if cache is None else cache
    names_key = tuple(layout.names)
    for c in contributions:
        hit = seen.get(("probe", id(c), names_key))
        if hit is None or hit[0] is not c:
            hit = (c, *_probe(c, layout, values0))
            seen[("probe", id(c), names_key)] = hit
        used_names, probed_mode = hit[1], hit[2]
        shapes = tuple(layout.shapes[n] for n in used_names)
        elem = [np.arange(layout.flat_slice(n).start, layout.flat_slice(n).stop)
                for n in used_names]
        elem_idx = np.concatenate(elem) if elem else np.zeros(0, dtype=np.intp)
        deps = [layout.depends_on(n) for n in used_names]
        dep_idx = np.unique(np.concatenate(deps)) if deps else np.zeros(0, dtype=np.intp)
        ds = c.dataset
        u = ds.used
        block = ModelBlock(c, used_names, shapes, elem_idx, dep_idx.astype(np.intp),
                           np.array(ds.x[u]), np.array(ds.y[u]),
                           np.sqrt(c.weight * ds.weights[u]), "pending", tuple(layout.names),
                           columns=ds.columns)
        v0 = flat0[elem_idx]
        # one probe per (model, jac option, short names): many datasets share one model
        key = (c.model, c.jac, c.pointwise, tuple(n.split(".")[-1] for n in used_names))
        if key not in seen:
            mode = probed_mode or _pick_mode(block, v0)
            seen[key] = (mode, *(_pointwise_kind(block, v0) if mode == "torch" else
                                 (False, False)))
        object.__setattr__(block, "mode", seen[key][0])
        object.__setattr__(block, "pointwise", seen[key][1])
        object.__setattr__(block, "copies", seen[key][2])
        y0 = block.y_calc(v0)
        bad = ~np.isfinite(y0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ModelError(f"model of dataset {c.name!r} gives a non-finite value at used "
                            f"point {i} ({block.x_text(i)}) for the initial parameters")
        blocks.append(block)
    # restraints: constant Jacobian with respect to the restrained elements
    r_names = layout.restrained_names()  # restraints and soft ties of finite spread > 0
    if r_names:
        r_elem = np.concatenate([np.arange(layout.flat_slice(n).start, layout.flat_slice(n).stop)
                                 for n in r_names])
        r_deps = np.unique(np.concatenate([layout.depends_on(n) for n in r_names]))

        def rfun(v: np.ndarray) -> np.ndarray:
            vals = layout.unflatten(v, r_names)
            return np.asarray(layout.restraint_residuals(vals), dtype=float)

        r_jac = jacobian_fd(rfun, flat0[r_elem])  # linear: differences are exact
    else:
        r_elem = np.zeros(0, dtype=np.intp)
        r_deps = np.zeros(0, dtype=np.intp)
        r_jac = np.zeros((0, 0))
    deps = [b.deps for b in blocks] + ([r_deps] if r_names else [])
    part = partition_blocks(deps, layout.n_free, force_shared=r_deps)
    rows = [(b.elem_idx, b.deps) for b in blocks] + ([(r_elem, r_deps)] if r_names else [])
    tie = TieMap.of(layout, rows)
    if tie is not None:
        for b, m in zip(blocks, tie.maps):
            object.__setattr__(b, "tie_map", m)
        tie = TieMap((), tie.maps[-1] if r_names else None, tie.identity)
    return Problem(layout, tuple(blocks), r_deps.astype(np.intp), r_elem, r_names, r_jac, part,
                   tie)


SMALL_LAYOUT = 64
"""Up to this many values, ``d values / d theta`` at the start is assembled row by row from
the core's exact numpy chain rule (``Layout.pool_grad``) instead of its autodiff plan."""


def _value_jacobian0(layout: Layout) -> Any:
    """``d values / d theta`` at ``theta0`` (sparse), exactly."""
    import scipy.sparse as sp

    if layout.n_values > SMALL_LAYOUT:
        return layout.jacobian(layout.theta0)
    rows = []
    for name in layout.names:
        shape = layout.shapes[name]
        for k in range(layout.size(name)):
            onehot = np.zeros(layout.size(name))
            onehot[k] = 1.0
            rows.append(layout.pool_grad({name: onehot.reshape(shape)}, layout.theta0))
    return sp.csr_matrix(np.array(rows).reshape(layout.n_values, layout.n_free))


@dataclass(frozen=True)
class TieMap:
    """Constant ``d values / d free values`` per residual block, for a layout without derived
    (non-linear) relations.

    There the values are ``A z + b`` in the free values ``z``, and ``z`` depends on theta
    element by element (bound transforms), so ``d values / d theta = A diag(dz / dtheta)``:
    ``A`` is taken once from the core's exact Jacobian. ``identity`` is true when no free
    parameter has a bound transform (then the map is constant in theta).

    Attributes
    ----------
    maps : tuple of ndarray
        Per block ``A[elem_k][:, deps_k]``, dense, as built (:func:`compile_problem` then
        hands each to its :class:`ModelBlock`, so that a subset of blocks keeps its maps).
    restraint : ndarray or None
        The restraint block's map.
    identity : bool
    """

    maps: tuple[np.ndarray, ...]
    restraint: np.ndarray | None
    identity: bool

    @classmethod
    def of(cls, layout: Layout, rows: Sequence[tuple[np.ndarray, np.ndarray]]
           ) -> TieMap | None:
        """The map of ``layout`` restricted to ``rows`` (``(elem, deps)`` per block), or None
        when there are derived relations or non-diagonal (simplex) transforms."""
        import scipy.sparse as sp

        if layout.has_derived:
            layout.jacobian(layout.theta0)  # plan the core's general path once, here
            return None
        dv0 = _value_jacobian0(layout)
        d0 = layout.transform_derivative(layout.theta0)
        t0 = d0.diagonal()
        if (d0 - sp.diags(t0)).count_nonzero() or not np.all(np.isfinite(t0)) or \
                np.any(t0 == 0):
            return None
        identity = bool(layout.unbounded_mask().all())
        a = sp.csr_matrix(dv0 @ sp.diags(1.0 / t0))
        return cls(tuple(a[e][:, d].toarray() for e, d in rows), None, identity)
