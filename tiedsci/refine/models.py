"""Built-in forward models (numpy or torch, following ``x``), for run files and examples.

Each reads its parameters from the contribution's scoped values, so a parameter may be shared
(``center``) or local (``xray.center``) without changing the model:

* ``gaussian_peaks``: ``sum_i height_i exp(-(x - center_i)^2 / (2 width_i^2)) + poly(bkg)``
* ``pseudo_voigt_peaks``: ``sum_i height_i [eta L_i + (1 - eta) G_i] + poly(bkg)`` with
  ``fwhm_i`` the full width at half maximum of both components
* ``polynomial``: ``poly(bkg) = sum_k bkg_k x^k``

``center``, ``height``, ``width``/``fwhm`` are scalars or arrays of shape (n_peaks,); ``bkg``
has shape (n_coefs,) and ``eta`` is a scalar in [0, 1].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tiedsci.backends import namespace_of

__all__ = ["gaussian_peaks", "pseudo_voigt_peaks", "polynomial", "BUILTIN_MODELS"]



def _poly(x: Any, coefs: Any) -> Any:
    out = 0.0 * x
    for k in range(int(coefs.shape[0]) - 1, -1, -1):
        out = out * x + coefs[k]
    return out


def _peaks_axis(v: Any, x: Any) -> Any:
    xp = namespace_of(x)
    v = v if hasattr(v, "shape") else xp.asarray(v)
    return v.reshape(1, -1) if v.ndim else v.reshape(1, 1)


def polynomial(values: Mapping[str, Any], x: Any) -> Any:
    """``sum_k bkg_k x^k``; reads ``bkg``."""
    return _poly(x, values["bkg"].reshape(-1))


def gaussian_peaks(values: Mapping[str, Any], x: Any) -> Any:
    """Gaussian peaks on a polynomial; reads ``center``, ``height``, ``width``, ``bkg``."""
    xp = namespace_of(x)
    c = _peaks_axis(values["center"], x)
    h = _peaks_axis(values["height"], x)
    w = _peaks_axis(values["width"], x)
    d = (x[:, None] - c) / w
    return (h * xp.exp(-0.5 * d * d)).sum(1) + polynomial(values, x)


def pseudo_voigt_peaks(values: Mapping[str, Any], x: Any) -> Any:
    """Pseudo-Voigt peaks on a polynomial; reads ``center``, ``height``, ``fwhm``, ``eta``,
    ``bkg`` (``height`` is the peak maximum)."""
    xp = namespace_of(x)
    c = _peaks_axis(values["center"], x)
    h = _peaks_axis(values["height"], x)
    f = _peaks_axis(values["fwhm"], x)
    eta = values["eta"]
    d = (x[:, None] - c) / f
    g = xp.exp(-4.0 * np.log(2.0) * d * d)
    lor = 1.0 / (1.0 + 4.0 * d * d)
    return (h * (eta * lor + (1.0 - eta) * g)).sum(1) + polynomial(values, x)


BUILTIN_MODELS: dict[str, Callable[[Mapping[str, Any], Any], Any]] = {
    "gaussian_peaks": gaussian_peaks,
    "pseudo_voigt_peaks": pseudo_voigt_peaks,
    "polynomial": polynomial,
}
