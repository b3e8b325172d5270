"""Peak shapes of constant-wavelength powder patterns (GSAS conventions), torch or numpy.

- Gaussian variance (Caglioti): ``sigma^2 = U tan^2(theta) + V tan(theta) + W`` in centideg^2.
- Lorentzian FWHM: ``gamma = X / cos(theta) + Y tan(theta)`` in centideg; GSAS-II's
  isotropic crystallite size and microstrain are these two terms (:func:`size_strain_to_xy`).
- Thompson-Cox-Hastings pseudo-Voigt: total FWHM and mixing ``eta`` from the two widths
  (Thompson, Cox & Hastings 1987, J. Appl. Cryst. 20, 79).
- Axial-divergence asymmetry of Finger, Cox & Jephcoat (1994, J. Appl. Cryst. 27, 892) with
  ``S/L = H/L = shl / 2``: the symmetric peak is averaged over the apparent positions
  ``2phi(u) = arccos(cos(2theta) sqrt(1 + u^2))``, ``0 <= u <= shl``, with the FCJ weight
  which, in the variable ``u``, is ``(shl - u) / ((1 + u^2) sin 2phi)`` (no singularity), by
  Gauss-Legendre quadrature.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tiedsci.backends import namespace_of

__all__ = ["caglioti_sigma2", "lorentz_gamma", "tch", "pseudo_voigt", "fcj_nodes",
           "size_strain_to_xy", "LN2"]

LN2 = float(np.log(2.0))
_TCH = (1.0, 2.69269, 2.42843, 4.47163, 0.07842, 1.0)



def caglioti_sigma2(U: Any, V: Any, W: Any, tan_theta: Any, floor: float = 1e-4) -> Any:
    """Gaussian variance ``U tan^2 + V tan + W`` (centideg^2), floored at ``floor``."""
    s = U * tan_theta**2 + V * tan_theta + W
    xp = namespace_of(s)
    return xp.clip(s, floor, None)


def lorentz_gamma(X: Any, Y: Any, cos_theta: Any, tan_theta: Any) -> Any:
    """Lorentzian FWHM ``X / cos + Y tan`` (centideg)."""
    return X / cos_theta + Y * tan_theta


def size_strain_to_xy(wavelength: float, size_um: float, mustrain: float
                      ) -> tuple[float, float]:
    """GSAS-II isotropic size (micrometre) and microstrain (1e-6) as ``(X, Y)`` in centideg.

    GSAS-II: ``gamma_size = 1.8 lambda / (pi size cos theta)``,
    ``gamma_strain = 0.018 mustrain tan theta / pi``.
    """
    return 1.8 * wavelength / (np.pi * size_um), 0.018 * mustrain / np.pi


def tch(fwhm_g: Any, fwhm_l: Any) -> tuple[Any, Any]:
    """Thompson-Cox-Hastings total FWHM and Lorentzian fraction ``eta``.

    Parameters
    ----------
    fwhm_g, fwhm_l : array or tensor
        Gaussian and Lorentzian FWHM (same unit).
    """
    g, lo = fwhm_g, fwhm_l
    c = _TCH
    g2, l2 = g * g, lo * lo
    f5 = (c[0] * g2 * g2 * g + c[1] * g2 * g2 * lo + c[2] * g2 * g * l2 + c[3] * g2 * l2 * lo
          + c[4] * g * l2 * l2 + c[5] * l2 * l2 * lo)
    f = f5 ** 0.2
    r = lo / f
    eta = r * (1.36603 - r * (0.47719 - 0.11116 * r))
    return f, eta


def pseudo_voigt(dx: Any, fwhm: Any, eta: Any) -> Any:
    """Unit-area pseudo-Voigt ``eta L + (1 - eta) G`` with common FWHM (1/unit of dx)."""
    xp = namespace_of(dx)
    u = 2.0 * dx / fwhm
    t = u * u
    gauss = (2.0 / fwhm) * np.sqrt(LN2 / np.pi) * xp.exp(-LN2 * t)
    lor = (2.0 / (np.pi * fwhm)) / (1.0 + t)
    return eta * lor + (1.0 - eta) * gauss


def fcj_nodes(two_theta_deg: Any, shl: Any, n_nodes: int) -> tuple[Any, Any]:
    """Apparent-position offsets and weights of the FCJ asymmetry quadrature.

    Parameters
    ----------
    two_theta_deg : shape (n_peaks,)
        Peak positions (degrees).
    shl : shape (n_peaks,) or scalar
        ``(S + H) / L``.
    n_nodes : int
        Gauss-Legendre nodes (>= 1).

    Returns
    -------
    offsets : shape (n_peaks, n_nodes)
        ``2phi - 2theta`` in degrees (negative below 90 deg: peaks tail to low angle).
    weights : shape (n_peaks, n_nodes)
        Normalised to sum 1 over the nodes.
    """
    xp = namespace_of(two_theta_deg)
    t, gw = np.polynomial.legendre.leggauss(int(n_nodes))
    if xp.module is np:
        tt, ww = t, gw
    else:
        tt = xp.as_tensor(t, dtype=two_theta_deg.dtype)
        ww = xp.as_tensor(gw, dtype=two_theta_deg.dtype)
    tth = two_theta_deg * (np.pi / 180.0)
    u = shl[..., None] * (1.0 + tt) / 2.0 if hasattr(shl, "shape") and shl.shape else \
        shl * (1.0 + tt)[None, :] / 2.0 + 0.0 * tth[:, None]
    arg = xp.cos(tth)[:, None] * xp.sqrt(1.0 + u * u)
    lim = 1.0 - 1e-12
    arg = xp.clip(arg, -lim, lim)
    phi2 = xp.arccos(arg)
    w = ww * (1.0 - tt) / 2.0 / ((1.0 + u * u) * xp.abs(xp.sin(phi2)))
    w = w / w.sum(-1, keepdims=True)
    return (phi2 - tth[:, None]) * (180.0 / np.pi), w
