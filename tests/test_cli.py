"""The nas-sampler command as a user runs it: exit codes, one-line errors, resume, Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import sqlalchemy

from nas_sampler import cli
from nas_sampler.cli import main
from nas_sampler.errors import ConfigError
from nas_sampler.internals import storage_of, study_id_of, trial_id_of
from nas_sampler.presets import config_from_dict, find_preset

SMALL = ["--preset", "smoke", "--population", "4", "--batch-size", "8"]


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nas_sampler.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_search_front_export_and_resume(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", *SMALL, "--trials", "6"]) == 0
    study = optuna.load_study(study_name="smoke", storage="sqlite:///nas.db")
    assert len([t for t in study.trials if t.state.is_finished()]) >= 6
    assert study.metric_names == ["ntk_cond", "activation", "jacobian"]
    # the cell pictures are stored beside the database
    assert any((tmp_path / "nas-artifacts").iterdir())

    capsys.readouterr()
    assert main(["front", "--study", "smoke", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["trial"] for r in rows} == {t.number for t in study.best_trials}
    assert all(r["genotype"] and r["params"] > 0 for r in rows)

    # the same command again resumes: nothing to do at 6, and goes on when the budget grows
    assert main(["search", *SMALL, "--trials", "6"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["search", *SMALL, "--trials", "8"]) == 0
    done = [t for t in optuna.load_study(study_name="smoke", storage="sqlite:///nas.db").trials if t.values]
    assert len(done) >= 8

    assert main(["export", "--study", "smoke", "--out", "final.json", "--cells", "2"]) == 0
    record = json.loads((tmp_path / "final.json").read_text())
    assert len(record["genotypes"]) == 2 and (tmp_path / "final.pt").exists()
    # the finalists scored again on another batch: still two cells of the study, the rule says how
    assert main(["export", "--study", "smoke", "--out", "again.json", "--cells", "2", "--rescore", "1"]) == 0
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["rule"] == "rank_sum, 1 re-scorings of 10 finalists"
    assert set(again["trials"]) <= {t.number for t in study.trials} and len(again["genotypes"]) == 2


def test_export_chooses_by_the_searchs_reduction_unless_told(tmp_path, capsys, monkeypatch) -> None:
    """A search that ranked survivors by ``search.reduction = "log_rank"`` is exported by the same rule;
    ``--rule`` still chooses another."""
    monkeypatch.chdir(tmp_path)
    preset = tmp_path / "logrank.toml"
    preset.write_text(find_preset("smoke").read_text().replace("[search]", '[search]\nreduction = "log_rank"'))
    assert main(["search", "--preset", str(preset), "--population", "4", "--batch-size", "8", "--trials", "6"]) == 0
    assert main(["export", "--study", "smoke", "--out", "final.json", "--cells", "1"]) == 0
    assert json.loads((tmp_path / "final.json").read_text())["rule"] == "log_rank"
    assert main(["export", "--study", "smoke", "--out", "other.json", "--cells", "1", "--rule", "rank_sum"]) == 0
    assert json.loads((tmp_path / "other.json").read_text())["rule"] == "rank_sum"


def test_resuming_with_other_settings_is_refused(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", *SMALL, "--trials", "4"]) == 0
    before = len(optuna.load_study(study_name="smoke", storage="sqlite:///nas.db").trials)
    capsys.readouterr()
    assert main(["search", *SMALL, "--trials", "8", "--seed", "7"]) == 2  # other settings: a bad argument
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "study.seed: stored 0, given 7" in err
    assert len(optuna.load_study(study_name="smoke", storage="sqlite:///nas.db").trials) == before
    assert main(["search", "--preset", "smoke", "--space", "nb201", "--trials", "8"]) == 2
    assert "space" in capsys.readouterr().err
    assert main(["search", *SMALL, "--trials", "8", "--mode", "async"]) == 2  # a study made before --mode: generational
    assert 'search.mode: stored "generational", given "async"' in capsys.readouterr().err


def test_a_parameter_budget_from_the_command_line(tmp_path, capsys, monkeypatch) -> None:
    """``--max-params``: every trial carries the constraint, the study records the budget (so a worker and
    a resumed search use it, and another budget is refused), and front and export keep to it."""
    monkeypatch.chdir(tmp_path)
    budget = 25_000  # the smoke cells here have about 17,000 to 72,000 parameters
    assert main(["search", *SMALL, "--trials", "8", "--max-params", str(budget)]) == 0
    study = optuna.load_study(study_name="smoke", storage="sqlite:///nas.db")
    done = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(done) == 8
    assert all(t.constraints == {"params": float(t.user_attrs["params"] - budget)} for t in done)
    assert 0 < sum(t.user_attrs["params"] <= budget for t in done) < 8  # both kinds: the budget decides
    stored = study.user_attrs["nas_sampler:config"]
    assert stored["search"]["max_params"] == budget
    assert cli.build_search(config_from_dict(stored))[0].max_params == budget  # what a worker builds

    capsys.readouterr()
    assert main(["front", "--study", "smoke", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and all(r["params"] <= budget for r in rows)
    assert main(["front", "--study", "smoke"]) == 0
    within = sum(t.user_attrs["params"] <= budget for t in done)
    assert f"{len(rows)} trials on the Pareto front of 8 ({within} within the constraints)" in capsys.readouterr().out
    assert main(["export", "--study", "smoke", "--out", "final.json", "--cells", "1"]) == 0
    (trial,) = json.loads((tmp_path / "final.json").read_text())["trials"]
    assert study.trials[trial].user_attrs["params"] <= budget

    capsys.readouterr()  # resuming with another budget, or none, is another search: refused like --seed
    assert main(["search", *SMALL, "--trials", "10", "--max-params", "30000"]) == 2
    assert f"search.max_params: stored {budget}, given 30000" in capsys.readouterr().err
    assert main(["search", *SMALL, "--trials", "10"]) == 2
    assert f"search.max_params: stored {budget}, given null" in capsys.readouterr().err
    assert main(["search", *SMALL, "--trials", "10", "--max-params", "0"]) == 2
    assert "search.max_params = 0 is invalid: give a positive integer" in capsys.readouterr().err

    # a budget no network meets: front and export say the smallest found and what to do
    assert main(["search", *SMALL, "--study", "tiny", "--trials", "4", "--max-params", "10"]) == 0
    capsys.readouterr()
    assert main(["front", "--study", "tiny"]) == 0
    out = capsys.readouterr().out
    assert "no completed trial within its parameter budget" in out and "the budget is 10 (max_params)" in out
    assert main(["export", "--study", "tiny", "--out", "none.json"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the smallest network found has" in err
    assert "--trials or --generations" in err and "a larger --max-params" in err
    assert not (tmp_path / "none.json").exists()


def test_async_mode_from_the_command_line(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["search", *SMALL, "--trials", "6", "--mode", "async"]) == 0
    study = optuna.load_study(study_name="smoke", storage="sqlite:///nas.db")
    assert storage_of(study).get_study_system_attrs(study_id_of(study))["GeneticCellSampler:config"]["mode"] == "async"
    assert len(study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 6
    assert main(["search", "--preset", "smoke", "--mode", "async", "--tournament-every", "2"]) == 2
    assert "search.mode = 'async' has no generation boundary" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, code, words",
    [
        (["search", "--population", "0"], 2, ["search.population = 0"]),
        (["search", "--preset", "nope"], 2, ["preset 'nope' not found", "smoke"]),
        (["search", "--ntk-mode", "slow"], 2, []),  # argparse's own message
        (["front", "--study", "missing"], 2, ["no database at", "nothing was created"]),
        (["front", "--storage", "sqlite:///not-a-db.txt"], 1, ["not a SQLite database"]),
        (["front", "--storage", "postgresql+psycopg2://postgres@127.0.0.1:1/x"], 1, ["cannot open storage"]),
        (["front", "--storage", "sqlte:///x.db"], 1, ["cannot open storage 'sqlte:///x.db'"]),
        (["search", "--data", "no/such/folder", "--trials", "1"], 2, ["no/such/folder"]),
        (["search", "--storage", "journal.log", "--trials", "1"], 2, ["JournalStorage", "sqlite:///FILE"]),
        (["worker", "--storage", "grpc://127.0.0.1:13000", "--study", "s"], 2, ["GrpcStorageProxy", "postgresql"]),
        (["front", "--storage", "notaurl"], 2, ["'notaurl' is not a storage URL"]),
    ],
)
def test_errors_are_one_line_with_exit_codes(tmp_path, capsys, monkeypatch, argv, code, words) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "not-a-db.txt").write_text("hello")
    with pytest.raises(SystemExit) if code == 2 and not words else _nothing() as exc:
        assert main(argv) == code
    if exc is not None:
        assert exc.value.code == 2
        return
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nas-sampler: error:"), err
    for w in words:
        assert w in err[0]
    assert "Traceback" not in err[0]


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_debug_shows_the_traceback(tmp_path, monkeypatch) -> None:
    r = _run("--debug", "front", "--study", "missing", cwd=tmp_path)  # no nas.db here: a bad argument
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_every_command_has_help(tmp_path) -> None:
    for cmd in ("search", "worker", "front", "export", "train", "dashboard", "studies"):
        r = _run(cmd, "--help", cwd=tmp_path)
        assert r.returncode == 0 and "usage: nas-sampler" in r.stdout, cmd
    r = _run("studies", cwd=tmp_path)
    assert "smoke" in r.stdout and "nb201-cifar10" in r.stdout


def test_ctrl_c_stops_after_the_running_trial_and_says_how_to_resume(tmp_path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "nas_sampler.cli", "search", *SMALL, "--trials", "40"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    db = tmp_path / "nas.db"
    deadline = time.time() + 300
    while time.time() < deadline:
        time.sleep(1)
        if db.exists():
            try:
                study = optuna.load_study(study_name="smoke", storage=f"sqlite:///{db}")
                if len([t for t in study.trials if t.values]) >= 2:
                    break
            except (KeyError, sqlalchemy.exc.OperationalError):  # not yet created, or the search creating its tables
                pass
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Resume with" in err and "nas-sampler search --preset smoke" in err
    states = [t.state for t in optuna.load_study(study_name="smoke", storage=f"sqlite:///{db}").trials]
    assert optuna.trial.TrialState.RUNNING not in states and optuna.trial.TrialState.FAIL not in states
    assert states.count(optuna.trial.TrialState.COMPLETE) < 40


def test_a_larger_budget_is_recorded_so_every_worker_follows_it(tmp_path, capsys, monkeypatch) -> None:
    """``search --trials 12`` on a finished 8-trial study records 12 in the study: a ``worker`` joining
    it (which has no budget flags: it reads the study's settings) searches to 12 too."""
    monkeypatch.chdir(tmp_path)
    assert main(["search", *SMALL, "--trials", "8"]) == 0
    assert main(["search", *SMALL, "--trials", "4"]) == 0  # a smaller budget: nothing to do, and it is not recorded
    budget = lambda: optuna.load_study(study_name="smoke", storage="sqlite:///nas.db").user_attrs[  # noqa: E731
        "nas_sampler:config"
    ]["search"]["trials"]
    assert budget() == 8
    monkeypatch.setattr(cli, "run_trials", lambda *a, **k: None)  # the extending search records, then runs nothing
    main(["search", *SMALL, "--trials", "12"])
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert budget() == 12
    capsys.readouterr()
    assert main(["worker", "--storage", "sqlite:///nas.db", "--study", "smoke"]) == 0
    assert "8/12 trials finished" in capsys.readouterr().err
    done = optuna.load_study(study_name="smoke", storage="sqlite:///nas.db").get_trials(
        states=(optuna.trial.TrialState.COMPLETE,)
    )
    assert len(done) == 12


def test_every_worker_and_the_dashboard_use_the_folder_of_pictures_the_study_records(
    tmp_path, monkeypatch, postgres_server
) -> None:
    """On PostgreSQL there is no database file to put pictures beside: the first search records its
    folder (absolute) in the study; a worker started in another folder adds its pictures there, and
    the dashboard, started in a third, serves them from there."""
    name = f"pictures_{tmp_path.name}"
    first, other, third = (tmp_path / d for d in ("first", "other", "third"))
    for d in (first, other, third):
        d.mkdir()
    monkeypatch.chdir(first)
    assert main(["search", *SMALL, "--storage", postgres_server, "--study", name, "--trials", "4"]) == 0
    study = optuna.load_study(study_name=name, storage=postgres_server)
    folder = Path(study.user_attrs["nas_sampler:artifacts"])
    assert folder == first / "nas-artifacts" and len(list(folder.iterdir())) >= 4

    monkeypatch.setattr(cli, "run_trials", lambda *a, **k: None)
    main(["search", *SMALL, "--storage", postgres_server, "--study", name, "--trials", "8"])  # records 8
    monkeypatch.undo()
    monkeypatch.chdir(other)
    assert main(["worker", "--storage", postgres_server, "--study", name]) == 0
    assert not (other / "nas-artifacts").exists()
    assert len(list(folder.iterdir())) >= 8  # the worker's pictures are beside the first ones

    monkeypatch.chdir(third)
    storage = optuna.storages.RDBStorage(postgres_server)
    assert cli.dashboard_artifact_dir(storage, None, postgres_server) == folder
    # a search that names another folder for the same study is refused, nothing written
    with pytest.raises(ConfigError, match="keeps its cell pictures in"):
        cli.run_search(
            cli.config_from_dict(
                {**study.user_attrs["nas_sampler:config"], "storage": {"artifact_dir": str(third / "elsewhere")}},
                source="test",
            ),
            "resume",
            create=False,
        )
    assert not (third / "elsewhere").exists()


def test_ctrl_c_in_the_final_wait_is_a_stop_not_done(tmp_path, monkeypatch) -> None:
    """With no slots left a worker waits for other workers' trials; Ctrl-C there exits 130 with the
    resume line (it once printed "done" and exited 0 with a trial unfinished)."""
    monkeypatch.chdir(tmp_path)
    assert main(["search", *SMALL, "--trials", "4"]) == 0  # generation 0 (population 4) complete
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'nas.db'}", heartbeat_interval=30)
    other = optuna.load_study(study_name="smoke", storage=storage).ask()  # another worker's trial, alive
    storage.record_heartbeat(trial_id_of(other))
    proc = subprocess.Popen(  # one slot left: it runs it, then waits for the other worker's trial
        [sys.executable, "-m", "nas_sampler.cli", "search", *SMALL, "--trials", "6"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    err = []
    for line in proc.stderr:  # event-driven: wait for the line that says it is waiting, however long that takes
        err.append(line)
        if "no slots left; waiting for trials" in line:
            break
    proc.send_signal(signal.SIGINT)
    rest_out, rest_err = proc.communicate(timeout=300)
    err = "".join(err) + rest_err
    assert proc.returncode == 130, err
    assert "stopped after" in err and "Resume with" in err and "done:" not in err
