"""Exception tree of tiedsci.

Every exception derives from :class:`TiedSciError` and also from the builtin a caller would
naturally catch (``ValueError``, ``KeyError``, ...), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "TiedSciError",
    "DeclarationError",
    "UnknownParameterError",
    "ShapeMismatchError",
    "CycleError",
    "ConflictError",
    "PackingError",
    "NotPoolableError",
    "NotFittedError",
    "DataError",
    "ModelError",
    "ConvergenceError",
    "SingularMatrixError",
    "RunFileError",
    "CheckpointError",
    "DegenerateDataWarning",
    "RelationOverrideWarning",
    "PriorError",
    "CriterionError",
    "PriorWarning",
]


class TiedSciError(Exception):
    """Base class of every error raised by tiedsci."""


class DeclarationError(TiedSciError, ValueError):
    """A parameter declaration or relation is invalid (redefinition, bad bounds, NaN value...)."""


class UnknownParameterError(TiedSciError, KeyError):
    """A name that was never declared; the message suggests the closest declared name."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ShapeMismatchError(DeclarationError):
    """Two parameters related by a tie or a relation have incompatible shapes."""


class CycleError(DeclarationError):
    """A relation would make a parameter depend on itself."""


class ConflictError(DeclarationError):
    """Relations contradict each other (e.g. tying two fixed parameters of different values)."""


class PackingError(TiedSciError, ValueError):
    """Full values cannot be packed: tied members disagree, or a value breaks its bounds."""


class NotPoolableError(TiedSciError, ValueError):
    """Statistics cannot be pooled through a scaled, affine or derived relation."""


class NotFittedError(TiedSciError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class DataError(TiedSciError, ValueError):
    """Input data are invalid: NaN/inf, wrong shape, non-positive sigma, symbols out of range..."""


class ModelError(TiedSciError, ValueError):
    """A user-supplied model misbehaves: wrong output shape, NaN/inf where data are finite."""


class ConvergenceError(TiedSciError, RuntimeError):
    """An iterative solver did not converge and the caller asked for that to be an error."""


class SingularMatrixError(TiedSciError, ValueError):
    """A normal matrix is singular; the message names the parameters responsible."""


class RunFileError(TiedSciError, ValueError):
    """A TOML run file is invalid; the message names the file, the line and the key.

    Attributes
    ----------
    problems : list of str
        One message per problem found (the exception message joins them, one per line).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = list(problems) if problems is not None else [message]


class CheckpointError(TiedSciError, ValueError):
    """A checkpoint file cannot be used to resume (truncated, corrupt, or of another run)."""


class PriorError(TiedSciError, ValueError):
    """A prior hyperparameter is invalid: wrong shape, wrong sign, NaN/inf, or a Dirichlet
    concentration <= 0; the message names the prior."""


class PriorWarning(UserWarning):
    """A prior is legal but has no interior MAP optimum (a Dirichlet concentration below 1):
    the message says what the M-step does instead."""


class DegenerateDataWarning(UserWarning):
    """The data cannot determine some parameters (more free parameters than observed values, a
    state without posterior mass...): the fit goes on with finite values, which keep their
    previous values where the data say nothing."""


class RelationOverrideWarning(UserWarning):
    """A relation (``affine``/``linear``) replaced a value the user had declared differently."""


class CriterionError(TiedSciError, ValueError):
    """An unknown model-selection criterion, or one that cannot be computed from what was given."""
