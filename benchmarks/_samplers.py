"""The samplers the search benchmarks compare, by name: one table, so every benchmark builds them alike."""

from __future__ import annotations

from collections.abc import Callable

import optuna
from _common import NB201_PRESET

from nas_sampler import DartsTournament, GeneticCellSampler
from nas_sampler.selection import ParetoSelector

Maker = Callable[[int, int, str | None], optuna.samplers.BaseSampler]  # (seed, population, data) -> sampler


def _genetic_darts(seed: int, population: int, data: str | None) -> optuna.samplers.BaseSampler:
    """The genetic sampler with the nb201-cifar10 preset's DARTS tournament, on ``data``."""
    if data is None:
        raise SystemExit("the genetic-darts sampler trains a supernet: give the benchmark's --data")
    t = NB201_PRESET.tournament
    tournament = DartsTournament(
        data=data, every=t.every, size=t.size, steps=t.steps, batch_size=t.batch_size, seed=seed, device="cpu"
    )
    return GeneticCellSampler(population_size=population, seed=seed, tournament=tournament)


SAMPLERS: dict[str, Maker] = {
    "genetic": lambda seed, population, data: GeneticCellSampler(population_size=population, seed=seed),
    "genetic-darts": _genetic_darts,
    # survival's overflowing front reduced by AZ-NAS's log rank instead of the rank sum
    "genetic-log-rank": lambda seed, population, data: GeneticCellSampler(
        population_size=population, seed=seed, selector=ParetoSelector("log_rank")
    ),
    # the cell space's setting (docs/results.md): more mutation, less crossover, generations of 10
    "genetic-cell": lambda seed, population, data: GeneticCellSampler(
        population_size=10, seed=seed, crossover_prob=0.5, mutation_prob=1.0
    ),
    "nsga2": lambda seed, population, data: optuna.samplers.NSGAIISampler(population_size=population, seed=seed),
    "tpe": lambda seed, population, data: optuna.samplers.TPESampler(seed=seed, multivariate=True),
    "random": lambda seed, population, data: optuna.samplers.RandomSampler(seed=seed),
}


def make_sampler(name: str, seed: int, population: int, data: str | None = None) -> optuna.samplers.BaseSampler:
    if name not in SAMPLERS:
        raise SystemExit(f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name](seed, population, data)
