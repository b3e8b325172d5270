"""Crystal structure: cell, space group and atoms; CIF in and out; registry declaration.

:func:`declare_crystal` puts a structure's parameters in a :class:`~tiedsci.core.Registry`
and emits every symmetry constraint there (this module keeps no tie logic of its own):

- the cell as ``a, b, c, alpha, beta, gamma`` with the crystal system's ties and fixed angles
  (cubic ``b = c = a``...);
- per atom ``<label>.x``, ``.y``, ``.z``, ``.occ``, ``.uiso``; coordinates of a special
  position are fixed or linearly related as its site symmetry requires (Pnma 4c:
  ``y = 1/4`` fixed), found from the space group's operations (:mod:`.symmetry`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci._files import atomic_write_bytes
from tiedsci.errors import DataError, DeclarationError
from tiedsci.refine.powder.symmetry import (
    SiteSymmetry,
    SymOp,
    metric_relations,
    site_symmetry,
    symmetry_operations,
)

__all__ = ["Atom", "Crystal", "CrystalParams", "read_cif", "write_cif", "declare_crystal",
           "CELL_NAMES"]

CELL_NAMES = ("a", "b", "c", "alpha", "beta", "gamma")
_LABEL_RE = re.compile(r"[^A-Za-z0-9_]")


@dataclass(frozen=True)
class Atom:
    """One atom of the asymmetric unit.

    Attributes
    ----------
    label : str
        Site label (``"O1"``); used in parameter names, so made an identifier.
    element : str
        Element symbol (``"Pb"``).
    xyz : tuple of float
        Fractional coordinates.
    occupancy : float
    uiso : float
        Isotropic displacement parameter in angstrom^2 (``Biso = 8 pi^2 Uiso``).
    """

    label: str
    element: str
    xyz: tuple[float, float, float]
    occupancy: float = 1.0
    uiso: float = 0.01

    def __post_init__(self) -> None:
        lab = _LABEL_RE.sub("_", str(self.label))
        if not lab or lab[0].isdigit():
            lab = f"A{lab}"
        object.__setattr__(self, "label", lab)
        try:
            object.__setattr__(self, "xyz", tuple(float(v) for v in self.xyz))
            object.__setattr__(self, "occupancy", float(self.occupancy))
            object.__setattr__(self, "uiso", float(self.uiso))
        except (TypeError, ValueError) as exc:
            raise DataError(f"atom {self.label!r}: xyz, occupancy and uiso must be numbers "
                            f"({exc})") from None
        if len(self.xyz) != 3:
            raise DataError(f"atom {self.label!r}: xyz needs 3 coordinates, got {self.xyz!r}")
        if not all(np.isfinite((*self.xyz, self.occupancy, self.uiso))):
            raise DataError(f"atom {self.label!r}: xyz, occupancy and uiso must be finite, got "
                            f"{self.xyz!r}, {self.occupancy!r}, {self.uiso!r}")

    @classmethod
    def from_biso(cls, label: str, element: str, xyz: Any, occupancy: float = 1.0,
                  biso: float = 0.8) -> Atom:
        """Build from ``Biso`` (angstrom^2)."""
        return cls(label, element, tuple(xyz), occupancy, biso / (8.0 * np.pi**2))


@dataclass(frozen=True)
class Crystal:
    """A crystal structure.

    Attributes
    ----------
    cell : tuple of float
        ``(a, b, c, alpha, beta, gamma)`` in angstrom and degrees.
    space_group : str
        Hermann-Mauguin symbol (as gemmi understands it).
    atoms : tuple of Atom
    name : str
    """

    cell: tuple[float, float, float, float, float, float]
    space_group: str
    atoms: tuple[Atom, ...]
    name: str = "phase"
    ops: tuple[SymOp, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        import gemmi

        object.__setattr__(self, "cell", tuple(float(v) for v in self.cell))
        object.__setattr__(self, "atoms", tuple(self.atoms))
        if len(self.cell) != 6 or not all(np.isfinite(self.cell)) or min(self.cell[:3]) <= 0:
            raise DataError(f"cell must be (a, b, c, alpha, beta, gamma) with positive lengths, "
                            f"got {self.cell!r}")
        try:
            gemmi.SpaceGroup(self.space_group)
        except (ValueError, RuntimeError) as exc:
            raise DataError(f"unknown space group {self.space_group!r}: {exc}") from None
        labels = [a.label for a in self.atoms]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise DataError(f"atom labels must be unique; repeated: {dup}")
        object.__setattr__(self, "ops", symmetry_operations(self.space_group))

    @property
    def crystal_system(self) -> str:
        import gemmi

        return gemmi.SpaceGroup(self.space_group).crystal_system_str()

    @property
    def is_rhombohedral_setting(self) -> bool:
        import gemmi

        sg = gemmi.SpaceGroup(self.space_group)
        return sg.crystal_system_str() == "trigonal" and sg.ext == "R"

    def site(self, label: str) -> SiteSymmetry:
        """Site symmetry of the atom ``label``."""
        atom = next((a for a in self.atoms if a.label == label), None)
        if atom is None:
            raise DataError(f"no atom {label!r}; atoms: {[a.label for a in self.atoms]}")
        return site_symmetry(self.ops, np.array(atom.xyz))

    def with_values(self, values: Mapping[str, Any], prefix: str = "") -> Crystal:
        """A copy with cell and atom parameters taken from registry ``values``."""
        cell = tuple(float(np.asarray(values.get(prefix + n, v))) for n, v in
                     zip(CELL_NAMES, self.cell))
        atoms = []
        for at in self.atoms:
            p = f"{prefix}{at.label}."
            xyz = tuple(float(np.asarray(values.get(p + k, v))) for k, v in zip("xyz", at.xyz))
            atoms.append(replace(at, xyz=xyz,
                                 occupancy=float(np.asarray(values.get(p + "occ",
                                                                       at.occupancy))),
                                 uiso=float(np.asarray(values.get(p + "uiso", at.uiso)))))
        return replace(self, cell=cell, atoms=tuple(atoms))


def _cif_float(text: str | None) -> float:
    """CIF number with optional esd in parentheses (``8.4803(1)``)."""
    if text is None:
        raise ValueError("missing value")
    t = text.split("(")[0]
    if t in (".", "?"):
        raise ValueError(f"missing value {text!r}")
    v = float(t)
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {text!r}")
    return v


def read_cif(source: str | Path, block: int | str = 0) -> Crystal:
    """Read a crystal structure from a CIF file (or CIF text).

    Uses ``_cell_*``, the H-M symbol (``_symmetry_space_group_name_H-M`` or
    ``_space_group_name_H-M_alt``) and the ``_atom_site_*`` loop; ``U_iso_or_equiv`` or
    ``B_iso_or_equiv`` (converted); ``type_symbol`` (else the label's letters).
    """
    import gemmi

    text = str(source)
    try:
        if "\n" in text or text.lstrip().startswith("data_"):
            doc = gemmi.cif.read_string(text)
        else:
            doc = gemmi.cif.read_file(text)
    except (RuntimeError, ValueError, OSError) as exc:
        raise DataError(f"cannot parse CIF {text[:60]!r}: {exc}") from None
    try:
        b = doc[block] if isinstance(block, int) else doc.find_block(block)
    except IndexError:
        b = None
    if b is None:
        raise DataError(f"CIF {text[:60]!r} has no data block {block!r} "
                        f"({len(doc)} block(s))")
    try:
        cell = tuple(_cif_float(b.find_value(f"_cell_{k}")) for k in
                     ("length_a", "length_b", "length_c", "angle_alpha", "angle_beta",
                      "angle_gamma"))
    except (TypeError, ValueError) as exc:
        raise DataError(f"CIF block {b.name!r}: incomplete cell ({exc})") from None
    sg = None
    for tag in ("_symmetry_space_group_name_H-M", "_space_group_name_H-M_alt",
                "_space_group.name_H-M_alt"):
        v = b.find_value(tag)
        if v:
            sg = gemmi.cif.as_string(v)
            break
    if sg is None:
        raise DataError(f"CIF block {b.name!r}: no space-group symbol")
    tab = b.find("_atom_site_", ["label", "?type_symbol", "fract_x", "fract_y", "fract_z",
                                 "?occupancy", "?U_iso_or_equiv", "?B_iso_or_equiv"])
    atoms = []
    for row in tab:
        label = row.str(0)
        sym = re.match(r"[A-Za-z]+", row.str(1) if row.has(1) else label)
        elem = re.match(r"[A-Z][a-z]?", sym.group(0).capitalize()) if sym else None
        if elem is None:
            raise DataError(f"CIF block {b.name!r}: atom {label!r} has no element symbol")
        try:
            xyz = tuple(_cif_float(row[i]) for i in (2, 3, 4))
            occ = _cif_float(row[5]) if row.has(5) and row[5] not in ("?", ".") else 1.0
            if row.has(6) and row[6] not in ("?", "."):
                uiso = _cif_float(row[6])
            elif row.has(7) and row[7] not in ("?", "."):
                uiso = _cif_float(row[7]) / (8.0 * np.pi**2)
            else:
                uiso = 0.01
        except ValueError as exc:
            raise DataError(f"CIF block {b.name!r}: atom {label!r}: {exc}") from None
        atoms.append(Atom(label, elem.group(0), xyz, occ, uiso))
    if not atoms:
        raise DataError(f"CIF block {b.name!r}: no _atom_site_ loop")
    return Crystal(cell, sg, tuple(atoms), name=b.name)


def _fmt(v: float, esd: float | None) -> str:
    if esd is None or not np.isfinite(esd) or esd <= 0:
        return f"{v:.6f}"
    digits = max(0, int(-np.floor(np.log10(esd))) + (1 if esd / 10 ** np.floor(np.log10(esd))
                                                       < 2 else 0))
    digits = min(digits, 10)
    return f"{v:.{digits}f}({int(round(esd * 10**digits))})"


def write_cif(crystal: Crystal, path: str | Path | None = None,
              esd: Mapping[str, float] | None = None, prefix: str = "") -> str:
    """CIF text of a structure (written to ``path`` when given).

    Parameters
    ----------
    esd : mapping, optional
        Standard uncertainties by parameter name (``"a"``, ``"Pb.x"``), printed as ``v(e)``.
    """
    import gemmi

    esd = esd or {}
    sg = gemmi.SpaceGroup(crystal.space_group)
    lines = [f"data_{_LABEL_RE.sub('_', crystal.name)}", ""]
    for n, tag, v in zip(CELL_NAMES, ("length_a", "length_b", "length_c", "angle_alpha",
                                      "angle_beta", "angle_gamma"), crystal.cell):
        lines.append(f"_cell_{tag}  {_fmt(v, esd.get(prefix + n))}")
    lines += [f"_symmetry_space_group_name_H-M  '{sg.hm}'", f"_space_group_IT_number  {sg.number}",
              "", "loop_", "  _space_group_symop_operation_xyz"]
    lines += [f"  '{op.triplet()}'" for op in sg.operations()]
    lines += ["", "loop_", "  _atom_site_label", "  _atom_site_type_symbol",
              "  _atom_site_fract_x", "  _atom_site_fract_y", "  _atom_site_fract_z",
              "  _atom_site_occupancy", "  _atom_site_adp_type", "  _atom_site_U_iso_or_equiv"]
    for at in crystal.atoms:
        p = f"{prefix}{at.label}."
        cols = [_fmt(v, esd.get(p + k)) for k, v in zip("xyz", at.xyz)]
        lines.append(f"  {at.label} {at.element} {' '.join(cols)} "
                     f"{_fmt(at.occupancy, esd.get(p + 'occ'))} Uiso "
                     f"{_fmt(at.uiso, esd.get(p + 'uiso'))}")
    text = "\n".join(lines) + "\n"
    if path is not None:
        atomic_write_bytes(path, text.encode("utf-8"))
    return text


@dataclass(frozen=True)
class CrystalParams:
    """Registry names of a declared crystal.

    Attributes
    ----------
    cell : tuple of str
        Names of ``a, b, c, alpha, beta, gamma``.
    atoms : dict
        ``label -> {"x", "y", "z", "occ", "uiso"} -> name``.
    free_coordinates : tuple of str
        Coordinates left free by the site symmetry (what a refinement varies).
    """

    cell: tuple[str, ...]
    atoms: dict[str, dict[str, str]]
    free_coordinates: tuple[str, ...]

    @property
    def coordinates(self) -> tuple[str, ...]:
        return tuple(self.atoms[lab][k] for lab in self.atoms for k in "xyz")

    @property
    def uiso(self) -> tuple[str, ...]:
        return tuple(self.atoms[lab]["uiso"] for lab in self.atoms)

    @property
    def occupancies(self) -> tuple[str, ...]:
        return tuple(self.atoms[lab]["occ"] for lab in self.atoms)

    @property
    def all_names(self) -> tuple[str, ...]:
        out = list(self.cell)
        for lab in self.atoms:
            out += [self.atoms[lab][k] for k in ("x", "y", "z", "occ", "uiso")]
        return tuple(out)


def declare_crystal(registry: Any, crystal: Crystal, prefix: str = "",
                    refine_occupancy: bool = False) -> CrystalParams:
    """Declare a crystal's parameters with their symmetry constraints in a registry.

    Parameters
    ----------
    registry : tiedsci.core.Registry
    crystal : Crystal
    prefix : str
        Prepended to every name (``"phase1."``); empty by default (``"a"``, ``"Pb.x"``).
    refine_occupancy : bool
        Leave occupancies free (default: fixed).

    Returns
    -------
    CrystalParams
    """
    free, ties, fixed = metric_relations(crystal.crystal_system, crystal.is_rhombohedral_setting)
    names = {n: prefix + n for n in CELL_NAMES}
    cell_units = {"a": "angstrom", "b": "angstrom", "c": "angstrom"}
    for n, v in zip(CELL_NAMES, crystal.cell):
        registry.declare(names[n], v, unit=cell_units.get(n, "degree"),
                         description=f"cell {n}")
    for n, v in fixed.items():
        registry.fix(names[n], v)
    for src, tgt in ties:
        registry.tie(names[src], names[tgt])
    atoms: dict[str, dict[str, str]] = {}
    free_xyz = []
    for at in crystal.atoms:
        site = site_symmetry(crystal.ops, np.array(at.xyz))
        p = f"{prefix}{at.label}."
        nm = {k: p + k for k in ("x", "y", "z", "occ", "uiso")}
        for k, v in zip("xyz", site.xyz):
            registry.declare(nm[k], v, description=f"{at.label} fractional {k} "
                             f"(site multiplicity {site.multiplicity})")
        registry.declare(nm["occ"], at.occupancy, fixed=not refine_occupancy,
                         description=f"{at.label} occupancy")
        registry.declare(nm["uiso"], at.uiso, unit="angstrom^2",
                         description=f"{at.label} Uiso")
        for rel in site.relations:
            tgt = nm["xyz"[rel.target]]
            if not rel.terms:
                registry.fix(tgt, rel.offset)
            else:
                registry.linear(tgt, [(c, nm["xyz"[s]]) for c, s in rel.terms],
                                offset=rel.offset)
        free_xyz += [nm[k] for k, f in zip("xyz", site.free) if f]
        atoms[at.label] = nm
    if not crystal.atoms:
        raise DeclarationError("crystal has no atoms")
    return CrystalParams(tuple(names[n] for n in CELL_NAMES), atoms, tuple(free_xyz))
