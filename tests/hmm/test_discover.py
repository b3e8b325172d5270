"""Tie discovery for HMMs: valid registries on the path, the statistics bound, the reverse test,
named errors (planted-recovery rates: tests/reliability/test_hmm_discovery.py)."""

import json
import math

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.discovery import load_path
from tiedsci.errors import CriterionError, DeclarationError, NotFittedError, UnknownParameterError
from tiedsci.hmm.discovery import (
    Structure,
    discover,
    planted_recovery,
    split_test,
    sticky_gaussian_hmm,
)

PAIRS = [[0, 1], [2, 3]]


@pytest.fixture(scope="module")
def planted():
    """4 states in 2 pairs of identical emissions (different transitions), 2 features."""
    truth = sticky_gaussian_hmm(np.repeat([[0.0, 0.0], [3.0, 0.0]], 2, axis=0),
                                np.ones((4, 2)), stay=0.6, seed=7)
    x, z = truth.sample(1600, random_state=8)
    return x, np.full(8, 200), z


@pytest.fixture(scope="module")
def untied(planted):
    x, lengths, _ = planted
    fits = [th.GaussianHMM(4, "diag", n_iter=200, tol=1e-4, covars_prior=0,
                           random_state=s).fit(x, lengths) for s in range(3)]
    return max(fits, key=lambda f: f.monitor_.history[-1])


@pytest.fixture(scope="module")
def blocks_path(planted, untied):
    x, lengths, _ = planted
    return discover(untied, x, lengths, candidates=["means", "covars", "transmat"],
                    heldout=(x[:400], [200, 200]), n_iter=100)


def _hand_count(model, d):
    """startprob K-1, transition rows (K-1) per class, D per means / covars class."""
    s = Structure.from_model(model, ("means", "covars"))
    k = int(model.n_components)
    return (k - 1) + len(s.parts["transmat"]) * (k - 1) + d * len(s.parts["means"]) \
        + d * len(s.parts["covars"])


def _check_path(path, d):
    for step, model in zip(path.steps, path.models):
        layout = model.build_registry(model._values()).compile()
        assert step.n_free == layout.n_free == model.n_free == _hand_count(model, d)
        for name, groups in (model.ties or {}).items():
            arr = {"means": model.means_, "covars": model._covars_,
                   "transmat": model.transmat_}[name]
            for g in groups:
                assert np.all(arr[g] == arr[g[0]]), (name, g)  # exact ties
        assert np.all(model.transmat_ > 0) and np.all(model.startprob_ > 0)


def test_state_path_is_valid_and_the_best_model_is_the_planted_one(planted, untied):
    x, lengths, z = planted
    path = discover(untied, x, lengths, n_iter=100)
    assert [s.kind for s in path.steps] == ["start"] + ["state"] * 3
    assert [s.dk for s in path.steps] == [0, -4, -4, -4]
    _check_path(path, 2)
    rec = planted_recovery(path.best_model, x, lengths, z, PAIRS)
    assert rec["emission"], rec
    assert path.steps[path.best].n_free == untied.n_free - 8
    assert all(s.seconds >= 0 and s.iterations >= 1 for s in path.steps)
    assert path.models[0] is untied


def test_refitted_loglik_respects_the_statistics_bound(planted, untied):
    """EM inequality: the warm start loses at most ``cost``, the refit only gains."""
    x, lengths, _ = planted
    path = discover(untied, x, lengths, n_iter=100)
    pen = math.log(path.n_obs)
    for prev, step in zip(path.steps, path.steps[1:]):
        cost = (step.predicted - step.dk * pen) / 2
        assert cost >= 0
        assert step.loglik >= prev.loglik - cost - 1e-6 * abs(prev.loglik)


def test_block_candidates_give_valid_models_and_never_lumpable_merges(blocks_path):
    path = blocks_path
    _check_path(path, 2)
    kinds = {s.kind for s in path.steps[1:]}
    assert kinds <= {"means", "covars", "transmat"} and len(kinds) >= 2
    for m in path.models:
        s = Structure.from_model(m, ("means", "covars"))
        for c in s.emission_classes():
            assert not (len(c) > 1 and s.lumpable(c))
    assert all(np.isfinite(s.heldout) for s in path.steps)


def test_heldout_and_aic_criteria_score_the_same_refits(planted, untied):
    x, lengths, _ = planted
    held = (x[:400], [200, 200])
    path = discover(untied, x, lengths, criterion="heldout", heldout=held, max_steps=1,
                    n_iter=50)
    assert len(path.steps) == 2
    assert path.steps[1].criterion == pytest.approx(-2 * path.steps[1].heldout)
    aic = discover(untied, x, lengths, criterion="aic", max_steps=1, n_iter=50)
    s = aic.steps[1]
    assert s.criterion == pytest.approx(-2 * s.loglik + 2 * s.n_free)


def test_path_round_trips_and_the_best_model_saves(planted, untied, tmp_path):
    x, lengths, _ = planted
    path = discover(untied, x, lengths, max_steps=2, n_iter=50)
    path.save(tmp_path / "path")
    back = load_path(tmp_path / "path")
    assert json.dumps(back.rows()) == json.dumps(path.rows()) and back.best == path.best
    path.best_model.save(tmp_path / "best")
    assert th.load(tmp_path / "best").n_free == path.steps[path.best].n_free
    assert "state" in path.table()


def test_reverse_test_keeps_a_true_tie(planted):
    x, lengths, _ = planted
    true = th.GaussianHMM(4, "diag", n_iter=100, tol=1e-4, random_state=0, covars_prior=0,
                          tie_states=PAIRS).fit(x, lengths)
    st = true.suff_stats(x, lengths)
    # label the fitted pairs by their means: the declared tie is what the data show
    assert np.allclose(true.means_[0], true.means_[1])
    keep = split_test(true, x, lengths, n_iter=100)
    assert keep.best == 0 and [s.kind for s in keep.steps] == ["declared"] + ["split"] * 6
    assert [s.dk for s in keep.steps[1:]] == [2, 2, 2, 2, 4, 4]
    assert st.n.sum() == pytest.approx(len(x))


def test_reverse_test_splits_a_false_tie():
    """Four distinct emissions fitted as two tied pairs: the data want the pairs split."""
    truth = sticky_gaussian_hmm([[0.0], [2.5], [5.0], [7.5]], np.ones((4, 1)),
                                concentration=1.0, seed=11)
    x, _ = truth.sample(1200, random_state=12)
    lengths = np.full(6, 200)
    wrong = th.GaussianHMM(4, "diag", n_iter=100, tol=1e-4, random_state=0, covars_prior=0,
                           tie_states=PAIRS).fit(x, lengths)
    split = split_test(wrong, x, lengths, n_iter=100)
    merged = [s.merged[0] for s in split.steps[1:]]
    assert set(merged) == {"means{0,1}", "means{2,3}", "covars{0,1}", "covars{2,3}",
                           "state{0,1}", "state{2,3}"}
    assert split.best != 0
    assert split.steps[split.best].criterion < split.steps[0].criterion - 10


def test_named_errors(planted, untied):
    x, lengths, _ = planted
    with pytest.raises(UnknownParameterError, match="unknown candidate kinds.*meanz"):
        discover(untied, x, lengths, candidates=["meanz"])
    with pytest.raises(CriterionError, match="did you mean 'bic'"):
        discover(untied, x, lengths, criterion="bick")
    with pytest.raises(CriterionError, match="held-out"):
        discover(untied, x, lengths, criterion="heldout")
    with pytest.raises(NotFittedError, match="fitted"):
        discover(th.GaussianHMM(4), x, lengths)
    with pytest.raises(NotFittedError, match="fitted"):
        split_test(th.GaussianHMM(4, tie_states=PAIRS), x, lengths)
    with pytest.raises(DeclarationError, match="supports"):
        discover(th.GaussianHMM(2, "full").fit(x, lengths), x, lengths)
    with pytest.raises(DeclarationError, match="start must be"):
        discover(untied, x, lengths, start="random")
    with pytest.raises(DeclarationError, match="soft_ties"):
        discover(th.GaussianHMM(4, soft_ties={"means": PAIRS}, n_iter=2).fit(x, lengths), x,
                 lengths)


def test_split_grown_start_reports_its_allocation(planted):
    x, lengths, _ = planted
    path = discover(th.GaussianHMM(4, "diag", covars_prior=0), x, lengths, start="split",
                    n_iter=60, tol=1e-3, max_steps=1)
    info = path.info
    assert info["method"] == "split" and sum(info["copies"]) == 4
    assert len(info["copies"]) == info["M"] and len(info["occupancy"]) == 4
    assert path.models[0].ties is None and path.steps[0].kind == "start"


DISCOVER_RUN = """
[data]
path = "bundled:earthquakes.csv"
columns = [1]

[model]
family = "poisson"
n_components = 3
n_iter = 200
random_state = 0

[discover]
candidates = ["state", "transmat"]
n_iter = 100
"""


def test_cli_hmm_discover_writes_the_path(tmp_path, capsys):
    from tiedsci.cli import main

    (tmp_path / "run.toml").write_text(DISCOVER_RUN)
    assert main(["hmm", "discover", str(tmp_path / "run.toml"), "--out",
                 str(tmp_path / "out"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    path = load_path(tmp_path / "out" / "path")
    assert summary["best_step"] == path.best and summary["n_free"] == path.steps[path.best].n_free
    assert (tmp_path / "out" / "path.png").stat().st_size > 1000
    assert "n_free" in (tmp_path / "out" / "path.txt").read_text()
    assert th.load(tmp_path / "out" / "model").n_free == summary["n_free"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Tie-discovery path" in page and "data:image/png;base64" in page
    (tmp_path / "bad.toml").write_text(DISCOVER_RUN.replace('"transmat"]', '"rates"]'))
    assert main(["hmm", "discover", str(tmp_path / "bad.toml"), "--quiet"]) == 2
    assert "rates" in capsys.readouterr().err


def test_report_shows_a_discovery_path(planted, untied, tmp_path):
    from tiedsci.report import write_html_report

    x, lengths, _ = planted
    path = discover(untied, x, lengths, max_steps=1, n_iter=20)
    page = write_html_report(tmp_path, {"tie_discovery": {"discovery": path.to_dict()}})
    text = page.read_text()
    assert "Tie-discovery path, chosen by BIC" in text
    assert " + ".join(path.steps[1].merged) in text and text.count("&#9733;") >= 2


def test_rescored_candidates_run_through_an_executor(planted, untied):
    from tiedsci.parallel import SerialExecutor

    x, lengths, _ = planted
    plain = discover(untied, x, lengths, max_steps=1, n_iter=30, final_iter=0)
    rescored = discover(untied, x, lengths, max_steps=1, n_iter=30, final_iter=0, rescore=3,
                        short_iter=5, executor=SerialExecutor())
    assert len(rescored.steps) == 2
    assert rescored.steps[1].dk == plain.steps[1].dk == -4
    _check_path(rescored, 2)


def test_example_earthquake_section_carries_the_path(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "tie_discovery.py"
    spec = importlib.util.spec_from_file_location("tie_discovery_example", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    res = mod.run(tmp_path, quick=True, only=["hmm_earthquakes"])["hmm_earthquakes"]
    doc = res["path"]
    assert doc["criterion"] == "bic" and len(doc["steps"]) >= 2
    assert doc["steps"][doc["best"]]["criterion"] == res["bic_discovered"]
    assert res["bic_discovered"] <= res["bic_untied"]
    assert (tmp_path / "earthquakes_path.png").is_file()
    assert json.loads((tmp_path / "tie_discovery.json").read_text())["hmm_earthquakes"]
