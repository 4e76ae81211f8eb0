"""What a new user meets: every bad argument, setting or file is one ``nas-sampler: error:`` line with
exit code 2 (1 is for runtime failures), and nothing stored changes: no database, study, trial or
lock file is created or touched."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from nas_sampler.cli import main

SMOKE = ["--preset", "smoke", "--population", "4", "--batch-size", "8"]


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a finished smoke search (``nas.db``) and its export (``final.json``)."""
    folder = tmp_path_factory.mktemp("searched")
    url = f"sqlite:///{folder / 'nas.db'}"
    assert main(["search", *SMOKE, "--storage", url, "--study", "smoke", "--trials", "4"]) == 0
    assert main(["export", "--storage", url, "--study", "smoke", "--out", str(folder / "final.json")]) == 0
    return folder


def _files(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _inputs(root: Path) -> None:
    """The bad inputs of the table, written into ``root``."""
    bad = root / "corrupt" / "cat"
    bad.mkdir(parents=True)
    for i in range(11):
        Image.new("RGB", (8, 8), (i, 0, 0)).save(bad / f"{i:02d}.jpg")
    (bad / "05.jpg").write_text("not an image")  # one corrupt file among good ones
    (root / "empty").mkdir()
    (root / "badop.toml").write_text('[space]\nkind = "cell"\nops = ["sep_conv_3x3", "warp_drive"]\n')
    (root / "badtype.toml").write_text('[space]\nkind = "cell"\nchannel_choices = 16\n')
    record = json.loads((root / "final.json").read_text())
    (root / "nospace.json").write_text(json.dumps({k: v for k, v in record.items() if k != "space"}))
    (root / "badgenotype.json").write_text(json.dumps({**record, "genotypes": ["|warp_drive:8~0|"]}))
    (root / "noweights.json").write_text(json.dumps({**record, "weights": "gone.pt"}))


DB = "sqlite:///nas.db"
CASES = [
    # (argv, exit code, words the one line holds)
    (["search", *SMOKE, "--storage", DB, "--study", "new", "--data", "corrupt"], 2, ["05.jpg", "cannot be read"]),
    (["search", *SMOKE, "--storage", DB, "--study", "new", "--data", "empty"], 2, ["empty"]),
    (["search", *SMOKE, "--storage", DB, "--study", "new", "--data", "missing"], 2, ["'missing'", "folder"]),
    (["search", "--preset", "badop.toml", "--storage", DB, "--study", "new"], 2, ["'warp_drive'", "register_op"]),
    (["search", "--preset", "badtype.toml", "--storage", DB, "--study", "new"], 2, ["channel_choices = 16", "list"]),
    (["search", *SMOKE, "--storage", DB, "--study", "smoke", "--seed", "9"], 2, ["study.seed", "new --study"]),
    (["export", "--storage", DB, "--study", "smoke", "--trials", "1,abc"], 2, ["--trials '1,abc'", "12,40"]),
    (["export", "--storage", DB, "--study", "smoke", "--rescore", "-1"], 2, ["--rescore -1"]),
    (["train", "nospace.json", "--epochs", "1"], 2, ["'space'", "nas-sampler export"]),
    (["train", "badgenotype.json", "--epochs", "1"], 2, ["warp_drive"]),
    (["front", "--storage", "sqlite:///typo.db"], 2, ["no database", "nothing was created"]),
    (["export", "--storage", "sqlite:///typo.db"], 2, ["no database"]),
    (["worker", "--storage", "sqlite:///typo.db", "--study", "smoke"], 2, ["no database"]),
    # an error names the flag the user typed, not the library's parameter
    (["export", "--storage", DB, "--study", "smoke", "--cells", "0"], 2, ["--cells 0 is invalid"]),
    (["search", *SMOKE, "--storage", DB, "--study", "new", "--population", "1"], 2, ["--population 1 is invalid"]),
    (["train", "final.json", "--epochs", "0"], 2, ["--epochs 0 is invalid"]),
    (["train", "final.json", "--epochs", "1", "--test-subset", "0"], 2, ["--test-subset 0 is invalid"]),
    # advice in the command line's words, not the library's (rule='rank_sum', weights=False)
    (["export", "--storage", DB, "--study", "smoke", "--rule", "tournament"], 2, ["--rule rank_sum", "[tournament]"]),
    (["train", "noweights.json", "--epochs", "1"], 2, ["gone.pt", "nas-sampler export"]),
]


@pytest.mark.parametrize("argv, code, words", CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_input_is_one_line_with_its_exit_code_and_changes_nothing(
    argv: list[str], code: int, words: list[str], searched: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    work = tmp_path / "work"
    shutil.copytree(searched, work)
    _inputs(work)
    monkeypatch.chdir(work)
    before = _files(work)
    capsys.readouterr()
    assert main(argv) == code
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    errors = [ln for ln in err if ln.startswith("nas-sampler: error:")]
    assert len(errors) == 1 and "Traceback" not in "\n".join(err), err
    for w in words:
        assert w in errors[0], (w, errors[0])
    assert _files(work) == before  # nothing created, nothing written


def test_train_tests_on_a_subset_of_the_test_set_when_asked(searched: Path, tmp_path: Path, monkeypatch) -> None:
    """``--subset`` shrinks the training set, ``--test-subset`` the test set (which once stayed whole)."""
    work = tmp_path / "work"
    shutil.copytree(searched, work)
    monkeypatch.chdir(work)
    argv = ["train", "final.json", "--epochs", "1", "--batch-size", "16", "--subset", "32", "--test-subset", "24"]
    assert main([*argv, "--out-dir", "out"]) == 0
    metrics = json.loads((work / "out" / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["test_images"]) == (32, 24)
