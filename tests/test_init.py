"""``tiedsci init``: run files and data to start from, which run as they are."""

from __future__ import annotations

import json

import pytest

from tiedsci.cli import main


@pytest.mark.parametrize("kind, verb", [("hmm", "fit"), ("refine", "run"), ("pinn", "solve")])
def test_init_writes_a_run_file_that_passes_check(tmp_path, capsys, kind, verb):
    assert main(["init", kind, str(tmp_path / kind)]) == 0
    run = tmp_path / kind / "run.toml"
    assert run.read_text().count("#") >= 5  # commented
    capsys.readouterr()
    assert main([kind, verb, str(run), "--check"]) == 0
    assert main(["init", kind, str(tmp_path / kind)]) == 2  # never overwrites silently


@pytest.mark.parametrize("kind, verb", [("hmm", "fit"), ("refine", "run")])
def test_init_templates_run_as_they_are(tmp_path, capsys, kind, verb):
    main(["init", kind, str(tmp_path)])
    capsys.readouterr()
    assert main([kind, verb, str(tmp_path / "run.toml"), "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary.get("converged", True) is not False
    assert summary["n_free"] > 0


def test_run_command_help_lists_the_keys_itself(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["refine", "run", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "docs/cli.md" not in out
    for key in ("[[dataset]]", "columns", "max_nfev", "[fit]"):
        assert key in out, key
