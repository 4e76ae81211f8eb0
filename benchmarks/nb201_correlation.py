"""How well the training-free scores and their combinations rank NAS-Bench-201 architectures by CIFAR-10
accuracy, and what each costs.

Scores ``--n`` seeded random architectures of the NAS-Bench-201 table as a search does
(``TrainingFreeObjective``: fast NTK, the study's seeded CIFAR-10 batch, per-genotype seeded weights):
the three defaults, SWAP, NASWOT's own definitions of its two scores, AZ-NAS's four (expressivity,
progressivity, trainability, complexity), and on the first ``--exact-n`` the exact-mode NTK and TE-NAS's
own NTK (both on the first ``--exact-batch`` images), and TE-NAS's linear regions. Against the table's
test accuracy it prints, for each score and each combination of :data:`COMBINATIONS` (and, when every
architecture got the exact NTK, of :data:`EXACT_COMBINATIONS`):

* Kendall tau and Spearman rho over all architectures;
* pick quality: the true accuracy of the best-ranked architecture among ``--subset`` random ones (200
  draws; a combination's ranks are taken within each subset, as a selection among those would);
* cost: the median over the first ``--cost-n`` architectures of the seconds of computing it (a
  combination: its scores in one fused pass, plus the exact NTK's own pass when it is a member) over
  the seconds of one forward+backward pass of the batch (train mode, sum of logits, weight gradients).

A combination is a rule over lower-is-better columns: ``rank_sum`` (the sum of their ranks) or
``log_rank`` (AZ-NAS's: minus the sum of ``log(r / n)``, ``r`` the rank with the best at ``n``); ranks are
average ranks (ties share them). ``params`` is minus the parameter count (more parameters first).
Signs are such that a positive tau means "lower score, higher accuracy". Degenerate networks (e.g. a
cell whose output ignores its input) get ``WORST_SCORE`` and so rank last. ``jacobian`` (batch
statistics constant) and ``jacobian_naswot`` (NASWOT v1: batch statistics coupling the samples) are
compared alone and in the same combinations (``jacobian_forms``).

Writes to ``--out``: ``scores.csv`` (one row per architecture) and score-vs-accuracy scatter plots.
``--scores CSV`` reads a ``scores.csv`` written before instead of scoring (the costs are measured
again). ``--skip`` leaves scores out (and the combinations that need them), to keep a run of 1,000
architectures affordable. The last line is one JSON object: ``n``, ``kendall_tau``, ``spearman_rho``, ``best_of_subset``
(mean, std) and ``cost_ratio`` of every score and combination by name, ``combinations`` (rule,
members), ``jacobian_forms``, ``subset_size``, ``cost_n``, ``degenerate``, ``ntk_exact_vs_fast_tau``.

    .venv/bin/python benchmarks/nb201_correlation.py [--n 1000] [--exact-n 200] [--threads 1] [--out DIR]
        [--skip ntk_cond,activation_naswot,ntk_cond_tenas,ntk_cond_fast_at_exact_batch]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, NB201_CSV, load_nb201, median, require, timed  # noqa: E402

from nas_sampler import NB201Space, TrainingFreeObjective  # noqa: E402
from nas_sampler.heuristics import SCORE_NAMES, WORST_SCORE, ntk_condition_number, score_all  # noqa: E402
from nas_sampler.linear_regions import linear_region_count, random_region_inputs, thin_network  # noqa: E402
from nas_sampler.objective import init_seed  # noqa: E402
from nas_sampler.phenotype import count_parameters  # noqa: E402

#: AZ-NAS's four scores (Lee & Ham, 2024).
AZ_SCORES = ("expressivity", "progressivity", "trainability", "complexity")

#: Scored on the whole batch: the defaults, SWAP, NASWOT's own definitions of its two scores, AZ-NAS's.
BATCH_SCORES = (*SCORE_NAMES, "swap", "activation_naswot", "jacobian_naswot", *AZ_SCORES)

#: Computed on the first ``--exact-n`` architectures only, each in a pass of its own.
EXACT_SCORES = ("ntk_cond_exact", "ntk_cond_tenas")

AZ_PARAMS = ("expressivity", "progressivity", "trainability", "params")

#: name -> (rule, members): reported for every run. The ``_naswot`` twins swap in NASWOT v1's Jacobian.
COMBINATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rank_sum": ("rank_sum", SCORE_NAMES),
    "rank_sum_params": ("rank_sum", (*SCORE_NAMES, "params")),
    "az_nas": ("log_rank", AZ_SCORES),
    "az_nas_rank_sum": ("rank_sum", AZ_SCORES),
    "az_nas_params": ("log_rank", AZ_PARAMS),
    "az_nas_jacobian": ("log_rank", (*AZ_SCORES, "jacobian")),
    "az_nas_jacobian_naswot": ("log_rank", (*AZ_SCORES, "jacobian_naswot")),
    "az_nas_swap": ("log_rank", (*AZ_SCORES, "swap")),
    "az_nas_activation": ("log_rank", (*AZ_SCORES, "activation")),
    "az_nas_jacobian_swap": ("log_rank", (*AZ_SCORES, "jacobian", "swap")),
    "az_nas_jacobian_naswot_swap": ("log_rank", (*AZ_SCORES, "jacobian_naswot", "swap")),
    "az_nas_params_jacobian_swap": ("log_rank", (*AZ_PARAMS, "jacobian", "swap")),
    "az_nas_params_jacobian_naswot_swap": ("log_rank", (*AZ_PARAMS, "jacobian_naswot", "swap")),
    "az_nas_jacobian_swap_rank_sum": ("rank_sum", (*AZ_SCORES, "jacobian", "swap")),
    "expr_train_jacobian_swap_params": ("log_rank", ("expressivity", "trainability", "jacobian", "swap", "params")),
    "expr_train_jacobian_naswot_swap_params": (
        "log_rank",
        ("expressivity", "trainability", "jacobian_naswot", "swap", "params"),
    ),
    "jacobian_swap_params": ("log_rank", ("jacobian", "swap", "params")),
    "jacobian_naswot_swap_params": ("log_rank", ("jacobian_naswot", "swap", "params")),
}

#: Reported when every architecture got the exact NTK (``--exact-n`` >= ``--n``).
EXACT_COMBINATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "rank_sum_exact_params": ("rank_sum", ("ntk_cond_exact", "activation", "jacobian", "params")),
    "rank_sum_exact_swap_params": ("rank_sum", ("ntk_cond_exact", "swap", "jacobian", "params")),
    "rank_sum_exact_swap_naswot_params": ("rank_sum", ("ntk_cond_exact", "swap", "jacobian_naswot", "params")),
    "log_rank_exact_swap_params": ("log_rank", ("ntk_cond_exact", "swap", "jacobian", "params")),
    "log_rank_exact_swap_naswot_params": ("log_rank", ("ntk_cond_exact", "swap", "jacobian_naswot", "params")),
    "az_nas_exact": ("log_rank", (*AZ_SCORES, "ntk_cond_exact")),
    "az_nas_exact_jacobian_swap": ("log_rank", (*AZ_SCORES, "ntk_cond_exact", "jacobian", "swap")),
    "rank_sum_published": ("rank_sum", ("ntk_cond_tenas", "activation_naswot", "jacobian_naswot")),
    "rank_sum_published_params": ("rank_sum", ("ntk_cond_tenas", "activation_naswot", "jacobian_naswot", "params")),
}


def rank_sum(members: list[np.ndarray]) -> np.ndarray:
    """The sum of the members' ranks (1 = best), lower is better."""
    return np.sum([stats.rankdata(v) for v in members], axis=0)


def log_rank(members: list[np.ndarray]) -> np.ndarray:
    """AZ-NAS's aggregation, lower is better: ``-sum log(r / n)``, ``r`` the rank with the best at ``n``."""
    n = len(members[0])
    return -np.sum([np.log(stats.rankdata(-v) / n) for v in members], axis=0)


RULES: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {"rank_sum": rank_sum, "log_rank": log_rank}


def corr(lower_is_better: np.ndarray, acc: np.ndarray) -> tuple[float, float]:
    """(Kendall tau-b, Spearman rho) of ``-value`` against accuracy (NaN for a constant column)."""
    if np.all(lower_is_better == lower_is_better[0]):
        return float("nan"), float("nan")
    tau = stats.kendalltau(-lower_is_better, acc).statistic
    rho = stats.spearmanr(-lower_is_better, acc).statistic
    return float(tau), float(rho)


def rounded(d: dict[str, float], digits: int) -> dict[str, float | None]:
    """``d`` rounded, NaN as None (JSON has no NaN)."""
    return {k: None if np.isnan(v) else round(v, digits) for k, v in d.items()}


# ----------------------------------------------------------------------------- scoring


def score_rows(args: argparse.Namespace, table: dict[str, float]) -> tuple[list[dict], TrainingFreeObjective]:
    """Every sampled architecture's scores, as the search's objective computes them."""
    # scored exactly as a search scores them: the objective's seeded batch and per-genotype weights
    objective = make_objective(args)
    skip = set(args.skip)
    archs = sorted(table)
    rng = np.random.default_rng(args.seed)
    sample = [archs[int(i)] for i in rng.choice(len(archs), size=min(args.n, len(archs)), replace=False)]
    xe = objective.images[: args.exact_batch]
    region_inputs = random_region_inputs(args.seed)
    rows = []
    t0 = time.perf_counter()
    for k, arch in enumerate(sample):
        g = objective.space.parse(arch)
        scored = objective.score(g)
        net = scored.net
        row = {"arch": arch, "accuracy": table[arch], "params": count_parameters(net), **scored.values}
        row["seconds"] = scored.seconds["heuristics"]
        if k < args.exact_n and "ntk_cond_exact" not in skip:
            t = time.perf_counter()
            row["ntk_cond_exact"] = ntk_condition_number(net, xe, mode="exact", on_degenerate="worst")
            row["seconds_exact"] = time.perf_counter() - t
        if k < args.exact_n and "ntk_cond_fast_at_exact_batch" not in skip:
            row["ntk_cond_fast_at_exact_batch"] = ntk_condition_number(net, xe, on_degenerate="worst")
        if k < args.exact_n and "ntk_cond_tenas" not in skip:
            # TE-NAS's own definition on the same images: train-mode NTK of the parameters named weight
            t = time.perf_counter()
            row["ntk_cond_tenas"] = score_all(net, xe, metrics=["ntk_cond_tenas"], on_degenerate="worst")[
                "ntk_cond_tenas"
            ]
            row["seconds_tenas"] = time.perf_counter() - t
        # TE-NAS's linear regions: its thin network of the cell, seeded per genotype, on 3 x 1000 3x3 inputs
        torch.manual_seed(init_seed(args.seed, g))
        row["linear_regions"] = -linear_region_count(thin_network(objective.space, g), region_inputs, device="cpu")
        rows.append(row)
        if (k + 1) % 10 == 0 or k + 1 == len(sample):
            print(f"  {k + 1}/{len(sample)} scored, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows, objective


def make_objective(args: argparse.Namespace) -> TrainingFreeObjective:
    return TrainingFreeObjective(
        NB201Space(), data=str(args.data), batch_size=args.batch_size, seed=args.seed, device="cpu",
        on_degenerate="worst", metrics=[m for m in BATCH_SCORES if m not in args.skip],
    )  # fmt: skip


def write_rows(path: Path, rows: list[dict]) -> None:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def read_rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (v if k == "arch" else float(v)) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]


# ----------------------------------------------------------------------------- cost


def forward_backward(net: torch.nn.Module, x: torch.Tensor) -> None:
    net.train()
    net.zero_grad(set_to_none=True)
    net(x).sum().backward()
    net.zero_grad(set_to_none=True)


def measure_costs(
    objective: TrainingFreeObjective,
    archs: list[str],
    exact_batch: int,
    singles: list[str],
    combos: dict[str, tuple[str, tuple[str, ...]]],
) -> dict[str, float]:
    """Median over ``archs`` of the seconds of each of ``singles`` (scores) and of each combination over
    the seconds of one forward+backward."""
    images = objective.images
    sets = {frozenset(m for m in members if m in BATCH_SCORES) for _, members in combos.values()} - {frozenset()}
    ratios: dict[str, list[float]] = {}
    for arch in archs:
        g = objective.space.parse(arch)
        net = objective.build(g)
        seed = init_seed(objective.seed, g)
        forward_backward(net, images)  # warm-up
        fb = median([timed(lambda: forward_backward(net, images))[0] for _ in range(3)])  # noqa: B023
        t: dict[str | frozenset, float] = {"params": 0.0}
        xe = images[:exact_batch]
        for m in singles:
            if m == "ntk_cond_exact":
                t[m] = timed(lambda: ntk_condition_number(net, xe, mode="exact", on_degenerate="worst"))[0]  # noqa: B023
            elif m == "ntk_cond_tenas":
                t[m] = timed(lambda: score_all(net, xe, metrics=[m], on_degenerate="worst"))[0]  # noqa: B023
            else:
                t[m] = timed(lambda: score_all(net, images, metrics=[m], seed=seed, on_degenerate="worst"))[0]  # noqa: B023
        for s in sets:
            t[s] = timed(lambda: score_all(net, images, metrics=sorted(s), seed=seed, on_degenerate="worst"))[0]  # noqa: B023
        for m in singles:
            ratios.setdefault(m, []).append(t[m] / fb)
        for name, (_, members) in combos.items():
            fused = frozenset(m for m in members if m in BATCH_SCORES)
            own = sum(t[m] for m in members if m in EXACT_SCORES)
            ratios.setdefault(name, []).append(((t[fused] if fused else 0.0) + own) / fb)
    return {k: median(v) for k, v in ratios.items()}


# ----------------------------------------------------------------------------- analysis


def columns(rows: list[dict]) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, tuple[str, ...]]]]:
    """The score columns every row has (lower is better) and the combinations of them."""
    names = (*BATCH_SCORES, "linear_regions", *EXACT_SCORES, "ntk_cond_fast_at_exact_batch")
    cols = {name: np.array([r[name] for r in rows]) for name in names if all(name in r for r in rows)}
    cols["params"] = -np.array([r["params"] for r in rows], dtype=float)
    every = {**COMBINATIONS, **EXACT_COMBINATIONS}
    return cols, {name: spec for name, spec in every.items() if all(m in cols for m in spec[1])}


def combine(
    rule: str, members: tuple[str, ...], cols: dict[str, np.ndarray], idx: np.ndarray | None = None
) -> np.ndarray:
    """The combination's values (lower is better), ranked among the rows ``idx`` (default all)."""
    return RULES[rule]([cols[m] if idx is None else cols[m][idx] for m in members])


def pick_quality(
    cols: dict[str, np.ndarray], combos: dict, acc: np.ndarray, size: int, seed: int
) -> dict[str, tuple[float, float]]:
    """Mean and std over 200 random subsets of the true accuracy of the best-ranked architecture."""
    draw = np.random.default_rng(seed)
    subsets = [draw.choice(len(acc), size=size, replace=False) for _ in range(200)]
    picks = {}
    for name in [*cols, *combos]:
        got = []
        for sub in subsets:
            v = cols[name][sub] if name in cols else combine(*combos[name], cols, sub)
            got.append(acc[sub[np.argmin(v)]])
        picks[name] = (float(np.mean(got)), float(np.std(got)))
    return picks


def jacobian_forms(
    combos: dict, taus: dict[str, float], picks: dict[str, tuple[float, float]]
) -> dict[str, dict[str, float]]:
    """Each pair of a score or combination with ``jacobian`` and its twin with ``jacobian_naswot``."""
    pairs = [("jacobian", "jacobian_naswot")]
    for name, (rule, members) in combos.items():
        if "jacobian_naswot" in members:
            twin = tuple("jacobian" if m == "jacobian_naswot" else m for m in members)
            pairs += [(other, name) for other, spec in combos.items() if spec == (rule, twin)]
    out = {}
    for frozen, coupled in pairs:
        out[frozen] = {
            "tau_constant_stats": round(taus[frozen], 4),
            "tau_coupled_stats": round(taus[coupled], 4),
            "pick_constant_stats": round(picks[frozen][0], 3) if frozen in picks else None,
            "pick_coupled_stats": round(picks[coupled][0], 3) if coupled in picks else None,
        }
    return out


def _draw(ax, name: str, v: np.ndarray, acc: np.ndarray, tau: float) -> None:  # noqa: ANN001
    ok = v < WORST_SCORE
    ax.scatter(v[ok], acc[ok], s=8, alpha=0.6)
    if name in ("ntk_cond", "jacobian") and ok.any() and (v[ok] > 0).all():
        ax.set_xscale("log")  # heavy right tails
    ax.set_xlabel(f"{name} (lower is better)")
    ax.set_ylabel("NB201 CIFAR-10 test accuracy (%)")
    bad = int((~ok).sum())
    ax.set_title(f"{name}: Kendall tau {tau:.3f}" + (f" ({bad} degenerate not shown)" if bad else ""), fontsize=9)


def plot(
    out: Path, cols: dict[str, np.ndarray], acc: np.ndarray, taus: dict[str, float], names: list[str]
) -> list[str]:
    """One PNG per score and one with all of them side by side (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def exact_vs_fast(rows: list[dict], acc: np.ndarray, exact_batch: int) -> float | None:
    """Kendall tau between the exact and the fast NTK on the same images (and a line on each)."""
    both = [r for r in rows if "ntk_cond_exact" in r and "ntk_cond_fast_at_exact_batch" in r]
    if len(both) < 2:
        return None
    fast_v, exact_v = np.array([(r["ntk_cond_fast_at_exact_batch"], r["ntk_cond_exact"]) for r in both]).T
    agree = float(stats.kendalltau(fast_v, exact_v).statistic)
    tau_exact = float(stats.kendalltau(-exact_v, acc[: len(both)]).statistic)
    tau_fast = float(stats.kendalltau(-fast_v, acc[: len(both)]).statistic)
    secs = np.median([r["seconds_exact"] for r in both])
    print(
        f"exact vs fast NTK at batch {exact_batch} on the first {len(both)}: Kendall tau {agree:.3f} between "
        f"them; against accuracy exact {tau_exact:.3f}, fast {tau_fast:.3f}; exact {secs:.1f} s per architecture"
    )
    return agree


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
    ap.add_argument("--subset", type=int, default=100, help="architectures per pick-quality draw (default 100)")
    ap.add_argument("--cost-n", type=int, default=8, help="architectures whose costs are timed (default 8)")
    ap.add_argument("--scores", type=Path, default=None, help="read this scores.csv instead of scoring")
    ap.add_argument(
        "--skip",
        type=lambda text: [s for s in text.split(",") if s],
        default=[],
        help="comma-separated scores not to compute (e.g. ntk_cond,activation_naswot,ntk_cond_tenas,\n"
        "ntk_cond_fast_at_exact_batch); the combinations that need one are not reported",
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
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if args.scores is not None:
        rows, objective = read_rows(require(args.scores, "scores.csv", "--scores")), make_objective(args)
    else:
        rows, objective = score_rows(args, table)
        write_rows(args.out / "scores.csv", rows)
    elapsed = time.perf_counter() - t0

    acc = np.array([r["accuracy"] for r in rows])
    values, combos = columns(rows)
    overall = {**values, **{name: combine(*spec, values) for name, spec in combos.items()}}
    taus, rhos = {}, {}
    for name, v in overall.items():
        taus[name], rhos[name] = corr(v, acc)
    size = min(args.subset, len(rows) // 2)
    picks = pick_quality(values, combos, acc, size, args.seed) if size >= 2 else {}
    singles = [m for m in (*BATCH_SCORES, *EXACT_SCORES) if m in values]
    cost = measure_costs(objective, [r["arch"] for r in rows[: args.cost_n]], args.exact_batch, singles, combos)

    print(f"{len(rows)} NAS-Bench-201 architectures, batch {args.batch_size}, seed {args.seed}, {elapsed:.0f} s")
    print(f"pick: best-ranked of {size} (200 draws), true accuracy; cost: x forward+backward, {args.cost_n} archs")
    print(f"{'score or combination':38} {'tau':>6} {'rho':>6} {'pick':>13} {'cost':>6}  members")
    for name in taus:
        pick = f"{picks[name][0]:6.2f} ± {picks[name][1]:4.2f}" if name in picks else ""
        c = f"{cost[name]:5.2f}x" if name in cost else ""
        spec = f"{combos[name][0]}: {' + '.join(combos[name][1])}" if name in combos else ""
        print(f"{name:38} {taus[name]:6.3f} {rhos[name]:6.3f} {pick:>13} {c:>6}  {spec}")
    degenerate = {name: int((values[name] >= WORST_SCORE).sum()) for name in BATCH_SCORES if name in values}
    print(f"degenerate (scored {WORST_SCORE:g}, ranked last): {degenerate}")
    forms = jacobian_forms(combos, taus, picks)
    better = sum(f["tau_constant_stats"] > f["tau_coupled_stats"] for f in forms.values())
    print(f"jacobian, batch statistics constant vs coupled (NASWOT v1): tau higher in {better} of {len(forms)} pairs")
    agree = exact_vs_fast(rows, acc, args.exact_batch)
    names = [n for n in (*BATCH_SCORES, *EXACT_SCORES[1:], "linear_regions") if n in values]
    print("wrote " + ", ".join([str(args.out / "scores.csv"), *plot(args.out, values, acc, taus, names)]))
    result = {
        "n": len(rows),
        "batch_size": args.batch_size,
        "seed": args.seed,
        "seconds_per_arch": round(float(np.median([r["seconds"] for r in rows])), 3),
        "kendall_tau": rounded(taus, 4),
        "spearman_rho": rounded(rhos, 4),
        "best_of_subset": {k: [round(m, 3), round(sd, 3)] for k, (m, sd) in picks.items()},
        "subset_size": size,
        "cost_ratio": {k: round(v, 3) for k, v in cost.items()},
        "cost_n": min(args.cost_n, len(rows)),
        "combinations": {k: [rule, list(members)] for k, (rule, members) in combos.items()},
        "jacobian_forms": forms,
        "degenerate": degenerate,
        "ntk_exact_vs_fast_tau": None if agree is None else round(agree, 4),
        "exact_n": sum("ntk_cond_exact" in r for r in rows),
        "skipped": args.skip,
        "exact_batch": args.exact_batch,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
