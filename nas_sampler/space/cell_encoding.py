"""How a :class:`~nas_sampler.space.cell.CellSpace` genotype becomes Optuna parameters.

Two encodings, one table (``ENCODINGS``); a space records its encoding in the study, so a study is
always read and extended with the encoding it was made with.

* ``"conditional"`` (the default): ``nodes``, then for each node its entries one by one, each an
  operation, a source and a channel count, with a yes/no parameter asking for one more entry
  (Optuna's define-by-run conditional parameters: an entry's parameters exist only when it does). A
  sampler that knows nothing of the space (Random, TPE at the start) then draws about two entries a
  node, cells of the kind ``CellSpace.random`` draws.
* ``"flat"``: the original 80 parameters, one channel count (0 = absent) per operation per edge. A
  uniform draw there switches on five of every six operations: giant cells. Kept for studies made
  with it (their recorded space has no ``encoding`` entry).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution

from nas_sampler.errors import GenotypeError
from nas_sampler.genotype import Edge, Genotype

if TYPE_CHECKING:
    from nas_sampler.space.cell import CellSpace

Ask = Callable[[str, BaseDistribution], Any]  # (name, distribution) -> value: a trial's suggest_*, or a dict read


@dataclass(frozen=True)
class Encoding:
    """``distributions(space)``: every parameter any genotype can have; ``walk(space, ask)``: the raw
    genotype read parameter by parameter, asking only for those that exist given the earlier ones;
    ``to_params(space, g)``: the parameters of a valid genotype."""

    distributions: Callable[[CellSpace], dict[str, BaseDistribution]]
    walk: Callable[[CellSpace, Ask], Genotype]
    to_params: Callable[[CellSpace, Genotype], dict[str, Any]]


# ---- flat: one channel count per (node, source, operation) ------------------------------------------


def _flat_name(node: int, src: int, op: str) -> str:
    return f"node{node}_in{src}_{op}"


def _flat_distributions(space: CellSpace) -> dict[str, BaseDistribution]:
    dist = CategoricalDistribution(space.channel_choices)
    return {_flat_name(i, j, op): dist for i in range(1, space.max_nodes + 1) for j in range(i) for op in space.ops}


def _flat_walk(space: CellSpace, ask: Ask) -> Genotype:
    dists = space.distributions()
    nodes = [
        [
            Edge(op, j, ch)
            for j in range(i)
            for op in space.ops
            if (ch := int(ask(_flat_name(i, j, op), dists[_flat_name(i, j, op)]))) != 0
        ]
        for i in range(1, space.max_nodes + 1)
    ]
    while nodes and not nodes[-1]:  # trailing empty nodes encode a shallower cell, not a defect
        nodes.pop()
    return Genotype(nodes)


def _flat_to_params(space: CellSpace, g: Genotype) -> dict[str, Any]:
    params: dict[str, Any] = dict.fromkeys(space.distributions(), 0)
    for node, e in g.edges():
        params[_flat_name(node, e.src, e.op)] = e.channels
    return params


# ---- conditional: nodes, then entries one by one ----------------------------------------------------

_YES_NO = CategoricalDistribution((False, True))


def _entries_at_most(space: CellSpace, node: int) -> int:
    return node * len(space.ops)  # one per (source, operation)


def _conditional_distributions(space: CellSpace) -> dict[str, BaseDistribution]:
    ops = CategoricalDistribution(space.ops)
    channels = CategoricalDistribution(space.positive_channels)
    dists: dict[str, BaseDistribution] = {"nodes": IntDistribution(1, space.max_nodes)}
    for i in range(1, space.max_nodes + 1):
        sources = CategoricalDistribution(tuple(range(i)))
        for k in range(1, _entries_at_most(space, i) + 1):
            if k > 1:
                dists[f"node{i}_entry{k}"] = _YES_NO
            dists[f"node{i}_entry{k}_op"] = ops
            dists[f"node{i}_entry{k}_src"] = sources
            dists[f"node{i}_entry{k}_channels"] = channels
    return dists


def _conditional_walk(space: CellSpace, ask: Ask) -> Genotype:
    dists = space.distributions()
    nodes = []
    for i in range(1, int(ask("nodes", dists["nodes"])) + 1):
        entries = []
        for k in range(1, _entries_at_most(space, i) + 1):
            if k > 1 and not ask(f"node{i}_entry{k}", _YES_NO):
                break
            name = f"node{i}_entry{k}"
            op, src = ask(f"{name}_op", dists[f"{name}_op"]), ask(f"{name}_src", dists[f"{name}_src"])
            entries.append(Edge(str(op), int(src), int(ask(f"{name}_channels", dists[f"{name}_channels"]))))
        nodes.append(entries)
    return Genotype(nodes)


def _conditional_to_params(space: CellSpace, g: Genotype) -> dict[str, Any]:
    params: dict[str, Any] = {"nodes": g.num_nodes}
    for i, node in enumerate(g.nodes, start=1):
        for k, e in enumerate(node, start=1):
            if k > 1:
                params[f"node{i}_entry{k}"] = True
            params.update({f"node{i}_entry{k}_op": e.op, f"node{i}_entry{k}_src": e.src})
            params[f"node{i}_entry{k}_channels"] = e.channels
        if len(node) < _entries_at_most(space, i):
            params[f"node{i}_entry{len(node) + 1}"] = False
    return params


ENCODINGS: dict[str, Encoding] = {
    "conditional": Encoding(_conditional_distributions, _conditional_walk, _conditional_to_params),
    "flat": Encoding(_flat_distributions, _flat_walk, _flat_to_params),
}


def read_params(space: CellSpace, params: Mapping[str, Any]) -> Genotype:
    """The raw genotype of a parameter dict; :class:`GenotypeError` naming the first missing one."""

    def ask(name: str, dist: BaseDistribution) -> Any:
        if name not in params:
            raise GenotypeError(f"parameter {name!r} of {space!r} is missing")
        return params[name]

    return ENCODINGS[space.encoding].walk(space, ask)
