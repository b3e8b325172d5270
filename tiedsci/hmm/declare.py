"""The one place where HMM parameters and ties are declared in a registry.

:func:`declare_hmms` declares one model (``TiedHMM.fit``, ``build_registry``) or several models
sharing states (:func:`tiedsci.hmm.fit_shared`): a single fit is a list of one. Where each
model's states sit in the joint registry is :func:`model_blocks`'s answer, and nowhere else's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from tiedsci.core import Registry, Simplex
from tiedsci.errors import DeclarationError
from tiedsci.hmm.em import ModelBlocks
from tiedsci.hmm.priors import dirichlet

if TYPE_CHECKING:
    from tiedsci.hmm.model import TiedHMM

__all__ = ["declare_hmms", "model_blocks", "letters_to_names", "soft_spread", "ALL_LETTERS",
           "SOFT_TIEABLE"]

ALL_LETTERS = {"s": "startprob", "t": "transmat", "m": "means", "c": "covars",
               "e": "emissionprob", "l": "lambdas", "w": "weights"}


def letters_to_names(spec: Any, letters: Mapping[str, str]) -> set[str]:
    """hmmlearn letter codes (``"stmc"``) or an iterable of parameter names -> set of names."""
    if isinstance(spec, str):
        unknown = set(spec) - set(letters)
        if unknown:
            raise ValueError(f"unknown parameter letters {sorted(unknown)}; valid: "
                             f"{ {k: v for k, v in letters.items()} }")
        return {letters[c] for c in spec}
    names = set(spec)
    valid = set(letters.values())
    if names - valid:
        raise ValueError(f"unknown parameter names {sorted(names - valid)}; valid: {sorted(valid)}")
    return names


def declare_hmms(models: Sequence[TiedHMM], values: Sequence[Mapping[str, np.ndarray]],
                 shared_states: Sequence[Sequence[tuple[int, int]]] = ()
                 ) -> tuple[Registry, ModelBlocks]:
    """Declare one or several HMMs, their ties and fixed parts in one registry.

    The one place where an HMM's parameters and ties are declared: a single fit is a list of
    one model; a shared fit (:func:`tiedsci.hmm.fit_shared`) stacks the models' states along
    the emission parameters' state axis (see :class:`~tiedsci.hmm.em.ModelBlocks`).

    Parameters
    ----------
    models : sequence of TiedHMM
        One class and emission configuration; each keeps its own ``tie_states``, ``ties``,
        ``fixed`` and ``params`` (state indices local to the model).
    values : sequence of dict
        Per model, its values under the single-model names (checked and normalised here).
    shared_states : groups of ``(model, state)`` pairs
        Each group shares every emission parameter across models.

    Returns
    -------
    registry : Registry
    blocks : ModelBlocks
        Where each model sits in the registry.
    """
    blocks = model_blocks(models)
    checked = []
    for m, v in zip(models, values, strict=True):
        v = dict(v)
        m._check_values(v)
        checked.append(v)
    blocks = replace(blocks, priors=_checked_priors(models, checked, blocks),
                     soft_positive=soft_positive(models))
    reg = Registry()
    for i, v in enumerate(checked):
        reg.declare(blocks.name(i, "startprob"), v["startprob"], bounds=Simplex(axis=0))
        reg.declare(blocks.name(i, "transmat"), v["transmat"], bounds=Simplex(axis=-1))
    blocks.emission.declare(reg, blocks.stack(checked))
    for i, m in enumerate(models):
        _declare_ties(reg, blocks, i, m)
    _declare_shared_states(reg, blocks, shared_states)
    for i, m in enumerate(models):
        _declare_soft_ties(reg, blocks, i, m)
    _fix_structural_zeros(reg, blocks)
    for i, m in enumerate(models):
        _declare_fixed(reg, blocks, i, m)
    return reg, blocks


def _checked_priors(models: Sequence[TiedHMM], values: Sequence[Mapping[str, np.ndarray]],
                    blocks: ModelBlocks) -> dict[str, np.ndarray]:
    """Every model's priors, checked (:mod:`tiedsci.hmm.priors`), under registry names for
    ``startprob`` / ``transmat`` and hmmlearn names (states stacked) for the emission's."""
    out: dict[str, np.ndarray] = {}
    per_model = []
    for i, (m, v) in enumerate(zip(models, values, strict=True)):
        for base in ("startprob", "transmat"):
            out[blocks.name(i, base)] = dirichlet(f"{base}_prior", getattr(m, f"{base}_prior",
                                                                          1.0), v[base].shape)
        em = blocks.emission
        raw = {n: getattr(m, n, d) for n, d in getattr(em, "prior_defaults", {}).items()}
        per_model.append(em.check_priors(raw, dict(v)) if raw else {})
    for key in per_model[0]:
        out[key] = np.concatenate([p[key] for p in per_model], axis=0)
    return out


def model_blocks(models: Sequence[TiedHMM]) -> ModelBlocks:
    """Where each model's states sit in a joint registry (one class and emission for all)."""
    if not models:
        raise DeclarationError("at least one model is needed")
    em = models[0]._emission()
    for m in models[1:]:
        if type(m) is not type(models[0]) or m._emission() != em:
            raise DeclarationError("models fitted together need one class and emission "
                                   f"configuration; got {type(m).__name__} {m._emission()!r} "
                                   f"and {type(models[0]).__name__} {em!r}")
    return ModelBlocks(em, tuple(int(m.n_components) for m in models))


def _declare_ties(reg: Registry, blocks: ModelBlocks, i: int, model: TiedHMM) -> None:
    """Model ``i``'s ``tie_states`` and ``ties`` (local state indices)."""
    names = blocks.emission_names
    if model.tie_states:
        groups = [blocks.rows(i, g) for g in model._check_groups("tie_states", model.tie_states)]
        for name in names:
            reg.tie_groups(name, groups, axis=0)
    for name, groups in (model.ties or {}).items():
        if name not in names and name != "transmat":
            raise DeclarationError(f"ties: unknown parameter {name!r}; tie one of "
                                   f"{['transmat', *names]}")
        local = model._check_groups(f"ties[{name!r}]", groups)
        if name == "transmat":
            reg.tie_groups(blocks.name(i, name), local, axis=0)
        else:
            reg.tie_groups(name, [blocks.rows(i, g) for g in local], axis=0)


SOFT_TIEABLE = ("means", "lambdas")


LEARNED_SPREADS = (None, "positive")


def soft_spread(model: TiedHMM, name: str) -> float | None:
    """The spread a model declares for the soft ties of ``name`` (``spread``: one value for
    all, or a dict by parameter name; None or ``"positive"`` learns it)."""
    spread = getattr(model, "spread", None)
    if isinstance(spread, Mapping):
        spread = spread.get(name)
    if spread in LEARNED_SPREADS:
        return None
    try:
        return float(spread)
    except (TypeError, ValueError):
        raise DeclarationError(f"spread must be a number >= 0, None (learned) or 'positive' "
                               f"(learned, kept off 0), got {spread!r}") from None


def soft_positive(models: Sequence[TiedHMM]) -> tuple[str, ...]:
    """Parameters whose learned spreads are kept off 0 (``spread="positive"``)."""
    out = set()
    for m in models:
        spread = getattr(m, "spread", None)
        for name in getattr(m, "soft_ties", None) or {}:
            value = spread.get(name) if isinstance(spread, Mapping) else spread
            if isinstance(value, str) and value == "positive":
                out.add(name)
    return tuple(sorted(out))


def _declare_soft_ties(reg: Registry, blocks: ModelBlocks, i: int, model: TiedHMM) -> None:
    """Model ``i``'s ``soft_ties`` (local state indices): each group of states' rows of the
    parameter pulled towards a free centre (:meth:`Registry.soft_tie`)."""
    soft = getattr(model, "soft_ties", None) or {}
    spread = getattr(model, "spread", None)
    if isinstance(spread, Mapping) and set(spread) - set(soft):
        raise DeclarationError(f"spread names {sorted(set(spread) - set(soft))}, which have "
                               f"no soft_ties")
    for name, groups in soft.items():
        if name not in SOFT_TIEABLE or name not in blocks.emission_names:
            valid = [n for n in SOFT_TIEABLE if n in blocks.emission_names]
            raise DeclarationError(f"soft_ties: parameter {name!r} cannot be soft-tied; "
                                   f"soft-tie one of {valid}")
        ref = reg[name]
        for g in model._check_groups(f"soft_ties[{name!r}]", groups):
            if len(g) < 2:
                raise DeclarationError(f"soft_ties[{name!r}]: group {g} needs two or more "
                                       "states")
            reg.soft_tie([ref[r] for r in blocks.rows(i, g)], soft_spread(model, name))


def _declare_shared_states(reg: Registry, blocks: ModelBlocks,
                           shared_states: Sequence[Sequence[tuple[int, int]]]) -> None:
    """Tie every emission parameter of the ``(model, state)`` pairs of each group."""
    ks = list(blocks.sizes)
    for group in shared_states:
        flat = []
        for mi, s in group:
            if not 0 <= mi < len(ks) or not 0 <= s < ks[mi]:
                raise DeclarationError(f"shared_states: ({mi}, {s}) names a state that does "
                                       f"not exist (models have {ks} states)")
            flat.extend(blocks.rows(mi, [s]))
        for name in blocks.emission_names:
            reg.tie_groups(name, [flat], axis=0)


def _fix_structural_zeros(reg: Registry, blocks: ModelBlocks) -> None:
    """Zero probabilities stay exactly zero: they are fixed, not free."""
    names = [blocks.name(i, b) for i in range(len(blocks.sizes))
             for b in ("startprob", "transmat")]
    for name in names + [n for n in ("emissionprob",) if n in reg]:
        v = reg.value(name)
        ref = reg[name]
        for idx in zip(*np.nonzero(v == 0)):
            reg.fix(ref[tuple(int(j) for j in idx)])


def _declare_fixed(reg: Registry, blocks: ModelBlocks, i: int, model: TiedHMM) -> None:
    """Model ``i``'s parameters left out of ``params`` and those named in ``fixed``."""
    update = letters_to_names("stmcewl" if model.params is None else model.params,
                               ALL_LETTERS)
    names = model._param_names()
    for name in names:
        if name not in update:
            _fix_states(reg, blocks, i, name, None)
    for name, what in (model.fixed or {}).items():
        if name not in names:
            raise DeclarationError(f"fixed: unknown parameter {name!r}; one of {names}")
        states = None if what is True else model._check_groups(f"fixed[{name!r}]", [what])[0]
        _fix_states(reg, blocks, i, name, states)


def _fix_states(reg: Registry, blocks: ModelBlocks, i: int, name: str,
                states: Sequence[int] | None) -> None:
    """Fix model ``i``'s parameter ``name``: whole (``states`` None) or those states' rows."""
    if name in ("startprob", "transmat"):
        target, rows = blocks.name(i, name), states
    elif states is None and len(blocks.sizes) == 1:
        target, rows = name, None
    else:
        target = name
        rows = blocks.rows(i, range(blocks.sizes[i]) if states is None else states)
    if rows is None:
        reg.fix(target)
        return
    ref = reg[target]
    for r in rows:
        reg.fix(ref[r])
