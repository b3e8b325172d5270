"""Peak-shape functions: normalisation, TCH limits, FCJ asymmetry."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.special import voigt_profile

from tiedsci.refine.powder.profile import (
    caglioti_sigma2,
    fcj_nodes,
    lorentz_gamma,
    pseudo_voigt,
    size_strain_to_xy,
    tch,
)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_pseudo_voigt_unit_area_and_fwhm(eta):
    fwhm = 0.2
    area = quad(lambda x: pseudo_voigt(np.array(x), fwhm, eta), -200, 200, points=[0],
                limit=500)[0]
    assert area == pytest.approx(1.0, abs=2e-3 if eta else 1e-9)
    peak = pseudo_voigt(np.array(0.0), fwhm, eta)
    assert pseudo_voigt(np.array(fwhm / 2), fwhm, eta) == pytest.approx(peak / 2)


def test_tch_limits_and_voigt_accuracy():
    f, eta = tch(np.array(0.3), np.array(0.0))
    assert f == pytest.approx(0.3) and eta == pytest.approx(0.0)
    f, eta = tch(np.array(1e-12), np.array(0.3))
    assert f == pytest.approx(0.3, rel=1e-6) and eta == pytest.approx(1.0, abs=1e-4)
    # TCH approximates the true Voigt to about 1 % of its peak (Thompson et al. 1987)
    fg, fl = 0.2, 0.1
    sigma, gamma = fg / (2 * np.sqrt(2 * np.log(2))), fl / 2
    x = np.linspace(-1, 1, 2001)
    f, eta = tch(np.array(fg), np.array(fl))
    err = np.abs(pseudo_voigt(x, f, eta) - voigt_profile(x, sigma, gamma)).max()
    assert err < 0.02 * voigt_profile(0.0, sigma, gamma)


def test_widths():
    th = np.radians(30.0)
    assert caglioti_sigma2(2.0, -2.0, 5.0, np.tan(th)) == pytest.approx(
        2 * np.tan(th) ** 2 - 2 * np.tan(th) + 5)
    assert lorentz_gamma(1.0, 2.0, np.cos(th), np.tan(th)) == pytest.approx(
        1 / np.cos(th) + 2 * np.tan(th))
    x, y = size_strain_to_xy(1.5405, 1.0, 1000.0)
    assert x == pytest.approx(1.8 * 1.5405 / np.pi) and y == pytest.approx(18 / np.pi)


def test_fcj_nodes():
    tth = np.array([20.0, 60.0, 120.0])
    off, w = fcj_nodes(tth, 0.03, 8)
    np.testing.assert_allclose(w.sum(1), 1.0)
    assert np.all(off[0] <= 0) and np.all(off[2] >= 0)  # low-angle tail below 90 deg
    assert abs(off[0]).max() > abs(off[1]).max()  # strongest at low angle
    # largest apparent shift is that of u = shl: arccos(cos 2theta sqrt(1 + shl^2))
    exact = np.degrees(np.arccos(np.cos(np.radians(20.0)) * np.sqrt(1 + 0.03**2))) - 20.0
    assert off[0].min() > exact and off[0].min() < 0.8 * exact
    off0, _ = fcj_nodes(tth, 0.0, 4)
    np.testing.assert_allclose(off0, 0.0, atol=1e-12)
