"""GeneticCellSampler on cheap synthetic objectives: resumable, concurrent, correct generations."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from nas_sampler import DartsTournament, heartbeat, trial_reader
from nas_sampler import sampler as sampler_module
from nas_sampler.errors import ConfigError
from nas_sampler.genotype import Genotype
from nas_sampler.internals import storage_of, study_id_of, trial_id_of
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.selection import ParetoSelector
from nas_sampler.space import CellSpace, NB201Space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = CellSpace()
KEY = "GeneticCellSampler:slot"

# The worker run in a subprocess: the "same command" that is stopped, killed and resumed.
WORKER = textwrap.dedent(
    """
    import os, signal, sys, time, warnings
    warnings.simplefilter("ignore")
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState
    from nas_sampler.sampler import GeneticCellSampler
    from nas_sampler.space import CellSpace

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url, name, complete, n_trials, kill_at, pop, off, seed, sleep = sys.argv[1:]
    complete, n_trials, kill_at, pop, off, seed = map(int, (complete, n_trials, kill_at, pop, off, seed))
    storage = RDBStorage(
        url, heartbeat_interval=1, grace_period=2,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=3),
    )
    study = optuna.create_study(
        storage=storage, study_name=name, directions=["minimize"] * 3, load_if_exists=True,
        sampler=GeneticCellSampler(population_size=pop, offspring_per_generation=off, seed=seed),
    )
    space = CellSpace()

    def objective(trial):
        g = space.suggest(trial)
        if trial.number == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)  # dies in the middle of the trial
        time.sleep(float(sleep) * (trial.number % 3))
        edges = [e for _, e in g.edges()]
        total = sum(e.channels for e in edges)
        return abs(total - 96) / 96, g.num_nodes, -sum(e.channels for e in edges if e.op.startswith("sep"))

    callbacks = [MaxTrialsCallback(complete, states=(TrialState.COMPLETE,))] if complete > 0 else []
    study.optimize(objective, n_trials=n_trials if n_trials > 0 else None, callbacks=callbacks)
    """
)


def synthetic(g: Genotype) -> tuple[float, float, float]:
    """Three cheap scores with a trade-off (same as the subprocess worker's)."""
    edges = [e for _, e in g.edges()]
    total = sum(e.channels for e in edges)
    return abs(total - 96) / 96, float(g.num_nodes), -float(sum(e.channels for e in edges if e.op.startswith("sep")))


def objective(trial: optuna.Trial) -> tuple[float, float, float]:
    return synthetic(SPACE.suggest(trial))


@pytest.fixture
def db(tmp_path: Path):
    """SQLite URLs in a fresh folder on tmpfs when there is one: Optuna commits every parameter,
    and on a disk each commit waits for fsync (about 1 s per 80-parameter trial here, 0.08 s on tmpfs)."""
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    yield lambda name: f"sqlite:///{folder / name}.db"
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


def _run_worker(tmp_path: Path, url: str, *, complete: int = 0, n_trials: int = 0, kill_at: int = -1, **kw) -> int:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    args = [
        url,
        kw.get("name", "s"),
        complete,
        n_trials,
        kill_at,
        kw.get("pop", 6),
        kw.get("off", 5),
        kw.get("seed", 7),
        kw.get("sleep", 0.0),
    ]
    proc = subprocess.run(
        [sys.executable, str(script), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    if kill_at < 0:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.returncode


def _completed_genotypes(study: optuna.Study) -> list[str]:
    return [t.user_attrs["genotype"] for t in study.get_trials(states=(TrialState.COMPLETE,))]


def _slots(study: optuna.Study) -> dict[int, list[tuple[int, int]]]:
    """Non-failed trials by generation, as (slot, trial number)."""
    by_gen: dict[int, list[tuple[int, int]]] = {}
    for t in study.get_trials(deepcopy=False):
        if t.state != TrialState.FAIL:
            tag = t.system_attrs[KEY]
            by_gen.setdefault(tag["generation"], []).append((tag["slot"], t.number))
    return by_gen


def _assert_exact_generations(study: optuna.Study, pop: int, off: int) -> None:
    by_gen = _slots(study)
    for g, members in sorted(by_gen.items()):
        slots = [s for s, _ in members]
        assert len(slots) == len(set(slots)), f"generation {g} has a slot twice: {sorted(members)}"
        size = pop if g == 0 else off
        if g < max(by_gen):
            assert sorted(slots) == list(range(size)), f"generation {g}: {sorted(slots)}"


# ---- basics --------------------------------------------------------------------------------


def test_works_with_no_arguments() -> None:
    study = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler())
    study.optimize(objective, n_trials=45)
    genotypes = _completed_genotypes(study)
    assert len(genotypes) == 45 and len(set(genotypes)) == 45
    assert all(SPACE.is_valid(SPACE.parse(g)) for g in genotypes)
    gens = Counter(study.sampler.get_trial_generation(study, t) for t in study.trials)
    assert gens == {0: 20, 1: 20, 2: 5}
    assert len(study.sampler.get_population(study, 1)) == 20
    parents = study.sampler.select_parent(study, 2)
    assert len(parents) == 20 and all(t.state == TrialState.COMPLETE for t in parents)
    assert {study.sampler.get_trial_generation(study, t) for t in parents} <= {0, 1}


def test_children_come_from_the_parents_and_evolution_improves() -> None:
    study = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=10, seed=3))
    study.optimize(objective, n_trials=150)
    initial = np.array([t.values for t in study.trials[:10]])
    parents = study.sampler.select_parent(study, 14)
    final = np.array([t.values for t in parents])
    # (mu + lambda) with the rank-sum rule keeps the best of every objective, and evolution improves on them
    assert (final.min(0) <= initial.min(0)).all() and (final.min(0) < initial.min(0)).any()
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    cached = attrs["GeneticCellSampler:parent:14"]
    assert set(cached) == {"parents", "state"} and len(cached["parents"]) == 10
    assert cached["state"]["generation"] == 14 and cached["state"]["mutation"]  # operators were counted


def test_bad_arguments_raise_config_errors() -> None:
    with pytest.raises(ConfigError, match="population_size"):
        GeneticCellSampler(population_size=1)
    with pytest.raises(ConfigError, match="offspring_per_generation"):
        GeneticCellSampler(offspring_per_generation=0)
    with pytest.raises(ConfigError, match="reduction"):
        GeneticCellSampler(reduction="best")
    with pytest.raises(ConfigError, match="seed"):
        GeneticCellSampler(seed=-3)
    with pytest.raises(ConfigError, match="space"):
        GeneticCellSampler(space="cell")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="tournament"):
        GeneticCellSampler(tournament=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mutation_prob"):
        GeneticCellSampler(mutation_prob=2.0)


def test_space_none_follows_the_recorded_space() -> None:
    nb = NB201Space()
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=GeneticCellSampler(6, seed=0))

    def nb_objective(trial: optuna.Trial) -> tuple[float, float]:
        g = nb.suggest(trial)
        ops = [e.op for _, e in g.edges()]
        return float(ops.count("none")), float(ops.count("nor_conv_3x3"))

    study.optimize(nb_objective, n_trials=40)
    genotypes = _completed_genotypes(study)
    assert len(set(genotypes)) == 40
    assert all(nb.is_valid(nb.parse(g)) for g in genotypes)
    best = max(t.values[1] for t in study.trials)
    assert best >= 5  # six edges: the evolution finds (nearly) all-conv cells quickly


# ---- exact resume ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The reference: 40 trials of the worker command, run straight through."""
    folder = tmp_path_factory.mktemp("straight")
    shm = Path("/dev/shm")
    db_dir = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else folder
    url = f"sqlite:///{db_dir / 'straight.db'}"
    try:
        _run_worker(folder, url, complete=40)
        genotypes = _completed_genotypes(optuna.load_study(study_name="s", storage=url))
    finally:
        if db_dir != folder:
            shutil.rmtree(db_dir, ignore_errors=True)
    assert len(genotypes) == 40 and len(set(genotypes)) == 40
    return genotypes


def test_stop_and_resume_in_a_new_process_equals_a_straight_run(tmp_path: Path, db, straight_run) -> None:
    resumed = db("b")
    _run_worker(tmp_path, resumed, complete=17)
    assert len(optuna.load_study(study_name="s", storage=resumed).trials) == 17
    _run_worker(tmp_path, resumed, complete=40)
    assert _completed_genotypes(optuna.load_study(study_name="s", storage=resumed)) == straight_run


def test_sigkill_mid_trial_then_resume_equals_a_straight_run(tmp_path: Path, db, straight_run) -> None:
    killed = db("killed")
    rc = _run_worker(tmp_path, killed, complete=40, kill_at=17)
    assert rc == -9  # SIGKILL in the middle of the 18th trial
    study = optuna.load_study(study_name="s", storage=killed)
    assert [t.state for t in study.trials][-1] == TrialState.RUNNING and len(study.trials) == 18
    time.sleep(3.2)  # past the grace period, so the resumed worker fails and retries the dead trial
    _run_worker(tmp_path, killed, complete=40)
    study = optuna.load_study(study_name="s", storage=killed)
    assert _completed_genotypes(study) == straight_run
    dead, retry = study.trials[17], study.trials[18]
    assert dead.state == TrialState.FAIL and retry.system_attrs["failed_trial"] == 17
    assert retry.user_attrs["genotype"] == dead.user_attrs["genotype"]
    assert retry.system_attrs[KEY]["generation"] == dead.system_attrs[KEY]["generation"]
    _assert_exact_generations(study, 6, 5)


def test_a_late_retry_counts_in_its_own_generation(tmp_path: Path, db) -> None:
    """Optuna's retry copies the dead trial's attributes; the retry must re-take the dead trial's slot
    even when it runs generations later (measured with BaseGASampler: 11 trials in a 10-trial generation)."""
    storage = RDBStorage(
        db("late"),
        heartbeat_interval=1,
        grace_period=1,
        heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
    )
    sampler = GeneticCellSampler(population_size=4, offspring_per_generation=4, seed=1, generation_timeout=0)
    study = optuna.create_study(storage=storage, directions=["minimize"] * 3, sampler=sampler)
    study.optimize(objective, n_trials=2)
    with pytest.warns(UserWarning):
        orphan = study.ask()  # a worker that dies after being given its genotype (slot 2 of generation 0)
    SPACE.suggest(orphan)
    heartbeat.stop(storage_of(study), trial_id_of(orphan))  # its worker is dead: its heartbeat stops
    study.optimize(objective, n_trials=9)  # generations 0..2 go on without it (generation_timeout=0)
    storage.record_heartbeat(trial_id_of(orphan))  # its last heartbeat; it goes stale a grace period later
    time.sleep(2.2)
    optuna.storages.fail_stale_trials(study)  # the late retry is created now, generations later
    study.optimize(objective, n_trials=1)  # runs the retry
    retry = study.trials[-1]
    assert retry.system_attrs["failed_trial"] == orphan.number and retry.state == TrialState.COMPLETE
    assert (
        retry.system_attrs[KEY]["generation"] == 0
        and retry.user_attrs["genotype"] == study.trials[2].user_attrs["genotype"]
    )
    sizes = Counter(t.system_attrs[KEY]["generation"] for t in study.trials if t.state == TrialState.COMPLETE)
    assert sizes == {0: 4, 1: 4, 2: 4}  # 12 completed trials; generation 0 has exactly 4, not 5
    _assert_exact_generations(study, 4, 4)


@pytest.mark.parametrize("selection", ["pareto", "tournament"])
def test_a_retry_with_a_later_number_breeds_the_same_generation(db, selection: str) -> None:
    """A retried slot's trial has a later number than its generation's other members; selection must
    see the generation in slot order, not trial order, or ties break another way (and a tournament
    draws other groups) and the resumed search leaves the uninterrupted one (seen in the kill
    campaign: a differing child in generation 3)."""

    def tied(trial: optuna.Trial) -> tuple[float, float, float]:
        SPACE.suggest(trial)
        return 0.0, 0.0, 0.0  # every candidate ties: the order selection sees them in decides

    def study_on(name: str) -> optuna.Study:
        storage = RDBStorage(
            db(name), heartbeat_interval=60, heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(3)
        )
        tournament = None
        if selection == "tournament":  # tiny, on the built-in data: every generation's parents by tournament
            tiny = dict(steps=4, warmup_steps=2, batch_size=8, width=4)
            tournament = DartsTournament(data="builtin", every=1, size=2, device="cpu", seed=0, **tiny)
        sampler = GeneticCellSampler(population_size=4, offspring_per_generation=4, seed=5, tournament=tournament)
        return optuna.create_study(storage=storage, directions=["minimize"] * 3, sampler=sampler)

    def by_slot(study: optuna.Study) -> dict[tuple[int, int], str]:
        return {
            (t.system_attrs[KEY]["generation"], t.system_attrs[KEY]["slot"]): t.user_attrs["genotype"]
            for t in study.get_trials(states=(TrialState.COMPLETE,))
        }

    straight = study_on("straight")
    straight.optimize(tied, n_trials=12)
    killed = study_on("killed")
    killed.optimize(tied, n_trials=2)
    with pytest.warns(UserWarning):
        orphan = killed.ask()  # slot 2 of generation 0; its worker dies
    SPACE.suggest(orphan)
    heartbeat.stop(storage_of(killed), trial_id_of(orphan))
    killed.optimize(tied, n_trials=1)  # slot 3 completes before slot 2's retry exists
    storage = storage_of(killed)
    storage.set_trial_state_values(trial_id_of(orphan), state=TrialState.FAIL)  # found stale
    storage.get_heartbeat_stale_trial_callback()(killed, killed.trials[orphan.number])
    killed.optimize(tied, n_trials=9)  # the retry (trial 4) re-takes slot 2, then generations 1 and 2
    assert killed.trials[4].system_attrs["failed_trial"] == orphan.number
    assert by_slot(killed) == by_slot(straight)


def test_parent_cache_is_one_attribute_and_recomputes_identically(tmp_path: Path, db) -> None:
    """A crash between generations leaves the cached parents absent (one write); selection is
    deterministic, so a resumed search chooses the same parents and the same children."""
    url = db("cache")
    study = optuna.create_study(
        storage=url, study_name="c", directions=["minimize"] * 3, sampler=GeneticCellSampler(5, seed=4)
    )
    study.optimize(objective, n_trials=23)
    key = "GeneticCellSampler:parent:4"
    before = storage_of(study).get_study_system_attrs(study_id_of(study))[key]
    reference = _completed_genotypes(study)
    # simulate "killed before the parents of generation 4 were written": a fresh study without them
    url2 = db("cache2")
    copy = optuna.create_study(
        storage=url2, study_name="c", directions=["minimize"] * 3, sampler=GeneticCellSampler(5, seed=4)
    )
    copy.optimize(objective, n_trials=20)
    assert key not in storage_of(copy).get_study_system_attrs(study_id_of(copy))
    resumed = optuna.load_study(study_name="c", storage=url2, sampler=GeneticCellSampler(5, seed=4))
    resumed.optimize(objective, n_trials=3)
    assert storage_of(resumed).get_study_system_attrs(study_id_of(resumed))[key] == before
    assert _completed_genotypes(resumed) == reference


def test_reading_trials_through_the_fast_path_gives_the_same_search(db, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sampler's own incremental read (rdb.read_trials) and Optuna's get_trials give one search."""

    def search(name: str) -> list[str]:
        study = optuna.create_study(
            storage=db(name), study_name="r", directions=["minimize"] * 3, sampler=GeneticCellSampler(5, seed=3)
        )
        study.optimize(objective, n_trials=23)
        return _completed_genotypes(study)

    fast = search("fast")
    monkeypatch.setattr(trial_reader, "read_trials", lambda *a: None)
    assert search("optuna") == fast


@pytest.mark.parametrize(
    "space", [CellSpace(), CellSpace(encoding="flat"), NB201Space()], ids=["cell", "flat", "nb201"]
)
def test_the_tag_written_with_the_parameters_stores_what_two_writes_store(
    db, monkeypatch: pytest.MonkeyPatch, space
) -> None:
    """A child's slot, parameters and genotype go in one transaction; the trials stored are those of
    the tag and the parameters written one after the other (Optuna's path)."""

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        text = str(space.suggest(trial))  # three cheap values of the genotype, for any space
        return len(text), text.count("conv"), -(sum(map(ord, text)) % 97)

    def search(name: str) -> list[optuna.trial.FrozenTrial]:
        study = optuna.create_study(
            storage=db(name), study_name="t", directions=["minimize"] * 3, sampler=GeneticCellSampler(4, seed=2)
        )
        study.optimize(objective, n_trials=14)
        return study.get_trials()

    together = []
    one = sampler_module.store_params
    monkeypatch.setattr(sampler_module, "store_params", lambda *a: together.append(one(*a)) or together[-1])
    fast = search("together")
    assert together == [True] * 14  # suggest records the space before the sampler is asked: every trial
    monkeypatch.setattr(sampler_module, "store_params", lambda *a: False)  # as for a storage with no fast path
    apart = search("apart")
    for a, b in zip(fast, apart, strict=True):
        assert (a.params, a.distributions, a.user_attrs, a.system_attrs, a.values) == (
            b.params,
            b.distributions,
            b.user_attrs,
            b.system_attrs,
            b.values,
        )


# ---- workers ---------------------------------------------------------------------------------


def test_two_threads_give_distinct_genotypes_and_exact_generations(tmp_path: Path, db) -> None:
    study = optuna.create_study(
        storage=db("threads"),
        directions=["minimize"] * 3,
        sampler=GeneticCellSampler(population_size=6, offspring_per_generation=5, seed=2),
    )

    def slow(trial: optuna.Trial) -> tuple[float, float, float]:
        g = SPACE.suggest(trial)
        time.sleep(0.002 * (trial.number % 4))
        return synthetic(g)

    study.optimize(slow, n_trials=36, n_jobs=2)
    genotypes = _completed_genotypes(study)
    assert len(genotypes) == 36 and len(set(genotypes)) == 36
    _assert_exact_generations(study, 6, 5)
    assert Counter(t.system_attrs[KEY]["generation"] for t in study.trials) == {
        0: 6,
        1: 5,
        2: 5,
        3: 5,
        4: 5,
        5: 5,
        6: 5,
    }


def test_two_processes_on_one_sqlite_study(tmp_path: Path, db) -> None:
    url = db("procs")
    optuna.create_study(storage=url, study_name="s", directions=["minimize"] * 3)
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cmd = [sys.executable, str(script), url, "s", "0", "20", "-1", "8", "8", "5", "0.01"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    study = optuna.load_study(study_name="s", storage=url)
    genotypes = _completed_genotypes(study)
    assert len(genotypes) == 40 and len(set(genotypes)) == 40
    _assert_exact_generations(study, 8, 8)
    assert Counter(t.system_attrs[KEY]["generation"] for t in study.trials) == {g: 8 for g in range(5)}


def test_two_studies_in_one_database_do_not_interfere(tmp_path: Path, db) -> None:
    url = db("two")
    sampler = GeneticCellSampler(population_size=5, seed=9)  # one sampler object shared, too
    a = optuna.create_study(storage=url, study_name="a", directions=["minimize"] * 3, sampler=sampler)
    b = optuna.create_study(storage=url, study_name="b", directions=["maximize"] * 3, sampler=sampler)
    for _ in range(4):  # interleaved
        a.optimize(objective, n_trials=6)
        b.optimize(objective, n_trials=6)
    alone = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=5, seed=9))
    alone.optimize(objective, n_trials=24)
    assert _completed_genotypes(a) == _completed_genotypes(alone)
    for s in (a, b):
        attrs = storage_of(s).get_study_system_attrs(study_id_of(s))
        numbers = {t.number for t in s.trials}
        for g in range(1, 4):
            assert set(attrs[f"GeneticCellSampler:parent:{g}"]["parents"]) <= numbers
    assert _completed_genotypes(a) != _completed_genotypes(b)  # b maximises: other parents, other children


def test_enqueued_trials_are_members_of_generation_zero() -> None:
    rng = np.random.default_rng(0)
    seeds = []
    while len(seeds) < 3:
        g = SPACE.random(rng)
        if g not in seeds:
            seeds.append(g)
    study = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=6, seed=1))
    for g in seeds:
        study.enqueue_trial(SPACE.to_params(g))
    study.optimize(objective, n_trials=14)
    genotypes = _completed_genotypes(study)
    assert genotypes[:3] == [str(g) for g in seeds]
    assert len(set(genotypes)) == 14
    assert [t.system_attrs[KEY]["generation"] for t in study.trials] == [0] * 6 + [1] * 6 + [2] * 2


def test_failed_trials_keep_their_slot_and_are_never_parents() -> None:
    def flaky(trial: optuna.Trial) -> tuple[float, float, float]:
        g = SPACE.suggest(trial)
        if trial.number % 4 == 1:
            raise ValueError("synthetic failure")
        return synthetic(g)

    study = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=6, seed=5))
    study.optimize(flaky, n_trials=30, catch=(ValueError,))
    tags = [t.system_attrs[KEY] for t in study.trials]
    assert Counter(t["generation"] for t in tags) == {0: 6, 1: 6, 2: 6, 3: 6, 4: 6}
    failed = {t.number for t in study.trials if t.state == TrialState.FAIL}
    for g in range(1, 5):
        assert not failed & {t.number for t in study.sampler.select_parent(study, g)}


def test_a_failed_genotype_is_never_proposed_again() -> None:
    """A genotype whose trial failed is not drawn again as a new child (it is retried in its own
    slot, or not at all): in a space of a few dozen genotypes, children land on it often otherwise.
    (Optuna fails a stale trial and creates its retry in two steps; a worker that read between
    them must not propose the genotype a second time.)"""
    tiny = CellSpace(ops=["skip_connect", "avg_pool_3x3"], max_nodes=3, channel_choices=(0, 4))
    for seed in range(4):
        failing: set[str] = set()

        def objective(trial: optuna.Trial, failing: set[str] = failing) -> tuple[float, float, float]:
            g = str(tiny.suggest(trial))
            if trial.number % 3 == 0:
                failing.add(g)
                raise ValueError("synthetic failure")
            return float(len(g)), float(g.count("skip")), float(g.count("pool"))

        sampler = GeneticCellSampler(population_size=4, seed=seed, space=tiny)
        study = optuna.create_study(directions=["minimize"] * 3, sampler=sampler)
        study.optimize(objective, n_trials=24, catch=(ValueError,))
        genotypes = [t.user_attrs["genotype"] for t in study.trials]
        for text in failing:
            assert genotypes.count(text) == 1, (seed, text, genotypes)


def test_constraints_make_feasible_trials_the_parents() -> None:
    def constrained(trial: optuna.Trial) -> tuple[float, float, float]:
        g = SPACE.suggest(trial)
        total = sum(e.channels for _, e in g.edges())
        trial.set_constraint("max_channels", total - 40.0)  # feasible when total <= 40
        return synthetic(g)

    study = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=8, seed=2))
    study.optimize(constrained, n_trials=80)
    feasible = [t for t in study.trials if all(v <= 0 for v in t.constraints.values())]
    assert len(feasible) >= 8
    parents = study.sampler.select_parent(study, 9)
    assert all(all(v <= 0 for v in t.constraints.values()) for t in parents)


# ---- pluggable selection ---------------------------------------------------------------------


class CountingTournament:
    """Stands in for the DARTS tournament: picks the lowest trial numbers, counts its calls."""

    every = 2

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def is_tournament_generation(self, generation: int) -> bool:
        return generation % self.every == 0

    def select(self, *, study, space, candidates, n_survivors, generation):
        with self.lock:
            self.calls.append(generation)
        return sorted(candidates, key=lambda t: t.number)[:n_survivors]


def test_tournament_replaces_pareto_selection_every_kth_generation(tmp_path: Path, db) -> None:
    url = db("t")
    tournament = CountingTournament()
    sampler = GeneticCellSampler(population_size=4, seed=0, tournament=tournament)
    study = optuna.create_study(storage=url, study_name="t", directions=["minimize"] * 3, sampler=sampler)
    study.optimize(objective, n_trials=26)  # generations 0..6
    assert tournament.calls == [2, 4, 6]
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    for g in (2, 4, 6):
        pool = attrs[f"GeneticCellSampler:parent:{g - 1}"]["parents"] + [4 * g - 4 + i for i in range(4)]
        assert attrs[f"GeneticCellSampler:parent:{g}"]["parents"] == sorted(pool)[:4]
    # a resumed search reads the cached parents: no tournament runs again
    again = CountingTournament()
    resumed = optuna.load_study(
        study_name="t", storage=url, sampler=GeneticCellSampler(population_size=4, seed=0, tournament=again)
    )
    resumed.optimize(objective, n_trials=2)
    assert again.calls == []


def test_crowding_reduction_and_custom_selector() -> None:
    study = optuna.create_study(
        directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=6, seed=1, reduction="crowding")
    )
    study.optimize(objective, n_trials=30)
    assert len(set(_completed_genotypes(study))) == 30
    selector = ParetoSelector("rank_sum")
    s2 = optuna.create_study(
        directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=6, seed=1, selector=selector)
    )
    s2.optimize(objective, n_trials=30)
    s3 = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(population_size=6, seed=1))
    s3.optimize(objective, n_trials=30)
    assert _completed_genotypes(s2) == _completed_genotypes(s3)


# ---- search quality --------------------------------------------------------------------------

TARGET = SPACE.parse("|sep_conv_3x3:32~0|skip_connect:8~0|+|sep_conv_5x5:16~1|+|max_pool_3x3:16~2|clc_avg_3x3:8~0|")
FLAT = CellSpace(encoding="flat")  # the distance is measured over every (edge, operation)'s channel count
TARGET_PARAMS = FLAT.to_params(TARGET)
INDEX = {c: i for i, c in enumerate(SPACE.channel_choices)}


def _known_optimum(trial: optuna.Trial) -> tuple[float, float]:
    """Distance to TARGET along channel_choices (0 only at TARGET), and size: a known Pareto front."""
    params = FLAT.to_params(SPACE.suggest(trial))
    dist = sum(abs(INDEX[params[k]] - INDEX[v]) for k, v in TARGET_PARAMS.items())
    return dist / (len(params) * 5), sum(params.values()) / (len(params) * 64)


def _hypervolume_2d(points: list[tuple[float, float]], ref: tuple[float, float] = (0.1, 0.05)) -> float:
    """Area dominated by ``points`` up to ``ref``, a corner just beyond typical sparse random cells
    (a far corner would make every search look alike)."""
    pts = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    hv, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            hv += (ref[0] - x) * (best_y - y)
            best_y = y
    return hv


def test_beats_random_sampling_on_a_known_optimum() -> None:
    budget, results = 120, {"genetic": [], "random": [], "initial": []}
    for seed in range(5):
        for name, sampler in (
            ("genetic", GeneticCellSampler(population_size=12, seed=seed)),
            ("random", optuna.samplers.RandomSampler(seed=seed)),
        ):
            study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
            study.optimize(_known_optimum, n_trials=budget)
            results[name].append(_hypervolume_2d([tuple(t.values) for t in study.trials]))
        # the same budget of the genetic sampler's own random initial cells: evolution must add to it
        rng = np.random.default_rng(seed)
        pts = []
        for _ in range(budget):
            params = FLAT.to_params(SPACE.random(rng))
            dist = sum(abs(INDEX[params[k]] - INDEX[v]) for k, v in TARGET_PARAMS.items())
            pts.append((dist / (len(params) * 5), sum(params.values()) / (len(params) * 64)))
        results["initial"].append(_hypervolume_2d(pts))
    mean = {k: float(np.mean(v)) for k, v in results.items()}
    assert mean["genetic"] > mean["random"]
    assert mean["genetic"] > mean["initial"]


def test_a_study_keeps_its_seed_and_refuses_other_generation_sizes(tmp_path: Path, db) -> None:
    url = db("sizes")
    study = optuna.create_study(
        storage=url, study_name="z", directions=["minimize"] * 3, sampler=GeneticCellSampler(6, seed=11)
    )
    study.optimize(objective, n_trials=8)
    # a worker started with another seed follows the study's seed: same children as seed 11
    other = optuna.load_study(study_name="z", storage=url, sampler=GeneticCellSampler(6, seed=99))
    other.optimize(objective, n_trials=4)
    reference = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(6, seed=11))
    reference.optimize(objective, n_trials=12)
    assert _completed_genotypes(other) == _completed_genotypes(reference)
    wrong = optuna.load_study(study_name="z", storage=url, sampler=GeneticCellSampler(8, seed=11))
    with pytest.raises(ConfigError, match="population_size=6"):
        wrong.optimize(objective, n_trials=1)


# ---- asynchronous (steady-state) mode --------------------------------------------------------


def test_async_mode_never_waits_at_a_generation_boundary(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_wait(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the asynchronous mode waited for a generation")

    monkeypatch.setattr(GeneticCellSampler, "_wait_for", no_wait)
    study = optuna.create_study(directions=["minimize"] * 3, sampler=GeneticCellSampler(4, seed=2, mode="async"))
    study.optimize(objective, n_trials=2)
    stuck = study.ask()  # generation 0's slot 2 never finishes: a generational search would wait for it
    SPACE.suggest(stuck)
    study.optimize(objective, n_trials=14, n_jobs=2)
    done = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(done) == 16 and len({t.user_attrs["genotype"] for t in done} | {str(SPACE.suggest(stuck))}) == 17
    sizes = Counter(t.system_attrs[KEY]["generation"] for t in done)
    assert sizes == {0: 3, 1: 4, 2: 4, 3: 4, 4: 1}  # slots numbered as in the generational mode (17 trials)


def test_async_mode_beats_random_sampling_on_a_known_optimum() -> None:
    genetic, random = [], []
    for seed in range(3):
        for out, sampler in (
            (genetic, GeneticCellSampler(population_size=12, seed=seed, mode="async")),
            (random, optuna.samplers.RandomSampler(seed=seed)),
        ):
            study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
            study.optimize(_known_optimum, n_trials=120)
            out.append(_hypervolume_2d([tuple(t.values) for t in study.trials]))
    assert np.mean(genetic) > np.mean(random)


def test_a_study_keeps_its_mode_and_async_refuses_a_tournament(tmp_path: Path, db) -> None:
    url = db("mode")
    study = optuna.create_study(storage=url, study_name="m", directions=["minimize"] * 3, sampler=GeneticCellSampler(4))
    study.optimize(objective, n_trials=2)
    other = optuna.load_study(storage=url, study_name="m", sampler=GeneticCellSampler(4, mode="async"))
    with pytest.raises(ConfigError, match="mode='generational'"):
        other.optimize(objective, n_trials=1)
    with pytest.raises(ConfigError, match="no generation boundary"):
        GeneticCellSampler(4, mode="async", tournament=ParetoSelector())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="mode='steady'"):
        GeneticCellSampler(4, mode="steady")
