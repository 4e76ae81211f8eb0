"""GeneticCellSampler: the evolution of :mod:`nas_sampler.evolution` as an Optuna sampler.

(Over 450 lines: one class implements Optuna's sampler and ``BaseGASampler`` interfaces, with the
validation of its arguments; its parts are modules of their own.)

Assembled from parts, as Optuna's ``NSGAIISampler`` is: the slot ledger (:mod:`nas_sampler.slots`),
the incremental trial reader (:mod:`nas_sampler.trial_reader`), the wait at a generation boundary
(:mod:`nas_sampler.generation_wait`), the parent selector (:mod:`nas_sampler.selection`, or the DARTS
tournament) and the evolution's pure operators (:mod:`nas_sampler.evolution`). What it writes to the
study is listed in :mod:`nas_sampler.schema`. How a trial gets its genotype, and why it is exactly
resumable:

* **Slots.** Every worker computes the same (generation, slot) for the same trial from the storage's
  trial numbers, without writing anything; a retried trial re-takes the slot of the trial it
  replaces, so generations keep their exact sizes however late the retry comes.
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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseGASampler, RandomSampler
from optuna.study import Study
from optuna.trial import FrozenTrial, TrialState

from nas_sampler import heartbeat, schema
from nas_sampler.errors import ConfigError, GenotypeError
from nas_sampler.evolution import (
    AdaptiveState,
    EvolutionConfig,
    make_unique_child,
    random_unseen,
)
from nas_sampler.generation_wait import wait_for_generation
from nas_sampler.genotype import Genotype
from nas_sampler.internals import (
    cached_trials,
    set_trial_attrs,
    storage_of,
    store_params,
    study_id_of,
    system_attrs,
    trial_id_of,
)
from nas_sampler.parent_cache import ParentCache, write_once
from nas_sampler.schema import ChildRecord, SlotTag
from nas_sampler.selection import ParentSelector, ParetoSelector
from nas_sampler.slots import SlotLedger
from nas_sampler.space import CellSpace, SearchSpace, recorded_space, same_but_encoding
from nas_sampler.study_context import Generation, Seen, StudyContext

_log = logging.getLogger(__name__)

RETRY_ATTR = schema.RETRY
MODES = ("generational", "async")


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
        reduction: ``"rank_sum"`` (the original's rule), ``"log_rank"`` (AZ-NAS's aggregation of the
            same ranks) or ``"crowding"`` (NSGA-II's).
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
        self._contexts: dict[tuple[int, int], StudyContext] = {}
        self._contexts_lock = threading.Lock()
        self._distributions: dict[int, dict[str, BaseDistribution]] = {}
        self._parent_cache = ParentCache(self._get_parent_cache_key_prefix())

    # ---- keys --------------------------------------------------------------------------------
    @property
    def offspring_per_generation(self) -> int:
        return self._offspring

    @property
    def evolution_config(self) -> EvolutionConfig:
        """How children are made (the figures compute the operator probabilities with it)."""
        return self._config

    @classmethod
    def _slot_key(cls) -> str:
        return schema.slot_key(cls.__name__)

    @classmethod
    def _config_key(cls) -> str:
        return schema.sampler_config_key(cls.__name__)

    # ---- per-study context ---------------------------------------------------------------------
    def _context(self, study: Study) -> StudyContext:
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

    def _new_context(self, study: Study) -> StudyContext:
        """Read (or record, on first use) the seed and generation sizes the study is searched with."""
        storage, sid = storage_of(study), study_id_of(study)
        sizes = {"population_size": self._population_size, "offspring_per_generation": self._offspring}
        stored = storage.get_study_system_attrs(sid).get(self._config_key())
        if stored is None:
            seed = self._seed if self._seed is not None else int(np.random.SeedSequence().entropy % 2**63)
            first = {"seed": seed, **sizes, **({} if self._mode == "generational" else {"mode": self._mode})}
            write_once(study, self._config_key(), first)
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
        found = recorded_space(study)
        if self._space is not None:
            # a study made in another encoding of the same space goes on in its own (as space.suggest does)
            space = found if found is not None and same_but_encoding(found, self._space) else self._space
            recorded = True
        else:
            space, recorded = (found, True) if found is not None else (CellSpace(), False)
        assert self._population_size is not None
        ledger = SlotLedger(self._population_size, self._offspring, self._slot_key())
        return StudyContext(seed=int(stored["seed"]), space=space, space_recorded=recorded, ledger=ledger)

    # ---- slots ---------------------------------------------------------------------------------
    def _index(self, study: Study, ctx: StudyContext, upto: FrozenTrial | None = None) -> None:
        """Index every trial up to ``upto`` (or all trials when None); cheap when only a few are new."""
        if upto is not None and upto.number < len(ctx.ledger):
            return
        if upto is not None and upto.number - len(ctx.ledger) <= 16:
            numbers = range(len(ctx.ledger), upto.number)
            found = system_attrs(study, numbers)
            storage = storage_of(study)
            for number in numbers:
                if found is None:
                    tid = storage.get_trial_id_from_study_id_trial_number(study_id_of(study), number)
                    ctx.ledger.add(number, storage.get_trial(tid).system_attrs)
                else:
                    ctx.ledger.add(number, found[number])
            ctx.ledger.add(upto.number, upto.system_attrs)
            return
        ctx.ledger.add_trials(self._trials(study, ctx))

    def _trials(self, study: Study, ctx: StudyContext) -> list[FrozenTrial]:
        return ctx.reader.read(study)

    def slot_of(self, study: Study, trial: FrozenTrial) -> tuple[int, int]:
        """The (generation, slot) of ``trial``."""
        ctx = self._context(study)
        with ctx.lock:
            self._index(study, ctx, trial)
            return ctx.ledger[trial.number]

    # ---- BaseGASampler API -------------------------------------------------------------------
    def get_trial_generation(self, study: Study, trial: FrozenTrial) -> int:
        return self.slot_of(study, trial)[0]

    def get_population(self, study: Study, generation: int) -> list[FrozenTrial]:
        """Completed trials of ``generation`` (a retried slot counts once: its completed trial)."""
        ctx = self._context(study)
        trials = cached_trials(study)
        with ctx.lock:
            ctx.ledger.add_trials(trials)
            return [t for t in trials if t.state == TrialState.COMPLETE and ctx.ledger[t.number][0] == generation]

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
            g, s = ctx.ledger[trial.number]
        if self._mode == "async" and g > 0:
            child, record = self._async_child(study, ctx, g, s, trial.number)
        else:
            child, record = self._child(study, ctx, g, s, trial.number)
        params = ctx.space.to_params(child)
        params = {k: v for k, v in params.items() if k in search_space}
        if self._slot_key() not in trial.system_attrs:
            # not ctx.space_recorded: drawn for the default space, and the objective may use another one
            tag = SlotTag(g, s, trial.number, record, default_space=not ctx.space_recorded)
            if not self._tag_with_params(study, ctx, trial, tag, params, search_space):
                self._tag(study, trial, tag)
        return params

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

    def _tag_attrs(self, tag: SlotTag) -> tuple[dict[str, Any], dict[str, Any]]:
        """The trial's slot, its generation under ``BaseGASampler``'s key (which Optuna's tools read),
        and for a person (optuna-dashboard shows user attributes only) its lineage."""
        system = {self._slot_key(): tag.to_json(), self._get_generation_key(): tag.generation}
        return system, {schema.LINEAGE: tag.describe()}

    def _tag(self, study: Study, trial: FrozenTrial, tag: SlotTag) -> None:
        system, user = self._tag_attrs(tag)
        set_trial_attrs(storage_of(study), trial_id_of(trial), system, user)
        trial.system_attrs.update(system)  # what the worker's tell hands to the callbacks shows them too
        trial.user_attrs.update(user)

    def _tag_with_params(
        self,
        study: Study,
        ctx: StudyContext,
        trial: FrozenTrial,
        tag: SlotTag,
        params: dict[str, Any],
        search_space: dict[str, BaseDistribution],
    ) -> bool:
        """Write the tag, the child's parameters and its genotype in one transaction (one fewer per
        trial, which many workers on one database feel), when the child is the whole genotype of the
        space the objective asks for (``trial`` is the copy its ``suggest_*`` calls read, so they
        write nothing). False, with nothing written, otherwise."""
        space = ctx.space
        if not ctx.space_recorded or trial.params or schema.FIXED_PARAMS in trial.system_attrs:
            return False
        dists = space.distributions()
        if not params or any(dists.get(k) != search_space[k] for k in params):
            return False
        try:
            genotype = space.genotype_attrs(params)
        except (KeyError, GenotypeError):  # not the whole genotype
            return False
        system, user = self._tag_attrs(tag)
        return store_params(storage_of(study), trial, params, {k: dists[k] for k in params}, user | genotype, system)

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
    def _wait_for(self, study: Study, ctx: StudyContext, generation: int, current: int | None) -> list[FrozenTrial]:
        """All trials, once no trial of ``generation`` but ``current`` is running (or the timeout passed)."""

        def running_members(trials: Sequence[FrozenTrial]) -> list[int]:
            with ctx.lock:
                ctx.ledger.add_trials(trials)
                return [
                    n
                    for n in ctx.ledger.members_of(generation)
                    if n < len(trials) and n != current and trials[n].state == TrialState.RUNNING
                ]

        return wait_for_generation(
            study, generation, lambda: self._trials(study, ctx), running_members, self._generation_timeout
        )

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

    def _generation(self, study: Study, ctx: StudyContext, g: int, current: int | None) -> Generation:
        """Generation ``g``'s parents, adaptive state and known genotypes (selecting parents if needed)."""
        with ctx.lock:
            if g in ctx.gens:
                return ctx.gens[g]
        cached = None if g == 0 else self._parent_cache.read(study, g)
        if g == 0:
            trials = self._trials(study, ctx)
            parent_numbers: list[int] = []
            state = AdaptiveState()
        elif cached is None:
            prev = self._generation(study, ctx, g - 1, current)
            trials = self._wait_for(study, ctx, g - 1, current)
            with ctx.lock:
                ctx.ledger.add_trials(trials)
                done: dict[tuple[int, int], FrozenTrial] = {}
                for n in ctx.ledger.members_of(g - 1):
                    t = trials[n] if n < len(trials) else None
                    if t is not None and t.state == TrialState.COMPLETE and t.values is not None:
                        done.setdefault(ctx.ledger[n], t)
                # in slot order, not trial order: a retried slot has a later number, and ties in
                # selection must break the same way as in the uninterrupted run
                offspring = [done[slot] for slot in sorted(done)]
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
            self._parent_cache.write(study, g, chosen_numbers, state)
            parent_numbers = chosen_numbers
        else:
            trials = self._trials(study, ctx)
            parent_numbers, state = cached
        with ctx.lock:
            if g in ctx.gens:
                return ctx.gens[g]
            ctx.ledger.add_trials(trials)
            parents, parent_trials = [], []
            for n in parent_numbers:
                text = ctx.genotype_of(trials[n])
                if text is not None:
                    parents.append(Genotype.parse(text))
                    parent_trials.append(n)
            local: set[str] = set()
            for n in ctx.ledger.members_of(g):
                t = trials[n] if n < len(trials) else None
                if t is None or t.state == TrialState.FAIL:
                    continue
                stored = t.system_attrs.get(self._slot_key())
                if stored and SlotTag.from_json(stored).default_space:  # bred before the space was recorded
                    text = ctx.genotype_of(t)
                    if text is not None:
                        local.add(text)
                fixed = ctx.fixed_genotype(ctx.ledger[n])
                if fixed is not None and ctx.ledger.holders.get(ctx.ledger[n]) == n:
                    local.add(str(fixed))
            gen = Generation(parents, parent_numbers, state, Seen(ctx.known_before(trials, g), local))
            gen.parent_trials = parent_trials
            ctx.gens[g] = gen
            for old in [k for k in ctx.gens if k < g - 1]:  # keep memory flat on long searches
                del ctx.gens[old]
            return gen

    def _async_child(
        self, study: Study, ctx: StudyContext, g: int, s: int, current: int
    ) -> tuple[Genotype, ChildRecord]:
        """Steady-state breeding, no wait: the parents are the survivors of the current parents and the
        trials completed since (elitist (mu + lambda) selection, one completion at a time, so its cost
        stays flat as the study grows); the child avoids every genotype the study holds (running
        trials' too)."""
        trials = self._trials(study, ctx)
        with ctx.lock:
            ctx.ledger.add_trials(trials)
            new = [
                t
                for t in trials
                if t.state == TrialState.COMPLETE and t.values is not None and t.number not in ctx.pooled
            ]
            seen = {text for t in trials if t.number != current and (text := ctx.genotype_of(t, trials))}
            if new:
                candidates = [trials[n] for n in ctx.pool] + new
                chosen = self._selector.select(
                    study=study, space=ctx.space, candidates=candidates, n_survivors=self._population_size, generation=g
                )
                ctx.pool = [t.number for t in chosen]
                ctx.pooled.update(t.number for t in new)
            found = [(n, Genotype.parse(text)) for n in ctx.pool if (text := ctx.genotype_of(trials[n]))]
        rng = np.random.default_rng([ctx.seed, g, s])
        if not found:
            return random_unseen(ctx.space, rng, seen), ChildRecord()
        child, record = make_unique_child(ctx.space, [p for _, p in found], rng, seen, AdaptiveState(), self._config)
        return child, replace(record, parents=tuple(found[i][0] for i in record.parents))

    def _child(self, study: Study, ctx: StudyContext, g: int, s: int, current: int) -> tuple[Genotype, ChildRecord]:
        gen = self._generation(study, ctx, g, current)
        with ctx.lock:
            while len(gen.children) <= s:
                k = len(gen.children)
                rng = np.random.default_rng([ctx.seed, g, k])
                fixed = ctx.fixed_genotype((g, k))
                if fixed is not None:
                    child, record = fixed, ChildRecord()
                elif g == 0 or not gen.parents:
                    child, record = random_unseen(ctx.space, rng, gen.seen), ChildRecord()
                else:
                    child, record = make_unique_child(ctx.space, gen.parents, rng, gen.seen, gen.state, self._config)
                    record = gen.bred(record)
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
