"""`tiedsci refine run run.toml` back end, and the example's run()."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tiedsci.errors import CheckpointError, DataError, RunFileError
from tiedsci.refine import Dataset, JointRefinement, load
from tiedsci.refine.lm import INTERRUPTED, levenberg_marquardt
from tiedsci.refine.models import gaussian_peaks
from tiedsci.refine.runfile import load_columns, load_table, run_from_toml
from tiedsci.refine.solver import SerialBlocks, partition_blocks

RUN = """
[model]
builtin = "gaussian_peaks"

[[dataset]]
name = "a"
file = "a.dat"

[[dataset]]
name = "b"
file = "b.csv"
limits = [-4.0, 4.0]

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


def _write_data(tmp_path, rng):
    x = np.linspace(-5, 5, 150)
    out = {}
    for name, h, b, sep in (("a", 8.0, 1.0, " "), ("b", 4.0, 2.0, ", ")):
        y = h * np.exp(-0.5 * ((x - 0.3) / 1.1) ** 2) + b + 0.05 * x
        s = np.full_like(x, 0.1)
        y = y + s * rng.standard_normal(x.size)
        lines = ["# x y sigma"] + [sep.join(repr(float(v)) for v in row) for row in zip(x, y, s)]
        (tmp_path / ("a.dat" if name == "a" else "b.csv")).write_text("\n".join(lines))
        out[name] = (x, y, s)
    return out


def test_run_from_toml_matches_the_python_api(tmp_path):
    data = _write_data(tmp_path, np.random.default_rng(0))
    (tmp_path / "run.toml").write_text(RUN)
    summary = run_from_toml(tmp_path / "run.toml", tmp_path / "out")
    for f in summary["files"]:
        assert Path(f).exists()
    assert summary["stages"] == ["background", "all"]
    json.dumps(summary)

    jr = JointRefinement()
    jr.add(Dataset(*data["a"][:2], sigma=data["a"][2], name="a"), gaussian_peaks)
    jr.add(Dataset(*data["b"][:2], sigma=data["b"][2], limits=(-4, 4), name="b"),
           gaussian_peaks)
    jr.shared("center", 0.1)
    jr.shared("width", 0.9, bounds=(0.1, 5.0))
    jr.local("height", 5.0, bounds=(0, None))
    jr.local("bkg", {"a": [0.5, 0.0], "b": [1.5, 0.0]})
    ref = jr.fit()
    for name, val in ref.values.items():
        np.testing.assert_allclose(summary["values"][name], val, rtol=1e-6)
    assert summary["n_obs"] == 150 + int(np.sum(np.abs(data["b"][0]) <= 4))


def test_bad_files_are_reported(tmp_path):
    (tmp_path / "bad.dat").write_text("1 2\n3 x\n")
    with pytest.raises(DataError, match="line 2 is not numeric"):
        load_columns(tmp_path / "bad.dat")
    (tmp_path / "run.toml").write_text('[model]\nbuiltin = "nope"\n')
    with pytest.raises(RunFileError, match=r'run.toml, line 2: \[model\] builtin: expected one '
                                           r'of "gaussian_peaks"'):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


@pytest.mark.parametrize("old, new, match", [
    ('file = "b.csv"', 'file = "c.csv"', r"line 11: \[\[dataset\]\] #2 file: no such file"),
    ("a = [0.5, 0.0]", "c = [0.5, 0.0]",
     r"line 20: \[local.bkg.values\] c: unknown dataset 'c'"),
    ('vary = ["bkg"]', 'vary = ["bgk"]', r"line 24: \[\[stage\]\] #1 vary: stage entry 'bgk'"),
    ("center = 0.1", 'center = 0.1\nwidth = 2.0',
     r"line 17, column \d+: invalid TOML: Cannot overwrite a value"),
    ('name = "b"', 'name = "a"', r"line 10: \[\[dataset\]\] #2 name: 'a' is already the name"),
    ('name = "b"', 'name = "b-2"', r"line 10: \[\[dataset\]\] #2 name: \"b-2\" is not an "
                                   r"identifier"),
    ("[shared]", 'fixed = ["a.bkg"]\n[shared]',
     r"line 14: unknown key \[\[dataset\]\] #2 fixed \(a top-level key: write it before the "
     r"first \[table\] header\)"),
])
def test_run_file_errors_name_the_key_and_line(tmp_path, old, new, match):
    _write_data(tmp_path, np.random.default_rng(0))
    assert old in RUN
    (tmp_path / "run.toml").write_text(RUN.replace(old, new, 1))
    with pytest.raises(RunFileError, match=match):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


def test_non_positive_sigma_is_reported_at_the_dataset(tmp_path):
    _write_data(tmp_path, np.random.default_rng(0))
    rows = (tmp_path / "a.dat").read_text().splitlines()
    rows[5] = " ".join(rows[5].split()[:2] + ["0.0"])
    (tmp_path / "a.dat").write_text("\n".join(rows))
    (tmp_path / "run.toml").write_text(RUN)
    with pytest.raises(RunFileError, match=r"line 7: \[\[dataset\]\] #1 file: .*sigma.* index "
                                           r"4"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out")


def test_lm_continues_exactly_from_an_accepted_state():
    t = np.linspace(0, 1, 20)
    ys = [b * np.exp(0.7 * t) + 0.01 * np.sin(7 * t * (k + 1)) for k, b in enumerate((1, 2, 3))]
    part = partition_blocks([np.array([0, k + 1]) for k in range(3)], 4)

    def fun(theta):
        return [theta[k + 1] * np.exp(theta[0] * t) - ys[k] for k in range(3)]

    def jac(theta):
        e = np.exp(theta[0] * t)
        return [np.stack([theta[k + 1] * t * e, e], axis=1) for k in range(3)]

    x0 = np.array([-1.0, 0.2, 0.2, 0.2])
    full = levenberg_marquardt(SerialBlocks(fun, jac, part), x0)
    states = []

    def stop(n_iter, cost):
        if n_iter == 3:
            raise KeyboardInterrupt

    cut = levenberg_marquardt(SerialBlocks(fun, jac, part), x0, on_accept=states.append,
                              callback=stop)
    assert cut.message == INTERRUPTED and not cut.converged and cut.n_iter == 3
    np.testing.assert_array_equal(cut.theta, states[-1].theta)
    rest = levenberg_marquardt(SerialBlocks(fun, jac, part), x0 * 0, start=states[-1])
    np.testing.assert_array_equal(rest.theta, full.theta)
    assert (rest.nfev, rest.njev, rest.n_iter, rest.message) == (full.nfev, full.njev,
                                                                 full.n_iter, full.message)


def test_ctrl_c_keeps_the_last_accepted_point_and_resume_ends_at_the_same_optimum(tmp_path):
    _write_data(tmp_path, np.random.default_rng(0))
    (tmp_path / "run.toml").write_text(RUN)
    full = run_from_toml(tmp_path / "run.toml", tmp_path / "full")
    chi2, firsts = [], []

    def stop(n_iter, value):
        chi2.append(value)
        firsts.append(n_iter == 1)
        if sum(firsts) == 2:  # the first step of the second stage (n_iter restarts per stage)
            raise KeyboardInterrupt

    part = run_from_toml(tmp_path / "run.toml", tmp_path / "out", callback=stop)
    assert part["interrupted"] and part["message"] == "interrupted"
    assert part["stages"] == ["background", "all"]
    assert part["chi2"] == pytest.approx(chi2[-1], rel=1e-9)  # the point of the last step
    saved = json.loads((tmp_path / "out" / "result.json").read_text())
    assert saved["interrupted"] is True
    assert load(tmp_path / "out" / "result.json").message == "interrupted"
    assert all(Path(f).exists() for f in part["files"])
    ckpt = json.loads((tmp_path / "out" / "checkpoint.json").read_text())
    assert ckpt["state"]["stage"] == 1 and ckpt["state"]["lm"]["n_iter"] == 1
    assert {"mu", "cost"} <= set(ckpt["state"]["lm"])
    with np.load(tmp_path / "out" / "checkpoint.npz") as arrays:
        assert {"lm/theta", "lm/scale"} <= set(arrays.files)
    assert not list((tmp_path / "out").glob("*.tmp"))

    done = run_from_toml(tmp_path / "run.toml", tmp_path / "out", resume=True)
    assert done["resumed"] and not done["interrupted"] and done["converged"]
    assert done["values"] == full["values"] and done["esd"] == full["esd"]
    assert done["chi2"] == full["chi2"]
    assert not (tmp_path / "out" / "checkpoint.json").exists()
    assert not (tmp_path / "out" / "checkpoint.npz").exists()


def test_corrupt_or_foreign_checkpoint_is_a_clear_error(tmp_path):
    _write_data(tmp_path, np.random.default_rng(0))
    (tmp_path / "run.toml").write_text(RUN)

    def stop(n_iter, value):
        raise KeyboardInterrupt

    run_from_toml(tmp_path / "run.toml", tmp_path / "out", callback=stop)
    ckpt = tmp_path / "out" / "checkpoint.json"
    text = ckpt.read_text()
    ckpt.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match=f"checkpoint {ckpt} is unreadable or truncated"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out", resume=True)
    ckpt.write_text(text)
    (tmp_path / "run.toml").write_text(RUN.replace("center = 0.1", "center = 0.2"))
    with pytest.raises(CheckpointError, match="written for a different refinement"):
        run_from_toml(tmp_path / "run.toml", tmp_path / "out", resume=True)


def test_example_runs_quickly(tmp_path):
    path = Path(__file__).resolve().parents[2] / "examples" / "joint_synthetic.py"
    spec = importlib.util.spec_from_file_location("joint_synthetic_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.run(tmp_path, quick=True)
    assert summary["converged"]
    assert summary["n_free"] == 3 + 20 + 3 * 8 - 1
    # the recovered cell is within 4 esd of the truth
    assert max(abs(e) for e in summary["cell_error_in_esd"]) < 4
    assert (tmp_path / "fit.png").exists()


def test_csv_with_a_header_row_and_named_columns(tmp_path):
    from tiedsci.cli import main

    rng = np.random.default_rng(0)
    x = np.linspace(-5, 5, 80)
    for name, h in (("a", 6.0), ("b", 3.0)):
        y = h * np.exp(-0.5 * ((x - 0.2) / 1.0) ** 2) + 1.0 + 0.05 * rng.standard_normal(x.size)
        rows = [f"0.05,{float(u)!r},{float(v)!r}" for u, v in zip(x, y)]
        (tmp_path / f"{name}.csv").write_text("sigma,two_theta,counts\n" + "\n".join(rows))
    table, header = load_table(tmp_path / "a.csv")
    assert header == ["sigma", "two_theta", "counts"] and table.shape == (80, 3)
    run = tmp_path / "run.toml"
    datasets = "".join(f'[[dataset]]\nname = "{n}"\nfile = "{n}.csv"\n'
                       'columns = ["two_theta", "counts", "sigma"]\n\n' for n in "ab")
    run.write_text('[model]\nbuiltin = "gaussian_peaks"\n\n' + datasets +
                   "[shared]\ncenter = 0.0\nwidth = 1.2\n\n[local]\nheight = 4.0\n"
                   "bkg = [0.5, 0.0]\n")
    assert main(["refine", "run", str(run), "--quiet", "--out", str(tmp_path / "out")]) == 0
    fitted = load(tmp_path / "out" / "result")
    assert abs(float(fitted.values["center"]) - 0.2) < 0.05
    run.write_text(run.read_text().replace('"sigma"]', '"sd"]', 1))
    assert main(["refine", "run", str(run), "--check"]) == 2
