"""A relation that replaces a differently declared value says so, naming both values."""

from __future__ import annotations

import warnings

import pytest

from tiedsci import Registry
from tiedsci.errors import RelationOverrideWarning


def test_affine_overriding_a_declared_value_warns_with_both_values():
    reg = Registry()
    a = reg.declare("structure.a", 8.48)
    b = reg.declare("structure.b", 5.40)
    with pytest.warns(RelationOverrideWarning) as rec:
        reg.affine(b, a, scale=0.6366)
    text = str(rec[0].message)
    assert "structure.b" in text and "5.4" in text and f"{0.6366 * 8.48:.10g}" in text
    assert reg.compile().values0["structure.b"] == pytest.approx(0.6366 * 8.48)


@pytest.mark.parametrize("declared", [0.0, 0.6366 * 8.48])
def test_placeholder_or_consistent_value_is_replaced_silently(declared):
    reg = Registry()
    a = reg.declare("a", 8.48)
    b = reg.declare("b", declared)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg.affine(b, a, scale=0.6366)
