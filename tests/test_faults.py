"""The fault suite: workers killed mid-trial or mid-selection, four workers on PostgreSQL, two studies
at once, the database connection cut. Each test counts what the storage holds afterwards: every slot
of every generation filled exactly once, no completed trial lost, no genotype completed twice.

The workers are real processes (tests/fault_worker.py: the CLI's worker loop on a cheap synthetic
objective) killed with SIGKILL; the SQLite cases run on tmpfs when there is one.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from nas_sampler.internals import storage_of, study_id_of

sys.path.insert(0, str(Path(__file__).parent))
import fault_worker  # noqa: E402

optuna.logging.set_verbosity(optuna.logging.WARNING)
WORKER = Path(__file__).with_name("fault_worker.py")
SLOT = "GeneticCellSampler:slot"
PARENTS = "GeneticCellSampler:parent:"
GRACE = 2  # seconds; the heartbeat interval is 1 s


@pytest.fixture
def url(request, tmp_path: Path) -> Iterator[str]:
    """A storage URL: a SQLite file (on tmpfs when there is one: Optuna commits every parameter) or
    the PostgreSQL test database (studies get unique names, so tests share it)."""
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_server")
        return
    shm = Path("/dev/shm")
    folder = Path(tempfile.mkdtemp(dir=shm)) if shm.is_dir() and os.access(shm, os.W_OK) else tmp_path
    yield f"sqlite:///{folder / 'faults.db'}"
    if folder != tmp_path:
        shutil.rmtree(folder, ignore_errors=True)


both = pytest.mark.parametrize("url", ["sqlite", "postgresql"], indirect=True)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _start(url: str, study: str, marker: Path, **options: object) -> subprocess.Popen:
    args = [sys.executable, str(WORKER), url, study, "--marker", str(marker), "--grace", str(GRACE)]
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    _, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return err


def _kill_when(proc: subprocess.Popen, marker: Path, timeout: float = 120) -> None:
    """SIGKILL ``proc`` once it has written ``marker`` (it then hangs where the fault is wanted)."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(
                f"the worker exited ({proc.returncode}) before reaching the fault: {proc.stderr.read()[-2000:]}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the worker did not reach the fault ({marker.name}) in {timeout} s")
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _load(url: str, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=url)


def _reference(pop: int, off: int, seed: int, target: int) -> optuna.Study:
    """The same search, one uninterrupted worker, in memory: what a resumed search must equal."""
    study = optuna.create_study(directions=["minimize"] * 3, sampler=fault_worker.make_sampler(pop, off, seed))
    study.optimize(lambda t: fault_worker.synthetic(fault_worker.SPACE.suggest(t)), n_trials=target)
    return study


def _genotype(t: optuna.trial.FrozenTrial) -> str:
    return t.user_attrs.get("genotype") or str(fault_worker.SPACE.from_params(t.params))


def _genotypes(study: optuna.Study) -> list[str]:
    return [_genotype(t) for t in _complete(study)]


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def _assert_whole_search(study: optuna.Study, pop: int, off: int, target: int) -> None:
    """``target`` completed trials filling every slot once, distinct genotypes, nothing left running,
    and every failed trial retried exactly once in its own slot with its own genotype."""
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state for t in trials)
    assert states[TrialState.RUNNING] == states[TrialState.WAITING] == 0, states
    complete = _complete(study)
    assert len(complete) == target, states
    genotypes = _genotypes(study)
    assert len(set(genotypes)) == target, "a genotype was completed twice"
    by_gen: dict[int, list[int]] = {}
    for t in complete:
        by_gen.setdefault(t.system_attrs[SLOT]["generation"], []).append(t.system_attrs[SLOT]["slot"])
    sizes = [pop] + [off] * ((target - pop) // off)
    assert {g: sorted(s) for g, s in by_gen.items()} == {g: list(range(n)) for g, n in enumerate(sizes)}
    for dead in (t for t in trials if t.state == TrialState.FAIL):
        retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
        assert len(retries) == 1, f"trial {dead.number} failed and was retried {len(retries)} times"
        retry = retries[0]
        assert retry.state == TrialState.COMPLETE
        if SLOT in dead.system_attrs:  # it died after its genotype was chosen: the retry evaluates the same one
            assert retry.system_attrs[SLOT]["generation"] == dead.system_attrs[SLOT]["generation"]
            assert retry.system_attrs[SLOT]["slot"] == dead.system_attrs[SLOT]["slot"]
            assert retry.params == dead.params


def _snapshot(study: optuna.Study) -> dict[int, tuple[float, ...]]:
    return {t.number: tuple(t.values) for t in _complete(study)}


# ---- 1. SIGKILL in the middle of a trial ------------------------------------------------------


@both
def test_sigkill_mid_trial_loses_nothing_and_retries_once_in_the_same_generation(url: str, tmp_path: Path) -> None:
    name, pop, off, target = _name("midtrial"), 6, 5, 26
    _kill_when(_start(url, name, tmp_path, target=target, stall_at=13), tmp_path / "stall")
    study = _load(url, name)
    before = _snapshot(study)
    assert len(before) == 13 and study.trials[13].state == TrialState.RUNNING
    time.sleep(GRACE + 1.2)  # past the grace period: the resumed worker fails the dead trial and retries it first
    _finish(_start(url, name, tmp_path, target=target))
    study = _load(url, name)
    assert {n: v for n, v in _snapshot(study).items() if n in before} == before  # 0 completed trials lost
    dead = study.trials[13]
    assert dead.state == TrialState.FAIL and study.trials[14].system_attrs["failed_trial"] == 13
    _assert_whole_search(study, pop, off, target)
    assert _genotypes(study) == _genotypes(_reference(pop, off, 7, target))  # as if never killed


@both
@pytest.mark.parametrize("number", [0, 13])
def test_sigkill_before_the_first_heartbeat_resumes_exactly(url: str, tmp_path: Path, number: int) -> None:
    """A worker killed between creating a trial and its first heartbeat (trial 0: before anything is
    stored) leaves a RUNNING trial with no heartbeat record; it goes stale after the grace period,
    and the resumed search is the uninterrupted one."""
    name, pop, off, target = _name("unbeaten"), 6, 5, 26
    proc = _start(url, name, tmp_path, target=target, die_unbeaten=number)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    study = _load(url, name)
    assert study.trials[-1].number == number and study.trials[-1].state == TrialState.RUNNING
    time.sleep(GRACE + 1.2)
    _finish(_start(url, name, tmp_path, target=target))
    study = _load(url, name)
    assert study.trials[number].state == TrialState.FAIL
    _assert_whole_search(study, pop, off, target)
    assert _genotypes(study) == _genotypes(_reference(pop, off, 7, target))


# ---- 2. SIGKILL while the sampler selects parents --------------------------------------------


@both
def test_sigkill_while_selecting_parents_leaves_the_cache_absent_and_resume_completes(url: str, tmp_path: Path) -> None:
    name, pop, off, target = _name("select"), 6, 5, 26
    # the parents of generation 2 are chosen by the trial that takes its first slot (trial 11)
    _kill_when(_start(url, name, tmp_path, target=target, slow_select=2), tmp_path / "select")
    study = _load(url, name)
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    assert f"{PARENTS}1" in attrs and f"{PARENTS}2" not in attrs  # absent, not partial
    assert len(_snapshot(study)) == 11
    time.sleep(GRACE + 1.2)
    _finish(_start(url, name, tmp_path, target=target))
    study = _load(url, name)
    reference = _reference(pop, off, 7, target)
    attrs = storage_of(study).get_study_system_attrs(study_id_of(study))
    expected = storage_of(reference).get_study_system_attrs(study_id_of(reference))
    for g in range(1, 5):  # complete, and the same parents (by genotype: the retry shifted trial numbers)
        got, want = attrs[f"{PARENTS}{g}"], expected[f"{PARENTS}{g}"]
        assert got["state"] == want["state"] and len(got["parents"]) == pop
        assert [_genotype(study.trials[n]) for n in got["parents"]] == [
            _genotype(reference.trials[n]) for n in want["parents"]
        ]
    _assert_whole_search(study, pop, off, target)
    assert _genotypes(study) == _genotypes(reference)


# ---- 3. four workers on PostgreSQL, one killed and restarted halfway ---------------------------


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_four_workers_one_killed_and_restarted_halfway(url: str, tmp_path: Path) -> None:
    name, pop, target = _name("four"), 20, 200
    common = {"target": target, "pop": pop, "off": pop, "sleep": 0.02}
    victim = _start(url, name, tmp_path, stall_at=100, **common)
    others = [_start(url, name, tmp_path, **common) for _ in range(3)]
    _kill_when(victim, tmp_path / "stall")
    restarted = _start(url, name, tmp_path, **common)  # at once, within the grace period
    for proc in [*others, restarted]:
        _finish(proc)
    study = _load(url, name)
    _assert_whole_search(study, pop, pop, target)
    assert Counter(t.state for t in study.trials)[TrialState.FAIL] == 1  # only the killed trial, retried once


# ---- 4. two studies in one database at the same time ------------------------------------------


@both
def test_two_studies_searched_at_once_do_not_see_each_other(url: str, tmp_path: Path) -> None:
    a, b = _name("a"), _name("b")
    runs = {a: {"pop": 6, "off": 5, "seed": 1, "target": 21}, b: {"pop": 4, "off": 4, "seed": 2, "target": 20}}
    procs = [_start(url, s, tmp_path, sleep=0.01, **o) for s, o in runs.items()]
    for p in procs:
        _finish(p)
    for s, o in runs.items():
        study = _load(url, s)
        assert len(study.trials) == o["target"]
        _assert_whole_search(study, o["pop"], o["off"], o["target"])
        # one worker per study: exactly the study's own uninterrupted search, whatever ran beside it
        assert _genotypes(study) == _genotypes(_reference(o["pop"], o["off"], o["seed"], o["target"]))


# ---- 5. the database connection is cut --------------------------------------------------------


@pytest.mark.parametrize("url", ["postgresql"], indirect=True)
def test_cut_connection_mid_write_reconnects_and_retries_the_trial(url: str, tmp_path: Path) -> None:
    """The worker is blocked in a storage write (an admin holds a lock) when its connections are
    terminated: it reconnects, the cut-off trial is failed and retried in its slot, nothing is lost."""
    import sqlalchemy as sa

    name, pop, off, target = _name("cut"), 6, 5, 21
    app = f"victim-{uuid.uuid4().hex[:8]}"
    proc = _start(f"{url}?application_name={app}", name, tmp_path, target=target, pause_at=8, sleep=0.01)
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "pause").exists():
            assert proc.poll() is None and time.monotonic() < deadline, "the worker did not reach the pause"
            time.sleep(0.02)
        with admin.connect() as lock, admin.connect() as control:
            lock.execute(sa.text("BEGIN"))
            lock.execute(sa.text("LOCK TABLE trial_user_attributes IN ACCESS EXCLUSIVE MODE"))
            (tmp_path / "go").write_text("")
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE application_name = :a AND wait_event_type = 'Lock'"
            while not control.execute(sa.text(waiting), {"a": app}).scalar():
                assert time.monotonic() < deadline, "the worker never blocked on the lock"
                time.sleep(0.02)
            cut = control.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :a"),
                {"a": app},
            ).fetchall()
            assert cut
            lock.execute(sa.text("ROLLBACK"))
        err = _finish(proc)
    finally:
        admin.dispose()
    assert "lost the connection to the storage" in err and "trial 8 is retried" in err
    study = _load(url, name)
    assert study.trials[8].state == TrialState.FAIL and study.trials[9].system_attrs["failed_trial"] == 8
    _assert_whole_search(study, pop, off, target)
    assert _genotypes(study) == _genotypes(_reference(pop, off, 7, target))
