"""Allen-Cahn (Raissi's AC.mat) with an exactly periodic PINN, time-marched on CPU or CUDA.

``u_t = 1e-4 u_xx + 5 u - 5 u^3`` on ``x in [-1, 1)`` (periodic), ``t in [0, 1]``,
``u(0, x) = x^2 cos(pi x)``. The periodic axis is declared in the core registry and compiled into
the exact ``cos / sin(k pi x)`` embedding; the coefficients are registry parameters. The solver
marches over 10 windows of 0.1 with a separable network ``u = u_w(x) + sum_r f_r(x) (g_r(t) -
g_r(t_w))``, each window's start state carried exactly, Adam then L-BFGS, then a second L-BFGS
sweep. ``u0`` has a slope corner at ``x = +-1`` (slopes +2 / -2): a corner mode with a learned
time amplitude lets it fade (``NetSpec.corner_orders``).

Run: ``python examples/allen_cahn_periodic.py [--json] [--quick] [--budget S] [--out DIR]
[--device cuda]``. With ``--json`` one JSON object is printed: ``rel_l2``, ``boundary_mismatch``,
``wall_s``, ``device``, ``prediction_file`` (an .npz with ``x``, ``t``, ``u[i_t, i_x]`` on the
reference grid, so anyone can recompute the error) and more. ``run(out_dir, quick, budget_s)``
returns the same dict (used by ``tiedsci demo``).
"""

from __future__ import annotations

from tiedsci.pinn.outputs import recipe_example
from tiedsci.pinn.recipes import allen_cahn_recipe

FULL_BUDGET_S = 900.0
QUICK_BUDGET_S = 75.0

# run(out_dir, quick, budget_s, seed, device, dtype, plots, threads, progress) -> dict;
# main(argv) -> exit status
run, main = recipe_example(allen_cahn_recipe, FULL_BUDGET_S, QUICK_BUDGET_S, "allen_cahn_out",
                           __doc__.splitlines()[0])

if __name__ == "__main__":
    raise SystemExit(main())
