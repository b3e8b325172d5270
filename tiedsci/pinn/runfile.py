"""``tiedsci pinn solve run.toml``: train a periodic PINN described by a TOML run file.

Example run file (every key is listed in ``docs/cli.md``)::

    [problem]
    name = "allen_cahn"            # advection | heat | burgers | allen_cahn | kdv
    coefficients = { eps = 1e-4, gamma = 5.0 }

    [net]                          # tiedsci.pinn.NetSpec fields
    architecture = "separable"
    rank = 32

    [train]                        # tiedsci.pinn.TrainConfig fields
    n_windows = 10
    budget_s = 120

    [reference]
    source = "bundled"             # "bundled" (AC.mat / KdV.mat) or "spectral"
    n_x = 512
    n_t = 201

    [output]
    plots = true

Writes into ``out_dir``: the resumable checkpoint ``checkpoint.json`` / ``.npz`` / ``.pt``
(:mod:`tiedsci.pinn.checkpoint`), the model ``model.json`` / ``.npz`` / ``.pt`` (read it with
:func:`tiedsci.pinn.load`), ``prediction.npz`` (``x``, ``t``, ``u[i_t, i_x]``), ``metrics.json``
and ``solution.png`` / ``loss.png``. This module only translates the TOML into calls of the
PINN API: checkpoints, resume and Ctrl-C are :func:`~tiedsci.pinn.solve_time_marching`'s.

The ``[net]`` and ``[train]`` keys are the fields of :class:`~tiedsci.pinn.config.NetSpec` and
:class:`~tiedsci.pinn.config.TrainConfig` (their types, defaults and docs are read from the
dataclasses), except that a run file checkpoints every 100 Adam steps by default.

Ctrl-C: the training stops and the solver returns the state of the last checkpoint (windows
not reached yet continue the last trained one); every output is written with
``"interrupted": true``; ``resume=True`` (``--resume``) continues from the checkpoint exactly
where it stopped.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import sys
import typing
from dataclasses import replace
from pathlib import Path
from typing import Any

from tiedsci.errors import TiedSciError
from tiedsci.pinn import problem as problems
from tiedsci.pinn.config import ARCHITECTURES, BOUNDARIES, NetSpec, TrainConfig, from_dict
from tiedsci.pinn.jets import ACTIVATIONS
from tiedsci.pinn.reference import (
    DATASETS,
    Reference,
    check_reference,
    load_reference,
    spectral_reference,
)
from tiedsci.runfile import (
    Field,
    MapOf,
    RunFile,
    Table,
    atomic_write_text,
    load_runfile,
    validate_config,
)

__all__ = ["run_from_toml", "run_config", "run_runfile", "load", "check_toml", "PROBLEMS",
           "SCHEMA", "CHECKPOINT_EVERY"]

PROBLEMS = {"advection": problems.advection, "heat": problems.heat, "burgers": problems.burgers,
            "allen_cahn": problems.allen_cahn, "kdv": problems.kdv}
CHECKPOINT_EVERY = 100
"""Default ``[train] checkpoint_every`` of run files (Adam steps between checkpoints)."""
_NOT_COEFFICIENTS = {"x", "t", "initial", "registry", "trainable"}


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name -> text`` from the ``Attributes`` section of a NumPy-style class docstring."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    m = re.search(r"Attributes\n-+\n(.*)", doc, re.S)
    out: dict[str, str] = {}
    if not m:
        return out
    names: list[str] = []
    for line in m.group(1).splitlines():
        if line and not line.startswith(" "):
            names = [n.strip() for n in line.split(":")[0].split(",")]
            for n in names:
                out[n] = ""
        elif line.strip():
            for n in names:
                out[n] = (out[n] + " " + line.strip()).strip()
    return {k: v.replace("``", "`") for k, v in out.items()}


def _spec_table(cls: type, doc: str, extra: dict[str, dict[str, Any]]) -> Table:
    """A run-file table whose keys are the fields of the frozen dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    docs = _attribute_docs(cls)
    fields: dict[str, Field] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        kind = {int: "int", float: "float", bool: "bool", str: "str"}[args[0]]
        kw: dict[str, Any] = {"default": f.default, "doc": docs.get(f.name, "")}
        kw.update(extra.get(f.name, {}))
        fields[f.name] = Field(kind, **kw)
    return Table(fields, doc)


def _check_interval(v: list[float]) -> str | None:
    return None if v[0] < v[1] else f"need low < high, got {v}"


SCHEMA = Table({
    "problem": Table({
        "name": Field("str", "The PDE (tiedsci.pinn.problem).", required=True,
                      choices=tuple(PROBLEMS)),
        "coefficients": MapOf(Field("float", "Value of this coefficient."),
                              "Physical coefficients by name (e.g. `nu` for heat and burgers, "
                              "`eps`, `gamma` for allen_cahn, `lambda1`, `lambda2` for kdv, "
                              "`speed` for advection); the others keep their defaults.",
                              key_doc="coefficient"),
        "x": Field("list[float]", "Periodic interval [a, b) of x.", length=2,
                   check=_check_interval, default_doc="the problem's"),
        "t": Field("list[float]", "Time interval [t0, t1].", length=2, check=_check_interval,
                   default_doc="the problem's"),
        "trainable": Field("bool|list[str]", "Coefficients learned with the network "
                           "(inverse problems; `true`: all).", default=False),
    }, "Which PDE, with its coefficients and domain.", required=True),
    "net": _spec_table(NetSpec, "Network and boundary treatment: the fields of "
                                "tiedsci.pinn.NetSpec.", {
        "architecture": {"choices": ARCHITECTURES},
        "width": {"doc": "Hidden units of each network."},
        "depth": {"doc": "Hidden layers of each network."},
        "activation": {"choices": tuple(ACTIVATIONS), "doc": "Activation function."},
        "boundary": {"choices": BOUNDARIES},
        "ic": {"choices": ("subtract", "soft")},
        "ck": {"doc": "Order k of the C^k periodic B-spline embedding (instead of "
                      "harmonics)."},
        "n_basis": {"doc": "Number of B-spline basis functions (with ck)."},
        "trainable_amplitudes": {"doc": "Learn the amplitudes of the periodic features."},
        "weight_factorization": {"doc": "Random weight factorization of the dense layers."},
    }),
    "train": _spec_table(TrainConfig, "Optimisation schedule and numerics: the fields of "
                                      "tiedsci.pinn.TrainConfig.", {
        "dtype": {"choices": ("float32", "float64"), "doc": "Floating point type."},
        "lbfgs_history": {"doc": "L-BFGS history size."},
        "lbfgs_chunk": {"doc": "L-BFGS iterations per call (checkpoints and time checks "
                               "happen between calls)."},
        "seed": {"doc": "Seed of the weights and of the collocation points."},
        "threads": {"doc": "torch intra-op threads during the solve (restored afterwards); "
                           "1 is fastest for these small networks on a shared CPU."},
        "resample_every": {"doc": "Redraw the Adam collocation grid every this many steps."},
        "causal_chunks": {"doc": "Number of time chunks of the causal weights."},
        "balance_every": {"doc": "Steps between updates of the loss balancing weights."},
        "boundary_weight": {"doc": "Weight of the soft boundary term (boundary = \"penalty\" "
                                   "or \"shared_subnet\")."},
        "checkpoint": {"default_doc": "`checkpoint.json` in the output folder",
                       "doc": "Path of the resumable checkpoint (a `.json` with its `.npz` and "
                              "`.pt` siblings)."},
        "checkpoint_every": {"default": CHECKPOINT_EVERY,
                             "doc": "Write the checkpoint every this many Adam steps and "
                                    "after every L-BFGS call (0: only at window ends); Ctrl-C "
                                    "keeps the state of the last checkpoint."},
        "progress": {"default_doc": "on in the CLI (`--quiet`: off)",
                     "doc": "tqdm progress bar."},
    }),
    "reference": Table({
        "source": Field("str", "Reference solution: the bundled data (`allen_cahn`, `kdv` with "
                        "default coefficients) or a spectral solve.",
                        choices=("bundled", "spectral"),
                        default_doc='`"bundled"` when available, else `"spectral"`'),
        "n_x": Field("int", "Spectral grid points in x.", ge=4, default=512),
        "n_t": Field("int", "Output times of the spectral solve.", ge=2, default=201),
        "dt": Field("float", "Time step of the spectral solve.", gt=0, default=1e-4),
    }, "What the prediction is compared with (metrics, plots)."),
    "output": Table({
        "plots": Field("bool", "Write `solution.png` and `loss.png`.", default=True),
    }, "Optional outputs."),
})


def load(path: str | os.PathLike[str], *, check_paths: bool = True) -> RunFile:
    """Read and validate a PINN run file (see :data:`SCHEMA`)."""
    return load_runfile(path, SCHEMA, check_paths=check_paths)


def _spec(rf: RunFile, section: str, cls: type) -> Any:
    try:
        return from_dict(cls, rf.data[section])
    except TiedSciError as exc:
        msg = str(exc)
        key = next((k for k in rf.raw.get(section, {}) if re.search(rf"\b{k}\b", msg)), None)
        if key is None:
            raise rf.section_error((section,), msg) from None
        raise rf.error((section, key), msg) from None


def _prepare(rf: RunFile, out: Path, progress: bool | None
             ) -> tuple[problems.PDEProblem, NetSpec, TrainConfig]:
    spec = rf.data["problem"]
    name = spec["name"]
    factory = PROBLEMS[name]
    known = [p for p in inspect.signature(factory).parameters if p not in _NOT_COEFFICIENTS]
    for c in spec["coefficients"]:
        if c not in known:
            raise rf.error(("problem", "coefficients", c),
                           f"{name!r} has no coefficient {c!r}; its coefficients: {known}")
    kwargs: dict[str, Any] = dict(spec["coefficients"])
    for key in ("x", "t"):
        if key in spec:
            kwargs[key] = tuple(spec[key])
    trainable = spec["trainable"]
    if trainable:
        bad = [c for c in trainable if c not in known] if isinstance(trainable, list) else []
        if bad:
            raise rf.error(("problem", "trainable"), f"{name!r} has no coefficient {bad[0]!r}; "
                                                     f"its coefficients: {known}")
        kwargs["trainable"] = tuple(trainable) if isinstance(trainable, list) else True
    try:
        prob = factory(**kwargs)
    except TiedSciError as exc:
        key = next((c for c in spec["coefficients"] if repr(c) in str(exc)), None)
        if key is not None:
            raise rf.error(("problem", "coefficients", key), str(exc)) from None
        raise rf.section_error(("problem",), str(exc)) from None
    net = _spec(rf, "net", NetSpec)
    train = _spec(rf, "train", TrainConfig)
    if train.checkpoint is None:
        train = replace(train, checkpoint=str(out / "checkpoint.json"))
    else:
        path = Path(train.checkpoint).expanduser()
        train = replace(train, checkpoint=str(path if path.is_absolute() else rf.base / path))
    if progress is not None and "progress" not in rf.raw.get("train", {}):
        train = replace(train, progress=progress)
    return prob, net, train


def _reference_source(rf: RunFile, prob: problems.PDEProblem) -> str:
    """The reference the run will use, checked against the problem (``--check`` runs this)."""
    source = rf.data["reference"].get("source", "bundled" if prob.name in DATASETS else
                                      "spectral")
    if source == "bundled":
        if prob.name not in DATASETS:
            raise rf.error(("reference", "source"), f"no bundled data for {prob.name!r} "
                                                    f"(bundled: {sorted(DATASETS)}); use "
                                                    "\"spectral\"")
        try:
            check_reference(prob, load_reference(prob.name))
        except TiedSciError as exc:
            raise rf.error(("reference", "source"), f"{exc}; use source = \"spectral\""
                           ) from None
    return source


def _reference(rf: RunFile, prob: problems.PDEProblem) -> Reference:
    spec = rf.data["reference"]
    if _reference_source(rf, prob) == "bundled":
        return load_reference(prob.name)
    return spectral_reference(prob, spec["n_x"], spec["n_t"], spec["dt"])


def check_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Validate a run file (problem, specs) without training; returns a short description."""
    rf = load(path)
    prob, net, train = _prepare(rf, Path(path).with_suffix(""), None)
    return {"problem": prob.name, "architecture": net.architecture,
            "n_windows": train.n_windows, "reference": _reference_source(rf, prob)}


def run_config(config: dict[str, Any], out_dir: str | os.PathLike[str],
               base: Path | None = None) -> dict[str, Any]:
    """Run a parsed run-file dictionary (see the module docstring); returns the metrics dict."""
    return run_runfile(validate_config(config, SCHEMA, base=base), out_dir)


def run_from_toml(path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                  resume: bool = False, progress: bool | None = None,
                  device: str | None = None) -> dict[str, Any]:
    """Parse ``path`` (TOML) and run it, writing into ``out_dir``; returns the metrics dict.

    Parameters
    ----------
    path, out_dir : path
    resume : bool
        Continue from the checkpoint if there is one (else start afresh).
    progress : bool, optional
        Force the progress bar on or off unless the run file sets ``[train] progress``.
    device : str, optional
        torch device overriding ``[train] device`` (e.g. ``"cuda"``).
    """
    rf = load(path)
    if device is not None:
        from tiedsci.backends.torch_backend import resolve_device

        resolve_device(device)  # clear error when CUDA is asked for and absent
        rf.data.setdefault("train", {})["device"] = device
    return run_runfile(rf, out_dir, resume=resume, progress=progress)


def run_runfile(rf: RunFile, out_dir: str | os.PathLike[str], *, resume: bool = False,
                 progress: bool | None = None) -> dict[str, Any]:
    """:func:`run_from_toml` on an already loaded :class:`~tiedsci.runfile.RunFile`."""
    from tiedsci.pinn.checkpoint import checkpoint_file
    from tiedsci.pinn.marching import solve_time_marching
    from tiedsci.pinn.outputs import write_outputs

    out = Path(out_dir)
    prob, net, train = _prepare(rf, out, progress)
    reference = _reference(rf, prob)
    ckpt = checkpoint_file(str(train.checkpoint))
    start_from = None
    if resume:
        if ckpt.exists():
            start_from = ckpt
        else:
            print(f"nothing to resume ({ckpt} does not exist): starting from the beginning",
                  file=sys.stderr)
    try:
        solution = solve_time_marching(prob, net, train, resume=start_from)
    except KeyboardInterrupt:
        print("interrupted before the first checkpoint: nothing trained to write",
              file=sys.stderr)
        return {"problem": prob.name, "interrupted": True, "completed": False,
                "checkpoint_file": None}
    result = write_outputs(solution, reference, out, plots=rf.data["output"]["plots"])
    result.update(checkpoint_file=str(ckpt), problem=prob.name,
                  interrupted=solution.interrupted)
    if solution.interrupted:
        result["stopped_at"] = solution.stopped_at
    atomic_write_text(result["metrics_file"], json.dumps(result, indent=2))
    return result
