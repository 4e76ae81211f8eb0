"""Search quality on NAS-Bench-201: does the training-free search find architectures that really are good?

For each sampler and seed: a search over NB201Space scored by TrainingFreeObjective on a fixed
CIFAR-10 batch, for a budget of scored architectures; then ONE architecture is chosen without
looking at the ground truth (``--rule``, as ``export_final``'s: by default the first Pareto front ordered by the
sum of per-objective ranks; beside it, the choice with its 10 best re-scored on ``--rescore`` other
batches and initial weights, ``export_final(rescore=...)``) and its true CIFAR-10 test accuracy is
looked up. Objectives (``studies/nb201-cifar10.toml``): the exact NTK on 8 images, the Jacobian score,
SWAP, and the parameter count maximised.
Prints per sampler the mean
± std of that accuracy over seeds, the best true accuracy on the final front, architectures scored,
CPU minutes per search and the Kendall tau between the final ranking of all scored architectures
(sum of per-objective ranks) and their true accuracy. Writes results.json and best_so_far.png to --out.

    python benchmarks/nb201_search.py --samplers genetic,random --seeds 5 --budget 300
    # split across processes, then one report:
    python benchmarks/nb201_search.py --seeds 2 --out a &
    python benchmarks/nb201_search.py --first-seed 2 --seeds 3 --out b
    python benchmarks/nb201_search.py --merge a b --out all
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
from scipy.stats import kendalltau

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CIFAR10_TRAIN, NB201_CSV, NB201_PRESET, load_nb201, require  # noqa: E402
from _samplers import SAMPLERS, make_sampler  # noqa: E402

from nas_sampler import NB201Space, TrainingFreeObjective  # noqa: E402
from nas_sampler.evolution import AGGREGATIONS, rank_sums  # noqa: E402
from nas_sampler.final import choose_trials  # noqa: E402
from nas_sampler.objective import HEURISTIC_METRICS  # noqa: E402
from nas_sampler.space import record_space  # noqa: E402


def make_objective(settings: dict, seed: int) -> TrainingFreeObjective:
    """The benchmark's objective for ``seed``, from the command's settings (``vars(args)``)."""
    return TrainingFreeObjective(
        NB201Space(cells_per_stage=settings["cells_per_stage"]),
        data=str(settings["data"]),
        batch_size=settings["batch_size"],
        seed=seed,
        device="cpu",
        extra_objectives=[e for e in settings["extra"].split(",") if e],
        metrics=[m for m in settings.get("metrics", ",".join(HEURISTIC_METRICS)).split(",") if m],
        ntk_mode=settings["ntk_mode"],
        ntk_batch=settings["ntk_batch"],  # score_all uses the whole batch when it has fewer images
    )


def rescore(
    study: optuna.Study, run: dict, objective: TrainingFreeObjective, n: int, truth: dict[str, float], rule: str
) -> None:
    """Choose again with ``n`` re-scorings of the finalists (``choose_trials(rescore=...)``): stored in
    ``run`` beside the plain choice as ``accuracy_rescored``, with its CPU time."""
    cpu0 = time.process_time()
    rescorers = [objective.reseeded(run["seed"] + k) for k in range(1, n + 1)]
    (pick,) = choose_trials(study, n_cells=1, rule=rule, rescore=rescorers)
    run["chosen_rescored"] = pick.user_attrs["genotype"]
    run["accuracy_rescored"] = truth[pick.user_attrs["genotype"]]
    run["rescore_cpu_minutes"] = (time.process_time() - cpu0) / 60


def study_of(run: dict, objective: TrainingFreeObjective) -> optuna.Study:
    """An in-memory study holding a finished run's completed trials (to choose again offline)."""
    study = optuna.create_study(directions=objective.directions)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(objective.metric_names)
    record_space(study, objective.space)
    for _, genotype, values in run["trials"]:
        study.add_trial(optuna.trial.create_trial(values=values, user_attrs={"genotype": genotype}))
    return study


def run_one(name: str, seed: int, objective: TrainingFreeObjective, args, truth: dict[str, float]) -> dict:
    study = optuna.create_study(
        directions=objective.directions, sampler=make_sampler(name, seed, args.population, str(args.data))
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    study.optimize(objective, n_trials=args.budget, catch=objective.catch)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    trials = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    (pick,) = choose_trials(study, n_cells=1, rule=args.rule)
    accs = np.array([truth[t.user_attrs["genotype"]] for t in trials])
    # the final ranking: the sum of per-objective ranks (choose_trials' order under rank_sum), best = lowest
    tau = float(kendalltau(-rank_sums([t.values for t in trials], study.directions), accs).statistic)
    seen = [truth.get(t.user_attrs.get("genotype", ""), np.nan) for t in study.trials]
    tenth = max(1, len(accs) // 10)
    run = {
        "sampler": name,
        "seed": seed,
        "chosen": pick.user_attrs["genotype"],
        "chosen_trial": pick.number,
        "accuracy": truth[pick.user_attrs["genotype"]],
        "best_on_front": max(truth[t.user_attrs["genotype"]] for t in study.best_trials),
        "archs_scored": len(study.trials),
        "failed": len(study.trials) - len(trials),
        "cpu_minutes": cpu / 60,
        "wall_minutes": wall / 60,
        "kendall_tau": tau,
        "mean_acc_first_tenth": float(np.mean(accs[:tenth])),  # where the search starts ...
        "mean_acc_last_tenth": float(np.mean(accs[-tenth:])),  # ... and where its population has moved
        "best_so_far": np.fmax.accumulate(np.nan_to_num(np.array(seen, dtype=float), nan=0.0)).tolist(),
        "trials": [[t.number, t.user_attrs["genotype"], list(t.values)] for t in trials],  # to re-rank offline
    }
    if args.rescore:
        rescore(study, run, objective, args.rescore, truth, args.rule)
    return run


def report(runs: list[dict], settings: dict, out: Path, optimum: float) -> None:
    """Print the table and the JSON line; write results.json and best_so_far.png to ``out``."""
    names = list(dict.fromkeys(r["sampler"] for r in runs))
    summary = {}
    print(
        f"\n{'sampler':14s} {'accuracy':>14s} {'seeds':>5s} {'front best':>10s} {'archs':>6s} "
        f"{'CPU-min':>8s} {'tau':>6s}"
    )
    for name in names:
        rs = [r for r in runs if r["sampler"] == name]
        accs = [r["accuracy"] for r in rs]
        summary[name] = {
            "mean_acc": statistics.fmean(accs),
            "std_acc": statistics.pstdev(accs) if len(accs) > 1 else 0.0,
            "seeds": len(rs),
            "best_on_front": statistics.fmean(r["best_on_front"] for r in rs),
            "archs_scored": statistics.fmean(r["archs_scored"] for r in rs),
            "cpu_minutes": statistics.fmean(r["cpu_minutes"] for r in rs),
            "kendall_tau": statistics.fmean(r["kendall_tau"] for r in rs),
        }
        if all("accuracy_rescored" in r for r in rs):
            rescored = [r["accuracy_rescored"] for r in rs]
            summary[name]["mean_acc_rescored"] = statistics.fmean(rescored)
            summary[name]["std_acc_rescored"] = statistics.pstdev(rescored) if len(rescored) > 1 else 0.0
            summary[name]["rescore_cpu_minutes"] = statistics.fmean(r["rescore_cpu_minutes"] for r in rs)
        s = summary[name]
        print(
            f"{name:14s} {s['mean_acc']:7.2f} ± {s['std_acc']:4.2f} {s['seeds']:5d} {s['best_on_front']:10.2f} "
            f"{s['archs_scored']:6.0f} {s['cpu_minutes']:8.1f} {s['kendall_tau']:6.3f}"
            + (
                f"   (re-scored finalists: {s['mean_acc_rescored']:.2f} ± {s['std_acc_rescored']:.2f}, "
                f"+{s['rescore_cpu_minutes']:.1f} CPU-min)"
                if "mean_acc_rescored" in s
                else ""
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"settings": settings, "summary": summary, "runs": runs}, indent=2))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in names:
        curves = [r["best_so_far"] for r in runs if r["sampler"] == name]
        n = min(len(c) for c in curves)
        ax.plot(np.arange(1, n + 1), np.mean([c[:n] for c in curves], axis=0), label=f"{name} ({len(curves)} seeds)")
    ax.axhline(optimum, color="grey", ls="--", lw=0.8, label="optimum")
    ax.set_xlabel("architectures scored")
    ax.set_ylabel("best true CIFAR-10 accuracy so far (%)")
    ax.set_title("NAS-Bench-201 CIFAR-10, mean over seeds")
    ax.set_ylim(bottom=max(85.0, ax.get_ylim()[0]))
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "best_so_far.png", dpi=120)
    keys = ("mean_acc", "std_acc", "archs_scored", "cpu_minutes", "kendall_tau", "mean_acc_rescored")
    print(json.dumps({n: {k: round(summary[n][k], 4) for k in keys if k in summary[n]} for n in names}))


def merge(folders: list[Path], out: Path, truth: dict[str, float], n_rescore: int) -> None:
    """One report from several runs' results.json (seeds or samplers split across processes); with
    ``n_rescore``, runs chosen without re-scoring are re-scored now."""
    runs, settings = [], []
    for folder in folders:
        path = folder / "results.json"
        if not path.is_file():
            raise SystemExit(f"--merge: {path} does not exist; give folders written by --out")
        saved = json.loads(path.read_text())
        rule = saved["settings"].get("rule", "rank_sum")  # runs saved before --rule chose by the rank sum
        for run in saved["runs"]:
            if n_rescore and "accuracy_rescored" not in run:
                objective = make_objective(saved["settings"], run["seed"])
                rescore(study_of(run, objective), run, objective, n_rescore, truth, rule)
            runs.append(run)
        settings.append(saved["settings"])
    report(runs, {"merged": [str(f) for f in folders], "settings": settings}, out, max(truth.values()))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated, from {', '.join(SAMPLERS)}")
    p.add_argument("--seeds", type=int, default=5, help="seeds per sampler (default 5)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds run are first-seed .. first-seed+seeds-1")
    # defaults: the nb201-cifar10 preset's
    ps = NB201_PRESET.search
    p.add_argument("--budget", type=int, default=ps.trials, help="architectures scored per search (%(default)s)")
    p.add_argument("--batch-size", type=int, default=NB201_PRESET.data.batch_size, help="scoring batch (%(default)s)")
    p.add_argument("--ntk-mode", default=ps.ntk_mode, choices=["fast", "exact"], help="NTK mode (%(default)s)")
    p.add_argument("--ntk-batch", type=int, default=ps.ntk_batch, help="images the NTK uses (%(default)s)")
    p.add_argument("--population", type=int, default=ps.population, help="genetic samplers' population (%(default)s)")
    p.add_argument(
        "--extra",
        default=",".join(ps.extra_objectives),
        help="extra objectives beside the scores, comma-separated ('' for none; default %(default)s)",
    )
    p.add_argument(
        "--metrics",
        default=",".join(ps.metrics or HEURISTIC_METRICS),
        help="training-free scores, comma-separated, of ntk_cond, activation, jacobian, swap (default %(default)s)",
    )
    p.add_argument(
        "--rule",
        default=ps.reduction,
        choices=list(AGGREGATIONS),
        help="how the one architecture is chosen from the final front (export's --rule; default %(default)s)",
    )
    p.add_argument("--cells-per-stage", type=int, default=5, help="NB201 skeleton depth (5 = the benchmark's)")
    p.add_argument("--data", type=Path, default=CIFAR10_TRAIN, help="CIFAR-10 ImageFolder train folder")
    p.add_argument("--csv", type=Path, default=NB201_CSV, help="NAS-Bench-201 CIFAR-10 accuracies")
    p.add_argument("--out", type=Path, default=Path("nb201-search"), help="folder for results.json and the plot")
    p.add_argument(
        "--rescore",
        type=int,
        default=2,
        metavar="N",
        help="also choose with the 10 finalists re-scored on N other batches and initial weights (default 2,\n"
        "0: not); reported beside the plain choice; with --merge, applied to runs that lack it",
    )
    p.add_argument("--merge", type=Path, nargs="+", metavar="DIR", help="report on earlier runs' --out folders")
    args = p.parse_args()
    truth = load_nb201(require(args.csv, "NAS-Bench-201 ground truth", "--csv"))
    if args.merge:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        merge(args.merge, args.out, truth, args.rescore)
        return
    require(args.data, "CIFAR-10 train folder", "--data")
    names = [s for s in args.samplers.split(",") if s]
    for n in names:
        if n not in SAMPLERS:
            p.error(f"unknown sampler {n!r}; choose from {', '.join(SAMPLERS)}")
    extra = [e for e in args.extra.split(",") if e]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    print(
        f"NB201 search: samplers {names}, {args.seeds} seeds, budget {args.budget}, batch {args.batch_size}, "
        f"objectives {args.metrics}{''.join(',' + e for e in extra)} (NTK {args.ntk_mode} on "
        f"{min(args.ntk_batch or args.batch_size, args.batch_size)} images), cells/stage {args.cells_per_stage}",
        flush=True,
    )
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        objective = make_objective(vars(args), seed)
        for name in names:
            r = run_one(name, seed, objective, args, truth)
            runs.append(r)
            print(
                f"  {name:14s} seed {seed}: chose {r['accuracy']:.2f} %"
                + (f" (re-scored finalists: {r['accuracy_rescored']:.2f})" if "accuracy_rescored" in r else "")
                + f", front best {r['best_on_front']:.2f}, "
                f"tau {r['kendall_tau']:.3f}, {r['archs_scored']} archs, {r['cpu_minutes']:.1f} CPU-min; mean true "
                f"accuracy, first/last tenth scored: {r['mean_acc_first_tenth']:.2f}/{r['mean_acc_last_tenth']:.2f}",
                flush=True,
            )
    settings = vars(args) | {"data": str(args.data), "csv": str(args.csv), "out": str(args.out)}
    report(runs, settings, args.out, max(truth.values()))


if __name__ == "__main__":
    main()
