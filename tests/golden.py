"""The searches whose proposals are pinned in ``tests/fixtures/golden_genotypes.json``.

A redesign must not change what the sampler proposes for a given seed. Each case runs a short
search (in-memory storage) with a deterministic objective computed from the genotype string, so
only the sampler decides the outcome; the tournament cases add a tiny DARTS tournament on the
built-in data. ``python tests/golden.py`` writes the fixture from the code at hand; the test
compares a fresh run with it.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import optuna

from nas_sampler import CellSpace, DartsTournament, GeneticCellSampler, NB201Space
from nas_sampler.space import GENOTYPE_ATTR, SearchSpace

FIXTURE = Path(__file__).parent / "fixtures" / "golden_genotypes.json"
POPULATION = 6
GENERATIONS = 4
SEEDS = (0, 1, 2)
TINY_TOURNAMENT = dict(steps=4, warmup_steps=2, batch_size=8, width=4)


def spaces() -> dict[str, SearchSpace]:
    return {
        "smoke_cell": CellSpace(max_nodes=3, channel_choices=[0, 4, 8, 16], width=8),
        "nb201": NB201Space(),
    }


def _values(text: str) -> tuple[float, float]:
    """Two conflicting objectives from the genotype string alone (stable across processes)."""
    digest = hashlib.sha256(text.encode()).digest()
    a = int.from_bytes(digest[:4], "big") / 2**32
    return a, 1.0 - a + int.from_bytes(digest[4:8], "big") / 2**33


def run(space_name: str, seed: int, tournament: bool) -> list[str]:
    """The genotype strings of the case's trials, in trial order."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spaces()[space_name]
    tour = None
    if tournament:
        tour = DartsTournament(data="builtin", every=2, size=3, device="cpu", seed=0, **TINY_TOURNAMENT)
    sampler = GeneticCellSampler(population_size=POPULATION, space=space, seed=seed, tournament=tour)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        return _values(str(space.suggest(trial)))

    study.optimize(objective, n_trials=POPULATION * GENERATIONS)
    return [t.user_attrs[GENOTYPE_ATTR] for t in study.trials]


def cases() -> list[tuple[str, int, bool]]:
    return [(name, seed, tour) for name in spaces() for seed in SEEDS for tour in (False, True)]


def key(space_name: str, seed: int, tournament: bool) -> str:
    return f"{space_name}/seed={seed}/{'tournament' if tournament else 'pareto'}"


def main() -> None:
    out: dict[str, Any] = {key(*c): run(*c) for c in cases()}
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} cases to {FIXTURE}", file=sys.stderr)


if __name__ == "__main__":
    main()
