"""The shared run-file machinery: positions, schema validation, messages, reference tables."""

import json
import re
from pathlib import Path

import pytest

from tiedsci.errors import RunFileError
from tiedsci.runfile import (
    Field,
    MapOf,
    Table,
    Tables,
    atomic_write_text,
    key_label,
    load_runfile,
    parse_runfile,
    render_markdown,
    scan_positions,
    validate_config,
)

ROOT = Path(__file__).resolve().parents[1]

SCHEMA = Table({
    "title": Field("str", "A title.", default="untitled"),
    "fit": Table({
        "max_nfev": Field("int", "Budget.", ge=1),
        "tol": Field("float", "Tolerance.", gt=0, default=1e-8),
        "engine": Field("str", "Engine.", choices=("tiedsci", "lmfit"), default="tiedsci"),
        "verbose": Field("bool", "Talk.", default=False),
    }, "Solver."),
    "dataset": Tables(Table({
        "name": Field("str", "Name.", required=True),
        "file": Field("path", "Data file.", required=True),
        "limits": Field("list[float]", "Range.", length=2),
    }), "Datasets.", required=True),
    "shared": MapOf(Field("float|table", "Value.", table=Table({
        "value": Field("array", "Start.", required=True),
        "bounds": Field("str|list[float]", "Bounds.", finite=False),
    })), "Parameters.", key_doc="parameter"),
})

GOOD = """\
title = "demo"   # a comment with [brackets]

[fit]
max_nfev = 50

[[dataset]]
name = "a"
file = "a.dat"

[[dataset]]
name = "b"
file = "b.dat"
limits = [
  1.0,
  2.0,
]

[shared]
width = { value = 1.0, bounds = [0.1, inf] }
center = 3
"""


@pytest.fixture
def folder(tmp_path):
    for name in ("a.dat", "b.dat"):
        (tmp_path / name).write_text("1 2\n")
    return tmp_path


def _errors(text, folder, schema=SCHEMA):
    with pytest.raises(RunFileError) as info:
        parse_runfile(text, schema, name="run.toml", base=folder)
    return info.value.problems


def test_positions_follow_headers_arrays_inline_tables_and_multiline_values():
    text = GOOD + '\n[a.b]\nx = """\n[not.a.table]\n"""\ny.z = 1\n[[a.b.c]]\nw = 2\n'
    pos = scan_positions(text)
    assert pos[("title",)] == 1
    assert pos[("fit", "max_nfev")] == 4
    assert pos[("dataset", 0, "file")] == 8
    assert pos[("dataset", 1)] == 10
    assert pos[("dataset", 1, "limits")] == 13
    assert pos[("dataset", 1, "limits", 1)] == 15
    assert pos[("shared", "width", "bounds")] == 19
    assert pos[("shared", "center")] == 20
    assert pos[("a", "b", "y", "z")] == 26
    assert ("not", "a", "table") not in pos and ("not",) not in pos
    assert pos[("a", "b", "c", 0, "w")] == 28


def test_valid_file_gets_defaults_resolved_paths_and_converted_numbers(folder):
    rf = parse_runfile(GOOD, SCHEMA, name="run.toml", base=folder)
    assert rf.data["fit"] == {"max_nfev": 50, "tol": 1e-8, "engine": "tiedsci",
                              "verbose": False}
    assert rf.data["dataset"][1]["file"] == str(folder / "b.dat")
    assert rf.data["shared"]["center"] == 3.0 and isinstance(rf.data["shared"]["center"], float)
    assert rf.data["shared"]["width"]["bounds"] == [0.1, float("inf")]
    assert rf.line(("dataset", 1, "name")) == 11
    assert rf.line(("dataset", 1, "missing")) == 10  # falls back to the table header
    err = rf.error(("fit", "max_nfev"), "too small")
    assert str(err) == "run.toml, line 4: [fit] max_nfev: too small"


def test_messages_name_file_line_and_key(folder):
    text = GOOD.replace("max_nfev = 50", 'max_nfev = "abc"').replace('file = "a.dat"',
                                                                    'fle = "a.dat"')
    problems = _errors(text, folder)
    assert 'run.toml, line 4: [fit] max_nfev: expected an integer, got "abc"' in problems
    assert 'run.toml, line 8: unknown key [[dataset]] #1 fle (did you mean "file"?)' in problems
    assert 'run.toml, line 6: [[dataset]] #1: missing required key "file"' in problems
    assert [int(re.search(r"line (\d+)", p).group(1)) for p in problems] == [4, 6, 8]


@pytest.mark.parametrize("old, new, expected", [
    ("max_nfev = 50", "max_nfev = 0", "line 4: [fit] max_nfev: must be >= 1, got 0"),
    ("max_nfev = 50", "max_nfev = 5.0", "[fit] max_nfev: expected an integer, got 5.0"),
    ("max_nfev = 50", "tol = nan", "line 4: [fit] tol: expected a finite number, got nan"),
    ("max_nfev = 50", 'engine = "lmfi"',
     '[fit] engine: expected one of "tiedsci", "lmfit", got "lmfi" (did you mean "lmfit"?)'),
    ("max_nfev = 50", "verbose = 1", "[fit] verbose: expected true or false, got 1"),
    ('file = "b.dat"', 'file = "c.dat"', "line 12: [[dataset]] #2 file: no such file: "),
    ("  2.0,\n", "  2.0, 3.0,\n", "line 13: [[dataset]] #2 limits: expected 2 values, got 3"),
    ("  2.0,\n", '  "x",\n', "line 15: [[dataset]] #2 limits[1]: expected a number, got \"x\""),
    ("value = 1.0", "value = [1.0, nan]",
     "line 19: [shared.width] value[1]: expected a finite number, got nan"),
    ("center = 3", 'center = "3"', "line 20: [shared] center: expected a number or a table"),
    ("[shared]", "[shard]", 'line 18: unknown table [shard] (did you mean "shared"?)'),
])
def test_each_rule_reports_its_line(folder, old, new, expected):
    assert old in GOOD
    problems = _errors(GOOD.replace(old, new, 1), folder)
    assert any(expected in p for p in problems), problems


def test_missing_required_table_and_toml_syntax_error(folder, tmp_path):
    problems = _errors('title = "x"\n', folder)
    assert problems == ["run.toml: missing required table [[dataset]] (at least one)"]
    with pytest.raises(RunFileError, match=r"run.toml, line 4, column 12: invalid TOML: "
                                           r"Invalid value \(strings need quotes"):
        parse_runfile(GOOD.replace("max_nfev = 50", "max_nfev = fifty"), SCHEMA,
                      name="run.toml", base=folder)
    with pytest.raises(RunFileError, match="nope.toml: run file not found"):
        load_runfile(tmp_path / "nope.toml", SCHEMA)
    (tmp_path / "bin.toml").write_bytes(b"title = '\xff'\n")
    with pytest.raises(RunFileError, match="bin.toml: not UTF-8"):
        load_runfile(tmp_path / "bin.toml", SCHEMA)


def test_dict_configs_validate_without_lines(folder):
    with pytest.raises(RunFileError, match=r"^<config>: \[fit\] tol: must be > 0, got -1"):
        validate_config({"fit": {"tol": -1}, "dataset": [{"name": "a", "file": "a.dat"}]},
                        SCHEMA, base=folder)


def test_key_labels():
    assert key_label(("fit", "max_nfev")) == "[fit] max_nfev"
    assert key_label(("dataset", 0, "file")) == "[[dataset]] #1 file"
    assert key_label(("data", "columns", 2)) == "[data] columns[2]"
    assert key_label(("model", "ties", "covars")) == "[model.ties] covars"
    assert key_label(("title",)) == "title"
    assert key_label(("a b", "x")) == '["a b"] x'


def test_markdown_reference_lists_every_key_with_type_default_and_meaning():
    md = render_markdown(SCHEMA)
    assert "| `max_nfev` | integer ≥ 1 | unset | Budget. |" in md
    assert '| `engine` | string: `"tiedsci"`, `"lmfit"` | `"tiedsci"` | Engine. |' in md
    assert "| `name` | string | **required** | Name. |" in md
    assert "### `[[dataset]]`" in md and "### `[shared]`" in md
    assert "| `title` | string | `\"untitled\"` | A title. |" in md
    assert render_markdown(SCHEMA) == md  # deterministic


def _generated(text, domain):
    begin, end = f"<!-- BEGIN GENERATED {domain} -->", f"<!-- END GENERATED {domain} -->"
    return text[text.index(begin) + len(begin):text.index(end)].strip()


@pytest.mark.parametrize("domain", ["hmm", "refine", "pinn"])
def test_docs_tables_are_what_the_schemas_render(domain):
    """docs/cli.md cannot drift: regenerate with ``python -m tiedsci.runfile docs/cli.md``."""
    from importlib import import_module

    schema = import_module(f"tiedsci.{domain}.runfile").SCHEMA
    text = (ROOT / "docs" / "cli.md").read_text()
    assert _generated(text, domain) == render_markdown(schema, level=4).strip()


@pytest.mark.parametrize("domain", ["hmm", "refine", "pinn"])
def test_docs_examples_are_valid_run_files(domain, tmp_path):
    from importlib import import_module

    text = (ROOT / "docs" / "cli.md").read_text()
    m = re.search(rf"<!-- example {domain} -->\n```toml\n(.*?)```", text, re.S)
    schema = import_module(f"tiedsci.{domain}.runfile").SCHEMA
    rf = parse_runfile(m.group(1), schema, name=f"{domain}.toml", base=tmp_path,
                       check_paths=False)
    assert rf.data


def test_atomic_write_text_leaves_no_temporary(tmp_path):
    p = tmp_path / "ck.json"
    atomic_write_text(p, json.dumps({"format": "x/1", "a": 1}))
    assert json.loads(p.read_text())["a"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_bad_schema_types_fail_at_declaration():
    with pytest.raises(ValueError, match="unknown run-file type 'integer'"):
        Field("integer")
