"""The one EM loop: start=, on_iteration= and Ctrl-C; resume is bit-identical for every caller."""

import numpy as np
import pytest

import tiedsci.hmm as th
from tiedsci.hmm.em import EMState
from tiedsci.parallel import SerialExecutor

ARRAYS = ("startprob_", "transmat_", "means_", "covars_", "emissionprob_", "lambdas_",
          "weights_")


def _assert_identical(a, b):
    for name in ARRAYS:
        x, y = getattr(a, name, None), getattr(b, name, None)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.tobytes() == y.tobytes(), name
    assert a.monitor_.history == b.monitor_.history
    assert a.monitor_.iter == b.monitor_.iter


def _stop_at(n):
    def on_iteration(state):
        if state.monitor.iter == n:
            raise KeyboardInterrupt

    return on_iteration


def _cases(rng):
    xg = np.concatenate([rng.normal(0, 1, (70, 2)), rng.normal(3, 0.5, (70, 2))])
    xs = rng.integers(0, 4, (140, 1))
    xp = rng.poisson(3.0, (140, 2)).astype(float)
    return [
        (lambda: th.GaussianHMM(3, "full", n_iter=12, tol=-1.0, random_state=0,
                                ties={"covars": [[0, 1]]}), xg),
        (lambda: th.GaussianHMM(2, "tied", n_iter=12, tol=-1.0, random_state=0), xg),
        (lambda: th.GMMHMM(2, 2, covariance_type="diag", n_iter=12, tol=-1.0,
                           random_state=0), xg),
        (lambda: th.CategoricalHMM(3, n_iter=12, tol=-1.0, random_state=0,
                                   tie_states=[[1, 2]]), xs),
        (lambda: th.PoissonHMM(2, n_iter=12, tol=-1.0, random_state=0,
                               ties={"transmat": [[0, 1]]}), xp),
    ]


@pytest.mark.parametrize("case", range(5), ids=["gauss-full", "gauss-tied", "gmm",
                                                 "categorical", "poisson"])
def test_interrupt_save_load_resume_is_bit_identical(tmp_path, rng, case):
    make, x = _cases(rng)[case]
    lengths = [70, 70]
    full = make().fit(x, lengths)
    part = make().fit(x, lengths, on_iteration=_stop_at(5))
    assert part.monitor_.interrupted and not part.monitor_.converged
    assert part.monitor_.iter == 5
    part.save(tmp_path / "ckpt")
    resumed = make().fit(x, lengths, start=th.load(tmp_path / "ckpt").em_state())
    assert resumed.monitor_.iter == 12 and not resumed.monitor_.interrupted
    _assert_identical(resumed, full)
    assert resumed.monitor_ == full.monitor_


def test_on_iteration_sees_every_state_and_may_stop(rng):
    x = rng.normal(size=(80, 1))
    seen = []

    def on_iteration(state):
        seen.append((state.monitor.iter, state.monitor.history[-1]))
        assert isinstance(state, EMState) and set(state.values) >= {"startprob", "means"}
        return state.monitor.iter == 4

    model = th.GaussianHMM(2, n_iter=50, tol=-1.0, random_state=0)
    model.fit(x, on_iteration=on_iteration)
    assert [n for n, _ in seen] == [1, 2, 3, 4]
    assert model.monitor_.iter == 4 and not model.monitor_.converged
    assert not model.monitor_.interrupted
    assert model.monitor_.history == [ll for _, ll in seen]


def test_on_iteration_sees_the_attributes_of_that_iterate(tmp_path, rng):
    """Checkpoints are written from the callback with the estimator's own save."""
    x = rng.normal(size=(80, 1))
    model = th.GaussianHMM(2, n_iter=6, tol=-1.0, random_state=0)
    model.fit(x, on_iteration=lambda s: model.save(tmp_path / f"it{s.monitor.iter}"))
    third = th.load(tmp_path / "it3")
    assert third.monitor_.iter == 3
    again = th.GaussianHMM(2, n_iter=6, tol=-1.0, random_state=0)
    _assert_identical(again.fit(x, start=third.em_state()), model)


def test_start_from_values_and_a_converged_state(rng):
    x = rng.normal(size=(80, 1))
    model = th.GaussianHMM(2, n_iter=200, tol=1e-6, random_state=0).fit(x)
    assert model.monitor_.converged
    state = model.em_state()
    again = th.GaussianHMM(2, n_iter=200, tol=1e-6).fit(x, start=state)
    assert again.monitor_.iter == model.monitor_.iter  # nothing left to do
    _assert_identical(again, model)
    fresh = th.GaussianHMM(2, n_iter=3, tol=-1.0).fit(x, start=state.values)
    assert fresh.monitor_.iter == 3  # values alone: a new run from there


def test_interrupt_in_an_e_step_keeps_the_last_complete_iterate(rng, monkeypatch):
    import tiedsci.hmm.em as em

    x = rng.normal(size=(80, 1))
    ref = th.GaussianHMM(2, n_iter=3, tol=-1.0, random_state=0).fit(x)
    real, calls = em.e_step, []

    def e_step(values, problem):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(values, problem)

    monkeypatch.setattr(em, "e_step", e_step)
    model = th.GaussianHMM(2, n_iter=10, tol=-1.0, random_state=0).fit(x)
    assert model.monitor_.interrupted and model.monitor_.iter == 3
    _assert_identical(model, ref)
    calls.clear()
    calls.extend([1, 1, 1])  # the next E-step is the fourth: interrupted before any iteration
    first = th.GaussianHMM(2, n_iter=10, tol=-1.0, random_state=0).fit(x)
    assert first.monitor_.interrupted and first.monitor_.iter == 0
    assert first.monitor_.history == []


def test_distributed_fit_resumes_bit_identically(rng):
    x = rng.normal(size=(240, 2))
    lengths = [60] * 4

    def make():
        return th.GaussianHMM(2, n_iter=8, tol=-1.0, random_state=0, tie_states=[[0, 1]])

    full = make().fit(x, lengths, executor=SerialExecutor(), n_shards=2)
    part = make().fit(x, lengths, executor=SerialExecutor(), n_shards=2,
                      on_iteration=_stop_at(3))
    resumed = make().fit(x, lengths, executor=SerialExecutor(), n_shards=2,
                         start=part.em_state())
    _assert_identical(resumed, full)


def test_shared_fit_resumes_bit_identically(rng):
    xa, xb = rng.normal(0, 1, (90, 1)), rng.normal(2, 1, (60, 1))

    def fit(**kw):
        a = th.GaussianHMM(2, covars_prior=0, random_state=0)
        b = th.GaussianHMM(2, covars_prior=0, random_state=1)
        return th.fit_shared([a, b], [xa, xb], shared_states=[[(0, 1), (1, 0)]], n_iter=10,
                             tol=-1.0, **kw)

    full = fit()
    part = fit(on_iteration=_stop_at(4))
    assert part.monitor.interrupted and part.monitor.iter == 4
    resumed = fit(start=part.state)
    assert resumed.monitor == full.monitor
    for m, n in zip(resumed.models, full.models):
        _assert_identical(m, n)
