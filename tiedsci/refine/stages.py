"""Staged refinement: which parameters vary in a stage, and the registry that says so.

A stage names parameter groups (declared with ``group=`` or :meth:`JointRefinement.group`),
parameter names, or shell patterns (``"*.scale"``; a bare local name such as ``"scale"``
matches every dataset's ``<dataset>.scale``). Everything else that is free is fixed at its
current value by the core (:meth:`tiedsci.core.Layout.freeze`); a tie group varies when any
of its members is selected.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tiedsci.errors import UnknownParameterError

__all__ = ["Stage", "select_names"]


@dataclass(frozen=True)
class Stage:
    """One step of a staged refinement.

    Parameters
    ----------
    name : str
        Label shown in the report.
    vary : sequence of str
        Group names, parameter names or patterns to refine in this stage; ``"*"`` = all.
    max_nfev : int, optional
        Budget of residual evaluations for this stage.
    ftol : float, optional
        Relative reduction of chi^2 below which this stage has converged (default: the fit's
        ``ftol``). GSAS-II's "min delta-M/M" (0.001 by default there) plays this role:
        intermediate stages only need to bring their parameters near the optimum for the next
        stage, and a loose ``ftol`` stops them once chi^2 barely moves.
    """

    name: str
    vary: tuple[str, ...]
    max_nfev: int | None = None
    ftol: float | None = None

    def __post_init__(self) -> None:
        vary = (self.vary,) if isinstance(self.vary, str) else tuple(self.vary)
        object.__setattr__(self, "vary", vary)
        if self.ftol is not None and not (isinstance(self.ftol, int | float)
                                          and 0.0 <= float(self.ftol) < 1.0):
            raise ValueError(f"Stage {self.name!r}: ftol must be a number in [0, 1), "
                             f"got {self.ftol!r}")


def select_names(vary: Sequence[str], names: Sequence[str],
                 groups: Mapping[str, Sequence[str]]) -> set[str]:
    """Declared names selected by ``vary`` (groups expanded, patterns matched).

    Raises
    ------
    UnknownParameterError
        When an entry selects nothing.
    """
    out: set[str] = set()
    for item in vary:
        patterns = list(groups[item]) if item in groups else [item]
        hit = False
        for pat in patterns:
            for n in names:
                if fnmatch.fnmatchcase(n, pat) or fnmatch.fnmatchcase(n, f"*.{pat}"):
                    out.add(n)
                    hit = True
        if not hit:
            raise UnknownParameterError(
                f"stage entry {item!r} matches no parameter or group (groups: "
                f"{sorted(groups)}; parameters: {list(names)[:12]}...)")
    return out
