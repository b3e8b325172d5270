"""A single self-contained HTML report (figures embedded) from the demo's summaries."""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tiedsci._files import atomic_write_bytes

__all__ = ["write_html_report"]

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping | list | tuple):
        return "<pre>" + html.escape(json.dumps(value, indent=1, default=str)[:4000]) + "</pre>"
    return html.escape(str(value))


def write_html_report(out_dir: str | Path, results: Mapping[str, Mapping[str, Any]],
                      titles: Mapping[str, str], path: str | Path | None = None) -> Path:
    """Write ``report.html`` into ``out_dir``: one section per result, its numbers and every PNG
    found in ``out_dir/<section>`` embedded as base64 (the file stands alone).

    Returns the path written. The file is written to a temporary name and renamed, so a crash never
    leaves a half-written report behind.
    """
    out = Path(out_dir)
    target = Path(path) if path is not None else out / "report.html"
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'><title>tiedsci demo</title>",
             f"<style>{_STYLE}</style></head><body><h1>tiedsci demo report</h1>"]
    for key, summary in results.items():
        parts.append(f"<h2>{html.escape(titles.get(key, key))}</h2><table>")
        for k, v in summary.items():
            parts.append(f"<tr><th>{html.escape(str(k))}</th><td>{_cell(v)}</td></tr>")
        parts.append("</table>")
        for png in sorted((out / key).glob("*.png")) if (out / key).is_dir() else []:
            data = base64.b64encode(png.read_bytes()).decode("ascii")
            parts.append(f"<p>{html.escape(png.name)}</p>"
                         f"<img alt='{html.escape(png.name)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    atomic_write_bytes(target, "\n".join(parts).encode("utf-8"))
    return target
