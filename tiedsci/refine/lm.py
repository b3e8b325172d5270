"""The one Levenberg-Marquardt loop of tiedsci.refine, over a provider of normal equations.

The loop owns everything that makes the iteration an iteration: the gain-ratio acceptance
test, Nielsen's damping update, the ftol / xtol / gtol stopping rules, the evaluation budget,
Ctrl-C (KeyboardInterrupt: the last accepted point is returned with ``message ==
INTERRUPTED``), checkpoints (``on_accept``) and resume (``start``). How the reduced normal
equations are formed, solved and evaluated belongs to a :class:`NormalProvider`:

* :class:`tiedsci.refine.solver.SerialBlocks` -- residual blocks in this process, local
  parameters eliminated block by block (Schur complement);
* :class:`tiedsci.refine.distributed.ExecutorBatches` -- batches of datasets resident on
  executor workers, which eliminate their locals and back-substitute there; the small shared
  system is solved on the client.

Both give the same iterates to summation round-off, and so a distributed fit can be
interrupted and resumed exactly like a serial one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from tiedsci.refine.solver import NormalSystem

__all__ = [
    "INTERRUPTED",
    "LMOutcome",
    "LMState",
    "NormalProvider",
    "DAMPINGS",
    "damping_after_acceptance",
    "after_rejection",
    "levenberg_marquardt",
]

INTERRUPTED = "interrupted"
"""``LMOutcome.message`` of an iteration stopped by KeyboardInterrupt (Ctrl-C)."""


@dataclass(frozen=True)
class LMOutcome:
    """What :func:`levenberg_marquardt` returns.

    Attributes
    ----------
    theta : ndarray, shape (n_free,)
        Last accepted point.
    resids : tuple of ndarray
        Residual blocks there (datasets, then restraints).
    system : NormalSystem
        Normal-equation blocks there (for the covariance).
    cost : float
        ``0.5 * sum |r_k|^2``.
    nfev, njev, n_iter : int
        Residual evaluations, Jacobian evaluations, accepted steps.
    converged : bool
    message : str
    y_calcs : tuple of ndarray or None
        Model curves at ``theta`` when the provider computed them (executor workers), else
        None (computed by the caller when needed).
    """

    theta: np.ndarray
    resids: tuple[np.ndarray, ...]
    system: NormalSystem
    cost: float
    nfev: int
    njev: int
    n_iter: int
    converged: bool
    message: str
    y_calcs: tuple[np.ndarray, ...] | None = None


@dataclass(frozen=True)
class LMState:
    """Iteration state after an accepted step: what :func:`levenberg_marquardt` needs (as
    ``start=``) to continue exactly as if it had not stopped.

    Attributes
    ----------
    theta : ndarray, shape (n_free,)
    cost : float
        ``0.5 * sum |r_k|^2`` at ``theta``.
    mu : float
        Damping for the next step.
    scale : ndarray, shape (n_free,)
        Marquardt scaling (running maximum of ``diag(J^T J)``, floored).
    nfev, njev, n_iter : int
        Counters so far.
    radius : float
        Trust-region radius ``Delta`` in the scaled norm ``|D^1/2 delta|`` (NaN: not yet
        set, or Nielsen damping).
    """

    theta: np.ndarray
    cost: float
    mu: float
    scale: np.ndarray
    nfev: int
    njev: int
    n_iter: int
    radius: float = float("nan")


class NormalProvider(Protocol):
    """What :func:`levenberg_marquardt` asks of a way to form and solve the normal equations.

    The provider holds the current (last accepted) point and at most one proposed point; the
    loop calls, per iteration, :meth:`gradient_max`, :meth:`propose`, :meth:`evaluate` and,
    when the step is accepted, :meth:`accept`.
    """

    def start(self, theta: np.ndarray, scale: np.ndarray | None) -> float:
        """Evaluate residuals and Jacobian at ``theta`` (shape (n_free,)); return the cost.

        ``scale`` is the Marquardt scaling of a resumed iteration (shape (n_free,)), or None
        to start it from ``diag(J^T J)`` floored at :func:`scale_floor`.
        """
        ...

    def gradient_max(self, mu: float, cost: float) -> float:
        """``max_j |g_j| / sqrt(diag_j 2 cost)`` at the current point, ``diag`` the current
        ``diag(J^T J)`` (:func:`scaled_gradient_max`; may prepare damping ``mu``)."""
        ...

    def propose(self, mu: float) -> tuple[float, float]:
        """Solve ``(J^T J + mu D) delta = -J^T r``; keep ``theta + delta`` as the proposal.

        Returns ``(|D^1/2 delta|, |D^1/2 theta|)`` with ``D`` the Marquardt scaling (norms
        invariant to the parameters' units, as MINPACK's). Raises numpy.linalg.LinAlgError
        when the damped matrix is not positive definite.
        """
        ...

    def evaluate(self) -> tuple[float, float]:
        """``(cost, predicted reduction)`` at the proposal (cost may be inf or nan)."""
        ...

    def accept(self, cost: float) -> None:
        """Make the proposal (with ``cost``) the current point: Jacobian, scaling there.

        The switch is one assignment, so an interrupt leaves the previous point intact.
        """
        ...

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """``(theta, scale)`` of the current point, shape (n_free,) each (for checkpoints)."""
        ...

    def outcome(self) -> tuple[np.ndarray, tuple[np.ndarray, ...], NormalSystem, float,
                               tuple[np.ndarray, ...] | None]:
        """``(theta, resids, system, cost, y_calcs or None)`` at the current point."""
        ...


def scaled_gradient_max(g: np.ndarray, diagonal: np.ndarray, cost: float) -> float:
    """``max_j |g_j| / sqrt(diag_j 2 cost)`` (0 for empty ``g``): the gtol test.

    With the *current* ``diag(J^T J)`` this is MINPACK's cosine ``|J_j . r| / (|J_j| |r|)``
    between each Jacobian column and the residual vector: invariant to units, and not fooled
    by a plateau where the columns have shrunk (as a running maximum would be).
    """
    den = np.sqrt(np.maximum(diagonal, 1e-300) * max(2.0 * cost, 1e-300))
    return float(np.max(np.abs(g) / den, initial=0.0))


SCALE_FLOOR = 1e-100
"""Relative floor of the Marquardt scaling: low enough that parameters whose Jacobian columns
differ by many orders of magnitude (units) are each damped on their own scale, high enough that
an all-zero column keeps the damped matrix positive definite."""


def scale_floor(max_diagonal: float) -> float:
    """Floor of the Marquardt scaling: ``SCALE_FLOOR * max(1, max diag(J^T J))``."""
    return max(float(max_diagonal), 1.0) * SCALE_FLOOR


def initial_scale(diagonal: np.ndarray) -> np.ndarray:
    """Marquardt scaling at the start: ``diag(J^T J)`` floored at :func:`scale_floor`."""
    scale = np.maximum(diagonal, 0.0)
    return np.maximum(scale, scale_floor(scale.max(initial=0.0)))


def sum_squares(resids: Sequence[np.ndarray]) -> float:
    """``sum_k |r_k|^2``, summed block by block in order."""
    total = 0.0
    for r in resids:
        total += float(r @ r)
    return total


def damping_after_acceptance(mu: float, rho: float) -> float:
    """Nielsen's damping update after an accepted step with gain ratio ``rho``."""
    return mu * max(1.0 / 3.0, 1.0 - (2.0 * rho - 1.0) ** 3)


def after_rejection(mu: float, nu: float, pred: float, actual: float, new_cost: float,
                    cost: float, ftol: float) -> tuple[float, float, str | None, bool]:
    """Damping after a rejected step, or the reason to stop.

    Returns ``(mu, nu, message, converged)``; ``message`` is None when the iteration goes on.
    """
    if 0 <= pred <= ftol * cost and np.isfinite(new_cost) and abs(actual) <= ftol * cost:
        return mu, nu, "converged: chi^2 cannot be reduced further (rounding level)", True
    mu *= nu
    nu *= 2.0
    if mu > 1e30:
        return mu, nu, "stopped: no step reduces chi^2 (damping exhausted)", False
    return mu, nu, None, False


DAMPINGS = ("trust-region", "nielsen")
"""Damping strategies of :func:`levenberg_marquardt`."""

RADIUS_FACTOR = 100.0
"""Initial trust radius ``RADIUS_FACTOR * |D^1/2 theta0|`` (MINPACK's ``factor``)."""


@dataclass
class _Run:
    """Mutable counters and damping of one :func:`levenberg_marquardt` call."""

    cost: float
    mu: float
    nfev: int
    njev: int
    n_iter: int
    nu: float = 2.0
    radius: float = float("nan")
    converged: bool = False
    message: str = ""


def _propose_within(provider: NormalProvider, run: _Run) -> tuple[float, float]:
    """Moré's trust-region step: the LM parameter ``mu`` that makes ``|D^1/2 delta|`` about
    the radius (0 when the Gauss-Newton step fits), found in at most 10 solves (a secant step
    on the model ``|D^1/2 delta| ~ c / mu``, safeguarded by a bracket).

    Sets ``run.mu`` (and ``run.radius`` on the first call); returns ``(|D^1/2 delta|,
    |D^1/2 theta|)`` of the proposal left in the provider.
    """
    try:
        norm, theta_norm = provider.propose(0.0)
    except np.linalg.LinAlgError:
        norm, theta_norm = np.inf, np.nan
    if not np.isfinite(run.radius):
        tn = theta_norm if np.isfinite(theta_norm) else 0.0
        run.radius = RADIUS_FACTOR * tn if tn > 0 else RADIUS_FACTOR
    if norm <= 1.1 * run.radius:
        run.mu = 0.0
        return norm, theta_norm
    lo, hi = 0.0, np.inf  # bracket of mu: phi(lo) > radius >= phi(hi) (in the 10 % band)
    mu = run.mu if run.mu > 0 else 1e-3
    best: tuple[float, float, float] | None = None
    for _ in range(10):
        try:
            norm, theta_norm = provider.propose(mu)
        except np.linalg.LinAlgError:
            lo, mu = mu, mu * 10.0
            continue
        best = (mu, norm, theta_norm)
        if 0.9 * run.radius <= norm <= 1.1 * run.radius:
            break
        if norm > run.radius:
            lo = mu
        else:
            hi = mu
        # phi(mu) ~ c / (mu + a): with a = 0, phi = radius at mu * phi / radius
        guess = mu * norm / run.radius
        if not lo < guess < hi:
            guess = np.sqrt(lo * hi) if lo > 0 and np.isfinite(hi) else (
                mu * 10.0 if norm > run.radius else mu / 10.0)
        mu = guess
    if best is None:
        raise np.linalg.LinAlgError("no damping gives a positive definite system")
    run.mu = best[0]  # the provider keeps its last successful proposal: this one
    return best[1], best[2]


def _update_radius(run: _Run, rho: float, step_norm: float, new_cost: float) -> None:
    """MINPACK's radius control after a trial step with gain ratio ``rho``."""
    if rho < 0.25:
        temp = 0.5 if np.isfinite(new_cost) and new_cost <= 2.0 * run.cost else 0.1
        run.radius = temp * min(run.radius, 10.0 * step_norm)
    elif run.mu == 0.0 or rho >= 0.75:
        run.radius = 2.0 * step_norm


def _begin(provider: NormalProvider, theta0: np.ndarray, mu0: float,
           start: LMState | None) -> _Run:
    theta = np.array(theta0 if start is None else start.theta, dtype=float)
    scale = None if start is None else np.asarray(start.scale, dtype=float)
    cost = provider.start(theta, scale)
    if not np.isfinite(cost):
        raise FloatingPointError("the residuals are not finite at the starting point")
    if start is None:
        return _Run(cost, mu0, 1, 1, 0)
    return _Run(cost, float(start.mu), int(start.nfev), int(start.njev), int(start.n_iter),
                radius=float(start.radius))


def _iterate(provider: NormalProvider, run: _Run, ftol: float, xtol: float, gtol: float,
             max_nfev: int, callback: Callable[[int, float], None] | None,
             on_accept: Callable[[LMState], None] | None, damping: str) -> None:
    """The iteration proper; leaves its verdict in ``run.converged`` / ``run.message``."""
    run.message = f"stopped: max_nfev={max_nfev} residual evaluations used without convergence"
    region = damping == "trust-region"
    while run.nfev < max_nfev:
        if run.cost == 0.0 or provider.gradient_max(run.mu, run.cost) <= gtol:
            run.converged, run.message = True, "converged: gradient below gtol"
            return
        try:
            step_norm, theta_norm = (_propose_within(provider, run) if region else
                                     provider.propose(run.mu))
        except np.linalg.LinAlgError:
            run.mu *= run.nu
            run.nu *= 2.0
            if run.mu > 1e30 or region:
                run.message = "stopped: damped normal matrix not positive definite"
                return
            continue
        if step_norm <= xtol * (theta_norm + xtol):
            run.converged, run.message = True, "converged: step below xtol"
            return
        new_cost, pred = provider.evaluate()
        run.nfev += 1
        actual = run.cost - new_cost if np.isfinite(new_cost) else -np.inf
        rho = actual / pred if pred > 0 else -1.0
        if region:
            _update_radius(run, rho, step_norm, new_cost)
        if rho <= 0 or (region and rho < 1e-4):
            run.mu, run.nu, stop, run.converged = after_rejection(
                run.mu, run.nu, pred, actual, new_cost, run.cost, ftol)
            if stop is None and region and run.radius <= xtol * theta_norm:
                run.converged, stop = True, "converged: trust region below xtol"
            if stop is not None:
                run.message = stop
                return
            continue
        small = (actual <= ftol * run.cost) and (pred <= ftol * run.cost) and rho <= 2.0
        provider.accept(new_cost)
        run.njev += 1
        run.n_iter += 1
        run.cost = new_cost
        if not region:
            run.mu = damping_after_acceptance(run.mu, rho)
        run.nu = 2.0
        if on_accept is not None and not small:  # a final state is not one to continue from
            theta, scale = provider.state()
            on_accept(LMState(theta, run.cost, run.mu, scale, run.nfev, run.njev, run.n_iter,
                              run.radius))
        if callback is not None:
            callback(run.n_iter, run.cost)
        if small:
            run.converged, run.message = True, "converged: relative reduction of chi^2 below ftol"
            return


def levenberg_marquardt(
    provider: NormalProvider,
    theta0: np.ndarray,
    *,
    ftol: float = 1e-14,
    xtol: float = 1e-10,
    gtol: float = 1e-10,
    max_nfev: int = 1000,
    mu0: float = 1e-3,
    damping: str = "trust-region",
    callback: Callable[[int, float], None] | None = None,
    start: LMState | None = None,
    on_accept: Callable[[LMState], None] | None = None,
) -> LMOutcome:
    """Minimise ``0.5 * sum_k |r_k(theta)|^2`` by damped Gauss-Newton (Marquardt scaling).

    Parameters
    ----------
    provider : NormalProvider
        Forms, solves and evaluates the normal equations (serial blocks or executor batches).
    theta0 : ndarray, shape (n_free,)
        Starting point (not used with ``start``).
    ftol, xtol, gtol : float
        Stop when the actual and predicted relative reductions of the cost are both below
        ``ftol``, when the scaled step is below ``xtol * (|D^1/2 theta| + xtol)`` (``D`` the
        Marquardt scaling: a test invariant to units), or when the cosine between every
        Jacobian column and the residuals, ``|g_j| / (|J_j| |r|)``, is below ``gtol``.
    max_nfev : int
        Budget of residual evaluations.
    mu0 : float
        Initial damping (relative: the damping term is ``mu * diag(J^T J)``).
    damping : "trust-region" or "nielsen"
        ``"trust-region"`` (default): Moré's (MINPACK's) control, a radius ``Delta`` in the
        scaled norm ``|D^1/2 delta|`` starting at ``100 |D^1/2 theta0|``, halved on poor steps
        (gain ratio < 0.25), set to twice the step on good ones (> 0.75), the LM parameter
        solved for (at most 10 solves of the normal equations, no extra residual
        evaluation). ``"nielsen"``: Nielsen's update of ``mu`` (one solve per step; crawls in
        curved valleys such as Meyer's thermistor problem, 20x more evaluations).
    callback : callable, optional
        ``callback(n_iter, cost)`` after each accepted step (``cost = chi^2 / 2``).
    start : LMState, optional
        Continue from a state given earlier to ``on_accept`` (``theta0`` and ``mu0`` are then
        not used); the iteration goes on exactly as it would have without the stop. The
        re-evaluation at ``start.theta`` is not counted in ``nfev`` / ``njev``.
    on_accept : callable, optional
        ``on_accept(state)`` with an :class:`LMState` after each accepted step that does not
        end the iteration (checkpoints: resuming from any of them repeats the same iterates).

    Returns
    -------
    LMOutcome

    Notes
    -----
    A KeyboardInterrupt (Ctrl-C) after the first evaluation stops the iteration cleanly: the
    last accepted point is returned with ``message == INTERRUPTED`` and ``converged=False``.
    """
    if damping not in DAMPINGS:
        raise ValueError(f"damping must be one of {DAMPINGS}, got {damping!r}")
    run = _begin(provider, theta0, mu0, start)
    try:
        _iterate(provider, run, ftol, xtol, gtol, max_nfev, callback, on_accept, damping)
    except KeyboardInterrupt:
        run.converged, run.message = False, INTERRUPTED
    theta, resids, system, cost, y_calcs = provider.outcome()
    return LMOutcome(theta, tuple(resids), system, cost, run.nfev, run.njev, run.n_iter,
                     run.converged, run.message, None if y_calcs is None else tuple(y_calcs))
