"""File readers and writers: fuzzed and truncated input, named errors, atomic writes.

The readers of ``tiedsci.refine.powder`` (GSAS raw STD, GSAS instrument ``.prm``, xy/xye, CIF)
get random bytes, truncated bundled files and bundled files with mutated bytes or lines
(hypothesis): each call either returns a sane result (finite numbers, sigma > 0, at least one
point) or raises ``DataError``/``ValueError`` - never another exception type. The writers
(``write_cif``, ``write_html_report``) are checked to replace files atomically.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import raises_naming
from tiedsci.errors import DataError
from tiedsci.refine.powder.crystal import read_cif, write_cif
from tiedsci.refine.powder.io import read_gsas_prm, read_gsas_std, read_xy
from tiedsci.report import write_html_report

DATA = Path(__file__).resolve().parents[2] / "tiedsci" / "data" / "pbso4"
READERS = {
    "PBSO4.XRA": read_gsas_std,
    "PBSO4.CWN": read_gsas_std,
    "INST_XRY.PRM": read_gsas_prm,
    "inst_d1a.prm": read_gsas_prm,
    "PbSO4-Wyckoff_start.cif": read_cif,
}
_BYTES = {name: (DATA / name).read_bytes() for name in READERS}
_XY = b"# 2theta I sigma\n10.0 120 11\n10.02 131 11.5\n10.04 127 11.2\n10.06 140 12\n"
FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


def _check_sane(out):
    """A parsed result must be usable: finite numbers, positive sigma, at least one point."""
    if hasattr(out, "two_theta"):
        assert out.two_theta.size >= 1
        for a in (out.two_theta, out.intensity, out.sigma):
            assert a.shape == out.two_theta.shape and np.all(np.isfinite(a))
        assert np.all(out.sigma > 0)
    elif hasattr(out, "wavelengths"):
        assert out.wavelengths and all(np.isfinite(w) and w > 0 for w in out.wavelengths)
        assert all(np.isfinite((out.U, out.V, out.W, out.zero, out.polarization)))
    else:  # Crystal
        assert len(out.cell) == 6 and all(np.isfinite(out.cell)) and min(out.cell[:3]) > 0
        for at in out.atoms:
            assert all(np.isfinite((*at.xyz, at.occupancy, at.uiso)))


def _read(reader, path):
    try:
        out = reader(path)
    except ValueError:  # DataError is one; gemmi and numpy messages arrive wrapped in it
        return None
    _check_sane(out)
    return out


@st.composite
def _mutations(draw, source: bytes):
    kind = draw(st.sampled_from(["truncate", "bytes", "line", "random"]))
    if kind == "truncate":
        return source[: draw(st.integers(0, len(source)))]
    if kind == "random":
        return draw(st.binary(max_size=400))
    if kind == "bytes":
        arr = bytearray(source)
        for _ in range(draw(st.integers(1, 12))):
            arr[draw(st.integers(0, len(arr) - 1))] = draw(st.integers(0, 255))
        return bytes(arr)
    lines = source.split(b"\n")
    i = draw(st.integers(0, len(lines) - 1))
    lines[i] = draw(st.sampled_from([b"", b"nan", b"  inf  -inf", b"BANK 1 0 0 CONST 0 0",
                                     b"1e999 2 3", b"?", b"loop_", b"_cell_length_a -1",
                                     b"INS  1 ICONS  nan"]) | st.binary(max_size=60))
    return b"\n".join(lines)


@pytest.mark.parametrize("name", list(READERS))
def test_bundled_files_parse(name):
    _check_sane(READERS[name](DATA / name))


@pytest.mark.parametrize("name", list(READERS))
@FUZZ
@given(data=st.data())
def test_damaged_files_give_a_result_or_a_value_error(tmp_path, name, data):
    blob = data.draw(_mutations(_BYTES[name]))
    path = tmp_path / name
    path.write_bytes(blob)
    _read(READERS[name], path)


@FUZZ
@given(blob=_mutations(_XY))
def test_damaged_xy_files_give_a_result_or_a_value_error(tmp_path, blob):
    path = tmp_path / "pattern.xye"
    path.write_bytes(blob)
    _read(read_xy, path)


# ---------------------------------------------------------------------- named errors
def _std(tmp_path, bank, body):
    p = tmp_path / "raw.gsa"
    p.write_text(f"title\n{bank}\n{body}\n")
    return p


@pytest.mark.parametrize("bank,body,needles", [
    ("BANK 1 2 1 CONST 1000 2 0 0 STD", "  100.0     nan", ("raw.gsa", "point 1", "not finite")),
    ("BANK 1 0 0 CONST 1000 2 0 0 STD", "", ("raw.gsa", "npts", "npts=0")),
    ("BANK 1 2 1 CONST 1000 0 0 0 STD", "  100.0   101.0", ("raw.gsa", "step")),
    ("BANK 1 3 1 CONST 1000 2 0 0 STD", "  100.0   101.0", ("raw.gsa", "3 points", "found 2")),
    ("BANK 1 2 1 CONST 1000 2 0 0 STD", " 0100.0   101.0", ("raw.gsa", "ncount")),
])
def test_gsas_std_errors_name_the_file_and_the_problem(tmp_path, bank, body, needles):
    with raises_naming(DataError, *needles):
        read_gsas_std(_std(tmp_path, bank, body))


@pytest.mark.parametrize("text,needles", [
    ("10 1 nan\n11 2 1\n", ("a.xye", "row 0", "column 3")),
    ("nan 1\n", ("a.xye", "column 1", "not finite")),
    ("# only a comment\n", ("a.xye", "no data")),
    ("10 1 0.5\n11 2\n", ("a.xye",)),
    ("10 abc\n", ("a.xye",)),
])
def test_xy_errors_name_the_file(tmp_path, text, needles):
    p = tmp_path / "a.xye"
    p.write_text(text)
    with raises_naming(DataError, *needles):
        read_xy(p)


def test_prm_with_a_bad_wavelength_or_profile(tmp_path):
    text = (DATA / "inst_d1a.prm").read_text(encoding="latin-1").splitlines()
    icons = next(i for i, s in enumerate(text) if s.startswith("INS  1 ICONS"))
    bad = list(text)
    bad[icons] = "INS  1 ICONS " + "      -1.0"
    (tmp_path / "w.prm").write_text("\n".join(bad))
    with raises_naming(DataError, "w.prm", "wavelength"):
        read_gsas_prm(tmp_path / "w.prm")
    prcf = next(i for i, s in enumerate(text) if s.startswith("INS  1PRCF11"))
    bad = list(text)
    bad[prcf] = "INS  1PRCF11   0.35x031E+03"
    (tmp_path / "p.prm").write_text("\n".join(bad))
    with raises_naming(DataError, "p.prm", "PRCF11"):
        read_gsas_prm(tmp_path / "p.prm")
    with raises_naming(DataError, "missing.prm"):
        read_gsas_prm(tmp_path / "missing.prm")


_CIF = """data_test
_cell_length_a 5.0
_cell_length_b 6.0
_cell_length_c 7.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P m m m'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_U_iso_or_equiv
Na1 Na 0.1 0.2 0.3 0.01
"""


@pytest.mark.parametrize("edit,needles", [
    (("_cell_length_b 6.0\n", ""), ("incomplete cell",)),
    (("_cell_length_a 5.0", "_cell_length_a nan"), ("incomplete cell", "non-finite")),
    (("Na1 Na 0.1", "Na1 Na ?"), ("Na1", "missing")),
    (("Na1 Na 0.1", "Na1 Na 1.2.3"), ("Na1",)),
    (("Na1 Na 0.1", "11 12 0.1"), ("11", "element")),
    (("_symmetry_space_group_name_H-M 'P m m m'\n", ""), ("space-group",)),
    (("_symmetry_space_group_name_H-M 'P m m m'", "_symmetry_space_group_name_H-M 'Q 9'"),
     ("space group", "Q 9")),
])
def test_cif_errors_name_the_problem(edit, needles):
    text = _CIF.replace(*edit)
    assert text != _CIF
    with raises_naming(DataError, *needles):
        read_cif(text)


def test_cif_block_that_does_not_exist():
    with raises_naming(DataError, "no data block", "3"):
        read_cif(_CIF, block=3)
    with raises_naming(DataError, "no data block", "other"):
        read_cif(_CIF, block="other")


# ---------------------------------------------------------------------- atomic writers
def _fail(*args, **kwargs):
    raise OSError("disk full (simulated)")


def _atomic(path, write_old, write_new, monkeypatch):
    """``write_new`` fails at the flush to disk (after the bytes were written somewhere):
    the previous file stays, no temporary file is left; a successful write is a rename."""
    write_old()
    before, inode = path.read_bytes(), os.stat(path).st_ino
    monkeypatch.setattr("os.fsync", _fail)
    with pytest.raises(OSError, match="simulated"):
        write_new()
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    write_new()
    assert path.read_bytes() != before and os.stat(path).st_ino != inode


def test_write_cif_is_atomic(tmp_path, monkeypatch):
    crystal = read_cif(_CIF)
    moved = read_cif(_CIF.replace("0.1 0.2 0.3", "0.15 0.2 0.3"))
    path = tmp_path / "out.cif"
    _atomic(path, lambda: write_cif(crystal, path), lambda: write_cif(moved, path), monkeypatch)
    assert read_cif(str(path)).atoms[0].xyz[0] == pytest.approx(0.15)


def test_html_report_is_atomic(tmp_path, monkeypatch):
    out = tmp_path / "run"
    out.mkdir()
    path = out / "report.html"
    _atomic(path, lambda: write_html_report(out, {"a": {"x": 1.0}}),
            lambda: write_html_report(out, {"a": {"x": 2.0}}), monkeypatch)
