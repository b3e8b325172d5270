"""Peak memory of the two largest everyday workloads, each measured in a fresh subprocess.

* a single 10^6-step Gaussian HMM sequence (K = 4): six EM iterations and a Viterbi decode;
* a joint refinement of 100 synthetic powder datasets (810 free parameters).

The child reports its own peak resident set size (``getrusage(RUSAGE_SELF).ru_maxrss``, which
covers numpy and torch allocations alike) and its results; the parent checks the results, asserts
a bound far below the 24 GiB machine budget and prints the figure (``pytest -s`` shows it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BOUND_MIB = 4096  # 4 GiB

_REPORT = """
import json, resource, sys, time
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux -> MiB
print(json.dumps({**out, "peak_mib": peak, "wall_s": time.perf_counter() - t0}))
"""

HMM_CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
import tiedsci.hmm as th
rng = np.random.default_rng(0)
n, k = 1_000_000, 4
truth = np.array([-3.0, -1.0, 1.0, 3.0])
states = np.cumsum(rng.random(n) < 0.01) % k           # a sticky chain over 4 states
x = (truth[states] + 0.5 * rng.standard_normal(n))[:, None]
model = th.GaussianHMM(k, "diag", n_iter=6, tol=-np.inf, init_params="st", random_state=0)
model.means_ = np.array([[-2.0], [-0.5], [0.5], [2.0]])  # a rough start, independent of k-means
model.covars_ = np.ones((k, 1))
model.fit(x)
log_prob, decoded = model.decode(x)
order = np.argsort(model.means_[:, 0])
relabel = np.empty(k, dtype=int)
relabel[order] = np.arange(k)
out = {"history": model.monitor_.history, "means": np.sort(model.means_[:, 0]).tolist(),
       "finite": bool(np.all(np.isfinite(model.covars_)) and np.isfinite(log_prob)),
       "accuracy": float(np.mean(relabel[decoded] == states)), "n": int(decoded.size)}
"""

REFINE_CHILD = """
import time
t0 = time.perf_counter()
import numpy as np
import torch
torch.set_num_threads(1)
from tiedsci.refine import JointRefinement
from tiedsci.refine.synthetic import (LOCAL_NAMES, make_powder_data, make_powder_model,
                                      perturbed_start)
setup, datasets, truth = make_powder_data(100, n_points=300, n_peaks=8, random_state=0)
start = perturbed_start(truth, [d.name for d in datasets], random_state=1)
model = make_powder_model(setup)
jr = JointRefinement()
for ds in datasets:
    jr.add(ds, model)
for name, value in zip("abc", start["cell"]):
    jr.shared(f"cell.{name}", float(value))
jr.shared("intensities", start["intensities"])
for name in LOCAL_NAMES:
    jr.local(name, {ds.name: start[ds.name][name] for ds in datasets})
jr.registry.fix("d0.scale")
res = jr.fit()
cell = [float(res.values[f"cell.{c}"]) for c in "abc"]
esd = [float(res.esd[f"cell.{c}"]) for c in "abc"]
out = {"n_free": res.n_free, "n_obs": res.n_obs, "converged": res.converged,
       "redchi": res.redchi, "cell": cell, "cell_esd": esd, "truth": truth["cell"].tolist(),
       "finite": all(bool(np.all(np.isfinite(v))) for v in res.values.values())}
"""


def _run_child(code: str) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    script = textwrap.dedent(code) + textwrap.dedent(_REPORT)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_million_step_hmm_fit_and_decode_memory():
    out = _run_child(HMM_CHILD)
    print(f"\n10^6-step Gaussian HMM (K=4, 6 EM iterations + Viterbi): peak RSS "
          f"{out['peak_mib']:.0f} MiB, {out['wall_s']:.1f} s")
    assert out["finite"] and out["n"] == 1_000_000
    assert np.all(np.diff(out["history"]) > 0)  # EM: the log-likelihood rises
    np.testing.assert_allclose(out["means"], [-3.0, -1.0, 1.0, 3.0], atol=0.1)
    assert out["accuracy"] > 0.9
    assert out["peak_mib"] < BOUND_MIB


def test_hundred_dataset_joint_refinement_memory():
    out = _run_child(REFINE_CHILD)
    print(f"\n100-dataset joint refinement ({out['n_free']} free parameters, {out['n_obs']} "
          f"points): peak RSS {out['peak_mib']:.0f} MiB, {out['wall_s']:.1f} s")
    assert out["converged"] and out["finite"]
    assert out["n_free"] == 3 + 8 + 100 * 8 - 1 and out["n_obs"] == 100 * 300
    assert 0.8 < out["redchi"] < 1.2
    for v, e, t in zip(out["cell"], out["cell_esd"], out["truth"]):
        assert abs(v - t) < 5 * e  # the shared cell is recovered within its esd
    assert out["peak_mib"] < BOUND_MIB
