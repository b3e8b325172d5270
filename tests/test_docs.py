"""The documentation's code runs as shown.

Every fenced ``python`` block of ``docs/**/*.md`` and ``README.md`` is executed, the blocks of one
page in order and in one namespace (a tutorial builds up), in a temporary folder; every ``toml``
block is validated as a run file of the command its tables belong to. A block preceded by the
line ``<!-- fragment -->`` (invisible on the site) is an excerpt and is skipped; shell blocks
(``bash``) must be marked so. Blocks that include a file (``--8<--``) are the examples, which
their own tests run.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FENCE = re.compile(r"^( *)```(\w*)[^\n]*\n(.*?)^\1```", re.S | re.M)
MARK = "<!-- fragment -->"


def blocks(page: Path) -> list[tuple[str, str, int, bool]]:
    """``(language, code, line, is_fragment)`` of each fenced block of ``page``."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip().splitlines()
        fragment = bool(before) and before[-1].strip() == MARK
        code = "\n".join(line[len(m.group(1)):] for line in m.group(3).splitlines())
        out.append((m.group(2), code, text[: m.start()].count("\n") + 1, fragment))
    return out


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _runnable(page: Path, lang: str) -> list[tuple[str, int]]:
    return [(code, line) for k, code, line, frag in blocks(page)
            if k == lang and not frag and "--8<--" not in code]


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p, "python")], ids=_name)
def test_python_blocks_run_as_shown(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    for code, line in _runnable(page, "python"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", UserWarning)  # a doc example must not warn
            try:
                exec(compile(code, f"{_name(page)}:{line}", "exec"), namespace)
            except Exception as exc:  # pragma: no cover - the failure message
                pytest.fail(f"{_name(page)}, block at line {line}: {type(exc).__name__}: {exc}")


def _toml_command(text: str) -> str:
    if re.search(r"^\[problem\]", text, re.M):
        return "tiedsci.pinn.runfile"
    if re.search(r"^\[data\]", text, re.M):
        return "tiedsci.hmm.runfile"
    return "tiedsci.refine.runfile"


@pytest.mark.parametrize("page", [p for p in PAGES if _runnable(p, "toml")], ids=_name)
def test_toml_blocks_are_valid_run_files(page, tmp_path):
    from importlib import import_module

    from tiedsci.runfile import load_runfile

    for i, (code, line) in enumerate(_runnable(page, "toml")):
        path = tmp_path / f"block{i}.toml"
        path.write_text(code)
        module = import_module(_toml_command(code))
        try:
            load_runfile(path, module.SCHEMA, check_paths=False)
        except Exception as exc:  # pragma: no cover - the failure message
            pytest.fail(f"{_name(page)}, block at line {line}: {exc}")


def test_shell_blocks_are_marked_as_fragments():
    unmarked = [f"{_name(p)}:{line}" for p in PAGES for lang, _, line, frag in blocks(p)
                if lang in ("bash", "sh", "console") and not frag]
    assert not unmarked, f"mark these shell blocks with {MARK}: {unmarked}"


def test_a_fenced_block_is_found_on_every_tutorial():
    for page in (ROOT / "docs" / "tutorials").glob("*.md"):
        assert _runnable(page, "python"), page
