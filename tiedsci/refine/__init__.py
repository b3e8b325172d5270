"""Joint multi-dataset refinement on the tiedsci registry.

One model, several datasets: shared parameters are declared once, each dataset keeps its own
(``xray.scale``, ``neutron.zero``), and every other relation (ties between some datasets,
affine/derived relations, bounds, restraints) is made on the registry. The solver is a
block-sparse Levenberg-Marquardt whose Jacobian comes from torch autodiff and whose step
eliminates each dataset's local parameters by a Schur complement (linear cost in the number
of datasets). torch is imported only when a fit needs it.

The face shared with the other domains: ``JointRefinement.fit(...) -> RefinementResult``, whose
``report()``, ``plot()`` and ``save(path)`` are read back by :func:`load`; checkpoints and resume
through ``fit(checkpoint=..., resume=...)`` (:func:`save_checkpoint`, :func:`load_checkpoint`).
Soft ties (``registry.soft_tie``, spread given or learned: :mod:`tiedsci.refine.softtie`) and
tie discovery (:func:`discover`, :mod:`tiedsci.refine.tiesearch`) build on the same fit.
"""

from tiedsci.refine.checkpoint import load_checkpoint, save_checkpoint
from tiedsci.refine.contribution import Contribution, ScopedValues
from tiedsci.refine.data import Dataset
from tiedsci.refine.joint import JointRefinement, fit_problem
from tiedsci.refine.problem import Problem, compile_problem
from tiedsci.refine.result import DatasetFit, RefinementResult, StageSummary, load
from tiedsci.refine.stages import Stage
from tiedsci.refine.stats import Agreement
from tiedsci.refine.tiesearch import discover

__all__ = [
    "Dataset",
    "Contribution",
    "ScopedValues",
    "JointRefinement",
    "Stage",
    "RefinementResult",
    "DatasetFit",
    "StageSummary",
    "Agreement",
    "Problem",
    "compile_problem",
    "fit_problem",
    "load",
    "save_checkpoint",
    "load_checkpoint",
    "discover",
]
