from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from nas_sampler import CellSpace, NB201Space
from nas_sampler.draw import FONT, cell_svg, short_name

SVG = "{http://www.w3.org/2000/svg}"


def _texts(svg: str) -> list[str]:
    return ["".join(t.itertext()) for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_cell_picture_labels_every_entry() -> None:
    g = CellSpace().parse("|sep_conv_3x3:16~0|clc_avg_3x3:8~0|+|skip_connect:8~1|max_pool_3x3:32~0|")
    svg = cell_svg(g, title="trial <3>")
    root = ET.fromstring(svg)  # well-formed XML, title escaped
    labels = {"".join(t.itertext()) for t in root.iter(f"{SVG}text")}
    for op, ch in (("sep_conv_3x3", 16), ("clc_avg_3x3", 8), ("skip_connect", 8), ("max_pool_3x3", 32)):
        assert f"{op}{short_name(op)}·{ch}" in labels  # the full name as its tooltip, the short one shown
    assert {"in", "out", "trial <3>"} <= labels
    assert len(list(root.iter(f"{SVG}path"))) == 4 + 1  # 4 arcs + the arrow marker


def test_nb201_picture_has_six_arcs() -> None:
    space = NB201Space()
    g = space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    shown = sorted(t.text for t in ET.fromstring(cell_svg(g)).iter(f"{SVG}title"))
    assert shown == sorted(["nor_conv_3x3", "nor_conv_3x3", "skip_connect", "none", "avg_pool_3x3", "nor_conv_1x1"])


def test_short_names_tell_every_operation_apart() -> None:
    ops = sorted({*CellSpace().ops, *NB201Space().ops})
    names = {op: short_name(op) for op in ops}
    assert len(set(names.values())) == len(ops), names
    assert names["sep_conv_3x3"] == "sep3" and names["skip_connect"] == "skip" and names["nor_conv_1x1"] == "conv1"


@pytest.mark.parametrize("space", [CellSpace(), NB201Space()], ids=["cell", "nb201"])
def test_labels_are_readable_in_the_dashboards_thumbnail(space) -> None:
    """optuna-dashboard fits an artifact into 200 x 150 pixels: a random cell's labels must stay at
    least 9 pixels high there (the old layout's were under 5)."""
    rng = np.random.default_rng(0)
    shown = []
    for _ in range(100):
        svg = cell_svg(space.random(rng))
        w, h = map(float, re.search(r'viewBox="0 0 (\S+) (\S+)"', svg).groups())
        shown.append(FONT * min(200 / w, 150 / h))
    assert min(shown) >= 9.0, f"smallest label {min(shown):.1f} px"
