"""The Schur-complement step equals the dense damped Gauss-Newton step."""

import numpy as np

from tiedsci.refine.lm import levenberg_marquardt
from tiedsci.refine.solver import (
    SerialBlocks,
    assemble,
    dense_normal,
    partition_blocks,
    solve_damped,
)


def _random_blocks(rng, n_free=9):
    # theta 0,1 shared by all blocks; 2-3 local to block 0; 4-6 to block 1; 7-8 to block 2
    deps = [np.array([0, 1, 2, 3]), np.array([0, 1, 4, 5, 6]), np.array([1, 7, 8]),
            np.array([0, 7])]  # last block (a restraint-like one) touches 7 too -> shared
    jacs = [rng.standard_normal((30, d.size)) for d in deps]
    res = [rng.standard_normal(30) for _ in deps]
    return deps, jacs, res, n_free


def test_partition_shares_what_two_blocks_use():
    rng = np.random.default_rng(0)
    deps, _, _, n = _random_blocks(rng)
    part = partition_blocks(deps, n)
    assert part.shared.tolist() == [0, 1, 7]
    assert part.blocks[1].l_idx.tolist() == [4, 5, 6]
    assert part.blocks[2].l_idx.tolist() == [8]
    forced = partition_blocks(deps, n, force_shared=np.array([2]))
    assert forced.shared.tolist() == [0, 1, 2, 7]


def test_schur_step_matches_dense_solve():
    rng = np.random.default_rng(1)
    deps, jacs, res, n = _random_blocks(rng)
    part = partition_blocks(deps, n)
    system = assemble(part, jacs, res)
    # dense reference from the full Jacobian
    rows = sum(j.shape[0] for j in jacs)
    jfull = np.zeros((rows, n))
    r0 = 0
    for d, j in zip(deps, jacs):
        jfull[r0:r0 + j.shape[0], d] = j
        r0 += j.shape[0]
    rfull = np.concatenate(res)
    h = jfull.T @ jfull
    g = jfull.T @ rfull
    np.testing.assert_allclose(dense_normal(part, system), h, atol=1e-10)
    np.testing.assert_allclose(system.gradient(part), g, atol=1e-10)
    scale = np.diag(h).copy()
    for mu in (0.0, 1e-3, 10.0):
        delta = solve_damped(part, system, mu, scale)
        ref = np.linalg.solve(h + mu * np.diag(scale), -g)
        np.testing.assert_allclose(delta, ref, rtol=1e-9, atol=1e-12)


def test_lm_solves_a_nonlinear_problem_exactly():
    # r_k = exp(a * t) * b_k - y_k, shared a, local b_k; exact data -> zero residual
    t = np.linspace(0, 1, 20)
    a_true, b_true = 0.7, np.array([1.0, 2.0, 3.0])
    ys = [b * np.exp(a_true * t) for b in b_true]
    deps = [np.array([0, k + 1]) for k in range(3)]
    part = partition_blocks(deps, 4)

    def fun(theta):
        return [theta[k + 1] * np.exp(theta[0] * t) - ys[k] for k in range(3)]

    def jac(theta):
        out = []
        for k in range(3):
            e = np.exp(theta[0] * t)
            out.append(np.stack([theta[k + 1] * t * e, e], axis=1))
        return out

    out = levenberg_marquardt(SerialBlocks(fun, jac, part), np.array([0.0, 1.5, 1.5, 1.5]))
    assert out.converged
    np.testing.assert_allclose(out.theta, [a_true, *b_true], rtol=1e-8)
