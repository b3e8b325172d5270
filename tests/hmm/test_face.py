"""The verbs every tiedsci domain has: fit -> self, report(), plot(), save(path), load(path)."""

import json

import matplotlib
import numpy as np
import pytest

import tiedsci.hmm as th


@pytest.fixture
def fitted(rng):
    x = np.concatenate([rng.normal(0, 1, (60, 1)), rng.normal(4, 1, (60, 1))])
    model = th.GaussianHMM(3, n_iter=30, tol=1e-6, random_state=0, ties={"means": [[0, 1]]})
    return model.fit(x, [60, 60]), x


def test_report_has_the_outcome_and_the_tie_table(fitted):
    model, _ = fitted
    text = model.report()
    assert f"{model.n_free} free parameters" in text
    assert f"EM: {model.monitor_.iter} iterations" in text
    assert "tied to means[0,0]" in text
    assert not hasattr(model, "describe")  # one spelling


def test_report_says_when_em_was_interrupted(rng):
    x = rng.normal(size=(50, 1))

    def stop(state):
        raise KeyboardInterrupt

    model = th.GaussianHMM(2, n_iter=9, random_state=0).fit(x, on_iteration=stop)
    assert "1 iterations, interrupted" in model.report()


def test_plot_is_a_figure_and_leaves_matplotlib_alone(fitted, tmp_path):
    from matplotlib.figure import Figure

    model, x = fitted
    backend = matplotlib.get_backend()
    fig = model.plot(x, [60, 60], path=tmp_path / "states.png")
    assert isinstance(fig, Figure) and len(fig.axes) >= 2
    assert (tmp_path / "states.png").stat().st_size > 0
    history = model.plot()  # no data: EM history and transition matrix
    line = history.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_ydata(), model.monitor_.history)
    assert matplotlib.get_backend() == backend


def test_save_load_round_trips_monitor_and_extra(fitted, tmp_path):
    from tiedsci.hmm.io import load_with_extra

    model, x = fitted
    json_path, npz_path = model.save(tmp_path / "m", extra={"note": [1, 2]})
    assert json.loads(json_path.read_text())["format"] == "tiedsci.hmm/2"
    back, extra = load_with_extra(tmp_path / "m.json")
    assert extra == {"note": [1, 2]}
    assert back.monitor_ == model.monitor_
    assert back.report() == model.report()
    assert th.load(npz_path).score(x, [60, 60]) == model.score(x, [60, 60])


def test_shared_fit_report_lists_every_model(rng):
    a, b = th.GaussianHMM(2, random_state=0), th.GaussianHMM(2, random_state=1)
    res = th.fit_shared([a, b], [rng.normal(size=(40, 1)), rng.normal(size=(30, 1))],
                        shared_states=[[(0, 0), (1, 0)]], n_iter=5)
    text = res.report()
    assert "shared fit of 2 models" in text and "--- model 1" in text
    assert f"{res.n_free} free parameters" in text
