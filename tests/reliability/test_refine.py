"""Joint refinement under bad input, singular models and failed writes.

Complements ``tests/refine`` (NaN/sigma/shape errors of ``Dataset``, NaN model output, the
singular-matrix diagnosis, the exact save/load round trip of a regular fit): here the remaining
entry points (fit options, models that return garbage or become singular during the fit, a
registry without parameters), exact round trips of irregular results (NaN esds, stages, bound
hits) and the reader of saved results.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest

from tests.refine.conftest import assert_identical_results
from tests.reliability.conftest import raises_naming
from tiedsci.core import Positive
from tiedsci.errors import DataError, DeclarationError, ModelError
from tiedsci.refine import Dataset, JointRefinement, load


def _gauss(v, x):
    xp = __import__("torch") if hasattr(x, "detach") else np
    return v["amp"] * xp.exp(-0.5 * ((x - v["center"]) / v["width"]) ** 2) + v["bkg"]


def _data(seed=0, n=80):
    rng = np.random.default_rng(seed)
    x = np.linspace(-4, 4, n)
    out = []
    for k, (amp, width) in enumerate([(8.0, 1.0), (5.0, 1.4)]):
        y = amp * np.exp(-0.5 * ((x - 0.2) / width) ** 2) + 1.0
        out.append(Dataset(x, y + 0.1 * rng.standard_normal(n), sigma=np.full(n, 0.1),
                           name=f"d{k}"))
    return out


def _jr(model=_gauss, width=1.2):
    jr = JointRefinement()
    for ds in _data():
        jr.add(ds, model)
    jr.shared("center", 0.0)
    jr.local("amp", 6.0, bounds=Positive())
    jr.local("width", width)
    jr.local("bkg", 0.5)
    return jr


@pytest.mark.parametrize("arg,value", [("x", np.linspace(0, 1, 5) * (1 + 1j)),
                                       ("y", np.ones(5) + 0j), ("sigma", np.ones(5) * 1j)])
def test_complex_data_is_rejected_not_silently_truncated(arg, value):
    kw = {"x": np.linspace(0, 1, 5), "y": np.ones(5), "sigma": np.ones(5), arg: value}
    with raises_naming(DataError, "'data'", arg, "complex"):
        Dataset(**kw)


@pytest.mark.parametrize("kw,needle", [({"ftol": math.nan}, "ftol"), ({"xtol": -1.0}, "xtol"),
                                       ({"gtol": "tiny"}, "gtol"), ({"max_nfev": 0}, "max_nfev"),
                                       ({"max_nfev": -5}, "max_nfev"),
                                       ({"max_nfev": 2.5}, "max_nfev")])
def test_fit_options_are_checked(kw, needle):
    with raises_naming(ValueError, needle):
        _jr().fit(**kw)


def test_stage_with_an_unknown_option_names_it():
    with raises_naming(TypeError, "nme"):
        _jr().fit(stages=[{"nme": "bkg", "vary": ["bkg"]}])


def test_no_parameter_declared():
    jr = JointRefinement()
    jr.add(_data()[0], _gauss)
    with raises_naming(DeclarationError, "no parameter is declared"):
        jr.fit()


@pytest.mark.parametrize("model,needles", [
    (lambda v, x: "a string", ("'d0'", "str")),
    (lambda v, x: [[1.0, 2.0], [3.0]], ("'d0'",)),
    (lambda v, x: None, ("'d0'",)),
], ids=["string", "ragged", "none"])
def test_models_returning_garbage_are_model_errors(model, needles):
    jr = JointRefinement()
    jr.add(_data()[0], model, jac="fd")
    jr.shared("amp", 1.0)
    with raises_naming(ModelError, *needles):
        jr.fit()


def test_a_singular_derivative_is_named_not_turned_into_nan():
    jr = _jr()
    jr.registry.set_value("d1.width", 0.0)  # the model is 0/0 for its derivatives
    with raises_naming(ModelError, "'d1'", "derivative", "not finite", "d1.width = 0.0"):
        jr.fit()


def test_a_model_undefined_beyond_a_bound_is_stopped_with_a_named_error():
    """NaN beyond width 1.35 while the data want 1.4: LM rejects the NaN trial steps, and when
    the Jacobian at the edge is no longer finite the fit stops naming dataset and parameter
    (instead of solving normal equations full of NaN)."""
    def guarded(v, x):
        y = _gauss(v, x)
        return y if float(v["width"]) < 1.35 else y * math.nan

    jr = JointRefinement()
    jr.add(_data()[1], guarded, jac="fd")
    jr.shared("center", 0.0)
    jr.shared("amp", 5.0)
    jr.shared("width", 1.0)
    jr.shared("bkg", 1.0)
    with raises_naming(ModelError, "'d1'", "with respect to width", "not finite"):
        jr.fit()


# ---------------------------------------------------------------------- result files
def _irregular_result():
    """A staged fit with a parameter at its bound and a singular matrix (NaN esds)."""
    jr = _jr()
    jr.registry.declare("dead", 1.0)  # read by nobody: singular normal matrix
    jr.registry.set_value("d0.bkg", 1.5)
    jr.registry.bound("d0.bkg", (1.05, 2.0))  # the data want 1.0
    with pytest.warns(RuntimeWarning):
        return jr.fit(stages=[{"name": "bkg", "vary": ["d0.bkg", "d1.bkg"]},
                              {"name": "all", "vary": ["*"]}], on_singular="warn")


def test_irregular_results_round_trip_bit_exactly(tmp_path):
    res = _irregular_result()
    assert res.singular and res.stages and res.at_bounds and np.isnan(res.esd["dead"]).all()
    res.save(tmp_path / "r.json")
    back = load(tmp_path / "r.json")
    assert_identical_results(res, back)
    again = load(back.save(tmp_path / "again"))
    assert_identical_results(res, again)
    meta = [json.loads(p.read_text()) for p in (tmp_path / "r.json", tmp_path / "again.json")]
    for m in meta:
        m.pop("files")
    assert meta[0] == meta[1]


@pytest.fixture
def saved_result(tmp_path):
    res = _jr().fit()
    path = tmp_path / "r.json"
    res.save(path)
    return res, path


@pytest.mark.parametrize("corrupt,needle", [
    (lambda p: p.write_text(p.read_text()[: len(p.read_text()) // 2]), "not valid json"),
    (lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff"), "not valid json"),
    (lambda p: p.write_text("{}"), "has format None"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "free_names": 5})),
     "not a complete"),
    (lambda p: p.write_text("[1, 2]"), "has format 'list'"),
    (lambda p: p.with_suffix(".npz").write_bytes(b"PK\x03\x04"), "checksum differs"),
], ids=["truncated", "binary", "empty", "bad-field", "list", "npz"])
def test_corrupt_result_files_are_data_errors_naming_the_file(saved_result, corrupt, needle):
    _, path = saved_result
    corrupt(path)
    with raises_naming(DataError, "r.", needle):
        load(path)


def test_missing_result_file(tmp_path):
    with raises_naming(FileNotFoundError, "nope.json"):
        load(tmp_path / "nope.json")


def test_result_writes_are_atomic(saved_result, tmp_path, monkeypatch):
    res, path = saved_result
    before = path.read_bytes(), path.with_suffix(".npz").read_bytes()
    inode = os.stat(path).st_ino
    other = _jr(width=1.0).fit(max_nfev=3)
    monkeypatch.setattr("os.fsync", _fail)  # the temporary file is written, then "crash"
    with pytest.raises(OSError, match="simulated"):
        other.save(path)
    monkeypatch.undo()
    assert (path.read_bytes(), path.with_suffix(".npz").read_bytes()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.npz"]  # no temporary
    other.save(path)  # a successful write replaces the file (a new inode: renamed)
    assert os.stat(path).st_ino != inode
    assert load(path).nfev == other.nfev


def _fail(*args, **kwargs):
    raise OSError("disk full (simulated)")
