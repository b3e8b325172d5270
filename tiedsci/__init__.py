"""tiedsci: scientific models whose parameters are tied.

One constraint-registry core (:mod:`tiedsci.core`) serves three domains: tied hidden Markov models
(:mod:`tiedsci.hmm`), joint multi-dataset refinement (:mod:`tiedsci.refine`) and periodic-feature
PINNs (:mod:`tiedsci.pinn`, needs torch). Importing this package does not import torch.
"""

from tiedsci.core import Interval, Layout, ParamRef, Positive, Registry, Simplex
from tiedsci.errors import TiedSciError

__version__ = "0.1.0"

__all__ = [
    "Registry",
    "Layout",
    "ParamRef",
    "Interval",
    "Positive",
    "Simplex",
    "TiedSciError",
    "__version__",
]
