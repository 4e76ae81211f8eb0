"""How well each training-free score ranks NATS-Bench's size space: Kendall tau against true accuracy.

Scores random size-space networks with ``TrainingFreeObjective`` on a seeded CIFAR-10 batch and
prints each score's tau (and the parameter count's) over all of them and over those within a
parameter budget, and each ``--combos`` entry's: the scores' aggregated ranks (``log_rank``, AZ-NAS's,
or ``rank_sum``). Last line: JSON.

    .venv/bin/python benchmarks/sss_correlation.py --archs 160 --batch-size 32
    .venv/bin/python benchmarks/sss_correlation.py --metrics expressivity,progressivity,trainability,complexity \
        --combos expressivity+progressivity+trainability+complexity,expressivity+trainability+params
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, require  # noqa: E402
from _sss import NATS_SSS_CSV, load_sss  # noqa: E402

from nas_sampler import SSSSpace, TrainingFreeObjective  # noqa: E402
from nas_sampler.evolution import AGGREGATIONS  # noqa: E402

METRICS = ("ntk_cond", "activation", "jacobian", "swap")


def _tau(score: np.ndarray, acc: np.ndarray) -> float | None:
    """Kendall's tau, or None where it is undefined (a score constant over the networks, such as SWAP
    on a batch so small that every image's pattern is distinct)."""
    tau = float(kendalltau(score, acc).statistic)
    return None if np.isnan(tau) else round(tau, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", type=int, default=160, help="random networks scored")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=300_000, help="also the tau within this many parameters")
    p.add_argument("--metrics", default=",".join(METRICS), help="training-free scores, comma-separated")
    p.add_argument("--combos", default="", help="comma-separated combinations of scores and params, joined by +")
    p.add_argument("--aggregation", default="log_rank", choices=list(AGGREGATIONS), help="how combinations add ranks")
    p.add_argument("--data", type=Path, default=CIFAR10_TRAIN)
    p.add_argument("--csv", type=Path, default=NATS_SSS_CSV)
    args = p.parse_args()
    truth = load_sss(args.csv)
    metrics = [m for m in args.metrics.split(",") if m]
    combos = [c.split("+") for c in args.combos.split(",") if c]
    columns = [*metrics, "params"]
    for combo in combos:
        if unknown := [m for m in combo if m not in columns]:
            p.error(f"--combos: {'+'.join(combo)} names {unknown}, not among --metrics or params")
    space = SSSSpace()
    objective = TrainingFreeObjective(
        space,
        data=str(require(args.data, "CIFAR-10 train folder", "--data")),
        batch_size=args.batch_size,
        seed=args.seed,
        device="cpu",
        metrics=metrics,
        extra_objectives=["params:maximize"],
    )
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.archs):
        g = space.random(rng)
        values = objective.score(g).values
        # every score is minimised: its negative is "higher is better", as accuracy
        rows.append([*(-values[m] for m in metrics), values["params"], truth[str(g)][0], truth[str(g)][1]])
    table = np.array(rows)
    acc, within = table[:, -2], table[:, -1] <= args.budget
    out: dict[str, dict[str, float | None]] = {}
    aggregate = AGGREGATIONS[args.aggregation]
    for name, columns_of in [(m, [m]) for m in columns] + [("+".join(c), c) for c in combos]:
        scores = table[:, [columns.index(m) for m in columns_of]]  # higher is better

        def tau_of(rows: np.ndarray, scores: np.ndarray = scores) -> float | None:
            if scores.shape[1] == 1:
                return _tau(scores[rows, 0], acc[rows])
            return _tau(-aggregate(scores[rows], ["maximize"] * scores.shape[1]), acc[rows])

        everything = np.ones(len(acc), dtype=bool)
        out[name] = {"tau": tau_of(everything), "tau_within_budget": tau_of(within)}
        print(f"{name:10s} tau {out[name]['tau']}   within {args.budget:,}: {out[name]['tau_within_budget']}")
    print(json.dumps({"archs": args.archs, "within_budget": int(within.sum()), "kendall_tau": out}))


if __name__ == "__main__":
    main()
