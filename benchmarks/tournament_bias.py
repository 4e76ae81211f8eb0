"""Does the DARTS tournament favour parameter-free cells, as DARTS is known to?

Two experiments on NAS-Bench-201 cells, each one supernet per seed (see nas_sampler.tournament):

* ``pairs``: groups of two, a parameter-free cell (every edge skip_connect or avg_pool_3x3) against a
  convolutional cell (every edge nor_conv_1x1 or nor_conv_3x3), in random order. Reports how often the
  parameter-free cell wins, and how often the winner has the higher NAS-Bench-201 CIFAR-10 accuracy.
* ``random``: groups of four random cells (all-``none`` cells excluded; with ``--min-accuracy``, only cells
  of at least that NAS-Bench-201 accuracy, the near-ties a search's finalists are). Reports how often the winner is
  the group's best by NAS-Bench-201 accuracy (chance: 1/4), the mean Kendall tau between alpha and
  accuracy within a group, and the share of parameter-free edges (skip/pool) among winners vs all.

    .venv/bin/python benchmarks/tournament_bias.py [--data ../shared/data/cifar10/train] [--seeds 2]

Each seed is one supernet for its pairs and one for its groups (``--pairs 0`` or ``--groups 0`` leaves
one out); ``--steps``, ``--warmup`` and ``--batch`` are the tournament's. ``--threads 1`` measures CPU
time as a search on one thread spends it. Ends with one JSON line of the figures, the group-best rate
with its 95 % Wilson interval (what the number of groups allows) and the CPU seconds per group of 4
(a tournament of a population of 20 holds 10 such groups).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, NB201_CSV, load_nb201, require  # noqa: E402

from nas_sampler.genotype import Edge, Genotype  # noqa: E402
from nas_sampler.space import NB201Space  # noqa: E402
from nas_sampler.tournament import run_tournament  # noqa: E402

FREE = ("skip_connect", "avg_pool_3x3")
CONV = ("nor_conv_1x1", "nor_conv_3x3")


def cell(rng: np.random.Generator, ops: tuple[str, ...]) -> Genotype:
    return Genotype([Edge(ops[int(rng.integers(len(ops)))], j) for j in range(i)] for i in range(1, 4))


def free_share(g: Genotype) -> float:
    ops = [e.op for _, e in g.edges()]
    return sum(op in FREE for op in ops) / len(ops)


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95 % Wilson score interval of a binomial rate k/n."""
    p, d = k / n, 1 + z * z / n
    mid, half = (p + z * z / (2 * n)) / d, z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [round(float(mid - half), 3), round(float(mid + half), 3)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(CIFAR10_TRAIN) if CIFAR10_TRAIN.is_dir() else "builtin")
    ap.add_argument("--csv", type=Path, default=NB201_CSV, help="NAS-Bench-201 CIFAR-10 accuracies")
    ap.add_argument("--pairs", type=int, default=16)
    ap.add_argument("--groups", type=int, default=8, help="groups of four random cells")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--min-accuracy", type=float, default=None, help="draw the groups' cells among those of at least this accuracy"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    acc = load_nb201(require(args.csv, "NAS-Bench-201 ground truth", "--csv"))
    if args.min_accuracy is not None:  # the groups are drawn by rejection: too few such cells would never end
        reach = sum(a >= args.min_accuracy for a in acc.values())
        if reach < 4 * args.groups:
            ap.error(
                f"--min-accuracy {args.min_accuracy}: only {reach} cells reach it, and {args.groups} groups of 4 "
                f"need {4 * args.groups}; give a lower accuracy or fewer --groups"
            )
    space = NB201Space()
    from nas_sampler.data import load_dataset

    data = load_dataset(args.data, train=True)
    kw = dict(steps=args.steps, warmup_steps=args.warmup, batch_size=args.batch, device="auto")
    t0 = time.perf_counter()
    group_cpu = 0.0

    free_wins = better_wins = n_pairs = 0
    best_wins = n_groups = 0
    taus: list[float] = []
    gain: list[float] = []  # the winner's accuracy above its group's mean (a random pick's expectation)
    lowest = float("inf")  # the least accurate cell drawn into a group
    win_free: list[float] = []
    all_free: list[float] = []
    for seed in range(args.seeds):
        rng = np.random.default_rng([seed, 11])
        cands: list[Genotype] = []
        groups: list[list[int]] = []
        for _ in range(args.pairs):
            pair = [cell(rng, FREE), cell(rng, CONV)]
            if rng.random() < 0.5:
                pair.reverse()
            groups.append([len(cands), len(cands) + 1])
            cands += pair
        if groups:
            r = run_tournament(space, cands, data, groups=groups, seed=seed, **kw)
            for g, w in zip(groups, r.winners, strict=True):
                loser = g[0] if w == g[1] else g[1]
                free_wins += free_share(cands[w]) == 1.0
                better_wins += acc[str(cands[w])] >= acc[str(cands[loser])]
                n_pairs += 1
            print(f"seed {seed} pairs: {r.seconds:.0f} s, parameter-free wins so far {free_wins}/{n_pairs}", flush=True)

        if args.groups == 0:
            continue
        cands, groups = [], []
        for _ in range(args.groups):
            group = []
            while len(group) < 4:
                g = space.random(rng)
                good = args.min_accuracy is None or acc[str(g)] >= args.min_accuracy
                if good and any(e.op != "none" for _, e in g.edges()) and g not in cands:
                    group.append(len(cands))
                    cands.append(g)
            groups.append(group)
        c0 = time.process_time()
        r = run_tournament(space, cands, data, groups=groups, seed=seed, **kw)
        group_cpu += time.process_time() - c0
        for g, w in zip(groups, r.winners, strict=True):
            accs = [acc[str(cands[i])] for i in g]
            best_wins += acc[str(cands[w])] == max(accs)
            gain.append(acc[str(cands[w])] - float(np.mean(accs)))
            lowest = min(lowest, *accs)
            tau = kendalltau([r.alphas[i] for i in g], accs).statistic
            if np.isfinite(tau):
                taus.append(float(tau))
            win_free.append(free_share(cands[w]))
            all_free += [free_share(cands[i]) for i in g]
            n_groups += 1
        print(f"seed {seed} random groups: {r.seconds:.0f} s, best-by-benchmark wins so far {best_wins}/{n_groups}")

    figures = {
        "benchmark": "tournament_bias",
        "data": args.data,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "steps": args.steps,
        "warmup_steps": args.warmup,
        "batch_size": args.batch,
        "seeds": args.seeds,
        "pairs": n_pairs,
        "parameter_free_win_rate": round(free_wins / n_pairs, 3) if n_pairs else None,
        "pair_winner_has_higher_nb201_accuracy": round(better_wins / n_pairs, 3) if n_pairs else None,
        "groups_of_4": n_groups,
        "winner_is_group_best_by_nb201": round(best_wins / n_groups, 3) if n_groups else None,
        "group_best_95ci": wilson(best_wins, n_groups) if n_groups else None,
        "chance_group_best": 0.25,
        "min_accuracy": args.min_accuracy,
        "lowest_group_cell_accuracy": lowest if n_groups else None,
        "winner_accuracy_above_group_mean": round(float(np.mean(gain)), 3) if gain else None,
        "mean_kendall_tau_alpha_vs_accuracy": round(float(np.mean(taus)), 3) if taus else None,
        "parameter_free_edge_share_winners": round(float(np.mean(win_free)), 3) if win_free else None,
        "parameter_free_edge_share_all": round(float(np.mean(all_free)), 3) if all_free else None,
        "cpu_seconds_per_group_of_4": round(group_cpu / n_groups, 2) if n_groups else None,
        "threads": args.threads,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
