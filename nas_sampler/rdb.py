"""Fast paths over Optuna's RDB storage for what every trial of a many-worker search does.

Optuna stores each ``suggest_*`` in a transaction of its own and re-reads every running trial
(with all its parameters) on each ``get_trials``; with 80 parameters per genotype and several
workers these dominate a trial's overhead on PostgreSQL. The helpers use Optuna's RDB models,
which are not public: where the storage is not an ``RDBStorage`` or the models changed they return
``None``/``False`` and the caller takes Optuna's public path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, distribution_to_json
from optuna.trial import TrialState


@dataclass(frozen=True)
class _RDB:
    storage: Any  # the RDBStorage
    trials: Any  # models.TrialModel
    attrs: Any  # models.TrialSystemAttributeModel
    params: Any  # the trial_params table
    session: Callable[..., Any]  # session(commit=False): Optuna's scoped-session context


def _open(storage: Any) -> _RDB | None:
    """Optuna's RDB models for the ``RDBStorage`` behind ``storage`` (Optuna wraps it in a cache);
    None for another storage, or if the models are not where they were."""
    from optuna.storages import RDBStorage

    backend = getattr(storage, "_backend", storage)
    if not isinstance(backend, RDBStorage):
        return None
    try:
        from optuna.storages._rdb import models
        from optuna.storages._rdb.storage import _create_scoped_session

        return _RDB(
            backend,
            models.TrialModel,
            models.TrialSystemAttributeModel,
            models.TrialParamModel.__table__,
            lambda commit=False: _create_scoped_session(backend.scoped_session, commit),
        )
    except (ImportError, AttributeError):
        return None


def store_params(trial: optuna.Trial, values: dict[str, Any], dists: dict[str, BaseDistribution]) -> bool:
    """Write ``values`` (drawn from ``dists``) as ``trial``'s parameters in one transaction and put
    them on the trial, so the ``suggest_*`` calls that follow find them and write nothing. False
    (nothing written) when the fast path does not apply."""
    db = _open(trial.storage)
    cached = getattr(trial, "_cached_frozen_trial", None)
    if db is None or cached is None:
        return False
    jsons: dict[BaseDistribution, str] = {}  # a space repeats few distributions: encode each once
    rows = []
    for name, dist in dists.items():
        text = jsons.get(dist)
        if text is None:
            text = jsons[dist] = distribution_to_json(dist)
        rows.append(
            {
                "trial_id": trial._trial_id,
                "param_name": name,
                "param_value": dist.to_internal_repr(values[name]),
                "distribution_json": text,
            }
        )
    with db.session(True) as session:
        row = db.trials.find_or_raise_by_id(trial._trial_id, session)
        db.storage.check_trial_is_updatable(trial._trial_id, row.state)
        session.execute(db.params.insert(), rows)  # one multi-row INSERT, not one ORM object per row
    for name, dist in dists.items():
        cached.params[name] = values[name]
        cached.distributions[name] = dist
    return True


def count_slots(study: optuna.Study, retry_attr: str) -> tuple[bool, int] | None:
    """``(a trial is waiting, number of trials not marked with retry_attr)`` in two small queries,
    instead of reading every trial; None when the fast path does not apply."""
    db = _open(study._storage)
    if db is None:
        return None
    T, A, sid = db.trials, db.attrs, study._study_id
    retried = sa.exists().where(A.trial_id == T.trial_id, A.key == retry_attr)
    with db.session() as session:
        waiting = session.query(sa.exists().where(T.study_id == sid, T.state == TrialState.WAITING)).scalar()
        taken = session.query(sa.func.count(T.trial_id)).filter(T.study_id == sid, ~retried).scalar()
    return bool(waiting), int(taken)


def system_attrs(study: optuna.Study, numbers: range) -> dict[int, dict[str, Any]] | None:
    """The system attributes of the trials numbered ``numbers``, without their parameters (a
    running trial is never cached by Optuna, and reading its 80 parameters costs ten times
    more); None when the fast path does not apply or a trial is missing."""
    db = _open(study._storage)
    if db is None:
        return None
    T, A = db.trials, db.attrs
    with db.session() as session:
        rows = session.query(T.number, T.trial_id).filter(
            T.study_id == study._study_id, T.number >= numbers.start, T.number < numbers.stop
        )
        ids = {trial_id: number for number, trial_id in rows}
        found: dict[int, dict[str, Any]] = {number: {} for number in ids.values()}
        if ids:
            for trial_id, key, value in session.query(A.trial_id, A.key, A.value_json).filter(A.trial_id.in_(ids)):
                found[ids[trial_id]][key] = json.loads(value)
    return found if len(found) == len(numbers) else None


def running(study: optuna.Study, numbers: list[int]) -> set[int] | None:
    """Which of the trials numbered ``numbers`` are still RUNNING, in one small query (a poll that
    reads no parameters); None when the fast path does not apply."""
    db = _open(study._storage)
    if db is None:
        return None
    T = db.trials
    with db.session() as session:
        rows = session.query(T.number).filter(
            T.study_id == study._study_id, T.number.in_(numbers), T.state == TrialState.RUNNING
        )
        return {number for (number,) in rows}
