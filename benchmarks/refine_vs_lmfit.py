"""Joint powder-like refinement: lmfit (leastsq, hand-written residual) vs tiedsci.refine.

N synthetic datasets of 2000 points; 20 pseudo-Voigt peaks whose positions follow 3 shared
lattice parameters and whose intensities are shared; per dataset scale (fixed for the first
dataset, which sets the intensity scale), zero shift, U, V, W and 3 background coefficients:
23 + 8N - 1 free parameters. Both fit from the same perturbed start.

lmfit is set up the way its users do it: one ``Parameters`` object and a residual that loops
over the datasets and concatenates (numpy model). leastsq then pays a dense finite-difference
Jacobian ((n_params + 1) full residual evaluations) and a dense QR, both growing faster than N.
For N above ``--max-lmfit-n`` (default 10) lmfit is NOT run to convergence (it takes > 1000 s
at N = 100); its time is then an ESTIMATE: lmfit's first leastsq iteration is run and timed
(one finite-difference Jacobian, its QR, one step) and multiplied by the number of Jacobians
lmfit needed at the largest N it did run. With ``--no-lmfit-probe`` the first iteration is not
run either and the estimate is (one residual) x (n_params + 1) x (that number), a lower bound
without the QR. Runs carrying an estimate say so ("lmfit_run": false, "lmfit_note").

tiedsci is timed end to end (compile, probing, fit, covariance, statistics) after a small
warm-up fit that pays torch's one-time initialisation, with torch limited to one thread by
default (``--threads``), as MINPACK and numpy's elementwise operations are single-threaded.

N = 1 is a different, everyday problem: one small curve (a Gaussian peak on a sloping
background, 200 points, 5 parameters, the model written once with
``tiedsci.backends.namespace_of``), lmfit ``minimize`` vs ``JointRefinement.fit``, each the
median of ``--repeats`` fits after a warm-up, the two interleaved fit by fit.

Usage: ``python benchmarks/refine_vs_lmfit.py [--json] [--n 1 2 10 100] [--max-lmfit-n 10]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import numpy as np

from tiedsci.refine import JointRefinement
from tiedsci.refine.synthetic import (
    LOCAL_NAMES,
    make_powder_data,
    perturbed_start,
    powder_curve,
)


# ---------------------------------------------------------------------- lmfit, by hand
def lmfit_problem(setup: Any, datasets: list[Any], start: dict[str, Any]) -> tuple[Any, Any]:
    import lmfit

    params = lmfit.Parameters()
    for name, val in zip("abc", start["cell"]):
        params.add(name, value=float(val))
    n_peaks = len(start["intensities"])
    for i, val in enumerate(start["intensities"]):
        params.add(f"I{i}", value=float(val))
    for k, ds in enumerate(datasets):
        s = start[ds.name]
        params.add(f"d{k}_scale", value=s["scale"], vary=k > 0)
        for nm in ("zero", "U", "V", "W"):
            params.add(f"d{k}_{nm}", value=s[nm])
        for j in range(3):
            params.add(f"d{k}_bkg{j}", value=float(s["bkg"][j]))

    def residual(p: Any) -> np.ndarray:
        v = p.valuesdict()
        cell = (v["a"], v["b"], v["c"])
        inten = np.array([v[f"I{i}"] for i in range(n_peaks)])
        out = []
        for k, ds in enumerate(datasets):
            bkg = np.array([v[f"d{k}_bkg{j}"] for j in range(3)])
            yc = powder_curve(ds.x, cell, inten, v[f"d{k}_scale"], v[f"d{k}_zero"], v[f"d{k}_U"],
                              v[f"d{k}_V"], v[f"d{k}_W"], bkg, setup.hkl, setup.wavelength,
                              setup.x_mid, setup.x_half)
            out.append((ds.y - yc) / ds.sigma)
        return np.concatenate(out)

    return params, residual


def lmfit_values(params: Any, n_datasets: int, n_peaks: int) -> dict[str, float]:
    out = {f"cell.{n}": params[n].value for n in "abc"}
    out.update({f"intensities[{i}]": params[f"I{i}"].value for i in range(n_peaks)})
    for k in range(n_datasets):
        for nm in ("scale", "zero", "U", "V", "W"):
            out[f"d{k}.{nm}"] = params[f"d{k}_{nm}"].value
        for j in range(3):
            out[f"d{k}.bkg[{j}]"] = params[f"d{k}_bkg{j}"].value
    return out


def run_lmfit(setup: Any, datasets: list[Any], start: dict[str, Any]) -> dict[str, Any]:
    import lmfit

    params, residual = lmfit_problem(setup, datasets, start)
    t0 = time.perf_counter()
    out = lmfit.minimize(residual, params, method="leastsq")
    wall = time.perf_counter() - t0
    n_peaks = len(start["intensities"])
    return {"s": wall, "nfev": int(out.nfev), "nvarys": int(out.nvarys),
            "values": lmfit_values(out.params, len(datasets), n_peaks),
            "stderr": {k: v for k, v in lmfit_values(
                _stderr_params(out.params), len(datasets), n_peaks).items()},
            "redchi": float(out.redchi), "success": bool(out.success)}


def _stderr_params(params: Any) -> Any:
    import copy

    p = copy.deepcopy(params)
    for name in p:
        p[name].value = p[name].stderr if p[name].stderr is not None else float("nan")
    return p


def estimate_lmfit(setup: Any, datasets: list[Any], start: dict[str, Any],
                   jacobians: float, probe: bool) -> dict[str, Any]:
    """Estimate of lmfit leastsq's time at this N (lmfit not run to convergence).

    Without ``probe``: (one residual) x (nvarys + 1) x ``jacobians``, a lower bound that leaves
    out MINPACK's QR. With ``probe``: lmfit really runs its first iteration (max_nfev =
    nvarys + 2: one finite-difference Jacobian, its QR and one trial step), and the estimate is
    that measured time x ``jacobians``.
    """
    import lmfit

    params, residual = lmfit_problem(setup, datasets, start)
    nvarys = sum(1 for p in params.values() if p.vary)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        residual(params)
        times.append(time.perf_counter() - t0)
    t_res = float(np.median(times))
    nfev = int(round(jacobians * (nvarys + 1)))
    out = {"s": t_res * nfev, "nfev": nfev, "nvarys": nvarys, "t_residual_s": t_res,
           "probe_s": None}
    if probe:
        t0 = time.perf_counter()
        out["probe_error"] = None
        try:
            lmfit.minimize(residual, params, method="leastsq", max_nfev=nvarys + 2)
        except ValueError as exc:  # e.g. NaN from the first trial step (negative FWHM^2)
            out["probe_error"] = str(exc).split(" - ")[0]
        out["probe_s"] = time.perf_counter() - t0
        out["s"] = out["probe_s"] * jacobians
    return out


# ---------------------------------------------------------------------- N = 1: one small curve
def _small_curve(random_state: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A Gaussian peak on a sloping background, 200 points, 5 parameters."""
    rng = np.random.default_rng(random_state)
    x = np.linspace(-5.0, 5.0, 200)
    y = 4.0 * np.exp(-0.5 * ((x - 0.4) / 0.8) ** 2) + 0.3 + 0.05 * x
    sigma = np.full_like(x, 0.05)
    return x, y + sigma * rng.standard_normal(x.size), sigma


SMALL_START = {"amp": 2.0, "cen": 0.0, "wid": 1.2, "b0": 0.0, "b1": 0.0}


def small_model(v: Any, x: Any) -> Any:
    """The N = 1 model, written once for numpy and torch."""
    from tiedsci.backends import namespace_of

    xp = namespace_of(x)
    return v["amp"] * xp.exp(-0.5 * ((x - v["cen"]) / v["wid"]) ** 2) + v["b0"] + v["b1"] * x


def time_small(repeats: int) -> dict[str, Any]:
    """Median wall time of one small curve fit, lmfit ``minimize`` vs tiedsci, same start."""
    import lmfit

    from tiedsci.refine import Dataset

    x, y, sigma = _small_curve()

    def lmfit_fit() -> Any:
        params = lmfit.Parameters()
        for k, v in SMALL_START.items():
            params.add(k, value=v)
        return lmfit.minimize(lambda p: (small_model(p.valuesdict(), x) - y) / sigma, params)

    def tiedsci_fit() -> Any:
        jr = JointRefinement()
        jr.add(Dataset(x, y, sigma=sigma, name="curve"), small_model)
        for k, v in SMALL_START.items():
            jr.shared(k, v)
        return jr.fit()

    # interleaved (one lmfit fit, one tiedsci fit, ...): a change of machine load during the
    # run then falls on both sides alike, and the ratio of the medians stays comparable
    fits = {"lmfit": lmfit_fit, "tiedsci": tiedsci_fit}
    times: dict[str, list[float]] = {name: [] for name in fits}
    last: dict[str, Any] = {name: fn() for name, fn in fits.items()}  # warm-up
    for _ in range(repeats):
        for name, fn in fits.items():
            t0 = time.perf_counter()
            last[name] = fn()
            times[name].append(time.perf_counter() - t0)
    out = {name: (float(np.median(times[name])), last[name]) for name in fits}
    lm, ts = out["lmfit"][1], out["tiedsci"][1]
    rel = max(abs(lm.params[k].value - float(ts.values[k])) / abs(float(ts.values[k]))
              for k in SMALL_START)
    esd = max(abs(lm.params[k].stderr - float(ts.esd[k])) / float(ts.esd[k])
              for k in SMALL_START)
    return {"n_datasets": 1, "n_free": len(SMALL_START), "repeats": repeats,
            "lmfit_s": round(out["lmfit"][0], 4), "lmfit_nfev": int(lm.nfev),
            "tiedsci_s": round(out["tiedsci"][0], 4), "tiedsci_nfev": ts.nfev,
            "tiedsci_njev": ts.njev, "tiedsci_converged": ts.converged, "lmfit_run": True,
            "max_rel_param_diff": float(rel), "max_rel_esd_diff": float(esd),
            "speedup": round(out["lmfit"][0] / out["tiedsci"][0], 2)}


# ---------------------------------------------------------------------- tiedsci
def tiedsci_refinement(setup: Any, datasets: list[Any], start: dict[str, Any]
                       ) -> JointRefinement:
    from tiedsci.refine.synthetic import make_powder_model as _mk

    model = _mk(setup)
    jr = JointRefinement()
    for ds in datasets:
        jr.add(ds, model)
    for name, val in zip("abc", start["cell"]):
        jr.shared(f"cell.{name}", float(val), unit="angstrom")
    jr.shared("intensities", start["intensities"])
    for nm in LOCAL_NAMES:
        jr.local(nm, {ds.name: start[ds.name][nm] for ds in datasets})
    jr.registry.fix(f"{datasets[0].name}.scale")
    return jr


def run_tiedsci(setup: Any, datasets: list[Any], start: dict[str, Any]) -> dict[str, Any]:
    t0 = time.perf_counter()
    jr = tiedsci_refinement(setup, datasets, start)
    res = jr.fit()
    wall = time.perf_counter() - t0
    vals, errs = {}, {}
    for lab in res.free_names:
        name = lab.split("[")[0]
        arr = np.ravel(res.values[name])
        err = np.ravel(res.esd[name])
        j = int(lab.split("[")[1][:-1]) if "[" in lab else 0
        vals[lab], errs[lab] = float(arr[j]), float(err[j])
    return {"s": wall, "nfev": res.nfev, "njev": res.njev, "values": vals, "stderr": errs,
            "redchi": res.redchi, "converged": res.converged, "n_free": res.n_free}


def compare(lm: dict[str, Any], ts: dict[str, Any]) -> dict[str, float]:
    rel, in_esd, esd_rel = [], [], []
    for k, v in ts["values"].items():
        d = abs(lm["values"][k] - v)
        rel.append(d / max(abs(v), 1e-300))
        in_esd.append(d / ts["stderr"][k])
        le = lm["stderr"].get(k, float("nan"))
        esd_rel.append(abs(le - ts["stderr"][k]) / ts["stderr"][k])
    return {"max_rel_param_diff": float(max(rel)), "max_param_diff_in_esd": float(max(in_esd)),
            "max_rel_esd_diff": float(np.nanmax(esd_rel))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--n", type=int, nargs="*", default=[1, 2, 10, 100],
                    help="numbers of datasets; 1 is a single small curve (5 parameters)")
    ap.add_argument("--repeats", type=int, default=20,
                    help="fits timed (median) for the N = 1 row")
    ap.add_argument("--points", type=int, default=2000)
    ap.add_argument("--max-lmfit-n", type=int, default=10,
                    help="run lmfit only up to this N; above, report a lower-bound estimate")
    ap.add_argument("--no-lmfit-probe", dest="lmfit_probe", action="store_false",
                    help="above --max-lmfit-n, do not time lmfit's first iteration (minutes); "
                         "estimate from one residual evaluation only")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (default 1: single-threaded like MINPACK)")
    args = ap.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)

    # warm-up: torch's one-time initialisation is not part of any timing
    setup, ds, truth = make_powder_data(2, n_points=200, random_state=99)
    run_tiedsci(setup, ds, perturbed_start(truth, [d.name for d in ds]))

    runs = []
    lmfit_jacobians = None
    for n in args.n:
        if n == 1:  # one small curve, median of repeated fits
            row = time_small(args.repeats)
            runs.append(row)
            if not args.json:
                print(f"N=   1 n_free={row['n_free']:5d}  lmfit {row['lmfit_s']:10.4f} s "
                      f"(nfev {row['lmfit_nfev']})  tiedsci {row['tiedsci_s']:8.4f} s "
                      f"(nfev {row['tiedsci_nfev']}, njev {row['tiedsci_njev']})  speedup "
                      f"{row['speedup']:8.2f}x  (median of {row['repeats']} fits)", flush=True)
            continue
        setup, datasets, truth = make_powder_data(n, n_points=args.points, random_state=0)
        start = perturbed_start(truth, [d.name for d in datasets], random_state=1)
        ts = run_tiedsci(setup, datasets, start)
        row: dict[str, Any] = {"n_datasets": n, "n_free": ts["n_free"],
                               "tiedsci_s": round(ts["s"], 3), "tiedsci_nfev": ts["nfev"],
                               "tiedsci_njev": ts["njev"], "tiedsci_converged": ts["converged"]}
        if n <= args.max_lmfit_n:
            lm = run_lmfit(setup, datasets, start)
            lmfit_jacobians = lm["nfev"] / (lm["nvarys"] + 1)
            row.update({"lmfit_s": round(lm["s"], 3), "lmfit_nfev": lm["nfev"],
                        "lmfit_run": True, **compare(lm, ts)})
        else:
            jac = lmfit_jacobians if lmfit_jacobians is not None else 1.0
            est = estimate_lmfit(setup, datasets, start, jac, args.lmfit_probe)
            if est["probe_s"] is None:
                note = (f"NOT RUN to convergence: lower-bound estimate = one residual "
                        f"({est['t_residual_s']:.4f} s) x (nvarys+1 = {est['nvarys'] + 1}) x "
                        f"{jac:.2f} Jacobians (as many as lmfit needed at the largest N run); "
                        "MINPACK's dense QR not counted")
            else:
                note = (f"NOT RUN to convergence: estimate = measured first leastsq iteration "
                        f"(one finite-difference Jacobian of {est['nvarys'] + 1} residuals + "
                        f"QR + one step: {est['probe_s']:.1f} s) x {jac:.2f} Jacobians (as many "
                        "as lmfit needed at the largest N run)")
                if est["probe_error"]:
                    note += (f"; NB lmfit's first trial step raised: {est['probe_error']} "
                             "(a full lmfit run from this start would stop there)")
            row.update({"lmfit_s": round(est["s"], 3), "lmfit_nfev": est["nfev"],
                        "lmfit_run": False, "lmfit_first_iteration_s": est["probe_s"],
                        "max_rel_param_diff": None, "lmfit_note": note})
        row["speedup"] = round(row["lmfit_s"] / row["tiedsci_s"], 2)
        runs.append(row)
        if not args.json:
            tag = "" if row["lmfit_run"] else "  (lmfit NOT run to convergence: estimated)"
            print(f"N={n:4d} n_free={row['n_free']:5d}  lmfit {row['lmfit_s']:10.2f} s "
                  f"(nfev {row['lmfit_nfev']})  tiedsci {row['tiedsci_s']:8.2f} s "
                  f"(nfev {row['tiedsci_nfev']}, njev {row['tiedsci_njev']})  "
                  f"speedup {row['speedup']:8.1f}x  max_rel_param_diff "
                  f"{_fmt(row['max_rel_param_diff'])} (in esd: "
                  f"{_fmt(row.get('max_param_diff_in_esd'))}){tag}", flush=True)
    powder = [r for r in runs if r["n_datasets"] > 1]
    if len(powder) >= 2:
        a, b = powder[0], powder[-1]
        scaling = (b["tiedsci_s"] / a["tiedsci_s"]) / (b["n_datasets"] / a["n_datasets"])
    else:
        scaling = None
    out = {"runs": runs,
           "tiedsci_time_ratio_over_n_ratio": scaling,
           "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads "
                      f"{_torch_threads()}"}
    if args.json:
        print(json.dumps(out, indent=1))
    elif scaling is not None:
        print(f"tiedsci time grows as N^1 x {scaling:.2f} between N={powder[0]['n_datasets']} "
              f"and N={powder[-1]['n_datasets']} (1.0 = exactly linear)")
    return out


def _fmt(x: Any) -> str:
    return "n/a" if x is None else f"{x:.2g}"


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


if __name__ == "__main__":
    main()
