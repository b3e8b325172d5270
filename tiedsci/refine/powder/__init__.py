"""Powder diffraction on the joint-refinement core: crystals, instruments, patterns.

The user-facing names are exported here: read a crystal (:func:`read_cif`), describe the
instrument (:class:`Instrument`, or from a GSAS parameter file), list the reflections
(:func:`reflection_list`), declare the parameters (:func:`declare_crystal`,
:func:`declare_pattern`) and build the forward model (:meth:`PowderModel.build`) that a
:class:`~tiedsci.refine.JointRefinement` fits.
"""

from tiedsci.refine.powder.crystal import (
    Atom,
    Crystal,
    CrystalParams,
    declare_crystal,
    read_cif,
    write_cif,
)
from tiedsci.refine.powder.instrument import Instrument
from tiedsci.refine.powder.io import (
    GsasInstrument,
    PowderData,
    read_gsas_prm,
    read_gsas_std,
    read_xy,
)
from tiedsci.refine.powder.pattern import PatternParams, PowderModel, declare_pattern
from tiedsci.refine.powder.reflection_list import ReflectionList, reflection_list
from tiedsci.refine.powder.reflections import Reflections, generate_reflections

__all__ = [
    "Atom",
    "Crystal",
    "CrystalParams",
    "GsasInstrument",
    "Instrument",
    "PatternParams",
    "PowderData",
    "PowderModel",
    "ReflectionList",
    "Reflections",
    "declare_crystal",
    "declare_pattern",
    "generate_reflections",
    "read_cif",
    "read_gsas_prm",
    "read_gsas_std",
    "read_xy",
    "reflection_list",
    "write_cif",
]
