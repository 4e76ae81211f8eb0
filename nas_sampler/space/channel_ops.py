"""Genetic operators over channel counts, shared by every space whose genes carry them.

A genotype's genes here are its ``(node, source, operation) -> channels`` entries. The cell space
(:mod:`nas_sampler.space.cell`) and the NATS-Bench size space (:mod:`nas_sampler.space.sss`, where
each layer is one such entry) move, mix and intersect channel counts the same way, so the operators
live here once; a space only needs its ``channel_choices`` and its ``repair``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from nas_sampler.genotype import Edge, Genotype
from nas_sampler.space.base import choice

Genes = dict[tuple[int, int, str], int]  # (node, src, op) -> channels


class ChannelSpace(Protocol):
    """What these operators need of a space: its channel choices (increasing) and its repair."""

    channel_choices: tuple[int, ...]

    def repair(self, g: Genotype) -> Genotype: ...


def genes(g: Genotype) -> Genes:
    return {(node, e.src, e.op): int(e.channels or 0) for node, e in g.edges()}


def from_genes(entries: Mapping[tuple[int, int, str], int], num_nodes: int) -> Genotype:
    nodes: list[list[Edge]] = [[] for _ in range(num_nodes)]
    for (node, src, op), ch in sorted(entries.items()):
        if ch > 0 and 1 <= node <= num_nodes:
            nodes[node - 1].append(Edge(op, src, ch))
    return Genotype(nodes)


def snap(choices: tuple[int, ...], channels: int) -> int:
    """The nearest positive choice among ``choices`` (used when channels are summed by folding)."""
    return min((c for c in choices if c > 0), key=lambda c: (abs(c - channels), c))


def step(choices: tuple[int, ...], ch: int, delta: int) -> int:
    """``delta`` steps along ``choices`` from ``ch`` (or from its nearest choice), clamped at the ends."""
    i = choices.index(ch) if ch in choices else choices.index(snap(choices, ch))
    return choices[min(max(i + delta, 0), len(choices) - 1)]


def _resize(space: ChannelSpace, g: Genotype, rng: np.random.Generator, delta: int) -> Genotype:
    """One entry that can move ``delta`` steps (not already at that end of the choices), moved."""
    found = genes(g)
    bottom, top = space.channel_choices[0], space.channel_choices[-1]
    keys = sorted(k for k, c in found.items() if (c > bottom if delta < 0 else c < top))
    if keys:
        key = choice(rng, keys)
        found[key] = step(space.channel_choices, found[key], delta)
    return space.repair(from_genes(found, g.num_nodes))


# ---- mutations: (space, genotype, rng, op_probs) -> (child, operation chosen or None) --------------


def grow_channels(
    space: ChannelSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """One entry one step up the channel choices."""
    return _resize(space, g, rng, +1), None


def shrink_channels(
    space: ChannelSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """One entry one step down the channel choices (to 0, where 0 is a choice: removed)."""
    return _resize(space, g, rng, -1), None


def resize_channels(
    space: ChannelSpace, g: Genotype, rng: np.random.Generator, op_p: np.ndarray
) -> tuple[Genotype, str | None]:
    """One entry to any other channel choice, a random number of steps either way: the jump that
    grow and shrink, one step at a time, would need several generations of survival to make."""
    found = genes(g)
    keys = sorted(found)
    if keys:
        key = choice(rng, keys)
        others = [c for c in space.channel_choices if c != found[key]]
        if others:
            found[key] = choice(rng, others)
    return space.repair(from_genes(found, g.num_nodes)), None


# ---- crossovers: (space, a, b, rng) -> child -----------------------------------------------------


def uniform(space: ChannelSpace, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
    """Each gene from either parent with even odds; the depth of one of them."""
    ga, gb = genes(a), genes(b)
    keys = sorted(set(ga) | set(gb))
    n = a.num_nodes if rng.random() < 0.5 else b.num_nodes
    pick = rng.random(len(keys)) < 0.5
    child = {k: (ga if take_a else gb).get(k, 0) for k, take_a in zip(keys, pick, strict=True)}
    return space.repair(from_genes(child, n))


def minimum(space: ChannelSpace, a: Genotype, b: Genotype, rng: np.random.Generator) -> Genotype:
    """Each gene at the smaller of the parents' channel counts: what both parents agree on."""
    ga, gb = genes(a), genes(b)
    keys = sorted(set(ga) | set(gb))
    return space.repair(from_genes({k: min(ga.get(k, 0), gb.get(k, 0)) for k in keys}, max(a.num_nodes, b.num_nodes)))
