"""Bad input the other test files do not cover, met where a user meets it: through the command
(one ``nas-sampler: error:`` line naming the value and what to do, nothing stored is lost) or, for
scoring, through ``score_all`` and the objective (out of memory: smaller chunks, then a failed trial
with its reason while the search goes on).

Covered elsewhere (not repeated here): unknown operation / space (test_space, test_presets), malformed
genotype strings and parser fuzzing (test_genotype), genotypes that do not fit the space
(test_genotype, test_space), unreachable or misspelled storage URLs, a missing study for ``front``, a
non-SQLite file, other settings on resume (test_cli), data folders and offline downloads (test_data),
NaN and degenerate scores (test_objective).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from PIL import Image

from nas_sampler import heuristics
from nas_sampler.cli import main
from nas_sampler.heuristics import score_all
from nas_sampler.objective import TrainingFreeObjective
from nas_sampler.space import NB201Space

optuna.logging.set_verbosity(optuna.logging.WARNING)
SMALL = ["--preset", "smoke", "--population", "4", "--batch-size", "8"]


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("nas-sampler:")]
    assert len(err) == 1 and err[0].startswith("nas-sampler: error:"), err
    return err[0]


def _tables(path: Path) -> dict[str, int]:
    with sqlite3.connect(path) as con:
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


# ---- storage --------------------------------------------------------------------------------


def test_sqlite_file_of_another_program_is_refused_and_left_alone(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        con.execute("INSERT INTO users (name) VALUES ('ada'), ('alan')")
    before = _tables(db)
    for argv in (["front", "--storage", f"sqlite:///{db}"], ["search", *SMALL, "--storage", f"sqlite:///{db}"]):
        assert main(argv) == 1
        line = _one_error_line(capsys)
        assert str(db) in line and "something else" in line and "users" in line and "--storage" in line
    assert _tables(db) == before  # Optuna did not add its tables to it


def test_damaged_sqlite_file_is_one_clear_error(tmp_path, capsys) -> None:
    db = tmp_path / "nas.db"
    optuna.create_study(storage=f"sqlite:///{db}", study_name="s")
    data = bytearray(db.read_bytes())
    data[100:] = b"\xff" * (len(data) - 100)  # the header survives, the pages do not
    db.write_bytes(bytes(data))
    assert main(["front", "--storage", f"sqlite:///{db}", "--study", "s"]) == 1
    line = _one_error_line(capsys)
    assert str(db) in line and ("damaged" in line or "cannot open storage" in line)


def test_missing_postgresql_database_names_it(postgres_server, capsys) -> None:
    url = postgres_server.rsplit("/", 1)[0] + "/no_such_database_" + uuid.uuid4().hex[:6]
    assert main(["front", "--storage", url]) == 1
    line = _one_error_line(capsys)
    assert "cannot open storage" in line and "no_such_database_" in line and "does not exist" in line


def test_worker_for_a_study_that_does_not_exist(tmp_path, capsys) -> None:
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    optuna.create_study(storage=url, study_name="mine")
    assert main(["worker", "--storage", url, "--study", "mien"]) == 1
    line = _one_error_line(capsys)
    assert "no study named 'mien'" in line and "mine" in line and "nas-sampler search" in line


def test_a_study_with_another_number_of_objectives_is_refused_and_untouched(tmp_path, capsys) -> None:
    """A study made by other code (two objectives) is not taken over by ``nas-sampler search``."""
    url = f"sqlite:///{tmp_path / 'nas.db'}"
    other = optuna.create_study(storage=url, study_name="smoke", directions=["minimize", "maximize"])
    other.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=3)
    assert main(["search", *SMALL, "--storage", url, "--trials", "4"]) == 2  # other settings: a bad argument
    line = _one_error_line(capsys)
    assert "'smoke' has 2 objectives" in line and "3" in line and "--study" in line
    study = optuna.load_study(study_name="smoke", storage=url)
    assert len(study.trials) == 3 and study.user_attrs == {}
    assert main(["worker", "--storage", url, "--study", "smoke"]) == 1  # and no worker can join it
    assert "not created by 'nas-sampler search'" in _one_error_line(capsys)


# ---- data ------------------------------------------------------------------------------------


def test_data_folder_with_the_wrong_layout_stores_nothing(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    flat = tmp_path / "pictures"
    flat.mkdir()
    for i in range(3):
        Image.new("RGB", (8, 8)).save(flat / f"{i}.png")
    assert main(["search", "--data", str(flat), "--trials", "1", "--storage", "sqlite:///nas.db"]) == 2
    line = _one_error_line(capsys)
    assert str(flat) in line and "class subfolders" in line
    assert optuna.get_all_study_names("sqlite:///nas.db") == []  # no half-made study


def test_data_set_that_needs_a_download_names_the_folder_option(tmp_path, capsys, monkeypatch) -> None:
    """The command never downloads: offline or not, a missing data set says where to point --data."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no cached copy under ~/.cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert main(["search", "--data", "cifar10", "--trials", "1"]) == 1
    line = _one_error_line(capsys)
    assert "cifar10" in line and "ImageFolder folder" in line and "'builtin'" in line


# ---- scoring: out of memory ------------------------------------------------------------------


def _net_and_batch() -> tuple[torch.nn.Module, torch.Tensor]:
    space = NB201Space()
    torch.manual_seed(0)
    net = space.scoring_network(
        space.parse("|skip_connect~0|+|nor_conv_1x1~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|")
    )
    return net, torch.randn(8, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_out_of_memory_is_retried_on_smaller_chunks(monkeypatch) -> None:
    net, x = _net_and_batch()
    whole = score_all(net, x, device="cpu")
    real, chunks = heuristics._score, []

    def tight(net, images, want, mode, chunk, params):  # noqa: ANN001 - the private signature
        chunks.append(chunk)
        if chunk > 2:
            raise torch.OutOfMemoryError("out of memory (simulated: more than 2 samples at once)")
        return real(net, images, want, mode, chunk, params)

    monkeypatch.setattr(heuristics, "_score", tight)
    chunked = score_all(net, x, device="cpu")
    assert chunks == [8, 4, 2]
    assert chunked["activation"] == whole["activation"]
    # the Gram matrix is summed in float32 in another order; the condition number amplifies that rounding
    assert chunked["ntk_cond"] == pytest.approx(whole["ntk_cond"], rel=1e-4)
    assert chunked["jacobian"] == pytest.approx(whole["jacobian"], rel=1e-5)


def test_out_of_memory_even_one_sample_at_a_time_fails_the_trial_and_the_search_goes_on(monkeypatch) -> None:
    space = NB201Space()
    objective = TrainingFreeObjective(space, batch_size=8, device="cpu")
    real, chunks = heuristics._score, []
    doomed = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"

    def huge(net, images, want, mode, chunk, params):  # noqa: ANN001
        if sum(p.numel() for p in params) >= too_big:  # only the all-convolution cell is "too big"
            chunks.append(chunk)
            raise torch.OutOfMemoryError("out of memory (simulated)")
        return real(net, images, want, mode, chunk, params)

    too_big = sum(p.numel() for p in objective.build(space.parse(doomed)).parameters())
    monkeypatch.setattr(heuristics, "_score", huge)
    study = optuna.create_study(directions=objective.directions, sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial(space.to_params(space.parse(doomed)))
    study.enqueue_trial(
        space.to_params(space.parse("|skip_connect~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"))
    )
    study.optimize(objective, n_trials=2, catch=objective.catch)
    failed, ok = study.trials
    assert chunks == [8, 4, 2, 1]  # halved down to one sample before giving up
    assert failed.state == optuna.trial.TrialState.FAIL
    assert "OutOfMemoryError" in failed.user_attrs["fail_reason"] and doomed in failed.user_attrs["fail_reason"]
    assert ok.state == optuna.trial.TrialState.COMPLETE
