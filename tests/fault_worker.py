"""A cheap search worker for the fault suite: the CLI's worker loop on a synthetic objective.

Run as ``python tests/fault_worker.py URL STUDY --target N ...`` (one process = one worker). It uses
the same storage settings as ``nas-sampler worker`` (heartbeat, stale trials retried once) and the
same loop (:func:`nas_sampler.worker.run_trials`: stop when the search's slots are used up), so what
the fault tests do to it is what a user's worker goes through. Faults are injected on request:

* ``--stall-at N``: the first trial numbered N or more writes ``MARKER/stall`` and hangs in the
  objective (the test then SIGKILLs the worker in the middle of that trial);
* ``--slow-select G``: choosing the parents of generation G writes ``MARKER/select`` and hangs (the
  test SIGKILLs the worker while the sampler is selecting parents, before they are cached);
* ``--pause-at N``: trial N writes ``MARKER/pause``, waits for ``MARKER/go``, then writes a user
  attribute (the test blocks that write with a table lock and cuts the worker's connections);
* ``--die-unbeaten N``: the worker SIGKILLs itself once it has created trial N, before that trial's
  first heartbeat (the hole Optuna's own heartbeat leaves: a RUNNING trial with no heartbeat record).

The test module imports ``synthetic`` and ``make_sampler`` to compute reference runs in-process.
"""

from __future__ import annotations

import argparse
import os
import signal
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import optuna
from optuna.storages import RDBStorage
from optuna.study import Study
from optuna.trial import FrozenTrial

from nas_sampler import cli, heartbeat, worker
from nas_sampler.genotype import Genotype
from nas_sampler.internals import storage_of
from nas_sampler.presets import SearchConfig, config_from_dict
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.selection import ParetoSelector
from nas_sampler.space import CellSpace

# 18 parameters instead of the default space's 80: Optuna commits each parameter on its own, and the
# fault suite runs hundreds of trials; 6**18 genotypes are still far more than any test draws
SPACE = CellSpace(ops=["sep_conv_3x3", "skip_connect", "max_pool_3x3"], max_nodes=3)
HANG_S = 600.0  # "for ever": the test kills the worker long before


def synthetic(g: Genotype) -> tuple[float, float, float]:
    """Three cheap, deterministic scores of a genotype with a trade-off between them."""
    edges = [e for _, e in g.edges()]
    total = sum(e.channels for e in edges)
    convs = sum(e.channels for e in edges if e.op.startswith("sep"))
    return abs(total - 96) / 96, float(g.num_nodes), -float(convs)


class SlowSelector(ParetoSelector):
    """Pareto selection that hangs while choosing the parents of one generation (after saying so)."""

    def __init__(self, generation: int, marker: Path) -> None:
        super().__init__("rank_sum")
        self.generation = generation
        self.marker = marker

    def select(
        self, study: Study, space: object, candidates: Sequence[FrozenTrial], n_survivors: int, generation: int
    ) -> list[FrozenTrial]:
        if generation == self.generation:
            self.marker.write_text(str(generation))
            time.sleep(HANG_S)
        return super().select(
            study=study, space=space, candidates=candidates, n_survivors=n_survivors, generation=generation
        )


def make_sampler(pop: int, off: int, seed: int, selector: ParetoSelector | None = None) -> GeneticCellSampler:
    """The sampler every worker (and the in-process reference) uses; a short generation timeout so
    that a test hits a bug as wrong counts, not as a ten-minute hang."""
    return GeneticCellSampler(pop, off, seed=seed, selector=selector, generation_timeout=10)


def open_storage(url: str, grace: int) -> RDBStorage:
    """The storage exactly as ``nas-sampler search/worker`` opens it, with a 1 s heartbeat."""
    raw = SearchConfig().to_dict()
    raw["storage"].update(heartbeat_interval=1, grace_period=grace)
    return cli.open_storage(url, config_from_dict(raw, source="fault worker"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("study")
    p.add_argument("--target", type=int, required=True, help="slots of the whole search")
    p.add_argument("--pop", type=int, default=6)
    p.add_argument("--off", type=int, default=5)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sleep", type=float, default=0.0, help="seconds each trial sleeps in the objective")
    p.add_argument("--grace", type=int, default=2, help="heartbeat grace period (the interval is 1 s)")
    p.add_argument("--marker", type=Path, help="folder for the fault markers")
    p.add_argument("--stall-at", type=int, default=-1)
    p.add_argument("--slow-select", type=int, default=-1)
    p.add_argument("--pause-at", type=int, default=-1)
    p.add_argument("--die-unbeaten", type=int, default=-1)
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    selector = SlowSelector(args.slow_select, args.marker / "select") if args.slow_select >= 0 else None
    study = optuna.create_study(
        storage=open_storage(args.url, args.grace),
        study_name=args.study,
        directions=["minimize"] * 3,
        load_if_exists=True,
        sampler=make_sampler(args.pop, args.off, args.seed, selector),
    )
    stalled = paused = False
    if args.die_unbeaten >= 0:
        first_beat = heartbeat.start

        def start(storage: object, trial_id: int) -> None:
            if storage_of(study).get_trial(trial_id).number == args.die_unbeaten:
                os.kill(os.getpid(), signal.SIGKILL)
            first_beat(storage, trial_id)

        heartbeat.start = start

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        nonlocal stalled, paused
        g = SPACE.suggest(trial)
        if 0 <= args.stall_at <= trial.number and not stalled:
            stalled = True
            (args.marker / "stall").write_text(str(trial.number))
            time.sleep(HANG_S)
        if trial.number == args.pause_at and not paused:
            paused = True
            (args.marker / "pause").write_text(str(trial.number))
            while not (args.marker / "go").exists():
                time.sleep(0.02)
            trial.set_user_attr("after_pause", True)  # a storage write the test blocks and then cuts off
        time.sleep(args.sleep)
        return synthetic(g)

    worker.run_trials(study, objective, args.target)


if __name__ == "__main__":
    main()
