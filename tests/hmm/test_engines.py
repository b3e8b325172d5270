"""One array seam: the HMM engines live in tiedsci.backends (one device check, one torch)."""

import re
from pathlib import Path

import numpy as np
import pytest

from tiedsci.backends import NumpyBackend, get_backend
from tiedsci.hmm.engines import get_engine

HMM = Path(__file__).resolve().parents[2] / "tiedsci" / "hmm"


def test_no_hmm_module_imports_torch_or_checks_devices():
    for path in HMM.glob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(import torch|from torch)", text, re.M), path.name
        assert "cuda.is_available" not in text, path.name
        assert "def _xp" not in text, path.name


def test_engines_match_their_backends():
    eng = get_engine("numpy")
    assert eng.backend == NumpyBackend()
    assert np.isneginf(eng.log(np.zeros(1)))[0]
    torch = pytest.importorskip("torch")
    teng = get_engine("torch", dtype="float32")
    assert teng.backend == get_backend("torch", dtype=torch.float32)
    assert teng.to_numpy(teng.asarray([1.0, 2.0])).dtype == np.float32


def test_a_device_that_is_absent_is_the_backends_error():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(RuntimeError, match="CUDA is not available on this machine"):
        get_engine("torch", device="cuda")
    with pytest.raises(ValueError, match="runs on the CPU only"):
        get_engine("numpy", device="cuda")
