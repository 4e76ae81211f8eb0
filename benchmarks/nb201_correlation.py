"""How well the training-free scores rank NAS-Bench-201 architectures by CIFAR-10 accuracy.

Scores ``--n`` seeded random architectures of the NAS-Bench-201 table as a search does
(``TrainingFreeObjective``: fast NTK, the study's seeded CIFAR-10 batch, per-genotype seeded weights)
and prints, against the table's test accuracy, Kendall tau and Spearman rho of each score, of their
rank sum, of the parameter count, of rank sum + parameter rank and (when every architecture got the
exact NTK) of the combinations of the exact NTK, the Jacobian score and the parameters with the
activation score or with SWAP (``swap``, the NB201 preset's). It also
prints what a selection rule cares about: the true accuracy of the best-ranked architecture among
150 random ones, for each score and combination. Signs are such that a positive value means
"lower score, higher accuracy" (for the parameter count: "more parameters, higher accuracy").
Degenerate networks (e.g. a cell whose output ignores its input) get ``WORST_SCORE`` and so rank
last. The exact-mode NTK is computed on the first ``--exact-n`` architectures (on the first
``--exact-batch`` images, as is the fast mode for this comparison) and its agreement with the fast
mode reported as Kendall tau.

Writes to ``--out``: ``scores.csv`` (one row per architecture) and score-vs-accuracy scatter plots
(``scatter_<score>.png`` and ``scatter_all.png``). The last line is one JSON object with ``n`` and
``kendall_tau`` (``ntk_cond``, ``activation``, ``jacobian``, ``rank_sum``, ``params``,
``rank_sum_params``, ``swap``, with the exact NTK also ``ntk_cond_exact``, ``rank_sum_exact_params``,
``rank_sum_exact_swap_params``),
``spearman_rho``, ``best_of_subset`` (mean, std; subsets of ``subset_size``) and ``ntk_exact_vs_fast_tau``.

Published single-score figures (NAS-Bench-201, CIFAR-10): NASWOT tau ~0.57, TE-NAS tau ~0.54,
jacob_cov Spearman ~0.73.

    .venv/bin/python benchmarks/nb201_correlation.py [--n 200] [--batch-size 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, NB201_CSV, load_nb201, require  # noqa: E402

from nas_sampler import NB201Space, TrainingFreeObjective  # noqa: E402
from nas_sampler.heuristics import SCORE_NAMES, WORST_SCORE, ntk_condition_number, score_all  # noqa: E402
from nas_sampler.linear_regions import linear_region_count, random_region_inputs, thin_network  # noqa: E402
from nas_sampler.objective import init_seed  # noqa: E402
from nas_sampler.phenotype import count_parameters  # noqa: E402

#: Scored on the whole batch: the defaults, SWAP, and NASWOT's own definitions of its two scores.
BATCH_SCORES = (*SCORE_NAMES, "swap", "activation_naswot", "jacobian_naswot")


def ranks(values: np.ndarray) -> np.ndarray:
    return stats.rankdata(values)


def corr(lower_is_better: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho) of ``-value`` against accuracy."""
    tau = stats.kendalltau(-lower_is_better, acc).statistic
    rho = stats.spearmanr(-lower_is_better, acc).statistic
    return float(tau), float(rho)


def _draw(ax, name: str, v: np.ndarray, acc: np.ndarray, tau: float) -> None:  # noqa: ANN001
    ok = v < WORST_SCORE
    ax.scatter(v[ok], acc[ok], s=8, alpha=0.6)
    if name in ("ntk_cond", "jacobian") and ok.any() and (v[ok] > 0).all():
        ax.set_xscale("log")  # heavy right tails
    ax.set_xlabel(f"{name} (lower is better)")
    ax.set_ylabel("NB201 CIFAR-10 test accuracy (%)")
    bad = int((~ok).sum())
    ax.set_title(f"{name}: Kendall tau {tau:.3f}" + (f" ({bad} degenerate not shown)" if bad else ""), fontsize=9)


def plot(out: Path, cols: dict[str, np.ndarray], acc: np.ndarray, taus: dict[str, float]) -> list[str]:
    """One PNG per score and one with all of them side by side (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in (*BATCH_SCORES, "ntk_cond_tenas", "linear_regions", "rank_sum") if n in cols]
    written = []
    for name in names:
        fig, ax = plt.subplots(figsize=(5, 4))
        _draw(ax, name, cols[name], acc, taus[name])
        fig.tight_layout()
        fig.savefig(out / f"scatter_{name}.png", dpi=110)
        plt.close(fig)
        written.append(str(out / f"scatter_{name}.png"))
    fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 3.8))
    for ax, name in zip(axes, names, strict=True):
        _draw(ax, name, cols[name], acc, taus[name])
    fig.tight_layout()
    fig.savefig(out / "scatter_all.png", dpi=100)
    plt.close(fig)
    written.append(str(out / "scatter_all.png"))
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="random architectures to score (default 200)")
    ap.add_argument("--batch-size", type=int, default=64, help="CIFAR-10 images in the scoring batch (default 64)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the architecture sample, the batch and the weights")
    ap.add_argument(
        "--exact-n", type=int, default=200, help="architectures also scored with the exact NTK (default 200)"
    )
    ap.add_argument(
        "--exact-batch",
        type=int,
        default=16,
        help="images of the exact NTK and of the exact-vs-fast comparison (both modes on the same first\n"
        "images; default 16; the NB201 preset uses 8): the exact mode costs one backward pass per image",
    )
    ap.add_argument("--out", type=Path, default=Path("nb201_correlation_out"), help="folder for scores.csv and PNGs")
    ap.add_argument("--data", type=Path, default=CIFAR10_TRAIN, help="CIFAR-10 ImageFolder (default ../shared/...)")
    ap.add_argument("--csv", type=Path, default=NB201_CSV, help="NAS-Bench-201 accuracy table")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    table = load_nb201(require(args.csv, "NAS-Bench-201 table", "--csv"))
    require(args.data, "CIFAR-10 folder", "--data")
    # scored exactly as a search scores them: the objective's seeded batch and per-genotype weights
    objective = TrainingFreeObjective(
        NB201Space(), data=str(args.data), batch_size=args.batch_size, seed=args.seed, device="cpu",
        on_degenerate="worst", metrics=BATCH_SCORES,
    )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    archs = sorted(table)
    rng = np.random.default_rng(args.seed)
    sample = [archs[int(i)] for i in rng.choice(len(archs), size=min(args.n, len(archs)), replace=False)]
    xe = objective.images[: args.exact_batch]
    region_inputs = random_region_inputs(args.seed)

    rows = []
    t0 = time.perf_counter()
    for k, arch in enumerate(sample):
        scored = objective.score(objective.space.parse(arch))
        net = scored.net
        row = {"arch": arch, "accuracy": table[arch], "params": count_parameters(net), **scored.values}
        row["seconds"] = scored.seconds["heuristics"]
        if k < args.exact_n:
            t = time.perf_counter()
            row["ntk_cond_exact"] = ntk_condition_number(net, xe, mode="exact", on_degenerate="worst")
            row["seconds_exact"] = time.perf_counter() - t
            row["ntk_cond_fast_at_exact_batch"] = ntk_condition_number(net, xe, on_degenerate="worst")
            # TE-NAS's own definition on the same images: train-mode NTK of the parameters named weight
            t = time.perf_counter()
            row["ntk_cond_tenas"] = score_all(net, xe, metrics=["ntk_cond_tenas"], on_degenerate="worst")[
                "ntk_cond_tenas"
            ]
            row["seconds_tenas"] = time.perf_counter() - t
        # TE-NAS's linear regions: its thin network of the cell, seeded per genotype, on 3 x 1000 3x3 inputs
        g = objective.space.parse(arch)
        torch.manual_seed(init_seed(args.seed, g))
        row["linear_regions"] = -linear_region_count(thin_network(objective.space, g), region_inputs, device="cpu")
        rows.append(row)
        if (k + 1) % 10 == 0 or k + 1 == len(sample):
            el = time.perf_counter() - t0
            print(f"  {k + 1}/{len(sample)} scored, {el:.0f} s", file=sys.stderr, flush=True)
    elapsed = time.perf_counter() - t0

    with open(args.out / "scores.csv", "w", newline="") as f:
        keys = sorted({key for r in rows for key in r}, key=lambda c: list(rows[0]).index(c) if c in rows[0] else 99)
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)

    acc = np.array([r["accuracy"] for r in rows])
    cols = {name: np.array([r[name] for r in rows]) for name in (*BATCH_SCORES, "linear_regions")}
    cols["rank_sum"] = sum(ranks(cols[name]) for name in SCORE_NAMES)
    params = np.array([r["params"] for r in rows], dtype=float)
    cols["params"] = -params  # lower is better after negation: more parameters first
    cols["rank_sum_params"] = cols["rank_sum"] + ranks(-params)
    n_exact = sum("ntk_cond_exact" in r for r in rows)
    if n_exact == len(rows):  # the NB201 preset's objectives: exact NTK on the first images, + parameters
        cols["ntk_cond_exact"] = np.array([r["ntk_cond_exact"] for r in rows])
        cols["rank_sum_exact_params"] = (
            ranks(cols["ntk_cond_exact"]) + ranks(cols["activation"]) + ranks(cols["jacobian"]) + ranks(-params)
        )
        # with SWAP in place of the activation score (the NB201 preset's objectives)
        cols["rank_sum_exact_swap_params"] = (
            ranks(cols["ntk_cond_exact"]) + ranks(cols["swap"]) + ranks(cols["jacobian"]) + ranks(-params)
        )
        # the three as their papers' code defines them, on the same images
        cols["ntk_cond_fast_at_exact_batch"] = np.array([r["ntk_cond_fast_at_exact_batch"] for r in rows])
        cols["ntk_cond_tenas"] = np.array([r["ntk_cond_tenas"] for r in rows])
        cols["rank_sum_published"] = (
            ranks(cols["ntk_cond_tenas"]) + ranks(cols["activation_naswot"]) + ranks(cols["jacobian_naswot"])
        )
        cols["rank_sum_published_params"] = cols["rank_sum_published"] + ranks(-params)
    taus, rhos = {}, {}
    print(f"{len(rows)} NAS-Bench-201 architectures, batch {args.batch_size}, seed {args.seed}, {elapsed:.0f} s")
    print(f"{'score':16} {'Kendall tau':>11} {'Spearman rho':>12}")
    for name, v in cols.items():
        taus[name], rhos[name] = corr(v, acc)
        print(f"{name:16} {taus[name]:11.3f} {rhos[name]:12.3f}")
    # the selection rule's view: the true accuracy of the best-ranked architecture among random subsets
    picks: dict[str, tuple[float, float]] = {}
    size = min(150, len(rows) // 2)
    if size >= 2:
        draw = np.random.default_rng(args.seed)
        subsets = [draw.choice(len(rows), size=size, replace=False) for _ in range(200)]
        for name, v in cols.items():
            got = [acc[sub[np.argmin(v[sub])]] for sub in subsets]
            picks[name] = (float(np.mean(got)), float(np.std(got)))
        print(f"best-ranked of {size} random architectures (200 draws), true accuracy mean ± std:")
        for name, (m, sd) in picks.items():
            print(f"  {name:22} {m:6.2f} ± {sd:4.2f}")
    degenerate = {name: int((cols[name] >= WORST_SCORE).sum()) for name in BATCH_SCORES}
    print(f"degenerate (scored {WORST_SCORE:g}, ranked last): {degenerate}")
    exact = [(r["ntk_cond_fast_at_exact_batch"], r["ntk_cond_exact"]) for r in rows if "ntk_cond_exact" in r]
    agree = None
    if len(exact) >= 2:
        fast_v, exact_v = np.array(exact).T
        agree = float(stats.kendalltau(fast_v, exact_v).statistic)
        tau_exact = float(stats.kendalltau(-exact_v, acc[: len(exact)]).statistic)
        tau_fast = float(stats.kendalltau(-fast_v, acc[: len(exact)]).statistic)
        secs = np.median([r["seconds_exact"] for r in rows if "seconds_exact" in r])
        secs_tenas = np.median([r["seconds_tenas"] for r in rows if "seconds_tenas" in r])
        print(
            f"exact vs fast NTK at batch {args.exact_batch} on the first {len(exact)}: "
            f"Kendall tau {agree:.3f} between them; "
            f"against accuracy exact {tau_exact:.3f}, fast {tau_fast:.3f}; exact {secs:.1f} s, "
            f"TE-NAS's {secs_tenas:.1f} s per architecture (median)"
        )
    written = plot(args.out, cols, acc, taus)
    print("wrote " + ", ".join([str(args.out / "scores.csv"), *written]))
    result = {
        "n": len(rows),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "seconds_per_arch": round(float(np.median([r["seconds"] for r in rows])), 3),
        "kendall_tau": {k: round(v, 4) for k, v in taus.items()},
        "best_of_subset": {k: [round(m, 3), round(sd, 3)] for k, (m, sd) in picks.items()},
        "subset_size": size,
        "spearman_rho": {k: round(v, 4) for k, v in rhos.items()},
        "degenerate": degenerate,
        "ntk_exact_vs_fast_tau": None if agree is None else round(agree, 4),
        "exact_n": len(exact),
        "exact_batch": args.exact_batch,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
