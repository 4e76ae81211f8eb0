"""Trial heartbeats with no hole: no trial is RUNNING unwatched.

Optuna's own heartbeat leaves two ways for a dead worker's trial to stay RUNNING for ever (and so
hold up a generation boundary, or end a search one member short):

* the first heartbeat is written by a thread started after ``study.ask`` has created the trial, so a
  worker killed in between (tens of milliseconds, more on a loaded machine) leaves a trial with no
  heartbeat record, which Optuna's stale check never fails;
* that thread ends at the first storage error (a locked SQLite file, a dropped connection), and the
  trial then goes stale while its worker is alive.

Here the sampler writes the first heartbeat synchronously in ``before_trial`` (inside ``ask``, before
the sampler waits, selects parents or runs a tournament, and before the objective), and keeps a
beater thread that survives storage errors until ``after_trial``. A RUNNING trial with no heartbeat
record that started more than the grace period ago counts as stale, which also heals studies written
before this module existed.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from nas_sampler import schema
from nas_sampler.internals import (
    backend_of,
    heartbeat_enabled,
    optuna_stale_trial_ids,
    silent_trials,
    storage_of,
    study_id_of,
    trial_id_of,
)
from nas_sampler.study_lock import StudyLock

_log = logging.getLogger(__name__)

RETRY_HISTORY = schema.RETRY_HISTORY


def enabled(storage: BaseStorage) -> bool:
    return heartbeat_enabled(storage)


def grace_period(storage: BaseStorage) -> float:
    """The storage's grace period in seconds (Optuna's default: twice the interval)."""
    grace = getattr(backend_of(storage), "grace_period", None)
    return float(grace) if grace is not None else 2.0 * float(storage.get_heartbeat_interval() or 0)


class _Beater:
    """Records a trial's heartbeat every interval until stopped; a failed write is logged and retried
    at the next beat instead of ending the thread."""

    def __init__(self, storage: BaseStorage, trial_id: int) -> None:
        self.users = 1
        self._storage = storage
        self._trial_id = trial_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"nas-heartbeat-{trial_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def _run(self) -> None:
        interval = float(self._storage.get_heartbeat_interval() or 1)
        while not self._stop.wait(interval):
            try:
                self._storage.record_heartbeat(self._trial_id)  # type: ignore[attr-defined]
            except Exception as e:  # noqa: BLE001 - a storage hiccup must not silence the trial for good
                _log.warning(
                    "heartbeat of trial id %d not recorded (%s); retrying in %.0f s", self._trial_id, e, interval
                )


_beaters: dict[tuple[int, int], _Beater] = {}
_beaters_lock = threading.Lock()


def start(storage: BaseStorage, trial_id: int) -> None:
    """Record the trial's heartbeat now and keep it beating until :func:`stop` (calls nest)."""
    if not enabled(storage):
        return
    key = (id(storage), trial_id)
    with _beaters_lock:
        beater = _beaters.get(key)
        if beater is not None:
            beater.users += 1
            return
        storage.record_heartbeat(trial_id)  # type: ignore[attr-defined]
        beater = _beaters[key] = _Beater(storage, trial_id)
    beater.start()


def stop(storage: BaseStorage, trial_id: int) -> None:
    key = (id(storage), trial_id)
    with _beaters_lock:
        beater = _beaters.get(key)
        if beater is None:
            return
        beater.users -= 1
        if beater.users > 0:
            return
        del _beaters[key]
    beater.stop()


def stale_trial_ids(storage: BaseStorage, study_id: int) -> list[int]:
    """Optuna's stale trials (heartbeat older than the grace period) and the RUNNING trials that
    never had a heartbeat and started more than the grace period ago."""
    if not enabled(storage):
        return []
    ids = optuna_stale_trial_ids(storage, study_id)
    silent = silent_trials(backend_of(storage), study_id, grace_period(storage)) or []
    return ids + [i for i in silent if i not in ids]


def fail_stale(study: optuna.Study) -> list[int]:
    """Fail the study's stale trials (:func:`stale_trial_ids`' wider rule than Optuna's) and hand each
    to the storage's stale-trial callback (:func:`heal`); the numbers failed here."""
    return [t.number for t in heal(storage_of(study), study_id_of(study), lambda: study)]


def heal(
    storage: BaseStorage, study_id: int, study_of: Callable[[], optuna.Study], trial_ids: list[int] | None = None
) -> list[FrozenTrial]:
    """Fail stale trials (or the running ones of ``trial_ids``: cut off from the database) and retry
    them; the trials failed here. ``study_of()`` gives the study that the storage's stale-trial
    callback is handed (built only when a trial needs it).

    With nas-sampler's :class:`RetryKilledTrial` the retry is made first and the trial failed second,
    under the study's lock (:mod:`nas_sampler.study_lock`): a worker killed in between leaves a retry
    and a trial still stale, which the next worker fails without retrying it twice. (Optuna's order,
    fail and then retry, leaves a failed slot with no retry when the kill lands between the two.)"""
    if trial_ids is None and not stale_trial_ids(storage, study_id):
        return []
    callback = storage.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]
    retry_first = isinstance(callback, RetryKilledTrial)
    backend = backend_of(storage)  # what the database holds now, not a cache
    failed: list[FrozenTrial] = []
    with StudyLock(storage, study_id)():
        # (again: another worker may have healed them meanwhile)
        ids = stale_trial_ids(storage, study_id) if trial_ids is None else trial_ids
        retried = retried_numbers(backend.get_all_trials(study_id, deepcopy=False)) if ids and retry_first else set()
        for trial_id in ids:
            trial = copy.deepcopy(backend.get_trial(trial_id))
            if trial.state != TrialState.RUNNING:
                continue
            if retry_first and trial.number not in retried:
                callback(study_of(), trial)
            try:
                if storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                    failed.append(trial)
            except optuna.exceptions.UpdateFinishedTrialError:  # its worker was alive after all and finished it
                if retry_first:
                    _cancel_retries(backend, study_id, trial.number)
    if not retry_first and callback is not None:
        study = study_of() if failed else None
        for trial in failed:
            callback(study, copy.deepcopy(storage.get_trial(trial_id_of(trial))))
    return failed


def retried_numbers(trials: list[FrozenTrial]) -> set[int]:
    """The numbers of the trials that have a retry (Optuna's retry records the trials it replaces)."""
    return {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY, ())}


def _cancel_retries(backend: BaseStorage, study_id: int, number: int) -> None:
    """Fail the waiting retries of trial ``number``, which finished after all: its slot is done."""
    for t in backend.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        if number in t.system_attrs.get(RETRY_HISTORY, ()):
            try:
                backend.set_trial_state_values(trial_id_of(t), state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                pass


class RetryKilledTrial:
    """The stale-trial callback of nas-sampler's storages: a trial whose worker died is retried in its
    own slot up to ``max_retry`` times (a worker's death is not the objective failing). Past that the
    trial stays FAIL, its generation goes on one member short, and a warning says so."""

    def __init__(self, max_retry: int = 5) -> None:
        self.max_retry = max_retry
        self._retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry)

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        history = list(trial.system_attrs.get(RETRY_HISTORY, [])) + [trial.number]
        if len(history) > self.max_retry:
            _log.warning(
                "trial %d was killed %d times (trials %s); it is not retried again: its slot stays failed and its "
                "generation goes on one member short (raise storage.max_retry to retry more often)",
                trial.number,
                len(history),
                history,
            )
        self._retry(study, trial)
