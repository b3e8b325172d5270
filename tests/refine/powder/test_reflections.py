"""Reflections: Bragg's law positions by hand, multiplicities, systematic absences."""

from __future__ import annotations

import numpy as np
import pytest

from tiedsci.core import Registry
from tiedsci.refine.powder.crystal import Atom, Crystal, declare_crystal
from tiedsci.refine.powder.instrument import Instrument
from tiedsci.refine.powder.pattern import PowderModel, declare_pattern
from tiedsci.refine.powder.reflections import generate_reflections, is_absent, multiplicity

LAMBDA = 1.5406


def _inv_d2_cubic(h, k, l, a, **_):
    return (h * h + k * k + l * l) / a**2


def _inv_d2_tetragonal(h, k, l, a, c, **_):
    return (h * h + k * k) / a**2 + l * l / c**2


def _inv_d2_ortho(h, k, l, a, b, c, **_):
    return h * h / a**2 + k * k / b**2 + l * l / c**2


def _inv_d2_hex(h, k, l, a, c, **_):
    return 4.0 / 3.0 * (h * h + h * k + k * k) / a**2 + l * l / c**2


def _inv_d2_mono(h, k, l, a, b, c, beta, **_):
    sb, cb = np.sin(np.radians(beta)), np.cos(np.radians(beta))
    return (h * h / a**2 + k * k * sb**2 / b**2 + l * l / c**2
            - 2 * h * l * cb / (a * c)) / sb**2


CASES = [
    ("P m -3 m", dict(a=4.05), (4.05, 4.05, 4.05, 90, 90, 90), _inv_d2_cubic),
    ("P 4/m m m", dict(a=3.9, c=5.1), (3.9, 3.9, 5.1, 90, 90, 90), _inv_d2_tetragonal),
    ("P m m m", dict(a=4.1, b=5.3, c=6.2), (4.1, 5.3, 6.2, 90, 90, 90), _inv_d2_ortho),
    ("P 6/m m m", dict(a=3.2, c=5.2), (3.2, 3.2, 5.2, 90, 90, 120), _inv_d2_hex),
    ("P 1 2/m 1", dict(a=5.1, b=4.3, c=6.7, beta=104.0), (5.1, 4.3, 6.7, 90, 104.0, 90),
     _inv_d2_mono),
]


@pytest.mark.parametrize("sg, kw, cell, formula", CASES, ids=[c[0] for c in CASES])
def test_peak_positions_follow_braggs_law(sg, kw, cell, formula):
    crystal = Crystal(cell, sg, (Atom("M", "Fe", (0.0, 0.0, 0.0)),))
    reg = Registry()
    cp = declare_crystal(reg, crystal)
    inst = Instrument("neutron", (LAMBDA,), geometry="debye-scherrer")
    pp = declare_pattern(reg, "n", inst, cp)
    model = PowderModel.build(crystal, inst, pp, (10.0, 150.0), n_asym=0)
    pos = model.tick_positions(reg.compile().values0)
    assert len(pos) > 10
    n_checked = 0
    for (h, k, l), p in zip(model.reflections.hkl, pos):
        d = 1.0 / np.sqrt(formula(h, k, l, **kw))
        if LAMBDA / (2.0 * d) >= 1.0:  # kept as margin, beyond 180 degrees
            continue
        n_checked += 1
        expected = 2.0 * np.degrees(np.arcsin(LAMBDA / (2.0 * d)))
        assert p == pytest.approx(expected, abs=1e-9), (h, k, l)
    assert n_checked > 10


def test_crystal_system_ties_follow_the_cell():
    """Cubic: b and c follow a in the registry; positions move with a alone."""
    crystal = Crystal((4.0, 4.0, 4.0, 90, 90, 90), "F m -3 m",
                      (Atom("Na", "Na", (0, 0, 0)), Atom("Cl", "Cl", (0.5, 0.5, 0.5))))
    reg = Registry()
    declare_crystal(reg, crystal)
    layout = reg.compile()
    assert [n for n in layout.free_names if n in ("a", "b", "c")] == ["a"]
    theta = layout.theta0.copy()
    theta[list(layout.free_names).index("a")] = 5.0
    vals = layout.unpack(theta)
    assert float(vals["b"]) == 5.0 and float(vals["c"]) == 5.0
    assert float(vals["gamma"]) == 90.0


def test_multiplicities_m3m_and_mmm():
    # m-3m: {100} 6, {110} 12, {111} 8, {210} 24, {211} 24, {321} 48
    for hkl, m in [((1, 0, 0), 6), ((1, 1, 0), 12), ((1, 1, 1), 8), ((2, 1, 0), 24),
                   ((2, 1, 1), 24), ((3, 2, 1), 48)]:
        assert multiplicity("F m -3 m", hkl) == m, hkl
    # mmm: h00 2, hk0 4, hkl 8
    for hkl, m in [((1, 0, 0), 2), ((0, 2, 0), 2), ((1, 1, 0), 4), ((1, 0, 3), 4),
                   ((1, 2, 3), 8)]:
        assert multiplicity("P n m a", hkl) == m, hkl
    refl = generate_reflections((5.0, 5.0, 5.0, 90, 90, 90), "P m -3 m", 1.2)
    # the multiplicities of a full sphere add up to the number of lattice points in it
    a = 5.0
    n = int(np.floor(a / 1.2))
    g = np.arange(-n, n + 1)
    hh, kk, ll = np.meshgrid(g, g, g, indexing="ij")
    q = (hh**2 + kk**2 + ll**2) / a**2
    assert refl.multiplicity.sum() == int(np.sum((q > 0) & (q <= 1 / 1.2**2)))


def test_absences_pnma():
    # Pnma: 0kl k+l=2n; hk0 h=2n; h00 h=2n; 0k0 k=2n; 00l l=2n
    assert is_absent("P n m a", (0, 1, 2)) and not is_absent("P n m a", (0, 1, 1))
    assert is_absent("P n m a", (1, 1, 0)) and not is_absent("P n m a", (2, 1, 0))
    assert is_absent("P n m a", (1, 0, 0)) and is_absent("P n m a", (0, 3, 0))
    assert is_absent("P n m a", (0, 0, 1)) and not is_absent("P n m a", (1, 0, 1))
    assert not is_absent("P n m a", (1, 2, 3))
    hkl = generate_reflections((8.48, 5.398, 6.958, 90, 90, 90), "P n m a", 1.0).hkl
    for h, k, l in hkl:
        if h == 0:
            assert (k + l) % 2 == 0
        if l == 0:
            assert h % 2 == 0


def test_absences_fd3m():
    # F centring: h, k, l all even or all odd; d glide 0kl: k + l = 4n (k, l even)
    assert is_absent("F d -3 m", (1, 0, 0)) and is_absent("F d -3 m", (2, 1, 0))
    assert is_absent("F d -3 m", (2, 0, 0)) and not is_absent("F d -3 m", (4, 0, 0))
    assert not is_absent("F d -3 m", (1, 1, 1)) and not is_absent("F d -3 m", (2, 2, 0))
    assert is_absent("F d -3 m", (4, 2, 0)) and not is_absent("F d -3 m", (4, 2, 2))
    hkl = generate_reflections((5.43, 5.43, 5.43, 90, 90, 90), "F d -3 m", 1.0).hkl
    parity = hkl % 2
    assert np.all((parity == parity[:, :1]).all(axis=1))
