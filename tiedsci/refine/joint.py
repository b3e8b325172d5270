"""JointRefinement: declare shared and per-dataset parameters, add datasets, fit.

Example
-------
>>> jr = JointRefinement()
>>> jr.add(Dataset(x1, y1, sigma=s1, name="xray"), model)          # doctest: +SKIP
>>> jr.add(Dataset(x2, y2, sigma=s2, name="neutron"), model)       # doctest: +SKIP
>>> jr.shared("center", 3.0)                                       # doctest: +SKIP
>>> jr.local("scale", 1.0, bounds=Positive())  # xray.scale, neutron.scale  # doctest: +SKIP
>>> jr.registry.tie("neutron.width", "xray.width")                 # doctest: +SKIP
>>> result = jr.fit()                                              # doctest: +SKIP

All relations beyond shared/local (ties between some datasets, affine and derived relations,
bounds, fixed values, restraints) are made on :attr:`JointRefinement.registry` directly.
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple
from typing import Any

import numpy as np

from tiedsci.core import Layout, ParamRef, Registry
from tiedsci.errors import ConvergenceError, DeclarationError, SingularMatrixError
from tiedsci.refine.checkpoint import (
    check_fingerprint,
    fingerprint,
    load_checkpoint,
    save_checkpoint,
)
from tiedsci.refine.contribution import Contribution
from tiedsci.refine.covariance import bound_hits, invert_blocks, invert_normal, no_influence
from tiedsci.refine.data import Dataset
from tiedsci.refine.lm import INTERRUPTED, LMOutcome, LMState, levenberg_marquardt
from tiedsci.refine.problem import Problem, compile_problem
from tiedsci.refine.result import DatasetFit, RefinementResult, StageSummary
from tiedsci.refine.softtie import soft_statistics, soft_summary
from tiedsci.refine.solver import SerialBlocks, assemble, dense_normal
from tiedsci.refine.stages import Stage, select_names
from tiedsci.refine.stats import agreement

__all__ = ["JointRefinement", "fit_problem"]

OPTIMIZERS = ("tiedsci", "lmfit")


class JointRefinement:
    """Builder of a joint multi-dataset refinement over one :class:`Registry`.

    Parameters
    ----------
    registry : Registry, optional
        Start from an existing declaration (e.g. a crystal structure's parameters).

    Attributes
    ----------
    registry : Registry
        Where every parameter lives; use it for ties, relations, bounds, restraints.
    contributions : list of Contribution
    groups : dict
        ``group name -> tuple of parameter names`` (for stages).
    """

    def __init__(self, registry: Registry | None = None) -> None:
        self.registry = registry if registry is not None else Registry()
        self.contributions: list[Contribution] = []
        self.groups: dict[str, tuple[str, ...]] = {}
        self._compiled: dict[Any, Any] = {}  # what compile_problem learnt about the models

    # ------------------------------------------------------------------ building
    def add(self, dataset: Dataset, model: Callable[..., Any], *, uses: Sequence[str] | None = None,
            jac: str | Callable[..., Any] = "auto", weight: float = 1.0,
            pointwise: bool | None = None) -> Contribution:
        """Add a dataset with its forward model (see :class:`Contribution`)."""
        c = Contribution(dataset, model, uses=uses, jac=jac, weight=weight, pointwise=pointwise)
        return self.add_contribution(c)

    def add_contribution(self, contribution: Contribution) -> Contribution:
        """Add a ready-made :class:`Contribution`; dataset names must be unique."""
        if any(c.name == contribution.name for c in self.contributions):
            raise DeclarationError(f"a dataset named {contribution.name!r} is already added")
        self.contributions.append(contribution)
        return contribution

    @property
    def dataset_names(self) -> list[str]:
        return [c.name for c in self.contributions]

    def shared(self, name: str, value: Any, *, bounds: Any = None, fixed: bool = False,
               unit: str = "", description: str = "", group: str | None = None) -> ParamRef:
        """Declare one parameter seen by every dataset (its name is used as given)."""
        ref = self.registry.declare(name, value, bounds=bounds, fixed=fixed, unit=unit,
                                    description=description)
        if group is not None:
            self.group(group, [name])
        return ref

    def local(self, name: str, value: Any, *, datasets: Sequence[str] | None = None,
              bounds: Any = None, fixed: bool = False, unit: str = "", description: str = "",
              group: str | None = None) -> dict[str, ParamRef]:
        """Declare one parameter per dataset, named ``<dataset>.<name>``.

        Parameters
        ----------
        value : float, array_like or mapping
            One initial value for all datasets, or ``{dataset name: value}`` (then only
            those datasets get the parameter).
        datasets : sequence of str, optional
            Restrict to these datasets (default: every dataset added so far).

        Returns
        -------
        dict
            ``dataset name -> ParamRef``.
        """
        if isinstance(value, Mapping):
            per = {(k.name if isinstance(k, Dataset) else str(k)): v for k, v in value.items()}
        else:
            targets = list(datasets) if datasets is not None else self.dataset_names
            if not targets:
                raise DeclarationError(
                    f"local({name!r}): no dataset yet; add the datasets first or pass "
                    "{dataset: value}")
            per = {d: value for d in targets}
        known = set(self.dataset_names)
        refs = {}
        for ds, v in per.items():
            if known and ds not in known:
                raise DeclarationError(f"local({name!r}): unknown dataset {ds!r}; added: "
                                       f"{sorted(known)}")
            refs[ds] = self.registry.declare(f"{ds}.{name}", v, bounds=bounds, fixed=fixed,
                                             unit=unit, description=description)
        if group is not None:
            self.group(group, [f"{ds}.{name}" for ds in per])
        return refs

    def group(self, name: str, members: Sequence[str]) -> None:
        """Add parameter names or patterns to a named group (used by stages)."""
        self.groups[name] = tuple(dict.fromkeys(self.groups.get(name, ()) + tuple(members)))

    def with_registry(self, registry: Registry, *, same_names: bool = True
                      ) -> JointRefinement:
        """The same datasets and groups over another registry (e.g. a candidate tie);
        ``same_names=False`` when the models will read other names (probed afresh)."""
        other = JointRefinement(registry)
        other.contributions = list(self.contributions)
        other.groups = dict(self.groups)
        other._compiled = self._compiled if same_names else {}
        return other

    def compile(self) -> Problem:
        """Compile the registry and bind the contributions (see :func:`compile_problem`)."""
        return compile_problem(self.registry.compile(), self.contributions, self._compiled)

    # ------------------------------------------------------------------ fitting
    def fit(self, *, stages: Sequence[Stage | Mapping[str, Any]] | None = None,
            optimizer: str = "tiedsci", method: str = "leastsq", scale_covar: bool = True,
            ftol: float = 1e-14, xtol: float = 1e-10, gtol: float = 1e-10,
            max_nfev: int | None = None, damping: str = "trust-region",
            linear: Sequence[str] | None = None,
            nonnegative: Sequence[str] | None = None, on_singular: str = "raise",
            raise_on_failure: bool = False, executor: Any = None, client: Any = None,
            n_batches: int | None = None, callback: Callable[[int, float], None] | None = None,
            checkpoint: str | os.PathLike[str] | Callable[[dict[str, Any]], None] | None = None,
            resume: str | os.PathLike[str] | Mapping[str, Any] | None = None,
            **optimizer_kws: Any) -> RefinementResult:
        """Refine; with ``stages``, one stage after the other.

        Parameters
        ----------
        stages : sequence of Stage (or dicts with ``name``, ``vary``, ``max_nfev``, ``ftol``),
            optional
            Each stage varies the parameters it names, all other free ones held at their
            current values, and starts where the previous one ended.
        optimizer : "tiedsci" or "lmfit"
            The block-sparse Levenberg-Marquardt (default), or ``lmfit.minimize`` with
            ``method`` (``"leastsq"``, ``"least_squares"``, ...) on the same residuals; further
            keyword arguments (``optimizer_kws``) go to ``lmfit.minimize``.
        scale_covar : bool
            Scale the covariance by the reduced chi-square (lmfit's default).
        ftol, xtol, gtol, max_nfev :
            Stopping rules (see :func:`tiedsci.refine.lm.levenberg_marquardt`);
            ``max_nfev`` defaults to ``100 * (n_free + 1)``.
        damping : "trust-region" or "nielsen"
            How the LM iteration is damped (see :func:`tiedsci.refine.lm.levenberg_marquardt`):
            MINPACK's trust region (default), or Nielsen's update of the damping parameter.
        linear : sequence of str, optional
            Parameters that enter their dataset's model linearly (amplitudes, scales,
            background coefficients; short names such as ``"A1"`` mean every dataset's
            ``<dataset>.A1``): eliminated exactly at every point by variable projection
            (:mod:`tiedsci.refine.varpro`; serial, unbounded local parameters, no
            restraints). Their esds come from the full covariance.
        nonnegative : sequence of str, optional
            Linear parameters (named as in ``linear``, which they join) constrained to
            ``>= 0``: projected out by NNLS (Lawson-Hanson active set,
            :func:`scipy.optimize.nnls`) at every point. Those NNLS puts at 0 are listed in
            ``result.at_bounds`` (``"lower"``) with esd NaN; the other esds are conditional on
            them being 0 (see :mod:`tiedsci.refine.varpro`).
        on_singular : "raise" or "warn"
            A singular normal matrix at the optimum raises :class:`SingularMatrixError`
            (naming the dependent parameters; the result is in its ``result`` attribute), or
            only warns (esd NaN).
        raise_on_failure : bool
            Raise :class:`ConvergenceError` instead of warning when a stage does not converge.
        executor, client : optional
            Run the per-dataset work through an executor of :mod:`tiedsci.parallel`, or on a
            ``dask.distributed.Client`` (shorthand for ``executor=DaskExecutor(client)``):
            batches of datasets with their local parameters stay on the workers, which
            eliminate their locals and send back only the reduced shared system (see
            :mod:`tiedsci.refine.distributed`). Same optimum and esds as the serial fit, to
            summation round-off; checkpoints, resume and Ctrl-C work the same way.
        n_batches : int, optional
            Number of batches for ``executor``/``client`` (default: one per Dask worker).
        callback : callable, optional
            Progress: ``callback(n_iter, chi2)`` after each accepted step (chi2 includes the
            restraint penalty), serial or distributed.
        checkpoint : path or callable, optional
            After every accepted LM step and before every stage after the first, the fit's
            resumable state is written to this bundle path with
            :func:`tiedsci.refine.checkpoint.save_checkpoint` (``<path>.json`` + ``.npz``), or
            handed to ``checkpoint(state)`` (a dict described in
            :mod:`tiedsci.refine.checkpoint`; serial or distributed).
        resume : path or mapping, optional
            A checkpoint written earlier (a path, read with
            :func:`~tiedsci.refine.checkpoint.load_checkpoint`, or a ``state`` given to a
            callable ``checkpoint``; arrays may be lists and ``lm`` / ``stages`` plain dicts):
            the fit continues from there and ends where the uninterrupted fit ends. A
            checkpoint of another refinement (other data, declarations, stages or options)
            raises :class:`~tiedsci.errors.CheckpointError`.

        Notes
        -----
        Ctrl-C (KeyboardInterrupt) during an LM iteration (serial or distributed) returns the
        result at the last accepted point, with ``message == "interrupted"`` and a
        RuntimeWarning; later stages are not run.
        """
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
        if any(t.learned for t in self.registry.soft_ties):  # soft ties of learned spread
            from tiedsci.refine.softtie import learn_spreads

            return learn_spreads(self, **{k: v for k, v in locals().items()
                                          if k not in ("self", "optimizer_kws")},
                                 **optimizer_kws)
        if on_singular not in ("raise", "warn"):
            raise ValueError(f"on_singular must be 'raise' or 'warn', got {on_singular!r}")
        _check_tolerances(ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev)
        opts = dict(optimizer=optimizer, method=method, scale_covar=scale_covar, ftol=ftol,
                    xtol=xtol, gtol=gtol, max_nfev=max_nfev, damping=damping,
                    linear=tuple(linear) if linear else None,
                    nonnegative=tuple(nonnegative) if nonnegative else None,
                    optimizer_kws=optimizer_kws,
                    executor=executor, client=client, n_batches=n_batches, callback=callback)
        stages = [st if isinstance(st, Stage) else Stage(**st) for st in stages or ()]
        run = _Checkpoints(checkpoint, resume, self._fingerprint(stages, opts)
                           if checkpoint is not None or resume is not None else "")
        if not stages:
            res = fit_problem(self.compile(), **opts,
                              on_accept=run.hook(0, None, {}, (), (0, 0, 0)),
                              start=_lm_state(run.state.get("lm")) if run.state else None)
            if res.message == INTERRUPTED:
                return _interrupted(res, None)
            return _finish(res, on_singular, raise_on_failure)
        res = self._fit_stages(stages, opts, run, raise_on_failure)
        if res.message == INTERRUPTED:
            return _interrupted(res, res.stages[-1].name)
        return _finish(res, on_singular, raise_on_failure, staged=True)

    def _fit_stages(self, stages: Sequence[Stage], opts: Mapping[str, Any], run: _Checkpoints,
                    raise_on_failure: bool) -> RefinementResult:
        """Fit stage after stage (from the resumed one); the last stage's result, with all
        stages' summaries and counters."""
        base_layout = self.registry.compile()
        values = base_layout.values0
        summaries: list[StageSummary] = []
        counts = (0, 0, 0)
        first, start = 0, None
        if run.state is not None:
            first, values, summaries, start = _resume_stages(run.state, stages, base_layout)
            counts = tuple(int(run.state[k]) for k in ("nfev", "njev", "n_iter"))
        res = None
        for si in range(first, len(stages)):
            st = stages[si]
            chosen = select_names(st.vary, base_layout.names, self.groups)
            problem = compile_problem(base_layout.freeze(chosen, values), self.contributions,
                                      self._compiled)
            res = fit_problem(problem, **{**opts, "max_nfev": st.max_nfev or opts["max_nfev"],
                                          "ftol": opts["ftol"] if st.ftol is None else st.ftol},
                              stage_name=st.name, start=start if si == first else None,
                              on_accept=run.hook(si, st.name, values, summaries, counts))
            interrupted = res.message == INTERRUPTED
            summaries.append(StageSummary(st.name, st.vary, res.n_free, res.chi2, res.redchi,
                                          res.rwp, res.nfev, res.converged and not interrupted,
                                          res.message))
            counts = (counts[0] + res.nfev, counts[1] + res.njev, counts[2] + res.n_iter)
            if interrupted:
                break
            if not res.converged:
                msg = f"stage {st.name!r} did not converge: {res.message}"
                if raise_on_failure:
                    raise ConvergenceError(msg)
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
            values = res.values
            if si + 1 < len(stages):
                run.boundary(si + 1, stages[si + 1].name, values, summaries, counts)
        assert res is not None
        return _replace(res, stages=tuple(summaries), nfev=counts[0], njev=counts[1],
                        n_iter=counts[2])

    def _fingerprint(self, stages: Sequence[Stage], opts: Mapping[str, Any]) -> str:
        """What a checkpoint of this fit belongs to: declarations, data, stages, options."""
        layout = self.registry.compile()
        parts: list[Any] = [layout.describe(), *layout.names]
        parts += [np.asarray(layout.values0[n], dtype=float) for n in layout.names]
        for c in self.contributions:
            d = c.dataset
            parts += [c.name, c.weight, *(np.asarray(a, dtype=float)
                                          for a in (d.x, d.y, d.weights, d.used))]
        parts += [repr(list(stages)), *(repr(opts[k]) for k in (
            "optimizer", "method", "scale_covar", "ftol", "xtol", "gtol", "max_nfev",
            "damping", "linear"))]
        if opts["nonnegative"]:
            parts.append(repr(opts["nonnegative"]))
        return fingerprint(parts)


class _Checkpoints:
    """Where a fit's checkpoints go (a callable or a bundle path) and where it resumes from."""

    def __init__(self, checkpoint: Any, resume: Any, print_: str) -> None:
        self.write: Callable[[dict[str, Any]], None] | None = None
        if callable(checkpoint):
            self.write = checkpoint
        elif checkpoint is not None:
            self.write = functools.partial(save_checkpoint, checkpoint)
        self.fingerprint = print_
        self.state: Mapping[str, Any] | None = None
        if resume is not None:
            self.state = resume if isinstance(resume, Mapping) else load_checkpoint(resume)
            check_fingerprint(self.state, print_)

    def hook(self, si: int, name: str | None, values: Mapping[str, Any],
             done: Sequence[StageSummary], counts: tuple[int, ...]
             ) -> Callable[[LMState], None] | None:
        """``on_accept`` for one stage: the state with the LM state inside the stage."""
        if self.write is None:
            return None
        done = tuple(done)

        def on_accept(lm: LMState) -> None:
            self._emit(si, name, values, lm, done, counts)
        return on_accept

    def boundary(self, si: int, name: str, values: Mapping[str, Any],
                 done: Sequence[StageSummary], counts: tuple[int, ...]) -> None:
        """The state before stage ``si`` starts."""
        if self.write is not None:
            self._emit(si, name, values, None, tuple(done), counts)

    def _emit(self, si: int, name: str | None, values: Mapping[str, Any], lm: LMState | None,
              done: Sequence[StageSummary], counts: tuple[int, ...]) -> None:
        assert self.write is not None
        state = _state(si, name, values, lm, done, counts)
        state["fingerprint"] = self.fingerprint
        self.write(state)


def _state(stage: int, name: str | None, values: Mapping[str, Any], lm: LMState | None,
           done: Sequence[StageSummary], counts: tuple[int, ...]) -> dict[str, Any]:
    """The ``checkpoint`` argument of :meth:`JointRefinement.fit`."""
    return {"stage": stage, "stage_name": name,
            "values": {k: np.array(v, dtype=float) for k, v in values.items()}, "lm": lm,
            "stages": list(done), "nfev": counts[0], "njev": counts[1], "n_iter": counts[2]}


def _lm_state(lm: Any) -> LMState | None:
    if lm is None or isinstance(lm, LMState):
        return lm
    radius = lm.get("radius")
    return LMState(np.asarray(lm["theta"], dtype=float), float(lm["cost"]), float(lm["mu"]),
                   np.asarray(lm["scale"], dtype=float), int(lm["nfev"]), int(lm["njev"]),
                   int(lm["n_iter"]), float("nan") if radius is None else float(radius))


def _resume_stages(resume: Mapping[str, Any], stages: Sequence[Stage], layout: Layout
                   ) -> tuple[int, dict[str, np.ndarray], list[StageSummary], LMState | None]:
    first = int(resume["stage"])
    if not 0 <= first < len(stages):
        raise ValueError(f"resume: stage index {first} out of range for {len(stages)} stages")
    if resume.get("stage_name") not in (None, stages[first].name):
        raise ValueError(f"resume: the state is for stage {resume['stage_name']!r}, stage "
                         f"{first} is {stages[first].name!r}")
    names = set(resume["values"])
    if names != set(layout.names):
        raise ValueError(f"resume: the state's parameters differ from the declared ones "
                         f"({sorted(names ^ set(layout.names))[:6]})")
    values = {k: np.asarray(resume["values"][k], dtype=float).reshape(layout.shapes[k])
              for k in layout.names}
    done = [s if isinstance(s, StageSummary) else
            StageSummary(**{**s, "vary": tuple(s["vary"])}) for s in resume["stages"]]
    return first, values, done, _lm_state(resume.get("lm"))


def _interrupted(res: RefinementResult, stage: str | None) -> RefinementResult:
    where = f" in stage {stage!r}" if stage is not None else ""
    warnings.warn(f"refinement interrupted{where}: the result is at the last accepted point",
                  RuntimeWarning, stacklevel=3)
    return res


def _check_tolerances(*, max_nfev: Any, **tols: Any) -> None:
    """Stopping rules of :meth:`JointRefinement.fit`: finite tolerances >= 0, a positive budget."""
    for name, v in tols.items():
        try:
            ok = np.isfinite(float(v)) and float(v) >= 0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if max_nfev is not None and (isinstance(max_nfev, bool) or not isinstance(
            max_nfev, int | np.integer) or max_nfev < 1):
        raise ValueError(f"max_nfev must be None or an integer >= 1, got {max_nfev!r}")


def _replace(res: RefinementResult, **changes: Any) -> RefinementResult:
    from dataclasses import replace

    return replace(res, **changes)


def _finish(res: RefinementResult, on_singular: str, raise_on_failure: bool,
            staged: bool = False) -> RefinementResult:
    if not res.converged and not staged:
        if raise_on_failure:
            raise ConvergenceError(f"refinement did not converge: {res.message}")
        warnings.warn(f"refinement did not converge: {res.message}", RuntimeWarning,
                      stacklevel=3)
    if res.singular:
        from tiedsci.refine.covariance import CovarianceInfo

        msg = CovarianceInfo(None, res.singular).message()
        if not res.converged:  # the primary cause first: a singular verdict there is secondary
            msg = (f"refinement did not converge ({res.message}); at the point where it stopped, "
                   + msg)
        if on_singular == "raise":
            err = SingularMatrixError(msg)
            err.result = res  # type: ignore[attr-defined]
            raise err
        warnings.warn(msg, RuntimeWarning, stacklevel=3)
    return res


def _run_lmfit(problem: Problem, method: str, max_nfev: int, ftol: float, xtol: float,
               optimizer_kws: Mapping[str, Any]) -> tuple[np.ndarray, int, bool, str]:
    import lmfit

    from tiedsci.core.lmfit_interop import lmfit_name

    layout = problem.layout
    names = [f"t{j}_{lmfit_name(n)}" for j, n in enumerate(layout.free_names)]
    params = lmfit.Parameters()
    for nm, t in zip(names, layout.theta0):
        params.add(nm, value=float(t))

    def residual(p: Any) -> np.ndarray:
        theta = np.array([p[nm].value for nm in names])
        return np.concatenate(problem.residuals(theta))

    kws = dict(optimizer_kws)
    if method == "leastsq":
        kws.setdefault("ftol", ftol)
        kws.setdefault("xtol", xtol)
    out = lmfit.minimize(residual, params, method=method, max_nfev=max_nfev, **kws)
    theta = np.array([out.params[nm].value for nm in names])
    ok = bool(out.success)
    return theta, int(out.nfev), ok, f"lmfit {method}: {out.message}"


def fit_problem(problem: Problem, *, optimizer: str = "tiedsci", method: str = "leastsq",
                scale_covar: bool = True, ftol: float = 1e-14, xtol: float = 1e-10,
                gtol: float = 1e-10, max_nfev: int | None = None,
                damping: str = "trust-region", linear: Sequence[str] | None = None,
                nonnegative: Sequence[str] | None = None,
                optimizer_kws: Mapping[str, Any] | None = None,
                stage_name: str | None = None, executor: Any = None, client: Any = None,
                n_batches: int | None = None,
                callback: Callable[[int, float], None] | None = None,
                start: LMState | None = None,
                on_accept: Callable[[LMState], None] | None = None) -> RefinementResult:
    """Fit one compiled problem and build its :class:`RefinementResult` (no raising).

    The tiedsci optimizer is :func:`tiedsci.refine.lm.levenberg_marquardt` over
    :class:`~tiedsci.refine.solver.SerialBlocks`, or, with ``executor`` or ``client``, over
    :class:`~tiedsci.refine.distributed.ExecutorBatches`. ``start`` / ``on_accept`` (continue
    from / report an LM state) work with both.
    """
    layout = problem.layout
    max_nfev = max_nfev or 100 * (layout.n_free + 1)
    part = problem.partition
    distributed = executor is not None or client is not None
    if distributed and optimizer != "tiedsci":
        raise ValueError(f"executor=/client= need optimizer='tiedsci', got "
                         f"optimizer={optimizer!r}")
    if (linear or nonnegative) and (distributed or optimizer != "tiedsci"):
        raise ValueError("linear=/nonnegative= (variable projection) needs the serial tiedsci "
                         "optimizer")
    held = np.zeros(0, dtype=np.intp)  # NNLS active set at the end
    if start is not None:
        if optimizer != "tiedsci":
            raise ValueError("resuming from an LM state needs optimizer='tiedsci'")
        if np.shape(start.theta) != (layout.n_free,):
            raise ValueError(f"resume: the LM state has {np.size(start.theta)} free "
                             f"parameters, the problem has {layout.n_free}")
    if layout.n_free == 0:
        resids = tuple(problem.residuals(layout.theta0))
        outcome = LMOutcome(layout.theta0.copy(), resids, assemble(part, [], []), 0.0, 1, 0, 0,
                            True, "nothing to refine (no free parameter)")
    elif optimizer == "lmfit":
        theta, nfev, ok, msg = _run_lmfit(problem, method, max_nfev, ftol, xtol,
                                          optimizer_kws or {})
        resids = tuple(problem.residuals(theta))
        system = assemble(part, problem.jacobians(theta), resids)
        outcome = LMOutcome(theta, resids, system, 0.5 * sum(float(r @ r) for r in resids),
                            nfev, 1, 0, ok, msg)
    else:
        lm_callback = None
        if callback is not None:
            def lm_callback(n_iter: int, cost: float) -> None:
                callback(n_iter, 2.0 * cost)
        if linear or nonnegative:
            provider: Any = _varpro(problem, linear or (), nonnegative or ())
        elif distributed:
            provider = _provider(problem, executor, client, n_batches)
        else:
            provider = SerialBlocks(problem.fused_residuals, problem.jacobians, part)
        outcome = levenberg_marquardt(
            provider, layout.theta0,
            ftol=ftol, xtol=xtol, gtol=gtol, max_nfev=max_nfev, damping=damping,
            callback=lm_callback,
            start=start, on_accept=on_accept)
        if nonnegative:
            held = provider.projection.active(outcome.theta)
    return build_result(problem, outcome, optimizer=optimizer, scale_covar=scale_covar,
                        y_calcs=outcome.y_calcs, held=held)


def _varpro(problem: Problem, linear: Sequence[str], nonnegative: Sequence[str]) -> Any:
    """The variable-projection provider; ``nonnegative`` names join ``linear``."""
    from tiedsci.refine.varpro import linear_columns, nonnegative_masks, varpro_provider

    cols = linear_columns(problem, tuple(dict.fromkeys((*linear, *nonnegative))))
    masks = nonnegative_masks(problem, cols, nonnegative) if nonnegative else None
    return varpro_provider(problem, cols, masks)


def _set_held_nan(layout: Layout, variances: dict[str, np.ndarray], cov_free: np.ndarray,
                  on_zero: np.ndarray) -> None:
    """NaN (in place) for the variances and covariance rows of free parameters held at 0."""
    cov_free[on_zero, :] = np.nan
    cov_free[:, on_zero] = np.nan
    for j in np.flatnonzero(on_zero):
        name, _, idx = layout.free_names[j].partition("[")
        var = np.array(variances[name], dtype=float)
        var[tuple(int(i) for i in idx.rstrip("]").split(",")) if idx else ()] = np.nan
        variances[name] = var


def _provider(problem: Problem, executor: Any, client: Any, n_batches: int | None) -> Any:
    from tiedsci.parallel import as_executor
    from tiedsci.refine.distributed import ExecutorBatches

    return ExecutorBatches(problem, as_executor(executor, client), n_batches)


def build_result(problem: Problem, outcome: LMOutcome, *, optimizer: str,
                 scale_covar: bool, y_calcs: Sequence[np.ndarray] | None = None,
                 held: np.ndarray | None = None) -> RefinementResult:
    """Statistics, covariance and diagnostics at the optimum.

    ``y_calcs`` (model curves at ``outcome.theta``, one per dataset) are computed when not
    given (a distributed fit brings them back from the workers). ``held`` are theta indices
    held at a constraint (non-negative linear parameters NNLS put at 0; their Jacobian
    columns in ``outcome.system`` are zero): reported at their lower bound with esd NaN.
    """
    layout = problem.layout
    theta = outcome.theta
    values = problem.values(theta)
    if y_calcs is None:
        y_calcs = problem.y_calcs(theta)
    fits = []
    for b, yc in zip(problem.blocks, y_calcs):
        w = b.sqrt_w**2
        fits.append(DatasetFit(b.name, b.x.copy(), b.y.copy(), yc, w,
                               agreement(b.y, yc, w, b.y.size)))
    n_obs = sum(int(b.y.size) for b in problem.blocks)
    n_rr = problem.n_restraint_rows
    penalty = float(np.sum(outcome.resids[-1] ** 2)) if n_rr else 0.0
    dof = n_obs + n_rr - layout.n_free
    y_all = np.concatenate([b.y for b in problem.blocks])
    c_all = np.concatenate(y_calcs)
    w_all = np.concatenate([b.sqrt_w**2 for b in problem.blocks])
    overall = agreement(y_all, c_all, w_all, dof)
    redchi = (overall.chi2 + penalty) / dof if dof > 0 else float("nan")
    overall = type(overall)(overall.n_obs, overall.chi2, overall.rwp, overall.rp, overall.rexp,
                            float(np.sqrt(redchi)) if dof > 0 else float("nan"))

    # covariance in theta space, then propagated to the values
    dead = no_influence(outcome.system.diagonal(problem.partition), theta,
                        float(np.sqrt(redchi)) if np.isfinite(redchi) else 0.0)
    dead &= layout.at_bounds(theta) == 0  # a bound hit is reported as such, not as dead
    on_zero = np.zeros(layout.n_free, dtype=bool)
    if held is not None:
        on_zero[np.asarray(held, dtype=np.intp)] = True
    dead &= ~on_zero
    info = invert_blocks(problem.partition, outcome.system, dead=dead)
    if info is None:  # singular or ill-posed somewhere: the dense matrix names the culprits
        info = invert_normal(dense_normal(problem.partition, outcome.system), layout.free_names,
                             dead=dead)
    if info.cov_theta is not None and on_zero.any():  # held at 0: propagate as fixed
        cov = info.cov_theta.copy()
        cov[on_zero, :] = 0.0
        cov[:, on_zero] = 0.0
        info = type(info)(cov, info.singular)
    soft = soft_statistics(layout, theta, outcome.resids[-1] if n_rr else None,
                           info.cov_theta, n_obs, overall.chi2)
    if soft is not None:  # soft ties: reduced chi2 on dof = n_obs - n_eff
        redchi = soft.redchi
        overall = agreement(y_all, c_all, w_all, soft.dof)
        overall = type(overall)(*astuple(overall)[:-1], float(np.sqrt(redchi)))
    n = layout.n_free
    factor = redchi if (scale_covar and np.isfinite(redchi)) else 1.0
    variances, cov_free = layout.propagate_covariance(info.cov_theta, theta)
    if on_zero.any():  # ... then no Gaussian esd for them
        _set_held_nan(layout, variances, cov_free, on_zero)
    esd_u = {name: np.sqrt(v) for name, v in variances.items()}
    esd = {name: sd * np.sqrt(factor) for name, sd in esd_u.items()}
    d = np.sqrt(np.diag(cov_free))
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = cov_free / np.outer(d, d)
    hits = tuple(sorted(bound_hits(layout, theta) + [
        (layout.free_names[j], "lower") for j in np.flatnonzero(on_zero)],
        key=lambda hit: layout.free_names.index(hit[0])))
    warns = [] if outcome.converged else [outcome.message]  # why it stopped comes first
    if hits:
        warns.append("parameters at a bound (esd not meaningful): "
                     + ", ".join(f"{lab} ({side})" for lab, side in hits))
    return RefinementResult(
        values={k: np.asarray(v, dtype=float) for k, v in values.items()},
        esd=esd, esd_unscaled=esd_u, free_names=tuple(layout.free_names), theta=theta.copy(),
        covariance=cov_free * factor, correlation=corr, datasets=tuple(fits), overall=overall,
        redchi=float(redchi), penalty=penalty, n_obs=n_obs, n_free=n,
        n_restraint_rows=n_rr, converged=bool(outcome.converged), message=outcome.message,
        nfev=outcome.nfev, njev=outcome.njev, n_iter=outcome.n_iter, at_bounds=hits,
        singular=info.singular, stages=(), optimizer=optimizer, scale_covar=scale_covar,
        warnings=tuple(warns), layout=layout,
        soft=soft_summary(layout, soft, values, esd) if layout.soft_ties else {})
