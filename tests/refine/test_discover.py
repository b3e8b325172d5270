"""Tie discovery in refinement: planted recovery, valid registries on the path, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tiedsci.discovery import load_path
from tiedsci.errors import CriterionError, NotFittedError, UnknownParameterError
from tiedsci.refine import Dataset, JointRefinement, load
from tiedsci.refine.planted import zero_shift_groups
from tiedsci.refine.tiesearch import discover


def _partition(path, i):
    return sorted(sorted(n.split(".")[0] for n in g) for g in path.info["groups"][i]["zero"])


@pytest.fixture(scope="module")
def planted_paths():
    out = []
    for seed in range(10):
        jr, truth = zero_shift_groups(seed)
        out.append((jr, truth, discover(jr, jr.fit(), ["zero"])))
    return out


def test_planted_groups_recovered_at_bic_in_9_of_10_seeds(planted_paths):
    hits = [_partition(p, p.best) == sorted(t["groups"]) for _, t, p in planted_paths]
    assert sum(hits) >= 9, hits


def test_every_model_on_the_path_is_a_valid_registry(planted_paths):
    jr, _, path = planted_paths[0]
    n_start = 2 + 2 * len(jr.dataset_names)  # c, width; scale and zero per dataset
    for i, (step, res) in enumerate(zip(path.steps, path.models)):
        assert step.n_free == res.n_free == res.layout.n_free == n_start - i  # by hand
        for group in path.info["groups"][i]["zero"]:
            vals = {float(res.values[n]) for n in group}
            assert len(vals) == 1  # ties hold exactly
        assert step.loglik == pytest.approx(-0.5 * res.chi2)
        assert step.dk == (0 if i == 0 else -1)
    assert path.steps[-1].n_free == 2 + len(jr.dataset_names) + 1
    assert "tied to" in path.best_model.layout.describe()


def test_wald_prediction_tracks_the_refit(planted_paths):
    _, _, path = planted_paths[0]
    for i in range(1, len(path.steps)):
        rise = -2 * (path.steps[i].loglik - path.steps[i - 1].loglik)
        assert path.info["wald"][i] == pytest.approx(rise, rel=0.1, abs=0.5)


def test_path_and_chosen_model_save_and_load(planted_paths, tmp_path):
    _, _, path = planted_paths[1]
    back = load_path(path.save(tmp_path / "path"))
    assert back.best == path.best and back.info["groups"] == path.info["groups"]
    res = load(path.best_model.save(tmp_path / "best"))
    assert res.n_free == path.steps[path.best].n_free
    assert path.plot().axes


def _two_lines(offset: float, seed: int = 0, split_slope: float = 0.0) -> JointRefinement:
    """``y = a x + b`` on d0 and ``y = a' x + b + off`` on d1 (``off`` declared on d1)."""
    rng = np.random.default_rng(seed)
    jr = JointRefinement()
    x = np.linspace(0, 1, 200)
    for k, (off, da) in enumerate([(0.0, 0.0), (offset, split_slope)]):
        y = (1.0 + da) * x + 0.5 + off + 0.05 * rng.standard_normal(x.size)
        model = (lambda v, x: v["a"] * x + v["b"]) if k == 0 else (
            lambda v, x: v["a"] * x + v["b"] + v["off"])
        jr.add(Dataset(x, y, sigma=0.05, name=f"d{k}"), model)
    jr.shared("a", 1.0)
    jr.shared("b", 0.0)
    jr.local("off", 0.0, datasets=["d1"])
    return jr


@pytest.mark.parametrize("offset, zeroed", [(0.0, True), (0.05, False)])
def test_offset_candidate(offset, zeroed):
    jr = _two_lines(offset)
    path = discover(jr, jr.fit(), [], offsets=["d1.off"])
    assert [s.kind for s in path.steps] == ["start", "offset=0"]
    assert path.steps[1].dk == -1
    assert (path.best == 1) is zeroed


@pytest.mark.parametrize("slope, wanted", [(0.0, False), (0.2, True)])
def test_split_of_a_shared_parameter(slope, wanted):
    jr = _two_lines(0.0, split_slope=slope)
    path = discover(jr, jr.fit(), [], splits=["a"])
    assert [s.kind for s in path.steps] == ["start", "split"]
    assert path.steps[1].dk == 1  # two slopes instead of one
    assert (path.best == 1) is wanted
    if wanted:
        assert float(path.best_model.values["d1.a"]) == pytest.approx(1.2, abs=0.05)


def test_heldout_criterion_scores_with_the_callable():
    jr = _two_lines(0.0)
    calls = []

    def held(res):
        calls.append(res.n_free)
        return -float(res.values["d1.off"]) ** 2

    path = discover(jr, jr.fit(), [], offsets=["d1.off"], criterion="heldout", heldout=held)
    assert calls == [3, 2] and path.best == 1


def test_named_errors():
    jr, _ = zero_shift_groups(0, n_points=60)
    res = jr.fit()
    with pytest.raises(UnknownParameterError, match="zero"):
        discover(jr, res, ["zeros"])
    with pytest.raises(UnknownParameterError, match="not declared"):
        discover(jr, res, offsets=["nope"])
    with pytest.raises(CriterionError, match="did you mean 'bic'"):
        discover(jr, res, criterion="bics")
    with pytest.raises(NotFittedError):
        discover(jr, None)
    with pytest.raises(CriterionError, match="held-out"):
        discover(jr, res, ["zero"], criterion="heldout")


def test_cli_refine_discover(tmp_path, capsys):
    import json

    from tiedsci.cli import main

    folder = tmp_path / "run"
    assert main(["init", "refine", str(folder)]) == 0
    run = folder / "run.toml"
    text = run.read_text()
    run.write_text(text + '\n[discover]\ncandidates = ["height"]\n')
    capsys.readouterr()
    assert main(["refine", "discover", str(run), "--quiet", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out)
    steps = summary["discovery"]["steps"]
    assert [s["kind"] for s in steps] == ["start", "local->shared"]
    for name in ("discovery.json", "discovery.txt", "discovery.png", "best_report.txt"):
        assert (tmp_path / "o" / name).exists()
    page = (tmp_path / "o" / "report.html").read_text()
    assert "Tie-discovery path" in page and "data:image/png;base64" in page
    assert load_path(tmp_path / "o" / "discovery.json").best == summary["discovery"]["best"]
    run.write_text(text + '\n[discover]\ncandidates = ["heigth"]\n')
    assert main(["refine", "discover", str(run), "--quiet", "--out", str(tmp_path / "p")]) == 2
    assert "did you mean 'height'" in capsys.readouterr().err


def test_after_a_staged_fit_parameters_no_stage_varied_stay_fixed():
    jr, _ = zero_shift_groups(3, n_points=200)
    start = jr.fit(stages=[{"name": "locals", "vary": ["scale", "zero"]},
                           {"name": "c", "vary": ["scale", "zero", "c"]}])
    assert start.n_free == 13  # width never varied
    path = discover(jr, start, ["zero"], max_steps=2)
    assert [s.n_free for s in path.steps] == [13, 12, 11]
    assert all(float(m.values["width"]) == float(start.values["width"]) for m in path.models)


def test_start_of_another_refinement_is_refused():
    jr, _ = zero_shift_groups(0, n_points=60)
    other = _two_lines(0.0)
    with pytest.raises(NotFittedError, match="not a fit of this refinement"):
        discover(jr, other.fit(), ["zero"])


def test_example_sections_return_json(capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "tie_discovery_refine.py"
    spec = importlib.util.spec_from_file_location("tie_discovery_refine", path)
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    planted = ex.planted(seeds=2)
    assert planted["recovered"]["bic"] == 2 and len(planted["seeds"]) == 2
    pooling = ex.partial_pooling(seeds=1)
    assert set(pooling["mean_heldout_chi2"]) == {"hard", "none", "soft"}
    json.dumps(ex._clean({"planted": planted, "pooling": pooling}), allow_nan=False)
