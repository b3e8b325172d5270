"""``tiedsci hmm fit run.toml``: fit an HMM described in a TOML run file.

Example run file::

    [data]
    path = "bundled:nile.csv"      # or a path relative to the run file
    columns = ["volume"]           # header names or 0-based indices
    # lengths = [50, 50]           # optional sequence lengths

    [model]
    family = "gaussian"            # gaussian | categorical | poisson | gmm | tied_mixture
    n_components = 2
    covariance_type = "diag"
    n_iter = 200
    tol = 1e-6
    random_state = 0
    # tie_states = [[0, 1]]
    [model.ties]
    covars = [[0, 1]]

    [init]                         # optional starting values (hmmlearn attribute names)
    startprob = [1.0, 0.0]
    transmat = [[0.95, 0.05], [0.0, 1.0]]

Writes ``model.json`` + ``model.npz``, ``parameters.txt`` (the registry table), ``states.png``
and ``summary.json`` into the output folder and returns the summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import DataError, DeclarationError

__all__ = ["run_from_toml", "run_config"]

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "hmm"
_FAMILIES = {"gaussian": "GaussianHMM", "categorical": "CategoricalHMM", "poisson": "PoissonHMM",
             "gmm": "GMMHMM", "tied_mixture": "TiedMixtureHMM"}
_INIT = {"startprob": "s", "transmat": "t", "means": "m", "covars": "c", "emissionprob": "e",
         "lambdas": "l", "weights": "w"}


def _load_toml(path: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def _read_data(spec: dict[str, Any], base: Path) -> tuple[np.ndarray, np.ndarray | None]:
    raw = spec.get("path")
    if not raw:
        raise DataError("[data] needs a 'path' (a CSV file, or 'bundled:<name>')")
    path = BUNDLED / raw.split(":", 1)[1] if raw.startswith("bundled:") else base / raw
    if not path.exists():
        raise DataError(f"[data] path {str(path)!r} does not exist")
    delimiter = spec.get("delimiter", ",")
    with open(path) as fh:
        header = fh.readline().strip().split(delimiter)
    has_header = not all(_is_number(h) for h in header)
    table = np.loadtxt(path, delimiter=delimiter, skiprows=1 if has_header else 0, ndmin=2)
    cols = spec.get("columns")
    if cols is None:
        idx = list(range(table.shape[1]))
    else:
        idx = []
        for c in cols:
            if isinstance(c, int):
                idx.append(c)
            elif has_header and c in header:
                idx.append(header.index(c))
            else:
                raise DataError(f"[data] column {c!r} not found; header: {header}")
    lengths = spec.get("lengths")
    return table[:, idx], None if lengths is None else np.asarray(lengths)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def run_config(config: dict[str, Any], out_dir: str | Path, base: Path | None = None
               ) -> dict[str, Any]:
    """Fit the model described by a parsed run-file dict; see the module docstring."""
    import tiedsci.hmm as th

    base = base or Path.cwd()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    x, lengths = _read_data(dict(config.get("data", {})), base)
    mspec = dict(config.get("model", {}))
    family = mspec.pop("family", "gaussian")
    if family not in _FAMILIES:
        raise DeclarationError(f"[model] family {family!r} unknown; use one of {list(_FAMILIES)}")
    init = dict(config.get("init", {}))
    unknown = set(init) - set(_INIT)
    if unknown:
        raise DeclarationError(f"[init] unknown parameters {sorted(unknown)}; use {list(_INIT)}")
    if init and "init_params" not in mspec:
        default = {"gaussian": "stmc", "categorical": "ste", "poisson": "stl", "gmm": "stmcw",
                   "tied_mixture": "stmcw"}[family]
        mspec["init_params"] = "".join(c for c in default if c not in
                                       {_INIT[k] for k in init})
    if family == "categorical":
        x = x.astype(np.int64)
    model = getattr(th, _FAMILIES[family])(**mspec)
    for name, value in init.items():
        setattr(model, name + "_", np.asarray(value, dtype=float))
    model.fit(x, lengths)
    states = model.predict(x, lengths)
    model.save(out / "model")
    (out / "parameters.txt").write_text(model.describe())
    _plot(x, states, out / "states.png")
    summary = {
        "family": family,
        "n_samples": int(x.shape[0]),
        "n_components": int(model.n_components),
        "n_free": int(model.n_free),
        "log_likelihood": float(model.score(x, lengths)),
        "aic": float(model.aic(x, lengths)),
        "bic": float(model.bic(x, lengths)),
        "em_iterations": int(model.monitor_.iter),
        "converged": bool(model.monitor_.converged),
        "files": [str(out / f) for f in ("model.json", "model.npz", "parameters.txt",
                                         "states.png", "summary.json")],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def run_from_toml(path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Read a TOML run file, fit, write the outputs into ``out_dir`` and return the summary."""
    path = Path(path)
    return run_config(_load_toml(path), out_dir, base=path.parent)


def _plot(x: np.ndarray, states: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.5))
    t = np.arange(x.shape[0])
    ax.plot(t, x[:, 0], color="0.6", lw=0.8)
    sc = ax.scatter(t, x[:, 0], c=states, cmap="tab10", s=10, vmin=0, vmax=9)
    ax.set_xlabel("sample")
    ax.set_ylabel("feature 0")
    fig.colorbar(sc, ax=ax, label="state")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
