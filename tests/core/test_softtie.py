"""Soft ties: the registry declaration and the normal-normal math (partial pooling, spread)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tiedsci.core import Registry, SoftTie
from tiedsci.core.softtie import learn_spread, partial_pool, spread_loglik
from tiedsci.errors import ConflictError, DeclarationError, ShapeMismatchError


def test_soft_tie_declares_a_free_centre_at_the_members_mean():
    reg = Registry()
    a = reg.declare("zero.a", 1.0)
    b = reg.declare("zero.b", 3.0)
    c = reg.soft_tie([a, b], spread=0.5, centre="zero.centre")
    layout = reg.compile()
    assert layout.n_free == 3  # members stay free; the centre is one more
    assert layout.values0["zero.centre"] == pytest.approx(2.0)
    (tie,) = layout.soft_ties
    assert isinstance(tie, SoftTie) and tie.centre == c and tie.spread == 0.5
    assert not tie.learned and "zero.a" in tie.describe()


def test_soft_tie_of_array_selections_and_default_centre_name():
    reg = Registry()
    means = reg.declare("means", np.arange(6.0).reshape(3, 2))
    c = reg.soft_tie([means[0], means[2]])
    assert c.name == "soft0.centre" and c.shape == (2,)
    np.testing.assert_allclose(reg.value("soft0.centre"), [2.0, 3.0])
    layout = reg.compile()
    assert layout.soft_ties[0].learned
    assert layout.freeze(["means"], {}).soft_ties == layout.soft_ties


@pytest.mark.parametrize("spread", [-1.0, math.nan])
def test_bad_spread_is_named(spread):
    reg = Registry()
    reg.declare("a", 1.0)
    reg.declare("b", 2.0)
    with pytest.raises(DeclarationError, match="spread of a"):
        reg.soft_tie(["a", "b"], spread)


def test_bad_members_are_named():
    reg = Registry()
    reg.declare("a", 1.0)
    reg.declare("v", [1.0, 2.0])
    reg.declare("f", 1.0, fixed=True)
    with pytest.raises(ShapeMismatchError, match="v"):
        reg.soft_tie(["a", "v"])
    with pytest.raises(ConflictError, match="f is fixed"):
        reg.soft_tie(["a", "f"])
    with pytest.raises(DeclarationError, match="twice"):
        reg.soft_tie(["a", "a"])
    with pytest.raises(DeclarationError, match="two or more"):
        reg.soft_tie(["a"])
    with pytest.raises(DeclarationError, match="sequence"):
        reg.soft_tie("a")
    assert "soft0.centre" not in reg  # failed declarations leave nothing behind


def test_partial_pool_limits_are_exact():
    xbar = np.array([[1.0, -2.0], [3.0, 0.5], [2.5, 4.0]])
    s2 = np.array([[0.5, 1.0], [0.1, 2.0], [1.5, 0.2]])
    hard = partial_pool(xbar, s2, 0.0)
    pooled = (xbar / s2).sum(0) / (1 / s2).sum(0)  # precision-weighted mean, by hand
    np.testing.assert_array_equal(hard.shrinkage, 1.0)
    np.testing.assert_allclose(hard.mean, np.broadcast_to(pooled, xbar.shape), rtol=1e-15)
    untied = partial_pool(xbar, s2, math.inf)
    np.testing.assert_array_equal(untied.mean, xbar)
    np.testing.assert_allclose(untied.centre, xbar.mean(0))


def test_partial_pool_against_a_hand_computation():
    xbar = np.array([0.0, 2.0, 7.0])
    s2 = np.array([1.0, 1.0, 3.0])
    tau2 = 2.0
    w = 1 / (s2 + tau2)  # 1/3, 1/3, 1/5
    c = (w * xbar).sum() / w.sum()  # (2/3 + 7/5) / (2/3 + 1/5) = 31/13
    assert c == pytest.approx(31 / 13)
    res = partial_pool(xbar, s2, tau2)
    b = s2 / (s2 + tau2)
    np.testing.assert_allclose(res.mean, (1 - b) * xbar + b * 31 / 13, rtol=1e-14)


def test_member_without_data_takes_the_centre():
    res = partial_pool(np.array([1.0, 3.0, 100.0]), np.array([1.0, 1.0, np.inf]), 0.5)
    assert res.centre == pytest.approx(2.0)
    assert res.mean[2] == pytest.approx(2.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=3, max_size=8), st.floats(0.05, 5.0))
def test_learned_spread_matches_the_equal_variance_closed_form(values, s2):
    xbar = np.asarray(values)
    dx = float(np.mean((xbar - xbar.mean()) ** 2))
    expected = max(0.0, dx - s2)  # type-II ML with equal sampling variances
    got = learn_spread(xbar, s2)
    if expected < 1e-6 * s2:
        assert got <= 1e-4 * s2 + 1e-4 * expected
    else:
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-9 * s2)


@pytest.mark.parametrize("ratio", [1.2, 2.0, 3.0, 5.0])
def test_learned_spread_does_not_collapse_between_s2_and_4_s2(ratio):
    # the joint-mode (plug-in) update collapses to 0 for Dx < 4 s2; type-II must not
    xbar = np.array([-1.0, 1.0, -1.0, 1.0]) * math.sqrt(ratio)
    assert learn_spread(xbar, 1.0) == pytest.approx(ratio - 1.0, rel=1e-4)


def test_learned_spread_is_zero_when_members_agree_and_maximises_the_profile():
    assert learn_spread(np.array([1.0, 1.1, 0.9]), 1.0) == 0.0
    xbar = np.array([[0.0, 1.0], [3.0, -1.0], [1.0, 4.0]])
    s2 = np.array([[0.3, 0.5], [1.0, 0.2], [0.4, 0.6]])
    best = learn_spread(xbar, s2)
    for t in (0.5 * best, 0.9 * best, 1.1 * best, 2 * best):
        assert spread_loglik(xbar, s2, best) >= spread_loglik(xbar, s2, t)


def test_bad_statistics_are_named():
    with pytest.raises(ValueError, match="two or more"):
        partial_pool(np.array([1.0]), 1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        partial_pool(np.array([1.0, np.nan]), 1.0, 1.0)
    with pytest.raises(ValueError, match="> 0"):
        partial_pool(np.array([1.0, 2.0]), np.array([1.0, 0.0]), 1.0)
    with pytest.raises(ValueError, match="squared spread"):
        partial_pool(np.array([1.0, 2.0]), 1.0, -1.0)
