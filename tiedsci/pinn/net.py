"""Networks: MLP (tanh / sin / gelu, optional random weight factorization) and space-time fields.

Every module here has a plain ``forward`` and a ``jet`` (Taylor-mode derivatives along one input
column, :mod:`tiedsci.pinn.jets`). Weights are drawn from an explicit ``torch.Generator`` seeded
by the caller: two models built with the same seed are bit-identical.

Space-time fields (1-D space ``x``, time ``t``) return their values and derivatives on tensor
grids ``(n_t, n_x)``:

- :class:`SeparableField`: ``N(x, t) = sum_r f_r(x) g_r(t)`` with an x-network ``f`` and a
  t-network ``g`` of ``rank`` outputs each; derivatives cost one jet of each 1-D network.
- :class:`MLPField`: one network on the embedded ``(x, t)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from tiedsci.errors import DataError
from tiedsci.pinn.jets import ACTIVATIONS, Jet, activation_derivatives, compose

__all__ = ["FactorizedLinear", "MLP", "FieldNet", "SeparableField", "MLPField", "CornerModes",
           "make_generator"]


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded with ``seed`` (weights are drawn on CPU, then moved)."""
    gen = torch.Generator()
    gen.manual_seed(int(seed))
    return gen


class FactorizedLinear(nn.Module):
    """Linear layer with random weight factorization ``W = diag(exp(s)) V`` (Wang et al. 2023).

    ``s`` is drawn from ``N(mu, sigma)`` per output unit and ``V = W0 / exp(s)`` so the layer
    starts as the Glorot-initialised ``W0``; training moves ``s`` and ``V``.
    """

    def __init__(self, n_in: int, n_out: int, gen: torch.Generator, mu: float = 1.0,
                 sigma: float = 0.1) -> None:
        super().__init__()
        w0 = torch.empty(n_out, n_in, dtype=torch.float64)
        nn.init.xavier_normal_(w0, generator=gen)
        s = mu + sigma * torch.randn(n_out, 1, generator=gen, dtype=torch.float64)
        self.log_scale = nn.Parameter(s)
        self.v = nn.Parameter(w0 / torch.exp(s))
        self.bias = nn.Parameter(torch.zeros(n_out, dtype=torch.float64))

    @property
    def weight(self) -> torch.Tensor:
        return torch.exp(self.log_scale) * self.v

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight.T + self.bias


class _Linear(nn.Module):
    """Glorot-normal linear layer drawn from an explicit generator."""

    def __init__(self, n_in: int, n_out: int, gen: torch.Generator) -> None:
        super().__init__()
        w = torch.empty(n_out, n_in, dtype=torch.float64)
        nn.init.xavier_normal_(w, generator=gen)
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(n_out, dtype=torch.float64))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h @ self.weight.T + self.bias


class MLP(nn.Module):
    """Fully connected network ``n_in -> width x depth -> n_out``.

    Parameters
    ----------
    n_in, n_out : int
    width : int
        Hidden units per layer.
    depth : int
        Number of hidden layers (>= 0; 0 is one linear map ``n_in -> n_out``).
    activation : {"tanh", "sin", "gelu"}
    weight_factorization : bool
        Use :class:`FactorizedLinear` layers.
    seed : int
        Seed of the weight draw.
    """

    def __init__(self, n_in: int, n_out: int, width: int = 64, depth: int = 3,
                 activation: str = "tanh", weight_factorization: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise DataError(f"unknown activation {activation!r}; choose one of {ACTIVATIONS}")
        for name, val, lo in (("n_in", n_in, 1), ("n_out", n_out, 1), ("width", width, 1),
                              ("depth", depth, 0)):
            if isinstance(val, bool) or int(val) != val or val < lo:
                raise DataError(f"{name} must be an integer >= {lo}, got {val!r}")
        gen = make_generator(seed)
        sizes = [n_in] + [width] * depth + [n_out]
        layer = FactorizedLinear if weight_factorization else _Linear
        self.layers = nn.ModuleList(layer(a, b, gen) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = activation

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """h shape (N, n_in) -> (N, n_out)."""
        return self.jet((h,))[0]

    def jet(self, h: Jet) -> Jet:
        """Propagate a jet of inputs, each shape (N, n_in), to a jet of outputs (N, n_out)."""
        order = len(h) - 1
        for i, lin in enumerate(self.layers):
            w = lin.weight
            z = (h[0] @ w.T + lin.bias,) + tuple(d @ w.T for d in h[1:])
            if i == len(self.layers) - 1:
                return z
            derivs = activation_derivatives(self.activation, z[0], order)
            if order == 0:
                h = (derivs[0],)
            else:
                h = compose(derivs, z)
        return h  # pragma: no cover - the loop always returns


class FieldNet(nn.Module):
    """An embedding (features) followed by an MLP: ``X (N, n_inputs) -> (N, n_out)``."""

    def __init__(self, features: nn.Module, mlp: MLP) -> None:
        super().__init__()
        self.features = features
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.features(x))

    def jet(self, x: torch.Tensor, axis: int, order: int) -> Jet:
        """Outputs and their derivatives up to ``order`` along input column ``axis``."""
        return self.mlp.jet(self.features.jet(x, axis, order))


def _names(order: int) -> list[str]:
    return ["u"] + ["u_" + "x" * m for m in range(1, order + 1)]


_BERNOULLI = (  # coefficients of B_n(s), lowest power first
    (1.0,), (-0.5, 1.0), (1 / 6, -1.0, 1.0), (0.0, 0.5, -1.5, 1.0),
    (-1 / 30, 0.0, 1.0, -2.0, 1.0),
)
MAX_CORNER_ORDER = len(_BERNOULLI) - 2


def _bernoulli(n: int, s: torch.Tensor) -> torch.Tensor:
    """Bernoulli polynomial ``B_n(s)`` (0 for n < 0)."""
    if n < 0:
        return torch.zeros_like(s)
    out = torch.zeros_like(s)
    for c in reversed(_BERNOULLI[n]):
        out = out * s + c
    return out


class CornerModes(nn.Module):
    """Fixed x-modes that carry the jumps of an initial condition's derivatives across the
    periodic boundary (a "corner" of ``u0``: ``u0 = x^2 cos(pi x)`` on ``[-1, 1)`` has slope
    ``+2`` at ``x = -1`` and ``-2`` at ``x = +1``).

    Mode ``j`` (derivative order ``j >= 1``) is the periodic Bernoulli function

        k_j(x) = -m_j L^j B_{j+1}(s) / (j+1)!,   s = frac((x - a) / L),  L = b - a,

    whose value (and derivatives below order ``j``) are exactly periodic and whose ``j``-th
    derivative jumps by ``m_j`` across the boundary: ``u0 - k_j`` has no jump of order ``j``.
    At ``x = b`` the derivatives are the left limits (as ``u0``'s are there), so a solution's
    ``boundary_mismatch(t, order=j)`` is the one-sided jump.
    Multiplied by a learned time amplitude in a :class:`SeparableField`, the corner of the
    carried state can fade (the true solution smooths it) instead of being frozen in by the
    hard initial condition.

    Parameters
    ----------
    a, b : float
        Periodic interval ``[a, b)``.
    jumps : sequence of float
        ``m_j = u0^{(j)}(a) - u0^{(j)}(b)`` for ``j = 1..len(jumps)`` (zeros are kept: the mode
        count is fixed by the spec, not the data).
    """

    def __init__(self, a: float, b: float, jumps: list[float]) -> None:
        super().__init__()
        if not 1 <= len(jumps) <= MAX_CORNER_ORDER:
            raise DataError(f"corner modes cover derivative orders 1..{MAX_CORNER_ORDER}, "
                            f"got {len(jumps)}")
        self.register_buffer("bounds", torch.tensor([a, b], dtype=torch.float64))
        self.register_buffer("jumps", torch.tensor(list(jumps), dtype=torch.float64))

    @property
    def n_modes(self) -> int:
        return int(self.jumps.shape[0])

    def jet(self, x: torch.Tensor, order: int) -> Jet:
        """The modes and their x-derivatives up to ``order``; each (n_x, n_modes)."""
        a, b = (float(v) for v in self.bounds)
        length = b - a
        s = (x - a) / length
        s = s - torch.floor(s)
        # x = b is the left end of the period: its value is the same as at x = a (B_n(1) =
        # B_n(0) for n >= 2, bit for bit), its derivatives are the left limits, as u0's are
        s = torch.where(x == b, torch.ones_like(s), s)
        out = []
        for m in range(order + 1):
            cols = []
            for j in range(1, self.n_modes + 1):
                n = j + 1 - m
                scale = -float(self.jumps[j - 1]) * length ** (j - m) / math.factorial(max(n, 0))
                cols.append(scale * _bernoulli(n, s))
            out.append(torch.stack(cols, dim=1))
        return tuple(out)


class SeparableField(nn.Module):
    """``N(x, t) = sum_r f_r(x) g_r(t)``: two 1-D networks with ``rank`` outputs each.

    Parameters
    ----------
    x_net, t_net : FieldNet
        One input column each; ``t_net`` has ``rank`` outputs plus one per corner mode.
    corner : CornerModes, optional
        Fixed extra x-modes (appended to ``f``), each with its own learned time amplitude
        (one more ``t_net`` output per mode).
    corner_rate : float, optional
        Instead of learning them, give the corner modes the fixed amplitude ``exp(rate * t)``
        (``t_net`` then has ``rank`` outputs).
    """

    def __init__(self, x_net: FieldNet, t_net: FieldNet, corner: CornerModes | None = None,
                 corner_rate: float | None = None) -> None:
        super().__init__()
        self.x_net = x_net
        self.t_net = t_net
        self.corner = corner
        self.corner_rate = None if corner is None else corner_rate
        self.rank = x_net.mlp.layers[-1].bias.shape[0]
        scale = 1.0 / math.sqrt(self.rank)
        self.register_buffer("scale", torch.tensor(scale, dtype=torch.float64))

    def x_jet(self, x: torch.Tensor, order: int) -> Jet:
        """f and its x-derivatives, each (n_x, rank + corner modes)."""
        f = self.x_net.jet(x[:, None], 0, order)
        if self.corner is None:
            return f
        k = self.corner.jet(x, order)
        return tuple(torch.cat([fm, km.to(fm.dtype)], dim=1) for fm, km in zip(f, k))

    def t_jet(self, t: torch.Tensor, order: int) -> Jet:
        """g and its t-derivatives, each (n_t, rank), scaled by 1/sqrt(rank)."""
        s = self.scale.to(t.dtype)
        return tuple(g * s for g in self.t_net.jet(t[:, None], 0, order))

    def _time(self, t: torch.Tensor, t0: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        if t0 is None:
            g = self.t_jet(t, 1)
            dg, g_t = g[0], g[1]
        else:
            g = self.t_jet(torch.cat([t, t.new_tensor([t0])]), 1)
            dg, g_t = g[0][:-1] - g[0][-1:], g[1][:-1]
        if self.corner_rate is None:
            return dg, g_t
        rate = float(self.corner_rate)
        e = torch.exp(rate * t)[:, None].expand(-1, self.corner.n_modes)
        e0 = 0.0 if t0 is None else math.exp(rate * t0)
        return torch.cat([dg, e - e0], 1), torch.cat([g_t, rate * e], 1)

    def grid(self, x: torch.Tensor, t: torch.Tensor, t0: float | None, x_order: int
             ) -> dict[str, torch.Tensor]:
        """``N(x, t) - N(x, t0)`` on the grid (``N`` itself when ``t0`` is None), with
        x-derivatives ``u_x``, ``u_xx``... and ``u_t``; each (n_t, n_x)."""
        f = self.x_jet(x, x_order)
        dg, g_t = self._time(t, t0)
        out = {name: dg @ fm.T for name, fm in zip(_names(x_order), f)}
        out["u_t"] = g_t @ f[0].T
        return out

    def points(self, x: torch.Tensor, t: torch.Tensor, t0: float | None, x_order: int
               ) -> dict[str, torch.Tensor]:
        """The same at scattered points ``(x_i, t_i)``; each (N,)."""
        f = self.x_jet(x, x_order)
        dg, g_t = self._time(t, t0)
        out = {name: (dg * fm).sum(1) for name, fm in zip(_names(x_order), f)}
        out["u_t"] = (g_t * f[0]).sum(1)
        return out


class MLPField(nn.Module):
    """One network on the embedded ``(x, t)`` (input columns 0 and 1), one output."""

    def __init__(self, net: FieldNet) -> None:
        super().__init__()
        self.net = net

    def points(self, x: torch.Tensor, t: torch.Tensor, t0: float | None, x_order: int
               ) -> dict[str, torch.Tensor]:
        """``N(x, t) - N(x, t0)`` at scattered points (``N`` when ``t0`` is None),
        x-derivatives and ``u_t``; each (N,)."""
        xt = torch.stack([x, t], dim=1)
        jx = self.net.jet(xt, 0, x_order)
        if t0 is None:
            out = {name: a[:, 0] for name, a in zip(_names(x_order), jx)}
        else:
            j0 = self.net.jet(torch.stack([x, torch.full_like(t, t0)], dim=1), 0, x_order)
            out = {name: (a - b)[:, 0] for name, a, b in zip(_names(x_order), jx, j0)}
        out["u_t"] = self.net.jet(xt, 1, 1)[1][:, 0]
        return out

    def grid(self, x: torch.Tensor, t: torch.Tensor, t0: float | None, x_order: int
             ) -> dict[str, torch.Tensor]:
        """On the grid ``(n_t, n_x)``."""
        n_t, n_x = t.shape[0], x.shape[0]
        xx = x[None, :].expand(n_t, n_x).reshape(-1)
        tt = t[:, None].expand(n_t, n_x).reshape(-1)
        xt = torch.stack([xx, tt], dim=1)
        jx = self.net.jet(xt, 0, x_order)
        if t0 is None:
            out = {name: a[:, 0].reshape(n_t, n_x) for name, a in zip(_names(x_order), jx)}
        else:
            j0 = self.net.jet(torch.stack([x, torch.full_like(x, t0)], dim=1), 0, x_order)
            out = {name: a[:, 0].reshape(n_t, n_x) - b[:, 0][None, :]
                   for name, a, b in zip(_names(x_order), jx, j0)}
        out["u_t"] = self.net.jet(xt, 1, 1)[1][:, 0].reshape(n_t, n_x)
        return out
