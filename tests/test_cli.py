"""The command line: help, version, and the registry section of the demo."""

import json
import subprocess
import sys

from tiedsci.cli import main


def test_help_lists_the_commands(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for word in ("demo", "hmm", "refine", "pinn"):
        assert word in out


def test_demo_registry_section_writes_plot_and_summary(tmp_path):
    main(["demo", "--quick", "--only", "registry", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    reg = summary["registry"]
    assert (tmp_path / "registry" / "registry_joint_fit.png").stat().st_size > 1000
    # pooling two instruments must tighten the shared centre's error bar
    assert reg["centre_esd_joint"] < reg["centre_esd_b_alone"]
    assert abs(reg["centre"] - reg["centre_truth"]) < 4 * reg["centre_esd_joint"]
    assert reg["n_free"] == 6


def test_module_entry_point_runs():
    res = subprocess.run([sys.executable, "-m", "tiedsci", "--version"], capture_output=True,
                         text=True, check=True)
    assert "tiedsci" in res.stdout


def test_demo_writes_a_self_contained_html_report(tmp_path):
    main(["demo", "--quick", "--only", "registry", "--out", str(tmp_path)])
    text = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in text  # the figure is embedded, not linked
    assert "centre_esd_joint" in text
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_quick_demo_runs_every_section(tmp_path):
    """The whole ``tiedsci demo --quick`` smoke run: every flagship section produces numbers."""
    main(["demo", "--quick", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "summary.json").read_text())
    for key in ("registry", "hmm", "pinn"):
        assert summary[key].get("status") != "not available", key
    assert summary["pinn"]["boundary_mismatch"] <= 1e-6
    assert summary["pinn"]["budget_s"] == 12.0
    assert "bic_tied" in summary["hmm"]
    assert (tmp_path / "report.html").stat().st_size > 10_000
