"""TOML run files: loading with line numbers, a declarative schema, validation, reference tables.

Every ``tiedsci <domain> <verb> RUN.toml`` command declares its run file once, as a
:class:`Table` of :class:`Field` s (with nested :class:`Table`, :class:`Tables` for ``[[name]]``
arrays and :class:`MapOf` for tables of free-named entries), and loads it with
:func:`load_runfile`. The loader

* reports a TOML syntax error with the file, line and column and the offending line;
* reports every schema problem at once, each with the file, the line of the key and the key
  (``run.toml, line 12: [fit] max_nfev: expected an integer, got "abc"``; unknown keys get a
  "did you mean" suggestion);
* checks types, required keys, allowed values, numeric ranges, finiteness, list lengths and that
  paths exist (relative to the run file), and fills in defaults;
* returns a :class:`RunFile`: the validated data plus what a domain needs to report its own
  checks at the right line (:meth:`RunFile.error`).

``tomllib`` gives no positions, so :func:`scan_positions` scans the text (headers ``[a.b]`` and
``[[a]]`` with their occurrence index, dotted keys, inline tables and arrays) and maps each key
path, e.g. ``("dataset", 1, "file")``, to its line.

:func:`render_markdown` turns a schema into the reference tables of ``docs/cli.md``.

Type names used in :attr:`Field.type`: ``int``, ``float`` (an integer is accepted), ``bool``,
``str``, ``path`` (a string naming an existing file, relative to the run file), ``array`` (a
number or a nested list of numbers), ``table``, ``any``, ``list[T]`` and unions ``T|U``.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tiedsci._files import atomic_write_bytes
from tiedsci.errors import RunFileError

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = [
    "NO_DEFAULT",
    "Field",
    "Table",
    "Tables",
    "MapOf",
    "RunFile",
    "load_runfile",
    "parse_runfile",
    "validate_config",
    "scan_positions",
    "key_label",
    "locate",
    "render_markdown",
    "render_text",
    "atomic_write_bytes",
    "atomic_write_text",
    "is_number",
]

KeyPath = tuple[str | int, ...]


class _NoDefault:
    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


# ----------------------------------------------------------------------------- schema nodes
@dataclass(frozen=True)
class Field:
    """One key of a run file.

    Parameters
    ----------
    type : str
        ``int``, ``float``, ``bool``, ``str``, ``path``, ``array``, ``table``, ``any``,
        ``list[T]`` or a union ``T|U`` (see the module docstring).
    doc : str
        Meaning, for the reference table.
    default : any
        Value filled in when the key is absent (:data:`NO_DEFAULT`: left absent).
    default_doc : str, optional
        Text for the default column when it is not a literal (e.g. "the estimator's").
    required : bool
    choices : tuple, optional
        Allowed values (strings or numbers).
    ge, gt, le, lt : float, optional
        Bounds on numbers (each element of a list of numbers).
    length : int, optional
        Required length of a list.
    finite : bool
        Reject NaN and infinities (default).
    table : Table, optional
        Schema of the value when it is a table (the type must allow ``table``).
    bundled : Path, optional
        For ``path``: a ``"bundled:<name>"`` value names a file of this folder.
    must_exist : bool
        For ``path``: the file must exist.
    check : callable, optional
        ``check(value) -> message or None``: a further rule.
    """

    type: str
    doc: str = ""
    default: Any = NO_DEFAULT
    default_doc: str | None = None
    required: bool = False
    choices: tuple[Any, ...] | None = None
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    length: int | None = None
    finite: bool = True
    table: Table | None = None
    bundled: Path | None = None
    must_exist: bool = True
    check: Callable[[Any], str | None] | None = None

    def __post_init__(self) -> None:
        _parse_type(self.type)  # fail at import time on a typo


@dataclass(frozen=True)
class Table:
    """A TOML table ``[name]`` (or the whole file) with a fixed set of keys."""

    fields: Mapping[str, Field | Table | Tables | MapOf]
    doc: str = ""
    required: bool = False


@dataclass(frozen=True)
class Tables:
    """An array of tables ``[[name]]``; ``required`` asks for at least one."""

    table: Table
    doc: str = ""
    required: bool = False


@dataclass(frozen=True)
class MapOf:
    """A table whose keys are names chosen by the user (``keys`` restricts them)."""

    value: Field
    doc: str = ""
    key_doc: str = "name"
    keys: tuple[str, ...] | None = None
    required: bool = False


Node = Field | Table | Tables | MapOf


# ----------------------------------------------------------------------------- types
def is_number(token: str) -> bool:
    """Whether ``token`` reads as a float (data lines vs a header line of names)."""
    try:
        float(token)
    except ValueError:
        return False
    return True


def _split_union(spec: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in spec:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "|" and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p.strip() for p in parts]


_BASES = ("int", "float", "bool", "str", "path", "array", "table", "any")


def _parse_type(spec: str) -> tuple[Any, ...]:
    alts: list[Any] = []
    for part in _split_union(spec):
        if part.startswith("list[") and part.endswith("]"):
            alts.append(("list", _parse_type(part[5:-1])))
        elif part in _BASES:
            alts.append((part,))
        else:
            raise ValueError(f"unknown run-file type {part!r} in {spec!r}; use {_BASES}, "
                             "list[T] or T|U")
    return tuple(alts)


_SINGULAR = {"int": "an integer", "float": "a number", "bool": "true or false",
             "str": "a string", "path": "a path (a string)",
             "array": "a number or an array of numbers", "table": "a table", "any": "a value"}
_PLURAL = {"int": "integers", "float": "numbers", "bool": "booleans", "str": "strings",
           "path": "paths", "array": "arrays of numbers", "table": "tables", "any": "values"}
_SHORT = {"int": "integer", "float": "number", "bool": "bool", "str": "string", "path": "path",
          "array": "number or array", "table": "table", "any": "any"}


def _describe(alts: tuple[Any, ...], plural: bool = False) -> str:
    words = []
    for a in alts:
        if a[0] == "list":
            inner = _describe(a[1], plural=True)
            words.append(("lists of " if plural else "a list of ") + inner)
        else:
            words.append(_PLURAL[a[0]] if plural else _SINGULAR[a[0]])
    return " or ".join(words)


_SHORT_PLURAL = {"int": "integers", "float": "numbers", "bool": "bools", "str": "strings",
                 "path": "paths", "array": "arrays", "table": "tables", "any": "values"}


def _short_type(alts: tuple[Any, ...], plural: bool = False) -> str:
    words = []
    for a in alts:
        if a[0] == "list":
            words.append(("lists of " if plural else "list of ") + _short_type(a[1], True))
        else:
            words.append(_SHORT_PLURAL[a[0]] if plural else _SHORT[a[0]])
    return " or ".join(words)


def _show(v: Any, limit: int = 60) -> str:
    """A value as it would read in TOML (strings in double quotes), shortened."""
    if isinstance(v, bool):
        s = "true" if v else "false"
    elif isinstance(v, str):
        s = json.dumps(v)
    elif isinstance(v, float):
        s = "nan" if math.isnan(v) else ("inf" if v == math.inf else
                                        "-inf" if v == -math.inf else repr(v))
    elif isinstance(v, list):
        s = "[" + ", ".join(_show(x, limit) for x in v) + "]"
    elif isinstance(v, dict):
        s = "{ " + ", ".join(f"{_fmt_key(k)} = {_show(x, limit)}" for k, x in v.items()) + " }"
    else:
        s = str(v)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _fmt_key(k: Any) -> str:
    k = str(k)
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def section_label(path: Sequence[str | int]) -> str:
    """``("dataset", 1)`` -> ``[[dataset]] #2``; ``("model", "ties")`` -> ``[model.ties]``."""
    parts = list(path)
    if not parts:
        return "top level"
    if len(parts) == 2 and isinstance(parts[1], int):
        return f"[[{_fmt_key(parts[0])}]] #{parts[1] + 1}"
    s = ""
    for p in parts:
        s += f"[{p}]" if isinstance(p, int) else ("." if s else "") + _fmt_key(p)
    return f"[{s}]"


def key_label(path: Sequence[str | int]) -> str:
    """How a key path reads in messages: ``("fit", "max_nfev")`` -> ``[fit] max_nfev``,
    ``("dataset", 0, "file")`` -> ``[[dataset]] #1 file``, ``("data", "columns", 1)`` ->
    ``[data] columns[1]``."""
    parts = list(path)
    idx: list[int] = []
    while parts and isinstance(parts[-1], int):
        idx.insert(0, int(parts.pop()))
    if not parts:
        return "top level" + "".join(f"[{i}]" for i in idx)
    key = _fmt_key(parts.pop()) + "".join(f"[{i}]" for i in idx)
    return key if not parts else f"{section_label(parts)} {key}"


def _suggest(word: str, known: Sequence[str]) -> str:
    known = [str(k) for k in known]
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if not close:
        close = [k for k in known if k.lower() == word.lower()]
    if close:
        return f" (did you mean {json.dumps(close[0])}?)"
    if not known:
        return ""
    shown = ", ".join(json.dumps(k) for k in known[:14])
    return f"; known: {shown}" + (", ..." if len(known) > 14 else "")


# ----------------------------------------------------------------------------- positions
def scan_positions(text: str) -> dict[KeyPath, int]:
    """Line (1-based) of every key, table header and array element of a TOML document.

    Keys are paths as in the parsed document: ``("dataset", 1, "file")`` for the key ``file``
    of the second ``[[dataset]]``, ``("shared", "width", "bounds")`` for a key of an inline
    table, ``("data", "columns", 0)`` for the first element of an array. The first occurrence
    wins. The text must be valid TOML (parse it first); anything the scanner does not
    understand ends the scan with what was found so far (callers fall back to a shorter path).
    """
    scanner = _Scanner(text)
    try:
        scanner.document()
    except (IndexError, ValueError):  # pragma: no cover - best effort on unusual input
        pass
    return scanner.pos


class _Scanner:
    _BARE = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.line = 1
        self.pos: dict[KeyPath, int] = {}
        self.arrays: dict[KeyPath, int] = {}

    # low-level
    def peek(self, k: int = 0) -> str:
        j = self.i + k
        return self.s[j] if j < len(self.s) else ""

    def advance(self, n: int = 1) -> None:
        for _ in range(n):
            if self.i < len(self.s) and self.s[self.i] == "\n":
                self.line += 1
            self.i += 1

    def skip_inline(self) -> None:
        while self.peek() in (" ", "\t"):
            self.advance()

    def skip_all(self) -> None:
        """Whitespace, newlines and comments."""
        while True:
            c = self.peek()
            if c in (" ", "\t", "\r", "\n"):
                self.advance()
            elif c == "#":
                while self.peek() not in ("\n", ""):
                    self.advance()
            else:
                return

    def record(self, path: KeyPath, line: int) -> None:
        self.pos.setdefault(path, line)

    # grammar
    def document(self) -> None:
        current: KeyPath = ()
        while True:
            self.skip_all()
            if not self.peek():
                return
            if self.peek() == "[":
                line = self.line
                is_array = self.peek(1) == "["
                self.advance(2 if is_array else 1)
                parts = self.key()
                self.skip_inline()
                self.advance(2 if is_array else 1)
                resolved = self.resolve(parts, last_index=False)
                if is_array:
                    idx = self.arrays.get(resolved, -1) + 1
                    self.arrays[resolved] = idx
                    current = resolved + (idx,)
                else:
                    current = resolved
                for k in range(1, len(current) + 1):
                    self.record(current[:k], line)
                while self.peek() not in ("\n", ""):  # trailing comment
                    self.advance()
            else:
                line = self.line
                parts = self.key()
                for k in range(1, len(parts) + 1):
                    self.record(current + parts[:k], line)
                self.skip_inline()
                self.advance()  # '='
                self.skip_inline()
                self.value(current + parts)

    def resolve(self, parts: tuple[str, ...], last_index: bool) -> KeyPath:
        """A header's dotted key as a path, entering the latest element of arrays of tables."""
        out: KeyPath = ()
        for k, p in enumerate(parts):
            out = out + (p,)
            if (k < len(parts) - 1 or last_index) and out in self.arrays:
                out = out + (self.arrays[out],)
        return out

    def key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self.skip_inline()
            c = self.peek()
            if c == '"':
                start = self.i
                self.advance()
                while self.peek() != '"':
                    self.advance(2 if self.peek() == "\\" else 1)
                self.advance()
                raw = self.s[start:self.i]
                try:
                    parts.append(json.loads(raw))
                except ValueError:
                    parts.append(raw[1:-1])
            elif c == "'":
                self.advance()
                start = self.i
                while self.peek() != "'":
                    self.advance()
                parts.append(self.s[start:self.i])
                self.advance()
            else:
                m = self._BARE.match(self.s, self.i)
                if not m:
                    raise ValueError("not a key")
                parts.append(m.group(0))
                self.advance(m.end() - self.i)
            self.skip_inline()
            if self.peek() == ".":
                self.advance()
                continue
            return tuple(parts)

    def value(self, path: KeyPath) -> None:
        c = self.peek()
        if c == '"' or c == "'":
            self.string()
        elif c == "[":
            self.advance()
            idx = 0
            while True:
                self.skip_all()
                if self.peek() == "]":
                    self.advance()
                    return
                self.record(path + (idx,), self.line)
                self.value(path + (idx,))
                self.skip_all()
                if self.peek() == ",":
                    self.advance()
                idx += 1
        elif c == "{":
            self.advance()
            while True:
                self.skip_all()
                if self.peek() == "}":
                    self.advance()
                    return
                line = self.line
                parts = self.key()
                for k in range(1, len(parts) + 1):
                    self.record(path + parts[:k], line)
                self.skip_inline()
                self.advance()  # '='
                self.skip_inline()
                self.value(path + parts)
                self.skip_all()
                if self.peek() == ",":
                    self.advance()
        else:
            while self.peek() not in (",", "]", "}", "\n", "#", ""):
                self.advance()

    def string(self) -> None:
        q = self.peek()
        if self.s.startswith(q * 3, self.i):
            self.advance(3)
            while not self.s.startswith(q * 3, self.i):
                if not self.peek():
                    return
                self.advance(2 if (q == '"' and self.peek() == "\\") else 1)
            self.advance(3)
            while self.peek() == q:  # up to two quotes may end the content
                self.advance()
            return
        self.advance()
        while self.peek() not in (q, ""):
            self.advance(2 if (q == '"' and self.peek() == "\\") else 1)
        self.advance()


# ----------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class RunFile:
    """A validated run file.

    Attributes
    ----------
    name : str
        The file as named by the user (used in messages).
    base : Path
        Folder that relative paths are resolved against (the run file's folder).
    data : dict
        Validated values, defaults filled in; ``path`` values resolved to absolute paths.
    raw : dict
        The document as parsed.
    positions : dict
        Key path -> line (see :func:`scan_positions`).
    """

    name: str
    base: Path
    data: dict[str, Any]
    raw: dict[str, Any]
    positions: Mapping[KeyPath, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        """Line of ``path``, else of its nearest enclosing key or table header."""
        p = tuple(path)
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return None

    def where(self, path: Sequence[str | int]) -> str:
        """``"run.toml, line 12"`` (or just the file name when the line is unknown)."""
        line = self.line(path)
        return f"{self.name}, line {line}" if line is not None else self.name

    def error(self, path: Sequence[str | int], message: str) -> RunFileError:
        """A :class:`RunFileError` for the key at ``path``: ``file, line N: [table] key: msg``."""
        return RunFileError(f"{self.where(path)}: {key_label(path)}: {message}")

    def section_error(self, path: Sequence[str | int], message: str) -> RunFileError:
        """Like :meth:`error` for a whole table: ``file, line N: [[dataset]] #2: msg``."""
        return RunFileError(f"{self.where(path)}: {section_label(path)}: {message}")

    def fingerprint(self, exclude: Sequence[str] = ()) -> str:
        """Hash of the parsed document without the top-level keys ``exclude`` (hex, 16)."""
        doc = {k: v for k, v in self.raw.items() if k not in exclude}
        text = json.dumps(doc, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def locate(path: str | os.PathLike[str], message: str) -> str:
    """``"run.toml, line 7: [model] tie_states"`` for the run-file key that ``message`` (an error
    raised after validation, e.g. by the fit) names, or just the file when it names none.

    The key chosen is the deepest whose name occurs in the message as a word (or with a
    trailing ``_``, hmmlearn's attribute spelling), the first named on a tie."""
    try:
        positions = scan_positions(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return str(path)
    found: list[tuple[int, int, KeyPath]] = []
    for key_path in positions:
        if not isinstance(key_path[-1], str):
            continue
        m = re.search(rf"\b{re.escape(key_path[-1])}_?\b", message)
        if m:  # deepest key first, then the one named first
            found.append((-sum(isinstance(k, str) for k in key_path), m.start(), key_path))
    if not found:
        return str(path)
    key_path = min(found)[2]
    return f"{path}, line {positions[key_path]}: {key_label(key_path)}"


def _toml_error(name: str, text: str, exc: Exception) -> RunFileError:
    msg = str(exc)
    m = re.search(r"^(.*?)\s*\(at line (\d+), column (\d+)\)\s*$", msg, re.S)
    if m:
        what, line, col = m.group(1), int(m.group(2)), int(m.group(3))
        lines = text.splitlines()
        src = lines[line - 1] if 0 < line <= len(lines) else ""
        hint = ""
        if what.startswith("Invalid value") or what.startswith("Invalid statement"):
            hint = " (strings need quotes: key = \"text\")" if re.search(
                r"=\s*[A-Za-z_]", src) else ""
        caret = " " * (col - 1) + "^"
        return RunFileError(f"{name}, line {line}, column {col}: invalid TOML: {what}{hint}\n"
                            f"    {src}\n    {caret}")
    m = re.search(r"^(.*?)\s*\(at end of document\)\s*$", msg, re.S)
    if m:
        n = len(text.splitlines())
        return RunFileError(f"{name}, line {n}: invalid TOML at the end of the file: "
                            f"{m.group(1)}")
    return RunFileError(f"{name}: invalid TOML: {msg}")


def load_runfile(path: str | os.PathLike[str], schema: Table, *,
                 check_paths: bool = True) -> RunFile:
    """Read a TOML run file and validate it against ``schema``.

    Parameters
    ----------
    path : path
        The run file; relative paths inside it are resolved against its folder.
    schema : Table
        The domain's declaration.
    check_paths : bool
        Check that ``path`` keys name existing files.

    Raises
    ------
    RunFileError
        File missing or unreadable, TOML syntax error, or schema violations (all of them, one
        per line of the message, each with its line).
    """
    p = Path(path)
    name = os.fspath(path)
    if not p.exists():
        raise RunFileError(f"{name}: run file not found (looked for {p.resolve()})")
    if p.is_dir():
        raise RunFileError(f"{name}: is a directory, not a TOML run file")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise RunFileError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    return parse_runfile(text, schema, name=name, base=p.parent, check_paths=check_paths)


def parse_runfile(text: str, schema: Table, *, name: str = "<run file>",
                  base: str | os.PathLike[str] | None = None,
                  check_paths: bool = True) -> RunFile:
    """Validate TOML ``text`` against ``schema`` (see :func:`load_runfile`)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise _toml_error(name, text, exc) from None
    return validate_config(raw, schema, name=name, base=base, positions=scan_positions(text),
                           check_paths=check_paths)


def validate_config(raw: Mapping[str, Any], schema: Table, *, name: str = "<config>",
                    base: str | os.PathLike[str] | None = None,
                    positions: Mapping[KeyPath, int] | None = None,
                    check_paths: bool = True) -> RunFile:
    """Validate an already parsed document (a dict) against ``schema``.

    Without ``positions`` (a dict built in Python) messages carry no line numbers.
    """
    ctx = _Ctx(name, Path(base) if base is not None else Path.cwd(), dict(positions or {}),
               check_paths)
    ctx.root = schema
    data = _validate_table(schema, dict(raw), (), ctx)
    if ctx.errors:
        ordered = sorted(ctx.errors, key=lambda e: (e[0] is None, e[0] or 0))
        lines = [msg for _, msg in ordered]
        raise RunFileError("\n".join(lines), problems=lines)
    return RunFile(name, ctx.base, data, copy.deepcopy(dict(raw)), ctx.positions)


# ----------------------------------------------------------------------------- validation
class _Ctx:
    def __init__(self, name: str, base: Path, positions: dict[KeyPath, int],
                 check_paths: bool) -> None:
        self.name = name
        self.base = base
        self.positions = positions
        self.check_paths = check_paths
        self.errors: list[tuple[int | None, str]] = []
        self.root: Table | None = None

    def line(self, path: KeyPath) -> int | None:
        p = path
        while p:
            if p in self.positions:
                return self.positions[p]
            p = p[:-1]
        return None

    def add(self, path: KeyPath, message: str, *, raw: bool = False,
            section: bool = False) -> None:
        line = self.line(path)
        where = f"{self.name}, line {line}" if line is not None else self.name
        if raw:
            text = message
        else:
            text = f"{section_label(path) if section else key_label(path)}: {message}"
        self.errors.append((line, f"{where}: {text}"))


def _is_required(node: Node) -> bool:
    return bool(getattr(node, "required", False))


def _validate_table(table: Table, value: Any, path: KeyPath, ctx: _Ctx) -> dict[str, Any]:
    if not isinstance(value, dict):
        ctx.add(path, f"expected a table, got {_show(value)}", section=True)
        return {}
    out: dict[str, Any] = {}
    for key, v in value.items():
        spec = table.fields.get(key)
        if spec is None:
            kind = "key"
            if not path and (isinstance(v, dict) or (
                    isinstance(v, list) and v and all(isinstance(x, dict) for x in v))):
                kind = "table"
            label = (f"[[{_fmt_key(key)}]]" if isinstance(v, list) else f"[{_fmt_key(key)}]") \
                if kind == "table" else key_label(path + (key,))
            top = ctx.root.fields.get(key) if ctx.root is not None and path else None
            hint = (" (a top-level key: write it before the first [table] header)"
                    if isinstance(top, Field) else _suggest(key, list(table.fields)))
            ctx.add(path + (key,), f"unknown {kind} {label}{hint}", raw=True)
            continue
        out[key] = _validate_node(spec, v, path + (key,), ctx)
    for key, spec in table.fields.items():
        if key in value:
            continue
        if _is_required(spec):
            if isinstance(spec, Table | MapOf):
                what = f"table [{'.'.join(str(p) for p in path + (key,))}]"
            elif isinstance(spec, Tables):
                what = f"table [[{key}]] (at least one)"
            else:
                what = f"key {json.dumps(key)}"
            if path:
                ctx.add(path, f"missing required {what}", section=True)
            else:
                ctx.add(path, f"missing required {what}", raw=True)
        elif isinstance(spec, Table):
            if not any(_is_required(s) for s in spec.fields.values()):
                out[key] = _validate_table(spec, {}, path + (key,), ctx)
        elif isinstance(spec, MapOf):
            out[key] = {}
        elif isinstance(spec, Tables):
            out[key] = []
        elif spec.default is not NO_DEFAULT and spec.default is not None:
            out[key] = copy.deepcopy(spec.default)
    return out


def _validate_node(spec: Node, v: Any, path: KeyPath, ctx: _Ctx) -> Any:
    if isinstance(spec, Table):
        return _validate_table(spec, v, path, ctx)
    if isinstance(spec, Tables):
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            ctx.add(path, f"expected [[{path[-1]}]] tables, got {_show(v)}")
            return []
        if spec.required and not v:
            ctx.add(path, "needs at least one table")
        return [_validate_table(spec.table, x, path + (i,), ctx) for i, x in enumerate(v)]
    if isinstance(spec, MapOf):
        if not isinstance(v, dict):
            ctx.add(path, f"expected a table of {spec.key_doc} = value entries, got {_show(v)}")
            return {}
        out = {}
        for k, x in v.items():
            if spec.keys is not None and k not in spec.keys:
                ctx.add(path + (k,), f"unknown key {key_label(path + (k,))}"
                        f"{_suggest(k, spec.keys)}", raw=True)
                continue
            out[k] = _validate_field(spec.value, x, path + (k,), ctx)
        return out
    return _validate_field(spec, v, path, ctx)


def _validate_field(f: Field, v: Any, path: KeyPath, ctx: _Ctx) -> Any:
    value, errors = _convert(_parse_type(f.type), v, path, f, ctx)
    if errors:
        for p, msg in errors:
            ctx.add(p, msg)
        return v
    if f.length is not None and isinstance(value, list) and len(value) != f.length:
        ctx.add(path, f"expected {f.length} values, got {len(value)}: {_show(v)}")
        return value
    if f.check is not None:
        msg = f.check(value)
        if msg:
            ctx.add(path, msg)
    return value


def _kind_matches(alt: tuple[Any, ...], v: Any) -> bool:
    base = alt[0]
    if isinstance(v, bool):
        return base == "bool"
    if isinstance(v, int | float):
        return base in ("int", "float", "array")
    if isinstance(v, str):
        return base in ("str", "path")
    if isinstance(v, list):
        return base in ("list", "array")
    if isinstance(v, dict):
        return base == "table"
    return False


Errors = list[tuple[KeyPath, str]]


def _convert(alts: tuple[Any, ...], v: Any, path: KeyPath, f: Field, ctx: _Ctx
             ) -> tuple[Any, Errors]:
    first_kind_errors: Errors | None = None
    for alt in alts:
        value, errors = _convert_one(alt, v, path, f, ctx)
        if not errors:
            return value, []
        if first_kind_errors is None and _kind_matches(alt, v):
            first_kind_errors = errors
    if first_kind_errors is not None:
        return v, first_kind_errors
    return v, [(path, f"expected {_describe(alts)}, got {_show(v)}")]


def _number_rules(x: float, f: Field) -> str | None:
    for op, bound, text in (("ge", f.ge, ">="), ("gt", f.gt, ">"), ("le", f.le, "<="),
                            ("lt", f.lt, "<")):
        if bound is None:
            continue
        ok = {"ge": x >= bound, "gt": x > bound, "le": x <= bound, "lt": x < bound}[op]
        if not ok:
            return f"must be {text} {_show(bound)}, got {_show(x)}"
    return None


def _choice_rule(v: Any, f: Field) -> str | None:
    if f.choices is None or v in f.choices:
        return None
    options = ", ".join(_show(c) for c in f.choices)
    hint = _suggest(v, [str(c) for c in f.choices]) if isinstance(v, str) else ""
    hint = hint if hint.startswith(" (") else ""
    return f"expected one of {options}, got {_show(v)}{hint}"


def _convert_one(alt: tuple[Any, ...], v: Any, path: KeyPath, f: Field, ctx: _Ctx
                 ) -> tuple[Any, Errors]:
    base = alt[0]
    if base == "any":
        return v, []
    if base == "list":
        if not isinstance(v, list):
            return v, [(path, f"expected {_describe((alt,))}, got {_show(v)}")]
        out, errors = [], []
        for i, x in enumerate(v):
            val, errs = _convert(alt[1], x, path + (i,), f, ctx)
            out.append(val)
            errors.extend(errs)
        return out, errors
    if base == "table":
        if not isinstance(v, dict):
            return v, [(path, f"expected a table, got {_show(v)}")]
        if f.table is None:
            return dict(v), []
        sub = _Ctx(ctx.name, ctx.base, ctx.positions, ctx.check_paths)
        sub.root = ctx.root
        value = _validate_table(f.table, v, path, sub)
        ctx.errors.extend(sub.errors)  # reported directly (precise paths), never retried
        return value, []
    if base == "array":
        return _convert_array(v, path, f)
    if base == "bool":
        if isinstance(v, bool):
            return v, []
        return v, [(path, f"expected true or false, got {_show(v)}")]
    if base in ("int", "float"):
        if isinstance(v, bool) or not isinstance(v, int | float) or (
                base == "int" and not isinstance(v, int)):
            return v, [(path, f"expected {_SINGULAR[base]}, got {_show(v)}")]
        x = float(v) if base == "float" else v
        if f.finite and not math.isfinite(x):
            return v, [(path, f"expected a finite number, got {_show(v)}")]
        msg = _number_rules(x, f) or _choice_rule(x, f)
        return (x, [(path, msg)]) if msg else (x, [])
    if base in ("str", "path"):
        if not isinstance(v, str):
            return v, [(path, f"expected {_SINGULAR[base]}, got {_show(v)}")]
        msg = _choice_rule(v, f)
        if msg:
            return v, [(path, msg)]
        if base == "path":
            return _resolve_path(v, path, f, ctx)
        return v, []
    raise AssertionError(base)  # pragma: no cover


def _convert_array(v: Any, path: KeyPath, f: Field) -> tuple[Any, Errors]:
    def leaves(x: Any, p: KeyPath) -> Errors:
        if isinstance(x, bool) or isinstance(x, str | dict):
            return [(p, f"expected a number or an array of numbers, got {_show(x)}")]
        if isinstance(x, list):
            out: Errors = []
            for i, y in enumerate(x):
                out.extend(leaves(y, p + (i,)))
            return out
        if isinstance(x, int | float):
            if f.finite and not math.isfinite(float(x)):
                return [(p, f"expected a finite number, got {_show(x)}")]
            msg = _number_rules(float(x), f)
            return [(p, msg)] if msg else []
        return [(p, f"expected a number, got {_show(x)}")]

    errors = leaves(v, path)
    if errors:
        return v, errors
    if isinstance(v, list):
        def shape(x: Any) -> Any:
            return (len(x), tuple(shape(y) for y in x)) if isinstance(x, list) else ()
        s = shape(v)
        if len(set(s[1])) > 1:
            return v, [(path, f"rows of different lengths: {_show(v)}")]
    return v, []


def _resolve_path(v: str, path: KeyPath, f: Field, ctx: _Ctx) -> tuple[Any, Errors]:
    if f.bundled is not None and v.startswith("bundled:"):
        name = v.split(":", 1)[1]
        target = f.bundled / name
        if ctx.check_paths and f.must_exist and not target.is_file():
            avail = sorted(p.name for p in f.bundled.iterdir() if p.is_file()
                           and p.suffix != ".txt")
            return v, [(path, f"no bundled file {json.dumps(name)}; bundled: "
                              f"{', '.join(avail)}")]
        return str(target), []
    target = Path(v).expanduser()
    if not target.is_absolute():
        target = ctx.base / target
    if ctx.check_paths and f.must_exist:
        if not target.exists():
            return v, [(path, f"no such file: {target}")]
        if target.is_dir():
            return v, [(path, f"is a directory, expected a file: {target}")]
    return str(target), []


# ----------------------------------------------------------------------------- documentation
def _toml_literal(v: Any) -> str:
    return _show(v, limit=200)


def _type_cell(node: Field) -> str:
    text = _short_type(_parse_type(node.type))
    rules = []
    for attr, sym in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        b = getattr(node, attr)
        if b is not None:
            rules.append(f"{sym} {_show(b)}")
    if rules:
        text += " " + ", ".join(rules)
    if node.length is not None:
        text += f" (length {node.length})"
    if node.choices is not None:
        text += ": " + ", ".join(f"`{_toml_literal(c)}`" for c in node.choices)
    return text


def _default_cell(node: Node) -> str:
    if _is_required(node):
        return "**required**"
    if isinstance(node, Field):
        if node.default_doc is not None:
            return node.default_doc
        if node.default is NO_DEFAULT or node.default is None:
            return "unset"
        return f"`{_toml_literal(node.default)}`"
    return "empty"


def _cell(text: str) -> str:
    text = " ".join(text.split())
    # a pipe cannot be escaped inside a code span of a table cell: drop those backticks
    text = re.sub(r"`([^`]*\|[^`]*)`", r"\1", text)
    return text.replace("|", "\\|")


def _rows(table: Table, inline: bool = False) -> list[str]:
    """Rows of the keys of ``table``; ``inline``: also its sub-tables (no own section)."""
    rows = []
    for key, node in table.fields.items():
        if isinstance(node, Field):
            rows.append(f"| `{key}` | {_cell(_type_cell(node))} | "
                        f"{_cell(_default_cell(node))} | {_cell(node.doc)} |")
        elif inline and isinstance(node, MapOf):
            kind = f"table of {node.key_doc} = {_type_cell(node.value)}"
            rows.append(f"| `{key}` | {_cell(kind)} | "
                        f"{'**required**' if node.required else 'unset'} | {_cell(node.doc)} |")
    return rows


_HEADER = ["| key | type | default | meaning |", "|---|---|---|---|"]


def render_markdown(schema: Table, *, level: int = 3) -> str:
    """Reference tables of a run-file schema (markdown): one table of keys per TOML table.

    Each row gives the key, its type (with allowed values and ranges), its default and its
    meaning. Deterministic, so a test can compare it with the checked-in documentation.
    """
    h = "#" * level
    out: list[str] = []

    def emit_table(title: str, doc: str, table: Table) -> None:
        out.append(f"{h} `{title}`")
        out.append("")
        if doc:
            out.append(_cell(doc))
            out.append("")
        rows = _rows(table)
        if rows:
            out.extend(_HEADER + rows)
            out.append("")
        for key, node in table.fields.items():
            if isinstance(node, Field) and node.table is not None:
                out.append(f"An inline table for `{key}` takes:")
                out.append("")
                out.extend(_HEADER + _rows(node.table, inline=True))
                out.append("")
        for key, node in table.fields.items():
            sub = title.strip("[]")
            if isinstance(node, Table):
                emit_table(f"[{sub}.{key}]", node.doc, node)
            elif isinstance(node, MapOf):
                emit_map(f"[{sub}.{key}]", node)

    def emit_map(title: str, node: MapOf) -> None:
        out.append(f"{h} `{title}`")
        out.append("")
        if node.doc:
            out.append(_cell(node.doc))
            out.append("")
        keys = ("one of " + ", ".join(f"`{k}`" for k in node.keys)) if node.keys else \
            f"any {node.key_doc}"
        out.extend(["| key | value type | meaning |", "|---|---|---|",
                    f"| {_cell(keys)} | {_cell(_type_cell(node.value))} | "
                    f"{_cell(node.value.doc)} |", ""])
        if node.value.table is not None:
            out.append("An entry given as an inline table takes:")
            out.append("")
            out.extend(_HEADER + _rows(node.value.table, inline=True))
            out.append("")

    top = [f"| `{k}` | {_cell(_type_cell(n))} | {_cell(_default_cell(n))} | {_cell(n.doc)} |"
           for k, n in schema.fields.items() if isinstance(n, Field)]
    if top:
        out.append(f"{h} Top-level keys")
        out.append("")
        out.append("Keys written before the first `[table]` header.")
        out.append("")
        out.extend(_HEADER + top)
        out.append("")
    for key, node in schema.fields.items():
        if isinstance(node, Table):
            doc = node.doc + (" Required." if node.required else "")
            emit_table(f"[{key}]", doc, node)
        elif isinstance(node, Tables):
            doc = node.doc + (" At least one is required." if node.required else "")
            emit_table(f"[[{key}]]", doc, node.table)
        elif isinstance(node, MapOf):
            emit_map(f"[{key}]", node)
    return "\n".join(out).rstrip() + "\n"


def _plain(text: str) -> str:
    return " ".join(text.replace("`", "").replace("**", "").split())


def _text_key(key: str, node: Field, width: int) -> list[str]:
    import textwrap

    default = _plain(_default_cell(node))
    default = default if default == "required" else f"default {default}"
    head = f"  {key} ({_plain(_type_cell(node))}; {default})"
    body = textwrap.wrap(_plain(node.doc), width=width - 6) if node.doc else []
    return [head] + [f"      {line}" for line in body]


def render_text(schema: Table, *, width: int = 88) -> str:
    """The keys of a run-file schema as plain text (``--help`` shows it): each TOML table,
    then each key with its type, default and meaning."""
    out: list[str] = ["Run-file keys:"]

    def table(title: str, node: Table) -> None:
        out.append("")
        out.append(f"{title}  {_plain(node.doc)}".rstrip())
        for key, sub in node.fields.items():
            if isinstance(sub, Field):
                out.extend(_text_key(key, sub, width))
                if sub.table is not None:
                    out.extend(f"    {line}" for k, f in sub.table.fields.items()
                               if isinstance(f, Field) for line in _text_key(k, f, width - 4))
            elif isinstance(sub, MapOf):
                out.extend(_text_key(f"<{sub.key_doc}>", sub.value, width))
            elif isinstance(sub, Table):
                table(f"[{title.strip('[]')}.{key}]", sub)

    for key, node in schema.fields.items():
        if isinstance(node, Table):
            table(f"[{key}]", node)
        elif isinstance(node, Tables):
            table(f"[[{key}]]", Table(node.table.fields, node.doc))
        elif isinstance(node, MapOf):
            table(f"[{key}]", Table({f"<{node.key_doc}>": node.value}, node.doc))
    return "\n".join(out) + "\n"


# ----------------------------------------------------------------------------- checkpoints
def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically (temp file, fsync, :func:`os.replace`): an
    interruption leaves the old file or the new one, never a truncated file."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _update_docs(path: str | os.PathLike[str]) -> bool:
    """Rewrite the generated blocks of ``docs/cli.md``; True when something changed."""
    from importlib import import_module

    p = Path(path)
    text = p.read_text()
    new = text
    for domain in ("hmm", "refine", "pinn"):
        schema = import_module(f"tiedsci.{domain}.runfile").SCHEMA
        begin, end = f"<!-- BEGIN GENERATED {domain} -->", f"<!-- END GENERATED {domain} -->"
        i, j = new.find(begin), new.find(end)
        if i < 0 or j < 0:
            raise ValueError(f"{p}: markers {begin!r} / {end!r} not found")
        new = new[:i + len(begin)] + "\n\n" + render_markdown(schema, level=4) + "\n" + new[j:]
    if new != text:
        p.write_text(new)
    return new != text


if __name__ == "__main__":  # pragma: no cover - maintenance: python -m tiedsci.runfile docs/cli.md
    import sys

    from tiedsci.runfile import _update_docs as update  # the schemas use this module's classes

    changed = update(sys.argv[1] if len(sys.argv) > 1 else "docs/cli.md")
    print("updated" if changed else "up to date")
