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

Writes ``model.json`` + ``model.npz``, ``parameters.txt`` (the registry table), ``states.png``
and ``summary.json`` into the output folder and returns the summary.

EM runs one iteration at a time (each a ``fit`` with ``n_iter=1`` from the previous
parameters: the same arithmetic as one ``fit`` with ``n_iter`` iterations, to rounding, at a
cost of about 15 % for re-preparing the data), so that after every iteration the progress bar
advances and the state can be checkpointed (``checkpoint.npz``, written atomically, at most
once per :data:`CHECKPOINT_INTERVAL_S` and always on Ctrl-C). Ctrl-C keeps the parameters of
the last completed iteration (EM never lowers the objective, so they are the best so far) and
writes every output for them with ``"interrupted": true``. ``resume=True`` (``--resume``)
continues from the checkpoint; the continued run is the one that was interrupted.
"""

from __future__ import annotations

import inspect
import io
import json
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.errors import CheckpointError, TiedSciError
from tiedsci.runfile import (
    Field,
    MapOf,
    RunFile,
    Table,
    atomic_write_bytes,
    atomic_write_text,
    load_runfile,
    validate_config,
)

__all__ = ["run_from_toml", "run_config", "run_runfile", "load", "check_toml", "SCHEMA",
           "CHECKPOINT_FORMAT"]

BUNDLED = Path(__file__).resolve().parent.parent / "data" / "hmm"
CHECKPOINT_FORMAT = "tiedsci.hmm.checkpoint/1"
CHECKPOINT_INTERVAL_S = 1.0
"""Least time between two checkpoint writes during EM (Ctrl-C always writes the last state)."""
_FAMILIES = {"gaussian": "GaussianHMM", "categorical": "CategoricalHMM", "poisson": "PoissonHMM",
             "gmm": "GMMHMM", "tied_mixture": "TiedMixtureHMM"}
_INIT = {"startprob": "s", "transmat": "t", "means": "m", "covars": "c", "emissionprob": "e",
         "lambdas": "l", "weights": "w"}
_ARRAYS = ("startprob_", "transmat_", "means_", "covars_", "emissionprob_", "lambdas_",
           "weights_")
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
})


def load(path: str | Path, *, check_paths: bool = True) -> RunFile:
    """Read and validate an HMM run file (see :data:`SCHEMA`)."""
    return load_runfile(path, SCHEMA, check_paths=check_paths)


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _read_data(rf: RunFile) -> tuple[np.ndarray, np.ndarray | None]:
    spec = rf.data["data"]
    path = Path(spec["path"])
    delimiter = spec["delimiter"]
    with open(path) as fh:
        header = [h.strip() for h in fh.readline().strip().split(delimiter)]
    has_header = not all(_is_number(h) for h in header)
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


# ----------------------------------------------------------------------------- EM driver
def _snapshot(model: Any) -> dict[str, np.ndarray]:
    return {k: np.array(getattr(model, k)) for k in _ARRAYS if getattr(model, k, None)
            is not None}


def _write_checkpoint(path: Path, model: Any, history: list[float], fingerprint: str) -> None:
    buf = io.BytesIO()
    np.savez(buf, format=np.array(CHECKPOINT_FORMAT), fingerprint=np.array(fingerprint),
             history=np.asarray(history, dtype=float), **_snapshot(model))
    atomic_write_bytes(path, buf.getvalue())


def _read_checkpoint(path: Path, fingerprint: str) -> tuple[dict[str, np.ndarray], list[float]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k].copy() for k in data.files}
    except Exception as exc:  # zipfile.BadZipFile, EOFError, ValueError, OSError...
        raise CheckpointError(f"checkpoint {path} is unreadable or truncated "
                              f"({type(exc).__name__}: {exc}); delete it to start over") from None
    if str(arrays.pop("format", "")) != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {path} is not a {CHECKPOINT_FORMAT} checkpoint")
    if str(arrays.pop("fingerprint", "")) != fingerprint:
        raise CheckpointError(f"checkpoint {path} was written for a different run file (the "
                              "run file changed since); delete it or run without --resume")
    history = [float(v) for v in arrays.pop("history", np.zeros(0))]
    if not history or not set(arrays) <= set(_ARRAYS):
        raise CheckpointError(f"checkpoint {path} holds no EM state")
    return arrays, history


def _converged(history: list[float], tol: float) -> bool:
    return len(history) >= 2 and history[-1] - history[-2] < tol


def fit_em(model: Any, x: np.ndarray, lengths: np.ndarray | None, *,
           history: list[float] | None = None,
           on_iteration: Callable[[int, float], None] | None = None,
           progress: bool = False) -> bool:
    """Run EM on ``model`` one iteration at a time; returns True when stopped by Ctrl-C.

    Each iteration is ``model.fit`` with ``n_iter=1`` from the current parameters (the first
    one initialises what ``init_params`` asks for, unless ``history`` says EM already ran),
    stopping like :func:`~tiedsci.hmm.em.baum_welch`: after ``model.n_iter`` iterations in
    all or when the log-likelihood gain is below ``model.tol``. Warnings are those of the first
    and the last iteration, each once (as one ``fit`` would give). On KeyboardInterrupt the
    parameters of the last completed iteration are restored. ``model.monitor_`` holds the
    whole history afterwards.

    Parameters
    ----------
    model : TiedHMM
    x : ndarray, shape (n_samples, n_features)
    lengths : ndarray of int, optional
    history : list of float, optional
        Log-likelihoods of the iterations already run (resume); extended in place.
    on_iteration : callable, optional
        ``on_iteration(n_done, log_likelihood)`` after every iteration.
    progress : bool
        tqdm bar on stderr.
    """
    from tiedsci.hmm.em import ConvergenceMonitor

    history = history if history is not None else []
    n_iter, tol, init0 = int(model.n_iter), float(model.tol), model.init_params
    resumed = bool(history)
    good = (_snapshot(model), len(history))
    layout0 = None
    interrupted = False
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_iter, initial=len(history), desc="EM", unit="it", file=sys.stderr)
    first: list[warnings.WarningMessage] = []
    last: list[warnings.WarningMessage] = []
    try:
        while len(history) < n_iter and not _converged(history, tol):
            model.n_iter = 1
            model.init_params = "" if (history or resumed) else init0
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                model.fit(x, lengths)
            if layout0 is None:
                layout0, first = model.layout_, caught
            last = caught
            history.append(float(model.monitor_.history[0]))
            good = (_snapshot(model), len(history))
            if bar is not None:
                bar.update(1)
                gain = history[-1] - history[-2] if len(history) > 1 else float("nan")
                bar.set_postfix(loglik=f"{history[-1]:.6g}", gain=f"{gain:.2g}", refresh=False)
            if on_iteration is not None:
                on_iteration(len(history), history[-1])
    except KeyboardInterrupt:
        interrupted = True
        for k, v in good[0].items():
            setattr(model, k, v)
        del history[good[1]:]
    finally:
        model.n_iter, model.init_params = n_iter, init0
        if bar is not None:
            bar.close()
    # what one fit would have warned: about the start and about the last iteration, once
    seen = set()
    for w in first + last:
        key = (w.category, str(w.message))
        if key not in seen:
            seen.add(key)
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if layout0 is not None:
        model.layout_ = layout0
    elif history:
        model.layout_ = model.build_registry(model._values()).compile()
    done = _converged(history, tol) or (len(history) == n_iter and n_iter > 0)
    model.monitor_ = ConvergenceMonitor(tol=tol, n_iter=n_iter, history=list(history),
                                        iter=len(history), converged=done and not interrupted)
    return interrupted


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
        Continue EM from ``out_dir/checkpoint.npz`` if there is one (else start afresh).
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
    ckpt = out / "checkpoint.npz"
    fingerprint = rf.fingerprint(exclude=("output",))
    history: list[float] = []
    if resume:
        if ckpt.exists():
            arrays, history = _read_checkpoint(ckpt, fingerprint)
            for k, v in arrays.items():
                setattr(model, k, v)
        else:
            print(f"nothing to resume ({ckpt} does not exist): starting from the beginning",
                  file=sys.stderr)
    resumed_at = len(history)
    last_write = [-math.inf]

    def on_iteration(n: int, ll: float) -> None:
        if time.monotonic() - last_write[0] >= CHECKPOINT_INTERVAL_S:
            _write_checkpoint(ckpt, model, history, fingerprint)
            last_write[0] = time.monotonic()
        if callback is not None:
            callback(n, ll)

    interrupted = fit_em(model, x, lengths, history=history, on_iteration=on_iteration,
                         progress=progress)
    if not history:  # stopped before the first iteration ended: nothing fitted to write
        return {"family": family, "interrupted": interrupted, "em_iterations": 0,
                "converged": False, "files": []}
    if interrupted:  # the last completed iteration, whatever the throttling skipped
        _write_checkpoint(ckpt, model, history, fingerprint)
    model.save(out / "model")
    (out / "parameters.txt").write_text(model.describe())
    files = ["model.json", "model.npz", "parameters.txt"]
    if rf.data["output"]["plots"]:
        _plot(x, model.predict(x, lengths), out / "states.png")
        files.append("states.png")
    files.append("summary.json")
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
        "em_iterations": int(model.monitor_.iter),
        "converged": bool(model.monitor_.converged),
        "interrupted": interrupted,
        "resumed_at_iteration": resumed_at if resume and resumed_at else None,
        "checkpoint": str(ckpt) if interrupted else None,
        "files": [str(out / f) for f in files],
    }
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    if not interrupted and ckpt.exists():
        ckpt.unlink()
    return summary


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
