"""Tie discovery and learned soft ties in joint refinement (least-squares sections).

Three sections, each a function returning a JSON-able dict; ``examples/tie_discovery.py`` runs
them beside the HMM sections (``--only refine_planted refine_pbso4 refine_partial_pooling``):

- :func:`planted`: six datasets whose zero shifts are equal within two groups of three
  (shared/notes/discovery.md, section 3). ``tiedsci.refine.discover`` merges the per-dataset
  zero shifts bottom-up (Wald-ranked, warm refits) and BIC picks the step; recovery of the
  two groups over 10 seeds, with AIC beside it.
- :func:`pbso4`: the PbSO4 joint X-ray + neutron refinement (bundled data). Do the data want
  a separate lattice for the neutron pattern (collected cold: hydrostatic strain D11, D22,
  D33 on the reciprocal metric, as GSAS-II refines) or one lattice for both? The candidate
  step fixes ``neutron.dij`` at 0 (one lattice); BIC compares. The start is the example's
  staged fit; the one-lattice refit is capped at ``max_nfev`` evaluations (reduced budget).
- :func:`partial_pooling`: ten nominally identical detector banks whose zero shifts have a
  small real spread (comparable to each bank's own esd). Each bank has a second, held-out
  run; the hard tie, no tie and the learned soft tie (type-II / REML spread) are fitted on
  the first runs and scored by the held-out chi^2 (lower is better), seed by seed. The cost
  of the two spread searches (Brent on log tau, MacKay's fixed point) is reported beside.

Run: ``python examples/tie_discovery_refine.py [--json] [--only planted pbso4 pooling]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.refine.planted import detector_banks, heldout_chi2, zero_shift_groups
from tiedsci.refine.softtie import learn_spreads
from tiedsci.refine.tiesearch import discover

HERE = Path(__file__).resolve().parent


def _partition(path: Any, i: int) -> list[list[str]]:
    return sorted(sorted(n.split(".")[0] for n in g) for g in path.info["groups"][i]["zero"])


def planted(seeds: int = 10, delta: float = 0.02) -> dict[str, Any]:
    """Recovery of two planted groups of equal zero shifts, per seed, at BIC and AIC."""
    rows = []
    for seed in range(seeds):
        t0 = time.perf_counter()
        jr, truth = zero_shift_groups(seed, delta=delta)
        start = jr.fit()
        path = discover(jr, start, ["zero"])
        want = sorted(truth["groups"])
        row: dict[str, Any] = {"seed": seed, "seconds": time.perf_counter() - t0,
                               "refits": len(path.steps) - 1,
                               "last_merge_dchi2": -2 * (path.steps[-1].loglik
                                                         - path.steps[-2].loglik)}
        for crit in ("bic", "aic"):
            i = path.choice(crit)
            row[crit] = {"recovered": _partition(path, i) == want, "step": i,
                         "groups": _partition(path, i)}
        rows.append(row)
    last = path.to_dict()
    return {"delta": delta, "seeds": rows,
            "recovered": {c: sum(r[c]["recovered"] for r in rows) for c in ("bic", "aic")},
            "n_seeds": seeds, "seconds_median": float(np.median([r["seconds"] for r in rows])),
            "last_path": last["steps"]}


def _pbso4_module() -> Any:
    spec = importlib.util.spec_from_file_location("pbso4_example",
                                                  HERE / "pbso4_joint_xray_neutron.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def pbso4(max_nfev: int = 60, quick: bool = False) -> dict[str, Any]:
    """One lattice or two? The neutron strain ``neutron.dij`` fixed at 0 as a discovery step."""
    ex = _pbso4_module()
    t0 = time.perf_counter()
    with ex._one_thread():
        jr, _, cp = ex.build()
        start = jr.fit(stages=ex.stages(cp, quick), ftol=1e-7, xtol=1e-9, gtol=1e-8,
                       on_singular="warn")
        t_start = time.perf_counter() - t0
        path = discover(jr, start, [], offsets=["neutron.dij"],
                        fit_kwargs={"ftol": 1e-7, "xtol": 1e-9, "gtol": 1e-8,
                                    "max_nfev": max_nfev, "on_singular": "warn"})
    one = path.models[1]
    dij = start.values["neutron.dij"]
    return {
        "question": "separate lattice for the neutron pattern (D11, D22, D33 free) or one?",
        "answer": "separate lattice" if path.best == 0 else "one lattice",
        "path": path.to_dict(), "table": path.table(),
        "dij": np.asarray(dij).tolist(),
        "dij_esd": np.asarray(start.esd["neutron.dij"]).tolist(),
        "wald_dchi2": path.info["wald"][1],
        "refit_dchi2": -2 * (path.steps[1].loglik - path.steps[0].loglik),
        "rwp_percent": {"separate": {d.name: 100 * d.agreement.rwp for d in start.datasets},
                        "one": {d.name: 100 * d.agreement.rwp for d in one.datasets}},
        "one_lattice_refit": {"nfev": one.nfev, "converged": one.converged,
                              "max_nfev": max_nfev},
        "seconds": {"start_fit": t_start, "search": path.steps[1].seconds},
    }


def partial_pooling(seeds: int = 10, compare_methods: bool = False) -> dict[str, Any]:
    """Held-out chi^2 of the hard tie, no tie and the learned soft tie, seed by seed
    (``compare_methods``: also learn the spread by MacKay's fixed point, for its cost)."""
    rows = []
    soft_kinds = ("soft", "soft_mackay") if compare_methods else ("soft",)
    for seed in range(seeds):
        row: dict[str, Any] = {"seed": seed}
        for kind in ("hard", "none", *soft_kinds):
            jr, truth = detector_banks(seed)
            names = [f"{d}.zero" for d in jr.dataset_names]
            if kind == "hard":
                jr.registry.tie(*names)
            elif kind.startswith("soft"):
                jr.registry.soft_tie(names, None, centre="zero.centre")
            t0 = time.perf_counter()
            res = (learn_spreads(jr, spread_method="mackay") if kind == "soft_mackay"
                   else jr.fit())
            row[kind] = {"heldout_chi2": heldout_chi2(res.values, truth["heldout"]),
                         "n_free": res.n_free, "seconds": time.perf_counter() - t0}
            if kind == "none":  # each bank's own esd (untied)
                row["bank_esd"] = float(np.mean([float(res.esd[n]) for n in names]))
            if kind.startswith("soft"):
                learned = res.soft["learned"]
                row[kind].update(tau=learned["tau"]["zero.centre"], refits=learned["refits"],
                                 n_eff=res.soft["n_eff"])
        row["true_tau"] = truth["tau"]
        rows.append(row)
    mean = {k: float(np.mean([r[k]["heldout_chi2"] for r in rows]))
            for k in ("hard", "none", "soft")}
    wins = {other: sum(r["soft"]["heldout_chi2"] < r[other]["heldout_chi2"] for r in rows)
            for other in ("hard", "none")}
    cost = {m: {"refits_median": float(np.median([r[m]["refits"] for r in rows])),
                "seconds_median": float(np.median([r[m]["seconds"] for r in rows]))}
            for m in soft_kinds}
    return {"seeds": rows, "mean_heldout_chi2": mean, "soft_beats": wins, "n_seeds": seeds,
            "spread_search_cost": {("search" if m == "soft" else "mackay"): c
                                   for m, c in cost.items()}}


SECTIONS = {"planted": planted, "pbso4": pbso4, "pooling": partial_pooling}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the JSON summary")
    ap.add_argument("--only", nargs="*", default=list(SECTIONS), choices=list(SECTIONS))
    args = ap.parse_args(argv)
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    for name in args.only:
        t = time.perf_counter()
        out[name] = SECTIONS[name]()
        out[name]["section_seconds"] = time.perf_counter() - t
    out["total_seconds"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(_clean(out), indent=1))
    else:
        for name, sec in out.items():
            if isinstance(sec, dict):
                print(name, {k: v for k, v in sec.items()
                             if k in ("recovered", "answer", "mean_heldout_chi2", "soft_beats",
                                      "spread_search_cost", "section_seconds")})
    return out


def _clean(v: Any) -> Any:
    """JSON-able: non-finite floats become None, numpy scalars plain numbers."""
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


if __name__ == "__main__":
    main()
