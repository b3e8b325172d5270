"""Readers of the bundled GSAS files and of xy/xye text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiedsci.errors import DataError
from tiedsci.refine.powder.io import read_gsas_prm, read_gsas_std, read_xy

DATA = Path(__file__).resolve().parents[3] / "tiedsci" / "data" / "pbso4"


def test_xray_std():
    d = read_gsas_std(DATA / "PBSO4.XRA")
    assert d.two_theta.size == 6001
    assert d.two_theta[0] == pytest.approx(10.0) and d.two_theta[-1] == pytest.approx(160.0)
    assert np.diff(d.two_theta) == pytest.approx(0.025)
    assert d.intensity[:3].tolist() == [179.0, 147.0, 165.0]  # first record, by eye
    assert d.intensity.min() == 67 and d.intensity.max() == 15702
    assert np.all(d.ncount == 1)
    np.testing.assert_allclose(d.sigma, np.sqrt(d.intensity))


def test_neutron_std_ncount_convention():
    d = read_gsas_std(DATA / "PBSO4.CWN")
    assert d.two_theta.size == 2919
    assert d.two_theta[-1] == pytest.approx(155.9)
    assert d.intensity[:3].tolist() == [220.0, 214.0, 219.0]
    assert d.ncount.min() == 1 and d.ncount.max() == 10
    np.testing.assert_allclose(d.sigma, np.sqrt(d.intensity / d.ncount))  # var = I / ncount
    # the fields are fixed-width: the last line of the file is read field by field
    last = (DATA / "PBSO4.CWN").read_text().splitlines()[-1]
    fields = [last[i:i + 8] for i in range(0, 80, 8) if last[i:i + 8].strip()]
    assert d.intensity[-len(fields):].tolist() == [float(f[2:]) for f in fields]
    assert d.ncount[-len(fields):].tolist() == [int(f[:2]) for f in fields]


def test_prm_files():
    x = read_gsas_prm(DATA / "INST_XRY.PRM")
    assert x.is_xray and x.wavelengths == (1.5405, 1.5443)
    assert x.polarization == 0.7 and x.ka2_ratio == 0.5 and x.zero == 0.0
    assert (x.profile_type, x.U, x.V, x.W) == (3, 2.0, -2.0, 5.0)
    assert x.shl == pytest.approx(0.03)
    n = read_gsas_prm(DATA / "inst_d1a.prm")
    assert not n.is_xray and n.wavelengths == (1.909,)
    assert n.zero == pytest.approx(-0.001)  # -0.1 centidegree
    assert (n.U, n.V, n.W) == (354.031, -760.404, 651.592)


def test_xy(tmp_path):
    p = tmp_path / "a.xye"
    p.write_text("# comment\n10 100 9\n10.5 121 11\n")
    d = read_xy(p)
    assert d.two_theta.tolist() == [10.0, 10.5] and d.sigma.tolist() == [9.0, 11.0]
    p2 = tmp_path / "b.xy"
    p2.write_text("10 100\n11 0\n")
    assert read_xy(p2).sigma.tolist() == [10.0, 1.0]
    p.write_text("10 100 0\n")
    with pytest.raises(DataError, match="sigma"):
        read_xy(p)
    with pytest.raises(DataError):
        read_gsas_std(tmp_path / "missing.raw")
