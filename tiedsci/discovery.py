"""Tie discovery, domain-agnostic part: criteria, the search path as a table, its plot and file.

A discovery search (``tiedsci.hmm.discover``, ``tiedsci.refine.discover``) walks the registry's
lattice of tie structures: every step merges two groups (a new tie) or splits one, the child is
refitted warm from its parent, and the step is scored with the registry's true free-parameter
count. This module holds what every domain shares: the criteria (:func:`criterion_value`), one
row of the path (:class:`PathStep`) and the path (:class:`DiscoveryPath`: the table, the chosen
point, a figure, a bundle on disk). The fitted models on the path stay with the domain
(``DiscoveryPath.models``) and are saved by their own ``save``.

Criteria (lower is better): ``"bic"`` ``-2 loglik + n_free ln n_obs`` (the default: it recovered
planted structure best in shared/notes/discovery.md), ``"aic"`` ``-2 loglik + 2 n_free``,
``"heldout"`` ``-2 x`` the held-out log-likelihood. For least squares with known sigma the
log-likelihood is ``-chi^2 / 2`` (up to a constant).
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tiedsci.errors import CriterionError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["CRITERIA", "check_criterion", "criterion_value", "PathStep", "DiscoveryPath",
           "load_path", "best_of"]

CRITERIA: tuple[str, ...] = ("bic", "aic", "heldout")
_FORMAT = "tiedsci.discovery.path/1"


def check_criterion(name: str) -> str:
    """``name`` if it is a known criterion, else :class:`~tiedsci.errors.CriterionError`."""
    if name in CRITERIA:
        return name
    close = difflib.get_close_matches(str(name), CRITERIA, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise CriterionError(f"unknown criterion {name!r}: use one of {', '.join(CRITERIA)}{hint}")


def criterion_value(name: str, *, loglik: float, n_free: int, n_obs: int,
                    heldout: float | None = None) -> float:
    """Score of one model; lower is better.

    Parameters
    ----------
    name : {"bic", "aic", "heldout"}
    loglik : float
        Log-likelihood on the fitted data (``-chi^2 / 2`` in least squares).
    n_free : int
        The registry's free-parameter count (``layout.n_free``).
    n_obs : int
        Number of observations (frames, data points) for BIC.
    heldout : float, optional
        Log-likelihood on held-out data; required for ``"heldout"``.
    """
    check_criterion(name)
    if name == "heldout":
        if heldout is None or not math.isfinite(heldout):
            raise CriterionError("criterion 'heldout' needs a finite held-out log-likelihood "
                                 "(pass held-out data to the search)")
        return -2.0 * heldout
    if name == "aic":
        return -2.0 * loglik + 2.0 * n_free
    if n_obs < 1:
        raise CriterionError(f"BIC needs n_obs >= 1, got {n_obs}")
    return -2.0 * loglik + n_free * math.log(n_obs)


@dataclass(frozen=True)
class PathStep:
    """One model on a discovery path.

    Attributes
    ----------
    step : int
        0 for the starting model, then 1, 2, ...
    kind : str
        What this step changed, e.g. ``"start"``, ``"state"``, ``"means"``, ``"covars"``,
        ``"transmat"``, ``"local->shared"``, ``"split"``.
    merged : tuple of str
        Labels of the groups merged (or the parameter split) at this step.
    n_free : int
        Free parameters of this model's registry (compiled, never counted by hand).
    dk : int
        ``n_free`` minus the parent's (0 at the start).
    loglik : float
        Log-likelihood after the refit (``-chi^2/2`` in least squares).
    criterion : float
        The search's criterion for this model (lower is better).
    predicted : float
        Change of the criterion predicted before the refit (from statistics or a Wald test);
        NaN at the start.
    iterations : int
        EM iterations or LM evaluations spent refitting this model.
    seconds : float
        Wall time of this step (ranking and refit).
    heldout : float
        Held-out log-likelihood, NaN when no held-out data were given.
    """

    step: int
    kind: str
    merged: tuple[str, ...]
    n_free: int
    dk: int
    loglik: float
    criterion: float
    predicted: float = math.nan
    iterations: int = 0
    seconds: float = 0.0
    heldout: float = math.nan


@dataclass
class DiscoveryPath:
    """A discovery search's whole path, with the chosen (lowest-criterion) model.

    Attributes
    ----------
    criterion : str
        The criterion the path was scored with.
    n_obs : int
        Observations behind BIC.
    steps : list of PathStep
    models : list
        The fitted model of each step (domain objects: an estimator, a refinement result);
        not saved with the path (save the one you need with its own ``save``).
    info : dict
        Domain notes (start, candidates, timing), saved with the path.
    """

    criterion: str
    n_obs: int
    steps: list[PathStep] = field(default_factory=list)
    models: list[Any] = field(default_factory=list, repr=False)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_criterion(self.criterion)

    @property
    def best(self) -> int:
        """Index of the chosen step (lowest criterion; the earlier one on ties)."""
        if not self.steps:
            raise ValueError("the discovery path is empty")
        return min(range(len(self.steps)), key=lambda i: (self.steps[i].criterion, i))

    def choice(self, criterion: str) -> int:
        """Index of the step another criterion would choose on this same path (the earlier
        one on ties); ``"heldout"`` needs the steps' held-out log-likelihoods."""
        scores = [criterion_value(criterion, loglik=s.loglik, n_free=s.n_free,
                                  n_obs=self.n_obs, heldout=s.heldout) for s in self.steps]
        return min(range(len(scores)), key=lambda i: (scores[i], i))

    @property
    def best_model(self) -> Any:
        """The fitted model of the chosen step."""
        return self.models[self.best]

    def rows(self) -> list[dict[str, Any]]:
        """The path as records (``PathStep`` fields plus ``chosen``)."""
        best = self.best
        return [{**asdict(s), "merged": list(s.merged), "chosen": i == best}
                for i, s in enumerate(self.steps)]

    def table(self) -> str:
        """The path as a fixed-width text table; the chosen row is marked ``*``."""
        head = (f"{'':1} {'step':>4} {'kind':<14} {'n_free':>6} {'dk':>4} {'loglik':>12} "
                f"{self.criterion:>12} {'predicted':>10} {'iters':>6} {'s':>6}  merged")
        lines = [head, "-" * len(head)]
        best = self.best
        for i, s in enumerate(self.steps):
            lines.append(
                f"{'*' if i == best else '':1} {s.step:>4} {s.kind:<14} {s.n_free:>6} "
                f"{s.dk:>4} {s.loglik:>12.3f} {s.criterion:>12.3f} {s.predicted:>10.2f} "
                f"{s.iterations:>6} {s.seconds:>6.2f}  {' + '.join(s.merged)}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (the models are left out)."""
        return {"criterion": self.criterion, "n_obs": self.n_obs, "best": self.best,
                "steps": self.rows(), "info": self.info}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> DiscoveryPath:
        """Inverse of :meth:`to_dict` (without models)."""
        keys = PathStep.__dataclass_fields__
        steps = [PathStep(**{k: (tuple(v) if k == "merged" else v) for k, v in row.items()
                             if k in keys}) for row in doc["steps"]]
        return cls(doc["criterion"], int(doc["n_obs"]), steps, info=dict(doc.get("info", {})))

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the path (not the models) as a bundle; :func:`load_path` reads it back."""
        from tiedsci.persist import write_bundle

        return write_bundle(path, _FORMAT, self.to_dict())

    def plot(self, *, title: str | None = None) -> Figure:
        """The criterion against ``n_free`` along the path, the chosen point marked.

        Predicted criteria (before each refit) are drawn as a second series.
        """
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 4.0))
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        k = [s.n_free for s in self.steps]
        crit = [s.criterion for s in self.steps]
        ax.plot(k, crit, "o-", label=f"{self.criterion.upper()} after refit")
        pred = [(s.n_free, self.steps[i - 1].criterion + s.predicted)
                for i, s in enumerate(self.steps) if i and math.isfinite(s.predicted)]
        if pred:
            ax.plot(*zip(*pred), "x", color="0.5", label="predicted before refit")
        best = self.best
        ax.plot([k[best]], [crit[best]], "*", ms=16, color="C3",
                label=f"chosen (step {self.steps[best].step})")
        ax.set_xlabel("free parameters (n_free)")
        ax.set_ylabel(f"{self.criterion.upper()} (lower is better)")
        ax.set_title(title or "tie discovery path")
        ax.legend()
        fig.tight_layout()
        return fig


def load_path(path: str | os.PathLike[str]) -> DiscoveryPath:
    """Read a path written by :meth:`DiscoveryPath.save` (checksummed)."""
    from tiedsci.persist import read_bundle

    return DiscoveryPath.from_dict(read_bundle(path, _FORMAT).meta)


def best_of(paths: Sequence[DiscoveryPath]) -> DiscoveryPath:
    """The path whose chosen model scores lowest (e.g. over several starts)."""
    if not paths:
        raise ValueError("no discovery paths given")
    return min(paths, key=lambda p: p.steps[p.best].criterion)
