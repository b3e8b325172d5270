"""Draw docs/img/concepts_layout.png: unpack (free -> full) and pooling (full -> free).

The picture is computed, not drawn by hand: a small registry is compiled and every edge, edge
weight and pooled number in the figure comes from the resulting ``Layout`` (``unpack``,
``jacobian`` for the edges, ``pool_grad`` and ``pool_stats`` for the
pooled example numbers).

Run from the repository root::

    .venv/bin/python docs/img/make_concepts_figure.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

from tiedsci import Positive, Registry  # noqa: E402

OUT = Path(__file__).resolve().parent / "concepts_layout.png"
BLUE, ORANGE, GREY = "#1f77b4", "#d95f02", "#8c8c8c"


def build_layout():
    """Four states' means tied in pairs, an affine cell relation, a positive scale, a fixed zero."""
    reg = Registry()
    reg.declare("means", np.array([0.1, 0.1, 2.0, 2.0]))
    reg.tie_groups("means", [[0, 1], [2, 3]])
    a = reg.declare("cell.a", 8.48, unit="angstrom")
    b = reg.declare("cell.b", 5.40, unit="angstrom")
    reg.affine(b, a, scale=0.6368)
    reg.declare("xray.scale", 1.5, bounds=Positive())
    reg.declare("neutron.zero", -0.1, fixed=True)
    return reg.compile()


def element_jacobian(layout) -> np.ndarray:
    """d(element)/d(theta) at theta0, shape (n_values, n_free): the layout's own map."""
    return layout.jacobian(layout.theta0).toarray()


def box(ax, x, y, text, color, w=0.3, h=0.075, fill="white", size=8.5):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.008",
                                fc=fill, ec=color, lw=1.3))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, family="monospace")


def arrow(ax, x0, y0, x1, y1, color, label=None, ls="-"):
    ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                arrowprops={"arrowstyle": "-|>", "color": color, "lw": 1.2, "ls": ls,
                            "shrinkA": 0, "shrinkB": 0})
    if label:
        xm, ym = x0 + 0.72 * (x1 - x0), y0 + 0.72 * (y1 - y0)
        ax.text(xm, ym + 0.018, label, color=color, fontsize=7.5, ha="center",
                bbox={"fc": "white", "ec": "none", "pad": 0.2})


def main() -> None:
    layout = build_layout()
    jac = element_jacobian(layout)                      # (n_elements, n_free)
    rows = layout.element_rows()
    labels, status = [r["label"] for r in rows], [r["status"] for r in rows]
    flat = np.concatenate([np.ravel(v) for v in layout.unpack(layout.theta0).values()])
    n_el, n_free = jac.shape
    # an example of per-element gradients / statistics flowing back
    g_elem = np.array([3.0, 4.0, 5.0, 6.0, 1.0, 2.0, 0.5, 9.0])[:n_el]
    grads, off = {}, 0
    for name in layout.names:
        size = int(np.prod(layout.shapes[name], dtype=int))
        grads[name] = g_elem[off:off + size].reshape(layout.shapes[name])
        off += size
    g_theta = layout.pool_grad(grads, layout.theta0)
    pooled_means = layout.pool_stats({"means": grads["means"]})["means"]

    y_el = np.linspace(0.88, 0.10, n_el)
    y_fr = np.array([np.mean(y_el[np.nonzero(jac[:, j])[0]]) for j in range(n_free)])
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    for ax in axes:
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.axis("off")

    # left: unpack
    ax = axes[0]
    ax.set_title(f"unpack: free vector theta (n_free = {n_free}) -> full parameters "
                 f"({n_el} elements)", fontsize=10)
    xf, xe = 0.15, 0.63
    for j in range(n_free):
        box(ax, xf, y_fr[j], f"theta[{j}]  {layout.free_names[j]}", BLUE, w=0.28)
    for i in range(n_el):
        fixed = not jac[i].any()
        box(ax, xe, y_el[i], f"{labels[i]} = {flat[i]:.4g}", GREY if fixed else "k", w=0.29,
            fill="#eeeeee" if fixed else "white")
        ax.text(xe + 0.16, y_el[i], status[i], ha="left", va="center", fontsize=7.5,
                color=GREY)
        for j in np.nonzero(jac[i])[0]:
            bounded = bool(rows[i]["bounds"])
            lab = f"exp(theta) = {jac[i, j]:.3g}" if bounded else f"x{jac[i, j]:.4g}"
            arrow(ax, xf + 0.145, y_fr[j], xe - 0.15, y_el[i], BLUE, lab)
        if fixed:
            ax.text(xe - 0.30, y_el[i], "b: fixed value,\nnot in theta", fontsize=7.5,
                    color=GREY, ha="center", va="center")
    ax.text(0.5, 0.005, "phi = A t(theta) + b;  one free value fans out to every tied place",
            ha="center", fontsize=8.5, color=BLUE)

    # right: pooling
    ax = axes[1]
    ax.set_title("pool: gradients / statistics flow back, summed over tied places", fontsize=10)
    xe, xf = 0.19, 0.78
    for i in range(n_el):
        fixed = not jac[i].any()
        box(ax, xe, y_el[i], f"g[{labels[i]}] = {g_elem[i]:g}", GREY if fixed else "k",
            w=0.36, fill="#eeeeee" if fixed else "white")
        if fixed:
            ax.text(xe + 0.30, y_el[i], "dropped (fixed)", fontsize=7.5, color=GREY,
                    va="center", ha="center")
        for j in np.nonzero(jac[i])[0]:
            arrow(ax, xe + 0.185, y_el[i], xf - 0.175, y_fr[j], ORANGE)
    for j in range(n_free):
        members = np.nonzero(jac[:, j])[0]
        terms = " + ".join(f"{jac[i, j]:.4g}*{g_elem[i]:g}" if jac[i, j] != 1 else f"{g_elem[i]:g}"
                           for i in members)
        box(ax, xf, y_fr[j], f"dL/dtheta[{j}] = {g_theta[j]:.4g}\n= {terms}", ORANGE,
            w=0.34, h=0.085, size=8)
    means_txt = ", ".join(f"{v:g}" for v in pooled_means)
    ax.text(0.5, 0.005, "pool_grad: dL/dtheta = t'(theta) A^T dL/dphi      "
            f"pool_stats(means) -> [{means_txt}]", ha="center", fontsize=8.5, color=ORANGE)
    fig.tight_layout()
    fig.savefig(OUT, dpi=100)
    plt.close(fig)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
