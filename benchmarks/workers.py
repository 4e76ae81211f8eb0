"""Throughput of 1, 2 and 4 worker processes on one PostgreSQL study (I/O-bound objective).

Each worker is a separate process running the CLI's worker loop (``nas_sampler.worker.run_trials``:
storage with heartbeat and stale-trial retry, stop when the search's slots are used up) on the
default ``CellSpace`` (or ``--space nb201``) with an objective that only sleeps (200 ms by default), so two cores do not
limit it. Prints trials per second (first trial start to last trial end, from the storage's
timestamps; the workers start their loops together once all have imported and opened the
storage, so process start-up is not counted), the speed-up over one worker, and the sampler's
share of each trial's time (of which: waiting for the previous generation at a boundary), and the
utilisation: the objective's busy worker-seconds over workers x span. With ``--sigma`` the objective's
durations are log-normal, as real scoring times are uneven. The last line is one JSON object with
``utilisation``, ``trials_per_s``, ``sampler_share`` and ``wait_share`` per mode and worker count,
and the first mode's ``speedup_<W>_workers``.

With W workers and P children per generation at most P / (W * ceil(P / W)) of the workers' time can
be busy (population 20 on 16 workers: 62 %).

The GA is generational: the first trial of a generation waits until the previous generation has
finished. With population 20 and 4 workers every generation is 5 trials per worker, so the only
loss is the tail of each generation.

    python benchmarks/workers.py                       # a fresh database on 127.0.0.1:5432, dropped after
    python benchmarks/workers.py --storage postgresql+psycopg2://user@host/db
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _pg import fresh_database

# ---------------------------------------------------------------------------------------- worker


def worker(
    url: str,
    study_name: str,
    trials: int,
    population: int,
    sleep: float,
    sigma: float,
    stats: Path,
    kind: str,
    mode: str,
) -> None:
    """One worker process: the CLI's storage and loop, with the sampler's time measured."""
    import warnings

    import optuna

    from nas_sampler import cli
    from nas_sampler import worker as runtime
    from nas_sampler.presets import SearchConfig
    from nas_sampler.sampler import GeneticCellSampler
    from nas_sampler.space import make_space

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import numpy as np

    timing = {"sampler": 0.0, "wait": 0.0, "busy": 0.0}

    class TimedSampler(GeneticCellSampler):
        """Measures sample_relative (the sampler's whole work per trial) and, inside it, the wait
        for the previous generation (a private method: measurement only)."""

        def sample_relative(self, study, trial, search_space):  # noqa: ANN001, ANN201
            t = time.perf_counter()
            try:
                return super().sample_relative(study, trial, search_space)
            finally:
                timing["sampler"] += time.perf_counter() - t

        def _wait_for(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            t = time.perf_counter()
            try:
                return super()._wait_for(*args, **kwargs)
            finally:
                timing["wait"] += time.perf_counter() - t

    space = make_space(kind)
    study = optuna.create_study(
        storage=cli.open_storage(url, SearchConfig()),
        study_name=study_name,
        directions=["minimize"] * 3,
        load_if_exists=True,
        sampler=TimedSampler(population_size=population, seed=0, mode=mode),
    )

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        g = space.suggest(trial)
        t = time.perf_counter()
        rng = np.random.default_rng(list(str(g).encode()))  # one genotype, one duration, in every run
        time.sleep(sleep * float(rng.lognormal(0.0, sigma)) if sigma > 0 else sleep)
        timing["busy"] += time.perf_counter() - t
        ops = [e.op for _, e in g.edges()]
        return float(len(str(g))), float(len(set(ops))), float(sum(op.startswith(("sep", "nor")) for op in ops))

    # start together: the driver says go once every worker has imported and opened the storage, so a
    # slow start-up (4 processes importing torch on 2 cores) does not leave a worker idle in the span
    Path(f"{stats}.ready").write_text("")
    go = stats.parent / f"{study_name}.go"
    while not go.exists():
        time.sleep(0.005)
    runtime.run_trials(study, objective, trials)
    stats.write_text(json.dumps(timing))


# ---------------------------------------------------------------------------------------- driver


def run(
    url: str,
    n_workers: int,
    trials: int,
    population: int,
    sleep: float,
    sigma: float,
    folder: Path,
    kind: str,
    mode: str,
) -> dict[str, Any]:
    import optuna

    name = f"workers-{n_workers}-{uuid.uuid4().hex[:6]}"
    optuna.create_study(storage=url, study_name=name, directions=["minimize"] * 3)  # before the race to create it
    files = [folder / f"{name}-{i}.json" for i in range(n_workers)]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--worker", url, name, str(trials), str(population), str(sleep), str(sigma)]
            + [str(f), kind, mode],
            stderr=subprocess.PIPE,
            text=True,
        )
        for f in files
    ]
    while not all(Path(f"{f}.ready").exists() for f in files):
        if any(p.poll() is not None for p in procs):
            break  # a worker failed: its error is reported below
        time.sleep(0.01)
    (folder / f"{name}.go").write_text("")
    for p in procs:
        _, err = p.communicate()
        if p.returncode != 0:
            sys.exit(f"a worker failed ({p.returncode}): {err[-2000:]}")
    wall = time.perf_counter() - t0
    study = optuna.load_study(study_name=name, storage=url)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) != trials or len(study.trials) != trials:
        sys.exit(f"{n_workers} workers: {len(done)} completed of {len(study.trials)} trials, {trials} expected")
    span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done)).total_seconds()
    trial_time = sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
    timing = [json.loads(f.read_text()) for f in files]
    sampler = sum(t["sampler"] for t in timing)
    wait = sum(t["wait"] for t in timing)
    busy = sum(t["busy"] for t in timing)
    return {
        "utilisation": busy / (n_workers * span),
        "workers": n_workers,
        "trials_per_s": trials / span,
        "span_s": span,
        "wall_s": wall,
        "trial_ms": 1000 * trial_time / trials,
        "sampler_share": sampler / trial_time,
        "wait_share": wait / trial_time,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, name, trials, population, sleep, sigma, stats, kind, mode = sys.argv[2:]
        worker(url, name, int(trials), int(population), float(sleep), float(sigma), Path(stats), kind, mode)
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", help="PostgreSQL URL (default: a fresh database on the local server, dropped after)")
    p.add_argument("--trials", type=int, default=120)
    p.add_argument("--population", type=int, default=20, help="generation size (a multiple of 4: see above)")
    p.add_argument("--sleep", type=float, default=0.2, help="median seconds the objective sleeps")
    p.add_argument(
        "--sigma",
        type=float,
        default=0.0,
        help="log-normal spread of the objective's durations, per genotype (0: all equal; the nb201-cifar10 preset's "
        "trial times on a CPU fit --sleep 0.77 --sigma 0.3, see docs/results.md)",
    )
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--modes", default="generational", help="sampler modes to measure: generational, async or both")
    p.add_argument(
        "--space",
        default="cell",
        choices=["cell", "nb201"],
        help="cell (default; its conditional encoding: about 15 parameters a trial) or nb201 (6)",
    )
    args = p.parse_args()
    counts = [int(w) for w in args.workers.split(",")]
    url, drop = (args.storage, None) if args.storage else fresh_database()
    modes = args.modes.split(",")
    by_mode: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for mode, n in ((m, n) for m in modes for n in counts):
                r = run(url, n, args.trials, args.population, args.sleep, args.sigma, Path(tmp), args.space, mode)
                results = by_mode[mode]
                results.append(r)
                speedup = r["trials_per_s"] / results[0]["trials_per_s"]
                print(
                    f"{mode}, {n} worker(s): {r['trials_per_s']:.2f} trials/s, speed-up {speedup:.2f}x, utilisation "
                    f"{100 * r['utilisation']:.0f} %; "
                    f"per trial {r['trial_ms']:.0f} ms ({1000 * args.sleep:.0f} ms objective), sampler "
                    f"{100 * r['sampler_share']:.1f} % of it (waiting for the previous generation "
                    f"{100 * r['wait_share']:.1f} %); {r['wall_s']:.1f} s with process start-up",
                    flush=True,
                )
    finally:
        if drop is not None:
            drop()

    def per_mode(key: str, digits: int) -> dict[str, dict[str, float]]:
        return {m: {str(r["workers"]): round(r[key], digits) for r in rs} for m, rs in by_mode.items()}

    summary: dict[str, Any] = {
        "space": args.space,
        "trials": args.trials,
        "population": args.population,
        "sleep_s": args.sleep,
        "sigma": args.sigma,
        "utilisation": per_mode("utilisation", 3),
        "trials_per_s": per_mode("trials_per_s", 3),
        "sampler_share": per_mode("sampler_share", 4),
        "wait_share": per_mode("wait_share", 4),
    }
    first = by_mode[modes[0]]  # the speed-ups over one worker, of the first mode
    for r in first:
        summary[f"speedup_{r['workers']}_workers"] = round(r["trials_per_s"] / first[0]["trials_per_s"], 3)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
