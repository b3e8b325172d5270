"""Advection ``u_t + 30 u_x = 0`` (vanilla PINNs fail on it) with an exactly periodic PINN.

``x in [0, 2 pi)`` periodic, ``t in [0, 1]``, ``u(0, x) = sin x``; exact ``u = sin(x - 30 t)``.
The periodic axis comes from the core registry and is compiled into the ``cos / sin x``
embedding; the speed is a registry parameter. The network is separable,
``u = sin x + sum_r f_r(x) (g_r(t) - g_r(0))``, with a generic bank of time frequencies
``pi j`` (j = 1..20; the speed 30 is not built in), trained by Adam then L-BFGS on a large fixed
grid. The reference is the exact solution on a 512 x 201 grid.

Run: ``python examples/advection_periodic.py [--json] [--quick] [--budget S] [--out DIR]
[--device cuda]``. With ``--json`` one JSON object is printed: ``rel_l2``,
``boundary_mismatch``, ``wall_s``, ``device``, ``prediction_file`` (.npz with ``x``, ``t``,
``u[i_t, i_x]``) and more. ``run(out_dir, quick, budget_s)`` returns the same dict.
"""

from __future__ import annotations

from functools import partial

from tiedsci.pinn.outputs import recipe_example
from tiedsci.pinn.recipes import advection_recipe

SPEED = 30.0
FULL_BUDGET_S = 120.0
QUICK_BUDGET_S = 30.0

# run(out_dir, quick, budget_s, seed, device, dtype, plots, threads, progress) -> dict;
# main(argv) -> exit status
run, main = recipe_example(partial(advection_recipe, speed=SPEED), FULL_BUDGET_S,
                           QUICK_BUDGET_S, "advection_out", __doc__.splitlines()[0])

if __name__ == "__main__":
    raise SystemExit(main())
