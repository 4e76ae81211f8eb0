"""A kill campaign: a seeded search SIGKILLed at random moments, resumed each time with the same command.

The worker is the CLI's (``nas_sampler.cli.open_storage`` with its heartbeat and retry of killed trials,
``nas_sampler.worker.run_trials``) on a small cell space with a cheap synthetic objective whose duration is
drawn per genotype from a log-normal (median ``--trial-s``), and a parent selection that takes
``--select-s`` seconds on every second generation (where the DARTS tournament would run). So a kill lands
while scoring, while selecting parents, or while storing, in proportion to the time each takes.

The campaign first runs the search uninterrupted, then again under ``--kills`` SIGKILLs: each kill comes
a random time after the worker has opened the storage (uniform, up to twice the time the search has left
divided by the kills left plus one, so the kills spread over the whole run); the next run starts after
the grace period, as the guarantee asks (README, "Storage and workers"). After every kill the study
must agree with the uninterrupted run: each completed (generation, slot) holds the same genotype, no
slot is completed twice, no trial completed before is lost. At the end the two studies must hold the
same genotypes in every slot.

Last line, JSON: ``{"kills", "storage", "identical" (kills after which the study agreed), "lost_completed",
"duplicate_genotypes", "max_resume_stall_s" (the longest wait of a resumed worker for a trial to complete,
from opening the storage), "generation_sizes_exact", ...}``.

    python benchmarks/kill_resume.py --storage sqlite --kills 50 --load 2
    python benchmarks/kill_resume.py --storage postgresql --kills 50 --load 2
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from _pg import fresh_database

HEARTBEAT_S, GRACE_S = 1, 3


# ---------------------------------------------------------------------------------------- worker


def worker(url: str, name: str, target: int, seed: int, trial_s: float, select_s: float, ready: Path) -> None:
    """One run of the search command: open, resume, run until the search's slots are used up."""
    import warnings

    import numpy as np
    import optuna

    from nas_sampler import cli
    from nas_sampler import worker as runtime
    from nas_sampler.presets import SearchConfig, config_from_dict
    from nas_sampler.sampler import GeneticCellSampler
    from nas_sampler.selection import ParetoSelector
    from nas_sampler.space import CellSpace

    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = CellSpace(ops=["sep_conv_3x3", "skip_connect", "max_pool_3x3"], max_nodes=3)

    class SlowSelection(ParetoSelector):
        """Pareto selection that takes ``select_s`` on even generations: where a tournament would run."""

        def select(self, study, space, candidates, n_survivors, generation):  # noqa: ANN001, ANN201
            if generation % 2 == 0:
                time.sleep(select_s)
            return super().select(
                study=study, space=space, candidates=candidates, n_survivors=n_survivors, generation=generation
            )

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        g = space.suggest(trial)
        text = str(g)
        rng = np.random.default_rng(list(text.encode()))  # the same genotype takes the same time in every run
        time.sleep(trial_s * float(rng.lognormal(0.0, 0.5)))
        edges = [e for _, e in g.edges()]
        return float(sum(e.channels for e in edges)), float(g.num_nodes), -float(len(set(text)))

    raw = SearchConfig().to_dict()
    raw["storage"].update(heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S)
    storage = cli.open_storage(url, config_from_dict(raw, source="kill campaign"))
    sampler = GeneticCellSampler(8, 8, space=space, seed=seed, selector=SlowSelection(), generation_timeout=60)
    study = optuna.create_study(
        storage=storage, study_name=name, directions=["minimize"] * 3, sampler=sampler, load_if_exists=True
    )
    ready.with_suffix(".tmp").write_text(repr(time.time()))
    ready.with_suffix(".tmp").replace(ready)  # whole or absent: the driver reads it meanwhile
    runtime.run_trials(study, objective, target)


# ---------------------------------------------------------------------------------------- driver


def _command(url: str, name: str, args: argparse.Namespace, ready: Path) -> list[str]:
    return [
        sys.executable,
        __file__,
        "--worker",
        url,
        name,
        str(args.target),
        str(args.seed),
        str(args.trial_s),
        str(args.select_s),
        str(ready),
    ]


def _slots(url: str, name: str) -> tuple[dict[tuple[int, int], list[str]], dict[int, tuple[float, ...]], Any]:
    """Completed genotypes by (generation, slot), completed values by trial number, and the trials."""
    import optuna

    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials(deepcopy=False)
    by_slot: dict[tuple[int, int], list[str]] = {}
    values: dict[int, tuple[float, ...]] = {}
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE:
            tag = t.system_attrs["GeneticCellSampler:slot"]
            by_slot.setdefault((tag["generation"], tag["slot"]), []).append(t.user_attrs["genotype"])
            values[t.number] = tuple(t.values)
    return by_slot, values, trials


def _agrees(by_slot: dict[tuple[int, int], list[str]], reference: dict[tuple[int, int], list[str]]) -> bool:
    return all(len(v) == 1 and reference.get(k) == v for k, v in by_slot.items())


def _differences(trials: Any, by_slot: dict[tuple[int, int], list[str]], reference: dict) -> list[str]:
    """What a person needs to see where a study left the uninterrupted run: each slot that differs, and
    every trial that ran for it (number, state, retry of which trial, genotype)."""
    lines = []
    for key in sorted(k for k, v in by_slot.items() if not (len(v) == 1 and reference.get(k) == v)):
        lines.append(f"  slot {key}: uninterrupted {reference.get(key)}, here {by_slot[key]}")
        for t in trials:
            tag = t.system_attrs.get("GeneticCellSampler:slot") or {}
            if (tag.get("generation"), tag.get("slot")) == key:
                retry = t.system_attrs.get("failed_trial")  # nas_sampler.schema.RETRY
                lines.append(f"    trial {t.number} {t.state.name} retry of {retry}: {t.user_attrs.get('genotype')}")
    return lines


def _first_completion_after(trials: Any, since: float) -> float | None:
    ends = [t.datetime_complete.timestamp() for t in trials if t.state.name == "COMPLETE"]
    later = [e for e in ends if e >= since]
    return min(later) - since if later else None


def campaign(url: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    rng = random.Random(args.seed)
    ref_name, name = f"ref-{uuid.uuid4().hex[:6]}", f"killed-{uuid.uuid4().hex[:6]}"
    ready = folder / "ready"
    t0 = time.monotonic()
    subprocess.run(_command(url, ref_name, args, ready), check=True)
    straight_s = time.monotonic() - t0 - 2.0  # less the start-up, roughly
    reference, _, _ = _slots(url, ref_name)
    print(f"uninterrupted run: {sum(map(len, reference.values()))} trials in {straight_s:.0f} s", flush=True)

    kills = identical = lost = 0
    stalls: list[float] = []
    completed_before: dict[int, tuple[float, ...]] = {}
    finished = told = False
    while not finished:
        ready.unlink(missing_ok=True)
        proc = subprocess.Popen(_command(url, name, args, ready), stderr=subprocess.PIPE, text=True)
        while not ready.exists() and proc.poll() is None:
            time.sleep(0.01)
        opened = float(ready.read_text()) if ready.exists() else time.time()
        if kills < args.kills:  # spread the kills left over the time the search has left
            left_s = straight_s * max(0.05, 1.0 - len(completed_before) / args.target)
            delay = rng.uniform(0.0, 2.0 * left_s / (args.kills - kills + 1))
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        if proc.returncode not in (0, -signal.SIGKILL):
            sys.exit(f"the worker failed ({proc.returncode}): {err[-2000:]}")
        by_slot, values, trials = _slots(url, name)
        if kills > 0:  # this run resumed a killed search
            stall = _first_completion_after(trials, opened)
            if stall is not None:
                stalls.append(stall)
        lost += sum(1 for n, v in completed_before.items() if values.get(n) != v)
        completed_before = values
        if proc.returncode == 0:
            finished = True
            continue
        kills += 1
        identical += _agrees(by_slot, reference)
        if not _agrees(by_slot, reference) and not told:
            print("\n".join(["the study left the uninterrupted run:", *_differences(trials, by_slot, reference)]))
            told = True
        print(f"kill {kills}: {len(values)} trials completed, agrees: {_agrees(by_slot, reference)}", flush=True)
        time.sleep(GRACE_S + 1.2)  # the next run starts after the grace period
    by_slot, _, trials = _slots(url, name)
    duplicates = sum(n - 1 for n in Counter(g for v in by_slot.values() for g in v).values() if n > 1)
    sizes = Counter(g for g, _ in by_slot)
    ref_sizes = Counter(g for g, _ in reference)
    return {
        "kills": kills,
        "identical": identical,
        "final_identical": by_slot == reference,
        "lost_completed": lost,
        "duplicate_genotypes": duplicates,
        "max_resume_stall_s": round(max(stalls, default=0.0), 2),
        "generation_sizes_exact": sizes == ref_sizes and all(len(v) == 1 for v in by_slot.values()),
        "trials": len(trials),
        "straight_run_s": round(straight_s, 1),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        url, name, target, seed, trial_s, select_s, ready = sys.argv[2:]
        worker(url, name, int(target), int(seed), float(trial_s), float(select_s), Path(ready))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--storage", default="sqlite", help="sqlite, postgresql (a fresh local database) or a URL")
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--target", type=int, default=96, help="trials of the search: 8 per generation")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of the kill moments")
    p.add_argument("--trial-s", type=float, default=0.3, help="median seconds of one trial")
    p.add_argument("--select-s", type=float, default=0.5, help="seconds of selection on even generations")
    p.add_argument("--load", type=int, default=0, help="CPU-burning processes beside the campaign")
    args = p.parse_args()
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.load)]
    drop = None
    try:
        with tempfile.TemporaryDirectory(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else None) as tmp:
            if args.storage == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'kill.db'}"
            elif args.storage == "postgresql":
                url, drop = fresh_database()
            else:
                url = args.storage
            result = campaign(url, args, Path(tmp))
    finally:
        for b in burners:
            b.kill()
        if drop is not None:
            drop()
    print(json.dumps({"storage": args.storage, "load": args.load, **result}))


if __name__ == "__main__":
    main()
