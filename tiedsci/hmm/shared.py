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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.core import Layout, Registry, Simplex
from tiedsci.errors import DeclarationError
from tiedsci.hmm.em import ConvergenceMonitor, e_step, frozen_masks, pool_and_keep
from tiedsci.hmm.emissions import simplex_mstep

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
    """

    models: tuple[Any, ...]
    layout: Layout
    monitor: ConvergenceMonitor
    n_samples: int

    @property
    def n_free(self) -> int:
        return int(self.layout.n_free)

    @property
    def log_likelihood(self) -> float:
        """Joint log-likelihood of the parameters entering the last iteration."""
        return float(self.monitor.history[-1])

    def bic(self, log_likelihood: float | None = None) -> float:
        """BIC of the joint model, charged for ``n_free`` parameters."""
        ll = self.log_likelihood if log_likelihood is None else log_likelihood
        return -2 * ll + self.n_free * np.log(self.n_samples)


def _offsets(models: Sequence[Any]) -> list[int]:
    return list(np.cumsum([0] + [int(m.n_components) for m in models[:-1]]))


def _view(values: dict[str, np.ndarray], i: int, off: int, k: int,
          names: Sequence[str]) -> dict[str, np.ndarray]:
    out = {"startprob": values[f"m{i}.startprob"], "transmat": values[f"m{i}.transmat"]}
    for n in names:
        out[n] = values[n][off:off + k]
    return out


def fit_shared(models: Sequence[Any], X: Sequence[Any], lengths: Sequence[Any] | None = None,
               shared_states: Sequence[Sequence[tuple[int, int]]] = (),
               n_iter: int = 100, tol: float = 1e-4) -> SharedFit:
    """Fit several HMMs at once, sharing the emissions of chosen states across models.

    Parameters
    ----------
    models : sequence of estimators
        Same class and emission configuration (e.g. all ``GaussianHMM(covariance_type="diag")``);
        each keeps its own ``tie_states`` / ``ties`` (indices local to the model).
    X, lengths : sequences
        ``X[i]`` (and ``lengths[i]``) are model ``i``'s data.
    shared_states : groups of ``(model, state)`` pairs
        Each group shares every emission parameter, e.g. ``[[(0, 2), (1, 0)]]``.
    n_iter, tol : int, float

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
    em = models[0]._emission()
    for m in models[1:]:
        if type(m) is not type(models[0]) or m._emission() != em:
            raise DeclarationError("fit_shared needs models of one class and emission "
                                   f"configuration; got {type(m).__name__} {m._emission()!r} "
                                   f"and {type(models[0]).__name__} {em!r}")
    names = list(em.letters.values())
    offs = _offsets(models)
    ks = [int(m.n_components) for m in models]
    xs, init = [], []
    for i, m in enumerate(models):
        x = m._validated(X[i])
        xs.append(x)
        rs = m.random_state
        rng = rs if isinstance(rs, np.random.Generator) else np.random.default_rng(rs)
        v = m._init_values(x, rng)
        m._check_values(v)
        init.append(v)
    # one registry for everything
    reg = Registry()
    stacked = {n: np.concatenate([v[n] for v in init], axis=0) for n in names}
    for i, v in enumerate(init):
        reg.declare(f"m{i}.startprob", v["startprob"], bounds=Simplex(axis=0))
        reg.declare(f"m{i}.transmat", v["transmat"], bounds=Simplex(axis=-1))
    em.declare(reg, stacked)
    for i, m in enumerate(models):
        if m.tie_states:
            groups = [[s + offs[i] for s in g] for g in m._check_groups("tie_states",
                                                                         m.tie_states)]
            for n in names:
                reg.tie_groups(n, groups, axis=0)
        for n, groups in (m.ties or {}).items():
            local = m._check_groups(f"ties[{n!r}]", groups)
            if n == "transmat":
                reg.tie_groups(f"m{i}.transmat", local, axis=0)
            elif n in names:
                reg.tie_groups(n, [[s + offs[i] for s in g] for g in local], axis=0)
            else:
                raise DeclarationError(f"ties: unknown parameter {n!r}")
    for group in shared_states:
        flat = []
        for mi, s in group:
            if not 0 <= mi < len(models) or not 0 <= s < ks[mi]:
                raise DeclarationError(f"shared_states: ({mi}, {s}) names a state that does "
                                       f"not exist (models have {ks} states)")
            flat.append(offs[mi] + s)
        for n in names:
            reg.tie_groups(n, [flat], axis=0)
    for i in range(len(models)):
        for n in (f"m{i}.startprob", f"m{i}.transmat"):
            val = reg.value(n)
            for idx in zip(*np.nonzero(val == 0)):
                reg.fix(reg[n][tuple(int(j) for j in idx)])
    if "emissionprob" in names:
        val = reg.value("emissionprob")
        for idx in zip(*np.nonzero(val == 0)):
            reg.fix(reg["emissionprob"][tuple(int(j) for j in idx)])
    layout = reg.compile()
    values = layout.values0
    frozen = frozen_masks(layout)
    pool, keep = pool_and_keep(layout, frozen)
    problems = [m._prepare(xs[i], lengths[i], _view(values, i, offs[i], ks[i], names))
                for i, m in enumerate(models)]
    monitor = ConvergenceMonitor(tol=tol, n_iter=n_iter)
    for it in range(n_iter):
        total = 0.0
        per_model = []
        for i, prob in enumerate(problems):
            stats, ll = e_step(_view(values, i, offs[i], ks[i], names), prob)
            per_model.append(stats)
            total += ll
        new = dict(values)
        for i, stats in enumerate(per_model):
            for n, key in (("startprob", "start"), ("transmat", "trans")):
                name = f"m{i}.{n}"
                new[name] = simplex_mstep(name, stats[key], values[name], pool, frozen[name])
        emission_stats = {key: np.concatenate([s[key] for s in per_model], axis=0)
                          for key in per_model[0] if key not in ("start", "trans")}
        emission_values = {n: values[n] for n in names}
        new.update(em.m_step(emission_values, emission_stats, pool, keep, frozen))
        values = new
        monitor.history.append(total)
        monitor.iter = it + 1
        if len(monitor.history) >= 2 and monitor.history[-1] - monitor.history[-2] < tol:
            monitor.converged = True
            break
    for i, m in enumerate(models):
        view = _view(values, i, offs[i], ks[i], names)
        m._set_attributes(view)
        m.n_features = m._n_features(view)
        m.monitor_ = monitor
        m.layout_ = m.build_registry(view).compile()
    return SharedFit(tuple(models), layout, monitor, int(sum(x.shape[0] for x in xs)))
