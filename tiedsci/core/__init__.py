"""The constraint-registry core: declare, tie, bound, relate; compile to a Layout."""

from tiedsci.core.constraints import Derived, Fixed, Linear, Restraint, SoftTie, Tie
from tiedsci.core.layout import Layout
from tiedsci.core.lmfit_interop import lmfit_name
from tiedsci.core.refs import ParamRef
from tiedsci.core.registry import ParamSpec, Registry
from tiedsci.core.transforms import Identity, Interval, Positive, Simplex

__all__ = [
    "Registry",
    "Layout",
    "ParamRef",
    "ParamSpec",
    "Identity",
    "Interval",
    "Positive",
    "Simplex",
    "Tie",
    "Linear",
    "Fixed",
    "Derived",
    "Restraint",
    "SoftTie",
    "lmfit_name",
]
