"""Structure factors for X-rays (form factors, f', f'') and neutrons (scattering lengths).

X-ray form factors are the International Tables 4-Gaussian fits (``gemmi.Element.it92``):
``f0(s) = sum_i a_i exp(-b_i s^2) + c`` with ``s = sin(theta)/lambda = 1/(2d)``; neutron
coherent scattering lengths are ``gemmi.Element.neutron92`` (Sears 1992, fm). The isotropic
Debye-Waller factor is ``exp(-8 pi^2 Uiso s^2)``.

With ``fr = (f0 + f') w T`` and ``fi = f'' w T`` per atom image (``w`` = occupancy / order of
the site-symmetry group, ``T`` the Debye-Waller factor), the powder intensity uses the Friedel
average ``(|F(h)|^2 + |F(-h)|^2) / 2 = (sum fr cos)^2 + (sum fr sin)^2 + (sum fi cos)^2 +
(sum fi sin)^2`` (exact for any structure, anomalous scattering included).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.errors import DataError
from tiedsci.refine.powder.symmetry import SymOp, site_symmetry

__all__ = ["ScatteringTable", "scattering_table", "form_factors", "SymmetryTable",
           "symmetry_table", "structure_factor_sq"]

RADIATIONS = ("xray", "neutron")


@dataclass(frozen=True, eq=False)
class ScatteringTable:
    """Scattering power of each atom of the asymmetric unit for one radiation.

    Attributes
    ----------
    radiation : str
        ``"xray"`` or ``"neutron"``.
    elements : tuple of str
    gauss : ndarray, shape (n_atoms, 9)
        it92 ``a1..a4, b1..b4, c`` (X-rays; zeros for neutrons).
    length : ndarray, shape (n_atoms,)
        Neutron scattering length (fm; zeros for X-rays).
    fprime, fdoubleprime : ndarray, shape (n_atoms,)
        Resonant terms (electrons), X-rays only.
    """

    radiation: str
    elements: tuple[str, ...]
    gauss: np.ndarray
    length: np.ndarray
    fprime: np.ndarray
    fdoubleprime: np.ndarray


def scattering_table(elements: tuple[str, ...] | list[str], radiation: str,
                     anomalous: Mapping[str, tuple[float, float]] | None = None
                     ) -> ScatteringTable:
    """Look up form factors or scattering lengths in gemmi.

    Parameters
    ----------
    elements : sequence of str
        Element symbol of each atom.
    radiation : "xray" or "neutron"
    anomalous : mapping, optional
        ``element -> (f', f'')`` for X-rays (e.g. ``{"Pb": (-4.078, 8.501)}``).
    """
    import gemmi

    if radiation not in RADIATIONS:
        raise DataError(f"radiation must be one of {RADIATIONS}, got {radiation!r}")
    anomalous = dict(anomalous or {})
    n = len(elements)
    gauss = np.zeros((n, 9))
    length = np.zeros(n)
    fp, fpp = np.zeros(n), np.zeros(n)
    for i, el in enumerate(elements):
        e = gemmi.Element(el)
        if e.atomic_number == 0:
            raise DataError(f"unknown element {el!r}")
        if radiation == "xray":
            c = np.asarray(e.it92.get_coefs(), dtype=float)
            if c.size != 9 or not np.any(c):
                raise DataError(f"gemmi has no it92 form factor for {el!r}")
            gauss[i] = c
            fp[i], fpp[i] = anomalous.get(el, (0.0, 0.0))
        else:
            b = np.asarray(e.neutron92.get_coefs(), dtype=float)
            if b.size < 1:
                raise DataError(f"gemmi has no neutron scattering length for {el!r}")
            length[i] = b[0]
    return ScatteringTable(radiation, tuple(elements), gauss, length, fp, fpp)


def form_factors(table: ScatteringTable, s2: Any) -> Any:
    """Real scattering factor of each atom at ``s^2 = (sin theta / lambda)^2``.

    Parameters
    ----------
    s2 : ndarray or Tensor, shape (n_refl,)

    Returns
    -------
    shape (n_refl, n_atoms)
        ``f0 + f'`` (X-rays) or ``b`` (neutrons), no Debye-Waller factor.
    """
    torch_mode = hasattr(s2, "detach")
    if torch_mode:
        import torch

        def asarr(v: np.ndarray) -> Any:
            return torch.as_tensor(v, dtype=s2.dtype)
        exp = torch.exp
    else:
        asarr, exp = np.asarray, np.exp
    if table.radiation == "neutron":
        return asarr(table.length)[None, :] + 0.0 * s2[:, None]
    a = asarr(table.gauss[:, :4])
    b = asarr(table.gauss[:, 4:8])
    c = asarr(table.gauss[:, 8] + table.fprime)
    return (a[None] * exp(-b[None] * s2[:, None, None])).sum(-1) + c[None]


@dataclass(frozen=True, eq=False)
class SymmetryTable:
    """Precomputed symmetry data of a reflection list.

    Attributes
    ----------
    h_rot : ndarray, shape (n_refl, n_ops, 3)
        ``h R`` for every operation (hkl as row vectors).
    h_tran : ndarray, shape (n_refl, n_ops)
        ``h . t``.
    site_weight : ndarray, shape (n_atoms,)
        ``1 / (order of the site-symmetry group)``: the sum over all operations visits each
        distinct image that many times.
    """

    h_rot: np.ndarray
    h_tran: np.ndarray
    site_weight: np.ndarray


def symmetry_table(hkl: np.ndarray, ops: tuple[SymOp, ...], xyz: np.ndarray) -> SymmetryTable:
    """Build the :class:`SymmetryTable` of reflections ``hkl`` (n_refl, 3) and atoms ``xyz``."""
    h = np.asarray(hkl, dtype=float)
    rot = np.stack([op.rot for op in ops])  # (n_ops, 3, 3)
    tran = np.stack([op.tran for op in ops])  # (n_ops, 3)
    h_rot = np.einsum("ri,oij->roj", h, rot)
    h_tran = h @ tran.T
    weights = np.array([1.0 / site_symmetry(ops, np.asarray(p)).n_site_ops
                        for p in np.atleast_2d(xyz)])
    return SymmetryTable(h_rot, h_tran, weights)


def structure_factor_sq(sym: SymmetryTable, table: ScatteringTable, s2: Any, xyz: Any,
                        occ: Any, uiso: Any) -> Any:
    """Friedel-averaged ``|F|^2`` of each reflection (torch or numpy).

    Parameters
    ----------
    sym : SymmetryTable
    table : ScatteringTable
    s2 : shape (n_refl,)
        ``(sin theta / lambda)^2 = 1 / (4 d^2)``.
    xyz : shape (n_atoms, 3)
        Fractional coordinates.
    occ, uiso : shape (n_atoms,)

    Returns
    -------
    shape (n_refl,)
        In electrons^2 (X-rays) or fm^2 (neutrons) per unit cell.
    """
    torch_mode = hasattr(xyz, "detach") or hasattr(s2, "detach")
    if torch_mode:
        import torch

        xp = torch
        h_rot = torch.as_tensor(sym.h_rot, dtype=torch.float64)
        h_tran = torch.as_tensor(sym.h_tran, dtype=torch.float64)
        wsite = torch.as_tensor(sym.site_weight, dtype=torch.float64)
        fpp_tab = torch.as_tensor(table.fdoubleprime, dtype=torch.float64)
    else:
        xp = np
        h_rot, h_tran = sym.h_rot, sym.h_tran
        wsite, fpp_tab = sym.site_weight, table.fdoubleprime
    # (n_refl, n_ops, n_atoms); written as broadcasts (faster than batched matmul under vmap)
    phase = 2.0 * np.pi * (h_rot[:, :, 0, None] * xyz[None, None, :, 0]
                           + h_rot[:, :, 1, None] * xyz[None, None, :, 1]
                           + h_rot[:, :, 2, None] * xyz[None, None, :, 2]
                           + h_tran[:, :, None])
    cos_sum = xp.cos(phase).sum(1)  # (n_refl, n_atoms)
    sin_sum = xp.sin(phase).sum(1)
    dw = xp.exp(-8.0 * np.pi**2 * uiso[None, :] * s2[:, None])
    w = (occ * wsite)[None, :] * dw
    fr = form_factors(table, s2) * w
    out = (fr * cos_sum).sum(1) ** 2 + (fr * sin_sum).sum(1) ** 2
    if np.any(table.fdoubleprime):
        fi = fpp_tab[None, :] * w
        out = out + (fi * cos_sum).sum(1) ** 2 + (fi * sin_sum).sum(1) ** 2
    return out
