"""Search spaces: which genotypes exist, their validation and repair, and the Optuna bridge.

A space turns a genotype into ordinary Optuna parameters (``to_params``/``from_params`` and
``distributions``), so any Optuna sampler can drive it, and builds the networks for a genotype.
"""

from __future__ import annotations

import json
import weakref
from abc import ABC, abstractmethod
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from torch import nn

from nas_sampler import ops as _ops
from nas_sampler.errors import ConfigError, GenotypeError, SpaceMismatchError
from nas_sampler.genotype import Edge, Genotype
from nas_sampler.rdb import store_params

SPACE_ATTR = "nas_sampler:space"
GENOTYPE_ATTR = "genotype"
REPAIRED_ATTR = "repaired_from"


class SearchSpace(ABC):
    """What every space offers; subclasses fix the cell's shape and its parameters."""

    kind: str = ""

    def __init__(self, ops: tuple[str, ...] | list[str], width: int, cells_per_stage: int):
        ops = tuple(ops)
        if not ops:
            raise ConfigError("ops is empty: give at least one operation name")
        if len(set(ops)) != len(ops):
            raise ConfigError(f"ops lists an operation twice: {list(ops)}")
        for op in ops:
            _ops.check_op(op)
        _positive_int("width", width)
        _positive_int("cells_per_stage", cells_per_stage)
        self.ops = ops
        self.width = width
        self.cells_per_stage = cells_per_stage

    # ---- identity -------------------------------------------------------------------------
    @abstractmethod
    def definition(self) -> dict[str, Any]:
        """A JSON-able description; equal definitions mean equal spaces."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and self.definition() == other.definition()

    def __hash__(self) -> int:
        return hash(json.dumps(self.definition(), sort_keys=True))

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.definition().items() if k != "kind")
        return f"{type(self).__name__}({args})"

    # ---- genotypes ------------------------------------------------------------------------
    @abstractmethod
    def problems(self, g: Genotype) -> list[str]:
        """Everything that makes ``g`` invalid in this space (empty when valid)."""

    @abstractmethod
    def repair(self, g: Genotype) -> Genotype:
        """The nearest valid genotype; a valid genotype is returned unchanged."""

    @abstractmethod
    def random(self, rng: np.random.Generator) -> Genotype:
        """A random valid genotype."""

    def validate(self, g: Genotype) -> Genotype:
        if not isinstance(g, Genotype):
            raise GenotypeError(f"expected a Genotype, got {type(g).__name__} {g!r}")
        found = self.problems(g)
        if found:
            raise GenotypeError(
                f"genotype '{g}' does not fit {self!r}: "
                + "; ".join(found)
                + ". Use space.repair(genotype) to make it valid"
            )
        return g

    def is_valid(self, g: Genotype) -> bool:
        return not self.problems(g)

    def parse(self, text: str) -> Genotype:
        """Read a genotype string and check it against this space."""
        return self.validate(Genotype.parse(text))

    # ---- the Optuna bridge ----------------------------------------------------------------
    @abstractmethod
    def distributions(self) -> dict[str, BaseDistribution]:
        """Every parameter of a genotype, by stable readable name."""

    @abstractmethod
    def to_params(self, g: Genotype) -> dict[str, Any]: ...

    @abstractmethod
    def _raw_from_params(self, params: dict[str, Any]) -> Genotype: ...

    def from_params(self, params: dict[str, Any]) -> Genotype:
        """The genotype of a parameter dict (repaired, so always valid)."""
        missing = [k for k in self.distributions() if k not in params]
        if missing:
            raise GenotypeError(f"parameters missing for {self!r}: {missing[:5]}")
        return self.repair(self._raw_from_params(params))

    def suggest(self, trial: optuna.trial.BaseTrial) -> Genotype:
        """Ask ``trial`` for a genotype through ordinary ``suggest_*`` calls.

        The first call in a study records this space there; a study that records another space
        refuses. A repaired genotype notes the original on the trial (``repaired_from``).
        """
        study = getattr(trial, "study", None)
        if study is not None:
            record_space(study, self)
        dists = self.distributions()
        if isinstance(trial, optuna.Trial):
            _store_sampled_params(trial, dists)
        params = {}
        for name, dist in dists.items():
            assert isinstance(dist, CategoricalDistribution)
            params[name] = trial.suggest_categorical(name, dist.choices)
        raw = self._raw_from_params(params)
        g = self.repair(raw)
        if g != raw and hasattr(trial, "set_user_attr"):
            trial.set_user_attr(REPAIRED_ATTR, str(raw))
        if hasattr(trial, "set_user_attr"):
            trial.set_user_attr(GENOTYPE_ATTR, str(g))
        return g

    # ---- networks -------------------------------------------------------------------------
    @abstractmethod
    def cell(self, g: Genotype, C_in: int, stride: int = 1) -> nn.Module: ...

    def scoring_network(self, g: Genotype, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
        """The network the heuristics score for ``g``: ``cells_per_stage`` cells of ``g`` per stage."""
        from nas_sampler.phenotype import StagedNetwork

        return StagedNetwork(
            lambda C_in: self.cell(g, C_in),
            width=self.width,
            cells_per_stage=self.cells_per_stage,
            num_classes=num_classes,
            in_channels=in_channels,
        )

    @abstractmethod
    def final_network(
        self, genotypes: list[Genotype], num_classes: int = 10, in_channels: int = 3, **kwargs: Any
    ) -> nn.Module:
        """The network to train from the chosen cells."""


class CellSpace(SearchSpace):
    """The original design: up to ``max_nodes`` nodes; node i reads every node j < i through any
    subset of the operations, each with its own output-channel count (0 = absent); a node is the
    concatenation of its entries, the cell output is the last node.

    The default channel choices {0, 4, 8, 16, 32, 64} are the original's: powers of two keep the
    grid coarse enough for mutation to move across it in a few steps.
    """

    kind = "cell"

    def __init__(
        self,
        ops: tuple[str, ...] | list[str] = _ops.CELL_OPS,
        max_nodes: int = 4,
        channel_choices: tuple[int, ...] | list[int] = (0, 4, 8, 16, 32, 64),
        width: int = 16,
        cells_per_stage: int = 1,
    ):
        super().__init__(ops, width, cells_per_stage)
        _positive_int("max_nodes", max_nodes)
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
        }

    def param_name(self, node: int, src: int, op: str) -> str:
        return f"node{node}_in{src}_{op}"

    def distributions(self) -> dict[str, BaseDistribution]:
        dist = CategoricalDistribution(self.channel_choices)
        return {
            self.param_name(i, j, op): dist for i in range(1, self.max_nodes + 1) for j in range(i) for op in self.ops
        }

    def to_params(self, g: Genotype) -> dict[str, Any]:
        self.validate(g)
        params = dict.fromkeys(self.distributions(), 0)
        for node, e in g.edges():
            params[self.param_name(node, e.src, e.op)] = e.channels
        return params

    def _raw_from_params(self, params: dict[str, Any]) -> Genotype:
        nodes = []
        for i in range(1, self.max_nodes + 1):
            nodes.append(
                [
                    Edge(op, j, int(params[self.param_name(i, j, op)]))
                    for j in range(i)
                    for op in self.ops
                    if int(params[self.param_name(i, j, op)]) != 0
                ]
            )
        while nodes and not nodes[-1]:  # trailing empty nodes encode a shallower cell, not a defect
            nodes.pop()
        return Genotype(nodes)

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


class NB201Space(SearchSpace):
    """NAS-Bench-201: 4 nodes, 6 edges, one operation per edge, node j = sum_i<j op_ij(node i).

    Genotype strings are the benchmark's own notation. The scoring and final networks are the
    benchmark's macro skeleton (``width`` 16, ``cells_per_stage`` 5), so its ground truth applies.
    """

    kind = "nb201"
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


SPACES: dict[str, type[SearchSpace]] = {"cell": CellSpace, "nb201": NB201Space}


def space_from_definition(definition: dict[str, Any]) -> SearchSpace:
    """Rebuild a space from :meth:`SearchSpace.definition` (as stored in a study)."""
    d = dict(definition)
    kind = d.pop("kind", None)
    if kind not in SPACES:
        raise ConfigError(f"unknown space kind {kind!r}; known: {', '.join(SPACES)}")
    return SPACES[kind](**d)


def make_space(name: str, **kwargs: Any) -> SearchSpace:
    """A space by its short name (``cell`` or ``nb201``)."""
    if name not in SPACES:
        raise ConfigError(f"unknown space {name!r}; choose one of: {', '.join(SPACES)}")
    return SPACES[name](**kwargs)


def recorded_space(study: optuna.Study) -> SearchSpace | None:
    """The space a study records, or None before its first ``suggest``."""
    d = study.user_attrs.get(SPACE_ATTR)
    return None if d is None else space_from_definition(d)


def _store_sampled_params(trial: optuna.Trial, dists: dict[str, BaseDistribution]) -> None:
    """Store the sampler's values of all of ``dists`` in one transaction where the storage allows
    (:func:`nas_sampler.rdb.store_params`); anything not chosen by the sampler (a retry, an enqueued
    trial, another sampler's independent draws) takes Optuna's usual path."""
    cached = getattr(trial, "_cached_frozen_trial", None)  # Optuna's private copy of the trial
    if cached is None:
        return
    fixed = cached.system_attrs.get("fixed_params", {})
    missing = [name for name in dists if name not in cached.params and name not in fixed]
    if not missing:  # a retry or an enqueued trial: nothing for the sampler to choose, so not asked
        return
    chosen = trial.relative_params  # an error of the sampler's propagates, as from suggest_*
    search_space = trial.relative_search_space or {}
    todo = {name: dists[name] for name in missing if name in chosen and search_space.get(name) == dists[name]}
    if todo:
        store_params(trial, {name: chosen[name] for name in todo}, todo)


#: (study id, space definition) pairs already checked against each storage by this process: a
#: study's space never changes once recorded, so each worker reads it once, not on every trial.
_CHECKED: weakref.WeakKeyDictionary[Any, set[tuple[int, str]]] = weakref.WeakKeyDictionary()


def record_space(study: optuna.Study, space: SearchSpace) -> None:
    """Record ``space`` in ``study``; refuse if the study already records a different one."""
    key = (study._study_id, json.dumps(space.definition(), sort_keys=True))
    checked = _CHECKED.setdefault(study._storage, set())
    if key in checked:
        return
    existing = study.user_attrs.get(SPACE_ATTR)
    if existing is None:
        study.set_user_attr(SPACE_ATTR, space.definition())
    elif existing != space.definition():
        raise SpaceMismatchError(
            f"study {study.study_name!r} was searched with space {json.dumps(existing, sort_keys=True)}, "
            f"not {json.dumps(space.definition(), sort_keys=True)}; use the study's space "
            "(nas_sampler.space.recorded_space(study)) or a new study name"
        )
    checked.add(key)


def _positive_int(name: str, value: Any) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name}={value!r} is invalid: give a positive integer")
