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
import shutil
import sys
import tempfile
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


def run(
    space_name: str, seed: int, tournament: bool, storage: str | None = None, n_trials: int | None = None
) -> list[str]:
    """The genotype strings of the case's trials, in trial order. With ``storage``, the search runs
    (or resumes) there, up to ``n_trials`` trials in all."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = spaces()[space_name]
    tour = None
    if tournament:
        tour = DartsTournament(data="builtin", every=2, size=3, device="cpu", seed=0, **TINY_TOURNAMENT)
    sampler = GeneticCellSampler(population_size=POPULATION, space=space, seed=seed, tournament=tour)
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=sampler, storage=storage, study_name="golden", load_if_exists=True
    )

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        return _values(str(space.suggest(trial)))

    total = POPULATION * GENERATIONS if n_trials is None else n_trials
    study.optimize(objective, n_trials=total - len(study.trials))
    return [t.user_attrs[GENOTYPE_ATTR] for t in study.trials]


def cases() -> list[tuple[str, int, bool]]:
    return [(name, seed, tour) for name in spaces() for seed in SEEDS for tour in (False, True)]


def key(space_name: str, seed: int, tournament: bool) -> str:
    return f"{space_name}/seed={seed}/{'tournament' if tournament else 'pareto'}"


# studies written half-way by the code of the day, resumed by later code: the keys a study holds may
# change, but a study written before must resume to the same search
OLD_STUDIES = {("smoke_cell", 0, True): 15, ("nb201", 1, False): 9}  # case -> trials written


def old_study(case: tuple[str, int, bool]) -> Path:
    space_name, seed, tournament = case
    return FIXTURE.parent / f"old_study_{space_name}_seed{seed}_{'tournament' if tournament else 'pareto'}.db"


CLI_STUDY = FIXTURE.parent / "old_study_cli_smoke.db"  # the smoke preset's search, 12 of its 24 trials
CLI_KEY = "cli/smoke"


def cli_search(db: Path, trials: int | None = None) -> list[str]:
    """``nas-sampler search --preset smoke`` on ``db`` (to ``trials`` trials, or the preset's
    budget); the genotypes of the study's trials, in trial order."""
    from nas_sampler import cli

    args = ["search", "--preset", "smoke", "--storage", f"sqlite:///{db}"]
    if cli.main(args + ([] if trials is None else ["--trials", str(trials)])) != 0:
        raise RuntimeError(f"nas-sampler {' '.join(args)} failed")
    study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{db}")
    return [t.user_attrs[GENOTYPE_ATTR] for t in study.trials]


def main() -> None:
    out: dict[str, Any] = {key(*c): run(*c) for c in cases()}
    with tempfile.TemporaryDirectory() as tmp:
        out[CLI_KEY] = cli_search(Path(tmp) / "straight.db")
    CLI_STUDY.unlink(missing_ok=True)
    cli_search(CLI_STUDY, trials=12)
    shutil.rmtree(CLI_STUDY.parent / f"{CLI_STUDY.stem}-artifacts", ignore_errors=True)  # pictures: not needed
    Path(f"{CLI_STUDY}.nas-lock").unlink(missing_ok=True)
    FIXTURE.parent.mkdir(exist_ok=True)
    FIXTURE.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(out)} cases to {FIXTURE}", file=sys.stderr)
    for case, n in OLD_STUDIES.items():
        path = old_study(case)
        path.unlink(missing_ok=True)
        run(*case, storage=f"sqlite:///{path}", n_trials=n)
        print(f"wrote {path} ({n} trials)", file=sys.stderr)


if __name__ == "__main__":
    main()
