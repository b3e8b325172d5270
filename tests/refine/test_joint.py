"""JointRefinement against lmfit (oracle), truth recovery and esd coverage, diagnostics."""

import warnings

import numpy as np
import pytest

from tests.refine.conftest import TRUTH, gauss_data, gauss_model
from tiedsci.core import Positive
from tiedsci.errors import (
    ConvergenceError,
    DeclarationError,
    SingularMatrixError,
    UnknownParameterError,
)
from tiedsci.refine import JointRefinement

lmfit = pytest.importorskip("lmfit")

C_DERIVED = 0.6532


def _basic(datasets, **local_bounds):
    jr = JointRefinement()
    for ds in datasets:
        jr.add(ds, gauss_model)
    jr.shared("center", 0.0)
    jr.local("amp", 6.0, bounds=Positive())
    width = local_bounds.get("width")
    jr.local("width", 1.2 if width is None else 0.7, bounds=width)
    jr.local("bkg", 0.0)
    return jr


def _tied_problem(datasets):
    jr = _basic(datasets)
    reg = jr.registry
    reg.affine("d1.width", "d0.width", scale=1.5)
    reg.derive("d2.width", lambda a, b: C_DERIVED * (a * b) ** 0.5,
               deps=("d0.width", "d1.width"))
    reg.restrain("d1.bkg", strength=1 / 0.05**2, target=2.0)
    return jr


def _lmfit_tied(datasets):
    p = lmfit.Parameters()
    p.add("center", 0.0)
    for k in range(3):
        p.add(f"d{k}_amp", 6.0, min=0)
        p.add(f"d{k}_bkg", 0.0)
    p.add("d0_width", 1.2)
    p.add("d1_width", expr="1.5*d0_width")
    p.add("d2_width", expr=f"{C_DERIVED}*sqrt(d0_width*d1_width)")

    def residual(q):
        out = []
        for k, ds in enumerate(datasets):
            v = {"center": q["center"].value, "amp": q[f"d{k}_amp"].value,
                 "width": q[f"d{k}_width"].value, "bkg": q[f"d{k}_bkg"].value}
            out.append((gauss_model(v, ds.x) - ds.y) / ds.sigma)
        out.append([np.sqrt(1 / 0.05**2) * (q["d1_bkg"].value - 2.0)])
        return np.concatenate(out)

    return lmfit.minimize(residual, p, method="leastsq", ftol=1e-15, xtol=1e-15)


def test_same_optimum_and_esd_as_lmfit_with_ties_derived_and_restraint():
    datasets = gauss_data(seed=0)
    res = _tied_problem(datasets).fit(ftol=1e-14, xtol=1e-14, gtol=1e-14)
    ref = _lmfit_tied(datasets)
    assert res.n_free == ref.nvarys == 8
    assert res.n_obs + res.n_restraint_rows == ref.ndata
    np.testing.assert_allclose(res.redchi, ref.redchi, rtol=1e-8)
    for k in range(3):
        for name in ("amp", "width", "bkg"):
            lm = ref.params[f"d{k}_{name}"]
            np.testing.assert_allclose(res.values[f"d{k}.{name}"], lm.value, rtol=1e-7)
            np.testing.assert_allclose(res.esd[f"d{k}.{name}"], lm.stderr, rtol=1e-5)
    np.testing.assert_allclose(res.values["center"], ref.params["center"].value, rtol=1e-7)
    np.testing.assert_allclose(res.esd["center"], ref.params["center"].stderr, rtol=1e-5)
    # the relations hold exactly in the result
    np.testing.assert_allclose(res.values["d1.width"], 1.5 * res.values["d0.width"])
    assert res.penalty > 0


def test_lmfit_optimizer_reaches_the_same_optimum():
    datasets = gauss_data(seed=1)
    jr = _basic(datasets)
    a = jr.fit()
    b = jr.fit(optimizer="lmfit", method="leastsq")
    assert b.optimizer == "lmfit"
    for name in a.values:
        np.testing.assert_allclose(b.values[name], a.values[name], rtol=1e-6)
        np.testing.assert_allclose(b.esd[name], a.esd[name], rtol=1e-4)


def test_truth_recovery_and_esd_coverage_over_50_seeds():
    hits, total, centers, esds = 0, 0, [], []
    truth = {"center": TRUTH["center"]}
    for k in range(3):
        for name in ("amp", "width", "bkg"):
            truth[f"d{k}.{name}"] = TRUTH[name][k]
    for seed in range(50):
        res = _basic(gauss_data(seed=100 + seed, n_points=80, noise=0.3)).fit()
        assert res.converged
        for name, t in truth.items():
            hits += abs(float(res.values[name]) - t) <= float(res.esd[name])
            total += 1
        centers.append(float(res.values["center"]))
        esds.append(float(res.esd["center"]))
    coverage = hits / total
    assert 0.55 <= coverage <= 0.80, coverage
    # the scatter of the shared centre matches its esd; the mean is the truth
    ratio = np.std(centers, ddof=1) / np.mean(esds)
    assert 0.7 < ratio < 1.4, ratio
    assert abs(np.mean(centers) - TRUTH["center"]) < 3 * np.mean(esds) / np.sqrt(50)


def test_unscaled_esd_on_request():
    jr = _basic(gauss_data(seed=2))
    a = jr.fit()
    b = jr.fit(scale_covar=False)
    np.testing.assert_allclose(b.esd["center"], a.esd_unscaled["center"], rtol=1e-8)
    np.testing.assert_allclose(a.esd["center"], a.esd_unscaled["center"] * np.sqrt(a.redchi),
                               rtol=1e-10)


def test_numpy_fd_and_analytic_jacobians_match_autodiff():
    datasets = gauss_data(seed=3)

    def np_model(v, x):
        return v["amp"] * np.exp(-0.5 * ((x - v["center"]) / v["width"]) ** 2) + v["bkg"]

    def np_jac(v, x):
        d = (x - v["center"]) / v["width"]
        g = np.exp(-0.5 * d * d)
        return {"amp": g, "center": v["amp"] * g * d / v["width"],
                "width": v["amp"] * g * d * d / v["width"], "bkg": np.ones_like(x)}

    ref = _basic(datasets).fit()
    for jac in ("fd", np_jac):
        jr = JointRefinement()
        for ds in datasets:
            jr.add(ds, np_model, jac=jac)
        jr.shared("center", 0.0)
        jr.local("amp", 6.0, bounds=Positive())
        jr.local("width", 1.2)
        jr.local("bkg", 0.0)
        res = jr.fit()
        for name in ref.values:
            np.testing.assert_allclose(res.values[name], ref.values[name], rtol=1e-6)
            np.testing.assert_allclose(res.esd[name], ref.esd[name], rtol=1e-4)


def test_partition_keeps_shared_block_small():
    jr = _basic(gauss_data(seed=4))
    problem = jr.compile()
    labels = [problem.layout.free_names[j] for j in problem.partition.shared]
    assert labels == ["center"]
    for blk in problem.partition.blocks:
        assert blk.l_idx.size == 3  # amp, width, bkg of that dataset


def test_singular_matrix_names_the_parameters():
    datasets = gauss_data(seed=5)

    def model(v, x):
        return gauss_model({"amp": v["amp"] * v["gain"], "center": v["center"],
                            "width": v["width"], "bkg": v["bkg"]}, x)

    jr = JointRefinement()
    for ds in datasets:
        jr.add(ds, model)
    jr.shared("center", 0.0)
    jr.local("amp", 6.0)
    jr.local("gain", 1.0, datasets=["d1"])
    jr.shared("gain", 1.0, fixed=True)
    jr.local("width", 1.2)
    jr.local("bkg", 0.0)
    jr.shared("unused", 3.0)
    with pytest.raises(SingularMatrixError) as exc:
        jr.fit()
    msg = str(exc.value)
    assert "unused" in msg and "d1.amp" in msg and "d1.gain" in msg
    assert "d0.amp" not in msg
    assert exc.value.result.values["center"].shape == ()
    with pytest.warns(RuntimeWarning, match="singular"):
        res = jr.fit(on_singular="warn")
    assert np.isnan(res.esd["center"])


def test_parameter_at_bound_is_reported():
    jr = _basic(gauss_data(seed=6), width=(0.1, 0.9))  # d1 wants 1.5, d0 1.0
    res = jr.fit()
    labels = {lab for lab, side in res.at_bounds if side == "upper"}
    assert {"d0.width", "d1.width"} <= labels
    assert "d2.width" not in labels
    assert "at a bound" in res.report()


def test_non_convergence_is_reported():
    jr = _basic(gauss_data(seed=7))
    with pytest.warns(RuntimeWarning, match="did not converge"):
        res = jr.fit(max_nfev=2)
    assert not res.converged and not res.success
    with pytest.raises(ConvergenceError):
        jr.fit(max_nfev=2, raise_on_failure=True)


def test_declaration_errors():
    datasets = gauss_data(seed=8)
    jr = JointRefinement()
    with pytest.raises(DeclarationError, match="add the datasets first"):
        jr.local("amp", 1.0)
    jr.add(datasets[0], gauss_model)
    with pytest.raises(DeclarationError, match="already added"):
        jr.add(datasets[0], gauss_model)
    with pytest.raises(DeclarationError, match="unknown dataset"):
        jr.local("amp", {"nope": 1.0})
    jr.shared("center", 0.0)
    jr.local("amp", 5.0)
    jr.local("widht", 1.0)
    with pytest.raises(UnknownParameterError, match="did you mean 'd0.widht'"):
        jr.fit()


def test_model_returning_nan_is_a_model_error():
    from tiedsci.errors import ModelError

    jr = JointRefinement()
    ds = gauss_data(seed=9)[0]
    jr.add(ds, lambda v, x: v["a"] * x / (x - x[5]))
    jr.shared("a", 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        with pytest.raises(ModelError, match="non-finite value at used point 5"):
            jr.fit()


def test_warnings_free_regular_fit():
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = _basic(gauss_data(seed=10)).fit()
    assert res.success and not res.at_bounds and not res.warnings
