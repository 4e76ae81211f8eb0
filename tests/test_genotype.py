from __future__ import annotations

import csv

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_sampler import CellSpace, Genotype, GenotypeError, NB201Space
from nas_sampler.genotype import Edge

BEST_NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def test_string_round_trip_and_canonical_order() -> None:
    g = Genotype([[Edge("sep_conv_3x3", 0, 16)], [Edge("skip_connect", 1, 8), Edge("avg_pool_3x3", 0, 4)]])
    assert str(g) == "|sep_conv_3x3:16~0|+|avg_pool_3x3:4~0|skip_connect:8~1|"
    assert Genotype.parse(str(g)) == g
    assert hash(Genotype.parse(str(g))) == hash(g)
    with pytest.raises(AttributeError):
        g.nodes = ()  # type: ignore[misc]


@pytest.mark.parametrize(
    "text",
    ["", "nor_conv_3x3~0", "|nor_conv_3x3~0", "|nor_conv_3x3|", "|conv:x~0|", "|a~0|+", "|3x3~0|", "|a~-1|"],
)
def test_malformed_strings_are_rejected_with_the_value(text: str) -> None:
    with pytest.raises(GenotypeError) as err:
        Genotype.parse(text)
    assert "genotype" in str(err.value)


def test_all_nb201_architectures_parse_and_print_back(nb201_csv) -> None:
    space = NB201Space()
    with open(nb201_csv) as f:
        rows = list(csv.reader(f))
    archs = [r[0] for r in rows if r and r[0].startswith("|")]
    assert len(archs) == 15625
    for arch in archs:
        assert str(space.parse(arch)) == arch
    assert len({space.parse(a) for a in archs}) == 15625


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_cell_genotypes_round_trip(seed: int) -> None:
    space = CellSpace()
    g = space.random(np.random.default_rng(seed))
    assert space.is_valid(g)
    assert space.parse(str(g)) == g
    assert space.from_params(space.to_params(g)) == g


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1))
def test_random_nb201_genotypes_round_trip(seed: int) -> None:
    space = NB201Space()
    g = space.random(np.random.default_rng(seed))
    assert space.parse(str(g)) == g
    assert space.from_params(space.to_params(g)) == g
    assert space.to_params(space.from_params(space.to_params(g))) == space.to_params(g)


cell_space = CellSpace()
_entry = st.builds(
    Edge,
    st.sampled_from([*cell_space.ops, "unknown_op"]),
    st.integers(0, 6),
    st.one_of(st.none(), st.integers(0, 100)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_entry, max_size=4), max_size=6))
def test_repair_makes_any_cell_genotype_valid(nodes) -> None:
    g = Genotype(nodes)
    fixed = cell_space.repair(g)
    assert cell_space.is_valid(fixed), cell_space.problems(fixed)
    assert cell_space.repair(fixed) == fixed
    if cell_space.is_valid(g):
        assert fixed == g


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.lists(st.builds(Edge, st.sampled_from([*NB201Space().ops, "conv"]), st.integers(0, 4)), max_size=4),
        max_size=5,
    )
)
def test_repair_makes_any_nb201_genotype_valid(nodes) -> None:
    space = NB201Space()
    fixed = space.repair(Genotype(nodes))
    assert space.is_valid(fixed), space.problems(fixed)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="|+~:_0123456789abnoecv ", max_size=40))
def test_parser_fuzz_returns_genotype_or_project_error(text: str) -> None:
    for space in (CellSpace(), NB201Space()):
        try:
            g = space.parse(text)
        except GenotypeError:
            continue
        assert space.is_valid(g)


def test_validation_names_every_problem() -> None:
    space = CellSpace(max_nodes=2)
    g = Genotype.parse("|sep_conv_3x3:12~0|+|nope:8~0|skip_connect~3|+|skip_connect:4~0|")
    with pytest.raises(GenotypeError) as err:
        space.validate(g)
    msg = str(err.value)
    for part in ("3 nodes", "12", "'nope'", "source 3", "needs a channel count", "repair"):
        assert part in msg


def test_nb201_validation() -> None:
    space = NB201Space()
    with pytest.raises(GenotypeError, match="exactly once"):
        space.parse("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|none~0|none~1|none~2|")
    with pytest.raises(GenotypeError, match="channel count"):
        space.parse("|nor_conv_3x3:8~0|+|none~0|none~1|+|none~0|none~1|none~2|")
    assert str(space.parse(BEST_NB201)) == BEST_NB201
