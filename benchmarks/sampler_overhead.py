"""Per-trial cost of GeneticCellSampler next to Optuna's NSGAIISampler and RandomSampler.

A 3-objective in-memory study whose objective suggests a CellSpace genotype (its conditional
encoding: a dozen or more parameters a trial; the flat one had 80) and returns cheap synthetic
scores, so the time per trial is Optuna + sampler + ``space.suggest`` (the last costs the same for
every sampler). The three studies advance in chunks of 100 trials in turn, so a change in machine
load hits all three alike. Prints ms per trial for the first and the last 100 trials and the ratio
to RandomSampler; then the time for a fresh process to resume a study of that size in SQLite and
finish one trial. The last line is one JSON object.

    .venv/bin/python benchmarks/sampler_overhead.py --trials 3000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna

from nas_sampler.internals import storage_of
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.space import CellSpace

SPACE = CellSpace()
DIRECTIONS = ["minimize", "minimize", "maximize"]


def objective(trial: optuna.Trial) -> tuple[float, float, float]:
    g = SPACE.suggest(trial)
    edges = [e for _, e in g.edges()]
    total = sum(e.channels for e in edges)
    return abs(total - 96) / 96, float(g.num_nodes), float(sum(e.channels for e in edges if e.op.startswith("sep")))


def make_sampler(name: str, population: int, seed: int) -> optuna.samplers.BaseSampler:
    if name == "genetic":
        return GeneticCellSampler(population_size=population, seed=seed)
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise SystemExit(f"unknown sampler {name!r}: use genetic, nsga2 or random")


RESUME = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import optuna
sys.path.insert(0, {bench_dir!r})
from sampler_overhead import make_sampler, objective
optuna.logging.set_verbosity(optuna.logging.WARNING)
t1 = time.perf_counter()
study = optuna.load_study(study_name="bench", storage={url!r}, sampler=make_sampler({name!r}, {pop}, {seed}))
study.optimize(objective, n_trials=1)
t2 = time.perf_counter()
print(json.dumps({{"imports_s": t1 - t0, "resume_s": t2 - t1, "trials": len(study.trials)}}))
"""


def resume_time(study: optuna.Study, name: str, folder: Path, population: int, seed: int) -> dict[str, float]:
    """Copy the in-memory study to SQLite, then time a fresh process that loads it and runs one trial."""
    url = f"sqlite:///{folder / name}.db"
    optuna.copy_study(
        from_study_name=study.study_name, from_storage=storage_of(study), to_storage=url, to_study_name="bench"
    )
    code = RESUME.format(bench_dir=str(Path(__file__).parent), url=url, name=name, pop=population, seed=seed)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"resume of the {name} study failed:\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_s"] = wall
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3000)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--window", type=int, default=100, help="trials per timing window (and per chunk)")
    parser.add_argument("--no-resume", action="store_true", help="skip the SQLite resume timing")
    args = parser.parse_args()
    if args.trials < 2 * args.window:
        raise SystemExit(f"--trials {args.trials} is too small: give at least 2 * --window ({2 * args.window})")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")

    names = ["random", "nsga2", "genetic"]
    for n in names:  # warm-up (lazy imports, first-use caches), so the first window measures trials only
        optuna.create_study(directions=DIRECTIONS, sampler=make_sampler(n, args.population, args.seed)).optimize(
            objective, n_trials=args.population + 5
        )
    studies = {
        n: optuna.create_study(directions=DIRECTIONS, sampler=make_sampler(n, args.population, args.seed))
        for n in names
    }
    ms: dict[str, list[float]] = {n: [] for n in names}  # per trial: time since the previous trial ended
    done = 0
    while done < args.trials:
        chunk = min(args.window, args.trials - done)
        for n in names:
            stamps = [time.perf_counter()]
            studies[n].optimize(
                objective, n_trials=chunk, callbacks=[lambda s, t, ts=stamps: ts.append(time.perf_counter())]
            )
            ms[n] += [(b - a) * 1e3 for a, b in zip(stamps, stamps[1:], strict=False)]
        done += chunk

    params_per_trial = sum(len(t.params) for t in studies["random"].trials) / len(studies["random"].trials)
    first = {n: sum(ms[n][: args.window]) / args.window for n in names}
    last = {n: sum(ms[n][-args.window :]) / args.window for n in names}
    lo, hi = args.trials - args.window, args.trials - 1
    print(
        f"{args.trials} trials, population {args.population}, 3 objectives, "
        f"CellSpace(encoding={SPACE.encoding!r}), {params_per_trial:.1f} parameters a trial, in memory"
    )
    print(
        f"{'sampler':<10} {'ms/trial 0-' + str(args.window - 1):>16} {f'ms/trial {lo}-{hi}':>20} "
        f"{'x Random (last)':>16}"
    )
    for n in names:
        print(f"{n:<10} {first[n]:>16.2f} {last[n]:>20.2f} {last[n] / last['random']:>16.2f}")
    result = {
        "trials": args.trials,
        "population": args.population,
        "ms_per_trial_first": {n: round(first[n], 3) for n in names},
        "ms_per_trial_last": {n: round(last[n], 3) for n in names},
        f"genetic_over_random_at_{args.trials}": round(last["genetic"] / last["random"], 3),
        f"nsga2_over_random_at_{args.trials}": round(last["nsga2"] / last["random"], 3),
    }
    if not args.no_resume:
        shm = Path("/dev/shm")
        folder = Path(tempfile.mkdtemp(dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None))
        try:
            resume = {n: resume_time(studies[n], n, folder, args.population, args.seed) for n in names}
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        print(
            f"fresh process resuming a {args.trials}-trial SQLite study and finishing one trial "
            "(load + trial; whole process):"
        )
        for n in names:
            r = resume[n]
            print(f"  {n:<10} {r['resume_s']:6.2f} s   ({r['process_s']:.2f} s with interpreter and imports)")
        result["resume_s"] = {n: round(resume[n]["resume_s"], 3) for n in names}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
