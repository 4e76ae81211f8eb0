"""The worker runtime: how one process takes trials of a shared study and runs them.

Optuna's ``study.optimize`` stops each worker after its own ``n_trials`` and knows nothing of a
search's budget; here every worker of a study takes trials under one lock, so together they take
exactly the search's slots, wait for each other's trials at the end, and survive a lost database
connection. The ``nas-sampler search`` and ``worker`` commands run this loop; Python users call
:func:`run_trials` with their own study and objective.
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from nas_sampler import heartbeat
from nas_sampler.errors import NASError
from nas_sampler.internals import (
    backend_of,
    count_slots,
    forget_cached_trials,
    storage_of,
    study_id_of,
    tell,
    trial_id_of,
)
from nas_sampler.sampler import RETRY_ATTR
from nas_sampler.study_lock import StudyLock

_log = logging.getLogger(__name__)


def run_trials(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    target: int,
    *,
    catch: tuple[type[Exception], ...] = (),
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    should_stop: Callable[[], bool] = lambda: False,
    reconnect_timeout: float | None = None,
) -> None:
    """The worker loop: run trials until the search's ``target`` slots are taken and none is left over.

    * A worker takes a trial (a waiting retry, or a new one while slots are left) under a lock held
      by every worker of the study, so however many workers race for the last slot, exactly
      ``target`` slots are taken (Optuna's MaxTrialsCallback only looks after a trial: each worker
      would add one past the budget, a half-filled extra generation).
    * When no slot is left but other workers' trials still run (and the storage has a heartbeat), the
      worker waits for them: if one's worker dies, its trial goes stale, is failed and retried here,
      so the last worker standing finishes the search instead of leaving a dead trial behind.
    * When the database connection is lost (the server restarted, the connection was cut), the
      worker reconnects for up to ``reconnect_timeout`` seconds (default: the heartbeat grace
      period, else 60 s); the trial that was cut off is failed and retried in its own slot through
      the storage's stale-trial callback, as if its worker had died. Past the timeout it raises
      :class:`NASError` with one line: every finished trial is stored, and the same command resumes.
    """
    storage = storage_of(study)
    beats = heartbeat.enabled(storage)
    poll = float(min(storage.get_heartbeat_interval() or 1, 5)) if beats else 0.0
    if reconnect_timeout is None:
        reconnect_timeout = heartbeat.grace_period(storage) if beats else 60.0
    current: dict[str, tuple[int, int]] = {}

    def tracked(trial: optuna.Trial) -> Any:
        current["trial"] = (trial_id_of(trial), trial.number)
        return objective(trial)

    next_check = 0.0

    def fail_stale() -> None:
        """Fail trials whose worker died, at most once per heartbeat interval (each check is a query;
        a trial only goes stale after the grace period anyway)."""
        nonlocal next_check
        if beats and time.monotonic() >= next_check:
            heartbeat.fail_stale(study)
            next_check = time.monotonic() + poll

    told = False
    lock = StudyLock(storage, study_id_of(study))
    while not should_stop():
        try:
            current.clear()
            if _run_one(study, tracked, target, lock, catch, callbacks, fail_stale):
                continue
            # every RUNNING trial has a heartbeat or goes stale after the grace period (nas_sampler.heartbeat),
            # so the last worker waits for all of them: a dead one is failed and retried here
            running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
            if not beats or not running:
                return
            if not told:
                print(
                    f"no slots left; waiting for trials {running} of other workers (a trial whose worker died is "
                    "retried here after the grace period; Ctrl-C leaves them to the other workers)",
                    file=sys.stderr,
                )
                told = True
            time.sleep(poll)
            fail_stale()
        except Exception as e:
            if connection_error(e) is None:
                raise
            _recover(study, current.get("trial"), e, reconnect_timeout)


def _run_one(
    study: optuna.Study,
    objective: Callable[[optuna.Trial], Any],
    target: int,
    lock: StudyLock,
    catch: tuple[type[Exception], ...],
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]],
    fail_stale: Callable[[], None],
) -> bool:
    """Take one trial (a waiting one, or a new one while slots are left) and run it, as Optuna's
    ``optimize`` does for one trial; False when there was nothing to take."""
    storage = storage_of(study)
    fail_stale()
    with lock():  # which trial to run is decided under the lock; the lock is held as briefly as can be
        waiting, taken = slots(study)
        if not waiting and taken >= target:
            return False
        if waiting:
            with warnings.catch_warnings():  # Optuna warns that heartbeat is meant for optimize; we run it as it does
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = study.ask()  # pops the waiting trial
            trial_id = trial_id_of(trial)
        else:
            trial_id = storage.create_new_trial(study_id_of(study))
        # the first heartbeat in the same critical section that made the trial RUNNING
        heartbeat.start(storage, trial_id)
    try:
        if not waiting:  # what ask() does past the queue: the sampler then reads fresh trials
            forget_cached_trials(study)
            trial = optuna.Trial(study, trial_id)
        frozen, error, state = _run_trial(study, trial, objective)
    finally:
        heartbeat.stop(storage, trial_id)
    for callback in callbacks:
        callback(study, frozen)
    if error is not None and state == optuna.trial.TrialState.FAIL and not isinstance(error, catch):
        raise error
    return True


def _run_trial(
    study: optuna.Study, trial: optuna.Trial, objective: Callable[[optuna.Trial], Any]
) -> tuple[optuna.trial.FrozenTrial, BaseException | None, optuna.trial.TrialState | None]:
    """Run the objective and tell its outcome, as Optuna's ``optimize`` does for one trial."""
    state, values, error = None, None, None
    try:
        values = objective(trial)
    except optuna.TrialPruned as e:
        state, error = optuna.trial.TrialState.PRUNED, e
    except (Exception, KeyboardInterrupt) as e:
        state, error = optuna.trial.TrialState.FAIL, e
    frozen = tell(study, trial, values, state)
    if state == optuna.trial.TrialState.FAIL:
        _log.warning("trial %d failed: %r", trial.number, error)
    return frozen, error, state


def connection_error(e: BaseException) -> BaseException | None:
    """The lost-connection error behind ``e`` (Optuna wraps SQLAlchemy's errors), or None."""
    import sqlalchemy.exc

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def first_line(e: BaseException) -> str:
    text = str(getattr(e, "orig", None) or e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _recover(study: optuna.Study, trial: tuple[int, int] | None, error: BaseException, timeout: float) -> None:
    """Wait for the storage to answer again, then fail and retry the trial that was cut off."""
    cause = first_line(connection_error(error) or error)
    print(f"lost the connection to the storage ({cause}); reconnecting for up to {timeout:.0f} s", file=sys.stderr)
    storage = storage_of(study)
    backend = backend_of(storage)  # the cache would answer without asking the database
    deadline = time.monotonic() + timeout
    while True:
        try:
            if trial is None:
                backend.get_study_system_attrs(study_id_of(study))  # a round trip: is it back?
                return
            trial_id, number = trial
            state = backend.get_trial(trial_id).state
            if state == optuna.trial.TrialState.RUNNING:  # failed and retried as if its worker had died
                failed = heartbeat.heal(storage, study_id_of(study), lambda: study, trial_ids=[trial_id])
                if failed and storage.get_heartbeat_stale_trial_callback() is not None:
                    print(f"reconnected; trial {number} is retried in its slot", file=sys.stderr)
                return
            if state != optuna.trial.TrialState.FAIL:
                return
            retried = number in heartbeat.retried_numbers(backend.get_all_trials(study_id_of(study), deepcopy=False))
            callback = storage.get_heartbeat_stale_trial_callback() if heartbeat.enabled(storage) else None
            if not retried and callback is not None:
                callback(study, backend.get_trial(trial_id))
                print(f"reconnected; trial {number} is retried in its slot", file=sys.stderr)
            return
        except Exception as e:
            if connection_error(e) is None:
                raise
            if time.monotonic() >= deadline:
                raise NASError(
                    f"lost the connection to the storage for more than {timeout:.0f} s ({first_line(e)}); every "
                    "finished trial is stored: run the same command again once the database is back"
                ) from e
            time.sleep(1.0)


def slots(study: optuna.Study) -> tuple[bool, int]:
    """``(a trial is waiting (enqueued or a retry), slots taken)``.

    Every trial that is not a retry takes one slot of the search (a failed one too: its genotype was
    tried); a retry re-takes the slot of the trial it replaces. Counted in the database where it
    can be (:func:`nas_sampler.rdb.count_slots`): this runs under the lock all workers share."""
    counted = count_slots(study, RETRY_ATTR)
    if counted is None:
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == optuna.trial.TrialState.WAITING for t in trials)
        counted = waiting, sum(1 for t in trials if RETRY_ATTR not in t.system_attrs)
    return counted


def work_left(study: optuna.Study, target: int) -> bool:
    """Whether a worker should start another trial: a trial waiting, or slots left."""
    waiting, taken = slots(study)
    return waiting or taken < target
