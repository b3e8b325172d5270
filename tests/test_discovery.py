"""The domain-agnostic part of tie discovery: criteria, the path table, plot and file."""

import math

import numpy as np
import pytest

from tiedsci.discovery import (
    CRITERIA,
    DiscoveryPath,
    PathStep,
    best_of,
    check_criterion,
    criterion_value,
    load_path,
)
from tiedsci.errors import CriterionError


def _path(criterion="bic", n_obs=100):
    path = DiscoveryPath(criterion, n_obs)
    for i, (k, ll) in enumerate([(10, -500.0), (8, -501.0), (6, -530.0)]):
        crit = criterion_value(criterion, loglik=ll, n_free=k, n_obs=n_obs)
        path.steps.append(PathStep(i, "start" if i == 0 else "means", (f"g{i}", f"h{i}"),
                                   k, 0 if i == 0 else -2, ll, crit,
                                   predicted=math.nan if i == 0 else 1.5, iterations=3 * i,
                                   seconds=0.1 * i))
        path.models.append(f"model {i}")
    return path


def test_criteria_against_hand_formulas():
    assert criterion_value("bic", loglik=-10.0, n_free=3, n_obs=50) == 20.0 + 3 * math.log(50)
    assert criterion_value("aic", loglik=-10.0, n_free=3, n_obs=50) == 26.0
    assert criterion_value("heldout", loglik=0.0, n_free=3, n_obs=5, heldout=-7.0) == 14.0
    assert set(CRITERIA) == {"bic", "aic", "heldout"}


def test_unknown_or_incomputable_criteria_are_named():
    with pytest.raises(CriterionError, match="'bci'.*did you mean 'bic'"):
        check_criterion("bci")
    with pytest.raises(CriterionError, match="held-out"):
        criterion_value("heldout", loglik=0.0, n_free=1, n_obs=1)
    with pytest.raises(CriterionError, match="unknown criterion"):
        DiscoveryPath("likelihood", 10)
    with pytest.raises(ValueError):  # CriterionError is a ValueError for callers
        check_criterion("nope")


def test_best_is_the_lowest_criterion_and_the_table_marks_it():
    path = _path()
    # BIC: -2ll + k ln 100: 1046.05, 1038.84, 1087.63 -> step 1
    assert path.best == 1 and path.best_model == "model 1"
    rows = path.rows()
    assert [r["chosen"] for r in rows] == [False, True, False]
    marked = [line for line in path.table().splitlines() if line.startswith("*")]
    assert len(marked) == 1 and "g1 + h1" in marked[0]


def test_path_round_trips_exactly(tmp_path):
    path = _path("aic")
    path.info["start"] = "k-means, 4 seeds"
    path.save(tmp_path / "path")
    back = load_path(tmp_path / "path")
    assert repr(back.steps) == repr(path.steps)  # exact floats (NaN != NaN, so by repr)
    assert back.criterion == "aic" and back.info == path.info
    assert back.models == []


def test_plot_marks_the_chosen_point():
    fig = _path().plot()
    ax = fig.axes[0]
    chosen = [ln for ln in ax.lines if ln.get_label().startswith("chosen")]
    assert len(chosen) == 1
    np.testing.assert_allclose(chosen[0].get_xydata(), [[8, _path().steps[1].criterion]])


def test_best_of_several_paths():
    a, b = _path(), _path()
    b.steps[2] = PathStep(2, "means", ("x",), 6, -2, -400.0,
                          criterion_value("bic", loglik=-400.0, n_free=6, n_obs=100))
    assert best_of([a, b]) is b
    with pytest.raises(ValueError):
        best_of([])


def test_choice_under_another_criterion_on_the_same_path():
    path = _path("bic")
    # AIC: -2ll + 2k: 1020, 1018, 1072 -> step 1; with held-out scores the best held-out wins
    assert path.choice("aic") == 1
    with pytest.raises(CriterionError, match="held-out"):
        path.choice("heldout")
    path.steps[:] = [PathStep(s.step, s.kind, s.merged, s.n_free, s.dk, s.loglik, s.criterion,
                              heldout=h) for s, h in zip(path.steps, (-90.0, -95.0, -80.0))]
    assert path.choice("heldout") == 2
