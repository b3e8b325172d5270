"""Data-parallel PINN training: 1 process vs N ranks (torch DDP), the same global batch.

Advection ``u_t + 30 u_x = 0`` with a 4 x 50 tanh MLP field on ``[cos x, sin x, t]`` (hard
initial condition, residual-only loss), Adam only. The single process draws the whole global
batch (``--batch`` points, a grid of 128 x batch/128); each of the ``--ranks`` ranks
(``torch.multiprocessing.spawn``, gloo on CPU, one torch thread each) draws ``batch / ranks`` of
its own points, and DDP (``static_graph=True``) averages the gradients.

Reported: ms per Adam step (steady state: steps 10..N; and over all N steps, which includes
DDP's first-iteration set-up) for one process with 1 thread, optionally (``--threads-row``) one
process with as many threads as ranks (the same cores), and the ranks; the speed-up ratios; the
wall time of the spawned job (process start-up included).

Usage: ``python benchmarks/pinn_ddp.py [--json] [--device cpu|cuda] [--steps 200]
[--batch 4096] [--ranks 2] [--threads-row]``. With ``--device cuda`` the ranks need one GPU
each (nccl); with fewer GPUs only the single-process row is run.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import time
from dataclasses import replace
from typing import Any

import torch

from tiedsci.pinn import problem as P
from tiedsci.pinn.config import NetSpec, TrainConfig
from tiedsci.pinn.ddp import spawn_solve
from tiedsci.pinn.marching import solve_time_marching

N_X = 128


def _ms_per_step(history: list[dict[str, Any]], steps: int) -> dict[str, float]:
    adam = [h for h in history if h["phase"] == "adam"]
    by_step = {h["step"]: h["time"] for h in adam}
    last = max(by_step)
    if last < steps:
        raise RuntimeError(f"only {last} of {steps} Adam steps ran")
    out = {"all": 1e3 * by_step[last] / last}
    if 10 in by_step and last > 10:
        out["steady"] = 1e3 * (by_step[last] - by_step[10]) / (last - 10)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=4096, help="global batch (points)")
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--width", type=int, default=50)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--threads-row", action="store_true",
                        help="also time one process with `ranks` torch threads (slow when the "
                             "cores are shared)")
    args = parser.parse_args(argv)
    if args.batch % (N_X * args.ranks):
        parser.error(f"--batch must be a multiple of {N_X} x ranks = {N_X * args.ranks}")
    n_t = args.batch // N_X
    net = NetSpec(architecture="mlp", width=args.width, depth=args.depth, n_harmonics=1)
    base = TrainConfig(adam_steps=args.steps, lbfgs_steps=0, n_x=N_X, n_t=n_t,
                       resample_every=100, seed=0, device=args.device, threads=1)
    factory = functools.partial(P.advection, speed=30.0)
    rows: dict[str, Any] = {}

    def single(threads: int) -> dict[str, Any]:
        cfg = replace(base, threads=threads)
        start = time.perf_counter()
        sol = solve_time_marching(factory(), net, cfg)
        return {"processes": 1, "threads_each": threads, "points_each": args.batch,
                "wall_s": round(time.perf_counter() - start, 2),
                "ms_per_step": _ms_per_step(sol.history, args.steps)}

    rows["1 process, 1 thread"] = single(1)
    if args.device == "cpu" and args.threads_row:
        rows[f"1 process, {args.ranks} threads"] = single(args.ranks)
    can_spawn = args.device == "cpu" or torch.cuda.device_count() >= args.ranks
    if can_spawn:
        cfg = replace(base, n_t=n_t // args.ranks)
        start = time.perf_counter()
        res = spawn_solve(args.ranks, factory, net, cfg)
        rows[f"{args.ranks} ranks (DDP, {res.backend})"] = {
            "processes": args.ranks, "threads_each": 1, "points_each": args.batch // args.ranks,
            "wall_s": round(time.perf_counter() - start, 2),
            "training_s": round(res.wall_s, 2),
            "ms_per_step": _ms_per_step(res.solution.history, args.steps)}
    else:
        rows[f"{args.ranks} ranks"] = {"skipped": f"needs {args.ranks} GPUs, "
                                                  f"{torch.cuda.device_count()} present"}
    ref = rows["1 process, 1 thread"]["ms_per_step"]
    for row in rows.values():
        if "ms_per_step" in row:
            row["speedup_vs_1_process"] = {k: round(ref[k] / v, 2)
                                           for k, v in row["ms_per_step"].items()}
            row["ms_per_step"] = {k: round(v, 2) for k, v in row["ms_per_step"].items()}
    result = {
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "device": args.device,
                    "load_before": os.getloadavg()},
        "setup": {"problem": "advection speed 30", "net": f"mlp {args.depth}x{args.width} tanh",
                  "global_batch": args.batch, "adam_steps": args.steps, "dtype": "float32"},
        "rows": rows,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"global batch {args.batch} points, {args.steps} Adam steps, mlp "
          f"{args.depth}x{args.width}, device {args.device}, load {os.getloadavg()[0]:.1f}")
    print(f"{'run':28s} {'points/proc':>11s} {'ms/step':>9s} {'(all)':>8s} {'speed-up':>9s}")
    for name, row in rows.items():
        if "ms_per_step" not in row:
            print(f"{name:28s} {row['skipped']}")
            continue
        ms = row["ms_per_step"]
        print(f"{name:28s} {row['points_each']:11d} {ms.get('steady', float('nan')):9.2f} "
              f"{ms['all']:8.2f} {row['speedup_vs_1_process'].get('steady', 0):8.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
