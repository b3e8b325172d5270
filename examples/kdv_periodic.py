"""KdV (Raissi's KdV.mat) with an exactly periodic PINN, time-marched on CPU or CUDA.

``u_t + u u_x + 0.0025 u_xxx = 0`` on ``x in [-1, 1)`` (periodic), ``t in [0, 1]``,
``u(0, x) = cos(pi x)``: the cosine steepens and breaks into a train of solitons. The periodic
axis is declared in the core registry and compiled into the exact ``cos / sin(k pi x)``
embedding; the coefficients are registry parameters. The measured recipe
(:func:`tiedsci.pinn.recipes.kdv_recipe`) marches over short time windows with a separable
network whose x-factors are truncated Fourier series (32 harmonics, harmonic ``k`` scaled by
``k^-2`` against the stiffness of ``u_xxx``), each window's start state carried exactly (values
and x-derivatives up to u_xxx).

Run: ``python examples/kdv_periodic.py [--json] [--quick] [--budget S] [--out DIR]
[--device cuda]``. With ``--json`` one JSON object is printed: ``rel_l2``, ``boundary_mismatch``,
``wall_s``, ``device``, ``prediction_file`` (an .npz with ``x``, ``t``, ``u[i_t, i_x]`` on the
reference grid) and more. ``run(out_dir, quick, budget_s)`` returns the same dict.
"""

from __future__ import annotations

from tiedsci.pinn.outputs import recipe_example
from tiedsci.pinn.recipes import kdv_recipe

FULL_BUDGET_S = 900.0
QUICK_BUDGET_S = 75.0

# run(out_dir, quick, budget_s, seed, device, dtype, plots, threads, progress) -> dict;
# main(argv) -> exit status
run, main = recipe_example(kdv_recipe, FULL_BUDGET_S, QUICK_BUDGET_S, "kdv_out",
                           __doc__.splitlines()[0])

if __name__ == "__main__":
    raise SystemExit(main())
