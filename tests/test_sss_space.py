"""NATS-Bench's size space: the benchmark's network exactly (its parameter count on every row of the
table), genotypes in the benchmark's notation, the channel operators, and every sampler driving it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch

from nas_sampler import (
    ConfigError,
    DataError,
    GeneticCellSampler,
    Genotype,
    GenotypeError,
    NB201Space,
    SSSSpace,
    TrainingFreeObjective,
    build_final_network,
    count_parameters,
    export_final,
)
from nas_sampler.evolution import crossover, mutate
from nas_sampler.final import choose_trials
from nas_sampler.linear_regions import linear_region_count, random_region_inputs, thin_network
from nas_sampler.presets import config_from_dict
from nas_sampler.space import make_space, recorded_space, space_from_definition
from nas_sampler.space.sss import CHANNEL_CHOICES, LAYERS, SizeNetwork, parameter_count, read_ground_truth

optuna.logging.set_verbosity(optuna.logging.WARNING)

SSS_CSV = Path(__file__).resolve().parents[2] / "shared" / "data" / "nats_sss" / "cifar10_test_accuracy.csv"
SPACE = SSSSpace()
BEST_NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
C = CHANNEL_CHOICES
Table = dict[str, tuple[float, int]]  # genotype string -> (accuracy %, parameters)


@pytest.fixture
def sss_table() -> Table:
    if not SSS_CSV.exists():
        pytest.skip(f"NATS-Bench size-space table not found at {SSS_CSV}")
    return read_ground_truth(SSS_CSV)


def _module_count(widths: tuple[int, ...], num_classes: int = 10, in_channels: int = 3) -> int:
    with torch.device("meta"):  # shapes only: no weights allocated or initialised
        return count_parameters(SizeNetwork(widths, num_classes=num_classes, in_channels=in_channels))


def _randoms(n: int, seed: int = 0) -> list[Genotype]:
    rng = np.random.default_rng(seed)
    return [SPACE.random(rng) for _ in range(n)]


# ---- the benchmark's network ------------------------------------------------------------------


def test_the_network_has_the_benchmarks_parameter_count_on_every_row(sss_table: Table) -> None:
    assert len(sss_table) == 32_768
    rows = sorted(sss_table)
    for text in rows:  # the closed form against the table, all rows
        g = SPACE.parse(text)
        assert str(g) == text
        assert SPACE.parameter_count(g) == sss_table[text][1], text
    rng = np.random.default_rng(0)
    for i in rng.choice(len(rows), size=50, replace=False):  # the closed form against real modules
        widths = SPACE.parse(rows[i]).widths
        assert _module_count(widths) == parameter_count(widths) == sss_table[rows[i]][1], rows[i]


def test_the_readmes_rows_without_the_table() -> None:
    assert count_parameters(SPACE.final_network([SPACE.parse("8:8:8:8:8")])) == 11_714
    assert count_parameters(SPACE.final_network([SPACE.parse("64:64:56:64:24")])) == 536_618


@pytest.mark.parametrize(("num_classes", "in_channels"), [(10, 3), (100, 3), (7, 1)])
def test_the_closed_form_counts_what_the_modules_hold(num_classes: int, in_channels: int) -> None:
    for g in _randoms(30, seed=num_classes):
        widths = SPACE.widths_of(g)
        assert parameter_count(widths, num_classes, in_channels) == _module_count(widths, num_classes, in_channels)


def test_widths_map_to_the_layers_as_in_nats_bench() -> None:
    net = SPACE.scoring_network(SPACE.parse("8:16:24:32:40"))
    assert net.stem[0].out_channels == 8
    cell1, red1, cell2, red2, cell3 = net.cells
    assert [type(m).__name__ for m in net.cells] == ["SizeCell", "ResNetBasicBlock"] * 2 + ["SizeCell"]
    assert (cell1.layers[0].op[1].in_channels, cell1.out_channels) == (8, 8)  # stem and first cell share width 0
    assert (red1.conv_a.op[1].in_channels, red1.conv_b.op[1].out_channels) == (8, 16)
    convs = [m for m in cell2.modules() if isinstance(m, torch.nn.Conv2d)]
    assert {(m.in_channels, m.out_channels) for m in convs} == {(16, 24), (24, 24)}  # a cell changes the width
    assert sum(m.kernel_size == (1, 1) for m in convs) == 1  # the skip entry projects 16 -> 24
    assert (red2.conv_a.op[1].in_channels, red2.conv_b.op[1].out_channels, cell3.out_channels) == (24, 32, 40)
    assert net.classifier.in_features == 40
    same = SPACE.scoring_network(SPACE.parse("8:8:8:8:8")).cells[0]
    assert sum(isinstance(m, torch.nn.Conv2d) for m in same.modules()) == 5  # equal widths: the skip is the identity


def test_the_scoring_network_runs_forward_and_backward_on_two_images() -> None:
    torch.manual_seed(0)
    net = SPACE.scoring_network(SPACE.parse("64:64:56:64:24"))
    out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_the_final_network_is_the_benchmarks_network_of_one_genotype() -> None:
    g = SPACE.parse("16:32:32:48:64")
    net = SPACE.final_network([g], num_classes=100, in_channels=1)
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 100)
    assert count_parameters(net) == SPACE.parameter_count(g, num_classes=100, in_channels=1)
    assert SPACE.final_cells == SPACE.max_final_cells == 1
    with pytest.raises(ConfigError, match="one genotype.*got 2"):
        SPACE.final_network([g, g])
    with pytest.raises(ConfigError, match="takes no options"):
        SPACE.final_network([g], width=32)


def test_one_cell_serves_the_tournament_and_the_thin_network() -> None:
    g = SPACE.parse("24:64:64:64:64")
    cell = SPACE.cell(g, 16)
    assert cell.out_channels == 24 and cell(torch.randn(2, 16, 8, 8)).shape == (2, 24, 8, 8)
    assert SPACE.cell(g, 16, stride=2)(torch.randn(2, 16, 8, 8)).shape == (2, 24, 4, 4)
    assert linear_region_count(thin_network(SPACE, g), random_region_inputs(size=200), device="cpu") > 1


# ---- genotypes --------------------------------------------------------------------------------


def test_genotypes_are_written_in_the_benchmarks_notation() -> None:
    g = SPACE.parse("64:64:56:64:24")
    assert str(g) == "64:64:56:64:24" and g.widths == (64, 64, 56, 64, 24)
    assert Genotype.parse(str(g)) == g and hash(Genotype.parse(str(g))) == hash(g)
    long = "|width:64~0|+|width:64~1|+|width:56~2|+|width:64~3|+|width:24~4|"
    assert Genotype.parse(long) == g  # the chain written entry by entry is the same genotype
    assert Genotype.parse(BEST_NB201).widths is None  # a cell is not a chain of widths


def test_random_genotypes_are_valid_and_cover_every_choice() -> None:
    gs = _randoms(300)
    assert all(SPACE.problems(g) == [] for g in gs)
    for layer in range(len(LAYERS)):
        assert {g.widths[layer] for g in gs} == set(C)
    assert len({str(g) for g in gs}) > 250


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("64:64:7:64:24", ["layer 2 (cell) has width 7, not one of [8, 16, 24, 32, 40, 48, 56, 64]"]),
        ("64:64:64:64", ["it has 4 widths, the size space has 5"]),
        (BEST_NB201, ["not a chain of layer widths", "'64:64:56:64:24'"]),
    ],
)
def test_invalid_genotypes_name_the_bad_value_and_the_fix(text: str, expected: list[str]) -> None:
    with pytest.raises(GenotypeError) as err:
        SPACE.parse(text)
    for part in [*expected, "repair"]:
        assert part in str(err.value)


def test_repair_snaps_every_width_to_the_nearest_choice() -> None:
    assert str(SPACE.repair(Genotype.parse("7:60:100:1:33"))) == "8:56:64:8:32"
    assert str(SPACE.repair(Genotype.parse("64:64"))) == "64:64:8:8:8"  # missing layers: the smallest width
    assert str(SPACE.repair(Genotype.parse("8:8:8:8:8:8:8"))) == "8:8:8:8:8"
    assert SPACE.is_valid(SPACE.repair(Genotype.parse(BEST_NB201)))
    g = SPACE.parse("16:24:32:40:48")
    assert SPACE.repair(g) is g


def test_channel_choices_are_a_constructor_argument() -> None:
    small = SSSSpace(channel_choices=[16, 32, 64])
    assert small.distributions()["channels_0"] == optuna.distributions.CategoricalDistribution([16, 32, 64])
    assert SPACE.distributions()["channels_4"] == optuna.distributions.IntDistribution(8, 64, step=8)
    assert {w for g in [small.random(np.random.default_rng(s)) for s in range(50)] for w in g.widths} == {16, 32, 64}
    assert not small.is_valid(SPACE.parse("8:8:8:8:8"))
    for bad in ([], [16, 8], [0, 8], [8, 8], [8.0]):
        with pytest.raises(ConfigError, match="channel_choices"):
            SSSSpace(channel_choices=bad)


def test_the_space_is_known_by_its_kind_and_definition() -> None:
    assert make_space("nats_sss") == SPACE
    assert space_from_definition(SPACE.definition()) == SPACE
    assert space_from_definition(SSSSpace([8, 32]).definition()) == SSSSpace([8, 32]) != SPACE
    assert SPACE.definition() == {"kind": "nats_sss", "channel_choices": list(C)}


def test_params_round_trip() -> None:
    for g in _randoms(100):
        params = SPACE.to_params(g)
        assert list(params) == [f"channels_{i}" for i in range(5)]
        assert SPACE.from_params(params) == g
        assert SPACE.distributions_of(g).keys() == params.keys()
    assert str(SPACE.from_params(dict.fromkeys(SPACE.distributions(), 60))) == "56:56:56:56:56"  # repaired
    with pytest.raises(GenotypeError, match="channels_4"):
        SPACE.from_params({f"channels_{i}": 8 for i in range(4)})
    with pytest.raises(GenotypeError, match="'channels_0' is 'wide'"):
        SPACE.from_params({**SPACE.to_params(SPACE.parse("8:8:8:8:8")), "channels_0": "wide"})


# ---- genetic operators ------------------------------------------------------------------------


def _moves(a: Genotype, b: Genotype) -> list[int]:
    """Per changed layer, how many steps along the choices it moved."""
    return [C.index(y) - C.index(x) for x, y in zip(a.widths, b.widths, strict=True) if x != y]


@pytest.mark.parametrize(("kind", "sign"), [("grow_channels", 1), ("shrink_channels", -1)])
def test_grow_and_shrink_move_one_width_one_step(kind: str, sign: int) -> None:
    rng = np.random.default_rng(1)
    for g in [*_randoms(200), SPACE.parse("64:8:64:8:64")]:
        child, op = mutate(SPACE, g, kind, rng)
        assert SPACE.problems(child) == [] and op is None
        assert _moves(g, child) == [sign]
    end = "64:64:64:64:64" if sign > 0 else "8:8:8:8:8"
    assert str(mutate(SPACE, SPACE.parse(end), kind, rng)[0]) == end  # nowhere to go: unchanged


def test_resize_moves_one_width_to_another_choice() -> None:
    rng = np.random.default_rng(2)
    jumps = set()
    for g in _randoms(300):
        child, _ = mutate(SPACE, g, "resize_channels", rng)
        assert SPACE.problems(child) == []
        (move,) = _moves(g, child)
        jumps.add(move)
    assert jumps == set(range(-7, 8)) - {0}  # any distance, either way


def test_crossovers_take_each_width_from_a_parent() -> None:
    rng = np.random.default_rng(3)
    gs = _randoms(200, seed=3)
    mixed = 0
    for a, b in zip(gs[::2], gs[1::2], strict=True):
        child = crossover(SPACE, a, b, "uniform", rng)
        assert SPACE.problems(child) == []
        assert all(w in (x, y) for w, x, y in zip(child.widths, a.widths, b.widths, strict=True))
        mixed += child not in (a, b)
        low = crossover(SPACE, a, b, "min", rng)
        assert low.widths == tuple(map(min, a.widths, b.widths))
    assert mixed > 80


# ---- samplers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sampler",
    [optuna.samplers.RandomSampler(seed=0), optuna.samplers.TPESampler(seed=0, n_startup_trials=4)],
    ids=["random", "tpe"],
)
def test_optunas_samplers_drive_the_space(sampler: optuna.samplers.BaseSampler) -> None:
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: float(SPACE.parameter_count(SPACE.suggest(t))), n_trials=12)
    assert recorded_space(study) == SPACE
    for t in study.trials:
        g = SPACE.parse(t.user_attrs["genotype"])
        assert SPACE.genotype_of(t) == g and SPACE.to_params(g) == t.params


def test_nsga2_drives_the_space_on_accuracy_against_size() -> None:
    study = optuna.create_study(
        directions=["minimize", "maximize"], sampler=optuna.samplers.NSGAIISampler(population_size=4, seed=0)
    )
    study.optimize(lambda t: (SPACE.parameter_count(g := SPACE.suggest(t)), float(min(g.widths))), n_trials=12)
    assert all(SPACE.is_valid(SPACE.genotype_of(t)) for t in study.trials)


def test_the_genetic_sampler_evolves_the_space_with_its_channel_operators() -> None:
    study = optuna.create_study(sampler=GeneticCellSampler(population_size=4, space=SSSSpace(), seed=0))
    study.optimize(lambda t: -float(SPACE.parameter_count(SPACE.suggest(t))), n_trials=12)
    assert len(study.trials) == 12 and all(t.state.name == "COMPLETE" for t in study.trials)
    texts = [t.user_attrs["genotype"] for t in study.trials]
    assert len(set(texts)) == 12 and all(SPACE.is_valid(SPACE.parse(s)) for s in texts)
    records = [t.system_attrs[f"{GeneticCellSampler.__name__}:slot"]["child"] for t in study.trials[4:]]
    used = {m for r in records for m in r["mutations"]} | {r["crossover"] for r in records}
    assert used - {None} <= set(SPACE.mutations) | set(SPACE.crossovers) and used - {None}
    assert study.best_value < min(t.value for t in study.trials[:4])  # bigger networks than generation 0's


def test_the_training_free_objective_scores_the_space() -> None:
    objective = TrainingFreeObjective(SSSSpace(), data="builtin", batch_size=8, device="cpu")
    study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(objective, n_trials=3)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    for t in study.trials:
        assert t.user_attrs["params"] == SPACE.parameter_count(SPACE.parse(t.user_attrs["genotype"]))


def test_a_parameter_budget_steers_the_genetic_search_of_the_space() -> None:
    budget = 300_000  # about the median of the space's networks: generation 0 has some on either side
    objective = TrainingFreeObjective(SSSSpace(), data="builtin", batch_size=8, device="cpu", max_params=budget)
    sampler = GeneticCellSampler(population_size=4, space=SSSSpace(), seed=0)
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    study.optimize(objective, n_trials=8)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 8
    for t in study.trials:  # the closed-form count of the benchmark's network, against the budget
        params = SPACE.parameter_count(SPACE.parse(t.user_attrs["genotype"]), num_classes=objective.num_classes)
        assert t.user_attrs["params"] == params and t.constraints == {"params": float(params - budget)}
    assert 0 < sum(t.constraints["params"] <= 0 for t in study.trials[:4]) < 4
    assert all(t.user_attrs["params"] <= budget for t in sampler.select_parent(study, 2))
    assert study.best_trials and all(t.user_attrs["params"] <= budget for t in study.best_trials)
    (pick,) = choose_trials(study, 1)  # what export_final builds
    assert pick.user_attrs["params"] <= budget


def test_a_preset_names_the_space_by_its_kind() -> None:
    cfg = config_from_dict({"space": {"kind": "nats_sss", "channel_choices": [8, 64]}})
    assert space_from_definition(cfg.space) == SSSSpace([8, 64])
    with pytest.raises(ConfigError, match="'width' is not a setting of space 'nats_sss'"):
        config_from_dict({"space": {"kind": "nats_sss", "width": 16}})


def test_the_chosen_network_is_exported_and_rebuilt(tmp_path: Path) -> None:
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=1))
    study.optimize(lambda t: (SPACE.parameter_count(g := SPACE.suggest(t)), float(sum(g.widths))), n_trials=4)
    record = export_final(study, tmp_path / "net.json", num_classes=10, in_channels=3)
    (text,) = record["genotypes"]
    assert record["parameters"] == SPACE.parameter_count(SPACE.parse(text))
    assert count_parameters(build_final_network(tmp_path / "net.json")) == record["parameters"]
    with pytest.raises(ConfigError, match="n_cells=2"):
        export_final(study, tmp_path / "two.json", n_cells=2, num_classes=10, in_channels=3)


def test_another_spaces_study_refuses_the_size_space() -> None:
    study = optuna.create_study()
    study.optimize(lambda t: float(len(NB201Space().suggest(t).edges())), n_trials=1)
    with pytest.raises(ConfigError, match="was searched with space"):
        study.optimize(lambda t: float(SPACE.parameter_count(SPACE.suggest(t))), n_trials=1)


# ---- the ground truth -------------------------------------------------------------------------


def test_the_ground_truth_is_keyed_by_genotype_string(sss_table: Table) -> None:
    assert sss_table["64:64:56:64:24"] == (93.65, 536_618)
    assert max(sss_table, key=lambda k: sss_table[k][0]) == "64:64:56:64:24"


def test_a_missing_or_foreign_table_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        read_ground_truth(tmp_path / "absent.csv")
    other = tmp_path / "nb201.csv"
    with open(other, "w", newline="") as f:
        csv.writer(f).writerows([["arch", "accuracy"], [BEST_NB201, "94.37"]])
    with pytest.raises(DataError, match="columns"):
        read_ground_truth(other)
