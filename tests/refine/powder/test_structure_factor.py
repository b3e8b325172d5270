"""|F| for NaCl and Si against values computed by hand from the form factors."""

from __future__ import annotations

import gemmi
import numpy as np
import pytest

from tiedsci.refine.powder.crystal import Atom, Crystal
from tiedsci.refine.powder.reflections import inv_d2, reciprocal_metric
from tiedsci.refine.powder.structure_factor import (
    scattering_table,
    structure_factor_sq,
    symmetry_table,
)


def _f_abs(crystal, hkl, radiation, anomalous=None):
    hkl = np.asarray(hkl)
    xyz = np.array([a.xyz for a in crystal.atoms])
    sym = symmetry_table(hkl, crystal.ops, xyz)
    table = scattering_table([a.element for a in crystal.atoms], radiation, anomalous)
    s2 = inv_d2(hkl, reciprocal_metric(crystal.cell)) / 4.0
    occ = np.array([a.occupancy for a in crystal.atoms])
    uiso = np.array([a.uiso for a in crystal.atoms])
    return np.sqrt(structure_factor_sq(sym, table, s2, xyz, occ, uiso)), s2


def _f0(el, s2):
    return gemmi.Element(el).it92.calculate_sf(float(s2))


NACL = Crystal((5.64, 5.64, 5.64, 90, 90, 90), "F m -3 m",
               (Atom("Na", "Na", (0, 0, 0), uiso=0.0), Atom("Cl", "Cl", (0.5, 0.5, 0.5),
                                                              uiso=0.0)))


def test_nacl_xray():
    hkl = [(1, 1, 1), (2, 0, 0), (2, 2, 0), (3, 1, 1), (2, 2, 2)]
    f, s2 = _f_abs(NACL, hkl, "xray")
    for (h, k, l), fi, s in zip(hkl, f, s2):
        na, cl = _f0("Na", s), _f0("Cl", s)
        hand = 4 * abs(na - cl) if h % 2 else 4 * (na + cl)  # all odd: 4(fNa - fCl)
        assert fi == pytest.approx(hand, rel=1e-6), (h, k, l)


def test_nacl_neutron_and_debye_waller():
    u = 0.012
    cr = Crystal(NACL.cell, NACL.space_group,
                 tuple(Atom(a.label, a.element, a.xyz, uiso=u) for a in NACL.atoms))
    f, s2 = _f_abs(cr, [(2, 0, 0), (1, 1, 1)], "neutron")
    b_na = gemmi.Element("Na").neutron92.get_coefs()[0]
    b_cl = gemmi.Element("Cl").neutron92.get_coefs()[0]
    t = np.exp(-8 * np.pi**2 * u * s2)
    assert f[0] == pytest.approx(4 * (b_na + b_cl) * t[0], rel=1e-9)
    assert f[1] == pytest.approx(4 * abs(b_na - b_cl) * t[1], rel=1e-9)


def test_si_diamond():
    # Fd-3m origin choice 1 (gemmi's default): Si on 8a (0, 0, 0)
    si = Crystal((5.431, 5.431, 5.431, 90, 90, 90), "F d -3 m",
                 (Atom("Si", "Si", (0, 0, 0), uiso=0.0),))
    hkl = [(1, 1, 1), (2, 2, 0), (3, 1, 1), (4, 0, 0), (2, 2, 2)]
    f, s2 = _f_abs(si, hkl, "xray")
    fs = [_f0("Si", s) for s in s2]
    assert f[0] == pytest.approx(4 * np.sqrt(2) * fs[0], rel=1e-6)  # |4(1 - i)| f
    assert f[1] == pytest.approx(8 * fs[1], rel=1e-6)
    assert f[2] == pytest.approx(4 * np.sqrt(2) * fs[2], rel=1e-6)
    assert f[3] == pytest.approx(8 * fs[3], rel=1e-6)
    assert f[4] == pytest.approx(0.0, abs=1e-9)  # forbidden by the 8a site, not the group


def test_anomalous_terms_add_in_quadrature_for_centrosymmetric():
    fp, fpp = -1.2, 3.4
    f, s2 = _f_abs(NACL, [(2, 0, 0)], "xray", {"Cl": (fp, fpp)})
    na, cl = _f0("Na", s2[0]), _f0("Cl", s2[0])
    hand = 4 * np.hypot(na + cl + fp, fpp)
    assert f[0] == pytest.approx(hand, rel=1e-6)


def test_torch_matches_numpy():
    torch = pytest.importorskip("torch")
    cr = NACL
    hkl = np.array([(1, 1, 1), (2, 0, 0), (3, 3, 1)])
    xyz = np.array([[0.01, 0.02, 0.0], [0.5, 0.47, 0.5]])
    sym = symmetry_table(hkl, cr.ops, np.array([a.xyz for a in cr.atoms]))
    table = scattering_table(["Na", "Cl"], "xray", {"Cl": (0.3, 0.7)})
    s2 = inv_d2(hkl, reciprocal_metric(cr.cell)) / 4.0
    occ, u = np.array([1.0, 0.9]), np.array([0.01, 0.02])
    ref = structure_factor_sq(sym, table, s2, xyz, occ, u)
    got = structure_factor_sq(sym, table, torch.as_tensor(s2), torch.as_tensor(xyz),
                              torch.as_tensor(occ), torch.as_tensor(u))
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12)
