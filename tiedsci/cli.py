"""Command line: ``tiedsci demo | init | hmm fit | hmm discover | refine run | refine discover |
pinn solve``.

The three run-file commands share their behaviour (see ``docs/cli.md``):

* the run file is validated first; problems are reported with the file, line and key and the
  command exits with status 2 (``--check`` stops after this validation);
* progress bars go to stderr (``--quiet``: none), the JSON summary to stdout; warnings become
  one line each on stderr, in full in ``warnings.log`` of the output folder;
* Ctrl-C writes the outputs of the best state reached (marked ``"interrupted": true``), says
  where they are and exits with status 130, without a traceback;
* ``--resume`` continues from the checkpoint in the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from tiedsci import __version__

__all__ = ["main", "build_parser", "RUN_COMMANDS"]

RUN_COMMANDS: dict[str, tuple[str, str, str]] = {
    # command: (verb, back-end module, help)
    "hmm": ("fit", "tiedsci.hmm.runfile", "fit a tied HMM described in a TOML run file"),
    "refine": ("run", "tiedsci.refine.runfile", "run a joint refinement from a TOML run file"),
    "pinn": ("solve", "tiedsci.pinn.runfile", "train a periodic PINN from a TOML run file"),
}

DISCOVER_COMMANDS: dict[str, str] = {
    # command: help of its `discover` verb (the back end's discover_from_toml)
    "hmm": "tie discovery on the run file's model: which states should share parameters "
           "([discover] table; path table, JSON, plot)",
    "refine": "search which per-dataset parameters the data want tied ([discover] table)",
}

EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 1, 2, 130


def _run_file(command: str, args: argparse.Namespace) -> int:
    from importlib import import_module

    from tiedsci.errors import (
        CheckpointError,
        DataError,
        DeclarationError,
        RunFileError,
        TiedSciError,
        UnknownParameterError,
    )

    _, module_name, _ = RUN_COMMANDS[command]
    verb = args.verb
    path = args.runfile
    out_dir = Path(args.out) if args.out else Path(path).with_suffix("")
    again = f"tiedsci {command} {verb} {path}" + (f" --out {args.out}" if args.out else "")
    try:
        module = import_module(module_name)
        if args.check:
            info = module.check_toml(path)
            print(f"{path}: ok " + json.dumps(info, default=str))
            return 0
        extra = {"device": args.device} if getattr(args, "device", None) else {}
        from tiedsci.progress import readable_warnings

        with readable_warnings(out_dir / "warnings.log", quiet=args.quiet):
            runner = module.discover_from_toml if verb == "discover" else module.run_from_toml
            result = runner(path, out_dir, resume=args.resume, progress=not args.quiet, **extra)
        print(json.dumps(result, indent=2, default=str), flush=True)
    except (RunFileError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (DataError, DeclarationError, UnknownParameterError) as exc:
        # the input, found wrong only when used: still a run-file error, at its key when it
        # names one
        from tiedsci.runfile import locate

        print(f"error: {locate(path, str(exc))}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TiedSciError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print(f"\ninterrupted; outputs in {out_dir} may be incomplete (a checkpoint there, if "
              f"any, continues with: {again} --resume)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if result.get("interrupted"):
        if result.get("files") or result.get("metrics_file"):
            print(f"interrupted: outputs for the best state reached are in {out_dir}; "
                  f"continue with: {again} --resume", file=sys.stderr)
        else:
            print(f"interrupted before anything was fitted; nothing written to {out_dir}",
                  file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


class _KeysHelp(argparse.Action):
    """``--help`` of a run-file command: the usage, then every key of its run file (the schema
    is imported only when asked for, so ``tiedsci --help`` stays light)."""

    def __init__(self, option_strings: Sequence[str], dest: str, module: str = "",
                 help: str | None = None) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)
        self.module = module

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from importlib import import_module

        from tiedsci.runfile import render_text

        parser.epilog = render_text(import_module(self.module).SCHEMA)
        parser.print_help()
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiedsci",
        description="Scientific models with tied parameters: tied HMMs, joint refinement, "
                    "periodic PINNs.",
    )
    parser.add_argument("--version", action="version", version=f"tiedsci {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the flagship workflows on bundled data")
    demo.add_argument("--out", default=None, help="output folder (default: a new folder here)")
    demo.add_argument("--quick", action="store_true", help="a short smoke version")
    demo.add_argument("--device", default="cpu",
                      help="torch device of the PINN section (cpu, cuda, cuda:1)")
    demo.add_argument("--quiet", action="store_true",
                      help="no progress bars or warning lines (warnings still go to demo.log)")
    demo.add_argument("--only", nargs="*", default=None,
                      help="run only these sections (registry, hmm, refine, pinn)")
    init = sub.add_parser("init", help="write a commented run file and sample data to start "
                                       "from")
    init.add_argument("kind", choices=tuple(RUN_COMMANDS), help="which command's run file")
    init.add_argument("dir", nargs="?", default=None,
                      help="folder to write into (default: tiedsci-<kind>)")
    init.add_argument("--force", action="store_true", help="overwrite an existing run.toml")
    for name, (verb, module_name, helptext) in RUN_COMMANDS.items():
        p = sub.add_parser(name, help=helptext)
        s = p.add_subparsers(dest="verb", required=True)
        _verb_parser(s, name, verb, module_name, helptext)
        if name in DISCOVER_COMMANDS:
            _verb_parser(s, name, "discover", module_name, DISCOVER_COMMANDS[name])
    return parser


def _verb_parser(s: Any, name: str, verb: str, module_name: str, helptext: str) -> None:
    """One run-file verb (``refine run``, ``refine discover``) with the shared options."""
    about = (f"{helptext}. Ctrl-C writes the outputs of the best state so far and exits "
             "with status 130; run-file errors exit with status 2 (with file:line:key). "
             f"`tiedsci init {name}` writes a commented run file and sample data to start "
             "from; every key is listed below.")
    v = s.add_parser(verb, help=helptext, add_help=False,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     description=textwrap.fill(about, 88))
    v.add_argument("-h", "--help", action=_KeysHelp, module=module_name,
                   help="show this help, with every key of the run file, and exit")
    v.add_argument("runfile", help="the TOML run file")
    v.add_argument("--out", default=None,
                   help="output folder (default: the run file's path without .toml)")
    v.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in the output folder")
    v.add_argument("--quiet", action="store_true", help="no progress bars")
    v.add_argument("--check", action="store_true",
                   help="only validate the run file and its data, then exit")
    if name in ("hmm", "pinn"):
        v.add_argument("--device", default=None,
                       help="torch device, e.g. cpu, cuda, cuda:1 (overrides the run file; "
                            "a clear error when CUDA is absent)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tiedsci`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "device", None):
        from tiedsci.backends.torch_backend import resolve_device

        try:  # before any work: CUDA asked for on a machine without it is a one-line error
            resolve_device(args.device)
        except (ValueError, RuntimeError) as exc:
            print(f"error: --device {args.device}: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
    if args.command == "demo":
        out = Path(args.out) if args.out else Path(
            f"tiedsci-demo-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        try:
            from tiedsci.demo import run_demo

            run_demo(out, args.quick, args.only, device=args.device, quiet=args.quiet)
        except KeyboardInterrupt:
            print(f"\ninterrupted; partial results in {out}", file=sys.stderr)
            return EXIT_INTERRUPTED
        return 0
    if args.command == "init":
        return _init(args)
    return _run_file(args.command, args)


def _init(args: argparse.Namespace) -> int:
    from tiedsci.init import TEMPLATES, write_template

    folder = Path(args.dir or f"tiedsci-{args.kind}")
    try:
        run = write_template(args.kind, folder, force=args.force)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"wrote {run} and its data; run it with: {TEMPLATES[args.kind][2]} {run}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
