"""The original design's cell space, :class:`CellSpace`, and its genetic operators.

A genotype's genes are its (node, source, operation) entries, each with a channel count. Mutations
and crossovers are small named functions over those genes, collected in ``MUTATIONS`` and
``CROSSOVERS`` in the order the adaptive state counts them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from torch import nn

from nas_sampler import ops as _ops
from nas_sampler.errors import ConfigError
from nas_sampler.genotype import Edge, Genotype
from nas_sampler.space.base import Crossover, Mutation, SearchSpace, ask, check_positive_int, choice, register_space
from nas_sampler.space.cell_encoding import ENCODINGS, read_params
from nas_sampler.space.channel_ops import (
    Genes,
    from_genes,
    genes,
    grow_channels,
    minimum,
    shrink_channels,
    snap,
    step,
    uniform,
)

# ---- mutations: (space, genotype, rng, op_probs) -> (child, operation chosen or None) --------------
# grow_channels and shrink_channels are shared with the size space: nas_sampler.space.channel_ops


def add_op(space: CellSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray) -> tuple[Genotype, str | None]:
    """Add an operation to an edge, or grow it when present; the operation is chosen by success rate."""
    found, n = genes(g), g.num_nodes
    node = int(rng.integers(1, n + 1))
    src = int(rng.integers(0, node))
    op = choice(rng, space.ops, op_p)
    key = (node, src, op)
    if key in found:
        found[key] = step(space.channel_choices, found[key], +1)
    else:
        found[key] = choice(rng, space.positive_channels)
    return space.repair(from_genes(found, n)), op


def add_node(space: CellSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray) -> tuple[Genotype, str | None]:
    """Append a node reading the current output node (and, half the time, one more earlier node)."""
    found, n = genes(g), g.num_nodes
    if n >= space.max_nodes:
        return space.repair(from_genes(found, n)), None
    op = choice(rng, space.ops, op_p)
    found[(n + 1, n, op)] = choice(rng, space.positive_channels)
    if rng.random() < 0.5:
        found.setdefault(
            (n + 1, int(rng.integers(0, n + 1)), choice(rng, space.ops, op_p)),
            choice(rng, space.positive_channels),
        )
    return space.repair(from_genes(found, n + 1)), op


def remove_node(
    space: CellSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """Remove a node, folding its entries into the previous node; later sources are renumbered."""
    found, n = genes(g), g.num_nodes
    if n <= 1:
        return space.repair(from_genes(found, n)), None
    p = int(rng.integers(1, n + 1))
    new: Genes = {}

    def put(key: tuple[int, int, str], ch: int) -> None:
        new[key] = snap(space.channel_choices, new[key] + ch) if key in new else ch

    for (node, src, op), ch in sorted(found.items()):
        if node == p:
            continue
        put((node if node < p else node - 1, src if src < p else src - 1, op), ch)
    if p > 1:  # fold the removed node's entries into the previous node, where they can be read
        for (node, src, op), ch in sorted(found.items()):
            if node == p and src < p - 1:
                put((p - 1, src, op), ch)
    return space.repair(from_genes(new, n - 1)), None


def swap_edges(
    space: CellSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """Swap the contents of two edges."""
    found, n = genes(g), g.num_nodes
    positions = [(i, j) for i in range(1, n + 1) for j in range(i)]
    content = {pos: {op: c for (i, j, op), c in found.items() if (i, j) == pos} for pos in positions}
    filled = [pos for pos in positions if content[pos]]
    if filled and len(positions) > 1:
        a = choice(rng, filled)
        others = [pos for pos in positions if content[pos] != content[a]]
        if others:
            b = choice(rng, others)
            found = {k: c for k, c in found.items() if (k[0], k[1]) not in (a, b)}
            for pos, src_pos in ((a, b), (b, a)):
                for op, c in content[src_pos].items():
                    found[(pos[0], pos[1], op)] = c
    return space.repair(from_genes(found, n)), None


def drop_weakest(
    space: CellSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """Drop the entry with the fewest channels (ties: the least successful operation) from the first edge."""
    found = genes(g)
    first = sorted((c, op) for (i, j, op), c in found.items() if (i, j) == (1, 0))
    if len(first) > 1:
        rate = dict(zip(space.ops, op_p, strict=True))
        _, op = min(first, key=lambda t: (t[0], rate[t[1]], t[1]))
        del found[(1, 0, op)]
    return space.repair(from_genes(found, g.num_nodes)), None


MUTATIONS: dict[str, Mutation] = {
    "add_op": add_op,
    "grow_channels": grow_channels,
    "shrink_channels": shrink_channels,
    "add_node": add_node,
    "remove_node": remove_node,
    "swap_edges": swap_edges,
    "drop_weakest": drop_weakest,
}

# ---- crossovers: (space, a, b, rng) -> child -----------------------------------------------------


# uniform and minimum are shared with the size space: nas_sampler.space.channel_ops
CROSSOVERS: dict[str, Crossover] = {"uniform": uniform, "min": minimum}


@register_space
class CellSpace(SearchSpace):
    """The original design: up to ``max_nodes`` nodes; node i reads every node j < i through any
    subset of the operations, each with its own output-channel count (0 = absent); a node is the
    concatenation of its entries, the cell output is the last node.

    The default channel choices {0, 4, 8, 16, 32, 64} are the original's: powers of two keep the
    grid coarse enough for mutation to move across it in a few steps. ``encoding`` is how a genotype
    becomes Optuna parameters (:mod:`nas_sampler.space.cell_encoding`); the networks do not depend on it.
    """

    kind = "cell"
    mutations = MUTATIONS
    crossovers = CROSSOVERS
    final_cells = 3  # as many cells as FinalNetwork's default reductions (32 -> 4 pixels)

    def __init__(
        self,
        ops: tuple[str, ...] | list[str] = _ops.CELL_OPS,
        max_nodes: int = 4,
        channel_choices: tuple[int, ...] | list[int] = (0, 4, 8, 16, 32, 64),
        width: int = 16,
        cells_per_stage: int = 1,
        encoding: str = "conditional",
    ):
        super().__init__(ops, width, cells_per_stage)
        check_positive_int("max_nodes", max_nodes)
        if encoding not in ENCODINGS:
            raise ConfigError(f"encoding={encoding!r} is unknown: use one of {', '.join(map(repr, ENCODINGS))}")
        choices = tuple(channel_choices)
        if (
            not choices
            or any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in choices)
            or list(choices) != sorted(set(choices))
            or choices[0] != 0
            or len(choices) < 2
        ):
            raise ConfigError(
                f"channel_choices={list(choices)} is invalid: give increasing distinct "
                "non-negative integers starting with 0 (absent) and at least one positive count"
            )
        self.max_nodes = max_nodes
        self.channel_choices = choices
        self.encoding = encoding
        self._distributions: dict[str, BaseDistribution] | None = None

    @property
    def positive_channels(self) -> tuple[int, ...]:
        return self.channel_choices[1:]

    def definition(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "ops": list(self.ops),
            "max_nodes": self.max_nodes,
            "channel_choices": list(self.channel_choices),
            "width": self.width,
            "cells_per_stage": self.cells_per_stage,
            "encoding": self.encoding,
        }

    @classmethod
    def from_definition(cls, definition: dict[str, Any]) -> CellSpace:
        # studies made before the conditional encoding record no encoding: theirs is the flat one
        return cls(**{"encoding": "flat", **definition})

    def distributions(self) -> dict[str, BaseDistribution]:
        # built once: a space never changes, and every suggest, read and store walks this table
        if self._distributions is None:
            self._distributions = ENCODINGS[self.encoding].distributions(self)
        return self._distributions

    def required_params(self) -> frozenset[str]:
        if self.encoding == "flat":
            return frozenset(self.distributions())
        return frozenset({"nodes", "node1_entry1_op", "node1_entry1_src", "node1_entry1_channels"})

    def to_params(self, g: Genotype) -> dict[str, Any]:
        return ENCODINGS[self.encoding].to_params(self, self.validate(g))

    def _raw_from_params(self, params: dict[str, Any]) -> Genotype:
        return read_params(self, params)

    def suggest_raw(self, trial: optuna.trial.BaseTrial) -> Genotype:
        return ENCODINGS[self.encoding].walk(self, lambda name, dist: ask(trial, name, dist))

    def problems(self, g: Genotype) -> list[str]:
        found = []
        if not 1 <= g.num_nodes <= self.max_nodes:
            found.append(f"it has {g.num_nodes} nodes, the space allows 1 to {self.max_nodes}")
        for i, node in enumerate(g.nodes, start=1):
            if not node:
                found.append(f"node {i} has no input")
            seen = set()
            for e in node:
                if e.op not in self.ops:
                    found.append(f"node {i}: operation {e.op!r} is not in the space's ops {list(self.ops)}")
                if not 0 <= e.src < i:
                    found.append(f"node {i}: source {e.src} must be an earlier node (0 to {i - 1})")
                if e.channels is None:
                    found.append(f"node {i}: entry '{e}' needs a channel count (write 'op:channels~src')")
                elif e.channels not in self.positive_channels:
                    found.append(
                        f"node {i}: channel count {e.channels} of '{e}' is not one of {list(self.positive_channels)}"
                    )
                if (e.src, e.op) in seen:
                    found.append(f"node {i}: operation {e.op!r} from node {e.src} appears twice")
                seen.add((e.src, e.op))
        return found

    def _snap(self, channels: int | None) -> int:
        if channels is None:
            return self.positive_channels[0]
        return min(self.positive_channels, key=lambda c: (abs(c - channels), c))

    def repair(self, g: Genotype) -> Genotype:
        nodes: list[dict[tuple[int, str], int]] = []
        for i, node in enumerate(g.nodes[: self.max_nodes], start=1):
            entries: dict[tuple[int, str], int] = {}
            for e in node:
                if e.op not in self.ops or not 0 <= e.src < i or e.channels == 0:
                    continue
                ch = self._snap(e.channels)
                entries[(e.src, e.op)] = max(ch, entries.get((e.src, e.op), 0))
            nodes.append(entries)
        while nodes and not nodes[-1]:
            nodes.pop()
        if not nodes:
            nodes = [{}]
        for i, entries in enumerate(nodes, start=1):
            if not entries:  # a node with no input reads the previous node, so the output depends on the input
                entries[(i - 1, self.ops[0])] = self.positive_channels[0]
        fixed = Genotype([Edge(op, src, ch) for (src, op), ch in n.items()] for n in nodes)
        return g if fixed == g else fixed

    def random(self, rng: np.random.Generator) -> Genotype:
        """Sparse random cells: 1 to max_nodes nodes, one or two entries per node."""
        n_nodes = int(rng.integers(1, self.max_nodes + 1))
        nodes = []
        for i in range(1, n_nodes + 1):
            entries = []
            for _ in range(int(rng.integers(1, 3))):
                entries.append(
                    Edge(
                        self.ops[int(rng.integers(len(self.ops)))],
                        int(rng.integers(i)),
                        int(self.positive_channels[int(rng.integers(len(self.positive_channels)))]),
                    )
                )
            nodes.append(entries)
        return self.repair(Genotype(nodes))

    # ---- networks -------------------------------------------------------------------------
    def cell(self, g: Genotype, C_in: int, stride: int = 1) -> nn.Module:
        from nas_sampler.phenotype import Cell

        return Cell(self.validate(g), C_in, stride=stride, combine="concat")

    def final_network(
        self, genotypes: list[Genotype], num_classes: int = 10, in_channels: int = 3, **kwargs: Any
    ) -> nn.Module:
        from nas_sampler.phenotype import FinalNetwork

        for g in genotypes:
            self.validate(g)
        return FinalNetwork(
            [lambda C_in, stride, g=g: self.cell(g, C_in, stride) for g in genotypes],
            width=kwargs.pop("width", self.width),
            num_classes=num_classes,
            in_channels=in_channels,
            **kwargs,
        )
