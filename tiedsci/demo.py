"""``tiedsci demo``: the flagship workflows on bundled data, one HTML report at the end.

Each section runs one example (``examples/*.py``'s ``run``) into its own folder of the output
folder; long sections show a progress bar (LM stages of the refinement, the PINN's training
budget) unless ``quiet`` or stderr is not a terminal. Warnings raised inside a section become
one line each on stderr; their full text goes to ``demo.log``. The summaries are written to
``summary.json`` (paths relative to the output folder) and rendered by
:func:`tiedsci.report.write_html_report`.
"""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from tiedsci.progress import readable_warnings

__all__ = ["DEMO_SECTIONS", "PINN_DEMO_BUDGET_S", "run_demo", "relative_paths"]

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "examples"

# (key, title, example file; None: tiedsci.demo_registry)
DEMO_SECTIONS: tuple[tuple[str, str, str | None], ...] = (
    ("registry", "Registry: one line measured by two instruments", None),
    ("hmm", "Tied hidden Markov model: earthquake regimes", "hmm_tied_states.py"),
    ("refine", "Joint X-ray + neutron Rietveld refinement of PbSO4", "pbso4_joint_xray_neutron.py"),
    ("pinn", "Allen-Cahn with a periodic-feature PINN (reduced budget)", "allen_cahn_periodic.py"),
)

# The demo runs the PINN on a reduced training budget (the example's own default is 600 s, which
# reaches rel. L2 ~6e-4); the summary and the report say so.
PINN_DEMO_BUDGET_S = {False: 120.0, True: 12.0}


def _load_example(filename: str) -> ModuleType | None:
    path = EXAMPLES_DIR / filename
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"tiedsci_example_{path.stem}", path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _section_function(filename: str | None) -> Callable[..., dict[str, Any]] | None:
    if filename is None:
        from tiedsci.demo_registry import run

        return run
    module = _load_example(filename)
    return getattr(module, "run", None) if module else None


def relative_paths(value: Any, base: Path) -> Any:
    """``value`` with every string that names a path inside ``base`` made relative to it."""
    if isinstance(value, dict):
        return {k: relative_paths(v, base) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [relative_paths(v, base) for v in value]
    if isinstance(value, str) and value.startswith(str(base)):
        try:
            return Path(value).resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            return value
    return value


def _section_kwargs(key: str, quick: bool, device: str, show: bool) -> dict[str, Any]:
    if key == "pinn":
        return {"budget_s": PINN_DEMO_BUDGET_S[quick], "device": device, "progress": show}
    if key == "refine":
        return {"progress": show}
    return {}


def _headline(key: str, summary: dict[str, Any]) -> str:
    from tiedsci.report import headline

    return headline(key, summary)


def run_demo(out: Path, quick: bool, only: Sequence[str] | None = None,
             device: str = "cpu", quiet: bool = False) -> dict[str, Any]:
    """Run every demo section into ``out``; write ``summary.json`` and ``report.html``.

    Parameters
    ----------
    out : Path
        Output folder (created).
    quick : bool
        The short smoke version (fewer starts, capped LM stages, 12 s of PINN training).
    only : sequence of str, optional
        Section keys to run (``registry``, ``hmm``, ``refine``, ``pinn``).
    device : str
        torch device of the PINN section.
    quiet : bool
        No progress bars and no warning lines (``demo.log`` still gets the warnings).

    Returns
    -------
    dict
        Section key -> summary (as written to ``summary.json``).
    """
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    chosen = [s for s in DEMO_SECTIONS if not only or s[0] in only]
    for i, (key, title, filename) in enumerate(chosen):
        print(f"== [{i + 1}/{len(chosen)}] {title}", flush=True)
        fn = _section_function(filename)
        if fn is None:
            print("   (not available in this checkout)")
            results[key] = {"status": "not available"}
            continue
        start = time.perf_counter()
        kwargs = _section_kwargs(key, quick, device, show=not quiet)
        if key == "pinn":
            print(f"   reduced budget: {kwargs['budget_s']:.0f} s of training "
                  "(examples/allen_cahn_periodic.py uses 900 s)", flush=True)
        with readable_warnings(out / "demo.log", quiet=quiet) as notes:
            summary = fn(out_dir=out / key, quick=quick, **kwargs)
        summary = {k: v for k, v in summary.items() if k != "table"}
        summary["wall_s"] = round(time.perf_counter() - start, 2)
        if notes:
            summary["notes"] = notes
        results[key] = relative_paths(summary, out)
        print(f"   {_headline(key, results[key])} ({summary['wall_s']:.1f} s)", flush=True)
    from tiedsci.report import write_html_report

    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(results, indent=2, default=str))
    tmp.replace(out / "summary.json")
    report = write_html_report(out, results, quick=quick)
    print(f"results and plots written to {out} (open {report} in a browser)")
    return results
