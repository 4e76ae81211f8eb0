"""Stop a search and resume it: the resumed search proposes exactly what an uninterrupted one would.

Runs 7 trials, "stops", then a new sampler object (as a new process would) continues to 16, and
checks the genotypes against a search that ran straight through.
"""

import tempfile
from pathlib import Path

import optuna

from nas_sampler import CellSpace, GeneticCellSampler, TrainingFreeObjective

optuna.logging.set_verbosity(optuna.logging.WARNING)
space = CellSpace(max_nodes=3, channel_choices=(0, 4, 8, 16), width=8)
objective = TrainingFreeObjective(space, data="builtin", batch_size=16)


def search(storage: str, name: str, n_trials: int) -> list[str]:
    study = optuna.create_study(
        directions=objective.directions,
        sampler=GeneticCellSampler(population_size=4, seed=42),
        storage=storage,
        study_name=name,
        load_if_exists=True,
    )
    done = len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,)))
    study.optimize(objective, n_trials=n_trials - done)
    return [t.user_attrs["genotype"] for t in study.trials]


with tempfile.TemporaryDirectory() as tmp:
    url = f"sqlite:///{Path(tmp) / 'resume.db'}"
    straight = search(url, "straight", 16)
    search(url, "stopped", 7)  # ... the process ends here ...
    resumed = search(url, "stopped", 16)  # ... and a new one resumes
    print("straight:", len(straight), "trials; resumed:", len(resumed), "trials")
    print("identical genotypes in the same order:", straight == resumed)
    assert straight == resumed
