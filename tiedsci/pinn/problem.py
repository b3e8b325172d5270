"""PDE problems: residual, domain, periodic axes and physical coefficients (registry parameters).

A :class:`PDEProblem` holds a residual function ``residual(d, coords, p)`` where

- ``d`` maps ``"u"``, ``"u_t"``, ``"u_x"``, ``"u_xx"``, ... (``"u_y"``, ``"u_yy"`` in 2-D) to
  tensors of the field and its derivatives,
- ``coords`` maps input names to coordinates broadcastable against them,
- ``p`` maps the problem's coefficient names (``"speed"``, ``"nu"``...) to scalar tensors,
  unpacked from the registry: a coefficient declared free is learned (inverse problem), and
  coefficients of several problems declared in one registry can be tied.

Factories: :func:`advection`, :func:`heat`, :func:`burgers`, :func:`allen_cahn`, :func:`kdv`
(1-D periodic in ``x``, time ``t``), :func:`poisson_2d`, :func:`helmholtz_2d` (2-D periodic box,
steady). A user problem is built with :func:`custom`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from tiedsci.core import Registry
from tiedsci.errors import DataError, UnknownParameterError
from tiedsci.pinn.domain import declare_periodic_axis

__all__ = ["PDEProblem", "advection", "heat", "burgers", "allen_cahn", "kdv", "poisson_2d",
           "helmholtz_2d", "custom", "ResidualFn", "rebuild"]

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

ResidualFn = Callable[[Mapping[str, torch.Tensor], Mapping[str, torch.Tensor],
                       Mapping[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class PDEProblem:
    """One PDE on a box with periodic axes.

    Attributes
    ----------
    name : str
    inputs : tuple of str
        Input names in network column order: ``("x", "t")`` (evolution) or ``("x", "y")``.
    bounds : dict name -> (lo, hi)
        Box; periodic axes are ``[lo, hi)``.
    residual : callable
        ``residual(d, coords, p) -> tensor`` (zero for the exact solution).
    orders : dict name -> int
        Highest derivative the residual uses along each input.
    coefficients : dict local name -> registry name
    registry : Registry
        Holds the coefficients and the periodic axes (``domain.<axis>.*``).
    initial : callable, optional
        ``u0(x)`` for evolution problems, elementwise, numpy or torch.
    spectral : (equation, coefficient dict), optional
        How :mod:`tiedsci.pinn.spectral` makes a reference (fixed coefficient values).
    forcing : callable, optional
        For steady problems: ``f(coords)`` entering the residual (kept for plots / references).
    exact : callable, optional
        Exact solution ``u(coords)`` if known.
    gauge : bool
        Steady problems determined only up to a constant (periodic Poisson): a mean-zero term is
        added to the loss.
    recipe : (factory name, keyword arguments), optional
        How to build this problem again (:func:`tiedsci.pinn.load` uses it): set by the
        factories when every argument is plain data (no user function, no shared registry).
    """

    name: str
    inputs: tuple[str, ...]
    bounds: Mapping[str, tuple[float, float]]
    residual: ResidualFn
    orders: Mapping[str, int]
    coefficients: Mapping[str, str]
    registry: Registry = field(compare=False, repr=False)
    initial: Callable[[Any], Any] | None = None
    spectral: tuple[str, Mapping[str, float]] | None = None
    forcing: Callable[[Mapping[str, Any]], Any] | None = None
    exact: Callable[[Mapping[str, Any]], Any] | None = None
    gauge: bool = False
    recipe: tuple[str, Mapping[str, Any]] | None = field(default=None, compare=False)

    @property
    def is_evolution(self) -> bool:
        return "t" in self.inputs

    @property
    def periodic(self) -> tuple[str, ...]:
        return tuple(a for a in self.inputs if f"domain.{a}.period" in self.registry)

    def coefficient_values(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Local coefficient name -> value, from a full registry ``values`` mapping.

        Asking it for a coefficient the problem does not declare raises
        :class:`~tiedsci.errors.UnknownParameterError` naming the declared ones.
        """
        return ResidualInputs({k: values[v] for k, v in self.coefficients.items()},
                              "coefficient", self.name)


class ResidualInputs(dict):
    """The ``d`` / ``p`` mappings handed to a residual: a missing key is a named error
    (:class:`~tiedsci.errors.UnknownParameterError`, also a ``KeyError``) listing what exists."""

    def __init__(self, data: Mapping[str, Any], what: str, owner: str, hint: str = "") -> None:
        super().__init__(data)
        self._what, self._owner, self._hint = what, owner, hint

    def __missing__(self, key: str) -> Any:
        raise UnknownParameterError(
            f"the residual of problem {self._owner!r} asked for the {self._what} {key!r}, "
            f"which does not exist; available: {sorted(self)}{self._hint}")


def _pair(name: str, value: Any) -> tuple[float, float]:
    """An interval argument ``(lo, hi)`` as two floats (finiteness is checked by the caller)."""
    try:
        lo, hi = value
        return float(lo), float(hi)
    except (TypeError, ValueError):
        raise DataError(f"{name} must be an interval (lo, hi) of two numbers, got {value!r}"
                        ) from None


def _declare_coefficients(reg: Registry, namespace: str, coeffs: Mapping[str, float],
                          trainable: bool | tuple[str, ...]) -> dict[str, str]:
    if not isinstance(trainable, bool):
        unknown = sorted(set(trainable) - set(coeffs))
        if unknown:
            raise DataError(f"trainable names {unknown} are not coefficients of {namespace!r} "
                            f"(coefficients: {sorted(coeffs)})")
    out = {}
    for key, val in coeffs.items():
        try:
            fval = float(val)
        except (TypeError, ValueError):
            raise DataError(f"coefficient {key!r} of {namespace!r} must be a number, got {val!r}"
                            ) from None
        if not math.isfinite(fval):
            raise DataError(f"coefficient {key!r} of {namespace!r} is not finite: {val!r}")
        free = trainable if isinstance(trainable, bool) else key in trainable
        name = f"{namespace}.{key}"
        if name in reg:
            out[key] = name  # already declared (shared across problems by the caller)
            continue
        reg.declare(name, fval, fixed=not free, description=f"{namespace} coefficient {key}")
        out[key] = name
    return out


# Coefficients that must not be negative: diffusion (a negative one turns u_t = nu u_xx into
# the backward heat equation, ill-posed: every short wavelength grows without bound).
_NON_NEGATIVE = {"heat": ("nu",), "burgers": ("nu",), "allen_cahn": ("eps",)}


def _check_plausible(name: str, coeffs: Mapping[str, Any]) -> None:
    for key in _NON_NEGATIVE.get(name, ()):
        value = coeffs.get(key)
        if isinstance(value, int | float) and value < 0:
            raise DataError(
                f"coefficient {key!r} of {name!r} is {value!r}: a diffusion coefficient must "
                "be >= 0 (a negative one makes the problem ill-posed, the backward heat "
                "equation: short wavelengths grow without bound)")


def _evolution(name: str, residual: ResidualFn, x: tuple[float, float], t: tuple[float, float],
               coeffs: Mapping[str, float], x_order: int, initial: Callable[[Any], Any],
               registry: Registry | None, trainable: bool | tuple[str, ...],
               spectral: str | None) -> PDEProblem:
    reg = Registry() if registry is None else registry
    lo, hi = _pair("x", x)
    t0, t1 = _pair("t", t)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t1 <= t0:
        raise DataError(f"time interval must satisfy t0 < t1, got {t!r}")
    if "domain.x.period" not in reg:
        declare_periodic_axis(reg, "x", lo, hi)
    else:
        period = float(reg.value("domain.x.period"))
        if abs(period - (hi - lo)) > 1e-12 * max(1.0, abs(period)):
            raise DataError(f"the registry already declares axis x with period {period}, "
                            f"not {hi - lo}")
    _check_plausible(name, coeffs)
    names = _declare_coefficients(reg, name, coeffs, trainable)
    return PDEProblem(
        name=name, inputs=("x", "t"), bounds={"x": (lo, hi), "t": (t0, t1)}, residual=residual,
        orders={"x": x_order, "t": 1}, coefficients=names, registry=reg, initial=initial,
        spectral=(spectral, dict(coeffs)) if spectral else None,
    )


def _with_recipe(problem: PDEProblem, factory: str, plain: bool, **kwargs: Any) -> PDEProblem:
    """``problem`` remembering ``factory(**kwargs)`` when ``plain`` (no user callable/registry)."""
    if not plain:
        return problem
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in kwargs.items()}
    return replace(problem, recipe=(factory, args))


def rebuild(recipe: tuple[str, Mapping[str, Any]]) -> PDEProblem:
    """The problem a :attr:`PDEProblem.recipe` describes (``factory(**kwargs)``)."""
    factory, kwargs = recipe
    if factory not in _FACTORIES:
        raise DataError(f"unknown problem factory {factory!r}; known: {sorted(_FACTORIES)}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    return _FACTORIES[factory](**args)


def _lib(v: Any) -> Any:
    return torch if isinstance(v, torch.Tensor) else np


def advection(speed: float = 30.0, x: tuple[float, float] = (0.0, 2 * math.pi),
              t: tuple[float, float] = (0.0, 1.0), initial: Callable[[Any], Any] | None = None,
              registry: Registry | None = None, trainable: bool | tuple[str, ...] = False
              ) -> PDEProblem:
    """``u_t + speed u_x = 0``, periodic in x; default ``u0 = sin x`` on ``[0, 2 pi)``."""
    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        return d["u_t"] + p["speed"] * d["u_x"]

    u0 = initial or (lambda v: _lib(v).sin(v))
    prob = _evolution("advection", residual, x, t, {"speed": speed}, 1, u0, registry, trainable,
                      "advection")
    return _with_recipe(prob, "advection", initial is None and registry is None, speed=speed,
                        x=x, t=t, trainable=trainable)


def heat(nu: float = 0.1, x: tuple[float, float] = (0.0, 2 * math.pi),
         t: tuple[float, float] = (0.0, 1.0), initial: Callable[[Any], Any] | None = None,
         registry: Registry | None = None, trainable: bool | tuple[str, ...] = False
         ) -> PDEProblem:
    """``u_t = nu u_xx``, periodic in x; default ``u0 = sin x``."""
    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        return d["u_t"] - p["nu"] * d["u_xx"]

    u0 = initial or (lambda v: _lib(v).sin(v))
    prob = _evolution("heat", residual, x, t, {"nu": nu}, 2, u0, registry, trainable, "heat")
    return _with_recipe(prob, "heat", initial is None and registry is None, nu=nu, x=x, t=t,
                        trainable=trainable)


def burgers(nu: float = 0.01 / math.pi, x: tuple[float, float] = (-1.0, 1.0),
            t: tuple[float, float] = (0.0, 1.0), initial: Callable[[Any], Any] | None = None,
            registry: Registry | None = None, trainable: bool | tuple[str, ...] = False
            ) -> PDEProblem:
    """Viscous Burgers ``u_t + u u_x = nu u_xx`` on a periodic box; default ``u0 = -sin(pi x)``."""
    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        return d["u_t"] + d["u"] * d["u_x"] - p["nu"] * d["u_xx"]

    u0 = initial or (lambda v: -_lib(v).sin(math.pi * v))
    prob = _evolution("burgers", residual, x, t, {"nu": nu}, 2, u0, registry, trainable,
                      "burgers")
    return _with_recipe(prob, "burgers", initial is None and registry is None, nu=nu, x=x, t=t,
                        trainable=trainable)


def allen_cahn(eps: float = 1e-4, gamma: float = 5.0, x: tuple[float, float] = (-1.0, 1.0),
               t: tuple[float, float] = (0.0, 1.0), initial: Callable[[Any], Any] | None = None,
               registry: Registry | None = None, trainable: bool | tuple[str, ...] = False
               ) -> PDEProblem:
    """``u_t = eps u_xx + gamma (u - u^3)``; default Raissi's ``u0 = x^2 cos(pi x)`` on [-1, 1)."""
    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        u = d["u"]
        return d["u_t"] - p["eps"] * d["u_xx"] - p["gamma"] * (u - u**3)

    u0 = initial or (lambda v: v**2 * _lib(v).cos(math.pi * v))
    prob = _evolution("allen_cahn", residual, x, t, {"eps": eps, "gamma": gamma}, 2, u0,
                      registry, trainable, "allen_cahn")
    return _with_recipe(prob, "allen_cahn", initial is None and registry is None, eps=eps,
                        gamma=gamma, x=x, t=t, trainable=trainable)


def kdv(lambda1: float = 1.0, lambda2: float = 0.0025, x: tuple[float, float] = (-1.0, 1.0),
        t: tuple[float, float] = (0.0, 1.0), initial: Callable[[Any], Any] | None = None,
        registry: Registry | None = None, trainable: bool | tuple[str, ...] = False
        ) -> PDEProblem:
    """KdV ``u_t + lambda1 u u_x + lambda2 u_xxx = 0``; default ``u0 = cos(pi x)`` on [-1, 1)."""
    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        return d["u_t"] + p["lambda1"] * d["u"] * d["u_x"] + p["lambda2"] * d["u_xxx"]

    u0 = initial or (lambda v: _lib(v).cos(math.pi * v))
    prob = _evolution("kdv", residual, x, t, {"lambda1": lambda1, "lambda2": lambda2}, 3, u0,
                      registry, trainable, "kdv")
    return _with_recipe(prob, "kdv", initial is None and registry is None, lambda1=lambda1,
                        lambda2=lambda2, x=x, t=t, trainable=trainable)


def _steady(name: str, residual: ResidualFn, box: Mapping[str, tuple[float, float]],
            coeffs: Mapping[str, float], forcing: Callable, exact: Callable | None,
            registry: Registry | None, trainable: bool | tuple[str, ...], gauge: bool,
            periodic: tuple[str, ...]) -> PDEProblem:
    reg = Registry() if registry is None else registry
    box = {k: _pair(k, v) for k, v in box.items()}
    if not periodic or set(periodic) - set(box):
        raise DataError(f"periodic axes {periodic} must be a non-empty subset of {tuple(box)}")
    for axis, (lo, hi) in box.items():
        if axis in periodic and f"domain.{axis}.period" not in reg:
            declare_periodic_axis(reg, axis, lo, hi)
    _check_plausible(name, coeffs)
    names = _declare_coefficients(reg, name, coeffs, trainable)
    return PDEProblem(
        name=name, inputs=tuple(box), bounds={k: (float(a), float(b)) for k, (a, b) in box.items()},
        residual=residual, orders={k: 2 for k in box}, coefficients=names, registry=reg,
        forcing=forcing, exact=exact, gauge=gauge,
    )


def _default_forcing(kappa2: float) -> tuple[Callable, Callable]:
    """Manufactured solution ``u = sin(x) cos(2 y)`` on ``[0, 2 pi)^2`` and its forcing."""
    def exact(c: Mapping) -> Any:
        lib = _lib(c["x"])
        return lib.sin(c["x"]) * lib.cos(2 * c["y"])

    def forcing(c: Mapping) -> Any:
        return (5.0 + kappa2) * exact(c)

    return forcing, exact


def poisson_2d(forcing: Callable[[Mapping[str, Any]], Any] | None = None,
               x: tuple[float, float] = (0.0, 2 * math.pi),
               y: tuple[float, float] = (0.0, 2 * math.pi),
               exact: Callable[[Mapping[str, Any]], Any] | None = None,
               registry: Registry | None = None,
               periodic: tuple[str, ...] = ("x", "y")) -> PDEProblem:
    """``-(u_xx + u_yy) = f`` on a box periodic along ``periodic`` (default both axes).

    Doubly periodic: ``u`` is fixed to zero mean (gauge term); the default forcing has the exact
    solution ``sin(x) cos(2 y)``, and a user forcing must have zero mean over the box. With a
    non-periodic axis give Dirichlet values to :func:`~tiedsci.pinn.steady.solve_steady`.
    """
    plain = forcing is None and exact is None and registry is None
    if forcing is None:
        forcing, exact = _default_forcing(0.0)

    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        return -(d["u_xx"] + d["u_yy"]) - forcing(c)

    prob = _steady("poisson", residual, {"x": x, "y": y}, {}, forcing, exact, registry, False,
                   gauge=len(periodic) == 2, periodic=tuple(periodic))
    return _with_recipe(prob, "poisson_2d", plain, x=x, y=y, periodic=periodic)


def helmholtz_2d(kappa: float = 1.0, forcing: Callable[[Mapping[str, Any]], Any] | None = None,
                 x: tuple[float, float] = (0.0, 2 * math.pi),
                 y: tuple[float, float] = (0.0, 2 * math.pi),
                 exact: Callable[[Mapping[str, Any]], Any] | None = None,
                 registry: Registry | None = None,
                 trainable: bool | tuple[str, ...] = False,
                 periodic: tuple[str, ...] = ("x", "y")) -> PDEProblem:
    """``-(u_xx + u_yy) + kappa^2 u = f`` on a periodic box (``kappa`` a registry coefficient)."""
    plain = forcing is None and exact is None and registry is None
    if forcing is None:
        forcing, exact = _default_forcing(float(kappa) ** 2)

    def residual(d: Mapping, c: Mapping, p: Mapping) -> torch.Tensor:
        return -(d["u_xx"] + d["u_yy"]) + p["kappa"] ** 2 * d["u"] - forcing(c)

    prob = _steady("helmholtz", residual, {"x": x, "y": y}, {"kappa": kappa}, forcing, exact,
                   registry, trainable, gauge=False, periodic=tuple(periodic))
    return _with_recipe(prob, "helmholtz_2d", plain, kappa=kappa, x=x, y=y, trainable=trainable,
                        periodic=periodic)


def custom(name: str, residual: ResidualFn, x: tuple[float, float], t: tuple[float, float],
           initial: Callable[[Any], Any], coefficients: Mapping[str, float] | None = None,
           x_order: int = 2, registry: Registry | None = None,
           trainable: bool | tuple[str, ...] = False) -> PDEProblem:
    """A user-defined 1-D periodic evolution problem.

    Parameters
    ----------
    name : str
        Namespace of the coefficients in the registry.
    residual : callable
        ``residual(d, coords, p)``; ``d`` holds ``u``, ``u_t`` and ``u_x`` .. up to ``x_order``.
    x, t : (lo, hi)
    initial : callable
        ``u0(x)``, elementwise (torch and numpy).
    coefficients : dict name -> float
        Declared as ``<name>.<key>`` in the registry.
    x_order : int
        Highest x-derivative used (<= 4).
    """
    if not 0 <= int(x_order) <= 4:
        raise DataError(f"x_order must be in 0..4, got {x_order}")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise DataError(f"problem name {name!r} must be an identifier (it is the registry "
                        "namespace of the coefficients)")
    for what, fn in (("residual", residual), ("initial", initial)):
        if not callable(fn):
            raise DataError(f"{what} of problem {name!r} must be callable, got {fn!r}")
    return _evolution(name, residual, x, t, dict(coefficients or {}), int(x_order), initial,
                      registry, trainable, None)


_FACTORIES: dict[str, Callable[..., PDEProblem]] = {
    "advection": advection, "heat": heat, "burgers": burgers, "allen_cahn": allen_cahn,
    "kdv": kdv, "poisson_2d": poisson_2d, "helmholtz_2d": helmholtz_2d,
}
