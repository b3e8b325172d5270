"""The command line: help, version, and the registry section of the demo."""

import json
import subprocess
import sys

import pytest

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


# ----------------------------------------------------------------------------- run-file commands
REFINE_RUN = """
[model]
builtin = "gaussian_peaks"

[[dataset]]
name = "a"
file = "a.dat"

[[dataset]]
name = "b"
file = "b.dat"

[shared]
center = 0.1
width = { value = 0.9, bounds = [0.1, 5.0] }

[local]
height = { value = 5.0, bounds = "positive" }
bkg = { values = { a = [0.5, 0.0], b = [1.5, 0.0] } }

[[stage]]
name = "background"
vary = ["bkg"]

[[stage]]
name = "all"
vary = ["*"]
"""


def _refine_files(folder):
    import numpy as np

    rng = np.random.default_rng(3)
    x = np.linspace(-5, 5, 120)
    for name, h, b in (("a", 8.0, 1.0), ("b", 4.0, 2.0)):
        y = h * np.exp(-0.5 * ((x - 0.3) / 1.1) ** 2) + b + 0.05 * x
        y = y + 0.1 * rng.standard_normal(x.size)
        rows = [f"{float(u)!r} {float(v)!r} 0.1" for u, v in zip(x, y)]
        (folder / f"{name}.dat").write_text("\n".join(rows))
    (folder / "run.toml").write_text(REFINE_RUN)
    return folder / "run.toml"


def test_run_commands_document_their_options(capsys):
    for command, verb in (("hmm", "fit"), ("refine", "run"), ("pinn", "solve")):
        try:
            main([command, verb, "--help"])
        except SystemExit as exc:
            assert exc.code == 0
        out = capsys.readouterr().out
        for option in ("--out", "--resume", "--quiet", "--check", "130"):
            assert option in out, (command, option)


def test_bad_run_file_exits_2_naming_file_line_and_key(tmp_path, capsys):
    path = _refine_files(tmp_path)
    path.write_text(REFINE_RUN.replace('file = "b.dat"', 'fiel = "b.dat"'))
    assert main(["refine", "run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f'error: {path}, line 9: [[dataset]] #2: missing required key "file"' in err
    assert 'line 11: unknown key [[dataset]] #2 fiel (did you mean "file"?)' in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_check_validates_the_run_file_and_data_without_fitting(tmp_path, capsys):
    path = _refine_files(tmp_path)
    assert main(["refine", "run", str(path), "--check"]) == 0
    assert f"{path}: ok" in capsys.readouterr().out
    assert not (tmp_path / "run").exists()
    (tmp_path / "b.dat").write_text("1 2 0.1\n2 nan 0.1\n")
    assert main(["refine", "run", str(path), "--check"]) == 2
    assert "line 11: [[dataset]] #2 file: dataset 'b': y is not finite at index 1" in \
        capsys.readouterr().err


def test_ctrl_c_in_refine_exits_130_and_resume_reaches_the_same_optimum(tmp_path, capsys,
                                                                        monkeypatch):
    from tiedsci.refine import runfile

    path = _refine_files(tmp_path)
    full = runfile.run_from_toml(path, tmp_path / "full")
    write = runfile._Checkpointer.__call__
    count = []

    def ctrl_c_after_fifth_checkpoint(self, state):
        write(self, state)
        count.append(state["stage"])
        if len(count) == 5:
            raise KeyboardInterrupt  # as if Ctrl-C came right after this accepted step

    monkeypatch.setattr(runfile._Checkpointer, "__call__", ctrl_c_after_fifth_checkpoint)
    out = tmp_path / "out"
    assert main(["refine", "run", str(path), "--out", str(out), "--quiet"]) == 130
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert f"outputs for the best state reached are in {out}" in captured.err
    assert "--resume" in captured.err
    assert json.loads((out / "result.json").read_text())["interrupted"] is True
    assert json.loads(captured.out)["interrupted"] is True
    assert (out / "fit.png").exists() and (out / "checkpoint.json").exists()

    monkeypatch.setattr(runfile._Checkpointer, "__call__", write)
    assert main(["refine", "run", str(path), "--out", str(out), "--quiet", "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["resumed"] and summary["converged"]
    assert summary["values"] == full["values"]


def test_corrupt_checkpoint_exits_2_naming_the_file(tmp_path, capsys):
    path = _refine_files(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "checkpoint.json").write_text('{"format": "tiedsci.refine.che')
    assert main(["refine", "run", str(path), "--out", str(tmp_path / "out"), "--resume"]) == 2
    err = capsys.readouterr().err
    assert f"checkpoint {tmp_path / 'out' / 'checkpoint.json'} is unreadable or truncated" in err


def test_sigint_stops_hmm_fit_cleanly_with_status_130(tmp_path):
    """A real SIGINT to the command: outputs for the last iteration, exit status 130."""
    import os
    import signal
    import time

    (tmp_path / "run.toml").write_text(
        '[data]\npath = "bundled:nile.csv"\ncolumns = ["volume"]\n\n'
        "[model]\nn_components = 3\nn_iter = 1000000\ntol = -1.0\nrandom_state = 0\n")
    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "tiedsci", "hmm", "fit",
                             str(tmp_path / "run.toml"), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 60
        while not (out / "checkpoint.npz").exists() and proc.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint after 60 s"
            time.sleep(0.02)
        time.sleep(0.2)  # a few more iterations
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr
    assert f"outputs for the best state reached are in {out}" in stderr
    assert "EM:" in stderr  # the progress bar
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] and summary["em_iterations"] >= 1
    assert json.loads(stdout)["em_iterations"] == summary["em_iterations"]
    assert (out / "model.json").exists() and (out / "checkpoint.npz").exists()


def test_device_cuda_without_cuda_is_a_one_line_error(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    for argv in (["pinn", "solve", "missing.toml", "--device", "cuda"],
                 ["hmm", "fit", "missing.toml", "--device", "cuda"],
                 ["demo", "--quick", "--device", "cuda"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "--device cuda" in err and "CUDA is not available" in err


def test_refine_run_reports_r_factors_in_percent_like_report_txt(tmp_path, capsys):
    import re

    path = _refine_files(tmp_path)
    assert main(["refine", "run", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    text = (tmp_path / "out" / "report.txt").read_text()
    rwp_txt = float(re.search(r"Rwp = ([0-9.]+) %", text).group(1))
    assert "rwp" not in summary and "rwp" not in summary["datasets"]["a"]
    assert summary["rwp_percent"] == pytest.approx(rwp_txt, abs=1e-3)
    assert 0.5 < summary["datasets"]["a"]["rwp_percent"] < 50  # a percentage, not a fraction


def test_input_error_found_during_the_fit_exits_2_at_its_key(tmp_path, capsys):
    """An error in the input found only when used (here by the estimator) is still a run-file
    error: status 2, with file, line and key."""
    run = tmp_path / "run.toml"
    run.write_text('[data]\npath = "bundled:nile.csv"\ncolumns = ["volume"]\n\n'
                   "[model]\nn_components = 2\nn_iter = 5\ntie_states = [[0, 5]]\n")
    assert main(["hmm", "fit", str(run), "--quiet", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"error: {run}, line 8: [model] tie_states:" in err and "state 5" in err
