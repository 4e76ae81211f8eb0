"""The evolution's pure functions: operators keep genotypes valid, selection matches brute force."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nas_sampler.errors import ConfigError
from nas_sampler.evolution import (
    AdaptiveState,
    ChildRecord,
    EvolutionConfig,
    crossover,
    crowding_distance,
    make_child,
    make_unique_child,
    mutate,
    non_dominated_sort,
    rank_sum_order,
    select_survivors,
)
from nas_sampler.genotype import Genotype
from nas_sampler.space import CellSpace, NB201Space

CELL_MUTATIONS = tuple(CellSpace.mutations)
CELL_CROSSOVERS = tuple(CellSpace.crossovers)

CELL_SPACES = [
    CellSpace(),
    CellSpace(max_nodes=1),
    CellSpace(max_nodes=6, channel_choices=(0, 8)),
    CellSpace(ops=("skip_connect", "max_pool_3x3"), max_nodes=3, channel_choices=(0, 2, 4, 8, 16, 32, 64, 128)),
]
SPACES = [*CELL_SPACES, NB201Space(), NB201Space(ops=("none", "skip_connect"))]


def _state(seed: int) -> AdaptiveState:
    """A random but valid adaptive state, so operators are exercised under skewed probabilities."""
    rng = np.random.default_rng(seed)
    records = [
        ChildRecord(
            crossover=str(rng.choice(CELL_CROSSOVERS)),
            mutations=(str(rng.choice(CELL_MUTATIONS)),),
            ops=(str(rng.choice(CellSpace().ops)),),
        )
        for _ in range(30)
    ]
    return AdaptiveState(generation=int(rng.integers(0, 30))).update(records, list(rng.random(30) < 0.3))


@settings(max_examples=60, deadline=None)
@given(space_i=st.integers(0, len(SPACES) - 1), seed=st.integers(0, 2**32 - 1))
def test_every_operator_yields_a_valid_genotype(space_i: int, seed: int) -> None:
    space = SPACES[space_i]
    rng = np.random.default_rng(seed)
    a = space.random(rng)
    kinds, xkinds = tuple(space.mutations), tuple(space.crossovers)
    op_p = rng.dirichlet(np.ones(len(space.ops)))
    g = a
    for kind in kinds:
        g, op = mutate(space, g, kind, rng, op_p)
        assert space.problems(g) == [], (kind, str(g))
        assert op is None or op in space.ops
    for kind in xkinds:
        child = crossover(space, a, g, kind, rng)
        assert space.problems(child) == [], (kind, str(child))
    parents = [space.random(rng) for _ in range(int(rng.integers(1, 6)))]
    child, record = make_child(space, parents, rng, _state(seed), EvolutionConfig())
    assert space.problems(child) == []
    assert record.crossover is None or record.crossover in xkinds
    assert set(record.mutations) <= set(kinds)


def test_mutation_kinds_do_what_they_say() -> None:
    space = CellSpace(max_nodes=4)
    g = space.parse("|sep_conv_3x3:16~0|skip_connect:8~0|+|max_pool_3x3:32~1|+|avg_pool_3x3:4~2|sep_conv_5x5:8~1|")
    rng = np.random.default_rng(0)
    # add_node appends a node that reads the old output node
    grown, op = mutate(space, g, "add_node", rng)
    assert grown.num_nodes == 4 and any(e.src == 3 and e.op == op for e in grown.nodes[3])
    assert grown.nodes[:3] == g.nodes
    # grow / shrink move one entry one step along channel_choices
    for kind, sign in (("grow_channels", 1), ("shrink_channels", -1)):
        changed, _ = mutate(space, g, kind, np.random.default_rng(3))
        before = {(n, e.src, e.op): e.channels for n, e in g.edges()}
        after = {(n, e.src, e.op): e.channels for n, e in changed.edges()}
        diffs = [k for k in before.keys() | after.keys() if before.get(k, 0) != after.get(k, 0)]
        assert len(diffs) == 1
        ch = space.channel_choices
        k = diffs[0]
        assert ch.index(after.get(k, 0)) - ch.index(before[k]) == sign
    # drop_weakest removes the smallest entry of edge 1 <- 0 (skip_connect:8 here)
    dropped, _ = mutate(space, g, "drop_weakest", rng)
    assert [str(e) for e in dropped.nodes[0]] == ["sep_conv_3x3:16~0"]
    # swap_edges keeps every (op, channels) content (repair may add a default entry to a node it emptied)
    for seed in range(10):
        swapped, _ = mutate(space, g, "swap_edges", np.random.default_rng(seed))
        assert swapped != g
        kept = Counter((e.op, e.channels) for _, e in swapped.edges())
        assert Counter((e.op, e.channels) for _, e in g.edges()) <= kept


def test_remove_node_folds_channels_and_renumbers_sources() -> None:
    space = CellSpace(max_nodes=4)
    g = space.parse("|sep_conv_3x3:16~0|+|max_pool_3x3:8~0|skip_connect:4~1|+|avg_pool_3x3:8~2|sep_conv_5x5:8~0|")
    outcomes = {str(mutate(space, g, "remove_node", np.random.default_rng(seed))[0]) for seed in range(60)}
    assert outcomes == {
        # node 1 removed: nothing to fold into (node 0 is the input); readers of node 1 read node 0
        "|max_pool_3x3:8~0|skip_connect:4~0|+|sep_conv_5x5:8~0|avg_pool_3x3:8~1|",
        # node 2 removed: its max_pool_3x3:8~0 folds into node 1; node 3 becomes node 2 and reads node 1
        "|max_pool_3x3:8~0|sep_conv_3x3:16~0|+|sep_conv_5x5:8~0|avg_pool_3x3:8~1|",
        # node 3 (the output) removed: its sep_conv_5x5:8~0 folds into node 2, the new output
        "|sep_conv_3x3:16~0|+|max_pool_3x3:8~0|sep_conv_5x5:8~0|skip_connect:4~1|",
    }
    folded = space.parse("|sep_conv_3x3:16~0|+|sep_conv_3x3:16~0|+|skip_connect:8~2|")
    merged = {str(mutate(space, folded, "remove_node", np.random.default_rng(seed))[0]) for seed in range(60)}
    assert "|sep_conv_3x3:32~0|+|skip_connect:8~1|" in merged  # equal entries fold by adding channels


def test_crossovers_take_genes_from_the_parents() -> None:
    space = CellSpace()
    a = space.parse("|sep_conv_3x3:16~0|skip_connect:8~0|+|max_pool_3x3:32~1|")
    b = space.parse("|sep_conv_3x3:4~0|avg_pool_3x3:8~0|+|max_pool_3x3:64~1|")
    m = crossover(space, a, b, "min", np.random.default_rng(0))
    assert str(m) == "|sep_conv_3x3:4~0|+|max_pool_3x3:32~1|"
    genes_a = {(n, e.src, e.op): e.channels for n, e in a.edges()}
    genes_b = {(n, e.src, e.op): e.channels for n, e in b.edges()}
    for seed in range(20):
        u = crossover(space, a, b, "uniform", np.random.default_rng(seed))
        for n, e in u.edges():
            assert e.channels in (genes_a.get((n, e.src, e.op)), genes_b.get((n, e.src, e.op)))
    nb = NB201Space()
    x, y = nb.random(np.random.default_rng(1)), nb.random(np.random.default_rng(2))
    child = crossover(nb, x, y, "uniform", np.random.default_rng(3))
    for (_, e), ea, eb in zip(child.edges(), x.edges(), y.edges(), strict=True):
        assert e.op in (ea[1].op, eb[1].op)


def test_nb201_change_edge_changes_exactly_one_edge() -> None:
    nb = NB201Space()
    g = nb.random(np.random.default_rng(5))
    for seed in range(10):
        out, op = mutate(nb, g, "change_edge", np.random.default_rng(seed))
        diffs = [(e1, e2) for (_, e1), (_, e2) in zip(g.edges(), out.edges(), strict=True) if e1 != e2]
        assert len(diffs) == 1 and diffs[0][1].op == op


def test_adaptive_state_favours_kinds_whose_offspring_survive() -> None:
    kinds = CELL_MUTATIONS
    state = AdaptiveState()
    assert np.allclose(state.mutation_probs(kinds), 1 / len(kinds))
    records = [ChildRecord("uniform", ("add_op",), ("skip_connect",))] * 10 + [ChildRecord("min", ("add_node",))] * 10
    state = state.update(records, [True] * 10 + [False] * 10)
    p = dict(zip(kinds, state.mutation_probs(kinds), strict=True))
    assert p["add_op"] > p["swap_edges"] > p["add_node"] >= 0.05 - 1e-12
    px = dict(zip(CELL_CROSSOVERS, state.crossover_probs(CELL_CROSSOVERS), strict=True))
    assert px["uniform"] > px["min"]
    ops = CellSpace().ops
    greedy = dict(zip(ops, state.op_probs(ops, exploration=0.0), strict=True))
    explore = dict(zip(ops, state.op_probs(ops, exploration=1.0), strict=True))
    assert greedy["skip_connect"] > greedy["max_pool_3x3"]
    assert np.allclose(list(explore.values()), 1 / len(ops))
    assert AdaptiveState.from_dict(state.to_dict()) == state
    assert state.generation == 1


def test_make_unique_child_avoids_seen_and_falls_back() -> None:
    space = CellSpace()
    rng = np.random.default_rng(0)
    parents = [space.random(rng) for _ in range(4)]
    seen = {str(p) for p in parents}
    for _ in range(50):
        child, _ = make_unique_child(space, parents, rng, seen)
        assert str(child) not in seen
        seen.add(str(child))
    # with no retries allowed and a parent pool of one cloned parent, children are fresh random cells
    cfg = EvolutionConfig(crossover_prob=0.0, mutation_prob=0.0, max_retries=0)
    tiny = CellSpace(ops=("skip_connect",), max_nodes=1, channel_choices=(0, 4))  # exactly one genotype
    only = tiny.random(rng)
    g, record = make_unique_child(tiny, [only], rng, {str(only)}, config=cfg)
    assert record.fallback and g == only  # exhausted: the caller is told by the record and decides


def test_bad_settings_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="crossover_prob"):
        EvolutionConfig(crossover_prob=1.5)
    with pytest.raises(ConfigError, match="max_retries"):
        EvolutionConfig(max_retries=-1)
    with pytest.raises(ConfigError, match="reduction"):
        select_survivors([[1.0]], ["minimize"], 1, reduction="median")
    with pytest.raises(ConfigError, match="direction"):
        non_dominated_sort([[1.0]], ["up"])
    with pytest.raises(ConfigError, match="unknown mutation kind"):
        mutate(CellSpace(), CellSpace().random(np.random.default_rng(0)), "teleport", np.random.default_rng(0))


# ---- selection against brute force ---------------------------------------------------------


def _brute_dominates(a, b, signs, va=0.0, vb=0.0) -> bool:
    if va <= 0 < vb:
        return True
    if vb <= 0 < va:
        return False
    if va > 0 and vb > 0:
        return va < vb
    x = [s * v for s, v in zip(signs, a, strict=True)]
    y = [s * v for s, v in zip(signs, b, strict=True)]
    return all(p <= q for p, q in zip(x, y, strict=True)) and any(p < q for p, q in zip(x, y, strict=True))


def _brute_fronts(values, signs, viol):
    left = set(range(len(values)))
    fronts = []
    while left:
        front = sorted(
            i for i in left if not any(_brute_dominates(values[j], values[i], signs, viol[j], viol[i]) for j in left)
        )
        fronts.append(front)
        left -= set(front)
    return fronts


@settings(max_examples=80, deadline=None)
@given(
    n=st.integers(1, 14),
    m=st.integers(1, 4),
    seed=st.integers(0, 10_000),
    constrained=st.booleans(),
    levels=st.integers(2, 6),
)
def test_non_dominated_sort_matches_brute_force(n: int, m: int, seed: int, constrained: bool, levels: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, levels, size=(n, m)).astype(float)  # few levels: many ties
    directions = [str(d) for d in rng.choice(["minimize", "maximize"], size=m)]
    signs = [1 if d == "minimize" else -1 for d in directions]
    viol = np.where(rng.random(n) < 0.4, rng.integers(1, 4, size=n), 0).astype(float) if constrained else np.zeros(n)
    fronts = non_dominated_sort(values, directions, viol if constrained else None)
    assert fronts == _brute_fronts(values.tolist(), signs, viol.tolist())


def _brute_rank_sum_select(values, signs, k):
    """The original rule spelled out: fill by fronts; in the overflowing front keep the best of each
    objective, then the smallest sums of per-objective ranks."""
    viol = [0.0] * len(values)
    chosen = []
    for front in _brute_fronts(values, signs, viol):
        pts = {i: [s * v for s, v in zip(signs, values[i], strict=True)] for i in front}
        rank = {i: [sum(pts[j][o] < pts[i][o] for j in front) for o in range(len(signs))] for i in front}
        total = {i: sum(rank[i]) for i in front}
        order = []
        for o in range(len(signs)):
            best = min(front, key=lambda i, o=o: (pts[i][o], total[i], i))
            if best not in order:
                order.append(best)
        order += sorted((i for i in front if i not in order), key=lambda i: (total[i], i))
        chosen += order[: k - len(chosen)]
        if len(chosen) >= k:
            break
    return chosen


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 16), m=st.integers(1, 4), k=st.integers(1, 16), seed=st.integers(0, 10_000))
def test_rank_sum_selection_matches_brute_force(n: int, m: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 5, size=(n, m)).astype(float)
    directions = [str(d) for d in rng.choice(["minimize", "maximize"], size=m)]
    signs = [1 if d == "minimize" else -1 for d in directions]
    got = select_survivors(values, directions, k, "rank_sum")
    assert got == _brute_rank_sum_select(values.tolist(), signs, k)
    assert len(got) == min(k, n) and len(set(got)) == len(got)


def test_rank_sum_keeps_the_best_of_each_objective_on_a_hand_made_front() -> None:
    # one front of 5 points; keep 3: the extremes of both objectives, then the smallest rank sum
    front = [[0.0, 10.0], [10.0, 0.0], [4.0, 5.0], [5.0, 4.5], [2.0, 9.0]]
    assert rank_sum_order(front, ["minimize", "minimize"])[:2] == [0, 1]
    chosen = select_survivors(front, ["minimize", "minimize"], 3, "rank_sum")
    # ranks (obj1, obj2): p2=(2,2)->4, p3=(3,1)->4, p4=(1,3)->4: all tie, position decides
    assert chosen == [0, 1, 2]
    dominated = front + [[11.0, 11.0]]
    assert 5 not in select_survivors(dominated, ["minimize", "minimize"], 5, "rank_sum")


def test_crowding_matches_optuna_and_prefers_spread() -> None:
    rng = np.random.default_rng(0)
    values = rng.random((9, 3))
    d = crowding_distance(values, ["minimize"] * 3)
    # brute force: sum over objectives of neighbour gaps normalised by the range, extremes infinite
    expected = np.zeros(9)
    for k in range(3):
        order = sorted(range(9), key=lambda i: (values[i, k], i))
        span = values[order[-1], k] - values[order[0], k]
        expected[order[0]] = expected[order[-1]] = np.inf
        for a, b, c in zip(order, order[1:], order[2:], strict=False):
            expected[b] += (values[c, k] - values[a, k]) / span
    assert np.allclose(d, expected)
    line = [[float(i), float(10 - i)] for i in range(11)]  # evenly spread except a cluster near 5
    line += [[5.1, 4.9], [5.2, 4.8]]
    kept = select_survivors(line, ["minimize", "minimize"], 4, "crowding")
    assert {0, 10} <= set(kept) and 11 not in kept and 12 not in kept


def test_constrained_domination_puts_feasible_first() -> None:
    values = [[0.0, 0.0], [5.0, 5.0], [1.0, 1.0]]
    fronts = non_dominated_sort(values, ["minimize", "minimize"], [2.0, 0.0, 1.0])
    assert fronts == [[1], [2], [0]]
    assert select_survivors(values, ["minimize", "minimize"], 1, violations=[2.0, 0.0, 1.0]) == [1]


def test_selection_of_all_permutations_is_order_independent_as_a_set() -> None:
    values = [[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [2.5, 2.5], [4.0, 4.0]]
    base = set(select_survivors(values, ["minimize", "minimize"], 3))
    for perm in itertools.permutations(range(5)):
        got = select_survivors([values[i] for i in perm], ["minimize", "minimize"], 3)
        assert {perm[i] for i in got} == base


def test_genotype_strings_round_trip_through_operators() -> None:
    space = CellSpace()
    rng = np.random.default_rng(9)
    g = space.random(rng)
    for kind in CELL_MUTATIONS:
        out, _ = mutate(space, g, kind, rng)
        assert Genotype.parse(str(out)) == out
