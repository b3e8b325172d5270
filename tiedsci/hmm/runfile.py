"""``tiedsci hmm fit run.toml``: fit an HMM described in a TOML run file.

Example run file (every key is listed in ``docs/cli.md``)::

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

Writes ``model.json`` + ``model.npz``, ``parameters.txt`` (``model.report()``), ``states.png``
and ``summary.json`` into the output folder and returns the summary.

The run file only translates TOML into API calls: one ``fit`` of the estimator, whose
``on_iteration`` callback advances the progress bar and writes the checkpoint
(``checkpoint.json`` + ``checkpoint.npz``: the estimator's own :meth:`save`, at most once per
:data:`CHECKPOINT_INTERVAL_S` and always on Ctrl-C). Ctrl-C keeps the parameters of the last
completed iteration (EM never lowers the objective, so they are the best so far) and writes
every output for them with ``"interrupted": true``. ``resume=True`` (``--resume``) passes the
checkpoint's state as ``fit(start=...)``: the continued run is, bit for bit, the one that was
interrupted.
"""

from __future__ import annotations

import inspect
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import CheckpointError, DataError, TiedSciError
from tiedsci.hmm.em import EMState
from tiedsci.runfile import (
    Field,
    MapOf,
    RunFile,
    Table,
    atomic_write_text,
    is_number,
    load_runfile,
    validate_config,
)

__all__ = ["run_from_toml", "run_config", "run_runfile", "load", "check_toml", "SCHEMA",
           "discover_from_toml"]

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "hmm"
CHECKPOINT_INTERVAL_S = 1.0
"""Least time between two checkpoint writes during EM (Ctrl-C always writes the last state)."""
_FAMILIES = {"gaussian": "GaussianHMM", "categorical": "CategoricalHMM", "poisson": "PoissonHMM",
             "gmm": "GMMHMM", "tied_mixture": "TiedMixtureHMM"}
_INIT = {"startprob": "s", "transmat": "t", "means": "m", "covars": "c", "emissionprob": "e",
         "lambdas": "l", "weights": "w"}
_FAMILY_KEYS = {"family", "ties", "fixed"}  # run-file keys that are not constructor arguments


def _classes() -> dict[str, type]:
    import tiedsci.hmm as th

    return {fam: getattr(th, cls) for fam, cls in _FAMILIES.items()}


def _default(name: str) -> str:
    """The estimators' default of a constructor argument, for the reference table."""
    from tiedsci.hmm.estimators import GMMHMM, GaussianHMM

    for cls in (GaussianHMM, GMMHMM):
        p = inspect.signature(cls.__init__).parameters.get(name)
        if p is not None and p.default is not inspect.Parameter.empty:
            v = p.default
            if v is None:
                return "unset"
            return f"`{json.dumps(v) if isinstance(v, str) else v}`"
    return "unset"  # pragma: no cover


def _groups_check(v: list[list[int]]) -> str | None:
    for g in v:
        if len(g) < 2:
            return f"a tie group needs two or more states, got {g}"
        if min(g) < 0:
            return f"state indices are >= 0, got {g}"
    return None


_PARAMS = ("startprob", "transmat", "means", "covars", "emissionprob", "lambdas", "weights")

SCHEMA = Table({
    "data": Table({
        "path": Field("path", "CSV file (relative to the run file), or `bundled:<name>` for a "
                      "bundled data set (`nile.csv`, `earthquakes.csv`).", required=True,
                      bundled=BUNDLED),
        "columns": Field("list[int|str]", "Columns to use: header names or 0-based indices.",
                         default_doc="all columns"),
        "lengths": Field("list[int]", "Lengths of the concatenated sequences (sum = rows).",
                         ge=1, default_doc="one sequence"),
        "delimiter": Field("str", "Column separator.", default=","),
    }, "The observations: one row per time step.", required=True),
    "model": Table({
        "family": Field("str", "Emission family.", choices=tuple(_FAMILIES), default="gaussian"),
        "n_components": Field("int", "Number of hidden states.", ge=1,
                              default_doc=_default("n_components")),
        "covariance_type": Field("str", "Gaussian / GMM covariance shape.",
                                 choices=("spherical", "diag", "full", "tied"),
                                 default_doc=_default("covariance_type")),
        "min_covar": Field("float", "Floor on variances (gaussian, gmm).", ge=0,
                           default_doc=_default("min_covar")),
        "covars_prior": Field("float", "Variance prior as in hmmlearn (gaussian); 0 is maximum "
                              "likelihood.", ge=0, default_doc=_default("covars_prior")),
        "covars_weight": Field("float", "Weight of the variance prior (gaussian).",
                               default_doc=_default("covars_weight")),
        "n_mix": Field("int", "Mixture components per state (gmm, tied_mixture).", ge=1,
                       default_doc=_default("n_mix")),
        "n_features": Field("int", "Number of symbols (categorical).", ge=1,
                            default_doc="from the data"),
        "n_iter": Field("int", "Maximum EM iterations.", ge=0, default_doc=_default("n_iter")),
        "tol": Field("float", "Stop when the log-likelihood gain is below this.",
                     default_doc=_default("tol")),
        "algorithm": Field("str", "Decoder for the state plot.", choices=("viterbi", "map"),
                           default_doc=_default("algorithm")),
        "random_state": Field("int", "Seed of the initialisation.", default_doc="unset"),
        "params": Field("str", "hmmlearn letters of the parameters EM updates.",
                        default_doc="the family's (e.g. `\"stmc\"`)"),
        "init_params": Field("str", "hmmlearn letters of the parameters initialised from the "
                             "data (those given in [init] are left out automatically).",
                             default_doc="the family's"),
        "tie_states": Field("list[list[int]]", "Groups of states sharing all emission "
                            "parameters.", check=_groups_check),
        "engine": Field("str", "Where the E-step runs.", choices=("numpy", "torch"),
                        default_doc=_default("engine")),
        "device": Field("str", "torch device (engine = \"torch\").", default_doc="unset"),
        "dtype": Field("str", "Floating point type of the E-step.",
                       choices=("float32", "float64"), default_doc="`\"float64\"`"),
        "ties": MapOf(Field("list[list[int]]", "Groups of states whose rows of this parameter "
                            "are tied.", check=_groups_check),
                      "Ties of single parameters (by hmmlearn name, without the `_`).",
                      keys=("transmat", "means", "covars", "emissionprob", "lambdas",
                            "weights")),
        "fixed": MapOf(Field("bool|list[int]", "`true`: the whole parameter; a list: the rows "
                             "of these states; held at the starting values."),
                       "Parameters held fixed.", keys=_PARAMS),
    }, "The estimator: one of the tiedsci.hmm classes with its constructor arguments."),
    "init": Table({name: Field("array", f"Starting `{name}_`.") for name in _PARAMS},
                  "Starting values (hmmlearn attribute names without `_`); the others are "
                  "initialised from the data."),
    "output": Table({
        "plots": Field("bool", "Write `states.png` (the decoded states).", default=True),
    }, "What to write besides the model, parameter table and summary."),
    "discover": Table({
        "criterion": Field("str", "Criterion that chooses the path point (lower is better).",
                           choices=("bic", "aic"), default="bic"),
        "candidates": Field("list[str]", "Kinds of merges: `state` (whole emissions), an "
                            "emission block (`means`, `covars`, `lambdas`), `transmat`.",
                            default=["state"]),
        "start": Field("str", "The untied start: the model fitted as declared (`model`), "
                       "grown by splitting smaller models (`split`), or the best of 4 k-means "
                       "starts (`kmeans`).", choices=("model", "split", "kmeans"),
                       default="model"),
        "max_steps": Field("int", "Stop after this many merges.", ge=1,
                           default_doc="until nothing is left to merge"),
        "n_iter": Field("int", "EM iterations of every refit.", ge=1, default=300),
        "tol": Field("float", "EM tolerance of every refit.", default=1e-4),
    }, "`tiedsci hmm discover` only: the tie-discovery search (`tiedsci.hmm.discover`)."),
})


def load(path: str | Path, *, check_paths: bool = True) -> RunFile:
    """Read and validate an HMM run file (see :data:`SCHEMA`)."""
    return load_runfile(path, SCHEMA, check_paths=check_paths)


def _read_data(rf: RunFile) -> tuple[np.ndarray, np.ndarray | None]:
    spec = rf.data["data"]
    path = Path(spec["path"])
    delimiter = spec["delimiter"]
    with open(path) as fh:
        header = [h.strip() for h in fh.readline().strip().split(delimiter)]
    has_header = not all(is_number(h) for h in header)
    try:
        table = np.loadtxt(path, delimiter=delimiter, skiprows=1 if has_header else 0,
                           ndmin=2)
    except ValueError as exc:
        raise rf.error(("data", "path"), f"{path} is not a numeric table: {exc}") from None
    cols = spec.get("columns")
    idx: list[int] = []
    for i, c in enumerate(cols if cols is not None else range(table.shape[1])):
        if isinstance(c, int):
            if not 0 <= c < table.shape[1]:
                raise rf.error(("data", "columns", i), f"column {c} out of range: {path} has "
                                                       f"{table.shape[1]} columns")
            idx.append(c)
        elif has_header and c in header:
            idx.append(header.index(c))
        else:
            raise rf.error(("data", "columns", i), f"column {c!r} not found; header: {header}")
    x = table[:, idx]
    bad = np.argwhere(~np.isfinite(x))
    if bad.size:
        r, c = (int(v) for v in bad[0])
        raise rf.error(("data", "path"), f"{path}: not finite at data row {r}, column "
                                         f"{idx[c]}")
    lengths = spec.get("lengths")
    if lengths is not None and sum(lengths) != x.shape[0]:
        raise rf.error(("data", "lengths"), f"the lengths sum to {sum(lengths)}, {path} has "
                                            f"{x.shape[0]} rows")
    return x, None if lengths is None else np.asarray(lengths)


def _build(rf: RunFile) -> tuple[Any, np.ndarray, np.ndarray | None, str]:
    """The estimator (with [init] values set) and the data."""
    x, lengths = _read_data(rf)
    mspec = dict(rf.data["model"])
    family = mspec.pop("family")
    cls = _classes()[family]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    for key in mspec:
        if key not in accepted:
            options = sorted(accepted - {"verbose"})
            raise rf.error(("model", key), f"not an option of family {family!r} "
                                           f"(its options: {', '.join(options)})")
    for key in ("ties", "fixed"):
        if not mspec.get(key):
            mspec.pop(key, None)
    init = dict(rf.data["init"])
    if init and "init_params" not in mspec:
        default = inspect.signature(cls.__init__).parameters["init_params"].default
        mspec["init_params"] = "".join(c for c in default if c not in
                                       {_INIT[k] for k in init})
    if family == "categorical":
        if not np.all(x == np.round(x)) or np.any(x < 0):
            raise rf.error(("data", "columns"), "family \"categorical\" needs symbols that "
                                                "are integers >= 0")
        x = x.astype(np.int64)
    try:
        model = cls(**mspec)
    except TiedSciError as exc:
        raise rf.section_error(("model",), str(exc)) from None
    for name, value in init.items():
        setattr(model, name + "_", np.asarray(value, dtype=float))
    return model, x, lengths, family


def check_toml(path: str | Path) -> dict[str, Any]:
    """Validate a run file and its data without fitting; returns a short description."""
    rf = load(path)
    model, x, _, family = _build(rf)
    return {"family": family, "n_samples": int(x.shape[0]), "n_features": int(x.shape[1]),
            "n_components": int(model.n_components)}


# ----------------------------------------------------------------------------- checkpoints
def _checkpoint_error(path: Path, message: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path} {message}")


def _resume_state(stem: Path, fingerprint: str) -> EMState | None:
    """The EM state saved in the checkpoint ``stem`` (None, with a notice, when there is none)."""
    from tiedsci.hmm.io import load_with_extra

    path = stem.with_suffix(".json")
    if not path.exists():
        print(f"nothing to resume ({path} does not exist): starting from the beginning",
              file=sys.stderr)
        return None
    try:
        saved, extra = load_with_extra(stem)
    except (DataError, FileNotFoundError) as exc:
        raise _checkpoint_error(path, f"is unreadable or truncated ({exc}); delete it to start "
                                      "over") from None
    if extra.get("fingerprint") != fingerprint:
        raise _checkpoint_error(path, "was written for a different run file (the run file "
                                      "changed since); delete it or run without --resume")
    state = saved.em_state()
    if not state.monitor.history:
        raise _checkpoint_error(path, "holds no EM state")
    return state


def _on_iteration(model: Any, stem: Path, fingerprint: str, bar: Any,
                  callback: Callable[[int, float], None] | None) -> Callable[[EMState], None]:
    """Per EM iteration: advance the bar, checkpoint (throttled), call ``callback``."""
    last_write = [-math.inf]

    def on_iteration(state: EMState) -> None:
        n, ll = state.monitor.iter, state.monitor.history[-1]
        if bar is not None:
            bar.update(1)
            gain = ll - state.monitor.history[-2] if n > 1 else float("nan")
            bar.set_postfix(loglik=f"{ll:.6g}", gain=f"{gain:.2g}", refresh=False)
        if time.monotonic() - last_write[0] >= CHECKPOINT_INTERVAL_S:
            model.save(stem, extra={"fingerprint": fingerprint})
            last_write[0] = time.monotonic()
        if callback is not None:
            callback(n, ll)

    return on_iteration


def run_config(config: dict[str, Any], out_dir: str | Path, base: Path | None = None
               ) -> dict[str, Any]:
    """Fit the model described by a parsed run-file dict; see the module docstring."""
    rf = validate_config(config, SCHEMA, base=base)
    return run_runfile(rf, out_dir)


def run_from_toml(path: str | Path, out_dir: str | Path, *, resume: bool = False,
                  progress: bool = False,
                  callback: Callable[[int, float], None] | None = None,
                  device: str | None = None) -> dict[str, Any]:
    """Read a TOML run file, fit, write the outputs into ``out_dir`` and return the summary.

    Parameters
    ----------
    path, out_dir : path
    resume : bool
        Continue EM from ``out_dir/checkpoint.json`` + ``.npz`` if there is one (else start afresh).
    progress : bool
        tqdm bar of the EM iterations on stderr.
    callback : callable, optional
        ``callback(n_done, log_likelihood)`` after every EM iteration.
    device : str, optional
        torch device (``"cpu"``, ``"cuda"``, ``"cuda:1"``) overriding ``[model] device``; the
        E-step then runs on the torch engine.

    Returns
    -------
    dict
        Summary (also written to ``summary.json``); ``interrupted`` is True after Ctrl-C, the
        outputs then being those of the last completed iteration.
    """
    rf = load(path)
    if device is not None:
        # the command line wins over [model] device; a device means the torch engine
        from tiedsci.backends.torch_backend import resolve_device

        resolve_device(device)  # clear error when CUDA is asked for and absent
        rf.data["model"]["device"] = device
        rf.data["model"]["engine"] = "torch"
    return run_runfile(rf, out_dir, resume=resume, progress=progress, callback=callback)


def run_runfile(rf: RunFile, out_dir: str | Path, *, resume: bool = False,
                progress: bool = False,
                callback: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """:func:`run_from_toml` on an already loaded :class:`~tiedsci.runfile.RunFile`."""
    model, x, lengths, family = _build(rf)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "checkpoint"
    fingerprint = rf.fingerprint(exclude=("output",))
    start = _resume_state(ckpt, fingerprint) if resume else None
    resumed_at = start.monitor.iter if start is not None else 0
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=int(model.n_iter), initial=resumed_at, desc="EM", unit="it",
                   file=sys.stderr)
    try:
        model.fit(x, lengths, start=start,
                  on_iteration=_on_iteration(model, ckpt, fingerprint, bar, callback))
    finally:
        if bar is not None:
            bar.close()
    monitor = model.monitor_
    interrupted = bool(monitor.interrupted)
    if not monitor.history:  # stopped before the first iteration ended: nothing fitted to write
        return {"family": family, "interrupted": interrupted, "em_iterations": 0,
                "converged": False, "files": []}
    if interrupted:  # the last completed iteration, whatever the throttling skipped
        model.save(ckpt, extra={"fingerprint": fingerprint})
    files = _write_outputs(model, x, lengths, out, plots=rf.data["output"]["plots"],
                           labels=_axis_labels(rf))
    ll = float(model.score(x, lengths))
    n_free = int(model.n_free)
    summary = {
        "family": family,
        "n_samples": int(x.shape[0]),
        "n_components": int(model.n_components),
        "n_free": n_free,
        "log_likelihood": ll,
        "aic": -2.0 * ll + 2.0 * n_free,
        "bic": -2.0 * ll + n_free * float(np.log(x.shape[0])),
        "em_iterations": int(monitor.iter),
        "converged": bool(monitor.converged),
        "interrupted": interrupted,
        "resumed_at_iteration": resumed_at or None,
        "checkpoint": str(ckpt.with_suffix(".json")) if interrupted else None,
        "files": [str(out / f) for f in files],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    if not interrupted:
        for suffix in (".json", ".npz"):
            ckpt.with_suffix(suffix).unlink(missing_ok=True)
    return summary


def _axis_labels(rf: RunFile) -> tuple[str, str]:
    """Plot labels from the run file: the data file's rows and the first column's name."""
    spec = rf.data["data"]
    cols = spec.get("columns") or []
    quantity = str(cols[0]) if cols and isinstance(cols[0], str) else \
        f"column {cols[0] if cols else 0}"
    return f"row of {Path(str(spec['path'])).name} (time order)", quantity


def _write_outputs(model: Any, x: np.ndarray, lengths: np.ndarray | None, out: Path, *,
                   plots: bool, labels: tuple[str, str] | None = None) -> list[str]:
    """The fitted model, its report and (optionally) the state plot; returns the file names."""
    model.save(out / "model")
    (out / "parameters.txt").write_text(model.report())
    files = ["model.json", "model.npz", "parameters.txt"]
    if plots:
        model.plot(x, lengths, path=out / "states.png", labels=labels)
        files.append("states.png")
    return files + ["summary.json"]


# ----------------------------------------------------------------------------- discovery
def discover_from_toml(path: str | Path, out_dir: str | Path, *, resume: bool = False,
                       progress: bool = False, device: str | None = None) -> dict[str, Any]:
    """``tiedsci hmm discover``: tie discovery on the run file's model and data.

    The ``[model]`` fit (as declared) is the start unless ``[discover] start`` says
    otherwise; writes ``path.json`` (the :class:`~tiedsci.discovery.DiscoveryPath`),
    ``path.txt`` (its table), ``path.png`` (criterion along the path), ``report.html``
    (the path as an HTML report), the chosen model
    (``model.json`` + ``.npz``, ``parameters.txt``) and ``summary.json``. ``resume`` is
    accepted for the common command line and ignored (every refit is short).
    """
    from tiedsci.hmm.discovery import discover
    from tiedsci.report import write_discovery_report

    rf = load(path)
    if device is not None:
        rf.data["model"]["device"] = device
        rf.data["model"]["engine"] = "torch"
    model, x, lengths, family = _build(rf)
    spec = dict(rf.data["discover"])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if spec["start"] == "model":
        model.fit(x, lengths)
    found = discover(model, x, lengths, criterion=spec["criterion"],
                     candidates=list(spec["candidates"]), start=spec["start"],
                     max_steps=spec.get("max_steps"), n_iter=spec["n_iter"], tol=spec["tol"])
    found.save(out / "path")
    atomic_write_text(out / "path.txt", found.table() + "\n")
    fig = found.plot(title=f"tie discovery: {Path(str(rf.data['data']['path'])).name}")
    fig.savefig(out / "path.png", dpi=110)
    write_discovery_report(out, found.to_dict(), "path.png")
    best = found.best_model
    best.save(out / "model")
    (out / "parameters.txt").write_text(best.report())
    chosen = found.steps[found.best]
    summary = {"family": family, "n_samples": int(x.shape[0]),
               "criterion": found.criterion, "best_step": chosen.step,
               "n_free": chosen.n_free, "log_likelihood": chosen.loglik,
               "criterion_value": chosen.criterion, "ties": best.ties or {},
               "steps": len(found.steps), "seconds": found.info.get("seconds"),
               "interrupted": False,
               "files": [str(out / f) for f in ("path.json", "path.txt", "path.png",
                                                "report.html", "model.json", "model.npz",
                                                "parameters.txt", "summary.json")]}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary
