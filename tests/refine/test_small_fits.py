"""Small fits: the complex-step Jacobian, the dense solve, the analytic layout Jacobian."""

from collections import OrderedDict

import numpy as np
import pytest

from tiedsci.backends import namespace_of
from tiedsci.core import Registry
from tiedsci.core.transforms import Interval, Positive
from tiedsci.refine import Dataset, JointRefinement
from tiedsci.refine.solver import SerialBlocks, dense_normal, solve_damped, solve_dense


def _peak(v, x):
    xp = namespace_of(x)
    return v["amp"] * xp.exp(-0.5 * ((x - v["cen"]) / v["wid"]) ** 2) + v["b0"] + v["b1"] * x


START = {"amp": 2.0, "cen": 0.1, "wid": 1.2, "b0": 0.1, "b1": 0.0}


def _curve(seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-5.0, 5.0, 120)
    y = 4.0 * np.exp(-0.5 * ((x - 0.4) / 0.8) ** 2) + 0.3 + 0.05 * x
    return x, y + 0.05 * rng.standard_normal(x.size)


def _refinement(model, jac="auto", start=START):
    x, y = _curve()
    jr = JointRefinement()
    jr.add(Dataset(x, y, sigma=0.05, name="c"), model, jac=jac)
    for k, v in start.items():
        jr.shared(k, v)
    return jr


def _block_jacobian(jr):
    prob = jr.compile()
    blk = prob.blocks[0]
    v = prob.layout.flatten(prob.layout.values0)[blk.elem_idx]
    return blk, blk.value_jacobian(v)


def test_small_numpy_model_gets_the_stacked_complex_step_and_it_matches_torch():
    blk, j = _block_jacobian(_refinement(_peak))
    assert (blk.mode, blk.stacked) == ("complex", True)
    _, j_torch = _block_jacobian(_refinement(_peak, jac="torch"))
    np.testing.assert_allclose(j, j_torch, rtol=1e-12, atol=1e-14 * np.abs(j_torch).max())


def test_a_model_that_mixes_stacked_rows_falls_back_to_one_step_per_value():
    def model(v, x):  # the sum runs over whatever v["b0"] holds: wrong on a stack of values
        return _peak(v, x) + 0.0 * np.sum(v["b0"]) + np.sum(v["b1"]) * 0.1

    blk, j = _block_jacobian(_refinement(model))
    assert (blk.mode, blk.stacked) == ("complex", False)
    _, j_fd = _block_jacobian(_refinement(model, jac="fd"))
    np.testing.assert_allclose(j, j_fd, rtol=1e-6, atol=1e-8 * np.abs(j_fd).max())


def test_a_model_not_analytic_in_its_values_keeps_torch():
    def model(v, x):  # abs() of a parameter: the complex step would give 0 for d/d wid
        xp = namespace_of(x)
        w = xp.abs(v["wid"])
        return v["amp"] * xp.exp(-0.5 * ((x - v["cen"]) / w) ** 2) + v["b0"] + v["b1"] * x

    jr = _refinement(model)
    blk, _ = _block_jacobian(jr)
    assert blk.mode == "torch"
    res, ref = jr.fit(), _refinement(_peak).fit()
    for k in START:
        np.testing.assert_allclose(res.values[k], abs(ref.values[k]) if k == "wid" else
                                   ref.values[k], rtol=1e-7)
        np.testing.assert_allclose(res.esd[k], ref.esd[k], rtol=1e-6)


@pytest.mark.parametrize("jac, rtol", [("torch", 1e-8), ("fd", 1e-5)])
def test_complex_step_fit_agrees_with_other_jacobians(jac, rtol):
    fast, other = _refinement(_peak).fit(), _refinement(_peak, jac=jac).fit()
    for k in START:
        np.testing.assert_allclose(fast.values[k], other.values[k], rtol=rtol)
        np.testing.assert_allclose(fast.esd[k], other.esd[k], rtol=rtol)


def test_dense_solve_equals_the_block_elimination():
    prob = _refinement(_peak).compile()
    th = prob.layout.theta0
    provider = SerialBlocks(prob.residuals, prob.jacobians, prob.partition)
    assert provider.dense
    provider.start(th, None)
    system = provider.outcome()[2]  # the block system, assembled for the covariance
    h, g = dense_normal(prob.partition, system), system.gradient(prob.partition)
    scale = system.diagonal(prob.partition)
    provider.gradient_max(0.0, 1.0)
    for mu in (0.0, 1e-3, 10.0):
        provider.propose(mu)
        np.testing.assert_allclose(provider._trial[0],
                                   solve_damped(prob.partition, system, mu, scale),
                                   rtol=1e-9, atol=1e-14)
        np.testing.assert_allclose(solve_dense(h, g, mu, scale), provider._trial[0],
                                   rtol=1e-12, atol=1e-15)


def test_analytic_layout_jacobian_equals_autodiff_with_bounds_and_ties():
    reg = Registry()
    a = reg.declare("a", [1.0, 2.0, 3.0], bounds=Positive())
    reg.declare("b", 0.5, bounds=Interval(0.0, 1.0))
    c = reg.declare("c", [1.0, 1.0])
    reg.tie(c[1], a[0])
    reg.declare("d", 2.0, fixed=True)
    lay = reg.compile()
    th = lay.theta0 + 0.1
    np.testing.assert_array_equal(lay.jacobian(th).toarray(),
                                  lay.jacobian(th, method="torch").toarray())


# ---------------------------------------------------------------------- NNLS variable projection
def _decay_on_slope(c_true=-0.02, fix_c=False, c_bounds=None):
    """``A exp(-k t) + B + C t`` with a slightly negative true slope C."""
    from tiedsci.backends import namespace_of as ns

    rng = np.random.default_rng(5)
    t = np.linspace(0.0, 10.0, 60)
    y = 2.0 * np.exp(-0.8 * t) + 0.5 + c_true * t + 0.01 * rng.standard_normal(t.size)
    jr = JointRefinement()
    jr.add(Dataset(t, y, sigma=0.01, name="d"),
           lambda v, t: v["A"] * ns(t).exp(-v["k"] * t) + v["B"] + v["C"] * t)
    jr.shared("k", 0.5, bounds=Positive())
    jr.local("A", 1.0)
    jr.local("B", 0.0)
    jr.local("C", 0.0 if fix_c or c_bounds is None else 0.1, bounds=c_bounds, fixed=fix_c)
    return jr


def test_nnls_puts_a_negative_slope_at_zero_like_a_bounded_fit():
    nnls = _decay_on_slope().fit(nonnegative=["C", "A"], linear=["B"])
    assert nnls.converged
    assert float(nnls.values["d.C"]) == 0.0 and float(nnls.values["d.A"]) > 0
    assert ("d.C", "lower") in nnls.at_bounds and np.isnan(float(nnls.esd["d.C"]))
    bounded = _decay_on_slope(c_bounds=Positive()).fit(on_singular="warn", max_nfev=3000)
    assert float(bounded.values["d.C"]) < 1e-5  # creeps towards its bound
    for name in ("k", "d.A", "d.B"):
        diff = abs(float(nnls.values[name]) - float(bounded.values[name]))
        assert diff < 0.01 * float(nnls.esd[name])
    # the others' esds are those of the fit with C fixed at 0 (conditional on the bound)
    fixed = _decay_on_slope(fix_c=True).fit(linear=["A", "B"])
    for name in ("k", "d.A", "d.B"):
        np.testing.assert_allclose(nnls.values[name], fixed.values[name], rtol=1e-8)
        np.testing.assert_allclose(nnls.esd_unscaled[name], fixed.esd_unscaled[name],
                                   rtol=1e-6)


def test_nnls_with_an_inactive_constraint_is_plain_variable_projection():
    plain = _decay_on_slope(c_true=0.03).fit(linear=["A", "B", "C"])
    nnls = _decay_on_slope(c_true=0.03).fit(nonnegative=["C"], linear=["A", "B"])
    assert nnls.at_bounds == ()
    for name in plain.values:
        np.testing.assert_allclose(nnls.values[name], plain.values[name], rtol=1e-9)
        np.testing.assert_allclose(nnls.esd[name], plain.esd[name], rtol=1e-7)


def test_solve_linear_matches_a_brute_force_active_set():
    from itertools import product

    from tiedsci.refine.varpro import solve_linear

    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 4))
    b = a @ np.array([1.0, -0.5, 0.3, -0.2]) + 0.1 * rng.standard_normal(30)
    mask = np.array([False, True, True, True])
    c = solve_linear(a, b, mask)
    assert np.all(c[mask] >= 0)
    best = np.inf
    for zeros in product([False, True], repeat=3):  # every active set, the best feasible one
        keep = ~np.concatenate([[False], zeros])
        sol = np.zeros(4)
        sol[keep] = np.linalg.lstsq(a[:, keep], b, rcond=None)[0]
        if np.all(sol[mask] >= -1e-12):
            best = min(best, float(np.sum((a @ sol - b) ** 2)))
    np.testing.assert_allclose(np.sum((a @ c - b) ** 2), best, rtol=1e-12)


def test_copied_block_values_are_the_cores_values_bitwise():
    x, y = _curve()
    jr = JointRefinement()
    for name in ("p", "q"):
        jr.add(Dataset(x, y, sigma=0.05, name=name), _peak)
    jr.shared("cen", 0.2)
    jr.shared("wid", 1.1)
    jr.local("amp", {"p": 2.0, "q": 3.0})
    jr.local("b0", 0.1)
    jr.local("b1", 0.0, fixed=True)
    jr.registry.tie("q.b0", "p.b0")
    prob = jr.compile()
    assert all(b.copy_src is not None for b in prob.blocks)
    theta = prob.layout.theta0 + np.linspace(0.1, 0.7, prob.layout.n_free)
    flat = prob.layout.flatten(prob.layout.unpack(theta))
    for b, v in zip(prob.blocks, prob._block_values(theta)):
        np.testing.assert_array_equal(v, flat[b.elem_idx])
    # an affine relation is arithmetic: sliced from the core's values instead
    jr.registry.linear("q.amp", [(2.0, "p.amp")], offset=0.5)
    prob = jr.compile()
    assert any(b.copy_src is None for b in prob.blocks)
    theta = prob.layout.theta0 + 0.1
    flat = prob.layout.flatten(prob.layout.unpack(theta))
    for b, v in zip(prob.blocks, prob._block_values(theta)):
        np.testing.assert_array_equal(v, flat[b.elem_idx])


def test_a_fresh_refinement_of_the_same_structure_does_not_probe_again(monkeypatch):
    from tiedsci.refine import problem

    def model(v, x):  # a function of its own: no earlier test has cached it
        return _peak(v, x)

    first = _refinement(model).compile()
    calls = []
    probe = problem._probe
    monkeypatch.setattr(problem, "_probe", lambda *a: calls.append(a) or probe(*a))
    again = _refinement(model, start={**START, "amp": 3.0}).compile()
    assert calls == []
    assert again.blocks[0].names == first.blocks[0].names
    assert again.blocks[0].mode == first.blocks[0].mode == "complex"
    _refinement(model, jac="torch").compile()  # other options: a new probe
    assert len(calls) == 1


def test_structure_cache_is_bounded_and_drops_the_oldest():
    from tiedsci.refine.problem import StructureCache

    cache = StructureCache(maxsize=2)
    for k in range(3):
        cache.put(k, str(k))
    assert len(cache) == 2 and cache.get(0) is None and cache.get(2) == "2"
    cache.put([1], "unhashable")  # ignored, not an error
    assert cache.get([1]) is None and len(cache) == 2


def test_a_new_start_of_the_same_structure_reuses_the_compilation(monkeypatch):
    """Layout, indices, partition and tie maps come from the structure caches (no rebuild),
    and the fit from the new start is the fit of an uncached compilation."""
    from tiedsci.core import build
    from tiedsci.refine import problem

    def model(v, x):
        return _peak(v, x)

    first = _refinement(model).compile()
    built, mapped = [], []
    monkeypatch.setattr(build, "_build",
                        lambda reg, f=build._build, **kw: built.append(1) or f(reg, **kw))
    monkeypatch.setattr(problem.TieMap, "of", classmethod(
        lambda cls, *a, f=problem.TieMap.of: mapped.append(1) or f(*a)))
    start = {**START, "amp": 3.0, "wid": 0.9}
    again = _refinement(model, start=start).compile()
    assert built == [] and mapped == []
    assert again.layout.structure is first.layout.structure is not None
    np.testing.assert_array_equal(again.layout.theta0, list(start.values()))
    assert again.partition is first.partition
    cached = _refinement(model, start=start).fit()
    monkeypatch.setattr(build, "_STRUCTURES", OrderedDict())
    monkeypatch.setattr(problem, "PROBE_CACHE", problem.StructureCache())
    fresh = _refinement(model, start=start).fit()
    assert built and mapped  # this one did compile afresh
    np.testing.assert_array_equal(cached.theta, fresh.theta)


def test_fused_residuals_give_the_values_and_jacobian_of_separate_calls():
    """One complex call for the serial single-curve fit: the real parts are the model values
    to rounding, and the Jacobian is the separate call's."""
    prob = _refinement(_peak).compile()
    assert prob.fuses_jacobian
    theta = prob.layout.theta0 + 0.01
    fused = prob.fused_residuals(theta)[0]
    np.testing.assert_allclose(fused, prob.residuals(theta)[0], rtol=1e-14,
                               atol=1e-13 * np.abs(fused).max())
    j_fused = prob.jacobians(theta)[0]
    prob._fused.clear()
    np.testing.assert_array_equal(j_fused, prob.jacobians(theta)[0])
    assert not _refinement(_peak, jac="torch").compile().fuses_jacobian
