"""One EM fit of several HMMs that share emission parameters across models.

The way speech systems share states across phone models: every model keeps its own start and
transition probabilities and its own data, while chosen states of different models share their
emission parameters. All models are declared in one registry — ``m0.startprob``, ``m0.transmat``,
``m1.startprob``, ... and one emission block whose state axis stacks the states of all models —
and the shared states are registry ties across that axis. The E-step runs per model on its own
sequences; the M-step pools the statistics of every tie group across models (a tie sums), so
the joint log-likelihood never decreases.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.core import Layout
from tiedsci.errors import DeclarationError
from tiedsci.hmm.declare import declare_hmms, model_blocks
from tiedsci.hmm.em import ConvergenceMonitor, EMState, baum_welch

__all__ = ["SharedFit", "fit_shared"]


@dataclass(frozen=True, eq=False)
class SharedFit:
    """Result of :func:`fit_shared`.

    Attributes
    ----------
    models : tuple
        The fitted models (their attributes hold the final parameters).
    layout : Layout
        The joint registry layout; ``layout.n_free`` counts shared parameters once.
    monitor : ConvergenceMonitor
        Joint log-likelihood history.
    n_samples : int
        Total number of frames over all models.
    state : EMState
        The last EM iterate (``fit_shared(..., start=result.state)`` continues it).
    """

    models: tuple[Any, ...]
    layout: Layout
    monitor: ConvergenceMonitor
    n_samples: int
    state: EMState | None = None

    @property
    def n_free(self) -> int:
        return int(self.layout.n_free)

    @property
    def log_likelihood(self) -> float:
        """Joint log-likelihood of the parameters entering the last iteration."""
        return float(self.monitor.history[-1])

    def report(self) -> str:
        """Human summary: the joint fit, then each model's :meth:`~TiedHMM.report`."""
        mon = self.monitor
        head = [f"shared fit of {len(self.models)} models: {self.n_free} free parameters "
                f"(shared states counted once), {self.n_samples} samples",
                f"EM: {mon.iter} iterations, converged {mon.converged}, interrupted "
                f"{mon.interrupted}; joint log-likelihood "
                f"{mon.history[-1] if mon.history else float('nan'):.10g}"]
        parts = [f"--- model {i}\n{m.report()}" for i, m in enumerate(self.models)]
        return "\n".join(head) + "\n\n" + "\n\n".join(parts)

    def bic(self, log_likelihood: float | None = None) -> float:
        """BIC of the joint model, charged for ``n_free`` parameters."""
        ll = self.log_likelihood if log_likelihood is None else log_likelihood
        return -2 * ll + self.n_free * np.log(self.n_samples)


def fit_shared(models: Sequence[Any], X: Sequence[Any], lengths: Sequence[Any] | None = None,
               shared_states: Sequence[Sequence[tuple[int, int]]] = (),
               n_iter: int = 100, tol: float = 1e-4, *, start: EMState | None = None,
               on_iteration: Callable[[EMState], Any] | None = None) -> SharedFit:
    """Fit several HMMs at once, sharing the emissions of chosen states across models.

    Parameters
    ----------
    models : sequence of estimators
        Same class and emission configuration (e.g. all ``GaussianHMM(covariance_type="diag")``);
        each keeps its own ``tie_states`` / ``ties`` / ``fixed`` (indices local to the model).
    X, lengths : sequences
        ``X[i]`` (and ``lengths[i]``) are model ``i``'s data.
    shared_states : groups of ``(model, state)`` pairs
        Each group shares every emission parameter, e.g. ``[[(0, 2), (1, 0)]]``.
    n_iter, tol : int, float
    start : EMState, optional
        Continue from a state of this joint fit (:attr:`SharedFit.state`).
    on_iteration : callable, optional
        As in :func:`~tiedsci.hmm.em.baum_welch` (values under the joint registry's names).

    Returns
    -------
    SharedFit
    """
    models = list(models)
    if not models:
        raise DeclarationError("fit_shared needs at least one model")
    if len(X) != len(models):
        raise DeclarationError(f"got {len(X)} data sets for {len(models)} models")
    lengths = list(lengths) if lengths is not None else [None] * len(models)
    xs = [m._validated(x) for m, x in zip(models, X, strict=True)]
    if start is None:
        init = [m._init_values(x, m._rng()) for m, x in zip(models, xs, strict=True)]
    else:
        blocks = model_blocks(models)
        init = [blocks.view(start.values, i) for i in range(len(models))]
    reg, blocks = declare_hmms(models, init, shared_states)
    layout = reg.compile()
    values = layout.values0 if start is None else start.values
    problems = [m._prepare(xs[i], lengths[i], blocks.view(values, i))
                for i, m in enumerate(models)]
    state = baum_welch(values if start is None else start, problems, layout, blocks, n_iter,
                       tol, on_iteration=on_iteration)
    for i, m in enumerate(models):
        view = blocks.view(state.values, i)
        m._set_attributes(view)
        m.n_features = m._n_features(view)
        m.monitor_ = state.monitor
        m.layout_ = m.build_registry(view).compile()
    return SharedFit(tuple(models), layout, state.monitor, int(sum(x.shape[0] for x in xs)),
                     state)
