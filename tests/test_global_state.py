"""Library code leaves process-wide state alone: no matplotlib backend switch, no pyplot, no
torch / numpy global settings, no environment writes (plots draw on their own ``Figure`` with an
Agg canvas; torch threads are set only inside ``tiedsci.pinn.train.torch_threads``, which
restores them)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tiedsci"

FORBIDDEN = {
    "matplotlib.use": re.compile(r"\bmatplotlib\.use\("),
    "pyplot": re.compile(r"\bimport matplotlib\.pyplot\b|\bfrom matplotlib import pyplot\b"),
    "torch.set_num_threads": re.compile(r"\btorch\.set_num_(interop_)?threads\("),
    "torch.set_default_dtype": re.compile(r"\btorch\.set_default_(dtype|device|tensor_type)\("),
    "global torch seed": re.compile(r"\btorch\.manual_seed\(|\bnp\.random\.seed\("),
    "numpy print/error state": re.compile(r"\bnp\.(set_printoptions|seterr)\("),
    "environment write": re.compile(r"\bos\.environ\[[^\]]+\]\s*=(?!=)|\bos\.(putenv|environ"
                                    r"\.setdefault|environ\.update)\("),
    "module-level warnings filter": re.compile(r"^warnings\.(simplefilter|filterwarnings)\(",
                                               re.M),
}
# The one place allowed to set torch threads: a context manager that restores them.
ALLOWED = {("torch.set_num_threads", "pinn/train.py")}


def _hits() -> list[tuple[str, str, int]]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        for what, pattern in FORBIDDEN.items():
            for m in pattern.finditer(text):
                if (what, rel) not in ALLOWED:
                    out.append((what, rel, text.count("\n", 0, m.start()) + 1))
    return out


def test_library_code_changes_no_global_state():
    assert _hits() == []


@pytest.mark.parametrize("what", sorted(FORBIDDEN))
def test_the_patterns_catch_what_they_name(what):
    samples = {
        "matplotlib.use": 'matplotlib.use("Agg")',
        "pyplot": "import matplotlib.pyplot as plt",
        "torch.set_num_threads": "torch.set_num_threads(4)",
        "torch.set_default_dtype": "torch.set_default_dtype(torch.float64)",
        "global torch seed": "torch.manual_seed(0)",
        "numpy print/error state": "np.seterr(all='ignore')",
        "environment write": 'os.environ["OMP_NUM_THREADS"] = "1"',
        "module-level warnings filter": 'warnings.simplefilter("ignore")',
    }
    assert FORBIDDEN[what].search(samples[what])
    assert not FORBIDDEN[what].search("    with warnings.catch_warnings():\n        pass")

