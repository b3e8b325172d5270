"""Plain-text report of a :class:`~tiedsci.refine.result.RefinementResult`."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tiedsci.refine.result import RefinementResult

__all__ = ["format_report", "format_value"]


def format_value(value: float, esd: float) -> str:
    """Crystallographic notation: ``8.48030(10)`` for value 8.4803 and esd 0.0001."""
    if not np.isfinite(esd) or esd <= 0 or not np.isfinite(value):
        return f"{value:.6g}"
    digits = max(0, -int(np.floor(np.log10(esd))) + 1)
    digits = min(digits, 12)
    err = int(round(esd * 10**digits))
    return f"{value:.{digits}f}({err})"


def format_report(res: RefinementResult, n_correlations: int = 10) -> str:
    """Agreement indices, per-dataset table, parameter table, correlations, diagnostics."""
    lines = []
    ov = res.overall
    lines.append("Joint refinement")
    lines.append("=" * 72)
    lines.append(f"optimizer: {res.optimizer}; {res.message}")
    lines.append(f"n_obs = {res.n_obs}, n_restraint_rows = {res.n_restraint_rows}, "
                 f"n_free = {res.n_free}, nfev = {res.nfev}, njev = {res.njev}")
    lines.append(f"chi2 = {ov.chi2:.6g}, restraint penalty = {res.penalty:.6g}, "
                 f"reduced chi2 = {res.redchi:.6g}, GOF = {ov.gof:.4f}")
    lines.append(f"Rwp = {100 * ov.rwp:.3f} %, Rp = {100 * ov.rp:.3f} %, "
                 f"Rexp = {100 * ov.rexp:.3f} %")
    lines.append("")
    lines.append(f"{'dataset':<16}{'n_obs':>8}{'chi2':>14}{'Rwp %':>9}{'Rp %':>9}"
                 f"{'Rexp %':>9}{'GOF':>8}")
    for d in res.datasets:
        a = d.agreement
        lines.append(f"{d.name:<16}{a.n_obs:>8}{a.chi2:>14.6g}{100 * a.rwp:>9.3f}"
                     f"{100 * a.rp:>9.3f}{100 * a.rexp:>9.3f}{a.gof:>8.3f}")
    if res.stages:
        lines.append("")
        lines.append("stages:")
        for s in res.stages:
            lines.append(f"  {s.name}: vary {', '.join(s.vary)} ({s.n_free} free) -> "
                         f"Rwp {100 * s.rwp:.3f} %, reduced chi2 {s.redchi:.4g}, nfev {s.nfev}"
                         f"{'' if s.converged else ' (NOT converged)'}")
    lines.append("")
    lines.append("parameters (esd " + ("scaled by reduced chi2" if res.scale_covar
                                      else "unscaled") + "):")
    if res.layout is not None:
        lines.append(res.layout.describe(res.values, res.esd))
    else:
        for name, val in res.values.items():
            arr, err = np.ravel(val), np.ravel(res.esd[name])
            text = ", ".join(format_value(float(v), float(e)) for v, e in zip(arr, err))
            lines.append(f"  {name} = {text}")
    if res.soft:
        from tiedsci.refine.softtie import soft_lines

        lines.extend(soft_lines(res.soft))
    corr = res.strongest_correlations(n_correlations, threshold=0.5)
    lines.append("")
    lines.append("strongest correlations (|r| > 0.5):" if corr else
                 "no correlation above |r| = 0.5")
    for a, b, r in corr:
        lines.append(f"  {a:<28} {b:<28} {r:+.4f}")
    if res.at_bounds:
        lines.append("")
        lines.append("parameters at a bound: " + ", ".join(f"{n} ({s})" for n, s in res.at_bounds))
    if res.singular:
        lines.append("")
        lines.append("SINGULAR normal matrix; dependent groups: "
                     + "; ".join(", ".join(g) for g in res.singular))
    if res.warnings:
        lines.append("")
        lines.extend(f"warning: {w}" for w in res.warnings)
    return "\n".join(lines)
