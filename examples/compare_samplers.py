"""GeneticCellSampler vs Optuna's NSGA-II vs RandomSampler on the same objective and budget.

Prints each sampler's hypervolume (all three scores min-max normalised over every sampler's trials,
so the numbers compare) and its front size. The built-in data and a small NAS-Bench-201 network keep
this under a minute; for real figures see benchmarks/nb201_search.py.
"""

import optuna

from nas_sampler import GeneticCellSampler, NB201Space, TrainingFreeObjective
from nas_sampler.quality import normalised_hypervolumes

optuna.logging.set_verbosity(optuna.logging.WARNING)
space = NB201Space(width=8, cells_per_stage=1)
objective = TrainingFreeObjective(space, data="builtin", batch_size=16)
budget, population = 24, 8
samplers = {
    "genetic": GeneticCellSampler(population_size=population, seed=0),
    "nsga2": optuna.samplers.NSGAIISampler(population_size=population, seed=0),
    "random": optuna.samplers.RandomSampler(seed=0),
}
fronts = {}
for name, sampler in samplers.items():
    study = optuna.create_study(directions=objective.directions, sampler=sampler)
    study.optimize(objective, n_trials=budget)
    fronts[name] = [t.values for t in study.trials if t.values is not None]
    print(f"{name:8s} {len(study.trials)} trials, front of {len(study.best_trials)}")
for name, hv in normalised_hypervolumes(fronts).items():
    print(f"{name:8s} hypervolume {hv:.4f}")
