"""Constant-wavelength diffractometer description (radiation, wavelengths, geometry)."""

from __future__ import annotations

from dataclasses import dataclass

from tiedsci.errors import DataError
from tiedsci.refine.powder.io import GsasInstrument

__all__ = ["Instrument", "GEOMETRIES"]

GEOMETRIES = ("bragg-brentano", "debye-scherrer")


@dataclass(frozen=True)
class Instrument:
    """What is fixed about an instrument (refinable terms are registry parameters).

    Attributes
    ----------
    radiation : str
        ``"xray"`` or ``"neutron"``.
    wavelengths : tuple of float
        Angstrom; e.g. ``(1.5405, 1.5443)`` for Cu Kalpha1/Kalpha2.
    intensity_ratios : tuple of float
        Relative intensity of each wavelength (``(1.0, 0.5)``).
    polarization : float or None
        Polarisation fraction ``P`` (X-rays): the factor is ``P + (1 - P) cos^2(2theta)``
        (GSAS-II's form; 0.5 = unpolarised beam, a monochromator raises it). ``None``: none.
    geometry : str
        ``"bragg-brentano"`` (sample displacement ``shift``) or ``"debye-scherrer"``
        (``displace_x``, ``displace_y``).
    radius_mm : float
        Goniometer radius, converts displacements (micrometre) to angles.
    """

    radiation: str
    wavelengths: tuple[float, ...]
    intensity_ratios: tuple[float, ...] = (1.0,)
    polarization: float | None = None
    geometry: str = "bragg-brentano"
    radius_mm: float = 200.0

    def __post_init__(self) -> None:
        if self.radiation not in ("xray", "neutron"):
            raise DataError(f"radiation must be 'xray' or 'neutron', got {self.radiation!r}")
        if self.geometry not in GEOMETRIES:
            raise DataError(f"geometry must be one of {GEOMETRIES}, got {self.geometry!r}")
        waves = tuple(float(w) for w in self.wavelengths)
        ratios = tuple(float(r) for r in self.intensity_ratios)
        if not waves or min(waves) <= 0:
            raise DataError(f"wavelengths must be positive, got {self.wavelengths!r}")
        if len(ratios) != len(waves):
            raise DataError(f"{len(waves)} wavelengths but {len(ratios)} intensity ratios")
        object.__setattr__(self, "wavelengths", waves)
        object.__setattr__(self, "intensity_ratios", ratios)

    @classmethod
    def from_gsas(cls, prm: GsasInstrument, geometry: str | None = None,
                  radius_mm: float | None = None) -> Instrument:
        """From a parsed GSAS ``.prm``: X-ray files default to Bragg-Brentano with a 200 mm
        radius, neutron files to Debye-Scherrer (GSAS-II's defaults)."""
        xray = prm.is_xray
        ratios = (1.0, prm.ka2_ratio) if len(prm.wavelengths) == 2 else (1.0,)
        return cls("xray" if xray else "neutron", prm.wavelengths, ratios,
                   prm.polarization if xray else None,
                   geometry or ("bragg-brentano" if xray else "debye-scherrer"),
                   radius_mm if radius_mm is not None else 200.0)
