"""Crystal: special-position constraints emitted into the registry; CIF in and out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiedsci.core import Registry
from tiedsci.errors import DataError
from tiedsci.refine.powder.crystal import Atom, Crystal, declare_crystal, read_cif, write_cif

DATA = Path(__file__).resolve().parents[3] / "tiedsci" / "data" / "pbso4"


def test_pnma_special_positions_are_fixed_in_the_registry():
    crystal = read_cif(DATA / "PbSO4-Wyckoff_start.cif")
    reg = Registry()
    cp = declare_crystal(reg, crystal)
    layout = reg.compile()
    free = set(layout.free_names)
    for lab in ("Pb", "S", "O1", "O2"):  # 4c (x, 1/4, z)
        assert f"{lab}.x" in free and f"{lab}.z" in free
        assert f"{lab}.y" not in free
        assert float(layout.values0[f"{lab}.y"]) == 0.25
        assert crystal.site(lab).multiplicity == 4
    assert {"O3.x", "O3.y", "O3.z"} <= free  # 8d general position
    assert crystal.site("O3").multiplicity == 8
    assert {"a", "b", "c"} <= free and not {"alpha", "beta", "gamma"} & free
    assert cp.free_coordinates == ("Pb.x", "Pb.z", "S.x", "S.z", "O1.x", "O1.z", "O2.x",
                                   "O2.z", "O3.x", "O3.y", "O3.z")
    # y stays 1/4 whatever theta is
    rng = np.random.default_rng(0)
    vals = layout.unpack(layout.theta0 + 0.01 * rng.standard_normal(layout.n_free))
    assert float(vals["Pb.y"]) == 0.25


def test_special_position_snapped_and_related():
    # Pnma 4c given slightly off: y snapped to exactly 1/4
    cr = Crystal((8.0, 5.0, 7.0, 90, 90, 90), "P n m a", (Atom("M", "Fe", (0.1, 0.2501, 0.3)),))
    reg = Registry()
    declare_crystal(reg, cr)
    assert float(reg.compile().values0["M.y"]) == 0.25
    # Fd-3m 32e (x, x, x): y and z follow x
    cr = Crystal((10.0,) * 3 + (90.0,) * 3, "F d -3 m", (Atom("O", "O", (0.3, 0.3, 0.3)),))
    reg = Registry()
    declare_crystal(reg, cr)
    lay = reg.compile()
    assert [n for n in lay.free_names if n.startswith("O.")] == ["O.x", "O.uiso"]
    th = lay.theta0.copy()
    th[list(lay.free_names).index("O.x")] = 0.31
    v = lay.unpack(th)
    assert float(v["O.y"]) == pytest.approx(0.31) and float(v["O.z"]) == pytest.approx(0.31)
    # P6/mmm 3f (x, 0, 0)? use 6l (x, 2x, 0): y = 2x, z = 0
    cr = Crystal((3.0, 3.0, 5.0, 90, 90, 120), "P 6/m m m", (Atom("A", "C", (0.2, 0.4, 0.0)),))
    reg = Registry()
    declare_crystal(reg, cr)
    lay = reg.compile()
    th = lay.theta0.copy()
    th[list(lay.free_names).index("A.x")] = 0.25
    v = lay.unpack(th)
    assert float(v["A.y"]) == pytest.approx(0.5) and float(v["A.z"]) == 0.0
    assert cr.site("A").multiplicity == 6


def test_cif_round_trip(tmp_path):
    crystal = read_cif(DATA / "PbSO4-Wyckoff_start.cif")
    assert crystal.space_group.replace(" ", "") == "Pnma"
    assert crystal.cell == pytest.approx((8.48, 5.398, 6.958, 90, 90, 90))
    assert [a.label for a in crystal.atoms] == ["Pb", "S", "O1", "O2", "O3"]
    o3 = crystal.atoms[-1]
    assert o3.xyz == pytest.approx((0.085, 0.026, 0.806)) and o3.uiso == pytest.approx(0.01)
    text = write_cif(crystal, tmp_path / "out.cif", esd={"a": 0.0002, "Pb.x": 0.00008})
    assert "8.4800(2)" in text and "0.18820(8)" in text
    again = read_cif(tmp_path / "out.cif")
    assert again.cell == pytest.approx(crystal.cell)
    for a, b in zip(again.atoms, crystal.atoms):
        assert a.label == b.label and a.element == b.element
        assert a.xyz == pytest.approx(b.xyz) and a.uiso == pytest.approx(b.uiso)


def test_biso_and_errors():
    text = """data_t
_cell_length_a 4
_cell_length_b 4
_cell_length_c 4
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'F m -3 m'
loop_
_atom_site_label
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_B_iso_or_equiv
Na1 0 0 0 0.7896
"""
    cr = read_cif(text)
    assert cr.atoms[0].element == "Na"
    assert cr.atoms[0].uiso == pytest.approx(0.7896 / (8 * np.pi**2))
    with pytest.raises(DataError):
        Crystal((4, 4, 4, 90, 90, 90), "X 9 9", ())
    with pytest.raises(DataError):
        Crystal((4, 4, 4, 90, 90, 90), "P 1", (Atom("A", "C", (0, 0, 0)),
                                               Atom("A", "C", (0.5, 0, 0))))
