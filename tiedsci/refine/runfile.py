"""``tiedsci refine run run.toml``: a joint refinement described in a TOML file.

Format (paths relative to the TOML file; every key is listed in ``docs/cli.md``)::

    fixed = ["neutron.bkg"]           # top-level keys come before the first [table]

    [model]
    builtin = "gaussian_peaks"        # or: file = "my_model.py", function = "model"

    [[dataset]]
    name = "xray"
    file = "xray.xy"                  # columns x, y[, sigma]; '#' comments; comma or blanks
    limits = [10.0, 120.0]            # optional
    weights = "sigma"                 # "sigma" (3rd column, default when present),
                                      # "counts" (sigma = sqrt(max(y, 1))) or "unit"

    [shared]
    center = 3.0
    width = { value = 1.0, bounds = [0.1, 5.0] }

    [local]                           # one per dataset: xray.height, neutron.height...
    height = { value = 10.0, bounds = "positive" }
    bkg = { values = { xray = [1.0, 0.0], neutron = [2.0, 0.0] } }

    [[tie]]                           # source then targets, elementwise
    source = "xray.width"
    targets = ["neutron.width"]
    [[restraint]]
    params = ["xray.height"]
    strength = 100.0
    target = 9.5

    [[stage]]
    name = "background"
    vary = ["bkg"]
    [[stage]]
    name = "all"
    vary = ["*"]

    [fit]
    optimizer = "tiedsci"             # or "lmfit" (+ method = "leastsq")
    scale_covar = true

    [output]                          # defaults shown
    report = "report.txt"
    json = "result.json"
    plot = "fit.png"
    checkpoint = "checkpoint.json"

Ctrl-C stops at the last accepted Levenberg-Marquardt point: the report, result (with
``"interrupted": true``) and plot are written for it and the checkpoint is kept; ``resume=True``
(``--resume``) continues from the checkpoint and ends at the optimum of an uninterrupted run.
This module only translates the file into API calls: the checkpoints are written and read by
:meth:`tiedsci.refine.JointRefinement.fit` (``checkpoint=``, ``resume=``; see
:mod:`tiedsci.refine.checkpoint`).
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.core import Positive
from tiedsci.errors import CheckpointError, DataError, TiedSciError
from tiedsci.persist import bundle_stem
from tiedsci.refine.checkpoint import save_checkpoint
from tiedsci.refine.data import Dataset
from tiedsci.refine.joint import JointRefinement
from tiedsci.refine.lm import INTERRUPTED
from tiedsci.refine.models import BUILTIN_MODELS
from tiedsci.refine.stages import Stage
from tiedsci.runfile import (
    Field,
    MapOf,
    RunFile,
    Table,
    Tables,
    atomic_write_text,
    is_number,
    load_runfile,
    validate_config,
)

__all__ = ["run_from_toml", "run_runfile", "discover_from_toml", "load_columns", "load_table",
           "build_from_config", "load", "check_toml", "SCHEMA"]


def _check_bounds(v: Any) -> str | None:
    if isinstance(v, str):
        return None if v == "positive" else f'expected "positive" or [low, high], got "{v}"'
    if len(v) != 2:
        return f"expected [low, high], got {len(v)} values"
    lo, hi = v
    if math.isnan(lo) or math.isnan(hi):
        return "bounds must not be nan"
    if not lo < hi:
        return f"need low < high, got [{lo}, {hi}]"
    return None


def _check_name(v: str) -> str | None:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v):
        return None
    return (f"{json.dumps(v)} is not an identifier (letters, digits and _, not starting with "
            "a digit)")


def _check_limits(v: list[float]) -> str | None:
    return None if v[0] < v[1] else f"need low < high, got {v}"


def _check_local(v: Any) -> str | None:
    if isinstance(v, dict) and ("value" in v) == bool(v.get("values")):
        return 'give exactly one of value = ... (all datasets) or values = { dataset = ... }'
    return None


_BOUNDS = Field("str|list[float]", 'Bounds: "positive" or [low, high] (inf allowed).',
                finite=False, check=_check_bounds)
_SHARED_ENTRY = Table({
    "value": Field("array", "Starting value (number or array).", required=True),
    "bounds": _BOUNDS,
    "fixed": Field("bool", "Hold at the starting value.", default=False),
    "unit": Field("str", "Unit, shown in the report.", default=""),
})
_LOCAL_ENTRY = Table({
    "value": Field("array", "Starting value for every dataset."),
    "values": MapOf(Field("array", "Starting value of this dataset's copy."),
                    "Per-dataset starting values (only these datasets get the parameter).",
                    key_doc="dataset name"),
    "bounds": _BOUNDS,
    "fixed": Field("bool", "Hold at the starting value(s).", default=False),
    "unit": Field("str", "Unit, shown in the report.", default=""),
})

SCHEMA = Table({
    "fixed": Field("list[str]", "Parameter names (e.g. `\"neutron.bkg\"`) held fixed at their "
                   "starting values.", default=[]),
    "model": Table({
        "builtin": Field("str", "A built-in forward model.", choices=tuple(sorted(BUILTIN_MODELS))),
        "file": Field("path", "A Python file defining the forward model (instead of builtin)."),
        "function": Field("str", "Name of the model function in `file`.", default="model"),
    }, "The forward model: `builtin` or `file` (exactly one).", required=True),
    "dataset": Tables(Table({
        "name": Field("str", "Identifier (letters, digits, _); local parameters are named "
                      "`<name>.<parameter>`.", required=True, check=_check_name),
        "file": Field("path", "Text file with columns x, y[, sigma] (`#` comments, comma or "
                      "blank separated, an optional header line of names).", required=True),
        "columns": Field("list[int|str]", "Columns x, y[, sigma]: header names (a first "
                         "line of names is a header) or 0-based indices.",
                         default_doc="the first columns, in order"),
        "limits": Field("list[float]", "Use only points with low <= x <= high.", length=2,
                        check=_check_limits),
        "weights": Field("str", "`sigma`: 1/sigma^2 from the third column; `counts`: sigma = "
                         "sqrt(max(y, 1)); `unit`: all weights 1.",
                         choices=("sigma", "counts", "unit"),
                         default_doc='`"sigma"` with 3 columns, else `"unit"`'),
    }), "One measured curve; repeat the table for each dataset.", required=True),
    "shared": MapOf(Field("float|table", "Starting value, or an inline table.",
                          table=_SHARED_ENTRY),
                    "Parameters seen by every dataset, by name.", key_doc="parameter name"),
    "local": MapOf(Field("array|table", "Starting value for every dataset, or an inline table.",
                         table=_LOCAL_ENTRY, check=_check_local),
                   "Parameters declared once per dataset as `<dataset>.<name>`.",
                   key_doc="parameter name"),
    "groups": MapOf(Field("list[str]", "Parameter names or shell patterns."),
                    "Named groups of parameters, for `[[stage]] vary`.", key_doc="group name"),
    "tie": Tables(Table({
        "source": Field("str", "Parameter whose value the targets share.", required=True),
        "targets": Field("list[str]", "Parameters tied to the source (elementwise).",
                         required=True),
    }), "Hard ties between parameters."),
    "restraint": Tables(Table({
        "params": Field("list[str]", "Restrained parameters.", required=True),
        "strength": Field("float", "Weight 1/sigma^2 of the penalty.", required=True, gt=0),
        "target": Field("array", "Target value; without it the parameters are pulled "
                        "together."),
    }), "Soft restraints (penalties added to chi^2)."),
    "soft_tie": Tables(Table({
        "params": Field("list[str]", "Two or more parameters of one shape, pooled around a "
                        "free centre.", required=True),
        "spread": Field("float", "Standard deviation of the members around the centre (0: "
                        "hard tie, inf: untied).", ge=0.0,
                        default_doc="learned (type-II / REML likelihood)"),
        "centre": Field("str", "Name of the centre parameter.",
                        default_doc='"soft<k>.centre"'),
    }), "Soft ties (partial pooling): restraint rows (x_k - centre) / spread."),
    "discover": Table({
        "candidates": Field("list[str]", "Local parameters that may become shared (short "
                            "names such as `\"zero\"`).",
                            default_doc="every local of two or more datasets"),
        "offsets": Field("list[str]", "Parameters whose value 0 ties datasets (fixed at 0 as "
                         "a candidate step).", default=[]),
        "splits": Field("list[str]", "Shared parameters to test for a split per dataset.",
                        default=[]),
        "criterion": Field("str", "Model-selection criterion (lower is better).",
                           choices=("bic", "aic"), default="bic"),
        "max_steps": Field("int", "Stop after this many merges.", ge=1,
                           default_doc="until nothing is left to merge"),
        "path": Field("str", "The path: JSON bundle (table in `path.txt`).",
                      default="discovery.json"),
        "plot": Field("str", "Criterion along the path.", default="discovery.png"),
    }, "`tiedsci refine discover`: the tie-discovery search (section ignored by `run`)."),
    "stage": Tables(Table({
        "name": Field("str", "Label in the report and the progress bar.", required=True),
        "vary": Field("str|list[str]", "Groups, names or patterns to refine (`\"*\"`: all).",
                      required=True),
        "max_nfev": Field("int", "Budget of residual evaluations of this stage.", ge=1,
                          default_doc="[fit] max_nfev"),
        "ftol": Field("float", "Relative chi^2 reduction at which this stage stops (GSAS-II's "
                      "min delta-M/M).", ge=0.0, default_doc="[fit] ftol"),
    }), "Staged refinement: each stage varies some parameters and starts where the previous "
        "one ended. Without stages everything free is refined at once."),
    "fit": Table({
        "optimizer": Field("str", "Solver: block-sparse Levenberg-Marquardt or lmfit.",
                        choices=("tiedsci", "lmfit"), default="tiedsci"),
        "method": Field("str", "lmfit method (optimizer = \"lmfit\").", default="leastsq"),
        "scale_covar": Field("bool", "Scale the covariance by the reduced chi^2.", default=True),
        "ftol": Field("float", "Stop when the relative chi^2 reduction is below this.", gt=0,
                      default=1e-14),
        "xtol": Field("float", "Stop when the relative step is below this.", gt=0,
                      default=1e-10),
        "gtol": Field("float", "Stop when the scaled gradient is below this.", gt=0,
                      default=1e-10),
        "max_nfev": Field("int", "Budget of residual evaluations (per stage).", ge=1,
                          default_doc="100 × (free parameters + 1)"),
        "on_singular": Field("str", "A singular normal matrix at the optimum: `warn` (esd NaN, "
                             "outputs written) or `raise` (an error).",
                             choices=("warn", "raise"), default="warn"),
    }, "Solver options."),
    "output": Table({
        "report": Field("str", "Text report (in the output folder).", default="report.txt"),
        "json": Field("str", "Full result: JSON + a `.npz` sibling (`tiedsci.refine.load` "
                      "reads it).", default="result.json"),
        "plot": Field("str", "Observed, calculated and difference curves.", default="fit.png"),
        "checkpoint": Field("str", "Resumable state (JSON + a `.npz` sibling), written after "
                            "every accepted step; removed when the run completes.",
                            default="checkpoint.json"),
    }, "Output file names, relative to the output folder."),
})


def load_table(path: str | Path) -> tuple[np.ndarray, list[str] | None]:
    """Numeric columns of a text file and its header, if any.

    ``#`` comments, comma or whitespace separated; a first data line of names (a CSV header,
    e.g. ``two_theta,counts,sigma``) is the header.

    Returns
    -------
    table : ndarray, shape (n_rows, n_columns)
    header : list of str or None
    """
    rows, header = [], None
    for i, line in enumerate(Path(path).read_text().splitlines()):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        tokens = line.replace(",", " ").split()
        if not rows and header is None and not any(is_number(t) for t in tokens):
            header = tokens
            continue
        try:
            rows.append([float(t) for t in tokens])
        except ValueError:
            raise DataError(f"{path}: line {i + 1} is not numeric: {line[:60]!r}") from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise DataError(f"{path}: data row {i} has {len(r)} columns, the first has {width}")
    if header is not None and len(header) != width:
        raise DataError(f"{path}: the header names {len(header)} columns, the data have {width}")
    return np.array(rows), header


def load_columns(path: str | Path) -> np.ndarray:
    """Numeric columns of a text file (see :func:`load_table`; a header line is skipped).

    Returns
    -------
    ndarray, shape (n_rows, n_columns)
    """
    return load_table(path)[0]


def _select_columns(rf: RunFile, i: int, table: np.ndarray, header: list[str] | None
                    ) -> np.ndarray:
    """The ``[[dataset]] columns`` (names or 0-based indices) of ``table``, in that order."""
    wanted = rf.data["dataset"][i].get("columns")
    if wanted is None:
        return table
    idx = []
    for j, c in enumerate(wanted):
        if isinstance(c, int) and 0 <= c < table.shape[1]:
            idx.append(c)
        elif isinstance(c, str) and header is not None and c in header:
            idx.append(header.index(c))
        else:
            raise rf.error(("dataset", i, "columns", j),
                           f"column {c!r} not found; header: {header}, {table.shape[1]} columns")
    return table[:, idx]


def load(path: str | Path, *, check_paths: bool = True) -> RunFile:
    """Read and validate a refinement run file (see :data:`SCHEMA`)."""
    return load_runfile(path, SCHEMA, check_paths=check_paths)


def _bounds(spec: Any) -> Any:
    if spec is None:
        return None
    if spec == "positive":
        return Positive()
    return tuple(None if math.isinf(v) else float(v) for v in spec)


def _entry(spec: Any) -> dict[str, Any]:
    return dict(spec) if isinstance(spec, Mapping) else {"value": spec}


def _model(rf: RunFile) -> Callable[..., Any]:
    cfg = rf.data["model"]
    if ("builtin" in cfg) == ("file" in cfg):
        raise rf.section_error(("model",), 'give exactly one of builtin = "..." or '
                                           'file = "my_model.py"')
    if "builtin" in cfg:
        return BUILTIN_MODELS[cfg["builtin"]]
    path = Path(cfg["file"])
    spec = importlib.util.spec_from_file_location(f"tiedsci_user_model_{path.stem}", path)
    if spec is None or spec.loader is None:
        raise rf.error(("model", "file"), f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise rf.error(("model", "file"), f"importing {path} failed: "
                                          f"{type(exc).__name__}: {exc}") from exc
    fn_name = cfg["function"]
    if not callable(getattr(module, fn_name, None)):
        raise rf.error(("model", "function"), f"{path} defines no function {fn_name!r}")
    return getattr(module, fn_name)


def _dataset(rf: RunFile, i: int) -> Dataset:
    cfg = rf.data["dataset"][i]
    name, file = cfg["name"], cfg["file"]
    where = ("dataset", i, "file")
    try:
        table, header = load_table(file)
    except DataError as exc:
        raise rf.error(where, str(exc)) from None
    cols = _select_columns(rf, i, table, header)
    if cols.shape[1] < 2:
        raise rf.error(where, f"{file} needs at least two columns (x, y), it has "
                              f"{cols.shape[1]}")
    x, y = cols[:, 0], cols[:, 1]
    mode = cfg.get("weights", "sigma" if cols.shape[1] >= 3 else "unit")
    limits = tuple(cfg["limits"]) if "limits" in cfg else None
    if mode == "sigma" and cols.shape[1] < 3:
        raise rf.error(("dataset", i, "weights"), f'"sigma" needs a third column in {file}')
    sigma = {"sigma": lambda: cols[:, 2], "counts": lambda: np.sqrt(np.maximum(y, 1.0)),
             "unit": lambda: None}[mode]()
    try:  # Dataset checks NaN/inf and sigma > 0, naming the first bad index
        return Dataset(x, y, sigma=sigma, limits=limits, name=name)
    except DataError as exc:
        raise rf.error(where, f"{exc} (in {file})") from None


def build_from_config(cfg: RunFile | Mapping[str, Any], base: Path | None = None
                      ) -> JointRefinement:
    """A :class:`JointRefinement` from a validated run file (or a parsed dict + its folder)."""
    rf = cfg if isinstance(cfg, RunFile) else validate_config(cfg, SCHEMA, base=base)
    data = rf.data
    model = _model(rf)
    jr = JointRefinement()
    seen: dict[str, int] = {}
    for i, d in enumerate(data["dataset"]):
        if d["name"] in seen:
            raise rf.error(("dataset", i, "name"), f"{d['name']!r} is already the name of "
                                                   f"[[dataset]] #{seen[d['name']] + 1}")
        seen[d["name"]] = i
        jr.add(_dataset(rf, i), model)

    def declare(path: tuple[Any, ...], fn: Callable[[], Any]) -> None:
        try:
            fn()
        except (TiedSciError, KeyError) as exc:
            msg = exc.args[0] if exc.args else str(exc)
            raise rf.error(path, str(msg)) from None

    for name, spec in data["shared"].items():
        e = _entry(spec)
        declare(("shared", name), lambda n=name, e=e: jr.shared(
            n, e["value"], bounds=_bounds(e.get("bounds")), fixed=bool(e.get("fixed", False)),
            unit=e.get("unit", "")))
    for name, spec in data["local"].items():
        e = _entry(spec)
        for ds in e.get("values") or {}:
            if ds not in seen:
                raise rf.error(("local", name, "values", ds),
                               f"unknown dataset {ds!r}; the datasets: {sorted(seen)}")
        value = e["values"] if e.get("values") else e["value"]
        declare(("local", name), lambda n=name, e=e, v=value: jr.local(
            n, v, bounds=_bounds(e.get("bounds")), fixed=bool(e.get("fixed", False)),
            unit=e.get("unit", "")))
    for k, name in enumerate(data["fixed"]):
        declare(("fixed", k), lambda n=name: jr.registry.fix(n))
    for k, tie in enumerate(data["tie"]):
        declare(("tie", k), lambda t=tie: jr.registry.tie(t["source"], *t["targets"]))
    for k, rst in enumerate(data["restraint"]):
        declare(("restraint", k), lambda r=rst: jr.registry.restrain(
            r["params"], float(r["strength"]), target=r.get("target")))
    for k, st in enumerate(data["soft_tie"]):
        declare(("soft_tie", k), lambda t=st: jr.registry.soft_tie(
            t["params"], t.get("spread"), centre=t.get("centre")))
    for name, members in data["groups"].items():
        jr.group(name, members)
    return jr


def _stages(rf: RunFile, jr: JointRefinement) -> list[Stage]:
    from tiedsci.refine.stages import select_names

    names = jr.registry.compile().names
    out = []
    for i, s in enumerate(rf.data["stage"]):
        st = Stage(s["name"], s["vary"], s.get("max_nfev"), s.get("ftol"))
        try:
            select_names(st.vary, names, jr.groups)
        except KeyError as exc:
            raise rf.error(("stage", i, "vary"), str(exc.args[0])) from None
        out.append(st)
    return out


def check_toml(path: str | Path) -> dict[str, Any]:
    """Validate a run file and read its data without fitting; returns a short description."""
    rf = load(path)
    jr = build_from_config(rf)
    stages = _stages(rf, jr)
    layout = jr.registry.compile()
    return {"datasets": jr.dataset_names, "n_free": int(layout.n_free),
            "stages": [s.name for s in stages]}


class _Checkpointer:
    """Saves the fit's checkpoint states (:func:`save_checkpoint`) and drives the progress
    bar."""

    def __init__(self, path: Path, n_stages: int, progress: bool) -> None:
        self.path = path
        self.n_stages = n_stages
        self.progress = progress
        self.bar: Any = None
        self.bar_stage: int | None = None
        self.written = False

    def __call__(self, state: dict[str, Any]) -> None:
        save_checkpoint(self.path, state)
        self.written = True
        if self.progress:
            self.show(state)

    def show(self, state: Mapping[str, Any]) -> None:
        from tqdm.auto import tqdm

        stage = int(state["stage"])
        if self.bar is None or self.bar_stage != stage:
            self.close()
            name = state.get("stage_name")
            desc = "refine" if name is None else \
                f"stage {stage + 1}/{self.n_stages} {name}"
            self.bar = tqdm(desc=desc, unit="step", file=sys.stderr, leave=True)
            self.bar_stage = stage
        lm = state.get("lm")
        if lm is not None:
            self.bar.update(1)
            self.bar.set_postfix(chi2=f"{2.0 * lm.cost:.6g}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def run_from_toml(path: str | Path, out_dir: str | Path, *, resume: bool = False,
                  progress: bool = False,
                  callback: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Run the refinement described in ``path``; write report, json and plot to ``out_dir``.

    Parameters
    ----------
    path : path
        The TOML run file.
    out_dir : path
        Output folder (created).
    resume : bool
        Continue from the checkpoint in ``out_dir`` if there is one (else start afresh).
    progress : bool
        tqdm progress bars (stage, accepted steps, chi^2) on stderr.
    callback : callable, optional
        ``callback(n_iter, chi2)`` after each accepted step.

    Returns
    -------
    dict
        Summary: agreement indices, convergence, refined values and esds, written files,
        ``interrupted`` (Ctrl-C: the outputs are those of the last accepted point).
    """
    return run_runfile(load(path), out_dir, resume=resume, progress=progress,
                       callback=callback)


def run_runfile(rf: RunFile, out_dir: str | Path, *, resume: bool = False,
                progress: bool = False,
                callback: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """:func:`run_from_toml` on an already loaded :class:`~tiedsci.runfile.RunFile`."""
    jr = build_from_config(rf)
    stages = _stages(rf, jr)
    fit_cfg = dict(rf.data["fit"])
    names = dict(rf.data["output"])
    out = Path(out_dir)
    ckpt = bundle_stem(out / names["checkpoint"]).with_suffix(".json")
    from_ckpt = None
    if resume:
        if ckpt.exists():
            from_ckpt = ckpt
        else:
            print(f"nothing to resume ({ckpt} does not exist): starting from the beginning",
                  file=sys.stderr)
    writer = _Checkpointer(ckpt, len(stages), progress)
    try:
        try:
            with warnings.catch_warnings():  # reported in the summary instead
                warnings.filterwarnings("ignore", "refinement interrupted", RuntimeWarning)
                res = jr.fit(stages=stages or None, callback=callback, checkpoint=writer,
                             resume=from_ckpt, **fit_cfg)
        except ValueError as exc:
            if from_ckpt is not None and str(exc).startswith("resume"):
                raise CheckpointError(f"checkpoint {ckpt}: {exc}") from None
            raise
    finally:
        writer.close()
    interrupted = res.message == INTERRUPTED
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / names["report"], res.report())
    res.save(out / names["json"])
    res.plot(out / names["plot"])
    if not interrupted:
        for suffix in (".json", ".npz"):
            ckpt.with_suffix(suffix).unlink(missing_ok=True)
    return {
        "converged": res.converged,
        "interrupted": interrupted,
        "message": res.message,
        "n_obs": res.n_obs,
        "n_free": res.n_free,
        "chi2": res.chi2,
        "redchi": res.redchi,
        "rwp_percent": 100.0 * res.rwp,  # R factors in percent everywhere (as in report.txt)
        "gof": res.gof,
        "datasets": {d.name: {"rwp_percent": 100.0 * d.agreement.rwp,
                              "rp_percent": 100.0 * d.agreement.rp,
                              "chi2": d.agreement.chi2} for d in res.datasets},
        "values": {k: np.asarray(v).tolist() for k, v in res.values.items()},
        "esd": {k: np.asarray(v).tolist() for k, v in res.esd.items()},
        "stages": [s.name for s in res.stages],
        "resumed": from_ckpt is not None,
        "checkpoint": str(ckpt) if interrupted and writer.written else None,
        "files": [str(out / names["report"]), str(out / names["plot"]),
                  *(str(bundle_stem(out / names["json"]).with_suffix(x))
                    for x in (".json", ".npz"))],
    }



def discover_from_toml(path: str | Path, out_dir: str | Path, *, resume: bool = False,
                       progress: bool = False) -> dict[str, Any]:
    """``tiedsci refine discover``: fit the run file's refinement, then search its ties.

    Writes the start's outputs (as ``run``), the path (``[discover] path``, with a text
    table beside it), its plot, ``report.html`` (the path as an HTML report), and the chosen
    model's report and result
    (``best_report.txt``, ``best_result.json``). Returns the run summary with ``discovery``
    (the path as a dict, and the chosen step's tie structure).
    """
    from tiedsci.refine.result import load as load_result
    from tiedsci.refine.tiesearch import discover
    from tiedsci.report import write_discovery_report

    rf = load(path)
    summary = run_runfile(rf, out_dir, resume=resume, progress=progress)
    if summary["interrupted"]:
        return summary
    out = Path(out_dir)
    cfg = dict(rf.data["discover"])
    names = dict(rf.data["output"])
    jr = build_from_config(rf)
    fit_cfg = {k: v for k, v in rf.data["fit"].items() if k in ("ftol", "xtol", "gtol",
                                                                "max_nfev", "on_singular")}
    start = load_result(out / names["json"])  # the run's optimum: a warm, short refit
    start = jr.with_registry(_warm(jr, start.values)).fit(stages=_stages(rf, jr) or None,
                                                          **fit_cfg)
    try:
        found = discover(jr, start, cfg.get("candidates"), offsets=cfg["offsets"],
                         splits=cfg["splits"], criterion=cfg["criterion"],
                         max_steps=cfg.get("max_steps"), fit_kwargs=fit_cfg)
    except KeyError as exc:  # an unknown candidate: at its key
        raise rf.error(("discover", "candidates"), str(exc.args[0])) from None
    found.save(out / cfg["path"])
    atomic_write_text((out / cfg["path"]).with_suffix(".txt"), found.table())
    found.plot().savefig(str(out / cfg["plot"]), dpi=110)
    write_discovery_report(out, found.to_dict(), str(cfg["plot"]))
    best = found.best_model
    atomic_write_text(out / "best_report.txt", best.report())
    best.save(out / "best_result.json")
    summary["discovery"] = {**found.to_dict(), "chosen": found.info["groups"][found.best]}
    summary["files"] += [str(out / cfg["path"]), str(out / cfg["plot"]),
                         str(out / "report.html"), str(out / "best_report.txt")]
    return summary


def _warm(jr: JointRefinement, values: Mapping[str, Any]) -> Any:
    reg = jr.registry.copy()
    reg.set_values(values)
    return reg
