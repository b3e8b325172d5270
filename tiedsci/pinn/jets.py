"""Taylor-mode (forward) derivatives of networks along one input coordinate.

A *jet* of order ``k`` is the tuple ``(h, dh, d2h, ..., dkh)`` of a tensor and its first ``k``
derivatives with respect to one scalar input coordinate. Linear layers act on every entry; a
pointwise function ``f`` acts by Faa di Bruno's formula (:func:`compose`). One forward pass gives
all derivatives up to order ``k`` for every output at once, which is what PDE residuals need and
what reverse-mode autograd does badly (one backward pass per output column and per order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["Jet", "compose", "activation_derivatives", "MAX_ORDER", "ACTIVATIONS"]

Jet = tuple[torch.Tensor, ...]
MAX_ORDER = 4
ACTIVATIONS = ("tanh", "sin", "gelu")


def compose(derivs: Sequence[torch.Tensor], z: Jet) -> Jet:
    """Jet of ``f(z)`` from ``f^(m)(z0)`` (``derivs[m]``, m = 0..k) and the jet of ``z``.

    Parameters
    ----------
    derivs : sequence of tensors
        ``derivs[m]`` is the m-th derivative of ``f`` evaluated at ``z[0]``; length ``k + 1``.
    z : Jet
        ``(z, z', ..., z^(k))``, same shapes.

    Returns
    -------
    Jet of the same order.
    """
    k = len(z) - 1
    if k > MAX_ORDER:
        raise ValueError(f"jets are implemented up to order {MAX_ORDER}, asked for {k}")
    out = [derivs[0]]
    if k >= 1:
        out.append(derivs[1] * z[1])
    if k >= 2:
        out.append(derivs[2] * z[1] ** 2 + derivs[1] * z[2])
    if k >= 3:
        out.append(derivs[3] * z[1] ** 3 + 3 * derivs[2] * z[1] * z[2] + derivs[1] * z[3])
    if k >= 4:
        out.append(
            derivs[4] * z[1] ** 4
            + 6 * derivs[3] * z[1] ** 2 * z[2]
            + derivs[2] * (4 * z[1] * z[3] + 3 * z[2] ** 2)
            + derivs[1] * z[4]
        )
    return tuple(out)


def activation_derivatives(name: str, z: torch.Tensor, order: int) -> list[torch.Tensor]:
    """``[f(z), f'(z), ..., f^(order)(z)]`` for the activation ``name``.

    Parameters
    ----------
    name : {"tanh", "sin", "gelu"}
        ``gelu`` is the exact (erf) form ``z Phi(z)``.
    z : tensor
    order : int, 0..4
    """
    if name == "tanh":
        s = torch.tanh(z)
        if order == 0:
            return [s]
        d1 = 1 - s * s
        d2 = -2 * s * d1
        d3 = d1 * (4 * s * s - 2 * d1)
        d4 = -4 * d1 * d2 + 8 * s * d1 * d1 + 4 * s * s * d2
        return [s, d1, d2, d3, d4][: order + 1]
    if name == "sin":
        s = torch.sin(z)
        if order == 0:
            return [s]
        c = torch.cos(z)
        return [s, c, -s, -c, s][: order + 1]
    if name == "gelu":
        cdf = 0.5 * (1 + torch.erf(z / math.sqrt(2.0)))
        if order == 0:
            return [z * cdf]
        pdf = torch.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
        z2 = z * z
        return [
            z * cdf,
            cdf + z * pdf,
            pdf * (2 - z2),
            z * pdf * (z2 - 4),
            pdf * (-z2 * z2 + 7 * z2 - 4),
        ][: order + 1]
    raise ValueError(f"unknown activation {name!r}; choose one of {ACTIVATIONS}")
