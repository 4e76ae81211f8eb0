"""No trial is RUNNING unwatched: the first heartbeat is written inside ``ask``, a trial that never had
one goes stale after the grace period, and a killed trial is retried up to ``max_retry`` times."""

from __future__ import annotations

import logging
import threading
import time
import warnings
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from nas_sampler import heartbeat
from nas_sampler.internals import FastRDBStorage, storage_of, study_id_of, trial_id_of
from nas_sampler.sampler import GeneticCellSampler
from nas_sampler.space import CellSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = CellSpace(ops=["sep_conv_3x3", "skip_connect"], max_nodes=3)


def _storage(tmp_path: Path, cls: type[RDBStorage] = RDBStorage, max_retry: int = 5) -> RDBStorage:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return cls(
            f"sqlite:///{tmp_path / 'hb.db'}",
            heartbeat_interval=1,
            grace_period=1,
            heartbeat_stale_trial_callback=heartbeat.RetryKilledTrial(max_retry),
        )


def _beaten(storage: RDBStorage, trial_id: int) -> bool:
    with storage.engine.connect() as conn:
        query = sa.text("SELECT COUNT(*) FROM trial_heartbeats WHERE trial_id = :t")
        return conn.execute(query, {"t": trial_id}).scalar() == 1


def _beaters() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("nas-heartbeat-")]


def _study(storage: RDBStorage) -> optuna.Study:
    sampler = GeneticCellSampler(population_size=4, seed=0, space=SPACE, generation_timeout=30)
    return optuna.create_study(storage=storage, directions=["minimize"], sampler=sampler)


def test_ask_returns_a_trial_that_already_has_its_heartbeat(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = _study(storage)
    with pytest.warns(UserWarning):  # Optuna: heartbeat is meant for optimize (its thread would start after ask)
        trial = study.ask()
    assert _beaten(storage, trial_id_of(trial))  # before any objective or Optuna heartbeat thread ran
    assert _beaters() == [f"nas-heartbeat-{trial_id_of(trial)}"]  # and it keeps beating while the trial runs
    study.tell(trial, float(len(str(SPACE.suggest(trial)))))
    assert _beaters() == []  # told: the beater is gone


def test_optimize_with_two_threads_leaves_no_beater_behind(tmp_path: Path) -> None:
    storage = _storage(tmp_path)
    study = _study(storage)
    study.optimize(lambda t: float(len(str(SPACE.suggest(t)))), n_trials=10, n_jobs=2)
    assert all(_beaten(storage, trial_id_of(t)) for t in study.trials)
    assert _beaters() == []


@pytest.mark.parametrize("cls", [RDBStorage, FastRDBStorage])
def test_a_running_trial_that_never_had_a_heartbeat_goes_stale(tmp_path: Path, cls: type[RDBStorage]) -> None:
    storage = _storage(tmp_path, cls)
    study = _study(storage)
    dead = storage.create_new_trial(study_id_of(study))  # a worker killed before its first heartbeat
    assert heartbeat.stale_trial_ids(storage, study_id_of(study)) == []  # within the grace period: alive
    time.sleep(1.3)
    assert heartbeat.stale_trial_ids(storage, study_id_of(study)) == [dead]
    if cls is FastRDBStorage:  # Optuna's own check (study.optimize runs it before each trial) sees it too
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    else:
        assert heartbeat.fail_stale(study) == [0]
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL
    assert trials[1].state == TrialState.WAITING and trials[1].system_attrs["failed_trial"] == 0


@pytest.mark.parametrize("path", ["fail_stale", "optuna"])
def test_a_healer_killed_between_the_retry_and_the_failure_loses_no_slot(
    tmp_path: Path, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill campaign found a slot failed twice and never retried: its healer died after failing the
    retry and before retrying it (Optuna's order). Now the retry comes first; a healer killed after it
    leaves the trial stale, and the next one fails it without a second retry."""
    storage = _storage(tmp_path, FastRDBStorage)
    study = _study(storage)
    storage.create_new_trial(study_id_of(study))  # a dead worker's trial
    time.sleep(1.3)

    def heal() -> None:
        if path == "optuna":  # what study.optimize runs before each trial
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
        else:
            heartbeat.fail_stale(study)

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs) -> None:  # noqa: ANN002, ANN003
        raise Killed

    with monkeypatch.context() as m:
        m.setattr(FastRDBStorage, "set_trial_state_values", killed)  # the healer dies before it fails the trial
        with pytest.raises(Killed):
            heal()
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.RUNNING, TrialState.WAITING]  # the retry is there already
    heal()  # the next worker's healer
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]  # failed, and retried once
    assert trials[1].system_attrs["failed_trial"] == 0


def test_a_killed_trial_is_retried_max_retry_times_then_left_failed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = _storage(tmp_path, max_retry=2)
    study = _study(storage)
    storage.create_new_trial(study_id_of(study))
    for death in range(3):  # the trial, then each retry, killed before finishing
        time.sleep(2.2)  # SQLite's clock for heartbeats counts whole seconds
        with caplog.at_level(logging.WARNING, logger="nas_sampler.heartbeat"):
            heartbeat.fail_stale(study)
        trials = study.get_trials(deepcopy=False)
        if death < 2:
            assert trials[-1].state == TrialState.WAITING and trials[-1].system_attrs["failed_trial"] == 0
            with pytest.warns(UserWarning):
                retry = study.ask()  # the next worker takes it and dies too
            heartbeat.stop(storage_of(study), trial_id_of(retry))
    assert [t.state for t in study.get_trials(deepcopy=False)] == [TrialState.FAIL] * 3  # no third retry
    assert "was killed 3 times" in caplog.text and "raise storage.max_retry" in caplog.text


def test_journal_storage_gives_the_in_memory_search_and_resumes_after_a_clean_stop(tmp_path: Path) -> None:
    """Python users may drive the sampler on Optuna's JournalStorage (no heartbeat, so no crash recovery:
    the CLI refuses it): generations and genotypes are those of any other storage."""
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    def objective(trial: optuna.Trial) -> float:
        return float(len(str(SPACE.suggest(trial))))

    def sampler() -> GeneticCellSampler:
        return GeneticCellSampler(population_size=4, seed=3, space=SPACE)

    memory = optuna.create_study(sampler=sampler())
    memory.optimize(objective, n_trials=16)
    path = str(tmp_path / "journal.log")
    journal = optuna.create_study(storage=JournalStorage(JournalFileBackend(path)), sampler=sampler(), study_name="j")
    journal.optimize(objective, n_trials=7)
    resumed = optuna.load_study(storage=JournalStorage(JournalFileBackend(path)), sampler=sampler(), study_name="j")
    resumed.optimize(objective, n_trials=9)
    assert [t.params for t in resumed.trials] == [t.params for t in memory.trials]
