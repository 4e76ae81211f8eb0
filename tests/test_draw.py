from __future__ import annotations

import xml.etree.ElementTree as ET

from nas_sampler import CellSpace, NB201Space
from nas_sampler.draw import cell_svg


def test_cell_picture_labels_every_entry() -> None:
    g = CellSpace().parse("|sep_conv_3x3:16~0|clc_avg_3x3:8~0|+|skip_connect:8~1|max_pool_3x3:32~0|")
    svg = cell_svg(g, title="trial <3>")
    root = ET.fromstring(svg)  # well-formed XML, title escaped
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    for label in ("sep_conv_3x3:16", "clc_avg_3x3:8", "skip_connect:8", "max_pool_3x3:32", "in", "out", "trial <3>"):
        assert label in texts
    assert len(list(root.iter("{http://www.w3.org/2000/svg}path"))) == 4 + 1  # 4 arcs + the arrow marker


def test_nb201_picture_has_six_arcs() -> None:
    space = NB201Space()
    g = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    texts = [t.text for t in ET.fromstring(cell_svg(g)).iter("{http://www.w3.org/2000/svg}text")]
    assert sorted(t for t in texts if "_" in t or t == "none") == sorted(
        ["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1"]
    )
