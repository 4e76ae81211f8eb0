"""The one door to Optuna's internals: every use of a private Optuna name in the package is here.

Each accessor has a fast path (a private attribute or model) and a public fallback that gives the
same answer (``tests/test_internals.py`` checks both), so when an Optuna release moves a private
name the package logs it once and goes on, slower, through the public API. Upper bounds on Optuna
in ``pyproject.toml`` keep an untested release from being admitted silently.

**Objects.** A study's storage and id, a trial's id, Optuna's per-thread trial cache, the frozen
copy an ``optuna.Trial`` keeps, and the storage's heartbeat internals.

**RDB fast paths** for what every trial of a many-worker search does. Optuna stores each
``suggest_*`` in a transaction of its own and re-reads every running trial (with all its
parameters) on each ``get_trials``; with 80 parameters per genotype and several workers these
dominate a trial's overhead on PostgreSQL. The helpers use Optuna's RDB models, which are not
public: where the storage is not an ``RDBStorage`` or the models changed they return ``None`` or
``False`` and the caller takes Optuna's public path.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import optuna
import sqlalchemy as sa
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

_log = logging.getLogger(__name__)
_told: set[str] = set()


def _fast_path_off(why: str) -> None:
    """Say once per process that a fast path fell back to Optuna's public API (a private name moved)."""
    if why not in _told:
        _told.add(why)
        _log.warning("nas_sampler.internals: %s; using Optuna's public API instead (slower, same results)", why)


# ---- objects ---------------------------------------------------------------------------------------


def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage. Optuna has no public accessor; a study is always built around one."""
    return study._storage


def study_id_of(study: optuna.Study) -> int:
    found = getattr(study, "_study_id", None)
    if found is None:
        _fast_path_off("a Study has no _study_id")
        return study_id_public(study)
    return int(found)


def study_id_public(study: optuna.Study) -> int:
    return storage_of(study).get_study_id_from_name(study.study_name)


def trial_id_of(trial: optuna.Trial | FrozenTrial) -> int:
    found = getattr(trial, "_trial_id", None)
    if found is None:
        _fast_path_off(f"a {type(trial).__name__} has no _trial_id")
        return trial_id_public(trial)
    return int(found)


def trial_id_public(trial: optuna.Trial | FrozenTrial) -> int:
    study = getattr(trial, "study", None)
    if study is None:
        raise TypeError(f"the id of a detached {type(trial).__name__} is not known: pass the optuna.Trial")
    return storage_of(study).get_trial_id_from_study_id_trial_number(study_id_of(study), trial.number)


def cached_trials(study: optuna.Study) -> list[FrozenTrial]:
    """All trials, from the cache Optuna keeps for the current trial of this thread (read once per
    ``ask``) when it can; else read afresh."""
    get = getattr(study, "_get_trials", None)
    if get is None:
        _fast_path_off("a Study has no _get_trials")
        return study.get_trials(deepcopy=False)
    return get(deepcopy=False, use_cache=True)


def forget_cached_trials(study: optuna.Study) -> None:
    """Drop that cache, as ``ask`` does, so the next read is fresh."""
    local = getattr(study, "_thread_local", None)
    if local is not None:
        local.cached_all_trials = None


def frozen_trial_of(trial: optuna.Trial) -> FrozenTrial:
    """The frozen copy an ``optuna.Trial`` keeps of itself (updated as it suggests); read from the
    storage when it has none."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    if cached is None:
        _fast_path_off("an optuna.Trial has no _cached_frozen_trial")
        return frozen_trial_public(trial)
    return cached


def frozen_trial_public(trial: optuna.Trial) -> FrozenTrial:
    return storage_of(trial.study).get_trial(trial_id_of(trial))


def backend_of(storage: BaseStorage) -> BaseStorage:
    """The storage behind Optuna's in-process cache (``_CachedStorage``), which would answer some
    reads without asking the database."""
    return getattr(storage, "_backend", storage)


def heartbeat_enabled(storage: BaseStorage) -> bool:
    """Whether ``storage`` records heartbeats (Optuna's own test, else: it has an interval)."""
    try:
        from optuna.storages._heartbeat import is_heartbeat_enabled
    except ImportError:
        _fast_path_off("optuna.storages._heartbeat moved")
        return heartbeat_enabled_public(storage)
    return is_heartbeat_enabled(storage)


def heartbeat_enabled_public(storage: BaseStorage) -> bool:
    interval = getattr(storage, "get_heartbeat_interval", None)
    return callable(getattr(storage, "record_heartbeat", None)) and interval is not None and interval() is not None


def optuna_stale_trial_ids(storage: BaseStorage, study_id: int) -> list[int]:
    """Optuna's own rule: RUNNING trials whose last heartbeat is older than the grace period."""
    backend = backend_of(storage)
    if not heartbeat_enabled(backend):
        return []
    own = getattr(optuna.storages.RDBStorage, "_get_stale_trial_ids", None)
    if isinstance(backend, optuna.storages.RDBStorage) and own is not None:
        return list(own(backend, study_id))  # Optuna's rule, not FastRDBStorage's wider one
    found = getattr(backend, "_get_stale_trial_ids", None)
    if found is None:
        raise NotImplementedError(
            f"{type(backend).__name__} gives no stale trials; Optuna {optuna.__version__} moved _get_stale_trial_ids"
        )
    return list(found(study_id))


# ---- RDB fast paths --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RDB:
    storage: Any  # the RDBStorage
    trials: Any  # models.TrialModel
    attrs: Any  # models.TrialSystemAttributeModel
    params: Any  # the trial_params table
    session: Callable[..., Any]  # session(commit=False): Optuna's scoped-session context
    models: Any  # optuna.storages._rdb.models


def _open(storage: Any) -> _RDB | None:
    """Optuna's RDB models for the ``RDBStorage`` behind ``storage`` (Optuna wraps it in a cache);
    None for another storage, or if the models are not where they were."""
    from optuna.storages import RDBStorage

    backend = backend_of(storage)
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
            models,
        )
    except (ImportError, AttributeError) as e:
        _fast_path_off(f"Optuna {optuna.__version__}'s RDB models are not where they were ({e})")
        return None


def store_params(
    storage: BaseStorage,
    cached: FrozenTrial,
    values: dict[str, Any],
    dists: dict[str, BaseDistribution],
    user_attrs: dict[str, Any] | None = None,
    system_attrs: dict[str, Any] | None = None,
) -> bool:
    """Write ``values`` (drawn from ``dists``) as the running trial's parameters, with ``user_attrs``
    and ``system_attrs``, in one transaction, and put them on ``cached`` (the copy an ``optuna.Trial``
    reads), so the ``suggest_*`` and ``set_user_attr`` calls that follow find them and write nothing.
    False (nothing written) when the fast path does not apply."""
    db = _open(storage)
    if db is None or ((user_attrs or system_attrs) and _upsert_of(db) is None):
        return False
    trial_id = trial_id_of(cached)
    jsons: dict[BaseDistribution, str] = {}  # a space repeats few distributions: encode each once
    rows = []
    for name, dist in dists.items():
        text = jsons.get(dist)
        if text is None:
            text = jsons[dist] = distribution_to_json(dist)
        rows.append(
            {
                "trial_id": trial_id,
                "param_name": name,
                "param_value": dist.to_internal_repr(values[name]),
                "distribution_json": text,
            }
        )
    with db.session(True) as session:
        row = db.trials.find_or_raise_by_id(trial_id, session)
        db.storage.check_trial_is_updatable(trial_id, row.state)
        if rows:
            session.execute(db.params.insert(), rows)  # one multi-row INSERT, not one ORM object per row
        _write_attrs(db, session, trial_id, db.models.TrialUserAttributeModel, user_attrs or {})
        _write_attrs(db, session, trial_id, db.attrs, system_attrs or {})
    for name, dist in dists.items():
        cached.params[name] = values[name]
        cached.distributions[name] = dist
    cached.user_attrs.update(user_attrs or {})
    cached.system_attrs.update(system_attrs or {})
    return True


def set_trial_attrs(
    storage: BaseStorage, trial_id: int, system: dict[str, Any], user: dict[str, Any] | None = None
) -> None:
    """Set a running trial's system and user attributes in one transaction where the storage allows
    (one check of its state, one upsert per table), else by Optuna's calls, one transaction each."""
    db = _open(storage)
    if db is None or _upsert_of(db) is None:
        for key, value in system.items():
            storage.set_trial_system_attr(trial_id, key, value)
        for key, value in (user or {}).items():
            storage.set_trial_user_attr(trial_id, key, value)
        return
    with db.session(True) as session:
        row = db.trials.find_or_raise_by_id(trial_id, session)
        db.storage.check_trial_is_updatable(trial_id, row.state)
        _write_attrs(db, session, trial_id, db.attrs, system)
        _write_attrs(db, session, trial_id, db.models.TrialUserAttributeModel, user or {})


def _upsert_of(db: _RDB) -> Callable[..., Any] | None:
    """The dialect's INSERT with ON CONFLICT (the attribute tables are unique on trial and key), or
    None where SQLAlchemy has none here (MySQL says it otherwise: Optuna's path)."""
    name = db.storage.engine.dialect.name
    if name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        return None
    return insert


def _write_attrs(db: _RDB, session: Any, trial_id: int, model: Any, attrs: dict[str, Any]) -> None:
    rows = [{"trial_id": trial_id, "key": key, "value_json": json.dumps(value)} for key, value in attrs.items()]
    _upsert(db, session, model, rows, ("trial_id", "key"))


def _upsert(db: _RDB, session: Any, model: Any, rows: list[dict[str, Any]], unique: tuple[str, ...]) -> None:
    """``rows`` into ``model``'s table in one statement, a row whose ``unique`` columns exist replacing
    its other columns (callers have checked that the dialect has an upsert: :func:`_upsert_of`)."""
    if not rows:
        return
    statement = _upsert_of(db)(model).values(rows)
    replaced = {c: statement.excluded[c] for c in rows[0] if c not in unique}
    session.execute(statement.on_conflict_do_update(index_elements=list(unique), set_=replaced))


def _finish(storage: BaseStorage, trial_id: int, state: TrialState, values: list[float] | None) -> None:
    """Optuna's ``set_trial_state_values`` for a finishing trial in three statements where the storage
    allows (the trial locked and checked, its values in one upsert, its state), not one per value."""
    db = _open(storage)
    if db is None or _upsert_of(db) is None or not state.is_finished():
        storage.set_trial_state_values(trial_id, state, values)
        return
    V = db.models.TrialValueModel
    rows = []
    for objective, v in enumerate(values or []):
        stored, kind = V.value_to_stored_repr(v)
        rows.append({"trial_id": trial_id, "objective": objective, "value": stored, "value_type": kind})
    with db.session(True) as session:
        row = db.trials.find_or_raise_by_id(trial_id, session, for_update=True)
        db.storage.check_trial_is_updatable(trial_id, row.state)
        _upsert(db, session, V, rows, ("trial_id", "objective"))
        row.state = state
        row.datetime_complete = datetime.now()


def tell(study: optuna.Study, trial: optuna.Trial, values: Any = None, state: TrialState | None = None) -> FrozenTrial:
    """``study.tell(trial, values, state=state, skip_if_finished=True)``, and the finished trial it
    returns, without the second read of the trial that ``tell`` makes after storing the outcome (a
    sixth of a worker's statements per trial). The outcome stored, the sampler's ``after_trial`` call
    and the warning for values that cannot be stored are Optuna's; where Optuna's checks moved,
    ``study.tell`` itself answers."""
    try:
        from optuna import pruners
        from optuna.study._tell import _check_state_and_values, _check_values_are_feasible
    except ImportError as e:
        _fast_path_off(f"Optuna {optuna.__version__}'s tell helpers are not where they were ({e})")
        return study.tell(trial, values, state=state, skip_if_finished=True)
    forget_cached_trials(study)  # as tell does: the cache is only valid within a trial
    frozen = storage_of(study).get_trial(trial_id_of(trial))
    if frozen.state.is_finished():
        return copy.deepcopy(frozen)
    if frozen.state != TrialState.RUNNING:
        raise ValueError(f"Cannot tell a {frozen.state.name} trial.")
    told = None if values is None else list(values) if isinstance(values, Sequence) else [values]
    _check_state_and_values(state, told)
    if state is None:
        problem = "The value None could not be cast to float." if told is None else None
        problem = problem or _check_values_are_feasible(study, told or [])
        state = TrialState.FAIL if problem else TrialState.COMPLETE
        if problem:
            told = None
            warnings.warn(problem, stacklevel=2)
    elif state == TrialState.PRUNED and frozen.last_step is not None:
        last = frozen.intermediate_values[frozen.last_step]
        told = [last] if _check_values_are_feasible(study, [last]) is None else None
    told = None if told is None else [float(v) for v in told]
    try:
        study.sampler.after_trial(pruners._filter_study(study, frozen), frozen, state, told)
    finally:
        _finish(storage_of(study), trial_id_of(trial), state, told)
    finished = copy.deepcopy(frozen)  # after_trial may have noted attributes on ``frozen`` as it stored them
    finished.state, finished.values, finished.datetime_complete = state, told, datetime.now()
    return finished


def count_slots(study: optuna.Study, retry_attr: str) -> tuple[bool, int] | None:
    """``(a trial is waiting, number of trials not marked with retry_attr)`` in two small queries,
    instead of reading every trial; None when the fast path does not apply."""
    db = _open(storage_of(study))
    if db is None:
        return None
    T, A, sid = db.trials, db.attrs, study_id_of(study)
    retried = sa.exists().where(A.trial_id == T.trial_id, A.key == retry_attr)
    with db.session() as session:
        waiting = session.query(sa.exists().where(T.study_id == sid, T.state == TrialState.WAITING)).scalar()
        taken = session.query(sa.func.count(T.trial_id)).filter(T.study_id == sid, ~retried).scalar()
    return bool(waiting), int(taken)


def system_attrs(study: optuna.Study, numbers: range) -> dict[int, dict[str, Any]] | None:
    """The system attributes of the trials numbered ``numbers``, without their parameters (a
    running trial is never cached by Optuna, and reading its 80 parameters costs ten times
    more); None when the fast path does not apply or a trial is missing."""
    db = _open(storage_of(study))
    if db is None:
        return None
    T, A = db.trials, db.attrs
    with db.session() as session:
        rows = session.query(T.number, T.trial_id).filter(
            T.study_id == study_id_of(study), T.number >= numbers.start, T.number < numbers.stop
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
    db = _open(storage_of(study))
    if db is None:
        return None
    T = db.trials
    with db.session() as session:
        rows = session.query(T.number).filter(
            T.study_id == study_id_of(study), T.number.in_(numbers), T.state == TrialState.RUNNING
        )
        return {number for (number,) in rows}


def read_trials(study: optuna.Study, start: int, also: list[int]) -> list[FrozenTrial] | None:
    """The trials numbered ``start`` or more, or in ``also``, equal to what Optuna's ``get_trials``
    returns for them, in six small Core queries: Optuna's ORM read builds an object per parameter and
    decodes each distribution twice, which for a generation of 80-parameter trials is the largest
    cost at a generation boundary. None when the fast path does not apply."""
    db = _open(storage_of(study))
    if db is None:
        return None
    T = db.trials
    wanted = T.number >= start
    if also:
        wanted = sa.or_(wanted, T.number.in_(also))
    return _read(db, sa.and_(T.study_id == study_id_of(study), wanted))


def silent_trials(storage: Any, study_id: int, grace_period: float) -> list[int] | None:
    """Ids of the study's RUNNING trials that have no heartbeat record and started more than
    ``grace_period`` seconds ago: their worker died before its first heartbeat, and Optuna's stale
    check (which only compares heartbeats) would never fail them. None when the fast path does not apply."""
    db = _open(storage)
    if db is None:
        return None
    T, H = db.trials, getattr(db.models, "TrialHeartbeatModel", None)
    start_utc = getattr(T, "_datetime_start_utc", None)
    if H is None or start_utc is None:
        _fast_path_off(f"Optuna {optuna.__version__}'s trials or heartbeats table moved")
        return None
    cutoff = datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(seconds=grace_period)
    beaten = sa.exists().where(H.trial_id == T.trial_id)
    with db.session() as session:
        rows = session.query(T.trial_id).filter(
            T.study_id == study_id, T.state == TrialState.RUNNING, ~beaten, start_utc < cutoff
        )
        return [trial_id for (trial_id,) in rows]


class FastRDBStorage(optuna.storages.RDBStorage):
    """Optuna's ``RDBStorage`` whose ``get_trial`` reads through :func:`read_trials`' Core queries.

    ``study.tell`` reads the trial twice and ``optuna.Trial`` once: with 80 parameters that is most
    of a worker's storage time on PostgreSQL. A trial this storage has just created is not read
    back at all: ``optuna.Trial``'s read right after ``ask`` or the worker's create gets the copy
    made at creation (nothing can have written to a new trial yet), once. The answers are the same
    as Optuna's (tested); where the fast path does not apply, Optuna's own read answers."""

    def _create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> FrozenTrial:
        frozen = super()._create_new_trial(study_id, template_trial)
        if template_trial is None:  # a new RUNNING trial, as Optuna would read it back
            created = self.__dict__.setdefault("_created", {})
            if len(created) > 64:  # never read back (an error in between): do not keep them
                created.clear()
            created[frozen._trial_id] = copy.deepcopy(frozen)
        return frozen

    def get_trial(self, trial_id: int) -> FrozenTrial:
        fresh = self.__dict__.get("_created", {}).pop(trial_id, None)
        if fresh is not None:
            return fresh
        db = _open(self)
        found = None if db is None else _read(db, db.trials.trial_id == trial_id)
        return found[0] if found else super().get_trial(trial_id)  # [] : Optuna's error for a missing trial

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:  # noqa: PLW3201  (Optuna's hook)
        """Optuna's stale trials plus the RUNNING ones that never had a heartbeat (see
        :mod:`nas_sampler.heartbeat`), so Optuna's own ``fail_stale_trials`` heals them too. With
        nas-sampler's retry callback they are healed here, retry first (``heartbeat.heal``), and none
        is left for Optuna to fail: its order, fail then retry, loses the retry to a kill in between."""
        from nas_sampler import heartbeat

        if isinstance(self.get_heartbeat_stale_trial_callback(), heartbeat.RetryKilledTrial):
            name = self.get_study_name_from_id(study_id)
            heartbeat.heal(self, study_id, lambda: optuna.load_study(study_name=name, storage=self))
            return []
        return heartbeat.stale_trial_ids(self, study_id)


def _read(db: _RDB, condition: Any) -> list[FrozenTrial] | None:
    """The trials matching ``condition`` (on the trials table), built as Optuna builds them; None
    when Optuna's columns are not where they were."""
    m, T = db.models, db.trials
    start_utc, complete_utc = getattr(T, "_datetime_start_utc", None), getattr(T, "_datetime_complete_utc", None)
    if start_utc is None or complete_utc is None:  # the columns moved: Optuna's read
        _fast_path_off(f"Optuna {optuna.__version__}'s trials table has no UTC start and complete columns")
        return None

    def local(prop: property, column: str, value: Any) -> Any:  # Optuna's own UTC-to-local conversion
        return prop.fget(SimpleNamespace(**{column: value}))  # type: ignore[misc]

    with db.session() as session:
        rows = session.execute(
            sa.select(T.trial_id, T.number, T.state, start_utc, complete_utc).where(condition).order_by(T.number)
        ).all()

        read = {r.trial_id for r in rows}

        def of(model: Any, *columns: str, order: Any = None) -> list[Any]:
            if not rows:
                return []
            query = (  # joined on the same condition: no list of ids (SQLite limits a statement's variables)
                sa.select(model.trial_id, *(getattr(model, c) for c in columns))
                .join(T, T.trial_id == model.trial_id)
                .where(condition)
            )
            # the queries are not one snapshot: rows of a trial another worker created since the first
            # query belong to no trial read here; that trial is read next time
            return [r for r in session.execute(query if order is None else query.order_by(order)) if r[0] in read]

        P = m.TrialParamModel
        params = of(P, "param_name", "param_value", "distribution_json", order=P.param_id)
        values = of(m.TrialValueModel, "objective", "value", "value_type")
        user = of(m.TrialUserAttributeModel, "key", "value_json")
        system = of(db.attrs, "key", "value_json")
        steps = of(m.TrialIntermediateValueModel, "step", "intermediate_value", "intermediate_value_type")
    fields: dict[int, dict[str, Any]] = {
        r.trial_id: {"params": {}, "distributions": {}, "values": {}, "user": {}, "system": {}, "steps": {}}
        for r in rows
    }
    decoded: dict[str, BaseDistribution] = {}  # a space repeats few distributions: decode each once
    for trial_id, name, value, text in params:
        dist = decoded.get(text)
        if dist is None:
            dist = decoded[text] = json_to_distribution(text)
        fields[trial_id]["params"][name] = dist.to_external_repr(value)
        fields[trial_id]["distributions"][name] = dist
    for trial_id, objective, value, kind in values:
        fields[trial_id]["values"][objective] = m.TrialValueModel.stored_repr_to_value(value, kind)
    for trial_id, key, text in user:
        fields[trial_id]["user"][key] = json.loads(text)
    for trial_id, key, text in system:
        fields[trial_id]["system"][key] = json.loads(text)
    for trial_id, step, value, kind in steps:
        fields[trial_id]["steps"][step] = m.TrialIntermediateValueModel.stored_repr_to_intermediate_value(value, kind)
    out = []
    for r in rows:
        f = fields[r.trial_id]
        out.append(
            FrozenTrial(
                number=r.number,
                state=r.state,
                value=None,
                values=[f["values"][k] for k in sorted(f["values"])] or None,
                datetime_start=local(T.datetime_start, "_datetime_start_utc", r[3]),
                datetime_complete=local(T.datetime_complete, "_datetime_complete_utc", r[4]),
                params=f["params"],
                distributions=f["distributions"],
                user_attrs=f["user"],
                system_attrs=f["system"],
                intermediate_values=f["steps"],
                trial_id=r.trial_id,
            )
        )
    return out
