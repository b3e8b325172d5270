"""Forward model: exact Jacobian; a refinement recovers a synthetic truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tiedsci.core import Registry
from tiedsci.refine import Dataset, JointRefinement
from tiedsci.refine.powder.crystal import declare_crystal, read_cif
from tiedsci.refine.powder.instrument import Instrument
from tiedsci.refine.powder.pattern import PowderModel, declare_pattern

DATA = Path(__file__).resolve().parents[3] / "tiedsci" / "data" / "pbso4"
CU = Instrument("xray", (1.5405, 1.5443), (1.0, 0.5), polarization=0.7)
D1A = Instrument("neutron", (1.909,), geometry="debye-scherrer", radius_mm=650.0)


def _setup(inst, x_range, n_asym=0, po=False, registry=None):
    crystal = read_cif(DATA / "PbSO4-Wyckoff_start.cif")
    reg = registry if registry is not None else Registry()
    cp = declare_crystal(reg, crystal)
    pp = declare_pattern(reg, "d", inst, cp, crystal, X=0.9, Y=5.0, shl=0.02, strain=True,
                         po_ratio=0.9 if po else None)
    model = PowderModel.build(crystal, inst, pp, x_range, n_asym=n_asym,
                              anomalous={"Pb": (-4.078, 8.501)},
                              po_axis=(0, 0, 1) if po else None)
    return reg, cp, pp, model


@pytest.mark.parametrize("inst, n_asym, po", [(CU, 3, True), (D1A, 0, False)],
                         ids=["xray-fcj-po", "neutron"])
def test_jacobian_matches_differences(inst, n_asym, po):
    reg, cp, pp, model = _setup(inst, (20.0, 60.0), n_asym=n_asym, po=po)
    values = {k: np.array(v, dtype=float) for k, v in reg.compile().values0.items()}
    values["d.dij"] = np.array([1e-5, 2e-5, -1e-5, 0, 0, 0])
    for k, v in (("d.shift", 30.0), ("d.displace_x", 40.0), ("d.displace_y", -20.0),
                 ("d.background", np.array([100.0, 5.0, -3.0]))):
        if k in values:
            values[k] = np.asarray(v, dtype=float)
    x = np.arange(20.0, 60.0, 0.02)
    jac = model.jacobian(values, x)
    # the profile is cut off smoothly at the window edges, so plain differences apply
    for name in ("a", "c", "Pb.x", "O3.y", "S.uiso", "d.scale", "d.U", "d.X", "d.Y", "d.dij",
                 *pp.displacement, *((pp.po_ratio,) if po else ()), "d.shl", "d.background"):
        v0 = values[name]
        for i in range(v0.size if v0.ndim else 1):
            h = 1e-10 if name == "d.dij" else 1e-6 * max(1.0, float(np.abs(v0).max()))
            step = np.zeros_like(v0)
            step.flat[i] = h
            yp = model({**values, name: v0 + step}, x)
            ym = model({**values, name: v0 - step}, x)
            fd = (yp - ym) / (2 * h)
            an = jac[name].reshape(x.size, -1)[:, i]
            scale = max(np.abs(fd).max(), 1e-12)
            assert np.abs(an - fd).max() <= 2e-5 * scale, (name, i)


def test_torch_forward_is_differentiable():
    torch = pytest.importorskip("torch")
    reg, cp, pp, model = _setup(D1A, (20.0, 40.0))
    values = {k: torch.tensor(np.asarray(v, dtype=float), requires_grad=True)
              for k, v in reg.compile().values0.items()}
    y = model(values, torch.linspace(20.0, 40.0, 200, dtype=torch.float64))
    y.sum().backward()
    assert values["Pb.x"].grad is not None and float(values["a"].grad) != 0.0


def test_refinement_recovers_synthetic_truth():
    """Data simulated by the model itself (with noise) are refined back from a start."""
    jr = JointRefinement()
    reg, cp, pp, model = _setup(D1A, (20.0, 100.0), registry=jr.registry)
    truth = {k: np.array(v, dtype=float) for k, v in reg.compile().values0.items()}
    truth.update({"d.scale": np.array(0.01), "d.background": np.array([200.0, 10.0, -5.0]),
                  "a": np.array(8.47), "Pb.x": np.array(0.1875), "O3.y": np.array(0.0269),
                  "S.z": np.array(0.6835), "O2.uiso": np.array(0.018),
                  "d.U": np.array(354.0), "d.V": np.array(-760.0), "d.W": np.array(651.0)})
    x = np.arange(20.0, 100.0, 0.05)
    y_true = model(truth, x)
    rng = np.random.default_rng(7)
    sigma = np.sqrt(y_true)
    y = y_true + sigma * rng.standard_normal(x.size)
    jr.add(Dataset(x, y, sigma=sigma, name="d"), model, uses=pp.names, jac=model.jacobian)
    for n in ("X", "Y", "U", "V", "W"):
        jr.registry.fix(f"d.{n}", float(truth[f"d.{n}"]))
    jr.registry.fix("d.dij")
    jr.registry.fix("d.displace_x")
    jr.registry.fix("d.displace_y")
    jr.registry.set_value("d.scale", 0.012)
    jr.registry.set_value("d.background", [190.0, 0.0, 0.0])
    res = jr.fit(ftol=1e-8, on_singular="warn")
    assert res.dataset("d").agreement.gof == pytest.approx(1.0, abs=0.1)
    for name in ("a", "b", "c", *cp.free_coordinates, *cp.uiso, "d.scale"):
        err = abs(float(res.values[name]) - float(truth[name]))
        assert err < 4.0 * float(res.esd[name]), (name, err, float(res.esd[name]))
