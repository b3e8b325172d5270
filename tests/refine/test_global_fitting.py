"""Everyday global fitting: models written once, unit-invariant diagnostics, hard starts."""

import warnings

import numpy as np
import pytest
import torch

from tiedsci.backends import namespace_of
from tiedsci.errors import SingularMatrixError
from tiedsci.refine import Dataset, JointRefinement

RNG = np.random.default_rng(7)


def _exp_data(name, a, k, n=40, noise=0.01, seed=0):
    rng = np.random.default_rng(seed)
    x = np.linspace(0.0, 5.0, n)
    return Dataset(x, a * np.exp(-k * x) + noise * rng.standard_normal(n), sigma=noise,
                   name=name)


def test_torch_only_model_fits_without_uses():
    jr = JointRefinement()
    for i, a in enumerate((2.0, 3.0)):
        jr.add(_exp_data(f"d{i}", a, 0.7, seed=i),
               lambda v, x: v["a"] * torch.exp(-v["k"] * x))
    jr.shared("k", 1.0)
    jr.local("a", 1.0)
    res = jr.fit()
    assert res.converged
    assert abs(float(res.values["k"]) - 0.7) < 5 * float(res.esd["k"])
    # the probe found exactly what the model reads
    assert set(res.free_names) == {"k", "d0.a", "d1.a"}


def test_model_written_once_with_the_math_namespace_fits_like_its_numpy_twin():
    x = np.linspace(-3, 3, 60)
    rng = np.random.default_rng(3)
    y = 1.5 * np.arctan(2.0 * x) + 0.3 * np.sin(x) + 0.05 * rng.standard_normal(60)

    def model(v, x):
        xp = namespace_of(x)
        return v["a"] * xp.arctan(v["b"] * x) + v["c"] * xp.sin(x) + 0 * xp.erf(x)

    fits = []
    for jac in ("auto", "fd"):
        jr = JointRefinement()
        jr.add(Dataset(x, y, sigma=0.05, name="d"), model, jac=jac)
        jr.shared("a", 1.0)
        jr.shared("b", 1.0)
        jr.shared("c", 0.0)
        fits.append(jr.fit())
    for name in ("a", "b", "c"):
        np.testing.assert_allclose(fits[0].values[name], fits[1].values[name], rtol=1e-6)
        np.testing.assert_allclose(fits[0].esd[name], fits[1].esd[name], rtol=1e-4)


def _line_fit(big, a0):
    x = np.linspace(0.0, 1.0, 20)
    rng = np.random.default_rng(1)
    y = a0 * big * x + 0.5 + 0.01 * rng.standard_normal(20)
    jr = JointRefinement()
    jr.add(Dataset(x, y, sigma=0.01, name="d"), lambda v, x: v["a"] * big * x + v["b"])
    jr.shared("a", a0 * 1.1)
    jr.shared("b", 0.0)
    return jr.fit(), x, y


@pytest.mark.parametrize("big", [1e6, 1e15])
def test_a_line_with_a_tiny_slope_in_big_units_fits(big):
    res, x, y = _line_fit(big, 2.0 / big)
    # ordinary least squares: exact values and esds
    a_mat = np.column_stack([x, np.ones_like(x)])  # OLS in unit-free columns, then rescaled
    unit = np.array([big, 1.0])
    coef = np.linalg.lstsq(a_mat, y, rcond=None)[0] / unit
    cov = np.linalg.inv(a_mat.T @ a_mat) * 1e-4 * res.redchi / np.outer(unit, unit)
    np.testing.assert_allclose(float(res.values["a"]), coef[0], rtol=1e-9)
    np.testing.assert_allclose(float(res.values["b"]), coef[1], rtol=1e-9)
    np.testing.assert_allclose([float(res.esd["a"]), float(res.esd["b"])],
                               np.sqrt(np.diag(cov)), rtol=1e-6)
    assert not res.singular


def test_parameters_of_scale_1e_minus_9_and_1e6_get_correct_esds():
    """Two parameters 15 orders of magnitude apart: values and esds as linear algebra says."""
    x = np.linspace(0.0, 1.0, 30)
    rng = np.random.default_rng(5)
    sig = 0.02
    y = 3e-9 * 1e9 * x + 4e6 * 1e-6 * x**2 + sig * rng.standard_normal(30)
    jr = JointRefinement()
    jr.add(Dataset(x, y, sigma=sig, name="d"),
           lambda v, x: v["small"] * 1e9 * x + v["large"] * 1e-6 * x**2)
    jr.shared("small", 1e-9)
    jr.shared("large", 1e6)
    res = jr.fit(scale_covar=False)
    unit = np.array([1e9, 1e-6])
    a_mat = np.column_stack([x, x**2]) / sig
    coef = np.linalg.lstsq(a_mat, y / sig, rcond=None)[0] / unit
    esd = np.sqrt(np.diag(np.linalg.inv(a_mat.T @ a_mat))) / unit
    np.testing.assert_allclose([float(res.values["small"]), float(res.values["large"])], coef,
                               rtol=1e-8)
    np.testing.assert_allclose([float(res.esd["small"]), float(res.esd["large"])], esd,
                               rtol=1e-6)


def test_a_parameter_the_model_ignores_is_still_named():
    x = np.linspace(0.0, 1.0, 20)
    jr = JointRefinement()
    jr.add(Dataset(x, 2 * x + 1, name="d"), lambda v, x: v["a"] * x + v["b"] + 0 * v["c"])
    jr.shared("a", 1.0)
    jr.shared("b", 0.0)
    jr.shared("c", 1e-3)
    with pytest.raises(SingularMatrixError, match="c has"):
        jr.fit()


def test_a_stopped_fit_names_non_convergence_before_singular():
    """Out of budget on a model with a dead parameter: the error names non-convergence first."""
    x = np.linspace(0.0, 5.0, 30)
    data = Dataset(x, 3.0 * np.exp(-1.3 * x) + 0.2, name="d")
    jr = JointRefinement()
    jr.add(data, lambda v, x: v["a"] * torch.exp(-v["k"] * x) + v["c"] + 0 * v["dead"])
    for name, val in (("a", 1.0), ("k", 5.0), ("c", 0.0), ("dead", 1.0)):
        jr.shared(name, val)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(SingularMatrixError) as info:
            jr.fit(max_nfev=2)
    msg = str(info.value)
    assert msg.index("did not converge") < msg.index("singular")
    assert not info.value.result.converged
    assert "max_nfev" in info.value.result.warnings[0]


def test_global_kinetics_example_matches_lmfit_on_real_data():
    import importlib.util
    from pathlib import Path

    pytest.importorskip("lmfit")
    path = Path(__file__).resolve().parents[2] / "examples" / "global_kinetics.py"
    spec = importlib.util.spec_from_file_location("global_kinetics_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = module.run(repeats=1)
    assert out["n_points"] == 66 and out["n_free"] == 14
    assert out["tiedsci"]["converged"]
    # the same optimum as lmfit's MINPACK, and the same esds
    assert out["max_diff_in_esd"] < 1e-2
    assert out["max_rel_esd_diff"] < 1e-3
    assert out["tiedsci"]["chi2"] <= out["lmfit"]["chi2"] * (1 + 1e-9)


# NIST StRD MGH10 (Meyer 1970): y = b1 exp(b2 / (x + b3)), certified values to 11 digits
MEYER_Y = np.array([34780.0, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005,
                    5147, 4427, 3820, 3307, 2872])
MEYER_X = 50.0 + 5.0 * np.arange(16)
MEYER_CERTIFIED = np.array([5.6096364710e-03, 6.1813463463e+03, 3.4522363462e+02])


def test_meyer_from_its_hard_start_converges_within_lmfits_budget():
    """NIST start 1 (2, 4e5, 2.5e4): MINPACK needs ~1,000 evaluations (lmfit's budget is
    2000 (p + 1) = 8,000); Nielsen's damping schedule used to crawl for 7,674."""
    jr = JointRefinement()
    jr.add(Dataset(MEYER_X, MEYER_Y, name="meyer"),
           lambda v, x: v["b1"] * torch.exp(v["b2"] / (x + v["b3"])))
    for name, start in zip(("b1", "b2", "b3"), (2.0, 4e5, 2.5e4)):
        jr.shared(name, start)
    res = jr.fit(max_nfev=2000 * 4)
    assert res.converged, res.message
    assert res.nfev <= 1000
    got = np.array([float(res.values[n]) for n in ("b1", "b2", "b3")])
    # default tolerances: good to ~1e-8 relative on a well-posed problem
    np.testing.assert_allclose(got, MEYER_CERTIFIED, rtol=1e-8)


def _arrhenius_data(seed=0):
    """First-order decay at three temperatures: k(T) = A exp(-Ea / (R T)), two columns."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.linspace(0.0, 10.0, 25), 3)
    temp = np.repeat([300.0, 320.0, 340.0], 25)
    k = 5e3 * np.exp(-3000.0 / temp)
    y = 2.0 * np.exp(-k * t) + 0.01 * rng.standard_normal(t.size)
    return t, temp, y


def _arrhenius(v, x):
    xp = namespace_of(x["t"])
    return v["c0"] * xp.exp(-v["A"] * xp.exp(-v["Ea"] / x["T"]) * x["t"])


@pytest.mark.parametrize("how", ["mapping", "array"])
def test_multi_column_x_reaches_the_model_by_name(how):
    t, temp, y = _arrhenius_data()
    if how == "mapping":
        ds = Dataset({"t": t, "T": temp}, y, sigma=0.01, name="d")
    else:
        ds = Dataset(np.column_stack([t, temp]), y, sigma=0.01, name="d", columns=("t", "T"))
    assert ds.columns == ("t", "T") and ds.n_points == 75
    jr = JointRefinement()
    jr.add(ds, _arrhenius)
    jr.shared("c0", 1.5)
    jr.shared("A", 3e3, bounds=None)
    jr.shared("Ea", 2800.0)
    res = jr.fit()
    assert res.converged
    for name, truth in (("c0", 2.0), ("A", 5e3), ("Ea", 3000.0)):
        assert abs(float(res.values[name]) - truth) < 5 * float(res.esd[name])
    # numpy (differences) and torch (autodiff) agree on the same multi-column model
    jr_fd = JointRefinement()
    jr_fd.add(ds, _arrhenius, jac="fd")
    for name in ("c0", "A", "Ea"):
        jr_fd.shared(name, float(res.values[name]))
    res_fd = jr_fd.fit()
    np.testing.assert_allclose(float(res_fd.values["Ea"]), float(res.values["Ea"]), rtol=1e-6)


def test_multi_column_errors_are_named():
    from tiedsci.errors import DataError

    with pytest.raises(DataError, match="column"):
        Dataset({"t": np.arange(3.0), "T": np.arange(4.0)}, np.zeros(3), name="d")
    with pytest.raises(DataError, match="shape"):
        Dataset(np.zeros((5, 3)), np.zeros(5), name="d", columns=("t", "T"))
    with pytest.raises(DataError, match="not finite"):
        Dataset({"t": [0.0, np.nan], "T": [1.0, 2.0]}, np.zeros(2), name="d")


def _biexp_refinement(k1=2.0, k2=0.3):
    from tiedsci.core import Positive

    rng = np.random.default_rng(11)
    t = np.array([0.25, 0.5, 0.75, 1, 1.25, 2, 3, 4, 5, 6, 8])
    jr = JointRefinement()
    for s, (a1, a2) in enumerate([(2.0, 0.6), (2.6, 0.9), (3.7, 1.0), (2.0, 1.0)]):
        y = a1 * np.exp(-2.9 * t) + a2 * np.exp(-0.43 * t) + 0.03 * rng.standard_normal(t.size)
        jr.add(Dataset(t, y, name=f"s{s}"),
               lambda v, t: v["A1"] * torch.exp(-v["k1"] * t) + v["A2"] * torch.exp(-v["k2"] * t))
    jr.shared("k1", k1, bounds=Positive())
    jr.shared("k2", k2, bounds=Positive())
    jr.local("A1", 1.0)
    jr.local("A2", 1.0)
    return jr


def test_variable_projection_reaches_the_same_optimum_and_full_covariance_esds():
    plain = _biexp_refinement().fit(ftol=1e-15, xtol=1e-15)
    proj = _biexp_refinement().fit(linear=["A1", "A2"], ftol=1e-15, xtol=1e-15)
    assert proj.converged
    for name in plain.values:
        np.testing.assert_allclose(proj.values[name], plain.values[name], rtol=1e-7)
        # the linear parameters' esds come from the full covariance, not (A^T A)^-1 alone
        np.testing.assert_allclose(proj.esd[name], plain.esd[name], rtol=1e-6)
    np.testing.assert_allclose(proj.correlation, plain.correlation, atol=1e-6)


def test_variable_projection_refuses_what_it_cannot_project():
    from tiedsci.errors import DeclarationError

    with pytest.raises(DeclarationError, match="local to one"):
        _biexp_refinement().fit(linear=["k1"])
    jr = _biexp_refinement()
    jr.registry.tie("s1.A1", "s0.A1")
    with pytest.raises(DeclarationError, match="local to one"):
        jr.fit(linear=["s0.A1"])
    with pytest.raises(DeclarationError, match="no declared parameter"):
        _biexp_refinement().fit(linear=["nope"])
    with pytest.raises(ValueError, match="serial tiedsci"):
        _biexp_refinement().fit(linear=["A1"], optimizer="lmfit")


def _indometh_refinement():
    """The real indometacin data of examples/global_kinetics.py (6 subjects, 66 points)."""
    from pathlib import Path

    from tiedsci.core import Positive

    path = Path(__file__).resolve().parents[2] / "tiedsci" / "data" / "indometh" / "indometh.csv"
    raw = np.loadtxt(path, delimiter=",", skiprows=1)
    jr = JointRefinement()
    for s in np.unique(raw[:, 1]):
        rows = raw[raw[:, 1] == s]
        jr.add(Dataset(rows[:, 2], rows[:, 3], name=f"s{int(s)}"),
               lambda v, t: v["A1"] * torch.exp(-v["k1"] * t) + v["A2"] * torch.exp(-v["k2"] * t))
    jr.shared("k1", 2.0, bounds=Positive())
    jr.shared("k2", 0.3, bounds=Positive())
    jr.local("A1", 1.0)
    jr.local("A2", 1.0)
    return jr


def test_default_tolerances_are_good_to_about_1e_8_relative():
    """Real data, nonzero residual, correlated rates: ftol = 1e-10 stopped 2.8e-6 short."""
    tight = _indometh_refinement().fit(ftol=1e-15, xtol=1e-15)
    default = _indometh_refinement().fit()
    for name in tight.values:
        np.testing.assert_allclose(default.values[name], tight.values[name], rtol=5e-8)


def test_an_interrupted_fit_names_the_interruption_before_anything_else():
    x = np.linspace(0.0, 5.0, 30)
    jr = JointRefinement()
    jr.add(Dataset(x, 3.0 * np.exp(-1.3 * x) + 0.2, name="d"),
           lambda v, x: v["a"] * torch.exp(-v["k"] * x) + v["c"] + 0 * v["dead"])
    for name, val in (("a", 1.0), ("k", 5.0), ("c", 0.0), ("dead", 1.0)):
        jr.shared(name, val)

    def ctrl_c(n_iter, chi2):
        raise KeyboardInterrupt

    with pytest.warns(RuntimeWarning, match="interrupted"):
        res = jr.fit(callback=ctrl_c)
    assert not res.converged and res.message == "interrupted"
    assert res.warnings[0] == "interrupted"
    assert res.singular  # the dead parameter is still diagnosed, second
