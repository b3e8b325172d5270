"""The compiled refinement problem: contributions bound to a layout, as residual blocks.

:func:`compile_problem` resolves which parameters each model reads, decides how its Jacobian
is computed (torch autodiff, differences, analytic), and splits theta into shared and local
parts (:func:`tiedsci.refine.solver.partition_blocks`). :class:`Problem` then evaluates the
weighted residual blocks ``sqrt(w) * (y_calc - y)`` and their Jacobians with respect to the
theta entries each block depends on.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tiedsci.core import Layout
from tiedsci.errors import DeclarationError, ModelError
from tiedsci.refine.contribution import Contribution, ScopedValues, resolve_name
from tiedsci.refine.data import model_x
from tiedsci.refine.jacobian import (
    complex_step_agrees,
    jacobian_complex,
    jacobian_complex_stacked,
    jacobian_copies,
    jacobian_fd,
    jacobian_pointwise,
    jacobian_torch,
    value_and_jacobian_complex_stacked,
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
        ``"torch"``, ``"complex"`` (complex step on numpy), ``"fd"`` or ``"analytic"``.
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
    stacked: bool = False  # complex step: all steps in one call (scalar values broadcast)
    columns: tuple[str, ...] | None = None  # names of the columns of a 2-D x
    tie_map: np.ndarray | None = None  # constant d values[elem] / d free values[deps]
    copy_src: np.ndarray | None = None  # per used value, the theta entry it copies (or -1)
    copy_const: np.ndarray | None = None  # the constant values (where copy_src is -1)
    plain: bool = False  # every used value a copy and the tie map the identity: J = sqrt(w) Jv
    resolved: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.contribution.name

    def _split(self, v: Any) -> dict[str, Any]:
        out, o = {}, 0
        for n, shp in zip(self.names, self.shapes):
            size = math.prod(shp)
            out[n] = v[o] if not shp and not hasattr(v, "detach") else \
                v[o:o + size].reshape(shp)
            o += size
        return out

    def _scoped(self, parts: dict[str, Any]) -> ScopedValues:
        return ScopedValues(parts, self.name, self.all_names, resolved=self.resolved)

    def _call(self, v: Any, x: Any) -> Any:
        return self.contribution.model(self._scoped(self._split(v)), model_x(x, self.columns))

    def _call_copies(self, vb: Any, x: Any) -> Any:
        """The model on per-point copies of scalar values, ``vb`` of shape (n_points, m)."""
        parts = {n: vb[:, k] for k, n in enumerate(self.names)}
        return self.contribution.model(self._scoped(parts), model_x(x, self.columns))

    def _call_stacked(self, vb: Any, x: Any) -> Any:
        """The model on a stack of value vectors, ``vb`` of shape (k, m) (scalar values only):
        value ``i`` is the column ``vb[:, i:i+1]``, so the output has shape (k, n_points)."""
        parts = {n: vb[:, k:k + 1] for k, n in enumerate(self.names)}
        return self.contribution.model(self._scoped(parts), model_x(x, self.columns))

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
        if self.mode == "complex":
            if self.stacked:
                return jacobian_complex_stacked(lambda vb: self._call_stacked(vb, self.x), v,
                                                self.x.shape[0])
            return jacobian_complex(lambda vv: self._call(vv, self.x), v, self.x.shape[0])
        if self.mode == "fd":
            return jacobian_fd(lambda vv: self._call(vv, self.x), v)
        given = self.contribution.jac(self._scoped(self._split(v)),
                                      model_x(self.x, self.columns))
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
    _last: list[Any] = field(default_factory=list, repr=False, compare=False)
    _fused: list[Any] = field(default_factory=list, repr=False, compare=False)

    @property
    def fuses_jacobian(self) -> bool:
        """Whether :meth:`fused_residuals` applies: one block differentiated by stacked
        complex steps, no restraint rows (a single small curve)."""
        return (len(self.blocks) == 1 and not self.n_restraint_rows
                and self.blocks[0].mode == "complex" and self.blocks[0].stacked
                and self.blocks[0].elem_idx.size > 0)

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
        t = self.layout.transform_diagonal(theta)
        return [a * t[d] for a, (_, d) in zip(maps, rows)]

    @property
    def n_restraint_rows(self) -> int:
        return int(self.restraint_jac.shape[0])

    def values(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Full numpy values at ``theta``."""
        return self.layout.unpack(np.asarray(theta, dtype=float))

    def _values_flat(self, theta: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """``(values, flat values)`` at ``theta``; the last pair is kept, as the Jacobian is
        asked for at the point whose residuals were just evaluated."""
        theta = np.asarray(theta, dtype=float)
        entry = self._last[0] if self._last else None
        if entry is not None and np.array_equal(entry[0], theta):
            return entry[1], entry[2]
        values = self.values(theta)
        flat = self.layout.flatten(values)
        self._last[:] = [(theta.copy(), values, flat)]
        return values, flat

    def _block_values(self, theta: np.ndarray) -> list[np.ndarray]:
        """Each block's used values at ``theta``.

        When every used value is a constant or an exact copy of one theta entry (plain shared,
        local, tied or fixed parameters without bounds: the core's ``0 + 1.0 * theta_j``),
        they are copied from ``theta`` directly, the same numbers without the full unpack;
        otherwise they are sliced from the core's flat values.
        """
        if all(b.copy_src is not None for b in self.blocks):
            theta = np.asarray(theta, dtype=float)
            return [theta[b.copy_src] if b.plain else
                    np.where(b.copy_src >= 0, theta[b.copy_src], b.copy_const)
                    for b in self.blocks]
        flat = self._values_flat(theta)[1]
        return [flat[b.elem_idx] for b in self.blocks]

    def y_calcs(self, theta: np.ndarray) -> list[np.ndarray]:
        """Model curves at the used points of each dataset."""
        return [b.y_calc(v) for b, v in zip(self.blocks, self._block_values(theta))]

    def fused_residuals(self, theta: np.ndarray) -> list[np.ndarray]:
        """:meth:`residuals` of a problem that :attr:`fuses_jacobian`, with the Jacobian from
        the same model call (kept for :meth:`jacobians` at this ``theta``).

        One complex call costs less than a real call followed by a complex one, and the
        Jacobian at an accepted point, which LM asks for next, is then already there. The
        model values are the complex call's real parts: equal to a real call's to rounding
        (numpy's real and complex ``exp`` may differ in the last bit), so only the serial
        single-curve fit uses this.
        """
        if not self.fuses_jacobian:
            return self.residuals(theta)
        b = self.blocks[0]
        theta = np.array(theta, dtype=float)
        v = self._block_values(theta)[0]
        y, jv = value_and_jacobian_complex_stacked(lambda vb: b._call_stacked(vb, b.x), v,
                                                   b.x.shape[0])
        self._fused[:] = [(theta, jv)]
        return [b.sqrt_w * (y - b.y)]

    def residuals(self, theta: np.ndarray) -> list[np.ndarray]:
        """Weighted residual blocks ``sqrt(w) (y_calc - y)`` (+ restraint residuals)."""
        out = [b.sqrt_w * (b.y_calc(v) - b.y)
               for b, v in zip(self.blocks, self._block_values(theta))]
        if self.n_restraint_rows:
            values = self._values_flat(theta)[0]
            out.append(np.asarray(self.layout.restraint_residuals(values), dtype=float))
        return out

    def jacobians(self, theta: np.ndarray) -> list[np.ndarray]:
        """Per block ``d r_k / d theta[deps_k]``, shape (n_k, len(deps_k))."""
        theta = np.asarray(theta, dtype=float)
        maps = self._value_maps(theta)  # d values / d theta: the core's tie map
        fused = self._fused[0] if self._fused else None
        out = []
        for b, sub, v in zip(self.blocks, maps, self._block_values(theta)):
            if fused is not None and np.array_equal(fused[0], theta):
                jv = fused[1]  # computed with the residuals at this point
            else:
                jv = b.value_jacobian(v)
            _check_jacobian(b, jv, v)
            out.append(b.sqrt_w[:, None] * (jv if b.plain else jv @ sub))
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

    Without ``uses``, the model is run once and the names it reads are recorded: with
    ``jac="auto"`` first on numpy arrays (a model that returns a numpy array there leaves its
    mode to :func:`_pick_mode`: complex step when small, else torch or differences); a model
    that cannot run on numpy (torch operations) is then run on torch tensors (mode
    ``"torch"``), as is every model with ``jac="torch"``; a model that runs on neither raises
    its own error from the numpy call (mode ``"fd"``). Returns ``(names, mode or None)``;
    None leaves the mode to :func:`_pick_mode`.
    """
    prefix = contribution.name
    if contribution.uses is not None:
        return tuple(dict.fromkeys(resolve_name(k, prefix, layout.names)
                                   for k in contribution.uses)), None
    ds = contribution.dataset
    x = ds.x[ds.used]
    cols = ds.columns
    jac = contribution.jac
    if jac == "auto":
        names = _record_numpy(contribution, layout, values0, x, cols)
        if names is not None:
            return names, None
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


def _record_numpy(contribution: Contribution, layout: Layout, values0: dict[str, np.ndarray],
                  x: np.ndarray, columns: tuple[str, ...] | None) -> tuple[str, ...] | None:
    """Names read by a model run on numpy arrays, or None when it does not give an array of
    numbers there (it raised, or it returned a tensor)."""
    record: set[str] = set()
    try:
        with np.errstate(all="ignore"):
            out = contribution.model(ScopedValues(values0, contribution.name, layout.names,
                                                  record), model_x(x, columns))
    except Exception:
        return None
    if not isinstance(out, (np.ndarray, float, int, np.number)):
        return None
    return tuple(n for n in layout.names if n in record)


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


SMALL_VALUES = 16
"""A model reading at most this many values (on at most :data:`SMALL_POINTS` points) gets its
Jacobian by the complex step on numpy when that is exact for it (no torch per call)."""

SMALL_POINTS = 20_000


def _complex_step_kind(block: ModelBlock, v0: np.ndarray) -> bool | None:
    """Can ``block`` take its Jacobian by the complex step: None (no), else whether in one
    stacked call (:func:`~tiedsci.refine.jacobian.jacobian_complex_stacked`).

    Only for a small block (at most :data:`SMALL_VALUES` values, :data:`SMALL_POINTS`
    points) whose model runs on numpy; the complex-step Jacobian is checked once, at ``v0``,
    against central differences on every used point: a model that is not analytic in its
    values (abs, a cast to float) fails by whole columns and keeps torch.
    """
    n = block.x.shape[0]
    if v0.size > SMALL_VALUES or n > SMALL_POINTS or v0.size == 0:
        return None

    def fn(v: np.ndarray) -> Any:
        return block._call(v, block.x)

    def real(v: np.ndarray) -> np.ndarray:
        out = fn(v)
        if not isinstance(out, (np.ndarray, float, int, np.number)):
            raise TypeError("not a numpy result")
        return np.broadcast_to(np.asarray(out, dtype=float), (n,))

    stackable = all(shp == () for shp in block.shapes)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. ComplexWarning of a cast: caught below
        try:
            y = real(v0)
        except Exception:
            return None
        if not np.all(np.isfinite(y)):
            return None
        if stackable and _stacked_agrees(block, v0, y):
            return True
        try:
            return False if complex_step_agrees(jacobian_complex(fn, v0, n),
                                                jacobian_fd(real, v0), y, v0) else None
        except Exception:
            return None


def _stacked_agrees(block: ModelBlock, v0: np.ndarray, y: np.ndarray) -> bool:
    """The stacked complex step against stacked central differences (one model call each).

    Both are right only when each output row depends on its own row of values alone; the
    mean of each pair of difference rows must also give back ``y`` (a model that mixes rows,
    e.g. by a sum over them, fails one of the two tests)."""
    n, m = block.x.shape[0], v0.size
    h = 1e-6 * np.maximum(1.0, np.abs(v0))  # the steps of jacobian_fd
    steps = np.concatenate([np.diag(h), -np.diag(h)])
    try:
        out = np.asarray(block._call_stacked(v0 + steps, block.x), dtype=float)
        pm = np.broadcast_to(out, (2 * m, n))
        j_fd = ((pm[:m] - pm[m:]) / (2.0 * h[:, None])).T
        j_c = jacobian_complex_stacked(lambda vb: block._call_stacked(vb, block.x), v0, n)
    except Exception:
        return False
    scale = float(np.abs(y).max(initial=0.0))
    if not np.allclose(0.5 * (pm[:m] + pm[m:]), y, rtol=1e-8, atol=1e-8 * scale):
        return False
    return complex_step_agrees(j_c, j_fd, y, v0)


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


class StructureCache:
    """A bounded least-recently-used map of what was found out about models by structure.

    Keys name a structure only (the model function object, its Jacobian options, the
    parameter names, the data shape), never parameter values: the names a model reads and
    its Jacobian mode (complex-step verdict, pointwise check) found for one fit are reused
    by the next fit of the same structure, even through a fresh :class:`JointRefinement`
    (as a script that builds one per fit does). The module owns one instance,
    :data:`PROBE_CACHE`, holding at most ``maxsize`` entries (the oldest are dropped); it
    holds the model functions it names alive until then.

    Parameters
    ----------
    maxsize : int
        Most entries kept.
    """

    def __init__(self, maxsize: int = 128) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        """The entry of ``key`` (now the most recent), or None; an unhashable key misses."""
        try:
            out = self._data.get(key)
        except TypeError:
            return None
        if out is not None:
            self._data.move_to_end(key)
        return out

    def put(self, key: Any, value: Any) -> None:
        """Store ``value`` under ``key`` (ignored for an unhashable key), dropping the oldest
        entries beyond ``maxsize``."""
        try:
            self._data[key] = value
        except TypeError:
            return
        self._data.move_to_end(key)
        while len(self._data) > self.maxsize:
            self._data.popitem(last=False)

    def fetch(self, key: Any, compute: Callable[[], Any]) -> Any:
        """The entry of ``key``, or ``compute()`` stored under it when absent; with ``key``
        None (a structure that is not cached) ``compute()`` alone."""
        found = None if key is None else self.get(key)
        if found is None:
            found = compute()
            if key is not None:
                self.put(key, found)
        return found

    def clear(self) -> None:
        """Forget every entry."""
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


PROBE_CACHE = StructureCache()
"""The module's bounded cache of probe results and Jacobian modes (see :class:`StructureCache`)."""


def _structure_key(c: Contribution, layout: Layout) -> tuple[Any, ...]:
    """What the probe of ``c`` depends on: model, options, names and data shape."""
    ds = c.dataset
    uses = None if c.uses is None else tuple(c.uses)
    return ("probe", c.model, c.jac, uses, c.name, tuple(layout.names),
            tuple(layout.shapes[n] for n in layout.names), ds.x[ds.used].shape, ds.columns)


def _cached_probe(c: Contribution, layout: Layout, values0: dict[str, np.ndarray],
                  seen: dict[Any, Any]) -> tuple[tuple[str, ...], str | None]:
    """``(names read, probed mode)`` of ``c``: from the caller's cache, the module's
    :data:`PROBE_CACHE`, or a new :func:`_probe`."""
    names_key = tuple(layout.names)
    hit = seen.get(("probe", id(c), names_key))
    if hit is None or hit[0] is not c:
        hit = (c, *PROBE_CACHE.fetch(_structure_key(c, layout),
                                     lambda: _probe(c, layout, values0)))
        seen[("probe", id(c), names_key)] = hit
    return hit[1], hit[2]


def _cached_mode(block: ModelBlock, v0: np.ndarray, probed_mode: str | None,
                 seen: dict[Any, Any]) -> tuple[str, bool, bool, bool]:
    """``(mode, pointwise, copies, stacked)`` of ``block``: one probe per (model, Jacobian
    options, short names) in the caller's cache (many datasets share one model), else per
    that and the data shape in the module's :data:`PROBE_CACHE`."""
    c = block.contribution
    key = (c.model, c.jac, c.pointwise, tuple(n.split(".")[-1] for n in block.names))
    if key in seen:
        return seen[key]

    def find() -> tuple[str, bool, bool, bool]:
        kind = _complex_step_kind(block, v0) if (
            probed_mode is None and c.jac == "auto") else None
        mode = "complex" if kind is not None else (probed_mode or _pick_mode(block, v0))
        return (mode, *(_pointwise_kind(block, v0) if mode == "torch" else (False, False)),
                bool(kind))

    found = seen[key] = PROBE_CACHE.fetch(
        ("mode", *key, block.x.shape, v0.shape, probed_mode), find)
    return found


def compile_problem(layout: Layout, contributions: Sequence[Contribution],
                    cache: dict[Any, Any] | None = None) -> Problem:
    """Bind contributions to a layout; check the model outputs at the initial values.

    ``cache`` (a dict owned by the caller, e.g. a :class:`JointRefinement`) keeps what was
    found out about each model (names read, Jacobian mode, pointwise) between compilations of
    the same declarations: a refit, a new stage or a new start does not probe again. Behind
    it, the module's bounded :data:`PROBE_CACHE` keeps the same by structure (model function,
    options, parameter names and shapes, data shape), so that a fresh builder of the same
    problem does not probe again either.

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
    for c in contributions:
        used_names, probed_mode = _cached_probe(c, layout, values0, seen)
        shapes = tuple(layout.shapes[n] for n in used_names)
        elem_idx, dep_idx = _cached_indices(layout, used_names)
        ds = c.dataset
        u = ds.used
        block = ModelBlock(c, used_names, shapes, elem_idx, dep_idx,
                           np.array(ds.x[u]), np.array(ds.y[u]),
                           np.sqrt(c.weight * ds.weights[u]), "pending", tuple(layout.names),
                           columns=ds.columns)
        v0 = flat0[elem_idx]
        for attr, val in zip(("mode", "pointwise", "copies", "stacked"),
                             _cached_mode(block, v0, probed_mode, seen)):
            object.__setattr__(block, attr, val)
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
    part, tie = _cached_maps(layout, blocks, r_elem, r_deps, bool(r_names))
    if tie is not None:
        for b, m in zip(blocks, tie.maps):
            object.__setattr__(b, "tie_map", m)
            sel = _copies(m, b.deps, flat0[b.elem_idx], layout.theta0) if tie.identity else None
            if sel is not None:
                object.__setattr__(b, "copy_src", sel[0])
                object.__setattr__(b, "copy_const", sel[1])
                object.__setattr__(b, "plain", bool(
                    np.array_equal(sel[0], b.deps) and np.array_equal(m, np.eye(m.shape[0]))))
        tie = TieMap((), tie.maps[-1] if r_names else None, tie.identity)
    return Problem(layout, tuple(blocks), r_deps.astype(np.intp), r_elem, r_names, r_jac, part,
                   tie)


def _cached_indices(layout: Layout, used_names: tuple[str, ...]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """``(flat element indices, theta indices they depend on)`` of the parameters a model
    reads; kept per layout structure (:attr:`Layout.structure`) in :data:`PROBE_CACHE`."""
    def find() -> tuple[np.ndarray, np.ndarray]:
        elem = [np.arange(layout.flat_slice(n).start, layout.flat_slice(n).stop)
                for n in used_names]
        elem_idx = np.concatenate(elem) if elem else np.zeros(0, dtype=np.intp)
        deps = [layout.depends_on(n) for n in used_names]
        dep_idx = np.unique(np.concatenate(deps)) if deps else np.zeros(0, dtype=np.intp)
        return elem_idx, dep_idx.astype(np.intp)

    return PROBE_CACHE.fetch(None if layout.structure is None else
                             ("indices", layout.structure, used_names), find)


def _cached_maps(layout: Layout, blocks: Sequence[ModelBlock], r_elem: np.ndarray,
                 r_deps: np.ndarray, restrained: bool) -> tuple[Partition, TieMap | None]:
    """The blocks' shared / local partition and tie maps; kept per layout structure."""
    def find() -> tuple[Partition, TieMap | None]:
        deps = [b.deps for b in blocks] + ([r_deps] if restrained else [])
        part = partition_blocks(deps, layout.n_free, force_shared=r_deps)
        rows = [(b.elem_idx, b.deps) for b in blocks] + ([(r_elem, r_deps)] if restrained
                                                         else [])
        return part, TieMap.of(layout, rows)

    uncached = layout.structure is None or restrained
    return PROBE_CACHE.fetch(None if uncached else
                             ("maps", layout.structure, tuple(b.names for b in blocks)), find)


def _copies(m: np.ndarray, deps: np.ndarray, v0: np.ndarray, theta0: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray] | None:
    """``(source theta index or -1, constants)`` when each used value (row of the constant map
    ``m``) is a constant (zero row) or an exact copy of one theta entry (one entry 1.0, equal
    at the start); None otherwise (affine or summed values)."""
    nz = m != 0
    one = nz.any(axis=1)
    if np.any(nz.sum(axis=1) > 1) or not np.all(m[nz] == 1.0):
        return None
    src = np.full(v0.size, -1, dtype=np.intp)
    src[one] = deps[np.argmax(nz[one], axis=1)]
    if not np.array_equal(v0[one], theta0[src[one]]):
        return None
    return src, np.where(one, 0.0, v0)


DENSE_TIE_MAP = 100_000
"""Up to this many entries, :meth:`TieMap.of` slices a dense copy of the core's map (faster
than sparse slicing for small problems; the same numbers)."""


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
        small = layout.n_values * layout.n_free <= DENSE_TIE_MAP  # slice a dense copy
        dv0 = layout.jacobian(layout.theta0, dense=small)  # exact A dz/dtheta (no derived)
        identity = bool(layout.unbounded_mask().all())
        if identity:
            t0 = np.ones(layout.n_free)
        else:
            d0 = layout.transform_derivative(layout.theta0)
            t0 = d0.diagonal()
            if (d0 - sp.diags(t0)).count_nonzero() or not np.all(np.isfinite(t0)) or \
                    np.any(t0 == 0):
                return None
        if small:
            a = dv0 * (1.0 / t0)
            return cls(tuple(a[np.ix_(e, d)] for e, d in rows), None, identity)
        a = sp.csr_matrix(dv0 @ sp.diags(1.0 / t0))
        return cls(tuple(a[e][:, d].toarray() for e, d in rows), None, identity)
