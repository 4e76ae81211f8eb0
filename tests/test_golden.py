"""Same seed, same search: the sampler proposes exactly the genotypes pinned before the redesign
(``tests/golden.py`` says how the fixture was made)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import golden  # noqa: E402

PINNED = json.loads(golden.FIXTURE.read_text())


@pytest.mark.parametrize("case", golden.cases(), ids=lambda c: golden.key(*c))
def test_the_sampler_proposes_the_pinned_genotypes(case: tuple[str, int, bool]) -> None:
    pinned = PINNED[golden.key(*case)]
    assert len(pinned) == golden.POPULATION * golden.GENERATIONS
    assert golden.run(*case) == pinned


@pytest.mark.parametrize("case", list(golden.OLD_STUDIES), ids=lambda c: golden.key(*c))
def test_a_study_written_by_an_earlier_version_resumes_to_the_pinned_genotypes(
    case: tuple[str, int, bool], tmp_path: Path
) -> None:
    db = tmp_path / "old.db"
    shutil.copy(golden.old_study(case), db)
    assert golden.run(*case, storage=f"sqlite:///{db}") == PINNED[golden.key(*case)]


def test_a_cli_study_written_by_an_earlier_version_resumes_to_the_straight_run(tmp_path: Path) -> None:
    """The smoke preset's search, stopped at 12 of 24 trials by an earlier version and resumed with
    the same command, proposes what the straight run proposed (real scores on the built-in data)."""
    db = tmp_path / "old.db"
    shutil.copy(golden.CLI_STUDY, db)
    assert golden.cli_search(db) == PINNED[golden.CLI_KEY]
