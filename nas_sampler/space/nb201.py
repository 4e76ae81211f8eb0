"""NAS-Bench-201's cell space, :class:`NB201Space`, and its genetic operators.

Every genotype has the same six edges; the genes are the edges' operations.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution
from torch import nn

from nas_sampler import ops as _ops
from nas_sampler.errors import ConfigError
from nas_sampler.genotype import Edge, Genotype
from nas_sampler.space.base import Crossover, Mutation, SearchSpace, choice, register_space


def change_edge(
    space: NB201Space, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """One edge to another operation, chosen by success rate among the other operations."""
    edges = g.edges()
    node, edge = edges[int(rng.integers(len(edges)))]
    others = [i for i, op in enumerate(space.ops) if op != edge.op]
    if not others:
        return g, None
    p = op_p[others] / op_p[others].sum()
    op = space.ops[choice(rng, others, p)]
    nodes = [list(n) for n in g.nodes]
    nodes[node - 1] = [Edge(op, e.src) if e.src == edge.src else e for e in nodes[node - 1]]
    return space.repair(Genotype(nodes)), op


def uniform(space: NB201Space, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
    """Each edge's operation from either parent with even odds."""
    ea, eb = space.to_params(a), space.to_params(b)
    keys = sorted(ea)
    pick = rng.random(len(keys)) < 0.5
    return space.from_params({k: (ea if take_a else eb)[k] for k, take_a in zip(keys, pick, strict=True)})


MUTATIONS: dict[str, Mutation] = {"change_edge": change_edge}
CROSSOVERS: dict[str, Crossover] = {"uniform": uniform}


@register_space
class NB201Space(SearchSpace):
    """NAS-Bench-201: 4 nodes, 6 edges, one operation per edge, node j = sum_i<j op_ij(node i).

    Genotype strings are the benchmark's own notation. The scoring and final networks are the
    benchmark's macro skeleton (``width`` 16, ``cells_per_stage`` 5), so its ground truth applies.
    """

    kind = "nb201"
    mutations = MUTATIONS
    crossovers = CROSSOVERS
    final_cells = 1  # the benchmark's skeleton holds one cell
    max_final_cells = 1
    NUM_NODES = 3

    def __init__(
        self,
        ops: tuple[str, ...] | list[str] = _ops.NB201_OPS,
        width: int = 16,
        cells_per_stage: int = 5,
    ):
        super().__init__(ops, width, cells_per_stage)

    def definition(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ops": list(self.ops),
            "width": self.width,
            "cells_per_stage": self.cells_per_stage,
        }

    def param_name(self, node: int, src: int) -> str:
        return f"node{node}_in{src}"

    def distributions(self) -> dict[str, BaseDistribution]:
        dist = CategoricalDistribution(self.ops)
        return {self.param_name(i, j): dist for i in range(1, self.NUM_NODES + 1) for j in range(i)}

    def to_params(self, g: Genotype) -> dict[str, Any]:
        self.validate(g)
        return {self.param_name(node, e.src): e.op for node, e in g.edges()}

    def _raw_from_params(self, params: dict[str, Any]) -> Genotype:
        return Genotype(
            [Edge(str(params[self.param_name(i, j)]), j) for j in range(i)] for i in range(1, self.NUM_NODES + 1)
        )

    def problems(self, g: Genotype) -> list[str]:
        found = []
        if g.num_nodes != self.NUM_NODES:
            found.append(f"it has {g.num_nodes} nodes, NAS-Bench-201 cells have {self.NUM_NODES}")
        for i, node in enumerate(g.nodes, start=1):
            srcs = [e.src for e in node]
            if sorted(srcs) != list(range(i)):
                found.append(f"node {i} must read each of nodes 0..{i - 1} exactly once, it reads {srcs}")
            for e in node:
                if e.op not in self.ops:
                    found.append(f"node {i}: operation {e.op!r} is not in the space's ops {list(self.ops)}")
                if e.channels is not None:
                    found.append(f"node {i}: '{e}' has a channel count; NAS-Bench-201 entries are 'op~src'")
        return found

    def repair(self, g: Genotype) -> Genotype:
        nodes = []
        for i in range(1, self.NUM_NODES + 1):
            node = g.nodes[i - 1] if i <= g.num_nodes else ()
            chosen = {}
            for e in node:
                if e.op in self.ops and 0 <= e.src < i and e.src not in chosen:
                    chosen[e.src] = e.op
            nodes.append([Edge(chosen.get(j, self.ops[0]), j) for j in range(i)])
        fixed = Genotype(nodes)
        return g if fixed == g else fixed

    def random(self, rng: np.random.Generator) -> Genotype:
        return Genotype(
            [Edge(self.ops[int(rng.integers(len(self.ops)))], j) for j in range(i)]
            for i in range(1, self.NUM_NODES + 1)
        )

    def cell(self, g: Genotype, C_in: int, stride: int = 1) -> nn.Module:
        from nas_sampler.phenotype import Cell

        return Cell(self.validate(g), C_in, stride=stride, combine="sum")

    def final_network(
        self, genotypes: list[Genotype], num_classes: int = 10, in_channels: int = 3, **kwargs: Any
    ) -> nn.Module:
        if len(genotypes) != 1:
            raise ConfigError(
                f"NB201Space's final network is the benchmark skeleton with one cell; got {len(genotypes)} cells"
            )
        if kwargs:
            raise ConfigError(f"NB201Space's final network takes no options; got {sorted(kwargs)}")
        return self.scoring_network(genotypes[0], num_classes=num_classes, in_channels=in_channels)
