"""From search to a trained network: a short genetic search on CIFAR-10 (with a DARTS tournament),
export of the final network, a short training run, and the same training for random cells of the
same space as the baseline. Prints the times and test accuracies, then one JSON line.

    .venv/bin/python examples/train_final.py --data ../shared/data/cifar10 --epochs 2 --subset 10000

``--data`` is a folder holding ``train/`` and ``test/`` ImageFolder folders (or ``builtin``, offline).
The search scores on the training split; the test accuracy is on the whole test split.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from nas_sampler.final import export_final
from nas_sampler.objective import TrainingFreeObjective
from nas_sampler.phenotype import count_parameters
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.space import CellSpace
from nas_sampler.tournament import DartsTournament
from nas_sampler.train import train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/cifar10")
    ap.add_argument("--out", default="train_final_run")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--tournament-every", type=int, default=2, help="0 = no tournament")
    ap.add_argument("--cells", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--subset", type=int, default=10000)
    ap.add_argument("--test-subset", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data)
    search_data = str(data / "train") if (data / "train").is_dir() else args.data

    space = CellSpace()
    t0 = time.perf_counter()
    tournament = None
    if args.tournament_every > 0:
        tournament = DartsTournament(data=search_data, every=args.tournament_every, size=4, seed=args.seed)
    objective = TrainingFreeObjective(space, data=search_data, batch_size=32, seed=args.seed, device="auto")
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'search.db'}",
        study_name="train-final",
        directions=objective.directions,
        sampler=GeneticCellSampler(population_size=args.population, space=space, seed=args.seed, tournament=tournament),
        load_if_exists=True,
    )
    n_trials = args.population * args.generations - len(study.trials)
    if n_trials > 0:
        study.optimize(objective, n_trials=n_trials)
    search_s = time.perf_counter() - t0

    record = export_final(study, out / "final.json", n_cells=args.cells, seed=args.seed)
    common = dict(
        data=args.data,
        epochs=args.epochs,
        subset=args.subset,
        test_subset=args.test_subset,
        batch_size=args.batch_size,
        seed=args.seed,
        progress=True,
    )
    final = train(out / "final.json", study=study, out_dir=out / "final-trained", **common)

    rng = np.random.default_rng([args.seed, 99])
    randoms = [space.random(rng) for _ in range(args.cells)]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(args.seed)
        baseline_net = space.final_network(randoms, num_classes=record["num_classes"])
    baseline = train(baseline_net, out_dir=out / "random-trained", **common)

    figures = {
        "example": "train_final",
        "device": final.device,
        "threads": args.threads,
        "search": {
            "trials": len(study.trials),
            "population": args.population,
            "generations": args.generations,
            "tournament_every": args.tournament_every,
            "seconds": round(search_s, 1),
        },
        "final": {
            "genotypes": record["genotypes"],
            "trials": record["trials"],
            "parameters": final.parameters,
            "test_accuracy": round(final.test_accuracy, 4),
            "train_seconds": round(final.seconds, 1),
        },
        "random": {
            "genotypes": [str(g) for g in randoms],
            "parameters": count_parameters(baseline_net),
            "test_accuracy": round(baseline.test_accuracy, 4),
            "train_seconds": round(baseline.seconds, 1),
        },
        "epochs": args.epochs,
        "train_images": args.subset,
        "test_images": json.loads(Path(final.metrics_path).read_text())["test_images"],
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
