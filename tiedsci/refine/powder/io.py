"""Readers for powder-diffraction files: GSAS raw (STD), GSAS instrument (.prm), xy/xye.

All readers parse the files exactly as written (fixed columns where the format says so) and
raise :class:`~tiedsci.errors.DataError` naming the file and line on malformed input.

Conventions
-----------
GSAS raw STD (constant step): line 1 is a title, then ``BANK n npts nrec CONST start step 0 0
[STD]`` with ``start`` and ``step`` in centidegrees, then records of ten 8-character fields,
each a 2-character counter number ``ncount`` (blank = 1) followed by a 6-character intensity.
An intensity is the average of ``ncount`` passes, so its variance is ``I / ncount`` (GSAS).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tiedsci.errors import DataError

__all__ = ["PowderData", "GsasInstrument", "read_gsas_std", "read_gsas_prm", "read_xy"]


@dataclass(frozen=True, eq=False)
class PowderData:
    """A measured constant-wavelength powder pattern.

    Attributes
    ----------
    two_theta : ndarray, shape (n_points,)
        Scattering angle 2theta in degrees.
    intensity : ndarray, shape (n_points,)
        Observed counts (or averaged counts).
    sigma : ndarray, shape (n_points,)
        Standard uncertainty of each intensity.
    ncount : ndarray of int, shape (n_points,)
        Counter numbers of a GSAS STD file (ones for other formats).
    title : str
    """

    two_theta: np.ndarray
    intensity: np.ndarray
    sigma: np.ndarray
    ncount: np.ndarray
    title: str = ""


@dataclass(frozen=True)
class GsasInstrument:
    """Constant-wavelength instrument parameters of a GSAS ``.prm`` file (bank 1).

    Attributes
    ----------
    htype : str
        Histogram type, e.g. ``"PXCR"`` (X-ray) or ``"PNCR"`` (neutron).
    wavelengths : tuple of float
        ``(lambda1,)`` or ``(lambda1, lambda2)`` in angstrom.
    zero : float
        Zero shift in degrees (the file stores centidegrees).
    polarization : float
        Polarisation fraction (ICONS field 5).
    ka2_ratio : float
        ``I(lambda2) / I(lambda1)`` (ICONS field 7); 0 for one wavelength.
    profile_type : int
        GSAS profile function number of the first ``PRCF`` entry.
    U, V, W : float
        Gaussian (Caglioti) terms, centideg^2.
    X, Y : float
        Lorentzian terms (centideg): GSAS type 3 ``LX``, ``LY``; 0 for types 1 and 2.
    shl : float
        Axial-divergence asymmetry ``S/L + H/L`` (type 3); 0 otherwise.
    coefficients : tuple of float
        All coefficients of that profile entry, as written.
    """

    htype: str
    wavelengths: tuple[float, ...]
    zero: float
    polarization: float
    ka2_ratio: float
    profile_type: int
    U: float
    V: float
    W: float
    X: float
    Y: float
    shl: float
    coefficients: tuple[float, ...]

    @property
    def is_xray(self) -> bool:
        """Whether the histogram type is X-ray (``P X ...``)."""
        return len(self.htype) > 1 and self.htype[1] == "X"


def _read_lines(path: str | Path) -> list[str]:
    p = Path(path)
    try:
        return p.read_text(encoding="latin-1").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read {str(p)!r}: {exc}") from None


def read_gsas_std(path: str | Path) -> PowderData:
    """Read a GSAS raw file with a ``CONST`` step (``STD`` record layout).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    PowderData
        ``sigma = sqrt(I / ncount)`` (GSAS convention; ``sqrt(ncount)`` floor of 1 count for
        zero intensities so that every weight is finite).
    """
    lines = _read_lines(path)
    bank_line = next((i for i, s in enumerate(lines) if s.startswith("BANK")), None)
    if bank_line is None:
        raise DataError(f"{str(path)!r}: no BANK line")
    tok = lines[bank_line].split()
    try:
        n_points = int(tok[2])
        binning = tok[4]
        start = float(tok[5]) / 100.0
        step = float(tok[6]) / 100.0
    except (IndexError, ValueError):
        raise DataError(f"{str(path)!r} line {bank_line + 1}: malformed BANK line "
                        f"{lines[bank_line]!r}") from None
    if binning != "CONST":
        raise DataError(f"{str(path)!r}: only CONST binning is supported, got {binning!r}")
    if n_points < 1 or not (np.isfinite(start) and np.isfinite(step) and step > 0):
        raise DataError(f"{str(path)!r} line {bank_line + 1}: the BANK line needs npts >= 1 and "
                        f"a finite start and step > 0, got npts={n_points}, start={start}, "
                        f"step={step}")
    if len(tok) > 9 and tok[9] not in ("STD",):
        raise DataError(f"{str(path)!r}: only the STD record layout is supported, got {tok[9]!r}")
    counts: list[float] = []
    nc: list[int] = []
    for ln, line in enumerate(lines[bank_line + 1:], start=bank_line + 2):
        if line.startswith("BANK"):
            break
        line = line.rstrip("\n")
        for k in range(0, min(len(line), 80), 8):
            field = line[k:k + 8]
            if not field.strip():
                continue
            c_txt, i_txt = field[:2].strip(), field[2:8].strip()
            try:
                nc.append(int(c_txt) if c_txt else 1)
                counts.append(float(i_txt))
            except ValueError:
                raise DataError(f"{str(path)!r} line {ln}: bad field {field!r}") from None
            if len(counts) == n_points:
                break
        if len(counts) == n_points:
            break
    if len(counts) != n_points:
        raise DataError(f"{str(path)!r}: BANK line announces {n_points} points, found "
                        f"{len(counts)}")
    y = np.asarray(counts, dtype=float)
    if not np.all(np.isfinite(y)):
        i = int(np.argmax(~np.isfinite(y)))
        raise DataError(f"{str(path)!r}: intensity of point {i} is not finite ({y[i]!r})")
    ncount = np.asarray(nc, dtype=int)
    if np.any(ncount <= 0):
        i = int(np.argmax(ncount <= 0))
        raise DataError(f"{str(path)!r}: ncount must be >= 1, got {ncount[i]} at point {i}")
    sigma = np.sqrt(np.maximum(y, 1.0) / ncount)
    x = start + step * np.arange(n_points)
    return PowderData(x, y, sigma, ncount, lines[0].strip())


def _floats(text: str, path: str | Path, entry: str) -> list[float]:
    try:
        vals = [float(t) for t in text.replace("D", "E").split()]
    except ValueError:
        raise DataError(f"{str(path)!r}: malformed numbers in entry {entry!r}: {text!r}") from None
    if not all(np.isfinite(vals)):
        raise DataError(f"{str(path)!r}: non-finite number in entry {entry!r}: {text!r}")
    return vals


def read_gsas_prm(path: str | Path, bank: int = 1) -> GsasInstrument:
    """Read the constant-wavelength entries of a GSAS instrument parameter file.

    Parameters
    ----------
    path : str or Path
    bank : int
        Bank number (1 for the usual single-bank CW files).

    Returns
    -------
    GsasInstrument
    """
    entries: dict[str, str] = {}
    for line in _read_lines(path):
        if line.startswith("INS"):
            entries[line[:12]] = line[12:]
    b = f"{bank:3d}"
    key = f"INS{b}"

    def get(tag: str) -> str:
        k = f"{key}{tag}"
        if k not in entries:
            raise DataError(f"{str(path)!r}: missing entry {k!r}")
        return entries[k]

    htype = entries.get("INS   HTYPE ", "").split()
    htype_s = htype[0] if htype else ""
    icons = get(" ICONS")
    try:
        lam1 = float(icons[0:10])
        lam2 = float(icons[10:20] or 0.0)
        zero = float(icons[20:30] or 0.0) / 100.0
        pola = float(icons[40:50] or 0.0) if len(icons) > 40 else 0.0
        ratio = float(icons[55:65] or 0.0) if len(icons) > 55 else 0.0
    except ValueError:
        raise DataError(f"{str(path)!r}: malformed ICONS entry {icons!r}") from None
    if not (np.isfinite(lam1) and lam1 > 0) or not all(
            np.isfinite(v) for v in (lam2, zero, pola, ratio)):
        raise DataError(f"{str(path)!r}: ICONS entry needs a wavelength > 0 and finite values, "
                        f"got {icons!r}")
    waves = (lam1, lam2) if lam2 > 0 else (lam1,)
    head = get("PRCF1 ").split()
    try:
        ptype, n_terms = int(head[0]), int(head[1])
    except (IndexError, ValueError):
        raise DataError(f"{str(path)!r}: malformed PRCF1 entry {head!r}") from None
    coefs: list[float] = []
    i = 1
    while len(coefs) < n_terms:
        k = f"{key}PRCF1{i}"
        if k not in entries:
            break
        coefs.extend(_floats(entries[k], path, k))
        i += 1
    if len(coefs) < 3:
        raise DataError(f"{str(path)!r}: profile entry has {len(coefs)} terms, need >= 3")
    coefs = coefs[:n_terms]
    u, v, w = coefs[:3]
    x = y = shl = 0.0
    if ptype == 3 and len(coefs) >= 8:  # GU GV GW GP LX LY S/L H/L
        x, y, shl = coefs[4], coefs[5], coefs[6] + coefs[7]
    return GsasInstrument(htype_s, waves, zero, pola, ratio if len(waves) == 2 else 0.0, ptype,
                          u, v, w, x, y, shl, tuple(coefs))


def read_xy(path: str | Path) -> PowderData:
    """Read a two- or three-column text pattern (``2theta I [sigma]``; ``#`` comments).

    Without a third column, ``sigma = sqrt(max(I, 1))``.
    """
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # numpy's "input contained no data"
            arr = np.loadtxt(path, comments="#", ndmin=2, encoding="latin-1")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {str(path)!r} as xy/xye: {exc}") from None
    if arr.shape[0] == 0:
        raise DataError(f"{str(path)!r}: no data rows")
    if arr.shape[1] < 2:
        raise DataError(f"{str(path)!r}: need at least two columns, got {arr.shape[1]}")
    if not np.all(np.isfinite(arr[:, :3])):
        r, c = (int(k) for k in np.argwhere(~np.isfinite(arr[:, :3]))[0])
        raise DataError(f"{str(path)!r}: data row {r}, column {c + 1} is not finite "
                        f"({arr[r, c]!r})")
    x, y = arr[:, 0].copy(), arr[:, 1].copy()
    if arr.shape[1] >= 3:
        s = arr[:, 2].copy()
        bad = ~(s > 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{str(path)!r}: sigma must be > 0, got {s[i]!r} on data row {i}")
    else:
        s = np.sqrt(np.maximum(y, 1.0))
    return PowderData(x, y, s, np.ones(x.size, dtype=int), "")
