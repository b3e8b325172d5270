"""Tie discovery: which parameters should be tied? (HMM and joint-refinement sections)

Every tool that ties parameters asks the user to know the ties in advance. ``tiedsci.hmm.discover``
searches for them: greedy bottom-up merging of states (or single blocks, or transition rows),
ranked from the E-step statistics, every path point refitted warm from its parent, and the path
point chosen by BIC with the registry's true free-parameter count (shared/notes/discovery.md).

Sections (one function each; ``--only`` picks some):

- ``hmm_planted``: the tied-truth set-up (8 states in 4 pairs of identical emissions, different
  transitions; 20 x 100 frames; tests/hmm/test_tied_truth.py), 10 seeds. Recovery is counted
  at the emission level (the right set of distinct emissions) and strictly (the planted state
  pairs under a one-to-one matching); the path is chosen by BIC, and on the same path by AIC
  and by the log-likelihood of a second, held-out sample. The untied start is grown by
  splitting (``start="split"``); its allocation of states to emissions is reported per seed.
- ``hmm_partial_pooling``: similar-but-not-identical states (two groups of three whose means
  scatter around two centres): held-out log-likelihood of untied, hard-tied and learned
  soft-tied means (``spread="positive"``), 10 seeds per scatter.
- ``hmm_earthquakes``: the bundled annual counts of major earthquakes (1900-2006). The
  hand-chosen tie of examples/hmm_tied_states.py (two sub-states per regime sharing a rate)
  lost to the untied model by BIC; what does discovery find from the untied expanded model,
  and does the reverse test (split each declared tie) want the hand tie split?

- ``refine_planted``, ``refine_pbso4``, ``refine_partial_pooling``: the least-squares side
  (``tiedsci.refine.discover`` and learned soft ties), defined in
  ``examples/tie_discovery_refine.py``: six datasets with zero shifts equal in two groups of
  three (10 seeds, BIC and AIC); one lattice or two for the PbSO4 X-ray + neutron pair; ten
  nominally identical detector banks scored on held-out runs (hard tie, no tie, learned soft tie).

Usage::

    python examples/tie_discovery.py [--json] [--quick] [--only hmm_planted ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import tiedsci.hmm as th
from tiedsci.hmm.discovery import discover, planted_recovery, split_test, sticky_gaussian_hmm

HERE = Path(__file__).resolve().parent
PAIRS = [[0, 1], [2, 3], [4, 5], [6, 7]]
CENTRES = np.array([[0.0, 0.0], [2.5, 0.0], [0.0, 2.5], [2.5, 2.5]])


def planted_truth(seed: int) -> th.GaussianHMM:
    """The tied-truth HMM of tests/hmm/test_tied_truth.py (4 pairs of identical emissions)."""
    return sticky_gaussian_hmm(np.repeat(CENTRES, 2, axis=0), np.ones((8, 2)), seed=seed)


def planted_seed(seed: int) -> tuple[dict[str, Any], Any]:
    """One seed: discover from a split-grown start; recovery at the BIC, AIC and held-out
    choices of the same path."""
    truth = planted_truth(seed)
    lengths = np.full(20, 100)
    x, z = truth.sample(int(lengths.sum()), random_state=seed)
    xh, _ = truth.sample(int(lengths.sum()), random_state=10_000 + seed)
    t0 = time.perf_counter()
    path = discover(th.GaussianHMM(8, "diag"), x, lengths, start="split",
                    heldout=(xh, lengths), n_iter=50, random_state=seed)
    seconds = time.perf_counter() - t0
    row: dict[str, Any] = {"seed": seed, "seconds": round(seconds, 2),
                           "start_copies": path.info["copies"],
                           "start_M": path.info["M"],
                           "refits": len(path.steps) - 1,
                           "em_iterations": int(sum(s.iterations for s in path.steps))}
    choices = {"bic": path.best, "aic": path.choice("aic"),
               "heldout": path.choice("heldout")}
    for name, i in choices.items():
        rec = planted_recovery(path.models[i], x, lengths, z, PAIRS)
        row[name] = {"step": i, "n_free": path.steps[i].n_free, "emission": rec["emission"],
                     "strict": rec["strict"]}
    row["classes_bic"] = planted_recovery(path.best_model, x, lengths, z, PAIRS)["classes"]
    return row, path


def hmm_planted(out: Path, quick: bool) -> dict[str, Any]:
    """Planted 8-state / 4-pairs recovery over seeds (3 with ``quick``, else 10)."""
    seeds = range(3 if quick else 10)
    rows, first = [], None
    for seed in seeds:
        row, path = planted_seed(seed)
        rows.append(row)
        first = first or path
    assert first is not None
    fig = first.plot(title="planted pairs, seed 0: BIC along the discovery path")
    fig.savefig(out / "planted_path.png", dpi=110)
    count = {f"{c}_{m}": int(sum(r[c][m] for r in rows)) for c in ("bic", "aic", "heldout")
             for m in ("emission", "strict")}
    return {"n_seeds": len(rows), **count,
            "seconds_median": float(np.median([r["seconds"] for r in rows])),
            "seconds_max": float(max(r["seconds"] for r in rows)),
            "seeds": rows, "path_seed0": first.to_dict(),
            "table_seed0": first.table(), "plot": str(out / "planted_path.png")}


def _earthquake_example() -> Any:
    spec = importlib.util.spec_from_file_location("hmm_tied_states", HERE / "hmm_tied_states.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def hmm_earthquakes(out: Path, quick: bool) -> dict[str, Any]:
    """Discovery on the expanded 4-state earthquake model, and the reverse test of the
    hand-chosen regime tie."""
    eq = _earthquake_example()
    _, x = eq.load_counts()
    n_starts, n_iter = (3, 300) if quick else (10, 1000)
    untied = eq.fit_best(x, None, n_starts, n_iter)
    tied = eq.fit_best(x, eq.REGIME_TIE, n_starts, n_iter)
    path = discover(untied, x, candidates=["state", "transmat"], n_iter=300)
    reverse = split_test(tied, x, n_iter=300)
    plain = [discover(th.PoissonHMM(k), x, start="split", n_iter=200) for k in (2, 3)]
    fig = path.plot(title="earthquakes: BIC along the discovery path (expanded 4-state model)")
    fig.savefig(out / "earthquakes_path.png", dpi=110)
    best = path.best_model
    return {"bic_untied": float(untied.bic(x)), "bic_hand_tied": float(tied.bic(x)),
            "n_free_untied": untied.n_free, "n_free_hand_tied": tied.n_free,
            "discovered_ties": best.ties or {}, "bic_discovered": path.steps[path.best].criterion,
            "n_free_discovered": path.steps[path.best].n_free,
            "rates_discovered": [float(v) for v in best.lambdas_[:, 0]],
            "path": path.to_dict(), "table": path.table(),
            "reverse_test": reverse.to_dict(), "reverse_table": reverse.table(),
            "reverse_wants_split": reverse.best != 0,
            "plain": {f"{k}_states": {"bic_best": p.steps[p.best].criterion,
                                      "ties": p.best_model.ties or {}}
                      for k, p in zip((2, 3), plain)},
            "plot": str(out / "earthquakes_path.png")}


SOFT_GROUPS = [[0, 1, 2], [3, 4, 5]]


def pooling_seed(seed: int, delta: float) -> dict[str, float]:
    """Held-out log-likelihood per frame of untied, hard-tied and soft-tied means.

    Six sticky states (stay 0.95) in two groups of three whose means scatter by ``delta``
    (unit variances) around two centres; 10 x 50 training frames, 20 x 100 held-out frames.
    All three fits start from the same 5-iteration untied fit (means started at the truth,
    so the groups are labelled)."""
    rng = np.random.default_rng(500 + seed)
    means = np.repeat([[0.0, 0.0], [4.0, 4.0]], 3, axis=0) + delta * rng.standard_normal((6, 2))
    truth = sticky_gaussian_hmm(means, np.ones((6, 2)), stay=0.95, seed=seed)
    x, _ = truth.sample(500, random_state=seed)
    xh, _ = truth.sample(2000, random_state=1000 + seed)
    lengths, held = [50] * 10, [100] * 20
    base = th.GaussianHMM(6, "diag", n_iter=5, init_params="stc", covars_prior=0,
                          random_state=seed)
    base.means_ = means + np.random.default_rng(seed).normal(0, 0.1, means.shape)
    start = base.fit(x, lengths).em_state().values
    out: dict[str, float] = {}
    for name, kw in (("untied", {}), ("hard", {"ties": {"means": SOFT_GROUPS}}),
                     ("soft", {"soft_ties": {"means": SOFT_GROUPS}, "spread": "positive"})):
        est = th.GaussianHMM(6, "diag", n_iter=200, tol=1e-4, covars_prior=0, **kw)
        est.fit(x, lengths, start=dict(start))
        out[name] = est.score(xh, held) / 2000
        if name == "soft":
            out["spreads"] = [round(f.spread, 4) for f in est.soft_ties_]
    return out


def hmm_partial_pooling(out: Path, quick: bool) -> dict[str, Any]:
    """Learned soft ties against hard ties and no ties, on held-out data (10 seeds)."""
    result: dict[str, Any] = {}
    for delta in (0.5, 0.8):
        rows = [pooling_seed(seed, delta) for seed in range(3 if quick else 10)]
        mean = {k: float(np.mean([r[k] for r in rows])) for k in ("untied", "hard", "soft")}
        result[f"delta_{delta}"] = {
            "heldout_loglik_per_frame": mean,
            "soft_best_seeds": int(sum(r["soft"] > max(r["untied"], r["hard"]) for r in rows)),
            "soft_beats_hard_seeds": int(sum(r["soft"] > r["hard"] for r in rows)),
            "soft_beats_untied_seeds": int(sum(r["soft"] > r["untied"] for r in rows)),
            "seeds": rows}
    return result


def _refine_sections() -> Any:
    spec = importlib.util.spec_from_file_location("tie_discovery_refine",
                                                  HERE / "tie_discovery_refine.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refine(section: str) -> Callable[[Path, bool], dict[str, Any]]:
    """A least-squares section of examples/tie_discovery_refine.py as a section here."""

    def run_section(out: Path, quick: bool) -> dict[str, Any]:
        module = _refine_sections()
        if section == "planted":
            res = module.planted(seeds=3 if quick else 10)
        elif section == "pbso4":
            res = module.pbso4(quick=quick)
        else:
            res = module.partial_pooling(seeds=3 if quick else 10)
        return module._clean(res)

    return run_section


SECTIONS: dict[str, Callable[[Path, bool], dict[str, Any]]] = {
    "hmm_planted": hmm_planted,
    "hmm_earthquakes": hmm_earthquakes,
    "hmm_partial_pooling": hmm_partial_pooling,
    "refine_planted": _refine("planted"),
    "refine_pbso4": _refine("pbso4"),
    "refine_partial_pooling": _refine("pooling"),
}


def run(out_dir: str | Path = "tie_discovery_out", quick: bool = False,
        only: list[str] | None = None) -> dict[str, Any]:
    """Run the chosen sections; returns ``{section: summary}`` (JSON-able) plus timings."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(SECTIONS) if not only else only
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise SystemExit(f"unknown sections {unknown}; choose from {list(SECTIONS)}")
    result: dict[str, Any] = {}
    for name in names:
        t0 = time.perf_counter()
        result[name] = SECTIONS[name](out, quick)
        result[name]["section_seconds"] = round(time.perf_counter() - t0, 2)
    (out / "tie_discovery.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", action="store_true", help="print the whole result as JSON")
    p.add_argument("--quick", action="store_true", help="fewer seeds and starts")
    p.add_argument("--only", nargs="*", default=None, help=f"sections: {list(SECTIONS)}")
    p.add_argument("--out", default="tie_discovery_out")
    a = p.parse_args()
    res = run(a.out, quick=a.quick, only=a.only)
    if a.json:
        print(json.dumps(res, indent=2, default=str))
        return
    for name, r in res.items():
        print(f"== {name} ({r['section_seconds']} s)")
        for k, v in r.items():
            if k not in ("seeds", "path_seed0", "path", "reverse_test", "table", "table_seed0",
                         "reverse_table"):
                print(f"  {k}: {v}")
        for k in ("table_seed0", "table", "reverse_table"):
            if k in r:
                print(r[k])


if __name__ == "__main__":
    main()
