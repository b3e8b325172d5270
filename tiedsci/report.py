"""The demo's HTML report: prose, value(esd) tables, captioned figures, a glossary.

:func:`write_html_report` turns the demo's section summaries (what ``summary.json`` holds) into
one self-contained page (figures embedded): per section a paragraph saying what the data are,
what is tied and why, and what the tie bought; tables of values in crystallographers' notation
(:func:`format_esd`) with units; figures with captions; the metrics defined once in a glossary.
The machine-readable numbers stay in ``summary.json`` and in one collapsed "raw data" block.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tiedsci._files import atomic_write_bytes

__all__ = ["write_html_report", "format_esd", "headline", "GLOSSARY", "discovery_table",
           "discovery_html", "write_discovery_report"]

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1000px;
       margin: 2em auto; padding: 0 1em; color: #1d1d1d; line-height: 1.5; }
h1 { font-size: 1.7em; margin-bottom: 0.2em; } .sub { color: #555; margin-top: 0; }
h2 { font-size: 1.3em; margin-top: 2.2em; border-bottom: 2px solid #d8dee9; padding-bottom: 4px; }
h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
table { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.93em; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 4px 10px; text-align: left; }
thead th { border-bottom: 2px solid #999; background: #f4f6f9; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
caption { caption-side: top; text-align: left; font-weight: 600; padding: 4px 0; }
figure { margin: 1em 0 1.5em; } figure img { width: 100%; border: 1px solid #e5e5e5; }
figcaption { font-size: 0.92em; color: #333; margin-top: 0.3em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 0.9em; }
.ok { color: #1a7f37; } .warn { color: #9a6700; }
dl.glossary dt { font-weight: 600; margin-top: 0.6em; } dl.glossary dd { margin-left: 1.5em; }
details { margin: 2em 0; } details pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto;
       font-size: 0.8em; max-height: 40em; }
@media print { body { max-width: none; margin: 0; font-size: 10.5pt; }
  h2 { page-break-before: always; } h2.first { page-break-before: avoid; }
  figure, table { page-break-inside: avoid; } details { display: none; } }
"""

GLOSSARY: dict[str, str] = {
    "value(esd)": "A value with its estimated standard deviation (esd, one standard error) in "
                  "the last digits shown: 8.48030(10) means 8.48030 &plusmn; 0.00010.",
    "esd": "Estimated standard deviation of a fitted parameter, from the inverse of the "
           "least-squares normal matrix scaled by the reduced &chi;&sup2;.",
    "n_free": "Number of truly free parameters after ties, fixed values and relations "
              "(the registry's <code>layout.n_free</code>): what BIC and &chi;&sup2; are "
              "charged for.",
    "reduced &chi;&sup2;": "&chi;&sup2; / (number of points &minus; n_free); about 1 when the "
                           "model fits to the noise.",
    "Rwp (%)": "Weighted-profile R factor: 100 &middot; sqrt(&Sigma; w (y<sub>obs</sub> &minus; "
               "y<sub>calc</sub>)&sup2; / &Sigma; w y<sub>obs</sub>&sup2;), in percent "
               "everywhere in tiedsci (keys <code>rwp_percent</code>).",
    "Rp (%)": "Profile R factor: 100 &middot; &Sigma; |y<sub>obs</sub> &minus; y<sub>calc</sub>| "
              "/ &Sigma; |y<sub>obs</sub>|, in percent.",
    "GOF": "Goodness of fit, sqrt(reduced &chi;&sup2;); 1 for a model that fits to the noise.",
    "difference / combined esd": "|tiedsci &minus; GSAS-II| / sqrt(esd<sub>tiedsci</sub>&sup2; "
                                 "+ esd<sub>GSAS-II</sub>&sup2;): below about 3 the two "
                                 "refinements agree within their error bars.",
    "log-likelihood": "log p(data | fitted model), higher is better.",
    "BIC": "Bayesian information criterion, &minus;2 log-likelihood + n_free &middot; ln(n); "
           "lower is better. A difference above 10 is very strong evidence (Kass and Raftery).",
    "rel. L2 error": "||u &minus; u<sub>ref</sub>||<sub>2</sub> / ||u<sub>ref</sub>||<sub>2</sub> "
                     "over the whole reference grid.",
    "boundary mismatch": "max over t of |u(a, t) &minus; u(b, t)| at the two ends of the "
                         "periodic interval (for u<sub>x</sub>: of the slopes).",
}


# ----------------------------------------------------------------------------- formatting
def format_esd(value: float, esd: float | None) -> str:
    """``value(esd)`` in crystallographers' notation.

    The esd keeps two significant digits when its leading digits are below 20 and one
    otherwise (the IUCr rule of 19); the value is rounded to the same decimal place.

    >>> format_esd(8.480297, 0.000097)
    '8.48030(10)'
    >>> format_esd(0.18754, 0.00008)
    '0.18754(8)'
    >>> format_esd(12.3, None)
    '12.3'
    """
    if esd is None or not math.isfinite(esd) or esd <= 0:
        return f"{value:.6g}"
    exponent = math.floor(math.log10(esd))
    digits = 2 if esd / 10.0**exponent < 1.95 else 1
    decimals = max(digits - 1 - exponent, 0)
    units = round(esd * 10.0**decimals)
    return f"{value:.{decimals}f}({units})"


def _num(value: Any, fmt: str = ".4g") -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return html.escape(str(value))
    return format(value, fmt)


@dataclass(frozen=True)
class Table:
    """A table of the report: header cells, rows of (already formatted) cells, a caption."""

    caption: str
    header: Sequence[str]
    rows: Sequence[Sequence[str]]

    def html(self) -> str:
        head = "".join(f"<th>{h}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f"<td{_align(j, c)}>{c}</td>" for j, c in enumerate(r)) + "</tr>"
            for r in self.rows)
        return (f"<table><caption>{self.caption}</caption><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")


_NUMBER = re.compile(r"^[-+]?(\d|\.\d)[\d.eE+\-()]*$")


def _align(j: int, cell: str) -> str:
    text = cell.replace("&minus;", "-").strip()
    return " class='num'" if j > 0 and _NUMBER.match(text) else ""


def _figure(out: Path, relpath: str, caption: str) -> str:
    path = out / relpath
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img alt='{html.escape(caption[:80])}' src='data:image/png;base64,{data}'>"
            f"<figcaption><b>Figure.</b> {caption} <span style='color:#777'>"
            f"({html.escape(relpath)})</span></figcaption></figure>")


def _p(*sentences: str) -> str:
    return "<p>" + " ".join(s for s in sentences if s) + "</p>"


# ----------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class Section:
    """How one demo section is told: headline, prose, tables, figures (name -> caption)."""

    headline: Callable[[Mapping[str, Any]], str]
    prose: Callable[[Mapping[str, Any]], str]
    tables: Callable[[Mapping[str, Any]], list[Table]]
    figures: Mapping[str, str]


def _registry_headline(s: Mapping[str, Any]) -> str:
    return (f"shared centre esd {s['centre_esd_joint']:.3g} jointly vs "
            f"{s['centre_esd_b_alone']:.3g} from instrument b alone")


def _registry_prose(s: Mapping[str, Any]) -> str:
    ratio = s["centre_esd_b_alone"] / s["centre_esd_joint"]
    off = abs(s["centre"] - s["centre_truth"]) / s["centre_esd_joint"]
    return _p(
        "<b>Data.</b> Two simulated spectra of one Gaussian line, measured by a strong "
        "instrument <i>a</i> and a weak instrument <i>b</i> (same noise, different scales).",
        "<b>Tie.</b> The line's centre and width are physical properties of the line, so they "
        "are declared once and used by both instruments; each instrument keeps its own scale "
        f"and background. The registry counts {s['n_free']} free parameters (8 without the "
        "tie).",
        f"<b>What the tie bought.</b> The centre's esd is {s['centre_esd_joint']:.3g} from the "
        f"joint fit against {s['centre_esd_b_alone']:.3g} from instrument <i>b</i> alone: "
        f"{ratio:.1f}&times; smaller, because the pooled evidence of both instruments goes "
        f"into one number. The fitted centre is {off:.1f} esd from the true value "
        f"{s['centre_truth']}; the reduced &chi;&sup2; is {s['reduced_chi2']:.2f}.")


def _registry_tables(s: Mapping[str, Any]) -> list[Table]:
    return [Table("The shared line centre (arbitrary units)",
                  ["quantity", "joint fit (a + b)", "instrument b alone", "truth"],
                  [["centre", format_esd(s["centre"], s["centre_esd_joint"]), "",
                    _num(s["centre_truth"])],
                   ["esd of the centre", _num(s["centre_esd_joint"], ".3g"),
                    _num(s["centre_esd_b_alone"], ".3g"), ""],
                   ["n_free", str(s["n_free"]), "4", ""]])]


def _hmm_headline(s: Mapping[str, Any]) -> str:
    return (f"BIC tied {s['bic_tied']:.1f} vs untied {s['bic_untied']:.1f}: "
            f"{s['bic_prefers']} preferred")


def _hmm_prose(s: Mapping[str, Any]) -> str:
    delta = abs(s["bic_tied"] - s["bic_untied"])
    strength = "very strong" if delta > 10 else "strong" if delta > 6 else \
        "positive" if delta > 2 else "weak"
    calm, active = s["rates_tied"]
    if s["bic_prefers"] == "tied":
        verdict = ("BIC prefers the tied model: the two extra rates of the untied model do not "
                   "buy enough likelihood to pay for themselves.")
    else:
        verdict = (
            "BIC prefers the <i>untied</i> model here: the sub-states' own rates buy "
            f"{s['loglik_untied'] - s['loglik_tied']:.1f} in log-likelihood, more than the "
            "two extra parameters cost. That is an honest answer to the question the tie "
            "asks (is a regime one rate with a non-geometric duration, or are there more "
            "rates?): on these 107 years the data ask for more than two rates. The "
            "comparison is fair only because both models are charged for their true "
            "number of free parameters.")
    return _p(
        f"<b>Data.</b> {html.escape(str(s['data'])).capitalize()}; the series switches "
        "between a calm and an active regime.",
        "<b>Tie.</b> A plain HMM state stays for a geometric (memoryless) time. Splitting each "
        "regime into two sub-states in series that share one Poisson rate "
        "(<code>tie_states=[[0, 1], [2, 3]]</code>) gives regime durations with a mode away "
        "from one year while keeping one rate per regime. The same four-state topology "
        "without the tie gives every sub-state its own rate.",
        f"<b>Result.</b> Tied rates: calm {calm:.1f}, active {active:.1f} quakes per year "
        f"(n_free {s['n_free_tied']} against {s['n_free_untied']} untied). {verdict} "
        f"The BIC difference is {delta:.1f} ({strength} evidence); a plain two-state model "
        f"scores BIC {s['bic_plain_2_state']:.1f}.")


def _hmm_tables(s: Mapping[str, Any]) -> list[Table]:
    rows = [["4 sub-states, rates tied per regime", str(s["n_free_tied"]),
             _num(s["loglik_tied"], ".1f"), _num(s["bic_tied"], ".1f")],
            ["4 sub-states, untied", str(s["n_free_untied"]), _num(s["loglik_untied"], ".1f"),
             _num(s["bic_untied"], ".1f")],
            ["plain 2-state HMM", "", "", _num(s["bic_plain_2_state"], ".1f")]]
    return [Table("Model comparison (lower BIC is better)",
                  ["model", "n_free", "log-likelihood", "BIC"], rows)]


def _refine_headline(s: Mapping[str, Any]) -> str:
    d = s["datasets"]
    return ", ".join(f"{k} Rwp {v['rwp_percent']:.2f} %" for k, v in d.items()) + \
        f"; coordinates within {s['gsas2']['max_coord_combined_esd']:.1f} combined esd of GSAS-II"


def _refine_prose(s: Mapping[str, Any]) -> str:
    n_obs = sum(d["n_obs"] for d in s["datasets"].values())
    worst = s["gsas2"]["max_coord_combined_esd"]
    return _p(
        "<b>Data.</b> The IUCr powder round robin on anglesite, PbSO<sub>4</sub> (Hill 1992): "
        "a Cu K&alpha;<sub>1,2</sub> laboratory X-ray pattern at room temperature and an ILL "
        f"D1A neutron pattern at 1.909 &Aring; ({n_obs} points in all).",
        "<b>Tie.</b> Both patterns see one crystal structure, so the structure is declared "
        "once: the lattice, the coordinates and the isotropic displacements (U<sub>iso</sub>) "
        "of the five atoms are shared; the special positions (y = 1/4 on 4c) are fixed by the "
        "space group. Each pattern keeps its own scale, background, peak shape (U, V, W) and "
        "sample displacement; the cold neutron sample gets its own small lattice strain.",
        "<b>What the tie bought.</b> X-rays are scattered mostly by lead, neutrons see the "
        "oxygens about as well as lead; sharing the structure lets each atom be fixed by the "
        f"pattern that sees it best, in one fit with {s['n_free']} free parameters. The "
        "result reproduces the published GSAS-II joint refinement: every coordinate agrees "
        f"within {worst:.1f} combined esd (table below).")


def _refine_param_rows(s: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    comparison = s["gsas2"]["comparison"]
    for name, p in s["params"].items():
        unit = "&Aring;" if name in ("a", "b", "c") else \
            "&Aring;&sup2;" if name.endswith("uiso") else "fractional"
        c = comparison.get(name)
        ref = format_esd(c["gsas2"], c.get("gsas2_esd")) if c else ""
        rows.append([html.escape(name), unit, format_esd(p["value"], p["esd"]), ref,
                     _num(c["n_combined_esd"], ".1f") if c else ""])
    return rows


def _refine_tables(s: Mapping[str, Any]) -> list[Table]:
    ref_rwp = s["gsas2"]["rwp_percent"]
    agreement = [[html.escape(k), str(d["n_obs"]), _num(d["rwp_percent"], ".2f"),
                  _num(ref_rwp.get(k, float("nan")), ".2f"), _num(d["rp_percent"], ".2f"),
                  _num(d["gof"], ".2f")] for k, d in s["datasets"].items()]
    stages = [[str(i + 1), html.escape(st["name"]), _num(st["rwp_percent"], ".2f"),
               str(st["nfev"]), "yes" if st["converged"] else "stopped early"]
              for i, st in enumerate(s["stages"])]
    return [
        Table("Agreement per pattern", ["pattern", "points", "Rwp (%)", "GSAS-II Rwp (%)",
                                        "Rp (%)", "GOF"], agreement),
        Table("Shared structural parameters, with the published GSAS-II refinement",
              ["parameter", "unit", "tiedsci", "GSAS-II", "difference / combined esd"],
              _refine_param_rows(s)),
        Table("Refinement stages (each adds parameters to the previous ones)",
              ["stage", "parameters added", "overall Rwp (%)", "residual evaluations",
               "converged"], stages),
    ]


def _pinn_headline(s: Mapping[str, Any]) -> str:
    return (f"rel. L2 error {s['rel_l2']:.2e} after {s.get('budget_s', float('nan')):.0f} s, "
            f"periodic mismatch {s['boundary_mismatch']:.1e}")


def _pinn_prose(s: Mapping[str, Any]) -> str:
    coeff = s.get("coefficients") or {}
    coeff_text = ("All PDE coefficients are fixed (a forward problem: nothing is inferred)."
                  if not coeff else "Inferred coefficients: " + ", ".join(
                      f"{html.escape(k)} = {v:.4g}" for k, v in coeff.items()) + ".")
    return _p(
        "<b>Problem.</b> The Allen&ndash;Cahn equation u<sub>t</sub> = 10<sup>&minus;4</sup> "
        "u<sub>xx</sub> + 5u &minus; 5u&sup3; on the periodic interval [&minus;1, 1), "
        "t &isin; [0, 1], from u(0, x) = x&sup2; cos(&pi;x); the reference is Raissi's "
        "spectral solution (AC.mat).",
        "<b>Tie.</b> The spatial input passes through cos/sin(k&pi;x) features, so the "
        "network's values at x = &minus;1 and x = 1 are tied by construction: periodicity "
        f"holds exactly, whatever the weights (measured mismatch {s['boundary_mismatch']:.1e}). "
        "The slope mismatch of "
        f"{s['boundary_mismatch_dx']:.3g} is not a failure: the initial condition itself has "
        "a corner at the boundary (slopes +2 and &minus;2), and the hard initial condition "
        "u = u<sub>0</sub> + N &minus; N(t<sub>0</sub>) carries it along while the network "
        f"part N is exactly periodic. {coeff_text}",
        f"<b>Budget.</b> The demo trains for {s.get('budget_s', float('nan')):.0f} s "
        f"({s['n_windows']} time windows, on {html.escape(str(s['device']))}) and reaches a "
        f"relative L2 error of {s['rel_l2']:.2e}; the example's own 600 s budget reaches "
        "about 6e-4.")


def _pinn_tables(s: Mapping[str, Any]) -> list[Table]:
    rows = [["relative L2 error", _num(s["rel_l2"], ".3e")],
            ["max |u &minus; u<sub>ref</sub>|", _num(s["max_abs"], ".3g")],
            ["boundary mismatch of u", _num(s["boundary_mismatch"], ".1e")],
            ["boundary mismatch of u<sub>x</sub> (the initial corner)",
             _num(s["boundary_mismatch_dx"], ".3g")],
            ["training budget (s)", _num(s.get("budget_s", float("nan")), ".0f")],
            ["time windows", str(s["n_windows"])], ["device", html.escape(str(s["device"]))]]
    return [Table("Accuracy against the reference (AC.mat)", ["quantity", "value"], rows)]


SECTIONS: dict[str, Section] = {
    "registry": Section(_registry_headline, _registry_prose, _registry_tables, {
        "registry/registry_joint_fit.png":
            "The two simulated spectra (dots) and the joint fit (lines). The two panels share "
            "one line centre and width; scale and background are each instrument's own."}),
    "hmm": Section(_hmm_headline, _hmm_prose, _hmm_tables, {
        "hmm/states.png":
            "Major earthquakes per year (bars, coloured by the decoded regime: blue calm, red "
            "active) and the rate of the decoded state (black). Top: rates tied per regime; "
            "bottom: every sub-state with its own rate."}),
    "refine": Section(_refine_headline, _refine_prose, _refine_tables, {
        "refine/pbso4_fit.png":
            "Observed (black crosses) and calculated (red line) powder patterns of "
            "PbSO<sub>4</sub>, reflection positions (green ticks) and the difference observed "
            "&minus; calculated (blue, bottom); top X-ray, bottom neutron. One structure "
            "calculates both patterns."}),
    "pinn": Section(_pinn_headline, _pinn_prose, _pinn_tables, {
        "pinn/solution.png":
            "The PINN's u(t, x), the reference solution and the absolute error |u &minus; "
            "u<sub>ref</sub>| over the domain.",
        "pinn/loss.png":
            "Training loss (log scale) against optimizer steps over all ten time windows "
            "and both sweeps; each window has its own loss, so the curve jumps where a new "
            "window starts. Shaded: L-BFGS iterations (Adam before each)."}),
}

TITLES = {
    "registry": "1. The registry: one line measured by two instruments",
    "hmm": "2. Tied hidden Markov model: earthquake regimes",
    "refine": "3. Joint X-ray + neutron Rietveld refinement of PbSO4",
    "pinn": "4. Allen-Cahn with an exactly periodic PINN",
}


def headline(key: str, summary: Mapping[str, Any]) -> str:
    """One line of the section's main result (the console and the report's overview)."""
    section = SECTIONS.get(key)
    if section is None or summary.get("status") == "not available":
        return str(summary.get("status", "done"))
    try:
        return section.headline(summary)
    except (KeyError, TypeError, ValueError):
        return "done"


def _section_html(key: str, summary: Mapping[str, Any], out: Path, first: bool) -> str:
    title = TITLES.get(key, key)
    parts = [f"<h2 id='{key}'{' class=first' if first else ''}>{html.escape(title)}</h2>"]
    section = SECTIONS.get(key)
    if section is None and summary.get("discovery"):
        return "\n".join(parts + discovery_html(summary, out))
    if section is None or summary.get("status") == "not available":
        parts.append(_p(html.escape(str(summary.get("status", "no summary")))))
        return "\n".join(parts)
    parts.append(section.prose(summary))
    parts += [t.html() for t in section.tables(summary)]
    parts += [_figure(out, rel, caption) for rel, caption in section.figures.items()]
    parts += discovery_html(summary, out)
    for note in summary.get("notes", []):
        parts.append(f"<p class='note'>{html.escape(note)}</p>")
    parts.append(f"<p style='color:#666'>Section run time {summary.get('wall_s', 0):.1f} s; "
                 f"files in <code>{html.escape(key)}/</code>.</p>")
    return "\n".join(parts)


def discovery_table(doc: Mapping[str, Any], caption: str | None = None) -> Table:
    """A tie-discovery path (:meth:`tiedsci.discovery.DiscoveryPath.to_dict`) as a table.

    Any domain's path renders the same: step, kind, what was merged, ``n_free``, ``dk``,
    log-likelihood, the criterion, the predicted change, iterations and seconds; the chosen row
    is marked.
    """
    crit = str(doc["criterion"])
    rows = []
    for r in doc["steps"]:
        mark = "&#9733; " if r.get("chosen") else ""
        rows.append([f"{mark}{r['step']}", html.escape(str(r["kind"])),
                     html.escape(" + ".join(r["merged"])), _num(r["n_free"]), _num(r["dk"]),
                     _num(r["loglik"], ".2f"), _num(r["criterion"], ".2f"),
                     _num(r["predicted"], ".2f"), _num(r["iterations"]),
                     _num(r["seconds"], ".2f")])
    return Table(caption or f"Tie-discovery path, chosen by {crit.upper()} (&#9733;)",
                 ["step", "kind", "merged", "n_free", "dk", "log-likelihood", crit.upper(),
                  "predicted", "iterations", "s"], rows)


def discovery_html(summary: Mapping[str, Any], out: Path) -> list[str]:
    """The discovery part of a section: ``summary["discovery"]`` (a path's ``to_dict``, or a
    list of them) as tables, and ``summary["discovery_plot"]`` (a path relative to the output
    folder) as a figure."""
    docs = summary.get("discovery")
    if not docs:
        return []
    docs = docs if isinstance(docs, list) else [docs]
    parts = [discovery_table(d).html() for d in docs]
    plot = summary.get("discovery_plot")
    if plot:
        parts.append(_figure(out, str(plot), "The criterion along the discovery path "
                                             "against the free-parameter count; the star "
                                             "marks the chosen model."))
    return parts


def _overview(results: Mapping[str, Mapping[str, Any]], quick: bool) -> str:
    rows = [[f"<a href='#{k}'>{html.escape(TITLES.get(k, k))}</a>", html.escape(headline(k, s)),
             _num(s.get("wall_s", float("nan")), ".1f")] for k, s in results.items()]
    parts = [_p("One constraint registry under three workflows: a tie makes several places "
                "share one value, so the evidence from all of them is pooled. Each section "
                "says what is tied, why, and what it bought.")]
    if quick:
        parts.append("<p class='note'>This is the <b>--quick</b> smoke run: capped "
                     "refinement stages, fewer HMM starts and 12 s of PINN training. Numbers "
                     "are rough; run <code>tiedsci demo</code> for the real ones.</p>")
    parts.append(Table("Overview", ["section", "main result", "time (s)"], rows).html())
    return "\n".join(parts)


def _glossary() -> str:
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in GLOSSARY.items())
    return f"<h2 id='glossary'>Glossary</h2><dl class='glossary'>{items}</dl>"


def write_html_report(out_dir: str | Path, results: Mapping[str, Mapping[str, Any]],
                      path: str | Path | None = None, quick: bool = False,
                      title: str = "tiedsci demo report") -> Path:
    """Write ``report.html`` (self-contained: figures embedded) into ``out_dir``.

    Parameters
    ----------
    out_dir : path
        The demo's output folder; figures are read from ``out_dir/<section>/``.
    results : mapping
        Section key -> summary (``summary.json``'s content).
    path : path, optional
        Where to write (default ``out_dir/report.html``).
    quick : bool
        Say that the numbers come from the ``--quick`` smoke run.
    title : str
        Page title and heading.

    Returns
    -------
    Path
        The file written (atomically: a crash never leaves half a report).
    """
    out = Path(out_dir)
    target = Path(path) if path is not None else out / "report.html"
    raw = html.escape(json.dumps(results, indent=1, default=str))
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             "<meta name='viewport' content='width=device-width, initial-scale=1'>",
             f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
             f"<h1>{html.escape(title)}</h1><p class='sub'>Tied HMMs, joint refinement and "
             "periodic PINNs on bundled data.</p>", _overview(results, quick)]
    parts += [_section_html(k, s, out, i == 0) for i, (k, s) in enumerate(results.items())]
    parts += [_glossary(),
              "<details><summary>Raw data (the same numbers as <code>summary.json</code>)"
              f"</summary><pre>{raw}</pre></details></body></html>"]
    atomic_write_bytes(target, "\n".join(parts).encode("utf-8"))
    return target


def write_discovery_report(out_dir: str | Path, path_doc: Mapping[str, Any],
                           plot: str | None = None) -> Path:
    """``report.html`` of a ``tiedsci hmm discover`` / ``tiedsci refine discover`` run.

    Parameters
    ----------
    out_dir : path
        The run's output folder (``plot`` is read from it).
    path_doc : mapping
        :meth:`tiedsci.discovery.DiscoveryPath.to_dict` of the search.
    plot : str, optional
        File name of the criterion-along-the-path figure inside ``out_dir``.
    """
    summary: dict[str, Any] = {"discovery": dict(path_doc)}
    if plot:
        summary["discovery_plot"] = plot
    return write_html_report(out_dir, {"tie_discovery": summary},
                             title="tiedsci tie-discovery report")
