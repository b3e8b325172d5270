"""Screenshots of the demo report and of two documentation pages, with headless Chromium.

Usage::

    apt-get install -y chromium          # Debian/Ubuntu package; not needed by CI
    python tools/screenshots.py --demo DIR --out shots/
    python tools/screenshots.py --out shots/          # runs `tiedsci demo --quick` first

Writes ``report_top.png``, ``report_refine.png`` (the PbSO4 section), ``report_pinn.png``,
``report_print.pdf`` (the report as printed) and ``docs_<page>.png`` for two pages of the
mkdocs site (built with ``mkdocs build`` into a temporary folder). A section screenshot is
taken of a copy of the report that holds that section only (Chromium's ``--screenshot`` does
not scroll to a fragment). Look at the PNGs: tables and prose, no raw JSON outside the
collapsed "raw data" block.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC_PAGES = ("tutorials/refine", "tutorials/hmm")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no chromium found: apt-get install -y chromium")


def _run(args: list[str]) -> None:
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=180)


def shoot(url: str, png: Path, width: int = 1200, height: int = 1600) -> Path:
    """Screenshot of ``url`` (``width`` x ``height`` CSS pixels) into ``png``."""
    _run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
          f"--window-size={width},{height}", f"--screenshot={png}", url])
    return png


def print_pdf(url: str, pdf: Path) -> Path:
    """The page as the browser prints it (the report's print style sheet)."""
    _run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
          f"--print-to-pdf={pdf}", "--no-pdf-header-footer", url])
    return pdf


def section_only(report: Path, key: str, dest: Path) -> Path:
    """A copy of ``report`` with only the ``<h2 id=key>`` section after the page head."""
    text = report.read_text(encoding="utf-8")
    head = text[: text.index("<h1>")]
    parts = re.split(r"(?=<h2 id=')", text)
    body = next(p for p in parts if p.startswith(f"<h2 id='{key}'"))
    dest.write_text(head + body + "</body></html>", encoding="utf-8")
    return dest


def demo_report(demo: Path | None, work: Path) -> Path:
    if demo is None:
        demo = work / "demo"
        _run([sys.executable, "-m", "tiedsci", "demo", "--quick", "--quiet", "--out", str(demo)])
    return demo / "report.html"


def build_site(work: Path) -> Path:
    site = work / "site"
    _run([sys.executable, "-m", "mkdocs", "build", "-q", "-f", str(ROOT / "mkdocs.yml"),
          "-d", str(site)])
    return site


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", type=Path, default=None,
                    help="an existing demo output folder (default: run `tiedsci demo --quick`)")
    ap.add_argument("--out", type=Path, default=Path("screenshots"))
    ap.add_argument("--no-docs", action="store_true", help="skip the documentation pages")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report = demo_report(args.demo, work)
        shots = [shoot(report.resolve().as_uri(), args.out / "report_top.png"),
                 print_pdf(report.resolve().as_uri(), args.out / "report_print.pdf")]
        for key in ("refine", "pinn"):
            page = section_only(report, key, report.parent / f".section_{key}.html")
            shots.append(shoot(page.resolve().as_uri(), args.out / f"report_{key}.png",
                               height=2400))
            page.unlink()
        if not args.no_docs:
            site = build_site(work)
            for name in DOC_PAGES:
                url = (site / name / "index.html").resolve().as_uri()
                shots.append(shoot(url, args.out / f"docs_{name.replace('/', '_')}.png",
                                   height=2000))
    for s in shots:
        print(s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
