"""A space added from outside the package: one class with its operator tables and a registration,
and the sampler, the evolution, presets' ``make_space`` and stored studies work with it unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import optuna
import pytest
from optuna.distributions import BaseDistribution, CategoricalDistribution
from torch import nn

from nas_sampler import GeneticCellSampler
from nas_sampler.genotype import Edge, Genotype
from nas_sampler.phenotype import Cell
from nas_sampler.space import SPACES, SearchSpace, make_space, recorded_space, register_space, space_from_definition

optuna.logging.set_verbosity(optuna.logging.WARNING)


def flip_one(space: ChainSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray) -> tuple[Genotype, str]:
    ops = [e.op for _, e in g.edges()]
    i = int(rng.integers(len(ops)))
    ops[i] = space.ops[int(rng.choice(len(space.ops), p=op_p))]
    return space.of(ops), ops[i]


def one_point(space: ChainSpace, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
    cut = int(rng.integers(1, space.length))
    return space.of([e.op for _, e in a.edges()][:cut] + [e.op for _, e in b.edges()][cut:])


class ChainSpace(SearchSpace):
    """Node i reads node i - 1 through one operation."""

    kind = "test_chain"
    mutations = {"flip_one": flip_one}
    crossovers = {"one_point": one_point}

    def __init__(self, length: int = 4, ops: tuple[str, ...] = ("skip_connect", "nor_conv_3x3", "avg_pool_3x3")):
        super().__init__(ops, width=4, cells_per_stage=1)
        self.length = length

    def of(self, ops: list[str]) -> Genotype:
        return Genotype([Edge(op, i)] for i, op in enumerate(ops))

    def definition(self) -> dict[str, Any]:
        return {"kind": self.kind, "length": self.length, "ops": list(self.ops)}

    def problems(self, g: Genotype) -> list[str]:
        ok = g.num_nodes == self.length and all(len(n) == 1 and n[0].src == i for i, n in enumerate(g.nodes))
        return [] if ok else [f"not a chain of {self.length}"]

    def repair(self, g: Genotype) -> Genotype:
        return g

    def random(self, rng: np.random.Generator) -> Genotype:
        return self.of([self.ops[int(rng.integers(len(self.ops)))] for _ in range(self.length)])

    def distributions(self) -> dict[str, BaseDistribution]:
        return {f"node{i + 1}": CategoricalDistribution(self.ops) for i in range(self.length)}

    def to_params(self, g: Genotype) -> dict[str, Any]:
        return {f"node{node}": e.op for node, e in g.edges()}

    def _raw_from_params(self, params: dict[str, Any]) -> Genotype:
        return self.of([params[f"node{i + 1}"] for i in range(self.length)])

    def cell(self, g: Genotype, C_in: int, stride: int = 1) -> nn.Module:
        return Cell(g, C_in, stride=stride, combine="sum")

    def final_network(self, genotypes: list[Genotype], num_classes: int = 10, in_channels: int = 3, **kw: Any):
        return self.scoring_network(genotypes[0], num_classes, in_channels)


@pytest.fixture
def chain() -> Iterator[type[ChainSpace]]:
    register_space(ChainSpace)
    yield ChainSpace
    SPACES.pop(ChainSpace.kind)


def test_a_registered_space_is_known_by_its_kind(chain: type[ChainSpace]) -> None:
    assert make_space("test_chain", length=3) == ChainSpace(length=3)
    assert space_from_definition(ChainSpace(length=5).definition()) == ChainSpace(length=5)


def test_the_sampler_evolves_a_registered_space_with_its_own_operators(chain: type[ChainSpace]) -> None:
    space = ChainSpace(length=5)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=GeneticCellSampler(6, seed=0))

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        ops = [e.op for _, e in space.suggest(trial).edges()]
        return float(ops.count("skip_connect")), float(ops.count("nor_conv_3x3"))

    study.optimize(objective, n_trials=24)
    assert recorded_space(study) == space
    texts = [t.user_attrs["genotype"] for t in study.trials]
    assert len(set(texts)) == len(texts)  # no child proposed twice
    records = [t.system_attrs[f"{GeneticCellSampler.__name__}:slot"]["child"] for t in study.trials[6:]]
    assert any(r["mutations"] == ["flip_one"] for r in records)  # the space's own mutation, by name
    assert any(r["crossover"] == "one_point" for r in records)
    best = max(t.values[1] - t.values[0] for t in study.trials)
    assert best > max(t.values[1] - t.values[0] for t in study.trials[:6])  # evolution improved on generation 0


def test_registering_a_space_without_operators_is_refused() -> None:
    class Bare(ChainSpace):
        kind = "test_bare"
        mutations: dict = {}

    with pytest.raises(Exception, match="tables of mutations and crossovers"):
        register_space(Bare)
    assert "test_bare" not in SPACES
