"""The public reflection list: positions, multiplicities, |F|^2 and intensities."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import tiedsci.refine.powder as powder

DATA = Path(__file__).resolve().parents[3] / "tiedsci" / "data" / "pbso4"
CU = powder.Instrument("xray", (1.5405, 1.5443), (1.0, 0.5), polarization=0.7)
NEUTRON = powder.Instrument("neutron", (1.909,), geometry="debye-scherrer", radius_mm=650.0)


def _crystal():
    return powder.read_cif(DATA / "PbSO4-Wyckoff_start.cif")


def test_package_exports_its_user_facing_names():
    for name in powder.__all__:
        assert getattr(powder, name) is not None


def test_positions_follow_bragg_and_rows_are_sorted():
    refl = powder.reflection_list(_crystal(), NEUTRON, (20.0, 80.0))
    assert len(refl) > 10
    assert np.all(np.diff(refl.two_theta) >= 0)
    assert refl.two_theta.min() >= 20.0 and refl.two_theta.max() <= 80.0
    np.testing.assert_allclose(refl.two_theta, 2 * np.degrees(np.arcsin(1.909 / (2 * refl.d))),
                               rtol=1e-10)
    assert np.all(refl.multiplicity >= 1) and np.all(refl.f2 >= 0)
    # the intensity is multiplicity x |F|^2 x Lorentz factor (no polarisation for neutrons)
    th = np.radians(refl.two_theta / 2)
    lor = 1 / (2 * np.sin(th) ** 2 * np.cos(th))
    np.testing.assert_allclose(refl.intensity, refl.multiplicity * refl.f2 * lor, rtol=1e-10)
    rec = refl.rows()[0]
    assert set(rec) == {"h", "k", "l", "d", "two_theta", "multiplicity", "f2", "intensity",
                        "wavelength"}


def test_two_wavelengths_give_each_reflection_twice_with_its_weight():
    refl = powder.reflection_list(_crystal(), CU, (25.0, 60.0))
    assert set(np.round(refl.wavelength, 4)) == {1.5405, 1.5443}
    a1 = refl.wavelength == 1.5405
    a2 = ~a1
    k1 = {tuple(h): f for h, f in zip(refl.hkl[a1], refl.f2[a1])}
    common = [(tuple(h), f) for h, f in zip(refl.hkl[a2], refl.f2[a2]) if tuple(h) in k1]
    assert common
    for h, f in common:  # the same |F|^2 at both wavelengths (X-ray form factors at d)
        np.testing.assert_allclose(f, k1[h], rtol=1e-10)
