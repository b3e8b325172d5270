"""Only tiedsci/core may read a Layout's internals: every other module uses the public surface.

Three rules, checked on the syntax tree of every module under tiedsci/ outside tiedsci/core:

1. no attribute access ``X._name`` where ``_name`` is a private field or method of Layout
   (names shared with other classes' conventions, such as ``_cache``, count only when ``X``
   reads as a layout, i.e. its source mentions ``lay``);
2. no access of the former public internals (``kind``, ``root``, ``offsets``, ``labels``, ...)
   on an expression that reads as a layout;
3. nothing but ``Layout`` is imported from ``tiedsci.core.layout``, and nothing from the core's
   private modules (``tiedsci.core.build``, ``tiedsci.core.jacobian``).
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

from tiedsci.core.layout import Layout

ROOT = Path(__file__).resolve().parents[2] / "tiedsci"

FORMER_INTERNALS = frozenset(
    "kind root zslot a_rows a_cols a_vals slot_theta slot_z slot_lo slot_hi blocks "
    "z_perm_inverse z_theta restraint_elements offsets n_elements labels status bounds_text "
    "derived n_z".split())
GENERIC = frozenset({"_cache", "_registry", "_values0", "_derived", "_labels", "_status", "_kind",
                     "_root", "_b", "_z", "_offsets", "_blocks", "_check_name"})
PRIVATE_MODULES = ("tiedsci.core.build", "tiedsci.core.jacobian")


def _layout_private_names() -> frozenset[str]:
    names = {f.name for f in dataclasses.fields(Layout) if f.name.startswith("_")}
    names |= {k for k in vars(Layout) if k.startswith("_") and not k.startswith("__")}
    return frozenset(names)


def _reads_as_layout(node: ast.expr) -> bool:
    return "lay" in ast.unparse(node).lower()


def violations(source: str, where: str) -> list[str]:
    """Every breach of the three rules in one module's source."""
    private = _layout_private_names()
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            layoutish = _reads_as_layout(node.value)
            if node.attr in private and (node.attr not in GENERIC or layoutish):
                out.append(f"{where}:{node.lineno}: reads Layout.{node.attr}")
            elif node.attr in FORMER_INTERNALS and layoutish:
                out.append(f"{where}:{node.lineno}: reads former internal Layout.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module in PRIVATE_MODULES:
                out.append(f"{where}:{node.lineno}: imports the core's private {node.module}")
            elif node.module == "tiedsci.core.layout":
                bad = [a.name for a in node.names if a.name != "Layout"]
                if bad:
                    out.append(f"{where}:{node.lineno}: imports {bad} from tiedsci.core.layout")
    return out


def _modules_outside_core() -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*.py")) if p.relative_to(ROOT).parts[0] != "core"]


def test_no_module_outside_core_reads_layout_internals():
    files = _modules_outside_core()
    assert len(files) > 20  # the scan really covers the domains
    found = [v for p in files for v in violations(p.read_text(), str(p.relative_to(ROOT)))]
    assert not found, "Layout internals read outside tiedsci/core:\n" + "\n".join(found)


@pytest.mark.parametrize("snippet", [
    "layout._kind[0]",
    "self.layout._root",
    "problem.layout._a_csr",
    "x._slot_theta",  # distinctive: any receiver
    "lay.offsets['a']",
    "layout.labels",
    "problem.layout.n_elements",
    "from tiedsci.core.layout import FIXED",
    "from tiedsci.core.build import build_layout",
])
def test_the_checker_catches_each_kind_of_breach(snippet):
    assert violations(snippet, "snippet")


@pytest.mark.parametrize("snippet", [
    "self._cache = {}",  # another class's own private cache
    "part.blocks[0]",  # a Partition's blocks, not a layout's
    "layout.fixed_mask('a')",
    "from tiedsci.core.layout import Layout",
])
def test_the_checker_allows_the_public_surface(snippet):
    assert not violations(snippet, "snippet")
