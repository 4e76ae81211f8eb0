"""GeneticCellSampler: the evolution of :mod:`nas_sampler.evolution` as an Optuna sampler.

How a trial gets its genotype, and why it is exactly resumable:

* **Slots.** Generation 0 has ``population_size`` slots, every later generation
  ``offspring_per_generation``. Trials take slots in the order of their trial numbers, which the
  storage hands out atomically, so every worker (thread or process) computes the same slot for the
  same trial without writing anything: the storage is the arbiter. A trial retried by Optuna's
  stale-trial callback (``failed_trial`` in its system attributes) re-takes the failed trial's slot
  instead of a new one, so generations keep their exact sizes however late the retry comes.
* **Children.** The child of slot ``s`` of generation ``g`` is a pure function of the generation's
  parents and adaptive state, the study's seed and ``(g, s)``: its random stream is
  ``numpy.random.default_rng([seed, g, s])``, never the trial number, so a retried or resumed trial
  gets the same genotype. Duplicates are avoided against every earlier generation and against the
  earlier slots of the same generation (recomputed locally), so two workers never propose the same child.
* **Parents.** The parents of generation ``g`` are chosen once, when generation ``g - 1`` has
  finished (workers wait for running trials of the previous generation, failing stale ones when the
  storage has a heartbeat), by a pluggable selector (default: Pareto fronts then rank-sum or crowding
  reduction), and stored with the adaptive state in one study system attribute (one write: a crash
  leaves it complete or absent). Selection is deterministic, so concurrent writers write the same value.
* **Cost.** Each trial indexes only the trials created since the previous one; per generation the
  sampler reads the trial list once and looks only at the previous generation's trials (the set of
  known genotypes is kept up to date incrementally).

Limits, by design: a failed trial (the objective raised) keeps its slot, so its generation has one
completed member fewer; only a stale-trial retry re-takes a slot. Every trial's first heartbeat is
written in ``before_trial`` (:mod:`nas_sampler.heartbeat`), so a worker's death always leaves a trial
that goes stale. A single worker restarted after SIGKILL within the storage's heartbeat grace period
finds its dead trial still RUNNING; if that trial belongs to the generation just before a boundary,
the next parents are chosen without it and the search, still correct, is no longer identical to an
uninterrupted run. Restart after the grace period (the stale trial is then failed and retried first)
to keep it exact. Without a heartbeat, a dead worker's trial stays RUNNING and holds up the next
generation for ``generation_timeout`` seconds once. ``mode="async"`` drops the generation barrier
(and with it reproducibility): see :meth:`GeneticCellSampler._async_child`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseGASampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nas_sampler import heartbeat, schema
from nas_sampler.errors import ConfigError, GenotypeError
from nas_sampler.evolution import (
    REDUCTIONS,
    AdaptiveState,
    EvolutionConfig,
    make_unique_child,
    random_unseen,
    select_survivors,
)
from nas_sampler.genotype import Genotype
from nas_sampler.internals import (
    cached_trials,
    read_trials,
    running,
    storage_of,
    study_id_of,
    system_attrs,
    trial_id_of,
)
from nas_sampler.schema import ChildRecord, SlotTag
from nas_sampler.space import CellSpace, SearchSpace, recorded_space

_log = logging.getLogger(__name__)

RETRY_ATTR = schema.RETRY
MODES = ("generational", "async")


@runtime_checkable
class ParentSelector(Protocol):
    """Chooses the next parents among ``candidates`` (previous parents and the finished offspring).

    Called with keyword arguments, once per generation (the result is cached in the study); returns
    at most ``n_survivors`` trials, best first (the order steers the binary tournament that picks the
    parents of each child). A DARTS tournament (or any other rule) plugs in here.
    """

    def select(
        self,
        study: Study,
        space: SearchSpace | None,
        candidates: Sequence[FrozenTrial],
        n_survivors: int,
        generation: int,
    ) -> list[FrozenTrial]: ...


class ParetoSelector:
    """(mu + lambda) survival by non-dominated sorting; the overflowing front is reduced by
    ``reduction``: ``"rank_sum"`` (the original's: per-objective ranks summed, the best of each
    objective always kept) or ``"crowding"`` (NSGA-II). Honours ``trial.set_constraint`` by
    constrained domination."""

    def __init__(self, reduction: str = "rank_sum") -> None:
        if reduction not in REDUCTIONS:
            raise ConfigError(f"reduction={reduction!r} is invalid: choose one of {', '.join(REDUCTIONS)}")
        self.reduction = reduction

    def select(
        self,
        study: Study,
        space: SearchSpace | None,
        candidates: Sequence[FrozenTrial],
        n_survivors: int,
        generation: int,
    ) -> list[FrozenTrial]:
        if not candidates:
            return []
        values = np.array([t.values for t in candidates], dtype=float)
        violations = constraint_violations(candidates)
        chosen = select_survivors(values, study.directions, n_survivors, self.reduction, violations)
        return [candidates[i] for i in chosen]


def constraint_violations(trials: Sequence[FrozenTrial]) -> np.ndarray | None:
    """Per trial, the sum of its positive constraint values (for constrained domination); None when no
    trial reports constraints. A trial that reports none while others do is treated as infeasible."""
    if not any(t.constraints for t in trials):
        return None
    return np.array(
        [sum(max(0.0, float(v)) for v in t.constraints.values()) if t.constraints else np.inf for t in trials]
    )


@dataclass
class _Generation:
    parents: list[Genotype]
    parent_numbers: list[int]
    state: AdaptiveState
    seen: _Seen
    children: list[tuple[Genotype, ChildRecord]] = field(default_factory=list)


@dataclass
class _StudyContext:
    """What one process knows about one study; all of it can be rebuilt from the study."""

    seed: int
    space: SearchSpace
    space_recorded: bool
    lock: threading.RLock = field(default_factory=threading.RLock)  # re-entered: _index reads through _trials
    slots: list[tuple[int, int]] = field(default_factory=list)  # by trial number
    holders: dict[tuple[int, int], int] = field(default_factory=dict)  # slot -> first trial number in it
    fixed: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)  # enqueued params by slot
    consumers: int = 0
    members: dict[int, list[int]] = field(default_factory=dict)  # generation -> trial numbers in it
    gens: dict[int, _Generation] = field(default_factory=dict)
    genotypes: dict[int, str] = field(default_factory=dict)  # finished trial number -> genotype string
    known: Counter[str] = field(default_factory=Counter)  # genotypes of generations < known_gen
    known_gen: int = 0
    pending: dict[int, str | None] = field(default_factory=dict)  # counted while unfinished: recheck later
    finished: dict[int, FrozenTrial] = field(default_factory=dict)  # read by rdb.read_trials; never change
    unfinished: set[int] = field(default_factory=set)  # numbers below read_upto not finished when read
    read_upto: int = 0
    pool: list[int] = field(default_factory=list)  # async mode: the current parents' trial numbers
    pooled: set[int] = field(default_factory=set)  # async mode: completed trials already offered to the pool

    def forget_genotypes(self) -> None:
        """The space changed (the objective's was recorded): genotypes must be read again."""
        self.gens.clear()
        self.genotypes.clear()
        self.known.clear()
        self.known_gen = 0
        self.pending.clear()


class _Seen:
    """Genotypes a generation must avoid: the study's known ones plus the generation's own."""

    __slots__ = ("known", "local")

    def __init__(self, known: Counter[str], local: set[str]) -> None:
        self.known = known
        self.local = local

    def __contains__(self, text: object) -> bool:
        return text in self.local or self.known.get(text, 0) > 0  # type: ignore[call-overload]

    def add(self, text: str) -> None:
        self.local.add(text)


class GeneticCellSampler(BaseGASampler):
    """Genetic cell search as an Optuna sampler; works with no arguments.

    Args:
        population_size: parents kept per generation, and the size of generation 0.
        offspring_per_generation: children per later generation (default: ``population_size``).
        space: the search space; ``None`` uses the space the study records (``space.suggest``
            records it) or the default :class:`~nas_sampler.CellSpace` before one is recorded.
        seed: seed of the evolution. The study records the first seed used (with the generation
            sizes) and a later sampler on the same study follows the recorded seed, so resumed runs
            and extra workers agree; other generation sizes than the recorded ones are refused.
        crossover_prob, mutation_prob, exploration, exploration_decay, min_kind_prob, max_retries:
            see :class:`~nas_sampler.evolution.EvolutionConfig`.
        reduction: ``"rank_sum"`` (the original's rule) or ``"crowding"`` (NSGA-II's).
        selector: replaces Pareto selection entirely (any :class:`ParentSelector`).
        tournament: a :class:`ParentSelector` with ``is_tournament_generation(generation)`` (or an
            integer ``every``), used instead of the selector for the parents of those generations
            (:class:`~nas_sampler.DartsTournament` plugs in here).
        generation_timeout: seconds to wait for the previous generation's running trials before
            choosing parents without them (a warning is logged). Stale trials are failed meanwhile
            when the storage has a heartbeat.
        mode: ``"generational"`` (default: every generation's parents are chosen once the previous
            generation has finished; exact and reproducible, resumes to the same search) or
            ``"async"`` (steady-state: after generation 0 a free worker breeds a child at once from
            the trials completed so far, so no worker waits at a generation boundary; the search then
            depends on the order trials finish in, and the adaptive operator probabilities stay at
            their initial values). Generations are still numbered by the slot sizes, for display.
    """

    def __init__(
        self,
        population_size: int = 20,
        offspring_per_generation: int | None = None,
        space: SearchSpace | None = None,
        seed: int | None = None,
        *,
        crossover_prob: float = 0.9,
        mutation_prob: float = 0.8,
        reduction: str = "rank_sum",
        max_retries: int = 20,
        exploration: float = 0.5,
        exploration_decay: float = 0.9,
        min_kind_prob: float = 0.05,
        selector: ParentSelector | None = None,
        tournament: ParentSelector | None = None,
        generation_timeout: float = 600.0,
        mode: str = "generational",
    ) -> None:
        for name, value in (
            ("population_size", population_size),
            ("offspring_per_generation", offspring_per_generation),
        ):
            if value is None and name == "offspring_per_generation":
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 2:
                raise ConfigError(f"{name}={value!r} is invalid: give an integer of at least 2")
        if space is not None and not isinstance(space, SearchSpace):
            raise ConfigError(f"space={space!r} is invalid: give a SearchSpace such as CellSpace() or NB201Space()")
        if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or seed < 0):
            raise ConfigError(f"seed={seed!r} is invalid: give a non-negative integer or None")
        if not isinstance(generation_timeout, (int, float)) or generation_timeout < 0:
            raise ConfigError(f"generation_timeout={generation_timeout!r} is invalid: give seconds >= 0")
        if mode not in MODES:
            raise ConfigError(f"mode={mode!r} is invalid: choose one of {', '.join(MODES)}")
        if mode == "async" and tournament is not None:
            raise ConfigError(
                "mode='async' has no generation boundary for a tournament to run at: drop tournament= or use "
                "mode='generational'"
            )
        if tournament is not None:
            every = getattr(tournament, "every", None)
            has_rule = hasattr(tournament, "is_tournament_generation") or (isinstance(every, int) and every >= 1)
            if not has_rule or not hasattr(tournament, "select"):
                raise ConfigError(
                    f"tournament={tournament!r} is invalid: it needs select(study=, space=, candidates=, "
                    "n_survivors=, generation=) and is_tournament_generation(generation) or an integer 'every' >= 1"
                )
        super().__init__(population_size)
        self._offspring = offspring_per_generation or population_size
        self._space = space
        self._seed = seed
        self._config = EvolutionConfig(
            crossover_prob=crossover_prob,
            mutation_prob=mutation_prob,
            min_kind_prob=min_kind_prob,
            exploration=exploration,
            exploration_decay=exploration_decay,
            max_retries=max_retries,
        )
        self._selector: ParentSelector = selector if selector is not None else ParetoSelector(reduction)
        self._tournament = tournament
        self._generation_timeout = float(generation_timeout)
        self._mode = mode
        self._independent = RandomSampler(seed=seed)
        self._contexts: dict[tuple[int, int], _StudyContext] = {}
        self._contexts_lock = threading.Lock()
        self._distributions: dict[int, dict[str, BaseDistribution]] = {}

    # ---- keys --------------------------------------------------------------------------------
    @property
    def offspring_per_generation(self) -> int:
        return self._offspring

    @classmethod
    def _slot_key(cls) -> str:
        return schema.slot_key(cls.__name__)

    @classmethod
    def _config_key(cls) -> str:
        return schema.sampler_config_key(cls.__name__)

    def _parents_key(self, generation: int) -> str:
        return self._get_parent_cache_key_prefix() + str(generation)

    # ---- per-study context ---------------------------------------------------------------------
    def _context(self, study: Study) -> _StudyContext:
        key = (id(storage_of(study)), study_id_of(study))
        ctx = self._contexts.get(key)
        if ctx is None:
            with self._contexts_lock:
                ctx = self._contexts.get(key)
                if ctx is None:
                    ctx = self._new_context(study)
                    self._contexts[key] = ctx
        if not ctx.space_recorded and self._space is None:
            found = recorded_space(study)
            if found is not None:
                with ctx.lock:
                    if found != ctx.space:  # children computed for the default space are void
                        ctx.forget_genotypes()
                    ctx.space, ctx.space_recorded = found, True
        return ctx

    def _new_context(self, study: Study) -> _StudyContext:
        """Read (or record, on first use) the seed and generation sizes the study is searched with."""
        storage, sid = storage_of(study), study_id_of(study)
        sizes = {"population_size": self._population_size, "offspring_per_generation": self._offspring}
        stored = storage.get_study_system_attrs(sid).get(self._config_key())
        if stored is None:
            seed = self._seed if self._seed is not None else int(np.random.SeedSequence().entropy % 2**63)
            first = {"seed": seed, **sizes, **({} if self._mode == "generational" else {"mode": self._mode})}
            self._write_study_attr(study, self._config_key(), first)
            stored = storage.get_study_system_attrs(sid).get(self._config_key(), first)
        recorded_sizes = {k: stored.get(k) for k in sizes}
        if recorded_sizes != sizes:
            raise ConfigError(
                f"study {study.study_name!r} is searched with population_size={recorded_sizes['population_size']}, "
                f"offspring_per_generation={recorded_sizes['offspring_per_generation']}; this sampler has "
                f"population_size={self._population_size}, offspring_per_generation={self._offspring}. "
                "Generations are numbered by these sizes: resume with the same values, or use a new study name"
            )
        recorded_mode = stored.get("mode", "generational")  # studies from before the async mode are generational
        if recorded_mode != self._mode:
            raise ConfigError(
                f"study {study.study_name!r} is searched with mode={recorded_mode!r}; this sampler has "
                f"mode={self._mode!r}. Resume it with its own mode, or use a new study name"
            )
        if self._seed is not None and stored["seed"] != self._seed:
            _log.info(
                "study %r records seed %s; it is used instead of seed=%s", study.study_name, stored["seed"], self._seed
            )
        if self._space is not None:
            space, recorded = self._space, True
        else:
            found = recorded_space(study)
            space, recorded = (found, True) if found is not None else (CellSpace(), False)
        return _StudyContext(seed=int(stored["seed"]), space=space, space_recorded=recorded)

    @staticmethod
    def _write_study_attr(study: Study, key: str, value: Any) -> None:
        """One write; a concurrent writer of the same key (a unique-key race) is not an error."""
        try:
            storage_of(study).set_study_system_attr(study_id_of(study), key, value)
        except Exception:
            if key not in storage_of(study).get_study_system_attrs(study_id_of(study)):
                raise

    # ---- slots ---------------------------------------------------------------------------------
    def _slot_of_consumer(self, c: int) -> tuple[int, int]:
        assert self._population_size is not None
        if c < self._population_size:
            return 0, c
        c -= self._population_size
        return 1 + c // self._offspring, c % self._offspring

    def _index_trial(self, ctx: _StudyContext, number: int, attrs: dict[str, Any]) -> None:
        """Give trial ``number`` (the next unindexed one) its slot; decided by the system attributes
        ``attrs`` it had when created."""
        stored = attrs.get(self._slot_key())
        tag = None if stored is None else SlotTag.from_json(stored)
        if RETRY_ATTR in attrs or (tag is not None and tag.trial != number):
            if tag is not None:
                slot = (tag.generation, tag.slot)
            else:
                original = int(attrs[RETRY_ATTR])
                slot = ctx.slots[original] if 0 <= original < len(ctx.slots) else self._slot_of_consumer(0)
        else:
            slot = self._slot_of_consumer(ctx.consumers)
            ctx.consumers += 1
            ctx.holders[slot] = number
            if schema.FIXED_PARAMS in attrs:
                ctx.fixed[slot] = dict(attrs[schema.FIXED_PARAMS])
        ctx.slots.append(slot)
        ctx.members.setdefault(slot[0], []).append(number)

    def _index(self, study: Study, ctx: _StudyContext, upto: FrozenTrial | None = None) -> None:
        """Index every trial up to ``upto`` (or all trials when None); cheap when only a few are new."""
        if upto is not None and upto.number < len(ctx.slots):
            return
        if upto is not None and upto.number - len(ctx.slots) <= 16:
            numbers = range(len(ctx.slots), upto.number)
            found = system_attrs(study, numbers)
            storage = storage_of(study)
            for number in numbers:
                if found is None:
                    tid = storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number)
                    self._index_trial(ctx, number, storage.get_trial(tid).system_attrs)
                else:
                    self._index_trial(ctx, number, found[number])
            self._index_trial(ctx, upto.number, upto.system_attrs)
            return
        self._index_list(ctx, self._trials(study, ctx))

    def _trials(self, study: Study, ctx: _StudyContext) -> list[FrozenTrial]:
        """All trials, fresh. Where the storage allows, only those not finished when last read are
        read (``rdb.read_trials``), so a generation boundary reads one generation, not every running
        trial again with all its parameters through Optuna's ORM."""
        with ctx.lock:
            start, again = ctx.read_upto, sorted(ctx.unfinished)
        fresh = read_trials(study, start, again)
        if fresh is None:
            return study.get_trials(deepcopy=False)
        with ctx.lock:
            new = {t.number: t for t in fresh}
            for t in fresh:
                if t.state.is_finished():
                    ctx.finished[t.number] = t
                    ctx.unfinished.discard(t.number)
                else:
                    ctx.unfinished.add(t.number)
            upto = max(start, max(new, default=-1) + 1)
            ctx.read_upto = max(ctx.read_upto, upto)
            trials = [ctx.finished[n] if n in ctx.finished else new.get(n) for n in range(upto)]
        if any(t is None for t in trials):  # a number missing from the storage: let Optuna's read decide
            return study.get_trials(deepcopy=False)
        return trials  # type: ignore[return-value]

    def _index_list(self, ctx: _StudyContext, trials: Sequence[FrozenTrial]) -> None:
        for t in trials[len(ctx.slots) :]:
            if t.number != len(ctx.slots):  # a gap would misnumber slots; storages number trials 0, 1, ...
                raise RuntimeError(f"trial numbers are not contiguous at {t.number} (expected {len(ctx.slots)})")
            self._index_trial(ctx, t.number, t.system_attrs)

    def slot_of(self, study: Study, trial: FrozenTrial) -> tuple[int, int]:
        """The (generation, slot) of ``trial``."""
        ctx = self._context(study)
        with ctx.lock:
            self._index(study, ctx, trial)
            return ctx.slots[trial.number]

    # ---- BaseGASampler API -------------------------------------------------------------------
    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        return self.slot_of(study, trial)[0]

    def get_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """Completed trials of ``generation`` (a retried slot counts once: its completed trial)."""
        ctx = self._context(study)
        trials = cached_trials(study)
        with ctx.lock:
            self._index_list(ctx, trials)
            return [t for t in trials if t.state == TrialState.COMPLETE and ctx.slots[t.number][0] == generation]

    def select_parent(self, study: Study, generation: int) -> list[FrozenTrial]:
        """The parents of ``generation`` (chosen once, then read from the study)."""
        if generation == 0:
            return []
        gen = self._generation(study, self._context(study), generation, current=None)
        trials = cached_trials(study)
        return [trials[n] for n in gen.parent_numbers]

    def get_parent_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        return self.select_parent(study, generation)

    # ---- Optuna sampler API --------------------------------------------------------------------
    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        space = self._context(study).space
        dists = self._distributions.get(id(space))
        if dists is None:
            dists = self._distributions[id(space)] = space.distributions()
        return dists

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        ctx = self._context(study)
        with ctx.lock:
            self._index(study, ctx, trial)
            g, s = ctx.slots[trial.number]
        if self._mode == "async" and g > 0:
            child, record = self._async_child(study, ctx, g, s, trial.number)
        else:
            child, record = self._child(study, ctx, g, s, trial.number)
        if self._slot_key() not in trial.system_attrs:
            # not ctx.space_recorded: drawn for the default space, and the objective may use another one
            tag = SlotTag(g, s, trial.number, record, default_space=not ctx.space_recorded)
            self._tag(study, trial, tag)
        params = ctx.space.to_params(child)
        return {k: v for k, v in params.items() if k in search_space}

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """Parameters outside the space (or of a space not yet recorded) are drawn at random."""
        return self._independent.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        """The trial's first heartbeat, written now (inside ``ask``, before anything else runs), and a
        beater that keeps it alive through the sampler's waits and the objective (see
        :mod:`nas_sampler.heartbeat`)."""
        heartbeat.start(storage_of(study), trial_id_of(trial))

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None) -> None:
        """Stop the trial's beater; tag trials that never asked the sampler (enqueued ones), so every
        trial shows its slot."""
        heartbeat.stop(storage_of(study), trial_id_of(trial))
        if self._slot_key() in trial.system_attrs or RETRY_ATTR in trial.system_attrs:
            return
        g, s = self.slot_of(study, trial)
        self._tag(study, trial, SlotTag(g, s, trial.number))

    def _tag(self, study: Study, trial: FrozenTrial, tag: SlotTag) -> None:
        """Write the trial's slot, and its generation under ``BaseGASampler``'s key (which Optuna's
        tools read)."""
        storage_of(study).set_trial_system_attr(trial_id_of(trial), self._slot_key(), tag.to_json())
        storage_of(study).set_trial_system_attr(trial_id_of(trial), self._get_generation_key(), tag.generation)

    def reseed_rng(self) -> None:
        """Only the fallback for foreign parameters is reseeded: the evolution's randomness is
        derived from (seed, generation, slot), so threads cannot change it."""
        self._independent.reseed_rng()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_contexts"] = {}
        state["_contexts_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._contexts_lock = threading.Lock()

    # ---- generations ---------------------------------------------------------------------------
    def _genotype_of(self, ctx: _StudyContext, t: FrozenTrial, trials: Sequence[FrozenTrial] = ()) -> str | None:
        """The genotype string a trial evaluated (its user attribute, else its parameters). A retry not
        yet started holds the genotype of the trial it retries (same slot, same child), so a later
        generation does not propose it again while the retry waits to run."""
        cached = ctx.genotypes.get(t.number)
        if cached is not None:
            return cached
        try:
            result: str | None = str(ctx.space.genotype_of(t))
        except GenotypeError:
            result = None
        original = t.system_attrs.get(RETRY_ATTR)
        if result is None and original is not None and 0 <= int(original) < len(trials):
            return self._genotype_of(ctx, trials[int(original)], trials)
        if result is not None and t.state.is_finished():
            ctx.genotypes[t.number] = result
        return result

    def _dists(self, ctx: _StudyContext) -> dict[str, BaseDistribution]:
        dists = self._distributions.get(id(ctx.space))
        if dists is None:
            dists = self._distributions[id(ctx.space)] = ctx.space.distributions()
        return dists

    def _fixed_genotype(self, ctx: _StudyContext, slot: tuple[int, int]) -> Genotype | None:
        params = ctx.fixed.get(slot)
        if params is None:
            return None
        try:
            return ctx.space.from_params(params)
        except GenotypeError:  # a partial enqueue: the sampler fills the rest, the result is not known here
            return None

    def _wait_for(self, study: Study, ctx: _StudyContext, generation: int, current: int | None) -> list[FrozenTrial]:
        """All trials, once no trial of ``generation`` is running (or the timeout passed).

        Only that generation is waited for: a trial whose worker died without a heartbeat stays
        RUNNING for ever, and it must not hold up every later generation too. While waiting, the
        poll asks only for the running trials' states where the storage allows, as often as keeps
        its delay within a tenth of the wait so far, so the next generation starts soon after the
        last trial ends.
        """
        started = time.monotonic()
        deadline = started + self._generation_timeout
        delay = 0.01
        beats = heartbeat.enabled(storage_of(study))
        next_stale_check = 0.0
        told = False
        while True:
            trials = self._trials(study, ctx)
            with ctx.lock:
                self._index_list(ctx, trials)
                waiting_on = [
                    n
                    for n in ctx.members.get(generation, [])
                    if n < len(trials) and n != current and trials[n].state == TrialState.RUNNING
                ]
            if not waiting_on:
                return trials
            while waiting_on:  # then read everything again: a retry may have joined the generation
                if beats and time.monotonic() >= next_stale_check:
                    heartbeat.fail_stale(study)
                    next_stale_check = time.monotonic() + 1.0
                elif not beats and not told and delay >= 0.1:
                    _log.info(
                        "waiting up to %.0f s for running trials %s of generation %d before choosing the next "
                        "parents; without a storage heartbeat a trial whose worker died stays RUNNING until then "
                        "(use RDBStorage(heartbeat_interval=...) to have such trials failed and retried)",
                        self._generation_timeout,
                        waiting_on,
                        generation,
                    )
                    told = True
                if time.monotonic() >= deadline:
                    _log.warning(
                        "generation %d still has running trials %s after %.0f s; choosing the next parents "
                        "without them (raise generation_timeout to wait longer)",
                        generation,
                        waiting_on,
                        self._generation_timeout,
                    )
                    return self._trials(study, ctx)
                time.sleep(delay)
                still = running(study, waiting_on)
                if still is None:  # no cheap poll on this storage
                    delay = min(delay * 1.5, 0.5)
                    break
                # a cheap poll: its latency is kept to a tenth of the time waited so far
                delay = min(0.5, max(0.01, 0.1 * (time.monotonic() - started)))
                waiting_on = sorted(still)

    def _record_of(self, t: FrozenTrial) -> ChildRecord:
        stored = t.system_attrs.get(self._slot_key())
        child = None if stored is None else SlotTag.from_json(stored).child
        return child if child is not None else ChildRecord()

    def _selector_for(self, generation: int) -> ParentSelector:
        t = self._tournament
        if t is not None and generation > 0:
            rule = getattr(t, "is_tournament_generation", None)
            if rule(generation) if rule is not None else generation % int(t.every) == 0:
                return t
        return self._selector

    def _generation(self, study: Study, ctx: _StudyContext, g: int, current: int | None) -> _Generation:
        """Generation ``g``'s parents, adaptive state and known genotypes (selecting parents if needed)."""
        with ctx.lock:
            if g in ctx.gens:
                return ctx.gens[g]
        attrs = {} if g == 0 else storage_of(study).get_study_system_attrs(study_id_of(study))
        cached = attrs.get(self._parents_key(g))
        if g == 0:
            trials = self._trials(study, ctx)
            parent_numbers: list[int] = []
            state = AdaptiveState()
        elif cached is None:
            prev = self._generation(study, ctx, g - 1, current)
            trials = self._wait_for(study, ctx, g - 1, current)
            with ctx.lock:
                self._index_list(ctx, trials)
                done: dict[tuple[int, int], FrozenTrial] = {}
                for n in ctx.members.get(g - 1, []):
                    t = trials[n] if n < len(trials) else None
                    if t is not None and t.state == TrialState.COMPLETE and t.values is not None:
                        done.setdefault(ctx.slots[n], t)
                offspring = list(done.values())
            pool = [trials[n] for n in prev.parent_numbers] + [
                t for t in offspring if t.number not in prev.parent_numbers
            ]
            chosen = self._selector_for(g).select(
                study=study, space=ctx.space, candidates=pool, n_survivors=self._population_size, generation=g
            )
            chosen_numbers = [t.number for t in chosen]
            survivors = set(chosen_numbers)
            records = [self._record_of(t) for t in offspring]
            state = prev.state.update(records, [t.number in survivors for t in offspring])
            self._write_study_attr(study, self._parents_key(g), {"parents": chosen_numbers, "state": state.to_dict()})
            parent_numbers = chosen_numbers
        else:
            trials = self._trials(study, ctx)
            parent_numbers = [int(n) for n in cached["parents"]]
            state = AdaptiveState.from_dict(cached["state"])
        with ctx.lock:
            if g in ctx.gens:
                return ctx.gens[g]
            self._index_list(ctx, trials)
            parents = []
            for n in parent_numbers:
                text = self._genotype_of(ctx, trials[n])
                if text is not None:
                    parents.append(Genotype.parse(text))
            local: set[str] = set()
            for n in ctx.members.get(g, []):
                t = trials[n] if n < len(trials) else None
                if t is None or t.state == TrialState.FAIL:
                    continue
                stored = t.system_attrs.get(self._slot_key())
                if stored and SlotTag.from_json(stored).default_space:  # bred before the space was recorded
                    text = self._genotype_of(ctx, t)
                    if text is not None:
                        local.add(text)
                fixed = self._fixed_genotype(ctx, ctx.slots[n])
                if fixed is not None and ctx.holders.get(ctx.slots[n]) == n:
                    local.add(str(fixed))
            gen = _Generation(parents, parent_numbers, state, _Seen(self._known_before(ctx, trials, g), local))
            ctx.gens[g] = gen
            for old in [k for k in ctx.gens if k < g - 1]:  # keep memory flat on long searches
                del ctx.gens[old]
            return gen

    def _known_before(self, ctx: _StudyContext, trials: Sequence[FrozenTrial], g: int) -> Counter[str]:
        """Genotypes of the trials of generations before ``g``, kept up to date incrementally (each
        trial is read once, plus trials still unfinished when first read).

        Failed trials count too: a failed genotype is retried in its own slot, never proposed again
        as a new child. (Optuna fails a stale trial and creates its retry in two transactions; a
        worker reading between them, which left failed genotypes out, could propose it again.)"""

        def read(n: int, counted: str | None) -> None:
            t = trials[n] if n < len(trials) else None
            if t is None:
                ctx.pending[n] = counted
                return
            if counted is None:
                counted = self._genotype_of(ctx, t, trials)
                if counted is not None:
                    ctx.known[counted] += 1
            if t.state.is_finished():
                ctx.pending.pop(n, None)
            else:
                ctx.pending[n] = counted

        if g < ctx.known_gen:  # an old generation (rare): count it on its own
            known: Counter[str] = Counter()
            for k in range(g):
                for n in ctx.members.get(k, []):
                    if n < len(trials):
                        text = self._genotype_of(ctx, trials[n], trials)
                        if text is not None:
                            known[text] += 1
            return known
        for n, counted in list(ctx.pending.items()):
            read(n, counted)
        while ctx.known_gen < g:
            for n in ctx.members.get(ctx.known_gen, []):
                read(n, None)
            ctx.known_gen += 1
        return ctx.known

    def _async_child(
        self, study: Study, ctx: _StudyContext, g: int, s: int, current: int
    ) -> tuple[Genotype, ChildRecord]:
        """Steady-state breeding, no wait: the parents are the survivors of the current parents and the
        trials completed since (elitist (mu + lambda) selection, one completion at a time, so its cost
        stays flat as the study grows); the child avoids every genotype the study holds (running
        trials' too)."""
        trials = self._trials(study, ctx)
        with ctx.lock:
            self._index_list(ctx, trials)
            new = [
                t
                for t in trials
                if t.state == TrialState.COMPLETE and t.values is not None and t.number not in ctx.pooled
            ]
            seen = {text for t in trials if t.number != current and (text := self._genotype_of(ctx, t, trials))}
            if new:
                candidates = [trials[n] for n in ctx.pool] + new
                chosen = self._selector.select(
                    study=study, space=ctx.space, candidates=candidates, n_survivors=self._population_size, generation=g
                )
                ctx.pool = [t.number for t in chosen]
                ctx.pooled.update(t.number for t in new)
            parents = [Genotype.parse(text) for n in ctx.pool if (text := self._genotype_of(ctx, trials[n]))]
        rng = np.random.default_rng([ctx.seed, g, s])
        if not parents:
            return random_unseen(ctx.space, rng, seen), ChildRecord()
        return make_unique_child(ctx.space, parents, rng, seen, AdaptiveState(), self._config)

    def _child(self, study: Study, ctx: _StudyContext, g: int, s: int, current: int) -> tuple[Genotype, ChildRecord]:
        gen = self._generation(study, ctx, g, current)
        with ctx.lock:
            while len(gen.children) <= s:
                k = len(gen.children)
                rng = np.random.default_rng([ctx.seed, g, k])
                fixed = self._fixed_genotype(ctx, (g, k))
                if fixed is not None:
                    child, record = fixed, ChildRecord()
                elif g == 0 or not gen.parents:
                    child, record = random_unseen(ctx.space, rng, gen.seen), ChildRecord()
                else:
                    child, record = make_unique_child(ctx.space, gen.parents, rng, gen.seen, gen.state, self._config)
                if record.fallback:
                    _log.info(
                        "generation %d slot %d: %d children in a row were known genotypes; took a random unseen one",
                        g,
                        k,
                        self._config.max_retries + 1,
                    )
                if str(child) in gen.seen and fixed is None:
                    _log.warning(
                        "generation %d slot %d: no unseen genotype found (is the space exhausted?); "
                        "proposing the known genotype %s again",
                        g,
                        k,
                        child,
                    )
                gen.seen.add(str(child))
                gen.children.append((child, record))
            return gen.children[s]
