"""``tiedsci init hmm|refine|pinn [DIR]``: a commented run file and sample data that run as is.

Each template is a complete run file for one command, commented key by key (``tiedsci <cmd>
<verb> --help`` lists every key), with the data it needs written next to it:

* ``hmm``: the Nile's annual flow (bundled, ``nile.csv``), a two-state Gaussian HMM;
* ``refine``: two simulated spectra of one line (``a.csv``, ``b.csv``, with a header row),
  centre and width shared, height and background per dataset, in two stages;
* ``pinn``: the heat equation on a periodic interval, a 20 s training budget, compared with a
  spectral reference solution (no data file needed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from tiedsci._files import atomic_write_bytes

__all__ = ["TEMPLATES", "write_template"]

HMM_TOML = """\
# tiedsci hmm fit run.toml       (every key: tiedsci hmm fit --help)
# A Gaussian HMM of the Nile's annual flow, 1871-1970: the famous drop after 1898.

[data]
path = "nile.csv"              # relative to this file; a header row names the columns
columns = ["volume"]           # header names or 0-based indices

[model]
family = "gaussian"            # gaussian | categorical | poisson | gmm | tied_mixture
n_components = 2               # hidden states
covariance_type = "diag"
n_iter = 200                   # at most this many EM iterations
tol = 1e-6                     # stop when the log-likelihood gains less than this
random_state = 0
# tie_states = [[0, 1]]        # states that share their whole emission

[init]                         # optional starting values (hmmlearn attribute names)
means = [[1100.0], [850.0]]    # one row per state: before and after the drop
covars = 20000.0               # a number is broadcast to every state and feature
"""

REFINE_TOML = """\
# tiedsci refine run run.toml    (every key: tiedsci refine run --help)
# One line measured by two instruments: the line's centre and width are shared, each
# instrument has its own height and linear background.

[model]
builtin = "gaussian_peaks"     # or: file = "mymodel.py" (a Python function)

[[dataset]]
name = "a"
file = "a.csv"                 # CSV with a header row: two_theta,counts,sigma
columns = ["two_theta", "counts", "sigma"]   # x, y, sigma (names or 0-based indices)

[[dataset]]
name = "b"
file = "b.csv"
columns = ["two_theta", "counts", "sigma"]

[shared]                       # one value seen by every dataset
center = 0.0
width = { value = 1.5, bounds = [0.1, 5.0] }

[local]                        # one copy per dataset, named <dataset>.<parameter>
height = { value = 3.0, bounds = "positive" }
bkg = [0.5, 0.0]               # background: constant and slope

[[stage]]                      # staged refinement, as a crystallographer would
name = "background"
vary = ["bkg"]

[[stage]]
name = "everything"
vary = ["*"]
"""

PINN_TOML = """\
# tiedsci pinn solve run.toml    (every key: tiedsci pinn solve --help)
# The heat equation u_t = nu u_xx on a periodic interval, solved by a PINN whose periodic
# input features make u(0, t) = u(2 pi, t) exact; compared with a spectral solution.

[problem]
name = "heat"                  # advection | heat | burgers | allen_cahn | kdv
coefficients = { nu = 0.1 }    # a diffusion coefficient must be >= 0

[net]
architecture = "separable"
width = 32
rank = 8

[train]
n_windows = 2                  # time windows, each started from the previous one's end
budget_s = 20                  # training time in seconds (the bar counts it)
threads = 1

[reference]
source = "spectral"            # "bundled" exists for allen_cahn and kdv
n_x = 256
n_t = 51
"""


def _refine_data(folder: Path) -> None:
    """Two noisy Gaussian lines (centre 0.3, width 1.1) with different heights/backgrounds."""
    rng = np.random.default_rng(7)
    x = np.linspace(-5.0, 5.0, 120)
    for name, height, bkg in (("a", 8.0, 1.0), ("b", 4.0, 2.0)):
        y = height * np.exp(-0.5 * ((x - 0.3) / 1.1) ** 2) + bkg + 0.05 * x
        y = y + 0.1 * rng.standard_normal(x.size)
        rows = "\n".join(f"{u:.6f},{v:.6f},0.1" for u, v in zip(x, y))
        atomic_write_bytes(folder / f"{name}.csv",
                           f"two_theta,counts,sigma\n{rows}\n".encode("ascii"))


def _hmm_data(folder: Path) -> None:
    from importlib import resources

    shutil.copyfile(str(resources.files("tiedsci") / "data" / "hmm" / "nile.csv"),
                    folder / "nile.csv")


TEMPLATES = {
    "hmm": (HMM_TOML, _hmm_data, "tiedsci hmm fit"),
    "refine": (REFINE_TOML, _refine_data, "tiedsci refine run"),
    "pinn": (PINN_TOML, None, "tiedsci pinn solve"),
}


def write_template(kind: str, folder: str | Path, *, force: bool = False) -> Path:
    """Write the ``kind`` template's ``run.toml`` and its data into ``folder``.

    Parameters
    ----------
    kind : {"hmm", "refine", "pinn"}
    folder : path
        Created if needed.
    force : bool
        Overwrite an existing ``run.toml``.

    Returns
    -------
    Path
        The run file written.
    """
    text, data, _ = TEMPLATES[kind]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    run = out / "run.toml"
    if run.exists() and not force:
        raise FileExistsError(f"{run} exists; choose another folder or pass --force")
    if data is not None:
        data(out)
    atomic_write_bytes(run, text.encode("utf-8"))
    return run
