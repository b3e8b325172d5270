"""Reverse-mode autograd helpers for user-defined residuals: ``grad``, ``partial``, ``laplacian``.

These work on pointwise outputs ``u`` of shape (N,) or (N, 1) computed from inputs ``x`` of shape
(N, d) that require grad (each output row depending only on its own input row, as for any
network evaluated point by point). They keep the graph, so the result can enter a loss.
The built-in solvers use Taylor-mode jets (:mod:`tiedsci.pinn.jets`) instead, which are faster
for the many-output networks of the separable design.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from tiedsci.errors import DataError

__all__ = ["grad", "partial", "laplacian", "derivatives_1d"]


def _check(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not x.requires_grad:
        raise DataError("x must require grad (x.requires_grad_(True)) before computing u")
    if u.ndim == 2 and u.shape[1] == 1:
        u = u[:, 0]
    if u.ndim != 1 or u.shape[0] != x.shape[0]:
        raise DataError(f"u must have shape (N,) or (N, 1) with N = {x.shape[0]}, got "
                        f"{tuple(u.shape)}")
    return u


def grad(u: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of pointwise ``u`` with respect to the inputs.

    Parameters
    ----------
    u : tensor, shape (N,) or (N, 1)
    x : tensor, shape (N, d), requires grad

    Returns
    -------
    tensor, shape (N, d): ``du_i / dx_i``.
    """
    u = _check(u, x)
    (g,) = torch.autograd.grad(u.sum(), x, create_graph=True, allow_unused=True)
    return torch.zeros_like(x) if g is None else g


def partial(u: torch.Tensor, x: torch.Tensor, axis: int, order: int = 1) -> torch.Tensor:
    """``d^order u / dx_axis^order`` at every point; shape (N,)."""
    if order < 0:
        raise DataError(f"order must be >= 0, got {order}")
    out = _check(u, x)
    for _ in range(order):
        out = grad(out, x)[:, axis]
    return out


def laplacian(u: torch.Tensor, x: torch.Tensor, axes: tuple[int, ...] | None = None
              ) -> torch.Tensor:
    """Sum of second derivatives over ``axes`` (default all input columns); shape (N,)."""
    u = _check(u, x)
    axes = tuple(range(x.shape[1])) if axes is None else axes
    g = grad(u, x)
    return sum(grad(g[:, a], x)[:, a] for a in axes)


def derivatives_1d(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, order: int
                   ) -> tuple[torch.Tensor, ...]:
    """``(f(x), f'(x), ..., f^(order)(x))`` for a pointwise function of one variable.

    Parameters
    ----------
    fn : callable
        Elementwise torch function (e.g. an initial condition ``lambda x: x**2 * torch.cos(pi*x)``).
    x : tensor, shape (N,)
    order : int

    Returns
    -------
    tuple of tensors, each shape (N,), detached.
    """
    with torch.enable_grad():
        xx = x.detach().clone().requires_grad_(True)
        first = fn(xx)
        if not isinstance(first, torch.Tensor):
            first = torch.as_tensor(first, dtype=xx.dtype, device=xx.device)
            first = first.expand_as(xx) if first.dim() == 0 else first
        out = [first]
        if out[0].shape != xx.shape:
            raise DataError(f"the function must be elementwise: x shape {tuple(xx.shape)} gave "
                            f"{tuple(out[0].shape)}")
        for _ in range(order):
            if not out[-1].requires_grad:  # constant (e.g. the derivative of a polynomial)
                out.append(torch.zeros_like(xx))
                continue
            (g,) = torch.autograd.grad(out[-1].sum(), xx, create_graph=True, allow_unused=True)
            out.append(torch.zeros_like(xx) if g is None else g)
    return tuple(o.detach() for o in out)
