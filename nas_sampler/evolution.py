"""The evolution as pure functions: mutation, crossover, adaptive operator choice and selection.

Everything here takes genotypes, score arrays and a ``numpy.random.Generator`` and returns new
values; nothing reads Optuna or torch, so the sampler can recompute any step from what the study
stores and the tests can check every operator in isolation. Every operator is followed by
``space.repair`` so each child is a valid genotype of its space.

The adaptive part is the original design's "global evolution strategy": every mutation kind,
crossover kind and operation has a success record (how many offspring it produced, how many of
them survived selection). Kinds are chosen with probability proportional to their smoothed success
rate, so kinds whose offspring survive become likelier. :class:`AdaptiveState` is an immutable
value computed from the generation history and the survivors, so the sampler can store it next to
each generation's parents and a resumed search continues from exactly the same state.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nas_sampler.errors import ConfigError
from nas_sampler.genotype import Genotype
from nas_sampler.schema import ChildRecord
from nas_sampler.space import SearchSpace, choice

__all__ = ["ChildRecord"]  # re-exported: a child's record is part of the evolution's vocabulary


def mutation_kinds(space: SearchSpace) -> tuple[str, ...]:
    """The mutation kinds of ``space``'s table, in its order."""
    return tuple(space.mutations)


def crossover_kinds(space: SearchSpace) -> tuple[str, ...]:
    """The crossover kinds of ``space``'s table, in its order."""
    return tuple(space.crossovers)


# ---- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvolutionConfig:
    """How children are made; validated on construction.

    ``crossover_prob``: chance that a child is a crossover of two parents (else a copy of one).
    ``mutation_prob``: chance that a child is then mutated (a child equal to a parent always is).
    ``min_kind_prob``: every kind keeps at least this share, so none is starved for good.
    ``exploration`` and ``exploration_decay``: the share of uniform choice when picking an
    operation to add, ``exploration * exploration_decay ** generation``; the rest follows success rates.
    ``max_retries``: children tried before falling back to a random unseen genotype.
    """

    crossover_prob: float = 0.9
    mutation_prob: float = 0.8
    min_kind_prob: float = 0.05
    exploration: float = 0.5
    exploration_decay: float = 0.9
    max_retries: int = 20

    def __post_init__(self) -> None:
        for name in ("crossover_prob", "mutation_prob", "exploration"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name}={value!r} is invalid: give a probability between 0 and 1")
        if not isinstance(self.exploration_decay, (int, float)) or not 0.0 < self.exploration_decay <= 1.0:
            raise ConfigError(f"exploration_decay={self.exploration_decay!r} is invalid: give a number in (0, 1]")
        if not isinstance(self.min_kind_prob, (int, float)) or not 0.0 <= self.min_kind_prob < 0.5:
            raise ConfigError(f"min_kind_prob={self.min_kind_prob!r} is invalid: give a number in [0, 0.5)")
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool) or self.max_retries < 0:
            raise ConfigError(f"max_retries={self.max_retries!r} is invalid: give a non-negative integer")


# ---- adaptive state -------------------------------------------------------------------------


Stats = tuple[tuple[str, int, int], ...]  # (name, attempts, successes), sorted by name


def _stats_dict(stats: Stats) -> dict[str, tuple[int, int]]:
    return {name: (a, s) for name, a, s in stats}


def _add_stats(stats: Stats, used: Mapping[str, tuple[int, int]]) -> Stats:
    merged = _stats_dict(stats)
    for name, (a, s) in used.items():
        a0, s0 = merged.get(name, (0, 0))
        merged[name] = (a0 + a, s0 + s)
    return tuple((n, a, s) for n, (a, s) in sorted(merged.items()))


def _rates(names: Sequence[str], stats: Stats) -> np.ndarray:
    """Laplace-smoothed success rates: an unseen kind starts at 1/2."""
    d = _stats_dict(stats)
    return np.array([(d.get(n, (0, 0))[1] + 1.0) / (d.get(n, (0, 0))[0] + 2.0) for n in names])


def _with_floor(p: np.ndarray, floor: float) -> np.ndarray:
    p = p / p.sum()
    if floor > 0 and len(p) > 1:
        floor = min(floor, 1.0 / len(p))
        p = floor + (1.0 - floor * len(p)) * p
    return p / p.sum()


@dataclass(frozen=True)
class AdaptiveState:
    """Success records of mutation kinds, crossover kinds and operations, as of ``generation``.

    Immutable and JSON-able (``to_dict``/``from_dict``): the sampler stores it with each
    generation's parents, so it is derived from the study, never held only in memory.
    """

    generation: int = 0
    mutation: Stats = ()
    crossover: Stats = ()
    ops: Stats = ()

    def mutation_probs(self, kinds: Sequence[str], floor: float = 0.05) -> np.ndarray:
        return _with_floor(_rates(kinds, self.mutation), floor)

    def crossover_probs(self, kinds: Sequence[str], floor: float = 0.05) -> np.ndarray:
        return _with_floor(_rates(kinds, self.crossover), floor)

    def op_probs(self, ops: Sequence[str], exploration: float) -> np.ndarray:
        """Success rate blended with a uniform exploration share ``exploration`` (already decayed)."""
        r = _rates(ops, self.ops)
        p = (1.0 - exploration) * r / r.sum() + exploration / len(ops)
        return p / p.sum()

    def update(self, records: Sequence[ChildRecord], survived: Sequence[bool]) -> AdaptiveState:
        """The state after one generation: ``records[i]`` made an offspring that ``survived[i]``."""
        if len(records) != len(survived):
            raise ValueError(f"{len(records)} records but {len(survived)} survival flags")
        m: dict[str, list[int]] = {}
        x: dict[str, list[int]] = {}
        o: dict[str, list[int]] = {}
        for rec, ok in zip(records, survived, strict=True):
            for target, names in ((m, rec.mutations), (x, (rec.crossover,) if rec.crossover else ()), (o, rec.ops)):
                for n in names:
                    c = target.setdefault(n, [0, 0])
                    c[0] += 1
                    c[1] += int(bool(ok))
        return AdaptiveState(
            self.generation + 1,
            _add_stats(self.mutation, {k: (a, s) for k, (a, s) in m.items()}),
            _add_stats(self.crossover, {k: (a, s) for k, (a, s) in x.items()}),
            _add_stats(self.ops, {k: (a, s) for k, (a, s) in o.items()}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation,
            "mutation": [list(t) for t in self.mutation],
            "crossover": [list(t) for t in self.crossover],
            "ops": [list(t) for t in self.ops],
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> AdaptiveState:
        def stats(key: str) -> Stats:
            return tuple((str(n), int(a), int(s)) for n, a, s in d.get(key, ()))

        return AdaptiveState(int(d.get("generation", 0)), stats("mutation"), stats("crossover"), stats("ops"))


# ---- operators ----------------------------------------------------------------------------


def mutate(
    space: SearchSpace,
    g: Genotype,
    kind: str,
    rng: np.random.Generator,
    op_probs: np.ndarray | None = None,
) -> tuple[Genotype, str | None]:
    """Apply one mutation of ``kind``; returns the repaired child and the operation it chose (if any).

    ``op_probs`` weighs ``space.ops`` when the mutation picks an operation (uniform when None).
    The child may equal ``g`` when the kind does not apply (e.g. ``add_node`` at ``max_nodes``).
    """
    space.validate(g)
    p = np.full(len(space.ops), 1.0 / len(space.ops)) if op_probs is None else np.asarray(op_probs, dtype=float)
    return space.mutate(g, kind, rng, p)


def crossover(space: SearchSpace, a: Genotype, b: Genotype, kind: str, rng: np.random.Generator) -> Genotype:
    """Cross two parents gene by gene (a gene is an (edge, operation) pair); the child is repaired."""
    space.validate(a)
    space.validate(b)
    return space.crossover(a, b, kind, rng)


def _binary_tournament(rng: np.random.Generator, n: int) -> int:
    """Parents are ordered best first, so the smaller of two random positions wins."""
    return int(min(rng.integers(n), rng.integers(n)))


class _Plan:
    """The adaptive probabilities of one generation, computed once for all its children."""

    def __init__(self, space: SearchSpace, state: AdaptiveState, config: EvolutionConfig) -> None:
        self.space, self.config = space, config
        self.mkinds = mutation_kinds(space)
        self.xkinds = crossover_kinds(space)
        self.mkind_p = state.mutation_probs(self.mkinds, config.min_kind_prob)
        self.xkind_p = state.crossover_probs(self.xkinds, config.min_kind_prob)
        self.op_p = state.op_probs(space.ops, config.exploration * config.exploration_decay**state.generation)

    def mutate_once(self, child: Genotype, rng: np.random.Generator, mutations: list[str], ops: list[str]) -> Genotype:
        """One mutation that changes ``child`` (a kind that does not apply is redrawn)."""
        for _ in range(2 * len(self.mkinds)):
            kind = choice(rng, self.mkinds, self.mkind_p)
            new, op = self.space.mutate(child, kind, rng, self.op_p)
            if new != child:
                mutations.append(kind)
                if op is not None:
                    ops.append(op)
                return new
        return child

    def child(
        self, parents: Sequence[Genotype], rng: np.random.Generator
    ) -> tuple[Genotype, list[str], list[str], str | None, tuple[int, ...]]:
        """A child, its mutations, operations, crossover kind and the positions of the parents it came from."""
        i = _binary_tournament(rng, len(parents))
        j = _binary_tournament(rng, len(parents))
        if len(parents) > 1:
            while j == i:
                j = int(rng.integers(len(parents)))
        a, b = parents[i], parents[j]
        child, xkind = a, None
        if len(parents) > 1 and rng.random() < self.config.crossover_prob:
            xkind = choice(rng, self.xkinds, self.xkind_p)
            child = self.space.crossover(a, b, xkind, rng)
        mutations: list[str] = []
        ops: list[str] = []
        if rng.random() < self.config.mutation_prob or child == a or child == b:
            child = self.mutate_once(child, rng, mutations, ops)
        return child, mutations, ops, xkind, ((i, j) if xkind is not None else (i,))


def make_child(
    space: SearchSpace,
    parents: Sequence[Genotype],
    rng: np.random.Generator,
    state: AdaptiveState = AdaptiveState(),
    config: EvolutionConfig = EvolutionConfig(),
) -> tuple[Genotype, ChildRecord]:
    """One child of ``parents`` (valid, ordered best first): binary tournament for each parent,
    crossover with ``config.crossover_prob``, then a mutation; kinds chosen by the adaptive state."""
    if not parents:
        raise ValueError("make_child needs at least one parent")
    for p in parents:
        space.validate(p)
    child, mutations, ops, xkind, used = _Plan(space, state, config).child(parents, rng)
    return child, ChildRecord(xkind, tuple(mutations), tuple(ops), parents=used)


def make_unique_child(
    space: SearchSpace,
    parents: Sequence[Genotype],
    rng: np.random.Generator,
    seen: Container[str],
    state: AdaptiveState = AdaptiveState(),
    config: EvolutionConfig = EvolutionConfig(),
) -> tuple[Genotype, ChildRecord]:
    """A child whose string is not in ``seen``.

    A child that is already known gets one more mutation (a converged population breeds known
    cells, and one more step away from a known cell is the cheapest way to a new one); every
    fifth retry starts again from new parents. After ``config.max_retries`` retries a random
    unseen genotype is returned (``record.fallback``); if even that fails (a tiny, exhausted space)
    the last random genotype is returned and the caller decides (the sampler logs it).
    """
    if not parents:
        return random_unseen(space, rng, seen), ChildRecord()
    plan = _Plan(space, state, config)
    child, mutations, ops, xkind, used = plan.child(parents, rng)
    for attempt in range(config.max_retries + 1):
        if str(child) not in seen:
            return child, ChildRecord(xkind, tuple(mutations), tuple(ops), parents=used)
        if attempt % 5 == 4:
            child, mutations, ops, xkind, used = plan.child(parents, rng)
        else:
            child = plan.mutate_once(child, rng, mutations, ops)
    return random_unseen(space, rng, seen), ChildRecord(fallback=True)


def random_unseen(space: SearchSpace, rng: np.random.Generator, seen: Container[str], tries: int = 1000) -> Genotype:
    """A random valid genotype not in ``seen`` (the last draw if ``tries`` draws all were seen)."""
    g = space.random(rng)
    for _ in range(tries):
        if str(g) not in seen:
            return g
        g = space.random(rng)
    return g


# ---- selection ------------------------------------------------------------------------------


def _orient(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> np.ndarray:
    """Values turned into minimisation: maximised objectives are negated."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError(f"values must be a 2-D array (individuals x objectives), got shape {v.shape}")
    if v.shape[1] != len(directions):
        raise ValueError(f"values have {v.shape[1]} objectives but {len(directions)} directions were given")
    names = [str(getattr(d, "name", d)).lower() for d in directions]  # accepts Optuna's StudyDirection
    for d, name in zip(directions, names, strict=True):
        if name not in ("minimize", "maximize"):
            raise ConfigError(f"direction {d!r} is invalid: use 'minimize' or 'maximize'")
    sign = np.array([-1.0 if name == "maximize" else 1.0 for name in names])
    return v * sign


def domination_matrix(
    values: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[Any],
    violations: Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """``D[i, j]`` is True when individual i (constrained-)dominates j.

    With ``violations`` (sum of positive constraint values, 0 = feasible): a feasible individual
    dominates an infeasible one, two infeasible ones compare by violation, two feasible ones by Pareto.
    """
    v = _orient(values, directions)
    le = (v[:, None, :] <= v[None, :, :]).all(-1)
    lt = (v[:, None, :] < v[None, :, :]).any(-1)
    dom = le & lt
    if violations is not None:
        c = np.asarray(violations, dtype=float)
        feas = c <= 0
        both_feas = feas[:, None] & feas[None, :]
        dom = np.where(
            both_feas,
            dom,
            np.where(feas[:, None] & ~feas[None, :], True, ~feas[:, None] & ~feas[None, :] & (c[:, None] < c[None, :])),
        )
    return dom


def non_dominated_sort(
    values: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[Any],
    violations: Sequence[float] | np.ndarray | None = None,
) -> list[list[int]]:
    """Fronts of indices, best front first, each sorted by index."""
    n = len(values)
    if n == 0:
        return []
    dom = domination_matrix(values, directions, violations)
    remaining = np.ones(n, dtype=bool)
    fronts = []
    while remaining.any():
        dominated = (dom & remaining[:, None]).any(0)
        front = np.flatnonzero(remaining & ~dominated)
        fronts.append([int(i) for i in front])
        remaining[front] = False
    return fronts


def _better_counts(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> np.ndarray:
    """``[i, k]``: how many individuals are strictly better than ``i`` in objective ``k`` (its rank, 0 =
    best, ties sharing the better rank)."""
    v = _orient(values, directions)
    return (v[None, :, :] < v[:, None, :]).sum(1)


def rank_sums(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> np.ndarray:
    """Each individual's sum over objectives of its rank (0 = best; ties share the lower rank)."""
    return _better_counts(values, directions).sum(1)


def log_rank_sums(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> np.ndarray:
    """AZ-NAS's aggregation (Lee & Ham, 2024), oriented so that lower is better: ``-sum_k log(r_k / n)``,
    ``r_k = n - (how many are strictly better in k)``, so the best of an objective gets ``r = n`` (ties
    share the better rank) and an individual best in every objective scores 0. The log of a rank falls
    steeply near the bottom, so one very bad rank costs more than in a sum: it favours the individuals
    every objective ranks well over one objective's favourite."""
    better = _better_counts(values, directions)
    n = len(better)
    return -np.log((n - better) / n).sum(1)


#: How per-objective ranks are aggregated into one number per individual (lower is better), by name:
#: the rank sum (the original's) and AZ-NAS's log-rank sum.
AGGREGATIONS: dict[str, Callable[[np.ndarray | Sequence[Sequence[float]], Sequence[Any]], np.ndarray]] = {
    "rank_sum": rank_sums,
    "log_rank": log_rank_sums,
}


def rank_sum_order(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> list[int]:
    """The original's order within a front: the best individual of each objective first (in objective
    order), then the rest by the sum of per-objective ranks (rank 0 = best, ties share the lower rank),
    ties broken by position."""
    return aggregate_order(values, directions, "rank_sum")


def log_rank_order(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> list[int]:
    """As :func:`rank_sum_order`, the rest ordered by :func:`log_rank_sums` instead."""
    return aggregate_order(values, directions, "log_rank")


def aggregate_order(
    values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any], aggregation: str
) -> list[int]:
    """The best individual of each objective first (in objective order), so survival keeps every
    objective's extreme, then the rest by ``AGGREGATIONS[aggregation]``, ties broken by position."""
    v = _orient(values, directions)
    n, m = v.shape
    score = AGGREGATIONS[aggregation](values, directions)
    order: list[int] = []
    for k in range(m):
        best = min(range(n), key=lambda i: (v[i, k], score[i], i))
        if best not in order:
            order.append(best)
    order += sorted((i for i in range(n) if i not in order), key=lambda i: (score[i], i))
    return order


def crowding_distance(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> np.ndarray:
    """NSGA-II crowding distance (boundary individuals get infinity)."""
    v = _orient(values, directions)
    n, m = v.shape
    dist = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(v[:, k], kind="stable")
        lo, hi = v[order[0], k], v[order[-1], k]
        dist[order[0]] = dist[order[-1]] = np.inf
        span = hi - lo
        if not np.isfinite(span) or span <= 0:
            continue
        dist[order[1:-1]] += (v[order[2:], k] - v[order[:-2], k]) / span
    return dist


def crowding_order(values: np.ndarray | Sequence[Sequence[float]], directions: Sequence[Any]) -> list[int]:
    """Largest crowding distance first, ties broken by position."""
    d = crowding_distance(values, directions)
    return sorted(range(len(d)), key=lambda i: (-d[i], i))


#: How survival orders the front that overflows (best first), by name.
REDUCTION_ORDERS: dict[str, Callable[[np.ndarray, Sequence[Any]], list[int]]] = {
    "rank_sum": rank_sum_order,
    "log_rank": log_rank_order,
    "crowding": crowding_order,
}
REDUCTIONS: tuple[str, ...] = tuple(REDUCTION_ORDERS)


def select_survivors(
    values: np.ndarray | Sequence[Sequence[float]],
    directions: Sequence[Any],
    k: int,
    reduction: str = "rank_sum",
    violations: Sequence[float] | np.ndarray | None = None,
) -> list[int]:
    """(mu + lambda) survival: fill ``k`` places front by front; the front that overflows is reduced
    by ``reduction`` (``rank_sum``, the original's rule, ``log_rank``, AZ-NAS's aggregation of the same
    ranks, or ``crowding``, NSGA-II's; :data:`REDUCTION_ORDERS`).

    Returns indices ordered best first: by front, then by the reduction's preference within a front.
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(f"reduction={reduction!r} is invalid: choose one of {', '.join(REDUCTIONS)}")
    v = np.asarray(values, dtype=float).reshape(len(values), len(directions))
    order_in = REDUCTION_ORDERS[reduction]
    chosen: list[int] = []
    for front in non_dominated_sort(v, directions, violations):
        if len(chosen) >= k:
            break
        ranked = [front[i] for i in order_in(v[front], directions)]
        chosen += ranked[: k - len(chosen)]
    return chosen
