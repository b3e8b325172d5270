"""The block (Schur) covariance equals the dense inverse; singular cases fall back."""

import numpy as np
import pytest

from tiedsci.refine.covariance import invert_blocks, invert_normal
from tiedsci.refine.solver import assemble, dense_normal, partition_blocks


def _system(n_blocks, n_shared, n_local, rng, scales=None):
    n_free = n_shared + n_blocks * n_local
    deps, jacs, resids = [], [], []
    for k in range(n_blocks):
        local = n_shared + k * n_local + np.arange(n_local)
        # each block sees a random subset of the shared parameters (at least one)
        seen = np.flatnonzero(rng.random(n_shared) < 0.7)
        seen = seen if seen.size else np.array([0])
        dep = np.concatenate([seen, local])
        deps.append(dep)
        j = rng.normal(size=(40, dep.size))
        if scales is not None:
            j *= scales[dep]
        jacs.append(j)
        resids.append(rng.normal(size=40))
    part = partition_blocks(deps, n_free)
    return part, assemble(part, jacs, resids)


@pytest.mark.parametrize("seed", range(4))
def test_block_covariance_equals_the_dense_inverse(seed):
    rng = np.random.default_rng(seed)
    # parameters on very different scales (as cell lengths next to peak-width terms)
    scales = 10.0 ** rng.uniform(-3, 3, size=5 + 6 * 3)
    part, system = _system(6, 5, 3, rng, scales)
    info = invert_blocks(part, system)
    assert info is not None and not info.singular
    want = np.linalg.inv(dense_normal(part, system))
    np.testing.assert_allclose(info.cov_theta, want, rtol=1e-8,
                               atol=1e-10 * np.abs(want).max())
    dense = invert_normal(dense_normal(part, system), [f"p{i}" for i in range(part.n_free)])
    np.testing.assert_allclose(info.cov_theta, dense.cov_theta, rtol=1e-8,
                               atol=1e-10 * np.abs(want).max())


def test_no_shared_parameters():
    rng = np.random.default_rng(9)
    part, system = _system(3, 0, 2, rng)
    info = invert_blocks(part, system)
    np.testing.assert_allclose(info.cov_theta, np.linalg.inv(dense_normal(part, system)),
                               rtol=1e-10)


def test_singular_blocks_defer_to_the_dense_diagnosis():
    rng = np.random.default_rng(1)
    part, system = _system(3, 2, 3, rng)
    labels = [f"p{i}" for i in range(part.n_free)]
    # two local columns of block 1 made identical: its C block is singular
    blk = part.blocks[1]
    c = system.c[1].copy()
    i, j = blk.l_idx[0] - blk.l_idx[0], 1
    c[j, :] = c[i, :]
    c[:, j] = c[:, i]
    b = system.b[1].copy()
    b[:, j] = b[:, i]
    system = type(system)(system.hss, system.gs, (system.c[0], c, system.c[2]),
                          (system.b[0], b, system.b[2]), system.gl)
    assert invert_blocks(part, system) is None
    info = invert_normal(dense_normal(part, system), labels)
    assert info.cov_theta is None
    assert {labels[blk.l_idx[0]], labels[blk.l_idx[1]]} <= set(info.singular[0])
