"""Choosing the next parents: the :class:`ParentSelector` protocol and its default, Pareto selection.

A selector sees the previous parents and the generation's finished offspring and returns the
survivors, best first; the DARTS tournament (:mod:`nas_sampler.tournament`) is another selector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from optuna.study import Study
from optuna.trial import FrozenTrial

from nas_sampler.errors import ConfigError
from nas_sampler.evolution import REDUCTIONS, select_survivors
from nas_sampler.space import SearchSpace


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
    objective always kept), ``"log_rank"`` (the same with AZ-NAS's sum of log ranks) or ``"crowding"``
    (NSGA-II). Honours ``trial.set_constraint`` by constrained domination."""

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


def feasible_trials(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The trials within every constraint (all values <= 0, Optuna's convention), by the same reading
    as :func:`constraint_violations`, so the final choice agrees with survival; all of them when no
    trial reports constraints."""
    violations = constraint_violations(trials)
    return list(trials) if violations is None else [t for t, v in zip(trials, violations, strict=True) if v <= 0]
