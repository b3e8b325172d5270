"""Bad declarations fail at the call that makes them, naming the parameters involved."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tiedsci.core import Interval, Registry, Simplex
from tiedsci.errors import (
    ConflictError,
    CycleError,
    DeclarationError,
    NotPoolableError,
    PackingError,
    ShapeMismatchError,
    UnknownParameterError,
)


@pytest.fixture
def reg():
    r = Registry()
    r.declare("structure.a", 8.48, bounds=(8.0, 9.0))
    r.declare("means", np.zeros((4, 2)))
    r.declare("xray.scale", 1.0)
    return r


def test_unknown_name_suggests_the_closest(reg):
    with pytest.raises(UnknownParameterError, match=r"'structure\.b'.*did you mean 'structure\.a'"):
        reg.tie("structure.a", "structure.b")
    with pytest.raises(KeyError):  # also a builtin KeyError
        reg["mean"]


def test_shape_mismatch_in_a_tie_names_both(reg):
    reg.declare("other", np.zeros(3))
    with pytest.raises(ShapeMismatchError, match=r"other.*\(3,\).*means\[0\].*\(2,\)"):
        reg.tie(reg["means"][0], "other")


def test_tying_fixed_to_free_with_different_values(reg):
    reg.declare("fixed_a", 7.0, fixed=True)
    with pytest.raises(ConflictError, match=r"xray\.scale.*fixed_a.*fixed.*differ"):
        reg.tie("fixed_a", "xray.scale")
    reg.declare("same", 7.0)
    reg.tie("fixed_a", "same")  # equal values: allowed, and the group is fixed
    assert "same" not in " ".join(reg.compile().free_names)


def test_linear_cycle_is_rejected(reg):
    reg.declare("p", 1.0)
    reg.declare("q", 1.0)
    reg.affine("q", "p", scale=2.0)
    with pytest.raises(CycleError, match="p"):
        reg.affine("p", "q", scale=0.5)


def test_derived_cycle_is_rejected(reg):
    reg.declare("u", 1.0)
    reg.declare("v", 1.0)
    reg.derive("u", lambda v: v + 1, deps=["v"])
    with pytest.raises(CycleError, match="v"):
        reg.derive("v", lambda u: u * 2, deps=["u"])
    # the failed declaration left nothing behind
    assert reg.compile().n_free == 1 + 8 + 1 + 1  # a, means, scale, v (u derived)


def test_redefinition_is_rejected(reg):
    with pytest.raises(DeclarationError, match="'means' is already declared"):
        reg.declare("means", 1.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf, [1.0, -math.inf]])
def test_non_finite_initial_values(bad):
    with pytest.raises(DeclarationError, match="'w'.*not finite"):
        Registry().declare("w", bad)


def test_bounds_that_exclude_the_initial_value():
    with pytest.raises(DeclarationError, match=r"\[0, 1\].*'?f'?.*exclude.*2"):
        Registry().declare("f", 2.0, bounds=Interval(0.0, 1.0))
    with pytest.raises(ValueError, match="below"):
        Interval(1.0, 0.0)


def test_tie_group_naming_a_missing_index(reg):
    with pytest.raises(DeclarationError, match=r"index 5.*means.*4 entries"):
        reg.tie_groups("means", [[0, 5]])


def test_simplex_rows_must_be_probabilities():
    with pytest.raises(DeclarationError, match="'t' is not a probability vector"):
        Registry().declare("t", np.array([[0.5, 0.6], [0.5, 0.5]]), bounds=Simplex())


def test_invalid_names_and_relating_a_tied_element(reg):
    with pytest.raises(DeclarationError, match="invalid parameter name"):
        reg.declare("9lives", 1.0)
    reg.tie(reg["means"][0], reg["means"][1])
    with pytest.raises(ConflictError, match=r"means\[1,0\] is already tied"):
        reg.affine(reg["means"][1], reg["means"][2])


def test_pack_refuses_disagreeing_tied_members(reg):
    reg.tie_groups("means", [[0, 1]])
    layout = reg.compile()
    values = layout.values0
    values["means"][1, 0] = 3.0
    with pytest.raises(PackingError, match=r"means\[0,0\].*means\[1,0\].*share"):
        layout.pack(values)


def test_pack_refuses_broken_linear_relation_and_bounds(reg):
    reg.declare("b", 0.0)
    reg.affine("b", "structure.a", scale=2.0)
    layout = reg.compile()
    with pytest.raises(PackingError, match="'?b'? = 1.0 breaks"):
        layout.pack({"b": 1.0})
    with pytest.raises(PackingError, match=r"structure\.a.*outside.*\[8, 9\]"):
        layout.pack({"structure.a": 10.0})


def test_pool_stats_refuses_scaled_members_and_partial_groups(reg):
    reg.declare("c", np.zeros(2))
    reg.affine("c", reg["means"][0], scale=2.0)
    reg.declare("shared_mean", np.zeros(2))
    reg.tie("shared_mean", reg["means"][3])
    layout = reg.compile()
    with pytest.raises(NotPoolableError, match=r"c\[0\].*scaled or derived"):
        layout.pool_stats({"c": np.ones((2, 1))})
    with pytest.raises(NotPoolableError, match="shared_mean.*missing"):
        layout.pool_stats({"means": np.ones((4, 2, 1))})
    pooled = layout.pool_stats({"means": np.ones((4, 2, 1)), "shared_mean": np.ones((2, 1))})
    assert pooled["means"][3, 0, 0] == 2.0 and pooled["shared_mean"][1, 0] == 2.0


def test_unpack_wrong_length_theta(reg):
    layout = reg.compile()
    with pytest.raises(ShapeMismatchError, match=r"expected \(10,\)"):
        layout.unpack(np.zeros(3))
