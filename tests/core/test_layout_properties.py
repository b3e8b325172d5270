"""Property tests of the core maps over random tie structures (hypothesis).

The oracles are independent of the layout's code: tie groups are rebuilt here with a tiny
union-find from the declared ties, relations are checked element by element, gradients are
checked against torch autograd and central finite differences.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tiedsci.core import Interval, Registry, Simplex

SETTINGS = settings(max_examples=60, deadline=None)


def _union_find(n):
    parent = list(range(n))

    def find(i):
        while parent[i] != i:
            i = parent[i]
        return i

    def union(a, b):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[rb] = ra

    return find, union


@st.composite
def structures(draw):
    """A random registry: arrays and scalars, ties (whole, element, cross-param), affine and
    linear relations, fixed elements, interval bounds and a simplex matrix with tied rows and a
    structural zero."""
    rng = np.random.default_rng(draw(st.integers(0, 2**31 - 1)))
    reg = Registry()
    n_arrays = draw(st.integers(1, 3))
    shapes = {}
    for i in range(n_arrays):
        shape = tuple(draw(st.lists(st.integers(1, 3), min_size=1, max_size=2)))
        shapes[f"arr{i}"] = shape
        reg.declare(f"ns.arr{i}", rng.normal(size=shape))
    bounded = reg.declare("pos", rng.uniform(0.5, 2.0, size=3), bounds=(0.0, None))
    reg.declare("inter", rng.uniform(-0.9, 0.9, size=2), bounds=Interval(-1.0, 1.0))
    k = draw(st.integers(2, 4))
    trans = rng.dirichlet(np.ones(k), size=k)
    zero = draw(st.booleans())
    if zero:
        trans[0, -1] = 0.0
        trans[0] /= trans[0].sum()
    reg.declare("trans", trans, bounds=Simplex(axis=-1))
    if zero:
        reg.fix(reg["trans"][0, k - 1])
    if draw(st.booleans()) and k >= 3:
        reg.tie(reg["trans"][1], reg["trans"][2])
    # element ties inside and across arrays (same element count)
    names = [f"ns.arr{i}" for i in range(n_arrays)]
    for _ in range(draw(st.integers(0, 3))):
        a, b = draw(st.sampled_from(names)), draw(st.sampled_from(names))
        ia = draw(st.integers(0, int(np.prod(shapes[a.split(".")[1]])) - 1))
        ib = draw(st.integers(0, int(np.prod(shapes[b.split(".")[1]])) - 1))
        ra = reg[a][np.unravel_index(ia, shapes[a.split(".")[1]])]
        rb = reg[b][np.unravel_index(ib, shapes[b.split(".")[1]])]
        if (a, ia) == (b, ib):
            continue
        reg.tie(ra, rb)
    # scalar relations
    reg.declare("s0", float(rng.normal()))
    reg.declare("s1", 0.0)
    scale, offset = float(rng.uniform(-2, 2)), float(rng.normal())
    reg.affine("s1", "s0", scale=scale, offset=offset)
    reg.test_affine = (scale, offset)  # remembered for the oracle
    reg.declare("s2", 0.0)
    reg.linear("s2", [(1.5, "s0"), (-0.5, "s1"), (2.0, bounded[0])], offset=0.25)
    if draw(st.booleans()):
        reg.declare("s3", 1.25, fixed=True)
        reg.declare("s4", 1.25)
        reg.tie("s3", "s4")  # fixed source: the group is fixed
    return reg


def _groups(layout):
    """Tie groups rebuilt from the layout's element labels by an independent union-find over the
    elements whose status says 'tied to X' (white box: reads the core's private columns)."""
    idx = {lab: i for i, lab in enumerate(layout._labels)}
    find, union = _union_find(layout.n_values)
    for i, status in enumerate(layout._status):
        for prefix in ("tied to ", "fixed, tied to "):
            if status.startswith(prefix):
                union(idx[status[len(prefix):]], i)
    return [find(i) for i in range(layout.n_values)]


def _flat(values, layout):
    return np.concatenate([np.asarray(values[n], float).ravel() for n in layout.names])


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_pack_inverts_unpack(reg, seed):
    layout = reg.compile()
    theta = np.random.default_rng(seed).normal(scale=1.5, size=layout.n_free)
    back = layout.pack(layout.unpack(theta))
    np.testing.assert_allclose(back, theta, rtol=1e-7, atol=1e-7)


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_unpack_satisfies_every_relation_exactly(reg, seed):
    layout = reg.compile()
    theta = np.random.default_rng(seed).normal(scale=2.0, size=layout.n_free)
    values = layout.unpack(theta)
    flat = _flat(values, layout)
    roots = _groups(layout)
    for i, r in enumerate(roots):  # ties: bit-identical
        assert flat[i] == flat[r], (layout._labels[i], layout._labels[r])
    scale, offset = reg.test_affine
    assert values["s1"] == pytest.approx(scale * values["s0"] + offset, abs=1e-12)
    assert values["s2"] == pytest.approx(
        1.5 * values["s0"] - 0.5 * values["s1"] + 2.0 * values["pos"][0] + 0.25, abs=1e-12)
    assert np.all(values["pos"] >= 0.0)
    assert np.all((values["inter"] >= -1.0) & (values["inter"] <= 1.0))
    trans = values["trans"]
    assert np.all(trans >= 0)
    np.testing.assert_allclose(trans.sum(axis=1), 1.0, atol=1e-12)
    fixed = np.concatenate([layout.fixed_mask(n).ravel() for n in layout.names])
    np.testing.assert_array_equal(flat[fixed], _flat(layout.values0, layout)[fixed])


def _smooth_loss_np(values, weights):
    return sum(float(np.sum(w * np.sin(np.asarray(values[n])))) for n, w in weights.items())


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_pool_grad_matches_autograd_and_finite_differences(reg, seed):
    layout = reg.compile()
    rng = np.random.default_rng(seed)
    theta = rng.normal(size=layout.n_free)
    weights = {n: rng.normal(size=layout.shapes[n]) for n in layout.names}
    values = layout.unpack(theta)
    grads = {n: weights[n] * np.cos(values[n]) for n in layout.names}
    pooled = layout.pool_grad(grads, theta)

    t = torch.tensor(theta, requires_grad=True)
    vt = layout.unpack(t)
    loss = sum((torch.as_tensor(weights[n]) * torch.sin(vt[n])).sum() for n in layout.names)
    loss.backward()
    np.testing.assert_allclose(pooled, t.grad.numpy(), rtol=1e-9, atol=1e-10)

    h = 1e-6
    fd = np.zeros(layout.n_free)
    for i in range(layout.n_free):
        e = np.zeros(layout.n_free)
        e[i] = h
        fd[i] = (_smooth_loss_np(layout.unpack(theta + e), weights)
                 - _smooth_loss_np(layout.unpack(theta - e), weights)) / (2 * h)
    np.testing.assert_allclose(pooled, fd, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_pool_stats_equals_explicit_group_sums(reg, seed):
    layout = reg.compile()
    rng = np.random.default_rng(seed)
    names = [n for n in layout.names if n.startswith("ns.") or n == "trans"]
    stats = {n: rng.normal(size=layout.shapes[n] + (2,)) for n in names}
    pooled = layout.pool_stats(stats)
    roots = _groups(layout)
    flat = {}
    for n in names:
        off = layout.flat_slice(n).start
        for j, row in enumerate(stats[n].reshape(-1, 2)):
            flat[off + j] = row
    sums: dict[int, np.ndarray] = {}
    for e, row in flat.items():
        sums[roots[e]] = sums.get(roots[e], 0) + row
    for n in names:
        off = layout.flat_slice(n).start
        got = pooled[n].reshape(-1, 2)
        for j in range(got.shape[0]):
            np.testing.assert_allclose(got[j], sums[roots[off + j]], rtol=1e-12)


@SETTINGS
@given(structures(), st.integers(0, 10_000))
def test_numpy_and_torch_backends_agree(reg, seed):
    layout = reg.compile()
    theta = np.random.default_rng(seed).normal(size=layout.n_free)
    vn = layout.unpack(theta)
    vt = layout.unpack(torch.tensor(theta, dtype=torch.float64))
    for n in layout.names:
        assert isinstance(vt[n], torch.Tensor) and vt[n].dtype == torch.float64
        np.testing.assert_allclose(vt[n].numpy(), vn[n], rtol=1e-12, atol=1e-12)
    v32 = layout.unpack(torch.tensor(theta, dtype=torch.float32))
    assert all(v.dtype == torch.float32 for v in v32.values())


def test_n_free_counts_true_degrees_of_freedom():
    reg = Registry()
    reg.declare("means", np.zeros((4, 2)))
    reg.tie_groups("means", [[0, 1], [2, 3]])
    assert reg.compile().n_free == 4
    reg.declare("trans", np.full((3, 3), 1 / 3), bounds=Simplex())
    reg.tie_groups("trans", [[1, 2]])
    assert reg.compile().n_free == 4 + 4  # two distinct rows of 3 -> 2 x (3 - 1)
    reg.declare("z", 0.25, fixed=True)
    reg.declare("w", 1.0)
    reg.derive("w", lambda z: 2 * z, deps=["z"])
    assert reg.compile().n_free == 8


def test_left_right_zeros_stay_zero_and_are_not_counted():
    reg = Registry()
    trans = np.array([[0.6, 0.4, 0.0], [0.0, 0.7, 0.3], [0.0, 0.0, 1.0]])
    reg.declare("trans", trans, bounds=Simplex())
    reg.fix(reg["trans"][1, 0])
    reg.fix(reg["trans"][0, 2])
    reg.fix(reg["trans"][2, :])
    reg.fix(reg["trans"][1, 0])
    layout = reg.compile()
    assert layout.n_free == 2  # rows 0 and 1 keep one free value each
    v = layout.unpack(np.array([3.0, -2.0]))
    assert v["trans"][0, 2] == 0.0 and v["trans"][1, 0] == 0.0
    np.testing.assert_allclose(v["trans"].sum(axis=1), 1.0)


def test_torch_unpack_is_differentiable_and_keeps_device():
    reg = Registry()
    reg.declare("a", 2.0, bounds=(0, None))
    reg.declare("b", 0.0)
    reg.affine("b", "a", scale=3.0)
    layout = reg.compile()
    t = torch.tensor(layout.theta0, requires_grad=True)
    v = layout.unpack(t)
    assert v["a"].device == t.device
    v["b"].backward()
    # db/dtheta = 3 * da/dtheta = 3 * exp(theta) = 3 * a
    assert t.grad.item() == pytest.approx(6.0)
