"""How good is what the search found? Look its cells up in NAS-Bench-201's ground truth.

Runs a short NAS-Bench-201 search (CIFAR-10 batch when ../shared/data/cifar10 is there, else the
built-in data), picks one architecture from the Pareto front by the sum of per-objective ranks, and
prints its true CIFAR-10 test accuracy next to the benchmark's median and best.
    python examples/nb201_ground_truth.py [path/to/cifar10_test_accuracy.csv]
"""

import csv
import statistics
import sys
from pathlib import Path

import optuna

from nas_sampler import GeneticCellSampler, NB201Space, TrainingFreeObjective
from nas_sampler.final import choose_trials

optuna.logging.set_verbosity(optuna.logging.WARNING)
shared = Path(__file__).resolve().parents[1].parent / "shared" / "data"
csv_path = Path(sys.argv[1]) if len(sys.argv) > 1 else shared / "nb201" / "cifar10_test_accuracy.csv"
if not csv_path.exists():
    sys.exit(f"NAS-Bench-201 ground truth not found at {csv_path}; pass the CSV path as the first argument")
with open(csv_path) as f:
    accuracy = {row[0]: float(row[1]) for row in csv.reader(f) if row and row[0].startswith("|")}

cifar = shared / "cifar10" / "train"
data = str(cifar) if cifar.is_dir() else "builtin"
space = NB201Space(width=8, cells_per_stage=1)  # a small skeleton keeps this example under a minute
objective = TrainingFreeObjective(space, data=data, batch_size=16, extra_objectives=["params:maximize"])
study = optuna.create_study(directions=objective.directions, sampler=GeneticCellSampler(population_size=8, seed=0))
study.optimize(objective, n_trials=32)

(pick,) = choose_trials(study, n_cells=1)
found = pick.user_attrs["genotype"]
print(f"data: {data}; {len(study.trials)} architectures scored, front of {len(study.best_trials)}")
print(f"picked trial {pick.number}: {found}")
print(
    f"its true accuracy {accuracy[found]:.2f} %, median {statistics.median(accuracy.values()):.2f} %, "
    f"best {max(accuracy.values()):.2f} %"
)
print(f"best true accuracy on the front: {max(accuracy[t.user_attrs['genotype']] for t in study.best_trials):.2f} %")
