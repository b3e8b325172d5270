"""Derived parameters, restraints, the table, and lmfit interop."""

from __future__ import annotations

import subprocess
import sys

import lmfit
import numpy as np
import pytest
import torch

from tiedsci.core import Registry


def _chain_registry(with_jac: bool) -> Registry:
    reg = Registry()
    reg.declare("a", 1.3)
    reg.declare("b", np.array([0.5, -0.2]))
    reg.declare("c", np.zeros(2))
    reg.declare("d", 0.0)
    # d c / d a has shape (2,), d c / d b has shape (2, 2)
    jac_c = (lambda a, b: (b, a * np.eye(2))) if with_jac else None
    reg.derive("c", lambda a, b: a * b, deps=["a", "b"], jac=jac_c)
    reg.derive("d", lambda c: (c * c).sum(), deps=["c"])  # derived from a derived: order matters
    return reg


@pytest.mark.parametrize("with_jac", [False, True])
def test_derived_chain_values_and_pooled_gradient(with_jac):
    layout = _chain_registry(with_jac).compile()
    theta = np.array([0.7, 1.1, -0.4])
    v = layout.unpack(theta)
    np.testing.assert_allclose(v["c"], 0.7 * np.array([1.1, -0.4]))
    assert v["d"] == pytest.approx(np.sum((0.7 * np.array([1.1, -0.4])) ** 2))
    # L = d  ->  dL/da = 2 a |b|^2, dL/db = 2 a^2 b
    g = layout.pool_grad({"d": 1.0}, theta)
    a, b = 0.7, np.array([1.1, -0.4])
    np.testing.assert_allclose(g, [2 * a * b @ b, *(2 * a**2 * b)], rtol=1e-6)
    t = torch.tensor(theta, requires_grad=True)
    layout.unpack(t)["d"].backward()
    np.testing.assert_allclose(t.grad.numpy(), g, rtol=1e-6)


def test_restraints_penalty_by_hand():
    reg = Registry()
    reg.declare("u1", 0.010)
    reg.declare("u2", 0.016)
    reg.declare("bond", 1.50)
    reg.restrain(["u1", "u2"], strength=100.0)
    reg.restrain("bond", strength=1 / 0.02**2, target=1.54)
    layout = reg.compile()
    v = layout.values0
    want = 100.0 * ((0.010 - 0.013) ** 2 + (0.016 - 0.013) ** 2) + (1.50 - 1.54) ** 2 / 0.02**2
    assert float(layout.penalty(v)) == pytest.approx(want, rel=1e-12)
    r = layout.restraint_residuals(v)
    assert float(r @ r) == pytest.approx(want, rel=1e-12)


def test_describe_shows_ties_relations_and_stderr():
    reg = Registry()
    reg.declare("means", np.zeros((2, 2)))
    reg.tie(reg["means"][0], reg["means"][1])
    reg.declare("x", 0.25, fixed=True)
    reg.declare("y", 0.0)
    reg.affine("y", "x", scale=2.0, offset=0.5)
    reg.declare("z", 0.0)
    reg.derive("z", np.exp, deps=["x"])
    table = reg.compile().describe(stderr={"means": np.full((2, 2), 0.05)})
    assert "tied to means[0,0]" in table
    assert "free (shared by 2)" in table
    assert "fixed" in table
    assert "= 2*x + 0.5" in table
    assert "derived: exp(x)" in table
    assert "0.05" in table


def test_lmfit_round_trip_keeps_values_vary_bounds_and_ties():
    reg = Registry()
    reg.declare("structure.a", 8.48, bounds=(8.0, 9.0))
    reg.declare("structure.b", 0.0)
    reg.affine("structure.b", "structure.a", scale=0.6366, offset=0.01)
    reg.declare("m", np.array([1.0, 2.0]))
    reg.tie(reg["m"][0], reg["m"][1])
    reg.declare("k", 3.0, fixed=True)
    layout = reg.compile()
    params = layout.to_lmfit(stderr={"structure.a": 0.001})
    assert params["structure__a"].min == 8.0 and params["structure__a"].max == 9.0
    assert params["structure__a"].stderr == 0.001
    assert params["m_1"].expr == "m_0"
    assert params["k"].vary is False
    assert params["structure__b"].value == pytest.approx(0.6366 * 8.48 + 0.01)
    back = Registry.from_lmfit(params).compile()
    assert back.n_free == layout.n_free
    v = back.values0
    assert v["structure.b"] == pytest.approx(0.6366 * 8.48 + 0.01)
    assert v["m_1"] == v["m_0"] == 1.0


def test_nonlinear_lmfit_expr_becomes_derived():
    params = lmfit.Parameters()
    params.add("amp", value=2.0)
    params.add("wid", value=0.5, min=0)
    params.add("area", expr="amp * wid * sqrt(2 * pi)")
    layout = Registry.from_lmfit(params).compile()
    assert layout.n_free == 2
    v = layout.unpack(np.array([3.0, np.log(0.25)]))
    assert float(v["area"]) == pytest.approx(3.0 * 0.25 * np.sqrt(2 * np.pi))
    assert "derived" in layout.describe()


def test_import_tiedsci_does_not_import_torch():
    code = "import tiedsci, tiedsci.hmm, tiedsci.refine, sys; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
