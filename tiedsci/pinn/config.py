"""Frozen specifications: the network (:class:`NetSpec`) and the training (:class:`TrainConfig`)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any

from tiedsci.errors import DataError
from tiedsci.pinn.jets import ACTIVATIONS

__all__ = ["NetSpec", "TrainConfig", "BOUNDARIES", "from_dict"]

BOUNDARIES = ("periodic", "penalty", "shared_subnet")
ARCHITECTURES = ("separable", "mlp")


def _is_int(v: Any) -> bool:
    """An integer value (``3`` or ``3.0``), not a bool, a string or NaN."""
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        return False
    return math.isfinite(v) and int(v) == v


def _check_int(obj: Any, name: str, minimum: int) -> None:
    v = getattr(obj, name)
    if not _is_int(v) or v < minimum:
        raise DataError(f"{name} must be an integer >= {minimum}, got {v!r}")


def _number(obj: Any, name: str) -> float:
    v = getattr(obj, name)
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise DataError(f"{name} must be a number, got {v!r}")
    return float(v)


@dataclass(frozen=True)
class NetSpec:
    """Network and boundary treatment.

    Attributes
    ----------
    architecture : {"separable", "mlp"}
        ``separable``: ``u = sum_r f_r(x) g_r(t)`` (fast on CPU, see the module notes);
        ``mlp``: one network on ``(x, t)``.
    width, depth : int
        Hidden units and hidden layers of each network.
    activation : {"tanh", "sin", "gelu"}
    rank : int
        Separable rank.
    x_depth : int or None
        Separable networks only: hidden layers of the x-network (``None``, unset: ``depth``). ``0``
        makes each x-factor a linear combination of the periodic features, with
        ``n_harmonics`` harmonics a truncated Fourier series
        ``f_r(x) = b_r + sum_k a_rk cos(k w x) + c_rk sin(k w x)``: exactly periodic, with
        exact derivatives of every order and the resolution set by ``n_harmonics`` alone.
    n_harmonics : int
        Harmonics of the periodic embedding.
    harmonic_decay : float
        Fixed factor ``k^-harmonic_decay`` on the ``k``-th harmonic of the periodic embedding
        (0: none). A diagonal preconditioner: a residual with an x-derivative of order ``m``
        (KdV: ``u_xxx``) is ``k^m`` times more sensitive to harmonic ``k`` than to the first,
        which stalls Adam and L-BFGS once ``n_harmonics`` is large.
    ck : int or None
        Use the C^k periodic B-spline embedding with ``n_basis`` functions instead of harmonics.
    n_basis : int
    trainable_amplitudes : bool
    time_frequencies : int
        Size of the generic time bank ``w_j = pi j`` (j = 1..n) of the Fourier features of t
        (in units of the window's scaled time); 0 gives the scaled time alone.
    weight_factorization : bool
    boundary : {"periodic", "penalty", "shared_subnet"}
        ``periodic``: exact periodic features (no boundary term). ``penalty``: raw scaled x and a
        soft ``|u(a,t) - u(b,t)|^2 + |u_x(a,t) - u_x(b,t)|^2`` term. ``shared_subnet``: raw
        scaled x and a boundary network ``h(t)`` that the values and slopes at both ends must
        match (soft).
    ic : {"subtract", "soft"}
        ``subtract``: hard initial condition ``u = u0(x) + N(x, t) - N(x, t0)``; ``soft``: a
        loss term on ``N(x, t0) - u0(x)`` (first window only; later windows always carry the
        previous window's end state exactly).
    corner_orders : int
        Separable networks only: add fixed periodic Bernoulli modes carrying the jumps of the
        initial condition's derivatives of orders ``1..corner_orders`` across the periodic
        boundary (:class:`~tiedsci.pinn.net.CornerModes`), each with a learned time amplitude,
        so a corner of ``u0`` can fade instead of being frozen in by the hard initial
        condition; 0 disables them (the value stays exactly periodic either way).
    corner_amplitude : {"learned", "linearized"}
        ``learned``: each corner mode's amplitude is one more output of the time network.
        ``linearized``: the amplitude is fixed to ``exp(lambda t)``, ``lambda`` the decay rate
        of a small perturbation of ``u0`` at the boundary point under the PDE linearised
        there (``-dR/du / dR/du_t``; Allen-Cahn at ``u = -1``: ``lambda = -10``), so the corner
        fades as the true one does and no weight has to learn it.
    """

    architecture: str = "separable"
    width: int = 64
    depth: int = 3
    activation: str = "tanh"
    rank: int = 32
    x_depth: int | None = None
    n_harmonics: int = 16
    harmonic_decay: float = 0.0
    ck: int | None = None
    n_basis: int = 32
    trainable_amplitudes: bool = False
    time_frequencies: int = 0
    weight_factorization: bool = False
    boundary: str = "periodic"
    ic: str = "subtract"
    corner_orders: int = 0
    corner_amplitude: str = "learned"

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise DataError(f"architecture must be one of {ARCHITECTURES}, got "
                            f"{self.architecture!r}")
        if self.activation not in ACTIVATIONS:
            raise DataError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.boundary not in BOUNDARIES:
            raise DataError(f"boundary must be one of {BOUNDARIES}, got {self.boundary!r}")
        if self.ic not in ("subtract", "soft"):
            raise DataError(f"ic must be 'subtract' or 'soft', got {self.ic!r}")
        for name in ("width", "depth", "rank", "n_harmonics", "n_basis"):
            _check_int(self, name, 1)
        _check_int(self, "time_frequencies", 0)
        _check_int(self, "corner_orders", 0)
        if self.corner_orders > 3:
            raise DataError(f"corner_orders must be <= 3, got {self.corner_orders!r}")
        if self.corner_amplitude not in ("learned", "linearized"):
            raise DataError(f"corner_amplitude must be 'learned' or 'linearized', got "
                            f"{self.corner_amplitude!r}")
        if self.corner_orders and self.architecture != "separable":
            raise DataError("corner_orders needs architecture='separable'")
        if self.ck is not None:
            _check_int(self, "ck", 0)
        decay = _number(self, "harmonic_decay")
        if not math.isfinite(decay) or decay < 0:
            raise DataError(f"harmonic_decay must be finite and >= 0, got {decay!r}")
        if self.x_depth is not None:
            _check_int(self, "x_depth", 0)
            if self.architecture != "separable":
                raise DataError("x_depth needs architecture='separable'")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation schedule (per time window) and numerics.

    Attributes
    ----------
    adam_steps : int
        Adam steps per window (an upper bound when ``budget_s`` is set).
    lr, lr_decay, decay_steps : float, float, int
        Learning rate, multiplied by ``lr_decay`` every ``decay_steps`` (smoothly).
    lbfgs_steps : int
        L-BFGS iterations per window (upper bound), in calls of ``lbfgs_chunk`` iterations.
    lbfgs_history, lbfgs_chunk : int
    n_x, n_t : int
        Collocation grid for Adam (stratified random, redrawn every ``resample_every`` steps).
    n_x_lbfgs, n_t_lbfgs : int
        Larger grid for L-BFGS (a small fixed grid lets L-BFGS over-fit).
    lbfgs_resample_every : int
        Redraw the L-BFGS grid every this many calls (0: fixed).
    n_windows : int
        Time-marching windows (1 = one global model).
    n_sweeps : int
        Extra sweeps re-optimise every window with L-BFGS on fresh points.
    causal_eps : float
        Causal weights ``exp(-eps * cumulative chunk loss)`` over ``causal_chunks`` time chunks
        (Wang et al. 2022); 0 disables them.
    balance : bool
        Gradient-norm loss balancing of the loss terms, updated every ``balance_every`` steps.
    budget_s : float or None
        Wall-clock budget of the whole solve, split evenly over windows (and sweeps).
    adam_fraction : float
        Fraction of a window's budget given to Adam.
    seed : int
    dtype : {"float32", "float64"}
    device : str
        ``"cpu"``, ``"cuda"``...; a clear error when CUDA is asked for and absent.
    progress : bool
        tqdm progress bar.
    checkpoint : str or None
        Stem of the checkpoint bundle (``<stem>.json`` / ``.npz`` / ``.pt``, a suffix is
        dropped), written every ``checkpoint_every`` steps and at the end of each window;
        :func:`~tiedsci.pinn.marching.solve_time_marching` resumes from it exactly.
    checkpoint_every : int
        Also write it every this many Adam steps and after every L-BFGS call (0: window ends).
    target_error : float or None
        Stop the solve as soon as the error against a reference (``solve(...,
        reference=...)``) is at or below this (checked every ``monitor_every`` Adam steps and
        after every L-BFGS call).
    monitor_every : int
        Adam steps between two error checks against the reference.
    plateau_steps : int
        End a window's Adam phase (go on to L-BFGS) when the logged loss has not fallen by a
        factor ``1 - plateau_rtol`` for this many steps, and end its L-BFGS phase after
        ``plateau_steps // lbfgs_chunk`` (at least 1) calls without such a fall; 0 disables.
    plateau_rtol : float
    threads : int or None
        torch intra-op threads during the solve (restored afterwards). The networks are small:
        on a shared or busy CPU a second thread costs far more than it gives (measured here:
        one Allen-Cahn step 17 ms with 1 thread, 790 ms with 2 contended threads). ``None``
        leaves torch's setting alone.
    """

    adam_steps: int = 2000
    lr: float = 1e-3
    lr_decay: float = 0.9
    decay_steps: int = 1000
    lbfgs_steps: int = 500
    lbfgs_history: int = 50
    lbfgs_chunk: int = 50
    n_x: int = 256
    n_t: int = 32
    n_x_lbfgs: int = 512
    n_t_lbfgs: int = 64
    resample_every: int = 100
    lbfgs_resample_every: int = 0
    n_windows: int = 1
    n_sweeps: int = 1
    causal_eps: float = 0.0
    causal_chunks: int = 16
    balance: bool = False
    balance_every: int = 100
    boundary_weight: float = 1.0
    budget_s: float | None = None
    adam_fraction: float = 0.5
    seed: int = 0
    dtype: str = "float32"
    device: str = "cpu"
    progress: bool = False
    checkpoint: str | None = None
    checkpoint_every: int = 0
    target_error: float | None = None
    monitor_every: int = 100
    plateau_steps: int = 0
    plateau_rtol: float = 1e-3
    threads: int | None = 1

    def __post_init__(self) -> None:
        for name in ("adam_steps", "lbfgs_steps", "resample_every", "lbfgs_resample_every",
                     "checkpoint_every", "plateau_steps"):
            _check_int(self, name, 0)
        for name in ("lbfgs_history", "lbfgs_chunk", "n_x", "n_t", "n_x_lbfgs", "n_t_lbfgs",
                     "n_windows", "n_sweeps", "causal_chunks", "balance_every", "decay_steps",
                     "monitor_every"):
            _check_int(self, name, 1)
        if not _is_int(self.seed):
            raise DataError(f"seed must be an integer, got {self.seed!r}")
        for name in ("lr", "lr_decay", "causal_eps", "adam_fraction", "boundary_weight",
                     "plateau_rtol"):
            v = _number(self, name)
            if not math.isfinite(v) or v < 0:
                raise DataError(f"{name} must be finite and >= 0, got {v!r}")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1 or self.adam_fraction > 1:
            raise DataError("need lr > 0, 0 < lr_decay <= 1 and adam_fraction <= 1")
        if self.budget_s is not None and not (math.isfinite(_number(self, "budget_s"))
                                              and self.budget_s > 0):
            raise DataError(f"budget_s must be None or > 0, got {self.budget_s!r}")
        if self.target_error is not None and not (
                math.isfinite(_number(self, "target_error")) and self.target_error > 0):
            raise DataError(f"target_error must be None or > 0, got {self.target_error!r}")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or int(self.threads) != self.threads or self.threads < 1):
            raise DataError(f"threads must be None or an integer >= 1, got {self.threads!r}")
        if self.dtype not in ("float32", "float64"):
            raise DataError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.n_t < self.causal_chunks and self.causal_eps > 0:
            raise DataError(f"n_t ({self.n_t}) must be >= causal_chunks ({self.causal_chunks})")


def from_dict(cls: type, data: dict[str, Any] | None) -> Any:
    """Build a spec from a dict (TOML table), naming unknown keys in the error."""
    data = dict(data or {})
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise DataError(f"unknown {cls.__name__} option(s) {unknown}; known: {sorted(known)}")
    return replace(cls(), **data)
