"""What a search did, read back from its study in one pass: each trial's generation, slot, parents and
scores, the adaptive state each generation was bred with, and each DARTS tournament.

The dashboard's figures and notes and ``nas-sampler report`` all read a study through
:func:`read_history`, so they show the same thing, and a study from any storage (or from an earlier
version, whose slot tags name no parents) can be drawn.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from nas_sampler import schema
from nas_sampler.evolution import AdaptiveState, EvolutionConfig, non_dominated_sort
from nas_sampler.internals import storage_of, study_id_of
from nas_sampler.schema import ChildRecord, SlotTag
from nas_sampler.space import recorded_space

SAMPLER = "GeneticCellSampler"  # the prefix of the sampler's keys (schema.py)


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the figures and notes see it."""

    number: int
    state: TrialState
    values: tuple[float, ...] | None
    generation: int | None = None
    slot: int | None = None
    child: ChildRecord | None = None  # None: not bred by the sampler (generation 0, enqueued, retried)
    genotype: str | None = None
    params: int | None = None  # the scoring network's parameter count
    retry_of: int | None = None

    @property
    def complete(self) -> bool:
        return self.state == TrialState.COMPLETE and self.values is not None


@dataclass(frozen=True)
class SearchHistory:
    """A study's search as plain values (see :func:`read_history`)."""

    study_name: str
    metric_names: tuple[str, ...]
    directions: tuple[StudyDirection, ...]
    trials: tuple[TrialRecord, ...]
    states: Mapping[int, AdaptiveState] = field(default_factory=dict)  # generation -> its breeding state
    parents: Mapping[int, tuple[int, ...]] = field(default_factory=dict)  # generation -> parents, best first
    tournaments: Mapping[int, Mapping[str, Any]] = field(default_factory=dict)
    mutation_kinds: tuple[str, ...] = ()
    crossover_kinds: tuple[str, ...] = ()
    ops: tuple[str, ...] = ()
    sampler_config: Mapping[str, Any] = field(default_factory=dict)
    user_attrs: Mapping[str, Any] = field(default_factory=dict)

    @property
    def completed(self) -> list[TrialRecord]:
        return [t for t in self.trials if t.complete]

    @property
    def generations(self) -> list[int]:
        """The generations with at least one completed trial."""
        return sorted({t.generation for t in self.completed if t.generation is not None})

    def of_generation(self, generation: int) -> list[TrialRecord]:
        return [t for t in self.completed if t.generation == generation]

    def slots_of(self, generation: int) -> int | None:
        """How many slots ``generation`` has (None when the study records no generation sizes)."""
        key = "population_size" if generation == 0 else "offspring_per_generation"
        n = self.sampler_config.get(key)
        return None if n is None else int(n)

    def front(self) -> list[TrialRecord]:
        """The completed trials no other completed trial dominates (the study's Pareto front)."""
        done = self.completed
        if not done:
            return []
        fronts = non_dominated_sort(np.array([t.values for t in done], dtype=float), self.directions)
        return [done[i] for i in fronts[0]]

    def probabilities(self, state: AdaptiveState, config: EvolutionConfig) -> dict[str, dict[str, float]]:
        """The operator probabilities ``state`` breeds with, under ``config`` (the sampler's settings)."""
        explore = config.exploration * config.exploration_decay**state.generation
        tables = (
            ("mutation", self.mutation_kinds, state.mutation_probs(self.mutation_kinds, config.min_kind_prob)),
            ("crossover", self.crossover_kinds, state.crossover_probs(self.crossover_kinds, config.min_kind_prob)),
            ("operation", self.ops, state.op_probs(self.ops, explore) if self.ops else np.zeros(0)),
        )
        return {name: dict(zip(kinds, map(float, p), strict=True)) for name, kinds, p in tables if kinds}


def success_rates(state: AdaptiveState) -> dict[str, dict[str, tuple[int, int]]]:
    """``{"mutation": {kind: (attempts, survived)}, "crossover": ..., "operation": ...}`` so far."""
    tables = (("mutation", state.mutation), ("crossover", state.crossover), ("operation", state.ops))
    return {name: {n: (a, s) for n, a, s in stats} for name, stats in tables}


def record_of(t: FrozenTrial, sampler: str = SAMPLER) -> TrialRecord:
    stored = t.system_attrs.get(schema.slot_key(sampler))
    tag = None if stored is None else SlotTag.from_json(stored)
    params = t.user_attrs.get("params")
    return TrialRecord(
        number=t.number,
        state=t.state,
        values=None if t.values is None else tuple(float(v) for v in t.values),
        generation=None if tag is None else tag.generation,
        slot=None if tag is None else tag.slot,
        child=None if tag is None else tag.child,
        genotype=t.user_attrs.get(schema.GENOTYPE),
        params=None if params is None else int(params),
        retry_of=t.system_attrs.get(schema.RETRY),
    )


def read_history(
    study: optuna.Study, sampler: str = SAMPLER, trials: Iterable[FrozenTrial] | None = None
) -> SearchHistory:
    """``study``'s search; ``trials`` when the caller has read them already (or wraps them in a
    progress bar), else one read of all trials."""
    found = study.get_trials(deepcopy=False) if trials is None else trials
    records = tuple(record_of(t, sampler) for t in found)
    system = storage_of(study).get_study_system_attrs(study_id_of(study))
    prefix = f"{sampler}:parent:"
    states: dict[int, AdaptiveState] = {}
    parents: dict[int, tuple[int, ...]] = {}
    for key, value in system.items():
        if key.startswith(prefix) and key[len(prefix) :].isdigit():
            g = int(key[len(prefix) :])
            states[g] = AdaptiveState.from_dict(value["state"])
            parents[g] = tuple(int(n) for n in value["parents"])
    user = study.user_attrs
    tournaments = {
        int(k[len(schema.TOURNAMENT_PREFIX) :]): v for k, v in user.items() if k.startswith(schema.TOURNAMENT_PREFIX)
    }
    space = recorded_space(study)
    names = study.metric_names or [f"value{i}" for i in range(len(study.directions))]
    return SearchHistory(
        study_name=study.study_name,
        metric_names=tuple(names),
        directions=tuple(study.directions),
        trials=records,
        states=dict(sorted(states.items())),
        parents=dict(sorted(parents.items())),
        tournaments=dict(sorted(tournaments.items())),
        mutation_kinds=() if space is None else tuple(space.mutations),
        crossover_kinds=() if space is None else tuple(space.crossovers),
        ops=() if space is None else tuple(space.ops),
        sampler_config=system.get(schema.sampler_config_key(sampler), {}),
        user_attrs=user,
    )
