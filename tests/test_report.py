"""The demo report: value(esd) notation, tables and prose, raw JSON only in the collapsed block."""

from __future__ import annotations

import re

import pytest

from tiedsci.cli import main
from tiedsci.report import format_esd, write_html_report


@pytest.mark.parametrize("value, esd, text", [
    (8.480297, 0.000097, "8.48030(10)"),   # leading digit 9: one digit, rounds up to 10
    (0.18754, 0.00008, "0.18754(8)"),
    (5.398574, 0.000062, "5.39857(6)"),
    (0.0809, 0.00014, "0.08090(14)"),      # leading digits 14 < 20: two digits
    (123.4, 15.0, "123(15)"),
    (2.5, 0.0, "2.5"),
])
def test_format_esd_follows_the_rule_of_19(value, esd, text):
    assert format_esd(value, esd) == text


def _refine_summary():
    params = {"a": {"value": 8.4804, "esd": 0.00011}, "Pb.x": {"value": 0.18749, "esd": 8e-5},
              "Pb.uiso": {"value": 0.0208, "esd": 0.0002}}
    comparison = {k: {"gsas2": p["value"] + 1e-5, "gsas2_esd": p["esd"], "diff": -1e-5,
                      "n_combined_esd": 0.1} for k, p in params.items()}
    return {
        "n_free": 41, "wall_s": 30.0,
        "datasets": {"xray": {"rwp_percent": 10.6, "rp_percent": 8.0, "gof": 2.2, "n_obs": 5697},
                     "neutron": {"rwp_percent": 4.5, "rp_percent": 3.7, "gof": 2.4,
                                 "n_obs": 2681}},
        "overall": {"rwp_percent": 6.5, "gof": 2.25}, "params": params,
        "gsas2": {"rwp_percent": {"xray": 11.0, "neutron": 4.53}, "comparison": comparison,
                  "max_coord_combined_esd": 0.1, "rwp_ratio": {"xray": 0.96, "neutron": 0.99}},
        "stages": [{"name": "+ cell", "rwp_percent": 9.0, "nfev": 5, "converged": True}],
    }


def _outside_raw_block(text: str) -> str:
    return re.sub(r"<details>.*?</details>", "", text, flags=re.S)


def test_refine_section_has_value_esd_tables_units_and_no_raw_json(tmp_path):
    path = write_html_report(tmp_path, {"refine": _refine_summary()})
    text = path.read_text()
    visible = _outside_raw_block(text)
    assert "8.48040(11)" in visible and "&Aring;" in visible      # value(esd) with its unit
    assert "GSAS-II" in visible and "difference / combined esd" in visible
    assert "<dt>Rwp (%)</dt>" in visible                           # defined in the glossary
    assert not re.search(r"\{['\"]", visible)                      # no dict/JSON dumps
    assert "&quot;rwp_percent&quot;" in text                       # ... only in the raw block
    assert "<figcaption>" not in visible or ".png)" in visible


def test_demo_report_explains_each_number_it_shows(tmp_path):
    main(["demo", "--quick", "--quiet", "--only", "registry", "--out", str(tmp_path)])
    visible = _outside_raw_block((tmp_path / "report.html").read_text())
    assert "What the tie bought" in visible and "<figcaption>" in visible
    assert not re.search(r"\{['\"]", visible)
    assert "n_free</dt>" in visible
