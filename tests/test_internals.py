"""The one door to Optuna's internals: each fast path answers exactly what its public fallback answers
(object accessors; the RDB fast paths on SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
import dataclasses
import types
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from nas_sampler import internals
from nas_sampler.internals import study_id_of, trial_id_of
from nas_sampler.sampler import RETRY_ATTR


def _mixed_study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    """A study with trials in every state a search sees: complete, failed, running, a retry, waiting."""
    study = optuna.create_study(storage=storage, study_name=f"rdb-{uuid.uuid4().hex[:8]}")
    sid = study_id_of(study)
    done = study.ask()
    done.suggest_int("x", 0, 9)
    done.suggest_float("lr", 1e-4, 1.0, log=True)
    done.report(float("-inf"), 2)
    done.report(0.5, 1)
    done.set_user_attr("genotype", {"cell": [1, 2]})
    study.tell(done, float("inf"))
    failed = study.ask()
    study.tell(failed, state=TrialState.FAIL)
    running = study.ask()
    running.suggest_categorical("op", ["a", "b"])
    storage.set_trial_system_attr(trial_id_of(running), "slot", {"g": 0, "s": 2, "n": running.number})
    retry = storage.create_new_trial(sid)
    storage.set_trial_system_attr(retry, RETRY_ATTR, failed.number)
    study.enqueue_trial({"x": 3})
    return study


def test_fast_paths_equal_optunas_answers(storage_url: str) -> None:
    storage = optuna.storages.RDBStorage(storage_url)
    study = _mixed_study(storage)
    other = _mixed_study(storage)  # a second study in the same database must not leak in
    other.enqueue_trial({"x": 4})
    trials = study.get_trials(deepcopy=False)
    assert [t.state for t in trials] == [
        TrialState.COMPLETE,
        TrialState.FAIL,
        TrialState.RUNNING,
        TrialState.RUNNING,
        TrialState.WAITING,
    ]
    taken = sum(1 for t in trials if RETRY_ATTR not in t.system_attrs)
    assert internals.count_slots(study, RETRY_ATTR) == (True, taken) == (True, 4)
    assert internals.system_attrs(study, range(len(trials))) == {t.number: t.system_attrs for t in trials}
    assert internals.system_attrs(study, range(1, 3)) == {1: trials[1].system_attrs, 2: trials[2].system_attrs}
    assert internals.system_attrs(study, range(3, 9)) is None  # trials 5..8 do not exist: not a partial answer
    assert internals.running(study, list(range(len(trials)))) == {2, 3}
    assert internals.running(study, [0, 1, 4]) == set()
    assert internals.read_trials(study, 0, []) == trials
    fast = internals.FastRDBStorage(storage_url)
    assert [fast.get_trial(trial_id_of(t)) for t in trials] == trials
    with pytest.raises(KeyError):  # Optuna's error for a trial that does not exist
        fast.get_trial(10**9)
    assert internals.read_trials(study, 3, [0]) == [trials[0], *trials[3:]]
    assert internals.read_trials(study, 9, []) == []
    study.tell(study.ask(), 2.0)  # pops the waiting trial
    assert internals.count_slots(study, RETRY_ATTR) == (False, 4)
    assert internals.read_trials(study, 4, [2]) == [study.trials[2], study.trials[4]]


def test_fast_paths_step_aside_for_other_storages() -> None:
    """In memory (or any non-RDB storage) each helper says so, and callers take Optuna's path."""
    study = _mixed_study(optuna.storages.InMemoryStorage())
    assert internals.count_slots(study, RETRY_ATTR) is None
    assert internals.system_attrs(study, range(2)) is None
    assert internals.running(study, [0, 1]) is None
    assert internals.read_trials(study, 0, []) is None
    trial = study.ask()
    dist = optuna.distributions.CategoricalDistribution(["a", "b"])
    cached = internals.frozen_trial_of(trial)
    assert internals.store_params(internals.storage_of(study), cached, {"op": "a"}, {"op": dist}) is False
    assert trial.params == {}


def test_the_worker_counts_slots_the_same_with_and_without_the_fast_path(
    storage_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nas_sampler import worker

    study = _mixed_study(optuna.storages.RDBStorage(storage_url))
    fast = worker.slots(study)
    monkeypatch.setattr(worker, "count_slots", lambda *a: None)
    assert worker.slots(study) == fast == (True, 4)


def test_a_trial_created_during_a_read_is_left_for_the_next_one(storage_url: str, monkeypatch) -> None:
    """``read_trials``' queries are not one snapshot: another worker's trial created between them has
    related rows but no trial row in this read (it made a worker crash with a KeyError once)."""
    storage = optuna.storages.RDBStorage(storage_url)
    study = _mixed_study(storage)
    writer = optuna.storages.RDBStorage(storage_url)  # another worker, its own connections
    before = study.get_trials(deepcopy=False)
    open_db = internals._open

    def racing_open(s):  # noqa: ANN001, ANN202
        db = open_db(s)

        @contextlib.contextmanager
        def session(commit: bool = False):  # noqa: ANN202
            with db.session(commit) as sess:
                execute = sess.execute

                def trials_then_a_new_one(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
                    rows = execute(*args, **kwargs).all()  # fetched: SQLite's read lock is let go
                    out = types.SimpleNamespace(all=lambda: rows)
                    sess.execute = execute
                    new = writer.create_new_trial(study_id_of(study))
                    writer.set_trial_system_attr(new, "slot", {"g": 9})
                    return out

                sess.execute = trials_then_a_new_one
                yield sess

        return dataclasses.replace(db, session=session)

    monkeypatch.setattr(internals, "_open", racing_open)
    assert internals.read_trials(study, 0, []) == before
    monkeypatch.undo()
    assert internals.read_trials(study, 0, [])[-1].system_attrs == {"slot": {"g": 9}}


def test_object_accessors_equal_their_public_fallbacks(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'door.db'}"
    study = optuna.create_study(storage=optuna.storages.RDBStorage(url, heartbeat_interval=5), study_name="door")
    trial = study.ask()
    trial.suggest_int("x", 0, 9)
    assert internals.study_id_of(study) == internals.study_id_public(study)
    assert internals.trial_id_of(trial) == internals.trial_id_public(trial)
    assert internals.frozen_trial_of(trial) == internals.frozen_trial_public(trial)
    assert internals.frozen_trial_of(trial).params == {"x": trial.params["x"]}
    storage = internals.storage_of(study)
    assert internals.heartbeat_enabled(storage) is internals.heartbeat_enabled_public(storage) is True
    plain = optuna.create_study(storage=url, study_name="plain")
    assert internals.heartbeat_enabled(internals.storage_of(plain)) is False
    assert internals.heartbeat_enabled_public(internals.storage_of(plain)) is False
    memory = optuna.create_study().ask()
    assert internals.heartbeat_enabled(memory.storage) is internals.heartbeat_enabled_public(memory.storage) is False
    study.tell(trial, 1.0)
    assert internals.cached_trials(study) == study.get_trials(deepcopy=False)
    internals.forget_cached_trials(study)
    assert internals.cached_trials(study) == study.get_trials(deepcopy=False)


def test_a_moved_private_name_falls_back_to_the_public_answer(tmp_path, caplog) -> None:
    study = optuna.create_study(storage=f"sqlite:///{tmp_path / 'moved.db'}", study_name="moved")
    trial = study.ask()
    expected = (internals.study_id_of(study), internals.trial_id_of(trial))

    class Moved:  # what a Study and a Trial would look like if Optuna renamed its private attributes
        study_name = study.study_name
        _storage = internals.storage_of(study)

    moved_trial = types.SimpleNamespace(number=trial.number, study=Moved())
    with caplog.at_level("WARNING", logger="nas_sampler.internals"):
        assert (internals.study_id_of(Moved()), internals.trial_id_of(moved_trial)) == expected
    assert "public API" in caplog.text


class _Spy(optuna.samplers.RandomSampler):
    """Records what ``after_trial`` was told, to check that the fast ``tell`` tells the sampler as Optuna does."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.told: list[tuple[int, TrialState, list[float] | None]] = []

    def after_trial(self, study, trial, state, values) -> None:  # noqa: ANN001
        self.told.append((trial.number, state, values))


def _outcomes(study: optuna.Study, tell) -> list[optuna.trial.FrozenTrial]:  # noqa: ANN001
    """Each way a worker finishes a trial, told through ``tell``; the finished trials it returned."""
    out = []
    for values, state, report in [
        (1.5, None, None),  # complete
        ([-2.0], None, None),  # complete, the values as a sequence
        (float("nan"), None, None),  # a value that cannot be stored: failed, with Optuna's warning
        (None, TrialState.FAIL, None),  # the objective raised
        (None, TrialState.PRUNED, 0.25),  # pruned after reporting: the last report is its value
    ]:
        trial = study.ask()
        trial.suggest_int("x", 0, 9)
        trial.set_user_attr("genotype", "cell")
        if report is not None:
            trial.report(report, 3)
        with contextlib.ExitStack() as stack:
            if values is not None and values != values:
                stack.enter_context(pytest.warns(UserWarning, match="not acceptable"))
            out.append(tell(study, trial, values, state))
        out.append(tell(study, trial, 9.0, None))  # told again: skipped, the stored outcome returned
    return out


def _same(a: optuna.trial.FrozenTrial, b: optuna.trial.FrozenTrial) -> None:
    assert abs((a.datetime_complete - b.datetime_complete).total_seconds()) < 5
    fields = ("number", "state", "values", "params", "distributions", "user_attrs", "system_attrs")
    fields += ("intermediate_values",)
    assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]


@pytest.mark.parametrize("kind", ["rdb", "memory"])
def test_the_workers_tell_equals_optunas(storage_url: str, kind: str) -> None:
    """``internals.tell`` stores, tells the sampler and returns what ``study.tell`` does, without its re-read."""
    storage = optuna.storages.RDBStorage(storage_url) if kind == "rdb" else optuna.storages.InMemoryStorage()
    studies = [
        optuna.create_study(storage=storage, sampler=_Spy(), study_name=name)
        for name in (f"fast-{uuid.uuid4().hex[:6]}", f"public-{uuid.uuid4().hex[:6]}")
    ]
    fast = _outcomes(studies[0], internals.tell)
    public = _outcomes(studies[1], lambda s, t, v, st: s.tell(t, v, state=st, skip_if_finished=True))
    states = [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.FAIL, TrialState.PRUNED]
    assert [t.state for t in fast[::2]] == states
    for a, b in zip(fast, public, strict=True):
        _same(a, b)
    for a, b in zip(studies[0].get_trials(), studies[1].get_trials(), strict=True):
        _same(a, b)
    stored = studies[0].get_trials()
    for a, b in zip(fast, [t for t in stored for _ in (0, 1)], strict=True):
        _same(a, b)  # what tell returned (the first time and when told again) is what was stored
    assert studies[0].sampler.told == studies[1].sampler.told


def test_attributes_written_together_equal_optunas_one_by_one(storage_url: str) -> None:
    storage = optuna.storages.RDBStorage(storage_url)
    study = optuna.create_study(storage=storage, study_name=f"attrs-{uuid.uuid4().hex[:6]}")
    fast, public = study.ask(), study.ask()
    storage.set_trial_system_attr(trial_id_of(fast), "slot", "old")  # an existing key is replaced
    storage.set_trial_system_attr(trial_id_of(public), "slot", "old")
    system, user = {"slot": {"g": 1, "s": 2}, "generation": 1}, {"lineage": "gen 1 slot 2"}
    internals.set_trial_attrs(storage, trial_id_of(fast), system, user)
    for key, value in system.items():
        storage.set_trial_system_attr(trial_id_of(public), key, value)
    storage.set_trial_user_attr(trial_id_of(public), "lineage", user["lineage"])
    a, b = storage.get_trial(trial_id_of(fast)), storage.get_trial(trial_id_of(public))
    assert (a.system_attrs, a.user_attrs) == (b.system_attrs, b.user_attrs) == (system, user)
    study.tell(fast, 1.0)
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):  # as Optuna refuses a finished trial
        internals.set_trial_attrs(storage, trial_id_of(fast), {"slot": "late"})


def test_a_new_trial_is_not_read_back_but_equals_what_a_read_gives(storage_url: str) -> None:
    fast = internals.FastRDBStorage(storage_url)
    study = optuna.create_study(storage=fast, study_name=f"new-{uuid.uuid4().hex[:6]}")
    study.enqueue_trial({"x": 1})  # a trial made from a template (WAITING) is read back as usual
    waiting, new = study.ask(), study.ask()
    assert new.number == 1 and internals.frozen_trial_of(waiting).state == TrialState.RUNNING
    public = optuna.storages.RDBStorage(storage_url)
    made = fast.create_new_trial(study_id_of(study))
    first = fast.get_trial(made)  # the copy kept at creation
    assert first == public.get_trial(made) == fast.get_trial(made)  # the second one is read
    assert internals.frozen_trial_of(new) == public.get_trial(trial_id_of(new))
    fast.set_trial_user_attr(made, "genotype", "cell")
    assert fast.get_trial(made).user_attrs == {"genotype": "cell"}  # the kept copy is used once only
