"""A picture of a cell as SVG (no plotting dependency), for optuna-dashboard artifacts and docs.

Nodes stand on one line, input on the left, output on the right; every entry is an arc from its
source to its node, each at its own height, labelled with a short name of its operation (``sep3``
for ``sep_conv_3x3``, see :func:`short_name`) and, in CellSpace, its channel count. The dashboard
shows an artifact in a 200 x 150 pixel box, so the picture is laid out in units of its font size
and kept compact: a typical cell's labels stay about 9 pixels or more high there.
"""

from __future__ import annotations

from html import escape

from nas_sampler.genotype import Genotype

FONT = 18  # label size; every length below is a multiple of it
_GAP = 4.6 * FONT  # between neighbouring nodes: room for a label such as "sep3·16"
_LEVEL = 1.35 * FONT  # between the heights of two arcs
_MARGIN = 1.6 * FONT
_RADIUS = 0.9 * FONT
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")
_DROPPED = {"conv", "pool", "connect", "nor"}  # words a short name leaves out


def short_name(op: str) -> str:
    """``sep_conv_3x3`` -> ``sep3``, ``max_pool_3x3`` -> ``max3``, ``skip_connect`` -> ``skip``,
    ``nor_conv_1x1`` -> ``conv1``: the words that tell operations apart, kernels by their size."""
    words = op.split("_")
    kept = [w.split("x")[0] if "x" in w and w.replace("x", "").isdigit() else w for w in words if w not in _DROPPED]
    if not kept or kept[0].isdigit():  # nor_conv_3x3: "conv" is all that names it
        kept = [w for w in words if w != "nor"][:1] + kept
    return "".join(kept)


def cell_svg(genotype: Genotype, title: str | None = None) -> str:
    """The SVG document of ``genotype``'s cell."""
    n = genotype.num_nodes + 1
    arcs = sorted(genotype.edges(), key=lambda ne: (ne[0] - ne[1].src, ne[1].src, ne[1].op))
    # every arc gets its own height, shorter spans lower, so arcs and their labels never coincide
    placed = [(node, e, (level + 1) * _LEVEL) for level, (node, e) in enumerate(arcs)]
    top = (FONT * 1.4 if title else 0) + FONT
    base_y = top + max((lift for _, _, lift in placed), default=0) + _RADIUS + 0.4 * FONT
    width = round(2 * _MARGIN + _GAP * (n - 1))
    height = round(base_y + _RADIUS + 0.4 * FONT)
    ops = sorted({e.op for _, e in arcs})
    colour = {op: _PALETTE[i % len(_PALETTE)] for i, op in enumerate(ops)}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="{FONT}">',
        '<rect width="100%" height="100%" fill="white"/>',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>',
    ]
    if title:
        out.append(f'<text x="{width / 2}" y="{FONT}" text-anchor="middle">{escape(title)}</text>')

    def x_of(i: int) -> float:
        return _MARGIN + _GAP * i

    for node, e, lift in placed:
        x0, x1 = x_of(e.src), x_of(node)
        # a quadratic arc peaks half-way to its control point: control at twice the lift
        cx, peak = (x0 + x1) / 2, base_y - _RADIUS - lift
        c = colour[e.op]
        label = short_name(e.op) if e.channels is None else f"{short_name(e.op)}·{e.channels}"
        out.append(
            f'<path d="M{x0},{base_y - _RADIUS} Q{cx},{2 * peak - (base_y - _RADIUS)} {x1},{base_y - _RADIUS}" '
            f'fill="none" stroke="{c}" stroke-width="2" marker-end="url(#arrow)"/>'
        )
        out.append(
            f'<text x="{cx}" y="{peak + 0.35 * FONT}" text-anchor="middle" fill="{c}" stroke="white" '
            f'stroke-width="4" paint-order="stroke"><title>{escape(e.op)}</title>{escape(label)}</text>'
        )
    for i in range(n):
        name = "in" if i == 0 else ("out" if i == n - 1 else str(i))
        out.append(f'<circle cx="{x_of(i)}" cy="{base_y}" r="{_RADIUS}" fill="#f4f4f4" stroke="#333"/>')
        out.append(f'<text x="{x_of(i)}" y="{base_y + 0.35 * FONT}" text-anchor="middle">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)
