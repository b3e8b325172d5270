"""Soft ties in least squares: exact limits, closed form on a linear case, learned spread."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tests.refine.conftest import gauss_data, gauss_model
from tiedsci.core.softtie import partial_pool
from tiedsci.errors import ShapeMismatchError
from tiedsci.refine import Dataset, JointRefinement, load
from tiedsci.refine.softtie import learn_spreads, marginal_deviance

TIGHT = dict(ftol=1e-15, xtol=1e-15, gtol=1e-15)
WIDTHS = ["d0.width", "d1.width", "d2.width"]


def _gauss(seed: int = 0) -> JointRefinement:
    jr = JointRefinement()
    for ds in gauss_data(seed):
        jr.add(ds, gauss_model)
    jr.shared("center", 0.0)
    jr.local("amp", 6.0)
    jr.local("width", 1.1)
    jr.local("bkg", 1.0)
    return jr


def _close(a, b, tol=1e-8):
    for name in b.values:
        np.testing.assert_allclose(a.values[name], b.values[name], rtol=tol, atol=tol,
                                   err_msg=name)
    assert a.chi2 == pytest.approx(b.chi2, rel=tol)


def test_spread_zero_is_the_hard_tie():
    hard = _gauss()
    hard.registry.tie(*WIDTHS)
    soft = _gauss()
    centre = soft.registry.soft_tie(WIDTHS, 0.0)
    rh, rs = hard.fit(**TIGHT), soft.fit(**TIGHT)
    assert rs.n_free == rh.n_free  # the centre is the tie group's one free value
    _close(rs, rh)
    np.testing.assert_allclose(rs.values[centre.name], rh.values["d0.width"], rtol=1e-8)
    assert rs.soft["n_eff"] == rh.n_free


def test_spread_inf_is_untied_with_the_mean_as_centre():
    free = _gauss().fit(**TIGHT)
    soft = _gauss()
    centre = soft.registry.soft_tie(WIDTHS, math.inf)
    rs = soft.fit(**TIGHT)
    assert rs.n_free == free.n_free  # the unseen centre is not free: it is the mean
    _close(rs, free)
    widths = [float(free.values[w]) for w in WIDTHS]
    assert float(rs.values[centre.name]) == pytest.approx(np.mean(widths), rel=1e-12)
    assert float(rs.esd[centre.name]) > 0


def test_finite_spread_lies_between_and_counts_n_eff_between():
    hard = _gauss()
    hard.registry.tie(*WIDTHS)
    rh, ru = hard.fit(), _gauss().fit()
    soft = _gauss()
    soft.registry.soft_tie(WIDTHS, 0.05)
    rs = soft.fit()
    assert rs.n_free == ru.n_free + 1 and rs.n_restraint_rows == 3
    assert rh.n_free < rs.soft["n_eff"] < ru.n_free
    spread_w = np.ptp([float(rs.values[w]) for w in WIDTHS])
    assert spread_w < np.ptp([float(ru.values[w]) for w in WIDTHS])
    dof = rs.n_obs - rs.soft["n_eff"]
    assert rs.redchi == pytest.approx(rs.chi2 / dof, rel=1e-12)


# ---------------------------------------------------------------------- linear, closed form
def _offsets(seed: int, tau: float, m: int = 6, n: int = 25, sigma: float = 0.1,
             spread: float | None = None) -> tuple[JointRefinement, np.ndarray]:
    """``y = b_k + noise`` per dataset, ``b_k ~ N(0.3, tau^2)``; b soft-tied."""
    rng = np.random.default_rng(seed)
    b = 0.3 + tau * rng.standard_normal(m)
    jr = JointRefinement()
    ybar = []
    for k in range(m):
        y = b[k] + sigma * rng.standard_normal(n)
        ybar.append(y.mean())
        jr.add(Dataset(np.arange(n, dtype=float), y, sigma=sigma, name=f"d{k}"),
               lambda v, x: v["b"] + 0.0 * x)
    jr.local("b", 0.0)
    jr.registry.soft_tie([f"d{k}.b" for k in range(m)], spread, centre="b.centre")
    return jr, np.array(ybar)


def test_linear_case_matches_partial_pooling_by_hand():
    m, n, sigma, tau = 6, 25, 0.1, 0.02
    jr, ybar = _offsets(1, 0.03, m, n, sigma, spread=tau)
    res = jr.fit(**TIGHT)
    s2 = sigma**2 / n
    pool = partial_pool(ybar, s2, tau**2)
    got = np.array([float(res.values[f"d{k}.b"]) for k in range(m)])
    np.testing.assert_allclose(got, pool.mean, rtol=1e-9, atol=1e-12)
    assert float(res.values["b.centre"]) == pytest.approx(float(pool.centre), rel=1e-9)
    b_fac = s2 / (s2 + tau**2)
    assert res.soft["n_eff"] == pytest.approx(1 + (m - 1) * (1 - b_fac), rel=1e-9)
    # esd of the centre: sqrt((s2 + tau^2) / m), unscaled
    assert float(res.esd_unscaled["b.centre"]) == pytest.approx(
        math.sqrt((s2 + tau**2) / m), rel=1e-8)


@pytest.mark.parametrize("seed", [0, 3])
def test_learned_spread_is_reml_closed_form(seed):
    m, n, sigma = 6, 25, 0.1
    jr, ybar = _offsets(seed, 0.05, m, n, sigma)
    res = learn_spreads(jr, spread_method="mackay", rtol=1e-7)
    s2 = sigma**2 / n
    tau2 = max(0.0, float(np.sum((ybar - ybar.mean()) ** 2)) / (m - 1) - s2)
    assert tau2 > 0
    got = res.soft["learned"]["tau"]["b.centre"]
    assert got == pytest.approx(math.sqrt(tau2), rel=1e-4)
    coarse = learn_spreads(_offsets(seed, 0.05, m, n, sigma)[0], spread_method="search",
                           xatol=1e-3)
    assert coarse.soft["learned"]["tau"]["b.centre"] == pytest.approx(math.sqrt(tau2),
                                                                       rel=2e-3)


def test_learned_spread_reaches_zero_when_members_agree():
    jr, _ = _offsets(2, 0.0, spread=None)
    res = jr.fit()  # spread=None: learned inside fit
    info = res.soft["learned"]
    assert info["tau"]["b.centre"] == 0.0 and info["method"] == "search"
    assert res.n_free == 1  # at tau = 0 the model is the hard tie
    assert info["refits"] < 12


def test_deviance_is_continuous_at_the_hard_tie():
    jr, _ = _offsets(4, 0.03, spread=None)
    from tiedsci.core.softtie import with_spreads

    at = [marginal_deviance(jr.with_registry(with_spreads(jr.registry, {"b.centre": t}))
                            .fit(**TIGHT)) for t in (0.0, 1e-7)]
    assert at[1] == pytest.approx(at[0], abs=1e-6)


def test_soft_tie_over_different_shapes_is_a_named_error():
    jr = _gauss()
    jr.registry.declare("pair", [1.0, 2.0])
    with pytest.raises(ShapeMismatchError, match="one shape"):
        jr.registry.soft_tie(["d0.width", "pair"], 0.1)


def test_bad_spread_method():
    jr, _ = _offsets(0, 0.03)
    with pytest.raises(ValueError, match="spread method"):
        learn_spreads(jr, spread_method="joint-mode")


def test_soft_summary_survives_save_and_load(tmp_path):
    jr, _ = _offsets(0, 0.03, spread=0.02)
    res = jr.fit()
    back = load(res.save(tmp_path / "soft"))
    assert back.soft == res.soft
    assert back.soft["ties"]["b.centre"]["spread"] == 0.02
    assert "soft tie" in res.report()


@pytest.mark.parametrize("spread", [0.02, None])
def test_distributed_fit_matches_serial(spread):
    from tiedsci.parallel import SerialExecutor

    a = _offsets(5, 0.03, spread=spread)[0].fit(**TIGHT)
    b = _offsets(5, 0.03, spread=spread)[0].fit(executor=SerialExecutor(), n_batches=3,
                                                 **TIGHT)
    _close(a, b, tol=1e-7)
    assert a.soft["n_eff"] == pytest.approx(b.soft["n_eff"], rel=1e-7)


@pytest.mark.parametrize("spread", [0.0, 0.05, math.inf])
def test_staged_fit_reaches_the_unstaged_optimum(spread):
    stages = [{"name": "bkg", "vary": ["d0.bkg", "d1.bkg", "d2.bkg"]},
              {"name": "all", "vary": ["*"]}]
    plain = _gauss()
    plain.registry.soft_tie(WIDTHS, spread)
    staged = _gauss()
    staged.registry.soft_tie(WIDTHS, spread)
    a, b = plain.fit(**TIGHT), staged.fit(stages=stages, **TIGHT)
    assert a.n_free == b.n_free
    assert b.chi2 == pytest.approx(a.chi2, rel=1e-8)


def test_run_file_soft_tie(tmp_path, capsys):
    import json

    from tiedsci.cli import main

    folder = tmp_path / "run"
    assert main(["init", "refine", str(folder)]) == 0
    run = folder / "run.toml"
    run.write_text(run.read_text() + '\n[[soft_tie]]\nparams = ["a.height", "b.height"]\n'
                   'centre = "height.centre"\n')
    capsys.readouterr()
    assert main(["refine", "run", str(run), "--quiet", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert "height.centre" in summary["values"]
    assert "soft tie of a.height, b.height" in (tmp_path / "o" / "report.txt").read_text()
