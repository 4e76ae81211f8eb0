"""Samplers compared on the original cell space: which one finds the best trade-off of the scores?

For each sampler and seed: ``--budget`` trials of ``TrainingFreeObjective`` over the default
``CellSpace`` (its conditional Optuna encoding, so Random, TPE and NSGA-II draw cells of the kind
``CellSpace.random`` does) on one seeded CIFAR-10 batch, the three default scores minimised. There
is no ground truth for this space, so the searches are compared on what they optimise:

* ``hypervolume``: of each search's completed trials' three scores, normalised per seed over all
  samplers together (``nas_sampler.quality.normalised_hypervolumes``: min-max per score, reference
  1.1), mean over seeds;
* ``best_rank_sum``: per seed, every sampler's trials ranked together on each score; a sampler's
  best trial's sum of ranks, divided by the number of scores and by the pooled trials (0: best on
  every score; lower is better), mean over seeds;
* ``median_params``: the median parameter count of the scoring networks it scored;
* ``cpu_minutes``: CPU time of the search (``time.process_time``, torch on ``--threads`` threads).

Degenerate networks fail their trial (the objective's default); they count in the budget. The last
line is JSON, per sampler ``{"hypervolume", "best_rank_sum", "cpu_minutes", "median_params"}``.

    .venv/bin/python benchmarks/cell_search.py [--samplers genetic,nsga2,tpe,random] [--seeds 3] [--budget 300]
        [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import optuna
import torch
from scipy.stats import rankdata

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, require  # noqa: E402
from _samplers import make_sampler  # noqa: E402

from nas_sampler import CellSpace, TrainingFreeObjective  # noqa: E402
from nas_sampler.phenotype import count_parameters  # noqa: E402
from nas_sampler.quality import normalised_hypervolumes  # noqa: E402

SAMPLERS = ("genetic", "nsga2", "tpe", "random")  # compared here, of _samplers.SAMPLERS


def run_one(name: str, seed: int, args: argparse.Namespace) -> dict:
    objective = TrainingFreeObjective(
        CellSpace(), data=str(args.data), batch_size=args.batch_size, seed=seed, device="cpu"
    )
    study = optuna.create_study(directions=objective.directions, sampler=make_sampler(name, seed, args.population))
    params: list[int] = []

    def counted(trial: optuna.Trial) -> tuple[float, ...]:
        values = objective(trial)
        params.append(count_parameters(objective.build(objective.space.parse(trial.user_attrs["genotype"]))))
        return values

    cpu0 = time.process_time()
    study.optimize(counted, n_trials=args.budget, catch=objective.catch)
    cpu = time.process_time() - cpu0
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    print(f"  {name} seed {seed}: {len(done)}/{len(study.trials)} complete, {cpu / 60:.1f} CPU min", file=sys.stderr)
    return {
        "sampler": name,
        "seed": seed,
        "values": [list(t.values) for t in done],
        "failed": len(study.trials) - len(done),
        "cpu_minutes": cpu / 60,
        "median_params": float(statistics.median(params)) if params else float("nan"),
    }


def report(runs: list[dict], samplers: list[str], seeds: list[int]) -> dict[str, dict[str, float]]:
    per: dict[str, dict[str, list[float]]] = {s: {"hv": [], "rank": []} for s in samplers}
    for seed in seeds:
        mine = {r["sampler"]: r for r in runs if r["seed"] == seed}
        hv = normalised_hypervolumes({s: mine[s]["values"] for s in samplers})
        pooled = np.array([v for s in samplers for v in mine[s]["values"]], dtype=float)
        ranks = np.column_stack([rankdata(pooled[:, j]) for j in range(pooled.shape[1])]).sum(1)
        ranks = ranks / (pooled.shape[1] * len(pooled))
        start = 0
        for s in samplers:
            n = len(mine[s]["values"])
            per[s]["hv"].append(hv[s])
            per[s]["rank"].append(float(ranks[start : start + n].min()) if n else float("nan"))
            start += n
    result = {}
    header = f"{'sampler':12} {'hypervolume':>11} {'best rank sum':>13} {'median params':>13} {'CPU min':>8}"
    print(f"{header} {'failed':>6}")
    for s in samplers:
        mine = [r for r in runs if r["sampler"] == s]
        result[s] = {
            "hypervolume": round(float(np.mean(per[s]["hv"])), 4),
            "best_rank_sum": round(float(np.mean(per[s]["rank"])), 4),
            "cpu_minutes": round(float(np.mean([r["cpu_minutes"] for r in mine])), 2),
            "median_params": round(float(np.median([r["median_params"] for r in mine]))),
        }
        hv_sd = float(np.std(per[s]["hv"]))
        failed = float(np.mean([r["failed"] for r in mine]))
        print(
            f"{s:12} {result[s]['hypervolume']:7.4f}±{hv_sd:.3f} {result[s]['best_rank_sum']:13.4f} "
            f"{result[s]['median_params']:13,} {result[s]['cpu_minutes']:8.2f} {failed:6.1f}"
        )
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated, of {', '.join(SAMPLERS)}")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per sampler (default 3)")
    ap.add_argument("--budget", type=int, default=300, help="trials per search (default 300)")
    ap.add_argument("--population", type=int, default=20, help="population of genetic and nsga2 (default 20)")
    ap.add_argument("--batch-size", type=int, default=32, help="CIFAR-10 images in the scoring batch (default 32)")
    ap.add_argument("--data", type=Path, default=CIFAR10_TRAIN, help="CIFAR-10 ImageFolder (default ../shared/...)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--jobs", type=int, default=1, help="searches run at once, one process each (default 1)")
    ap.add_argument("--out", type=Path, default=None, help="write every run's values here as JSON")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    require(args.data, "CIFAR-10 folder", "--data")
    samplers = [s for s in args.samplers.split(",") if s]
    seeds = list(range(args.seeds))
    jobs = [(s, seed) for seed in seeds for s in samplers]
    if args.jobs > 1:  # each search is seeded and runs alone in its process: the same runs as one by one
        with ProcessPoolExecutor(args.jobs, initializer=torch.set_num_threads, initargs=(args.threads,)) as pool:
            runs = list(pool.map(run_one, [s for s, _ in jobs], [seed for _, seed in jobs], [args] * len(jobs)))
    else:
        runs = [run_one(s, seed, args) for s, seed in jobs]
    print(f"CellSpace(), {args.budget} trials, seeds {seeds}, CIFAR-10 batch {args.batch_size}, three scores")
    result = report(runs, samplers, seeds)
    if args.out:
        args.out.write_text(json.dumps(runs))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
