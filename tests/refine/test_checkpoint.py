"""Refinement checkpoints: the API writes them in the one bundle convention, exactly."""

import json

import pytest

from tests.refine.conftest import gauss_data, gauss_model
from tiedsci.errors import CheckpointError
from tiedsci.refine import JointRefinement, load_checkpoint, save_checkpoint


def _jr(seed=0, center=0.0):
    jr = JointRefinement()
    for ds in gauss_data(seed):
        jr.add(ds, gauss_model)
    jr.shared("center", center)
    jr.local("amp", 6.0)
    jr.local("width", 1.2)
    jr.local("bkg", 0.0)
    return jr


STAGES = [{"name": "bkg", "vary": ["*.bkg"]}, {"name": "all", "vary": ["*"]}]


def test_every_state_round_trips_exactly(tmp_path):
    states = []
    _jr().fit(stages=STAGES, checkpoint=states.append)
    assert any(s["lm"] is None for s in states) and any(s["lm"] is not None for s in states)
    for k, state in enumerate(states):
        back = load_checkpoint(save_checkpoint(tmp_path / f"c{k}", state))
        assert back.keys() == state.keys()
        assert (back["stage"], back["stage_name"], back["fingerprint"]) == \
            (state["stage"], state["stage_name"], state["fingerprint"])
        assert back["stages"] == list(state["stages"])
        assert [back[c] for c in ("nfev", "njev", "n_iter")] == \
            [state[c] for c in ("nfev", "njev", "n_iter")]
        assert list(back["values"]) == list(state["values"])
        for name, v in state["values"].items():
            assert back["values"][name].tobytes() == v.tobytes()
        if state["lm"] is not None:
            a, b = state["lm"], back["lm"]
            assert a.theta.tobytes() == b.theta.tobytes()
            assert a.scale.tobytes() == b.scale.tobytes()
            assert (a.cost, a.mu, a.nfev, a.njev, a.n_iter) == \
                (b.cost, b.mu, b.nfev, b.njev, b.n_iter)


def test_resume_from_every_checkpoint_reaches_the_uninterrupted_optimum(tmp_path):
    jr = _jr()
    full = jr.fit(stages=STAGES)
    states = []
    jr.fit(stages=STAGES, checkpoint=states.append)
    assert len(states) > 4
    for state in states:  # at stage boundaries and inside stages, up to the last step
        save_checkpoint(tmp_path / "c", state)
        res = jr.fit(stages=STAGES, resume=tmp_path / "c.json")
        assert res.theta.tobytes() == full.theta.tobytes()
        assert (res.nfev, res.njev, res.n_iter) == (full.nfev, full.njev, full.n_iter)


def test_a_checkpoint_of_another_refinement_is_refused(tmp_path):
    _jr().fit(stages=STAGES, checkpoint=tmp_path / "c", max_nfev=5)
    assert json.loads((tmp_path / "c.json").read_text())["format"] == \
        "tiedsci.refine.checkpoint/2"
    with pytest.raises(CheckpointError, match="different refinement"):
        _jr(center=0.1).fit(stages=STAGES, resume=tmp_path / "c")
    with pytest.raises(CheckpointError, match="different refinement"):
        _jr(seed=1).fit(stages=STAGES, resume=tmp_path / "c")


def test_damaged_checkpoints_name_the_file(tmp_path):
    _jr().fit(stages=STAGES, checkpoint=tmp_path / "c", max_nfev=5)
    npz = tmp_path / "c.npz"
    npz.write_bytes(npz.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match=f"checkpoint {tmp_path / 'c.json'} is unreadable"):
        load_checkpoint(tmp_path / "c.json")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "none")
