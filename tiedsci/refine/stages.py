"""Staged refinement: which parameters vary in a stage, and the registry that says so.

A stage names parameter groups (declared with ``group=`` or :meth:`JointRefinement.group`),
parameter names, or shell patterns (``"*.scale"``; a bare local name such as ``"scale"``
matches every dataset's ``<dataset>.scale``). Everything else that is free is fixed at its
current value *through the registry* (a copy with :meth:`Registry.fix`); a tie group varies
when any of its members is selected.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from tiedsci.core import Layout, Registry
from tiedsci.core.layout import FREE
from tiedsci.errors import UnknownParameterError

__all__ = ["Stage", "select_names", "stage_registry"]


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


def stage_registry(base: Registry, layout: Layout, values: Mapping[str, np.ndarray],
                   selected: set[str]) -> Registry:
    """Copy of ``base`` at ``values`` with every free tie group outside ``selected`` fixed.

    Parameters
    ----------
    base : Registry
        The full declaration (not modified).
    layout : Layout
        ``base.compile()``.
    values : mapping
        Current values of every parameter.
    selected : set of str
        Names to vary.
    """
    reg = base.copy()
    selected_roots: set[int] = set()
    for name in selected:
        off = layout.offsets[name]
        size = int(np.prod(layout.shapes[name], dtype=int))
        for e in range(off, off + size):
            if layout.kind[e] == FREE:
                selected_roots.add(int(layout.root[e]))
    done: set[int] = set()
    for name in layout.names:
        off = layout.offsets[name]
        shape = layout.shapes[name]
        size = int(np.prod(shape, dtype=int))
        kinds = layout.kind[off:off + size]
        val = np.asarray(values[name], dtype=float)
        if np.all(kinds == FREE):
            roots = layout.root[off:off + size]
            if all(int(r) not in done for r in roots):
                reg.set_value(name, val)
                done.update(int(r) for r in roots)
        for i in np.flatnonzero(kinds == FREE):
            r = int(layout.root[off + i])
            if r in done:
                continue
            ref = reg[name] if shape == () else reg[name][np.unravel_index(int(i), shape)]
            reg.set_value(ref, val.ravel()[i])
            done.add(r)
    fixed_roots: set[int] = set()
    for name in layout.names:
        off = layout.offsets[name]
        shape = layout.shapes[name]
        size = int(np.prod(shape, dtype=int))
        for i in range(size):
            e = off + i
            r = int(layout.root[e])
            if layout.kind[e] != FREE or r in selected_roots or r in fixed_roots:
                continue
            ref = reg[name] if shape == () else reg[name][np.unravel_index(i, shape)]
            reg.fix(ref)
            fixed_roots.add(r)
    return reg
