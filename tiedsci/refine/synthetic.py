"""Synthetic powder-like datasets for tests, the example and the benchmark.

A toy diffraction pattern: reflections ``hkl`` of an orthorhombic cell ``a, b, c`` (shared),
peak positions ``2theta = 2 asin(lambda / 2d) + zero``, Caglioti widths
``FWHM^2 = U tan^2(theta) + V tan(theta) + W``, pseudo-Voigt peaks (eta = 0.5) with shared
intensities, a per-dataset scale and a quadratic background. The model is written once for
numpy and torch (:func:`powder_curve`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.backends import is_torch
from tiedsci.refine.data import Dataset

__all__ = ["PowderSetup", "reflections", "powder_curve", "make_powder_model", "make_powder_data",
           "TRUTH_CELL", "LOCAL_NAMES"]

TRUTH_CELL = (5.02, 6.13, 7.47)
LOCAL_NAMES = ("scale", "zero", "U", "V", "W", "bkg")
_C_G = 2.0 * np.sqrt(np.log(2.0) / np.pi)  # Gaussian of unit FWHM: height
_C_L = 2.0 / np.pi                         # Lorentzian of unit FWHM: height


def reflections(cell: tuple[float, float, float], wavelength: float, n_peaks: int,
                min_sep: float = 0.4) -> np.ndarray:
    """The ``n_peaks`` lowest-angle reflections with distinct 2theta, shape (n_peaks, 3)."""
    a, b, c = cell
    cand = []
    for h in range(0, 5):
        for k in range(0, 5):
            for l in range(0, 5):
                if h == k == l == 0:
                    continue
                s = wavelength / 2 * np.sqrt((h / a) ** 2 + (k / b) ** 2 + (l / c) ** 2)
                if s < 1:
                    cand.append((2 * np.degrees(np.arcsin(s)), h, k, l))
    cand.sort()
    out: list[tuple[int, int, int]] = []
    last = -np.inf
    for tth, h, k, l in cand:
        if tth - last >= min_sep:
            out.append((h, k, l))
            last = tth
        if len(out) == n_peaks:
            break
    return np.array(out, dtype=float)


def powder_curve(x: Any, cell: tuple[Any, Any, Any], intensities: Any, scale: Any, zero: Any,
                 u: Any, v: Any, w: Any, bkg: Any, hkl: np.ndarray, wavelength: float,
                 x_mid: float, x_half: float) -> Any:
    """Calculated pattern at ``x`` (degrees), numpy or torch (follows ``x``).

    Parameters
    ----------
    x : array, shape (n_points,)
    cell : (a, b, c) scalars, angstrom
    intensities : array, shape (n_peaks,)
    scale, zero, u, v, w : scalars
    bkg : array, shape (3,)
        Quadratic background in ``(x - x_mid) / x_half``.
    hkl : ndarray, shape (n_peaks, 3)
    """
    if is_torch(x):
        import torch as xp

        asin, hkl_ = xp.asin, xp.as_tensor(hkl, dtype=x.dtype)
    else:
        xp = np  # type: ignore[assignment]
        asin, hkl_ = np.arcsin, hkl
    a, b, c = cell
    inv_d2 = (hkl_[:, 0] / a) ** 2 + (hkl_[:, 1] / b) ** 2 + (hkl_[:, 2] / c) ** 2
    theta = asin(0.5 * wavelength * xp.sqrt(inv_d2))
    pos = 2.0 * theta * (180.0 / np.pi) + zero
    t = xp.tan(theta)
    fwhm = xp.sqrt(u * t * t + v * t + w)
    d = (x[:, None] - pos[None, :]) / fwhm[None, :]
    prof = (0.5 * _C_G * xp.exp(-4.0 * np.log(2.0) * d * d) + 0.5 * _C_L / (1.0 + 4.0 * d * d))
    peaks = (prof / fwhm[None, :]) @ intensities
    xn = (x - x_mid) / x_half
    return scale * peaks + bkg[0] + bkg[1] * xn + bkg[2] * xn * xn


@dataclass(frozen=True)
class PowderSetup:
    """Reflections, wavelength and x range shared by the synthetic datasets."""

    hkl: np.ndarray
    wavelength: float
    x_min: float
    x_max: float

    @property
    def x_mid(self) -> float:
        return 0.5 * (self.x_min + self.x_max)

    @property
    def x_half(self) -> float:
        return 0.5 * (self.x_max - self.x_min)


def make_powder_model(setup: PowderSetup) -> Any:
    """Forward model ``model(values, x)`` for a :class:`~tiedsci.refine.Contribution`.

    Reads the shared ``cell.a``, ``cell.b``, ``cell.c``, ``intensities`` and the local
    ``scale``, ``zero``, ``U``, ``V``, ``W``, ``bkg``.
    """

    def powder_model(vals: Any, x: Any) -> Any:
        return powder_curve(x, (vals["cell.a"], vals["cell.b"], vals["cell.c"]),
                            vals["intensities"], vals["scale"], vals["zero"], vals["U"],
                            vals["V"], vals["W"], vals["bkg"], setup.hkl, setup.wavelength,
                            setup.x_mid, setup.x_half)

    return powder_model


def make_powder_data(n_datasets: int, n_points: int = 2000, n_peaks: int = 20,
                     random_state: int | np.random.Generator | None = 0
                     ) -> tuple[PowderSetup, list[Dataset], dict[str, Any]]:
    """Noisy synthetic datasets and their truth.

    Returns
    -------
    setup : PowderSetup
    datasets : list of Dataset
        Named ``d0, d1, ...``; Poisson-like noise, ``sigma = sqrt(y_true)``.
    truth : dict
        ``"cell"`` (3,), ``"intensities"`` (n_peaks,), and per dataset name a dict of the
        local values (``scale, zero, U, V, W, bkg``).
    """
    rng = np.random.default_rng(random_state)
    wavelength = 1.5406
    hkl = reflections(TRUTH_CELL, wavelength, n_peaks)
    tth = 2 * np.degrees(np.arcsin(wavelength / 2 * np.sqrt(
        ((hkl / np.array(TRUTH_CELL)) ** 2).sum(axis=1))))
    setup = PowderSetup(hkl, wavelength, float(tth.min() - 3.0), float(tth.max() + 3.0))
    intensities = rng.uniform(200.0, 1500.0, size=len(hkl))
    x = np.linspace(setup.x_min, setup.x_max, n_points)
    truth: dict[str, Any] = {"cell": np.array(TRUTH_CELL), "intensities": intensities}
    datasets = []
    for k in range(n_datasets):
        loc = {"scale": 1.0 if k == 0 else float(rng.uniform(0.5, 2.0)),
               "zero": float(rng.uniform(-0.05, 0.05)),
               "U": float(rng.uniform(0.005, 0.02)), "V": float(rng.uniform(-0.01, 0.0)),
               "W": float(rng.uniform(0.01, 0.03)),
               "bkg": np.array([rng.uniform(20, 80), rng.uniform(-10, 10), rng.uniform(-5, 5)])}
        y_true = powder_curve(x, TRUTH_CELL, intensities, loc["scale"], loc["zero"], loc["U"],
                              loc["V"], loc["W"], loc["bkg"], hkl, wavelength, setup.x_mid,
                              setup.x_half)
        sigma = np.sqrt(np.maximum(y_true, 1.0))
        y = y_true + sigma * rng.standard_normal(n_points)
        name = f"d{k}"
        datasets.append(Dataset(x, y, sigma=sigma, name=name))
        truth[name] = loc
    return setup, datasets, truth


def perturbed_start(truth: dict[str, Any], names: list[str],
                    random_state: int | np.random.Generator | None = 1) -> dict[str, Any]:
    """A start point near the truth: cell +-0.03 %, intensities +-20 %, locals nudged."""
    rng = np.random.default_rng(random_state)
    out: dict[str, Any] = {
        "cell": truth["cell"] * (1 + 3e-4 * rng.uniform(-1, 1, 3)),
        "intensities": truth["intensities"] * rng.uniform(0.8, 1.2, truth["intensities"].size),
    }
    for n in names:
        t = truth[n]
        out[n] = {"scale": t["scale"] if n == names[0] else t["scale"] * rng.uniform(0.9, 1.1),
                  "zero": t["zero"] + rng.uniform(-0.01, 0.01),
                  "U": t["U"] * rng.uniform(0.8, 1.2), "V": t["V"] * rng.uniform(0.8, 1.2),
                  "W": t["W"] * rng.uniform(0.8, 1.2),
                  "bkg": t["bkg"] * rng.uniform(0.9, 1.1, 3)}
    return out
