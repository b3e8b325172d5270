"""The reflection list of a crystal for a radiation and a 2theta range: a public table.

:func:`reflection_list` answers "which peaks, where, how strong" without a refinement:
hkl, d, 2theta, multiplicity, ``|F|^2`` and the integrated intensity (scale 1, with the
Lorentz-polarisation factor and each wavelength's weight), computed by the same forward model
that a refinement uses (:class:`~tiedsci.refine.powder.pattern.PowderModel`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tiedsci.refine.powder.crystal import Crystal, declare_crystal
from tiedsci.refine.powder.instrument import Instrument
from tiedsci.refine.powder.pattern import PowderModel, declare_pattern, lorentz_polarization

__all__ = ["ReflectionList", "reflection_list"]


@dataclass(frozen=True, eq=False)
class ReflectionList:
    """One row per reflection and wavelength inside the 2theta range, by increasing 2theta.

    Attributes
    ----------
    hkl : ndarray of int, shape (n, 3)
    d : ndarray, shape (n,)
        d-spacing (angstrom).
    two_theta : ndarray, shape (n,)
        Peak position (degrees).
    multiplicity : ndarray of int, shape (n,)
    f2 : ndarray, shape (n,)
        ``|F|^2`` per unique reflection (electrons^2 for X-rays, fm^2 for neutrons), with
        the atoms' occupancies and isotropic displacements.
    intensity : ndarray, shape (n,)
        ``multiplicity |F|^2 LP w`` (scale 1): ``LP`` the Lorentz-polarisation factor, ``w``
        the wavelength's relative weight.
    wavelength : ndarray, shape (n,)
        The wavelength of each row (angstrom).
    """

    hkl: np.ndarray
    d: np.ndarray
    two_theta: np.ndarray
    multiplicity: np.ndarray
    f2: np.ndarray
    intensity: np.ndarray
    wavelength: np.ndarray

    def __len__(self) -> int:
        return int(self.d.shape[0])

    def rows(self) -> list[dict[str, object]]:
        """The table as records (``h, k, l, d, two_theta, multiplicity, f2, intensity,
        wavelength``)."""
        return [{"h": int(h[0]), "k": int(h[1]), "l": int(h[2]), "d": float(d),
                 "two_theta": float(t), "multiplicity": int(m), "f2": float(f),
                 "intensity": float(i), "wavelength": float(w)}
                for h, d, t, m, f, i, w in zip(self.hkl, self.d, self.two_theta,
                                               self.multiplicity, self.f2, self.intensity,
                                               self.wavelength)]


def reflection_list(crystal: Crystal, instrument: Instrument,
                    two_theta_range: tuple[float, float]) -> ReflectionList:
    """Reflections of ``crystal`` seen by ``instrument`` between two 2theta limits.

    Parameters
    ----------
    crystal : Crystal
        Cell, space group and atoms (e.g. from :func:`~tiedsci.refine.powder.read_cif`).
    instrument : Instrument
        Radiation (``"xray"`` / ``"neutron"``), wavelengths and their weights, polarisation.
    two_theta_range : (float, float)
        Degrees, ``0 < lo < hi < 180``.

    Returns
    -------
    ReflectionList
        Sorted by 2theta; for two wavelengths every reflection appears once per wavelength.
    """
    import torch

    from tiedsci.core import Registry

    lo, hi = (float(v) for v in two_theta_range)
    reg = Registry()
    cp = declare_crystal(reg, crystal)
    params = declare_pattern(reg, "pattern", instrument, cp, crystal, n_background=1,
                             U=0.0, V=0.0, W=1.0, shl=0.0)
    model = PowderModel.build(crystal, instrument, params, (lo, hi), n_asym=0, d_margin=1.0)
    values = {k: torch.as_tensor(np.asarray(v, dtype=float))
              for k, v in reg.compile().values0.items()}
    with torch.no_grad():
        table = model.peak_table(values).numpy()
    refl = model.reflections
    n_refl = len(refl)
    waves = np.repeat(np.asarray(instrument.wavelengths, dtype=float), n_refl)
    weights = np.repeat(np.asarray(instrument.intensity_ratios, dtype=float), n_refl)
    intensity, pos = table[:, 0], table[:, 1]
    mult = np.tile(np.asarray(refl.multiplicity), len(instrument.wavelengths))
    lp = np.asarray(lorentz_polarization(pos, instrument.polarization), dtype=float)
    f2 = intensity / (mult * lp * weights)
    keep = (pos >= lo) & (pos <= hi)
    order = np.argsort(pos[keep], kind="stable")

    def pick(a: np.ndarray) -> np.ndarray:
        return np.asarray(a)[keep][order]

    return ReflectionList(pick(np.tile(refl.hkl, (len(instrument.wavelengths), 1))),
                          pick(np.tile(refl.d, len(instrument.wavelengths))), pick(pos),
                          pick(mult), pick(f2), pick(intensity), pick(waves))
