"""The README's quickstart: a short search on the built-in data, then the Pareto front."""

import optuna

from nas_sampler import CellSpace, GeneticCellSampler, TrainingFreeObjective

space = CellSpace()  # the default operations and sizes
objective = TrainingFreeObjective(space, data="builtin", batch_size=32)
study = optuna.create_study(
    directions=objective.directions,  # three "minimize"
    sampler=GeneticCellSampler(population_size=10, seed=0),
    storage="sqlite:///quickstart.db",
    study_name="quickstart",
    load_if_exists=True,
)
study.optimize(objective, n_trials=30)
for t in study.best_trials:
    print(t.number, t.user_attrs["genotype"], t.values)
