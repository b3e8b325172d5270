"""The progress utility: exact end, silence off a terminal, one readable line per warning."""

from __future__ import annotations

import io
import warnings

from tiedsci.progress import StageProgress, progress_bar, readable_warnings


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_never_passes_its_total_and_finishes_at_100_percent():
    out = io.StringIO()
    bar = progress_bar(10, "work", stream=out)
    bar.update(4)
    bar.update(20)  # more than announced: clipped
    assert bar.n == 10
    bar.advance_to(3)  # never goes back
    assert bar.n == 10
    bar.finish()
    assert "100%" in out.getvalue()


def test_quiet_or_no_terminal_draws_nothing(monkeypatch):
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    progress_bar(5, "work").finish()
    progress_bar(5, "work", enabled=False, stream=_Terminal()).finish()
    assert pipe.getvalue() == ""


def test_stage_progress_counts_stages_from_a_restarting_step_count(monkeypatch):
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    stages = StageProgress(["scale", "cell", "all"])
    for n_iter in (1, 2, 3, 1, 2, 1):  # the LM step count restarts at each stage
        stages(n_iter, 10.0 / n_iter)
    assert stages.stage == 2 and stages.bar.n == 2
    stages.finish()
    assert stages.bar.n == 3 and "100%" in term.getvalue()


def test_warnings_become_one_line_each_and_the_log_keeps_them(tmp_path):
    err = io.StringIO()
    log = tmp_path / "demo.log"
    with readable_warnings(log, stream=err) as notes:
        for stage in ("+ cell", "+ U, V, W"):
            warnings.warn(f"stage '{stage}' did not converge: stopped", RuntimeWarning,
                          stacklevel=1)
        warnings.warn("old API", DeprecationWarning, stacklevel=1)
    assert notes == ["note: stage '+ cell', '+ U, V, W' did not converge: stopped"]
    assert err.getvalue().strip() == notes[0]
    assert "DeprecationWarning: old API" in log.read_text()  # to the log only
    assert "RuntimeWarning" in log.read_text() and ".py:" in log.read_text()
