"""A picture of a cell as SVG (no plotting dependency), for optuna-dashboard artifacts and docs.

Nodes stand on one line, input on the left, output on the right; every entry is an arc from its
source to its node, labelled with the operation and, in CellSpace, its channel count.
"""

from __future__ import annotations

from html import escape

from nas_sampler.genotype import Genotype

_NODE_GAP = 170
_MARGIN = 60
_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf", "#7f7f7f")


def cell_svg(genotype: Genotype, title: str | None = None) -> str:
    """The SVG document of ``genotype``'s cell."""
    n = genotype.num_nodes + 1
    arcs = sorted(genotype.edges(), key=lambda ne: (ne[0] - ne[1].src, ne[1].src, ne[1].op))
    # every arc gets its own height, shorter spans lower, so arcs and their labels never coincide
    placed = [(node, e, 30 + 24 * level) for level, (node, e) in enumerate(arcs)]
    max_lift = max((lift for _, _, lift in placed), default=0)
    width = 2 * _MARGIN + _NODE_GAP * (n - 1)
    base_y = int(max_lift + 55 + (18 if title else 0))
    height = base_y + 45
    ops = sorted({e.op for _, e in arcs})
    colour = {op: _PALETTE[i % len(_PALETTE)] for i, op in enumerate(ops)}
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
    ]
    if title:
        out.append(f'<text x="{width / 2}" y="16" text-anchor="middle" font-size="13">{escape(title)}</text>')

    def x_of(i: int) -> float:
        return _MARGIN + _NODE_GAP * i

    for node, e, lift in placed:
        x0, x1 = x_of(e.src), x_of(node)
        cx, cy = (x0 + x1) / 2, base_y - 2 * lift
        c = colour[e.op]
        label = e.op if e.channels is None else f"{e.op}:{e.channels}"
        out.append(
            f'<path d="M{x0},{base_y - 14} Q{cx},{cy} {x1},{base_y - 14}" fill="none" stroke="{c}" '
            f'stroke-width="1.6" marker-end="url(#arrow)"/>'
        )
        out.append(
            f'<text x="{cx}" y="{base_y - lift - 10}" text-anchor="middle" fill="{c}" stroke="white" '
            f'stroke-width="3" paint-order="stroke">{escape(label)}</text>'
        )
    out.insert(
        2,
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#444"/></marker></defs>',
    )
    for i in range(n):
        name = "in" if i == 0 else ("out" if i == n - 1 else str(i))
        out.append(f'<circle cx="{x_of(i)}" cy="{base_y}" r="14" fill="#f4f4f4" stroke="#333"/>')
        out.append(f'<text x="{x_of(i)}" y="{base_y + 4}" text-anchor="middle">{name}</text>')
    out.append("</svg>")
    return "\n".join(out)
