"""``tiedsci refine run run.toml``: a joint refinement described in a TOML file.

Format (paths relative to the TOML file)::

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

    fixed = ["neutron.bkg"]           # top-level list of names held fixed
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
    engine = "tiedsci"                # or "lmfit" (+ method = "leastsq")
    scale_covar = true

    [output]                          # defaults shown
    report = "report.txt"
    json = "result.json"
    plot = "fit.png"
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tiedsci.core import Positive
from tiedsci.errors import DataError, DeclarationError
from tiedsci.refine.data import Dataset
from tiedsci.refine.joint import JointRefinement
from tiedsci.refine.models import BUILTIN_MODELS
from tiedsci.refine.stages import Stage

__all__ = ["run_from_toml", "load_columns", "build_from_config"]


def load_columns(path: str | Path) -> np.ndarray:
    """Numeric columns of a text file (``#`` comments, comma or whitespace separated).

    Returns
    -------
    ndarray, shape (n_rows, n_columns)
    """
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            rows.append([float(t) for t in line.replace(",", " ").split()])
        except ValueError:
            raise DataError(f"{path}: line {i + 1} is not numeric: {line[:60]!r}") from None
    if not rows:
        raise DataError(f"{path}: no data rows")
    width = len(rows[0])
    for i, r in enumerate(rows):
        if len(r) != width:
            raise DataError(f"{path}: data row {i} has {len(r)} columns, the first has {width}")
    return np.array(rows)


def _bounds(spec: Any) -> Any:
    if spec is None:
        return None
    if spec == "positive":
        return Positive()
    if isinstance(spec, list) and len(spec) == 2:
        return tuple(None if v in ("-inf", "inf", None) else float(v) for v in spec)
    raise DeclarationError(f"bounds must be 'positive' or [lo, hi], got {spec!r}")


def _entry(spec: Any) -> dict[str, Any]:
    return dict(spec) if isinstance(spec, Mapping) else {"value": spec}


def _model(cfg: Mapping[str, Any], base: Path) -> Callable[..., Any]:
    if "builtin" in cfg:
        name = cfg["builtin"]
        if name not in BUILTIN_MODELS:
            raise DeclarationError(f"unknown builtin model {name!r}; choose from "
                                   f"{sorted(BUILTIN_MODELS)}")
        return BUILTIN_MODELS[name]
    if "file" in cfg:
        path = (base / cfg["file"]).resolve()
        spec = importlib.util.spec_from_file_location(f"tiedsci_user_model_{path.stem}", path)
        if spec is None or spec.loader is None:
            raise DeclarationError(f"cannot import model file {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        fn_name = cfg.get("function", "model")
        if not hasattr(module, fn_name):
            raise DeclarationError(f"{path} defines no function {fn_name!r}")
        return getattr(module, fn_name)
    raise DeclarationError("[model] needs builtin = '...' or file = '...'")


def _dataset(cfg: Mapping[str, Any], base: Path) -> Dataset:
    name = cfg.get("name")
    if not name or "file" not in cfg:
        raise DeclarationError(f"each [[dataset]] needs name and file, got {dict(cfg)}")
    cols = load_columns(base / cfg["file"])
    if cols.shape[1] < 2:
        raise DataError(f"dataset {name!r}: {cfg['file']} needs at least two columns (x, y)")
    x, y = cols[:, 0], cols[:, 1]
    mode = cfg.get("weights", "sigma" if cols.shape[1] >= 3 else "unit")
    limits = tuple(cfg["limits"]) if "limits" in cfg else None
    if mode == "sigma":
        if cols.shape[1] < 3:
            raise DataError(f"dataset {name!r}: weights = 'sigma' needs a third column")
        return Dataset(x, y, sigma=cols[:, 2], limits=limits, name=name)
    if mode == "counts":
        return Dataset(x, y, sigma=np.sqrt(np.maximum(y, 1.0)), limits=limits, name=name)
    if mode == "unit":
        return Dataset(x, y, limits=limits, name=name)
    raise DeclarationError(f"dataset {name!r}: weights must be 'sigma', 'counts' or 'unit'")


def build_from_config(cfg: Mapping[str, Any], base: Path) -> JointRefinement:
    """A :class:`JointRefinement` from a parsed run file (see the module docstring)."""
    model = _model(cfg.get("model", {}), base)
    jr = JointRefinement()
    datasets = cfg.get("dataset", [])
    if not datasets:
        raise DeclarationError("the run file declares no [[dataset]]")
    for d in datasets:
        jr.add(_dataset(d, base), model)
    for name, spec in cfg.get("shared", {}).items():
        e = _entry(spec)
        jr.shared(name, e["value"], bounds=_bounds(e.get("bounds")),
                  fixed=bool(e.get("fixed", False)), unit=e.get("unit", ""))
    for name, spec in cfg.get("local", {}).items():
        e = _entry(spec)
        value = e["values"] if "values" in e else e["value"]
        jr.local(name, value, bounds=_bounds(e.get("bounds")), fixed=bool(e.get("fixed", False)),
                 unit=e.get("unit", ""))
    for name in cfg.get("fixed", []):
        jr.registry.fix(name)
    for tie in cfg.get("tie", []):
        jr.registry.tie(tie["source"], *tie["targets"])
    for rst in cfg.get("restraint", []):
        jr.registry.restrain(rst["params"], float(rst["strength"]), target=rst.get("target"))
    for name, members in cfg.get("groups", {}).items():
        jr.group(name, members)
    return jr


def run_from_toml(path: str | Path, out_dir: str | Path) -> dict[str, Any]:
    """Run the refinement described in ``path``; write report, json and plot to ``out_dir``.

    Returns
    -------
    dict
        Summary: agreement indices, convergence, refined values and esds, written files.
    """
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]

    path = Path(path)
    cfg = tomllib.loads(path.read_text())
    jr = build_from_config(cfg, path.parent)
    stages = [Stage(s["name"], tuple(s["vary"]), s.get("max_nfev"))
              for s in cfg.get("stage", [])]
    fit_cfg = dict(cfg.get("fit", {}))
    res = jr.fit(stages=stages or None, **fit_cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = {"report": "report.txt", "json": "result.json", "plot": "fit.png",
             **cfg.get("output", {})}
    (out / names["report"]).write_text(res.report())
    res.to_json(out / names["json"])
    res.plot(out / names["plot"])
    return {
        "converged": res.converged,
        "message": res.message,
        "n_obs": res.n_obs,
        "n_free": res.n_free,
        "chi2": res.chi2,
        "redchi": res.redchi,
        "rwp": res.rwp,
        "gof": res.gof,
        "datasets": {d.name: {"rwp": d.agreement.rwp, "rp": d.agreement.rp,
                              "chi2": d.agreement.chi2} for d in res.datasets},
        "values": {k: np.asarray(v).tolist() for k, v in res.values.items()},
        "esd": {k: np.asarray(v).tolist() for k, v in res.esd.items()},
        "stages": [s.name for s in res.stages],
        "files": [str(out / names[k]) for k in ("report", "json", "plot")],
    }
