"""Fixtures for the refinement tests.

torch is limited to one intra-op thread here: the models are small and, on a shared machine,
thread hand-offs cost more than they give (observed: 40x slower with 2 contended threads).
"""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True, scope="session")
def _single_thread_torch():
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gauss_model(v, x):
    """Gaussian peak on a flat background; numpy or torch (follows x)."""
    if hasattr(x, "detach"):
        import torch as xp
    else:
        xp = np
    return v["amp"] * xp.exp(-0.5 * ((x - v["center"]) / v["width"]) ** 2) + v["bkg"]


TRUTH = {"center": 0.3, "amp": (10.0, 5.0, 7.0), "width": (1.0, 1.5, 0.8),
         "bkg": (1.0, 2.0, 0.5)}


def gauss_data(seed, n_points=120, noise=0.2):
    """Three noisy Gaussian datasets d0, d1, d2 sharing the centre."""
    from tiedsci.refine import Dataset

    rng = np.random.default_rng(seed)
    x = np.linspace(-5, 5, n_points)
    out = []
    for k in range(3):
        amp, width, bkg = TRUTH["amp"][k], TRUTH["width"][k], TRUTH["bkg"][k]
        y = amp * np.exp(-0.5 * ((x - TRUTH["center"]) / width) ** 2) + bkg
        s = np.full(n_points, noise)
        out.append(Dataset(x, y + s * rng.standard_normal(n_points), sigma=s, name=f"d{k}"))
    return out


def assert_identical_results(res, back):
    """Every array of two RefinementResults bit-identical, every other field equal."""
    from dataclasses import fields

    for f in fields(res):
        a, b = getattr(res, f.name), getattr(back, f.name)
        if f.name == "layout":
            continue
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes(), \
                f.name
        elif isinstance(a, dict):
            assert list(a) == list(b), f.name
            for k in a:
                assert a[k].shape == b[k].shape and a[k].tobytes() == b[k].tobytes(), (f.name, k)
        elif f.name == "datasets":
            for da, db in zip(a, b, strict=True):
                assert da.name == db.name and da.agreement == db.agreement
                for k in ("x", "y_obs", "y_calc", "weights"):
                    assert getattr(da, k).tobytes() == getattr(db, k).tobytes(), k
        elif isinstance(a, float) and np.isnan(a):
            assert np.isnan(b), f.name
        else:
            assert a == b, f.name
