"""The one save convention: JSON + npz + torch weights, exact, atomic, checked."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiedsci.errors import DataError
from tiedsci.persist import bundle_stem, read_bundle, write_bundle


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=True, width=64), min_size=1, max_size=8))
def test_floats_and_arrays_round_trip_exactly(tmp_path_factory, xs):
    path = tmp_path_factory.mktemp("b") / "model"
    arr = np.asarray(xs, dtype=float)
    write_bundle(path, "t/1", {"xs": xs, "first": np.float64(xs[0])}, arrays={"a": arr})
    b = read_bundle(path, "t/1")
    assert b.meta["xs"] == xs and b.meta["first"] == xs[0]
    assert b.arrays["a"].tobytes() == arr.tobytes()


def test_weights_are_read_weights_only(tmp_path):
    torch = pytest.importorskip("torch")
    w = {"layer.weight": torch.randn(3, 2, dtype=torch.float64)}
    write_bundle(tmp_path / "net", "t/1", {}, weights={"net": w})
    b = read_bundle(tmp_path / "net.pt", "t/1")
    assert torch.equal(b.weights["net"]["layer.weight"], w["layer.weight"])


def test_stem_suffixes_and_stale_siblings(tmp_path):
    assert bundle_stem(tmp_path / "m.npz") == tmp_path / "m"
    write_bundle(tmp_path / "m", "t/1", {"a": 1}, arrays={"x": np.ones(2)})
    write_bundle(tmp_path / "m", "t/1", {"a": 2})  # no arrays now: the old npz must go
    assert not (tmp_path / "m.npz").exists()
    assert read_bundle(tmp_path / "m", "t/1").arrays == {}


def test_foreign_damaged_and_mismatched_files_are_named(tmp_path):
    p = tmp_path / "m"
    write_bundle(p, "t/1", {"a": 1}, arrays={"x": np.arange(3.0)})
    with pytest.raises(DataError, match="format 't/1'; expected 'u/1'"):
        read_bundle(p, "u/1")
    npz = tmp_path / "m.npz"
    npz.write_bytes(npz.read_bytes()[:20])
    with pytest.raises(DataError, match="m.npz.*checksum differs"):
        read_bundle(p, "t/1")
    npz.unlink()
    with pytest.raises(DataError, match="m.npz' is missing"):
        read_bundle(p, "t/1")
    (tmp_path / "m.json").write_text('{"format": "t/1", ')
    with pytest.raises(DataError, match="not valid json"):
        read_bundle(p, "t/1")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        read_bundle(tmp_path / "nothing", "t/1")


def test_failed_write_keeps_the_previous_bundle(tmp_path):
    p = tmp_path / "m"
    write_bundle(p, "t/1", {"a": 1}, arrays={"x": np.ones(2)})
    with pytest.raises(TypeError, match="cannot write a object"):
        write_bundle(p, "t/1", {"a": object()}, arrays={"x": np.zeros(2)})
    b = read_bundle(p, "t/1")
    assert b.meta["a"] == 1 and np.array_equal(b.arrays["x"], np.ones(2))
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.json", "m.npz"]
    assert json.loads((tmp_path / "m.json").read_text())["format"] == "t/1"
