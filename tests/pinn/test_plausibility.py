"""Implausible PINN inputs are refused with the reason: negative diffusion, foreign references."""

from __future__ import annotations

import numpy as np
import pytest

from tiedsci.cli import main
from tiedsci.errors import DataError
from tiedsci.pinn import problem as P
from tiedsci.pinn.reference import Reference, check_reference, load_reference


@pytest.mark.parametrize("factory, key", [(P.heat, "nu"), (P.burgers, "nu"),
                                          (P.allen_cahn, "eps")])
def test_negative_diffusion_is_refused_with_the_reason(factory, key):
    with pytest.raises(DataError, match=f"{key}.*must be >= 0.*ill-posed"):
        factory(**{key: -0.01})


def test_negative_diffusion_in_a_run_file_exits_2_at_its_line(tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text('[problem]\nname = "heat"\ncoefficients = { nu = -0.1 }\n')
    assert main(["pinn", "solve", str(run), "--check"]) == 2
    err = capsys.readouterr().err
    assert f"{run}, line 3" in err and "nu" in err and "ill-posed" in err


def test_reference_of_another_problem_or_grid_is_refused():
    ac = load_reference("allen_cahn")
    with pytest.raises(DataError, match="another problem"):
        check_reference(P.kdv(), ac)
    with pytest.raises(DataError, match="coefficients"):
        check_reference(P.allen_cahn(eps=1e-3), ac)
    shifted = Reference(ac.x + 5.0, ac.t, ac.u, name="mine")
    with pytest.raises(DataError, match="x grid spans"):
        check_reference(P.allen_cahn(), shifted)
    check_reference(P.allen_cahn(), ac)  # the right one passes
    check_reference(P.heat(), Reference(np.linspace(0, 6, 8), np.linspace(0, 1, 3),
                                        np.zeros((3, 8)), name="mine"))


def test_check_validates_the_reference_the_run_will_use(tmp_path, capsys):
    run = tmp_path / "run.toml"
    run.write_text('[problem]\nname = "kdv"\ncoefficients = { lambda2 = 0.01 }\n')
    assert main(["pinn", "solve", str(run), "--check"]) == 2
    err = capsys.readouterr().err
    assert f"{run}" in err and "source" in err and "spectral" in err
    run.write_text('[problem]\nname = "kdv"\ncoefficients = { lambda2 = 0.01 }\n\n'
                   '[reference]\nsource = "spectral"\n')
    assert main(["pinn", "solve", str(run), "--check"]) == 0


def test_saved_model_loads_and_a_truncated_one_is_a_named_error(tmp_path):
    from dataclasses import replace as dc_replace

    from tiedsci import pinn
    from tiedsci.pinn.config import NetSpec, TrainConfig

    net = NetSpec(width=8, depth=2, rank=2, n_harmonics=1, time_frequencies=1)
    cfg = TrainConfig(adam_steps=5, lbfgs_steps=2, lbfgs_chunk=2, n_x=16, n_t=4, n_x_lbfgs=16,
                      n_t_lbfgs=4, n_windows=1, seed=0)
    sol = pinn.solve(P.heat(0.1), net, dc_replace(cfg))
    sol.save(tmp_path / "model")
    back = pinn.load(tmp_path / "model")
    x, t = np.linspace(0, 6, 7), np.linspace(0, 1, 3)
    assert np.array_equal(back.predict(x, t), sol.predict(x, t))
    pt = tmp_path / "model.pt"
    pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(DataError, match="model"):
        pinn.load(tmp_path / "model")
