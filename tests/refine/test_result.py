"""Result exports: exact save/load round trip, lmfit Parameters, report, plot; staged refinement."""

import numpy as np
import pytest

from tests.refine.conftest import assert_identical_results, gauss_data, gauss_model
from tiedsci.core import Positive
from tiedsci.errors import UnknownParameterError
from tiedsci.refine import JointRefinement, Stage, load


def _jr(seed=0):
    jr = JointRefinement()
    for ds in gauss_data(seed):
        jr.add(ds, gauss_model)
    jr.shared("center", 0.0, group="peak")
    jr.local("amp", 6.0, bounds=Positive(), group="peak")
    jr.local("width", 1.2, group="profile")
    jr.local("bkg", 0.0, group="background")
    return jr


def test_save_load_round_trip_is_exact(tmp_path):
    res = _jr().fit()
    path = res.save(tmp_path / "r")
    assert path == tmp_path / "r.json" and (tmp_path / "r.npz").exists()
    back = load(tmp_path / "r.json")
    assert_identical_results(res, back)
    assert back.layout is None and "center" in back.report()
    for name in res.values:
        np.testing.assert_array_equal(back.values[name], res.values[name])
        np.testing.assert_array_equal(back.esd[name], res.esd[name])
    np.testing.assert_array_equal(back.covariance, res.covariance)
    np.testing.assert_array_equal(back.dataset("d1").y_calc, res.dataset("d1").y_calc)
    assert back.overall == res.overall
    assert back.free_names == res.free_names


def test_params_report_and_plot(tmp_path):
    res = _jr().fit()
    p = res.params
    assert p["center"].value == pytest.approx(float(res.values["center"]))
    assert p["d1__width"].stderr == pytest.approx(float(res.esd["d1.width"]))
    text = res.report()
    for needle in ("Rwp", "Rexp", "GOF", "reduced chi2", "d2", "center"):
        assert needle in text
    fig = res.plot(tmp_path / "fit.png")
    assert (tmp_path / "fit.png").stat().st_size > 1000
    assert len(fig.axes) == 3
    # statistics agree with their definitions
    d = res.dataset("d0")
    chi2 = float(np.sum(d.weights * (d.y_obs - d.y_calc) ** 2))
    assert d.agreement.chi2 == pytest.approx(chi2)
    assert d.agreement.rwp == pytest.approx(np.sqrt(chi2 / np.sum(d.weights * d.y_obs**2)))
    assert res.overall.chi2 == pytest.approx(sum(x.agreement.chi2 for x in res.datasets))
    assert res.redchi == pytest.approx(res.chi2 / (res.n_obs - res.n_free))
    corr = res.correlation
    np.testing.assert_allclose(np.diag(corr), 1.0)
    top = res.strongest_correlations(n=3, threshold=0.0)
    assert abs(top[0][2]) == pytest.approx(np.max(np.abs(corr - np.eye(len(corr)))))


def test_staged_refinement_reaches_the_unstaged_optimum():
    jr = _jr(seed=1)
    full = jr.fit()
    staged = jr.fit(stages=[Stage("background", ("background",)),
                            Stage("peak", ("peak", "background")),
                            Stage("all", ("*",))])
    assert [s.name for s in staged.stages] == ["background", "peak", "all"]
    assert [s.n_free for s in staged.stages] == [3, 7, 10]
    rwps = [s.rwp for s in staged.stages]
    assert rwps[0] >= rwps[1] >= rwps[2] - 1e-12
    for name in full.values:
        np.testing.assert_allclose(staged.values[name], full.values[name], rtol=1e-6)
    assert staged.nfev == sum(s.nfev for s in staged.stages)


def test_first_stage_holds_the_others_at_their_start():
    jr = _jr(seed=2)
    res = jr.fit(stages=[{"name": "bkg", "vary": ["bkg"]}])
    assert res.n_free == 3
    assert float(res.values["center"]) == 0.0
    np.testing.assert_array_equal([float(res.values[f"d{k}.width"]) for k in range(3)], 1.2)
    assert float(res.values["d0.bkg"]) != 0.0


def test_stage_naming_nothing_is_an_error():
    with pytest.raises(UnknownParameterError, match="matches no parameter"):
        _jr().fit(stages=[Stage("x", ("nonexistent",))])
