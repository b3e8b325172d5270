"""The powder pattern: a crystal seen by one instrument, as a differentiable forward model.

``y(2theta) = background(2theta) + sum_peaks I_p * profile(2theta - pos_p)`` where, for each
reflection and wavelength (GSAS-II conventions):

- position: ``pos = 2 asin(lambda / 2d) + zero`` with ``1/d^2`` from the reciprocal metric of
  the shared cell plus this dataset's hydrostatic strain ``D_ij`` (GSAS order), minus the
  displacement term, ``(0.09 / (pi R)) * 4 shift cos(theta)`` (Bragg-Brentano) or
  ``(0.09 / (pi R)) * (Dx cos 2theta + Dy sin 2theta)`` (Debye-Scherrer; shifts in micrometre,
  ``R`` in mm);
- intensity: ``scale * ratio * multiplicity * |F|^2 * L * P * PO`` with Lorentz
  ``1 / (2 sin^2 theta cos theta)``, polarisation ``P + (1 - P) cos^2 2theta`` (X-rays) and
  March-Dollase preferred orientation (optional);
- shape: TCH pseudo-Voigt with Caglioti ``U, V, W`` and Lorentzian ``X, Y``, FCJ asymmetry
  ``shl`` (:mod:`.profile`); evaluated from ``pos - 10 FWHM`` to ``pos + 15 FWHM`` (GSAS-II's
  window, extended by the asymmetry) and brought smoothly to zero over the outer 30 % of that
  window, so the pattern is continuous in every parameter (a hard cut makes chi^2 jump when
  points enter or leave a window, which stalls Levenberg-Marquardt near the minimum);
- background: Chebyshev polynomials of the first kind in ``2theta`` scaled to [-1, 1] over the
  fitted range.

The model is written in torch (float64), so it is differentiable end to end.
:meth:`PowderModel.jacobian` gives the exact Jacobian faster than generic autodiff: the
pattern depends on the parameters only through a few numbers per peak (intensity, position,
Gaussian variance, Lorentzian width, asymmetry nodes), so it multiplies a sparse
``d y / d(peak numbers)`` (one backward pass over the point-peak pairs) by the small dense
``d(peak numbers) / d params`` (forward-mode autodiff).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tiedsci.backends import namespace_of
from tiedsci.errors import DataError
from tiedsci.refine.powder.crystal import Crystal, CrystalParams
from tiedsci.refine.powder.instrument import Instrument
from tiedsci.refine.powder.profile import (
    LN2,
    caglioti_sigma2,
    fcj_nodes,
    lorentz_gamma,
    pseudo_voigt,
    tch,
)
from tiedsci.refine.powder.reflections import (
    Reflections,
    generate_reflections,
    reciprocal_metric,
)
from tiedsci.refine.powder.structure_factor import (
    ScatteringTable,
    SymmetryTable,
    scattering_table,
    structure_factor_sq,
    symmetry_table,
)

TAPER_START = 0.7  # fraction of the window where the smooth cut-off of the profile begins

__all__ = ["PatternParams", "declare_pattern", "PowderModel", "chebyshev_basis",
           "lorentz_polarization", "march_dollase"]



@dataclass(frozen=True)
class PatternParams:
    """Full registry names read by one dataset's model (``None``: not used).

    Attributes
    ----------
    cell : tuple of str
        ``a, b, c, alpha, beta, gamma``.
    atoms : tuple of tuple of str
        ``(x, y, z, occ, uiso)`` per atom, in the crystal's order.
    scale, background, U, V, W, X, Y, shl, zero : str
    shift : str or None
        Bragg-Brentano sample displacement (micrometre).
    displace_x, displace_y : str or None
        Debye-Scherrer sample offsets (micrometre).
    dij : str or None
        Hydrostatic strain, shape (6,), added to the reciprocal metric (GSAS order).
    po_ratio : str or None
        March-Dollase ratio.
    """

    cell: tuple[str, ...]
    atoms: tuple[tuple[str, str, str, str, str], ...]
    scale: str
    background: str
    U: str
    V: str
    W: str
    X: str
    Y: str
    shl: str
    zero: str
    shift: str | None = None
    displace_x: str | None = None
    displace_y: str | None = None
    dij: str | None = None
    po_ratio: str | None = None

    @property
    def peak_names(self) -> tuple[str, ...]:
        """Every name the peak table depends on (all but the background)."""
        out = list(self.cell) + [n for at in self.atoms for n in at]
        for n in (self.scale, self.U, self.V, self.W, self.X, self.Y, self.shl, self.zero,
                  self.shift, self.displace_x, self.displace_y, self.dij, self.po_ratio):
            if n is not None:
                out.append(n)
        return tuple(out)

    @property
    def names(self) -> tuple[str, ...]:
        return self.peak_names + (self.background,)

    @property
    def profile(self) -> tuple[str, ...]:
        return (self.U, self.V, self.W, self.X, self.Y)

    @property
    def displacement(self) -> tuple[str, ...]:
        return tuple(n for n in (self.shift, self.displace_x, self.displace_y) if n)


def declare_pattern(registry: Any, dataset: str, instrument: Instrument,
                    crystal_params: CrystalParams, crystal: Crystal | None = None, *,
                    n_background: int = 3, U: float = 2.0, V: float = -2.0, W: float = 5.0,
                    X: float = 0.0, Y: float = 0.0, shl: float = 0.002, zero: float = 0.0,
                    strain: bool = False, po_ratio: float | None = None) -> PatternParams:
    """Declare one dataset's local parameters ``<dataset>.<name>`` in a registry.

    Everything is declared free except ``zero`` and ``shl`` (fixed; free them with
    ``registry.free``) and the strain components forbidden by the point group (``dij``
    relations derived from the space group, so ``crystal`` is needed when ``strain``).

    Returns
    -------
    PatternParams
    """
    p = f"{dataset}."
    registry.declare(p + "scale", 1.0, description="pattern scale")
    registry.declare(p + "background", np.zeros(n_background),
                     description="Chebyshev background coefficients")
    for n, v, u in (("U", U, "centideg^2"), ("V", V, "centideg^2"), ("W", W, "centideg^2"),
                    ("X", X, "centideg"), ("Y", Y, "centideg")):
        registry.declare(p + n, v, unit=u, description=f"profile {n}")
    registry.declare(p + "shl", shl, fixed=True, description="FCJ asymmetry (S+H)/L")
    registry.declare(p + "zero", zero, fixed=True, unit="degree", description="zero shift")
    kw: dict[str, str] = {}
    if instrument.geometry == "bragg-brentano":
        registry.declare(p + "shift", 0.0, unit="micrometre",
                         description="sample displacement")
        kw["shift"] = p + "shift"
    else:
        for k in ("displace_x", "displace_y"):
            registry.declare(p + k, 0.0, unit="micrometre", description="sample offset")
            kw[k] = p + k
    if strain:
        if crystal is None:
            raise DataError("declare_pattern(strain=True) needs the crystal (for symmetry)")
        from tiedsci.refine.powder.symmetry import invariant_relations

        registry.declare(p + "dij", np.zeros(6), unit="angstrom^-2",
                         description="hydrostatic strain D11 D22 D33 D12 D13 D23")
        _, rels = invariant_relations(crystal.ops)
        ref = registry[p + "dij"]
        for rel in rels:
            if not rel.terms:
                registry.fix(ref[rel.target], rel.offset)
            else:
                registry.linear(ref[rel.target], [(c, ref[s]) for c, s in rel.terms],
                                offset=rel.offset)
        kw["dij"] = p + "dij"
    if po_ratio is not None:
        registry.declare(p + "po_ratio", po_ratio, description="March-Dollase ratio")
        kw["po_ratio"] = p + "po_ratio"
    atoms = tuple(tuple(crystal_params.atoms[lab][k] for k in ("x", "y", "z", "occ", "uiso"))
                  for lab in crystal_params.atoms)
    return PatternParams(crystal_params.cell, atoms, p + "scale", p + "background", p + "U",
                         p + "V", p + "W", p + "X", p + "Y", p + "shl", p + "zero", **kw)


def chebyshev_basis(x: Any, x_range: tuple[float, float], n: int) -> Any:
    """Chebyshev polynomials ``T_0..T_{n-1}`` of ``x`` scaled to [-1, 1]; shape (n_points, n)."""
    t = 2.0 * (x - x_range[0]) / (x_range[1] - x_range[0]) - 1.0
    cols = [t * 0.0 + 1.0, t]
    for _ in range(2, n):
        cols.append(2.0 * t * cols[-1] - cols[-2])
    cols = cols[:n]
    if hasattr(t, "detach"):
        import torch

        return torch.stack(cols, dim=1)
    return np.stack(cols, axis=1)


def lorentz_polarization(two_theta_deg: Any, polarization: float | None) -> Any:
    """``1 / (2 sin^2 theta cos theta) * (P + (1 - P) cos^2 2theta)`` (no P: Lorentz only)."""
    xp = namespace_of(two_theta_deg)
    th = two_theta_deg * (np.pi / 360.0)
    lor = 1.0 / (2.0 * xp.sin(th) ** 2 * xp.cos(th))
    if polarization is None:
        return lor
    return lor * (polarization + (1.0 - polarization) * xp.cos(2.0 * th) ** 2)


def march_dollase(cos2_alpha: Any, ratio: Any) -> Any:
    """March-Dollase factor ``(r^2 cos^2 a + sin^2 a / r)^(-3/2)`` (before averaging)."""
    return (ratio**2 * cos2_alpha + (1.0 - cos2_alpha) / ratio) ** (-1.5)



@dataclass(frozen=True, eq=False)
class PowderModel:
    """Forward model of one constant-wavelength pattern. Build with :meth:`build`.

    Call ``model(values, x)`` with a mapping of full parameter names to arrays (numpy in,
    numpy out) or tensors (torch in, differentiable torch out); ``x`` is 2theta in degrees,
    ascending. Pass :meth:`jacobian` as a contribution's ``jac``.
    """

    crystal: Crystal
    instrument: Instrument
    params: PatternParams
    reflections: Reflections
    scattering: ScatteringTable
    sym: SymmetryTable
    x_range: tuple[float, float]
    n_background: int
    n_asym: int = 5
    window: tuple[float, float] = (10.0, 15.0)
    po_axis: tuple[int, int, int] | None = None
    po_equiv: np.ndarray | None = None  # (n_refl, max_mult, 3) equivalents, zero padded
    po_mask: np.ndarray | None = None

    @classmethod
    def build(cls, crystal: Crystal, instrument: Instrument, params: PatternParams,
              x_range: tuple[float, float], *, n_background: int = 3, n_asym: int = 5,
              anomalous: Mapping[str, tuple[float, float]] | None = None,
              window: tuple[float, float] = (10.0, 15.0),
              po_axis: tuple[int, int, int] | None = None,
              d_margin: float = 0.97) -> PowderModel:
        """Generate the reflections that can appear in ``x_range`` and the lookup tables.

        Parameters
        ----------
        x_range : (float, float)
            2theta range of the fitted points (degrees); also scales the background.
        n_asym : int
            Gauss-Legendre nodes of the FCJ asymmetry (0: symmetric peaks).
        anomalous : mapping, optional
            ``element -> (f', f'')`` (X-rays).
        d_margin : float
            Reflections down to ``d_margin * d_min`` are kept, so that a cell that shrinks
            during the refinement does not lose peaks at the upper limit.
        """
        lo, hi = (float(v) for v in x_range)
        if not 0 < lo < hi < 180:
            raise DataError(f"x_range must satisfy 0 < lo < hi < 180 degrees, got {x_range!r}")
        top = min(hi + 3.0, 179.0)
        d_min = min(instrument.wavelengths) / (2.0 * np.sin(np.radians(top / 2.0))) * d_margin
        refl = generate_reflections(crystal.cell, crystal.space_group, d_min)
        elements = tuple(a.element for a in crystal.atoms)
        table = scattering_table(elements, instrument.radiation, anomalous)
        xyz = np.array([a.xyz for a in crystal.atoms])
        sym = symmetry_table(refl.hkl, crystal.ops, xyz)
        equiv = mask = None
        if po_axis is not None:
            if params.po_ratio is None:
                raise DataError("po_axis given but no po_ratio parameter was declared")
            from tiedsci.refine.powder.reflections import _hkl_rotations

            rots = _hkl_rotations(crystal.space_group)
            orbits = [sorted({tuple(int(v) for v in h @ r) for r in rots}) for h in refl.hkl]
            m = max(len(o) for o in orbits)
            equiv = np.zeros((len(orbits), m, 3))
            mask = np.zeros((len(orbits), m))
            for i, o in enumerate(orbits):
                equiv[i, :len(o)] = o
                mask[i, :len(o)] = 1.0
        return cls(crystal, instrument, params, refl, table, sym, (lo, hi), int(n_background),
                   int(n_asym), tuple(window), po_axis, equiv, mask)

    # ----------------------------------------------------------------- pieces
    @property
    def n_peaks(self) -> int:
        return len(self.reflections) * len(self.instrument.wavelengths)

    def peak_table(self, v: Mapping[str, Any]) -> Any:
        """Per-peak numbers, shape (n_peaks, n_cols): intensity, position (deg), TCH FWHM
        (deg), TCH ``eta``, window extent below and above the position (deg), then (with
        ``n_asym > 0``) the FCJ node offsets (deg) and weights, ``n_asym`` columns each.

        Peaks are ordered wavelength-major (all reflections for lambda1, then lambda2).
        ``v`` maps full names to float64 tensors.
        """
        import torch

        p = self.params
        cell = [v[n] for n in p.cell]
        metric = reciprocal_metric(cell)
        if p.dij is not None:
            metric = metric + v[p.dij]
        hkl = torch.as_tensor(self.reflections.hkl, dtype=torch.float64)
        quad = torch.stack([hkl[:, 0] ** 2, hkl[:, 1] ** 2, hkl[:, 2] ** 2,
                            hkl[:, 0] * hkl[:, 1], hkl[:, 0] * hkl[:, 2],
                            hkl[:, 1] * hkl[:, 2]], dim=1)
        invd2 = quad @ metric
        xyz = torch.stack([torch.stack([v[a[0]], v[a[1]], v[a[2]]]) for a in p.atoms])
        occ = torch.stack([v[a[3]] for a in p.atoms])
        uiso = torch.stack([v[a[4]] for a in p.atoms])
        f2 = structure_factor_sq(self.sym, self.scattering, invd2 / 4.0, xyz, occ, uiso)
        mult = torch.as_tensor(self.reflections.multiplicity, dtype=torch.float64)
        base = v[p.scale] * mult * f2
        if p.po_ratio is not None and self.po_axis is not None:
            base = base * self._po(metric, v[p.po_ratio])
        inst = self.instrument
        radius = inst.radius_mm
        const = 9e-2 / (np.pi * radius)
        rows = []
        for lam, ratio in zip(inst.wavelengths, inst.intensity_ratios):
            s = torch.clamp(lam * torch.sqrt(invd2) / 2.0, max=1.0 - 1e-9)
            pos = 2.0 * torch.rad2deg(torch.asin(s)) + v[p.zero]
            if p.shift is not None:
                pos = pos - const * 4.0 * v[p.shift] * torch.cos(torch.deg2rad(pos / 2.0))
            if p.displace_x is not None:
                rad = torch.deg2rad(pos)
                pos = pos - const * (v[p.displace_x] * torch.cos(rad)
                                     + v[p.displace_y] * torch.sin(rad))
            th = torch.deg2rad(pos / 2.0)
            tan_t, cos_t = torch.tan(th), torch.cos(th)
            inten = ratio * base * lorentz_polarization(pos, inst.polarization)
            sig = caglioti_sigma2(v[p.U], v[p.V], v[p.W], tan_t)
            gam = lorentz_gamma(v[p.X], v[p.Y], cos_t, tan_t)
            shl = v[p.shl] + 0.0 * pos
            fwhm, eta = tch(torch.sqrt(8.0 * LN2 * sig) / 100.0, gam / 100.0)
            # window: GSAS-II's FWHM estimate 2.355 sigma + gamma, widened by the asymmetry
            fw = torch.sqrt(8.0 * LN2 * sig) / 100.0 + torch.abs(gam) / 100.0
            wlo, whi = self.window[0] * fw, self.window[1] * fw
            extra = []
            if self.n_asym > 0:
                off, w = fcj_nodes(pos, shl, self.n_asym)
                wlo = wlo - torch.clamp(off.min(1).values, max=0.0)
                whi = whi + torch.clamp(off.max(1).values, min=0.0)
                extra = [off, w]
            cols = [torch.stack([inten, pos, fwhm, eta, wlo, whi], dim=1), *extra]
            rows.append(torch.cat(cols, dim=1))
        return torch.cat(rows, dim=0)

    def _po(self, metric: Any, ratio: Any) -> Any:
        import torch

        a = metric
        gstar = torch.stack([torch.stack([a[0], a[3] / 2, a[4] / 2]),
                             torch.stack([a[3] / 2, a[1], a[5] / 2]),
                             torch.stack([a[4] / 2, a[5] / 2, a[2]])])
        axis = torch.as_tensor(np.array(self.po_axis, dtype=float), dtype=torch.float64)
        eq = torch.as_tensor(self.po_equiv, dtype=torch.float64)
        mask = torch.as_tensor(self.po_mask, dtype=torch.float64)
        num = eq @ (gstar @ axis)
        hh = torch.einsum("rmi,ij,rmj->rm", eq, gstar, eq)
        aa = axis @ gstar @ axis
        cos2 = torch.where(mask > 0, num**2 / (torch.clamp(hh, min=1e-30) * aa),
                           torch.zeros_like(num))
        md = march_dollase(cos2, ratio) * mask
        return md.sum(1) / mask.sum(1)

    def pairs(self, table: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Point and peak indices of every (point, peak) pair inside a peak's window.

        Parameters
        ----------
        table : ndarray, shape (n_peaks, n_cols)
            :meth:`peak_table` values (numpy).
        x : ndarray, shape (n_points,), ascending

        Returns
        -------
        point_idx, peak_idx : ndarray of int, shape (n_pairs,)
        """
        pos, wlo, whi = table[:, 1], table[:, 4], table[:, 5]
        i0 = np.searchsorted(x, pos - wlo, side="right")
        i1 = np.searchsorted(x, pos + whi, side="left")
        counts = np.maximum(i1 - i0, 0)
        counts[~np.isfinite(pos)] = 0
        total = int(counts.sum())
        peak_idx = np.repeat(np.arange(pos.size), counts)
        starts = np.cumsum(counts) - counts
        point_idx = np.arange(total) - np.repeat(starts, counts) + np.repeat(i0, counts)
        return point_idx.astype(np.int64), peak_idx.astype(np.int64)

    def pair_values(self, rows: Any, x: Any) -> Any:
        """``I * profile(x - pos)`` for pairs; ``rows`` (n_pairs, n_cols) are peak-table rows,
        ``x`` shape (n_pairs,)."""
        import torch

        inten, pos, fwhm, eta, wlo, whi = rows[:, :6].unbind(1)
        n = self.n_asym
        dx = x - pos
        if n > 0:
            off, w = rows[:, 6:6 + n], rows[:, 6 + n:6 + 2 * n]
            prof = (w * pseudo_voigt(dx[:, None] - off, fwhm[:, None], eta[:, None])).sum(1)
        else:
            prof = pseudo_voigt(dx, fwhm, eta)
        # smooth cut-off over the outer 30 % of the window: the pattern stays continuous
        # (and differentiable) when peaks move or widen and points enter or leave a window
        r = torch.where(dx < 0, -dx / wlo, dx / whi)
        t = torch.clamp((r - TAPER_START) / (1.0 - TAPER_START), 0.0, 1.0)
        return inten * prof * (1.0 - t * t * (3.0 - 2.0 * t))

    def background(self, coef: Any, x: Any) -> Any:
        """Chebyshev background at ``x``."""
        return chebyshev_basis(x, self.x_range, self.n_background) @ coef

    # ----------------------------------------------------------------- model
    def _tensors(self, values: Mapping[str, Any]) -> dict[str, Any]:
        import torch

        return {n: torch.as_tensor(np.asarray(values[n]) if not hasattr(values[n], "detach")
                                   else values[n], dtype=torch.float64)
                for n in self.params.names}

    def __call__(self, values: Mapping[str, Any], x: Any) -> Any:
        """Calculated pattern at ``x`` (2theta, degrees, ascending)."""
        import torch

        torch_in = hasattr(x, "detach") or any(hasattr(values[n], "detach")
                                               for n in self.params.names)
        v = self._tensors(values)
        xt = torch.as_tensor(x, dtype=torch.float64)
        table = self.peak_table(v)
        pt, pk = self.pairs(table.detach().numpy(), xt.detach().numpy())
        pt_t, pk_t = torch.as_tensor(pt), torch.as_tensor(pk)
        vals = self.pair_values(table[pk_t], xt[pt_t])
        y = torch.zeros(xt.shape[0], dtype=torch.float64).index_add(0, pt_t, vals)
        y = y + self.background(v[self.params.background], xt)
        if torch_in:
            return y
        return y.detach().numpy()

    def jacobian(self, values: Mapping[str, Any], x: Any) -> dict[str, np.ndarray]:
        """Exact ``d y / d value`` for every parameter read: ``name -> (n_points, *shape)``.

        The signature and output of a :class:`tiedsci.refine.Contribution` ``jac``.
        """
        import scipy.sparse as sp
        import torch

        p = self.params
        v = self._tensors(values)
        xt = torch.as_tensor(np.asarray(x, dtype=float))
        names = p.peak_names
        shapes = [tuple(v[n].shape) for n in names]
        sizes = [int(np.prod(s, dtype=int)) for s in shapes]
        flat0 = torch.cat([v[n].reshape(-1) for n in names])

        def table_of(flat: Any) -> Any:
            parts, o = {}, 0
            for n, s, k in zip(names, shapes, sizes):
                parts[n] = flat[o:o + k].reshape(s)
                o += k
            return self.peak_table(parts)

        dtab = torch.func.jacfwd(table_of)(flat0)  # (n_peaks, n_cols, m)
        with torch.no_grad():
            table = table_of(flat0)
        pt, pk = self.pairs(table.numpy(), xt.numpy())
        rows = table[torch.as_tensor(pk)].clone().requires_grad_(True)
        vals = self.pair_values(rows, xt[torch.as_tensor(pt)])
        (g,) = torch.autograd.grad(vals.sum(), rows)
        n_pts = xt.shape[0]
        n_peaks, n_cols = table.shape
        cols = pk[:, None] * n_cols + np.arange(n_cols)[None, :]
        s_mat = sp.csr_matrix((g.numpy().ravel(), (np.repeat(pt, n_cols), cols.ravel())),
                              shape=(n_pts, n_peaks * n_cols))
        jac = np.asarray(s_mat @ dtab.reshape(n_peaks * n_cols, -1).numpy())
        out, o = {}, 0
        for n, s, k in zip(names, shapes, sizes):
            out[n] = jac[:, o:o + k].reshape((n_pts,) + s)
            o += k
        out[p.background] = chebyshev_basis(xt.numpy(), self.x_range, self.n_background)
        return out

    def tick_positions(self, values: Mapping[str, Any]) -> np.ndarray:
        """Positions (degrees) of the first-wavelength peaks, for reflection ticks."""
        import torch

        with torch.no_grad():
            table = self.peak_table(self._tensors(values))
        return table[: len(self.reflections), 1].numpy()

