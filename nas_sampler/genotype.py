"""Genotypes: immutable cell descriptions with exactly one parser and one printer.

A genotype is a tuple of nodes; node ``i`` (1-based, node 0 is the cell input) is a tuple of
:class:`Edge` entries, each reading node ``src < i`` through operation ``op``. Cell-space genotypes
also carry each entry's output-channel count. The string form extends NAS-Bench-201's notation::

    |nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|          (NAS-Bench-201, no channels)
    |sep_conv_3x3:16~0|+|skip_connect:8~0|max_pool_3x3:32~1|   (CellSpace, op:channels~src)
    64:64:56:64:24                                             (a chain of widths, NATS-Bench SSS)

Nodes are joined by ``+``; within a node entries are kept in canonical order (by source, then
operation name) so equal cells have equal strings and hashes. A chain of widths (:meth:`Genotype.of_widths`:
node ``i`` holds the one entry ``width:C~(i-1)``) is written as NATS-Bench writes a size-space network,
its widths joined by ``:``; both spellings of a chain parse to the same genotype, and it prints short.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from nas_sampler.errors import GenotypeError

_ENTRY = re.compile(r"^(?P<op>[A-Za-z_][A-Za-z0-9_]*)(?::(?P<ch>\d+))?~(?P<src>\d+)$")
_WIDTHS = re.compile(r"^\d+(?::\d+)*$")
OP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
WIDTH_OP = "width"  # the entry of a chain of widths: a layer whose only gene is its channel count


class Edge(NamedTuple):
    """One operation reading node ``src``; ``channels`` is None in fixed-width spaces."""

    op: str
    src: int
    channels: int | None = None

    def __str__(self) -> str:
        ch = "" if self.channels is None else f":{self.channels}"
        return f"{self.op}{ch}~{self.src}"


def _canonical_node(entries: tuple[Edge, ...] | list[Edge]) -> tuple[Edge, ...]:
    return tuple(sorted((Edge(*e) for e in entries), key=lambda e: (e.src, e.op)))


@dataclass(frozen=True)
class Genotype:
    """A cell: ``nodes[k]`` holds the entries of node ``k + 1``. Hashable, ordered canonically."""

    nodes: tuple[tuple[Edge, ...], ...]

    def __init__(self, nodes) -> None:  # accepts any nested iterables, stores canonical tuples
        object.__setattr__(self, "nodes", tuple(_canonical_node(list(n)) for n in nodes))

    @staticmethod
    def of_widths(widths: Iterable[int]) -> Genotype:
        """A chain of layers, layer ``i`` reading layer ``i - 1`` with ``widths[i]`` channels: a network
        whose genes are its layer widths (NATS-Bench's size space)."""
        return Genotype([Edge(WIDTH_OP, i, int(w))] for i, w in enumerate(widths))

    @property
    def widths(self) -> tuple[int, ...] | None:
        """The layer widths of a chain of widths (:meth:`of_widths`), else None."""
        out = []
        for i, node in enumerate(self.nodes):
            if len(node) != 1 or node[0].op != WIDTH_OP or node[0].src != i or node[0].channels is None:
                return None
            out.append(node[0].channels)
        return tuple(out) if out else None

    def __str__(self) -> str:
        widths = self.widths
        if widths is not None:
            return ":".join(map(str, widths))
        return "+".join("|" + "|".join(str(e) for e in node) + "|" for node in self.nodes)

    def __repr__(self) -> str:
        return f"Genotype('{self}')"

    @property
    def num_nodes(self) -> int:
        """Intermediate nodes (the input node 0 is not counted)."""
        return len(self.nodes)

    def edges(self) -> list[tuple[int, Edge]]:
        """All entries as (node index, entry), node indices starting at 1."""
        return [(i + 1, e) for i, node in enumerate(self.nodes) for e in node]

    @staticmethod
    def parse(text: str) -> Genotype:
        """Parse the string form (syntax only; a space's ``parse`` also validates against it)."""
        if not isinstance(text, str):
            raise GenotypeError(f"a genotype string is needed, got {type(text).__name__} {text!r}")
        s = text.strip()
        if not s:
            raise GenotypeError("empty genotype string; expected e.g. '|nor_conv_3x3~0|+|skip_connect~0|none~1|'")
        if _WIDTHS.match(s):
            return Genotype.of_widths(int(w) for w in s.split(":"))
        nodes = []
        for k, part in enumerate(s.split("+")):
            if len(part) < 2 or not (part.startswith("|") and part.endswith("|")):
                raise GenotypeError(
                    f"malformed node {k + 1} {part!r} in genotype {text!r}: each node is written "
                    "'|op~src|op~src|' (or 'op:channels~src'), nodes joined by '+'; a chain of widths is "
                    "written as its widths joined by ':', e.g. '64:64:56:64:24'"
                )
            inner = part[1:-1]
            entries = []
            for token in inner.split("|") if inner else []:
                m = _ENTRY.match(token)
                if m is None:
                    raise GenotypeError(
                        f"malformed entry {token!r} in node {k + 1} of genotype {text!r}: "
                        "expected 'op~src' or 'op:channels~src', e.g. 'nor_conv_3x3~0' or 'sep_conv_3x3:16~1'"
                    )
                ch = m.group("ch")
                entries.append(Edge(m.group("op"), int(m.group("src")), None if ch is None else int(ch)))
            nodes.append(entries)
        return Genotype(nodes)
