"""Contribution: a dataset plus the forward model that computes it.

The model is ``model(values, x) -> y_calc`` with numpy or torch operations. ``values`` is a
read-only mapping over the registry's unpacked values in which the contribution's own
(local) parameters are reachable by their short name: for a dataset named ``"xray"``,
``values["scale"]`` is ``xray.scale`` when that is declared, otherwise the shared ``scale``.
Full dotted names always work. This is the only name resolution of the module; ties, bounds
and relations all live in the registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tiedsci.errors import DeclarationError, UnknownParameterError
from tiedsci.refine.data import Dataset

__all__ = ["Contribution", "ScopedValues", "resolve_name"]

JAC_MODES = ("auto", "torch", "fd")


@dataclass(frozen=True, eq=False)
class Contribution:
    """One dataset and the model that computes it.

    Parameters
    ----------
    dataset : Dataset
        The observations; its ``name`` is the namespace of the local parameters.
    model : callable
        ``model(values, x) -> y_calc``: ``values`` a :class:`ScopedValues` mapping, ``x`` the
        used abscissae, shape (n_obs,) (or :class:`~tiedsci.refine.data.Columns` for a
        multi-column dataset: ``x["t"]``); returns shape (n_obs,). A small model (at most 16
        values, 20,000 points) that runs on numpy gets exact Jacobians by the complex step
        (checked once against differences; a model not analytic in its values, e.g. ``abs``
        of a parameter, fails the check), others run on torch tensors (exact autodiff) when
        they can, else on numpy arrays with finite differences. Write it once for both with
        ``xp = tiedsci.backends.namespace_of(x)``
        (``xp.exp``, ``xp.sin``, ``xp.arctan``, ``xp.pow``, ``xp.erf``, ``xp.where`` ...), or
        with torch operations only.
    uses : sequence of str, optional
        Names the model reads (short or full). By default they are recorded by calling the model
        once on numpy arrays of the initial values (on torch tensors if it cannot run on
        numpy).
    jac : "auto", "torch", "fd" or callable
        How the Jacobian of ``y_calc`` with respect to the used values is obtained. ``"auto"``
        uses the complex step for a small numpy-runnable model that passes its check, else
        torch autodiff, and falls back to finite differences when the model is numpy-only.
        A callable ``jac(values, x) -> {name: array of shape (n_obs, *param_shape)}`` gives it
        analytically (numpy inputs).
    weight : float
        Multiplies the dataset's least-squares weights (relative weight of this dataset).
    pointwise : bool, optional
        Whether ``y_calc[i]`` depends on ``x[i]`` alone (true of most forward models). Then
        the autodiff Jacobian is taken point by point in reverse mode, vectorised (a few
        model evaluations instead of one tangent per parameter). ``None`` detects it.
    """

    dataset: Dataset
    model: Callable[[Mapping[str, Any], Any], Any]
    uses: Sequence[str] | None = None
    jac: str | Callable[..., Any] = "auto"
    weight: float = 1.0
    pointwise: bool | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dataset, Dataset):
            raise DeclarationError(f"Contribution needs a Dataset, got {type(self.dataset)}")
        if not callable(self.model):
            raise DeclarationError(f"model for {self.dataset.name!r} is not callable")
        if not (callable(self.jac) or self.jac in JAC_MODES):
            raise DeclarationError(f"jac must be one of {JAC_MODES} or a callable, got "
                                   f"{self.jac!r}")
        w = float(self.weight)
        if not (w > 0 and w < float("inf")):
            raise DeclarationError(f"weight of {self.dataset.name!r} must be positive and "
                                   f"finite, got {self.weight!r}")
        if self.uses is not None:
            object.__setattr__(self, "uses", tuple(self.uses))

    @property
    def name(self) -> str:
        """The dataset's name."""
        return self.dataset.name


def resolve_name(key: str, prefix: str, names: Sequence[str] | Mapping[str, Any]) -> str:
    """Full parameter name for ``key`` as seen by the contribution ``prefix``.

    ``prefix.key`` wins over a global ``key``; raises :class:`UnknownParameterError` naming
    the closest declared names otherwise.
    """
    local = f"{prefix}.{key}"
    if local in names:
        return local
    if key in names:
        return key
    pool = list(names)
    guess = difflib.get_close_matches(local, pool, n=1) or difflib.get_close_matches(key, pool,
                                                                                     n=1)
    hint = f"; did you mean {guess[0]!r}?" if guess else ""
    raise UnknownParameterError(
        f"model of dataset {prefix!r} asked for {key!r}, but neither {local!r} nor {key!r} is "
        f"declared{hint}"
    )


class ScopedValues(Mapping[str, Any]):
    """Read-only view of parameter values with the dataset's local names in scope.

    Parameters
    ----------
    values : mapping
        ``full name -> array`` (numpy or torch).
    prefix : str
        The dataset name.
    names : collection of str
        All declared names (for resolution; ``values`` may hold only the used ones).
    record : set, optional
        When given, every resolved full name is added to it (used to detect ``uses``).
    resolved : dict, optional
        A cache ``key -> full name`` kept by the caller across calls of the same model (the
        names do not change between calls; the search through all names does not repeat).
    """

    def __init__(self, values: Mapping[str, Any], prefix: str, names: Any,
                 record: set[str] | None = None,
                 resolved: dict[str, str] | None = None) -> None:
        self._values = values
        self._prefix = prefix
        self._names = names
        self._record = record
        self._resolved = {} if resolved is None else resolved

    def __getitem__(self, key: str) -> Any:
        full = self._resolved.get(key)
        if full is None:
            full = self._resolved[key] = resolve_name(key, self._prefix, self._names)
        if self._record is not None:
            self._record.add(full)
        try:
            return self._values[full]
        except KeyError:
            raise UnknownParameterError(
                f"model of dataset {self._prefix!r} read {full!r}, which was not among the "
                f"parameters it used on the first call ({sorted(self._values)}); pass "
                f"uses=[...] to the contribution"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            resolve_name(key, self._prefix, self._names)
        except UnknownParameterError:
            return False
        return True
