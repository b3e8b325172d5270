"""Tied HMM states on real data: earthquake regimes with non-geometric durations.

Annual counts of major earthquakes (1900-2006) switch between a calm and an active regime. A plain
HMM state has a geometric dwell time; splitting each regime into two sub-states in series that
share one Poisson rate (``tie_states=[[0, 1], [2, 3]]``) gives a regime duration with a mode away
from one year (an aggregate-Markov / expanded-state HMM, Zucchini & MacDonald 2009, ch. 12). The
same four-state topology without the tie gives every sub-state its own rate. Both are charged for
their true number of free parameters (registry ``n_free``; structural zeros of the topology are
fixed), and BIC compares them. Each fit keeps the best of several starts.

Usage::

    python examples/hmm_tied_states.py [--quick] [--json] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

import tiedsci.hmm as th

DATA = Path(__file__).resolve().parent.parent / "tiedsci" / "data" / "hmm" / "earthquakes.csv"
REGIME_TIE = [[0, 1], [2, 3]]


def load_counts() -> tuple[np.ndarray, np.ndarray]:
    """Years, shape (n,), and counts, shape (n, 1)."""
    data = np.loadtxt(DATA, delimiter=",", skiprows=1)
    return data[:, 0].astype(int), data[:, 1:2].astype(int)


def expanded_topology(p_calm: float, p_active: float) -> np.ndarray:
    """Sub-states 0 -> 1 -> 2 -> 3 -> 0 (stay or advance); all other transitions are zero."""
    trans = np.zeros((4, 4))
    for s, p in enumerate((p_calm, p_calm, p_active, p_active)):
        trans[s, s] = 1.0 - p
        trans[s, (s + 1) % 4] = p
    return trans


def fit_best(x: np.ndarray, tie_states: list[list[int]] | None, n_starts: int,
             n_iter: int) -> th.PoissonHMM:
    """Best (highest likelihood) of ``n_starts`` seeded fits of the expanded model."""
    best = None
    for seed in range(n_starts):
        rng = np.random.default_rng(seed)
        model = th.PoissonHMM(4, n_iter=n_iter, tol=1e-8, init_params="", random_state=seed,
                              tie_states=tie_states)
        model.startprob_ = np.array([0.5, 0.0, 0.5, 0.0])
        model.transmat_ = expanded_topology(*rng.uniform(0.1, 0.5, 2))
        lo, hi = np.quantile(x, [0.25, 0.75]) * rng.uniform(0.8, 1.2, 2)
        model.lambdas_ = np.array([[lo], [lo * 1.05], [hi], [hi * 0.95]])
        model.fit(x)
        if best is None or model.score(x) > best.score(x):
            best = model
    assert best is not None
    return best


def plot_states(years: np.ndarray, x: np.ndarray, tied: th.PoissonHMM, free: th.PoissonHMM,
                path: Path) -> None:
    """Counts with the decoded regime (sub-states merged) and its rate, both models."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 5.5))
    FigureCanvasAgg(fig)  # the demo runs this in-process: no backend switch, no pyplot state
    axes = fig.subplots(2, 1, sharex=True)
    for ax, model, title in ((axes[0], tied, "tied sub-states (one rate per regime)"),
                             (axes[1], free, "untied (one rate per sub-state)")):
        states = model.predict(x)
        rate = model.lambdas_[states, 0]
        ax.bar(years, x[:, 0], color=np.where(states >= 2, "tab:red", "tab:blue"), alpha=0.5)
        ax.step(years, rate, where="mid", color="k", lw=1.5, label="state rate")
        ax.set_ylabel("quakes / year")
        ax.set_title(f"{title}: BIC {model.bic(x):.1f}, n_free {model.n_free}", fontsize=10)
    axes[0].legend(loc="upper right")
    axes[1].set_xlabel("year (blue: calm regime, red: active regime)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def run(out_dir: str | Path = "hmm_tied_states_out", quick: bool = False) -> dict[str, Any]:
    """Fit tied and untied expanded models, compare BIC, write ``states.png`` and parameters.

    Returns a JSON-serialisable summary.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    years, x = load_counts()
    n_starts, n_iter = (3, 200) if quick else (10, 1000)
    tied = fit_best(x, REGIME_TIE, n_starts, n_iter)
    free = fit_best(x, None, n_starts, n_iter)
    plain = max((th.PoissonHMM(2, n_iter=n_iter, tol=1e-8, random_state=s).fit(x)
                 for s in range(n_starts)), key=lambda m: m.score(x))
    plot_states(years, x, tied, free, out / "states.png")
    tied.save(out / "tied_model")
    free.save(out / "untied_model")
    (out / "tied_parameters.txt").write_text(tied.report())
    bic_tied, bic_free = tied.bic(x), free.bic(x)
    return {
        "data": f"major earthquakes per year {years[0]}-{years[-1]} ({x.shape[0]} years)",
        "n_free_tied": tied.n_free,
        "n_free_untied": free.n_free,
        "loglik_tied": tied.score(x),
        "loglik_untied": free.score(x),
        "bic_tied": bic_tied,
        "bic_untied": bic_free,
        "bic_prefers": "tied" if bic_tied < bic_free else "untied",
        "bic_plain_2_state": plain.bic(x),
        "rates_tied": [float(v) for v in tied.lambdas_[::2, 0]],
        "plot": str(out / "states.png"),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer starts and iterations")
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", default="hmm_tied_states_out")
    a = p.parse_args()
    res = run(a.out, quick=a.quick)
    if a.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k:>18}: {v}")


if __name__ == "__main__":
    main()
