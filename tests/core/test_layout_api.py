"""The public Layout surface the domains use: jacobian, transform_derivative, at_bounds,
masks, freeze, propagate_covariance, flatten, and pool_stats with symmetric copies and units.

Oracles are independent of the layout's internals: central differences of ``unpack``, group
sums written out by hand, free-parameter counts counted by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.core.test_layout_properties import SETTINGS, structures
from tiedsci.core import Interval, Positive, Registry, Simplex
from tiedsci.errors import DeclarationError, NotPoolableError, ShapeMismatchError

torch = pytest.importorskip("torch")


def _fd_jacobian(layout, theta, h=1e-6):
    out = np.zeros((layout.n_values, layout.n_free))
    for j in range(layout.n_free):
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        diff = layout.flatten(layout.unpack(tp)) - layout.flatten(layout.unpack(tm))
        out[:, j] = diff / (2 * h)
    return out


def _with_derived():
    reg = Registry()
    reg.declare("a", 2.0, bounds=(1.0, 3.0))
    reg.declare("b", np.array([0.5, 1.5, 2.5]), bounds=Positive())
    reg.declare("p", np.array([0.2, 0.3, 0.5]), bounds=Simplex())
    for k in range(4):
        reg.declare(f"d{k}.s", 1.0 + k)
        reg.declare(f"d{k}.z", 0.1 * k)
    reg.tie("d0.s", "d1.s")
    reg.affine("d2.z", "d3.z", scale=2.0, offset=0.5)
    reg.declare("c", 0.0)
    reg.derive("c", lambda a, b: a * b[0] + b[2] ** 2, deps=("a", "b"))
    return reg


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_jacobian_matches_differences_of_unpack(reg, seed):
    layout = reg.compile()
    theta = np.random.default_rng(seed).normal(size=layout.n_free)
    dv = layout.jacobian(theta)
    assert dv.shape == (layout.n_values, layout.n_free)
    np.testing.assert_allclose(dv.toarray(), _fd_jacobian(layout, theta), atol=2e-7)
    np.testing.assert_array_equal(layout.jacobian(theta, dense=True), dv.toarray())


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_compiling_the_same_structure_again_equals_a_fresh_compile(reg, seed):
    """The structure cache of build_layout: a registry of a structure compiled before, at
    other free values, compiles to what an uncached compilation gives."""
    from tiedsci.core.build import _build

    first = reg.compile()
    rng = np.random.default_rng(seed)
    moved = first.to_registry(first.unpack(first.theta0 + 0.3 * rng.standard_normal(first.n_free)))
    again, fresh = moved.compile(), _build(moved.copy())
    np.testing.assert_array_equal(again.theta0, fresh.theta0)
    for name in fresh.names:
        np.testing.assert_array_equal(again.values0[name], fresh.values0[name])
    assert again.describe() == fresh.describe()
    assert again.to_registry().compile().n_free == fresh.n_free


def test_jacobian_with_derived_relation_torch_and_fd_agree():
    layout = _with_derived().compile()
    theta = layout.theta0 + 0.1 * np.random.default_rng(0).standard_normal(layout.n_free)
    dv = layout.jacobian(theta).toarray()
    np.testing.assert_allclose(dv, _fd_jacobian(layout, theta), atol=1e-7)
    np.testing.assert_allclose(layout.jacobian(theta, method="fd").toarray(), dv, atol=1e-7)
    # colouring: the datasets' parameters share tangents
    from tiedsci.core.jacobian import JacobianPlan

    plan = JacobianPlan.build(layout)
    assert plan.mode == "torch" and plan.n_colors < layout.n_free
    with pytest.raises(ValueError, match="method"):
        layout.jacobian(theta, method="magic")


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_transform_derivative_is_the_free_rows_of_the_jacobian(reg, seed):
    layout = reg.compile()
    theta = np.random.default_rng(seed).normal(size=layout.n_free)
    t = layout.transform_derivative(theta).toarray()
    fd = _fd_jacobian(layout, theta)
    labels = [lab for n in layout.names for lab in _labels(layout, n)]
    rows = [labels.index(f) for f in layout.free_names]
    np.testing.assert_allclose(t, fd[rows], atol=2e-7)
    np.testing.assert_array_equal(layout.transform_diagonal(theta), np.diag(t))
    with pytest.raises(ShapeMismatchError, match="n_free"):
        layout.transform_diagonal(np.append(theta, 0.0))


def _labels(layout, name):
    shape = layout.shapes[name]
    if not shape:
        return [name]
    return [f"{name}[{','.join(str(i) for i in idx)}]" for idx in np.ndindex(*shape)]


def test_at_bounds_sides_by_hand():
    reg = Registry()
    reg.declare("lo", np.array([1.0, 1.0]), bounds=Positive())
    reg.declare("iv", np.array([0.5, 0.5, 0.5]), bounds=Interval(0.0, 1.0))
    reg.declare("free", 3.0)
    layout = reg.compile()
    theta = layout.theta0.copy()
    theta[0] = -40.0  # exp(-40) ~ 4e-18: at the lower bound 0
    theta[3] = 40.0  # logistic ~ 1: at the upper bound
    theta[4] = -40.0  # at the lower bound
    got = layout.at_bounds(theta)
    assert got.dtype == np.int8 and got.shape == (layout.n_free,)
    np.testing.assert_array_equal(got, [-1, 0, 0, 1, -1, 0])
    assert not layout.at_bounds(layout.theta0).any()


def test_unbounded_mask_and_has_derived_by_hand():
    reg = Registry()
    reg.declare("lo", np.array([1.0, 1.0]), bounds=Positive())
    free = reg.declare("free", np.array([3.0, 3.0]))
    reg.declare("p", np.array([0.2, 0.3, 0.5]), bounds=Simplex())
    reg.declare("iv", 0.5, bounds=Interval(0.0, 1.0))
    reg.tie(free[0], free[1])
    layout = reg.compile()
    # theta: lo (2, bounded), free (1, shared by the tie), p (2 simplex coordinates), iv (1)
    np.testing.assert_array_equal(layout.unbounded_mask(),
                                  [False, False, True, False, False, False])
    assert not layout.has_derived
    assert _with_derived().compile().has_derived


def test_fixed_and_free_masks():
    reg = Registry()
    reg.declare("m", np.arange(6.0).reshape(2, 3))
    reg.fix(reg["m"][0, 1])
    reg.declare("s", 1.0)
    reg.affine(reg["m"][1, 2], "s", scale=2.0)
    reg.tie(reg["m"][0, 0], reg["m"][1, 0])
    layout = reg.compile()
    np.testing.assert_array_equal(layout.fixed_mask("m"), [[0, 1, 0], [0, 0, 0]])
    np.testing.assert_array_equal(layout.free_mask("m"), [[1, 0, 1], [1, 1, 0]])
    assert layout.fixed_mask("s").shape == () and layout.free_mask("s")
    assert layout.size("m") == 6 and layout.flat_slice("s") == slice(6, 7)
    with pytest.raises(KeyError, match="did you mean 'm'"):
        layout.fixed_mask("mm")


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_flatten_unflatten_round_trip(reg, seed):
    layout = reg.compile()
    values = layout.unpack(np.random.default_rng(seed).normal(size=layout.n_free))
    flat = layout.flatten(values)
    assert flat.shape == (layout.n_values,)
    back = layout.unflatten(flat)
    for n in layout.names:
        np.testing.assert_array_equal(back[n], values[n])
    vt = layout.unpack(torch.as_tensor(layout.theta0))
    assert isinstance(layout.flatten(vt), torch.Tensor)


def _staged_registry():
    reg = Registry()
    reg.declare("a", np.array([1.0, 2.0, 3.0]))
    reg.declare("b", np.array([1.0, 2.0]), bounds=Positive())
    reg.declare("c", 0.5)
    reg.tie(reg["a"][0], reg["b"][0])  # a[0] ~ b[0]: one group
    reg.affine("c", reg["a"][2], scale=2.0)
    reg.declare("p", np.array([[0.2, 0.8], [0.6, 0.4]]), bounds=Simplex())
    return reg


def test_freeze_keeps_ties_and_counts_free_parameters_by_hand():
    layout = _staged_registry().compile()
    assert layout.n_free == 3 + 1 + 2  # a (3, a[0] shares b[0]), b[1], one per simplex row
    values = layout.unpack(layout.theta0 + 0.3)
    # select "b": b[0] is tied to a[0] so that group varies too; b[1] varies
    st = layout.freeze(["b"], values)
    assert st.n_free == 2
    # element selection: a[2] only (c follows it through the relation)
    st2 = layout.freeze([_staged_registry()["a"][2]], values)
    assert st2.n_free == 1 and st2.free_names == ("a[2]",)
    out = st2.unpack(st2.theta0 + 0.7)
    assert out["a"][0] == out["b"][0] == pytest.approx(values["a"][0], abs=0)
    assert out["c"] == pytest.approx(2.0 * out["a"][2], rel=1e-15)
    np.testing.assert_array_equal(out["p"], values["p"])
    # a simplex row is frozen whole; selecting p keeps k - 1 per row
    assert layout.freeze(["p"], values).n_free == 2
    # frozen elements hold the given values exactly, not values0
    assert st.unpack(st.theta0)["a"][1] == values["a"][1]
    assert layout.freeze([], None).n_free == 0


def test_propagate_covariance_is_j_c_jt():
    layout = _staged_registry().compile()
    rng = np.random.default_rng(1)
    theta = layout.theta0 + 0.2 * rng.standard_normal(layout.n_free)
    m = rng.standard_normal((layout.n_free, layout.n_free))
    cov = m @ m.T
    var, cov_free = layout.propagate_covariance(cov, theta)
    j = _fd_jacobian(layout, theta)
    full = j @ cov @ j.T
    np.testing.assert_allclose(layout.flatten(var), np.diag(full), rtol=1e-6, atol=1e-10)
    assert var["c"] == pytest.approx(4.0 * var["a"][2], rel=1e-12)
    assert var["a"][0] == var["b"][0]  # tied: one variance
    assert cov_free.shape == (layout.n_free, layout.n_free)
    nan_var, nan_cov = layout.propagate_covariance(None, theta)
    assert np.isnan(nan_var["a"]).all() and np.isnan(nan_cov).all()


def test_propagate_covariance_singular_marks_fixed_zero():
    reg = Registry()
    reg.declare("x", np.array([1.0, 2.0]))
    reg.fix(reg["x"][1])
    var, _ = reg.compile().propagate_covariance(None, np.zeros(1))
    assert np.isnan(var["x"][0]) and var["x"][1] == 0.0


# ---------------------------------------------------------------- pool_stats: copies and units
def _covariances(n_comp, d, tie_all):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((n_comp, d, d))
    reg = Registry()
    reg.declare("cov", a @ np.transpose(a, (0, 2, 1)) + d * np.eye(d))
    reg.symmetric("cov")
    if tie_all:
        reg.tie_groups("cov", [list(range(n_comp))], axis=0)
    return reg


@pytest.mark.parametrize("tie_all", [False, True])
def test_pool_stats_counts_symmetric_copies_once(tie_all):
    n_comp, d = 3, 3
    layout = _covariances(n_comp, d, tie_all).compile()
    assert layout.n_free == (1 if tie_all else n_comp) * d * (d + 1) // 2
    rng = np.random.default_rng(0)
    s = rng.standard_normal((n_comp, d, d))
    s = s + np.transpose(s, (0, 2, 1))  # symmetric statistics, as an M-step gives them
    pooled = layout.pool_stats({"cov": s})["cov"]
    want = s.sum(0, keepdims=True).repeat(n_comp, 0) if tie_all else s
    np.testing.assert_allclose(pooled, want, rtol=1e-14)


def test_symmetric_declaration_checks():
    reg = Registry()
    reg.declare("v", np.zeros((2, 3)))
    with pytest.raises(ShapeMismatchError, match="square"):
        reg.symmetric("v")
    with pytest.raises(DeclarationError, match="whole parameter"):
        reg.symmetric(reg["v"][0])
    reg.declare("m", np.array([[1.0, 2.0], [3.0, 4.0]]))
    reg.symmetric("m")
    np.testing.assert_array_equal(reg.value("m"), [[1.0, 2.0], [2.0, 4.0]])
    assert reg.compile().n_free == 3 + 6


def _means(tie):
    reg = Registry()
    reg.declare("mu", np.arange(12.0).reshape(4, 3))
    tie(reg)
    return reg.compile()


def test_pool_stats_units_sum_whole_tied_rows():
    layout = _means(lambda reg: reg.tie_groups("mu", [[0, 2, 3]]))
    stats = np.random.default_rng(0).standard_normal((4, 5))  # one 5-vector per row
    pooled = layout.pool_stats({"mu": stats}, unit_axes=1)["mu"]
    assert pooled.shape == (4, 5)
    total = stats[0] + stats[2] + stats[3]
    for r in (0, 2, 3):
        np.testing.assert_allclose(pooled[r], total, rtol=1e-14)
    np.testing.assert_array_equal(pooled[1], stats[1])


@pytest.mark.parametrize("tie", [
    lambda reg: reg.tie(reg["mu"][0, 0], reg["mu"][1, 0]),  # part of a row only
    lambda reg: reg.tie(reg["mu"][0, 0], reg["mu"][1, 1]),  # across positions
    lambda reg: reg.tie(reg["mu"][0, 0], reg["mu"][0, 1]),  # inside one row
])
def test_pool_stats_units_refuse_ties_that_split_a_row(tie):
    layout = _means(tie)
    with pytest.raises(NotPoolableError, match="whole units"):
        layout.pool_stats({"mu": np.ones((4, 2))}, unit_axes=1)
    layout.pool_stats({"mu": np.ones((4, 3, 2))})  # per element is always fine


def test_pool_stats_unit_shape_errors():
    layout = _means(lambda reg: None)
    with pytest.raises(ShapeMismatchError, match="last 1 axes"):
        layout.pool_stats({"mu": np.ones((3, 2))}, unit_axes=1)
    with pytest.raises(ShapeMismatchError, match="out of range"):
        layout.pool_stats({"mu": np.ones((4, 2))}, unit_axes=3)


def test_element_rows_are_the_describe_table():
    layout = _staged_registry().compile()
    rows = layout.element_rows(stderr={"c": 0.25})
    assert len(rows) == layout.n_values
    by_label = {r["label"]: r for r in rows}
    assert by_label["b[0]"]["status"] == "tied to a[0]"
    assert by_label["c"]["status"].startswith("= 2*a[2]") and by_label["c"]["stderr"] == 0.25
    assert np.isnan(by_label["a[1]"]["stderr"]) and by_label["b[1]"]["bounds"]
    text = layout.describe()
    for r in rows:
        assert r["label"] in text and r["status"] in text


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_freeze_everything_or_nothing(reg, seed):
    layout = reg.compile()
    values = layout.unpack(np.random.default_rng(seed).normal(size=layout.n_free))
    for vary, n_free in ((layout.names, layout.n_free), ((), 0)):
        st_ = layout.freeze(vary, values)
        assert st_.n_free == n_free
        got = st_.unpack(st_.theta0)
        for n in layout.names:  # the stage starts exactly where it was frozen
            np.testing.assert_allclose(got[n], values[n], rtol=1e-12, atol=1e-12)
